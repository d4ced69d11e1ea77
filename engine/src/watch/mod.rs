//! The watch hub: hands applied events to watchers, synced and unsynced.
