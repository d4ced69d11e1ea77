//! The gRPC services, one file each: thin handlers that validate, call the engine and convert.

pub mod auth;
pub mod cluster;
pub mod history;
pub mod kv;
pub mod lease;
pub mod maintenance;
mod snapshot;
pub mod watch;
