//! kvctl: browse, diff and restore the history Cairn keeps of every revision.
//!
//! Online through the history gRPC service of a running server (`--endpoints`), offline
//! straight from a stopped server's data dir (`--data-dir`).
//!
//! ```text
//!  cli (clap) ─► run ─► source::{RemoteSource, LocalSource} (one Source trait)
//!                  └──► output::{text, json} ─► render (values, keys, unified diffs)
//! ```

pub mod cli;
pub mod output;
pub mod point;
pub mod progress;
pub mod render;
pub mod run;
pub mod source;
