//! cairn-bench: criterion benches for the engine (see `benches/`).
