//! `loadgen`: an etcd v3 load generator, usable against any etcd-compatible endpoint.
//!
//! ```text
//!  cli ──► workloads::run ──► connect (N HTTP/2 connections) ──► runner (M client tasks)
//!                │                                                 │  pacing: --rate, --total,
//!                │  workload-specific clients (put, range, txn,    │          --duration
//!                │  lease keep-alive) and watch receivers          ▼
//!                └──────────────────────────────────────────► stats (hdr histograms per op)
//!                                                                  │
//!                                            report: table or JSON ◄┘
//!
//!  compare: for each round, for etcd, Cairn and the null server in turn:
//!           start on loopback (fresh temp data dir) ─► run the workload ─► VmHWM ─► stop
//!           then medians per server and ratios Cairn/etcd, Cairn/null
//! ```
//!
//! The workloads mirror etcd's `tools/benchmark`: `put`, `range`, `txn-put`, `txn-mixed`,
//! `watch`, `watch-latency` and `lease-keepalive`. Latency is measured per request from just
//! before it is sent to the arrival of its response; watch delivery latency from just before
//! the put that caused an event is sent to the arrival of the event (the put's send time
//! travels in the value).

pub mod cli;
pub mod compare;
pub mod connect;
pub mod keys;
pub mod null_server;
pub mod progress;
pub mod report;
pub mod runner;
pub mod stats;
pub mod workloads;
