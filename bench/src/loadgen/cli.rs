//! Command-line interface: the workloads with their options (named as etcd's benchmark tool
//! names them where it has a name), `compare` and `null-server`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// An etcd v3 load generator; also compares etcd and Cairn side by side.
#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Put keys (etcd `benchmark put`).
    Put(PutArgs),
    /// Range over one key or over a prefix of N keys (etcd `benchmark range`).
    Range(RangeArgs),
    /// Transactions of puts, no compares (etcd `benchmark txn-put`).
    TxnPut(TxnPutArgs),
    /// Transactions that either read or write one key, by a read/write ratio (etcd
    /// `benchmark txn-mixed`).
    TxnMixed(TxnMixedArgs),
    /// Many watchers over many keys while keys are put: event fan-out and delivery latency
    /// (etcd `benchmark watch`).
    Watch(WatchArgs),
    /// Watchers of one key, paced puts: event delivery latency (etcd `benchmark watch-latency`).
    WatchLatency(WatchArgs),
    /// Lease keep-alives on one stream per client (etcd `benchmark lease-keepalive`).
    LeaseKeepalive(LeaseArgs),
    /// Run one workload against etcd, Cairn and a null server in turn (or against etcd and
    /// Cairn clusters), and compare.
    Compare(CompareArgs),
    /// A gRPC server answering `Put`, `Range`, `Txn`, `DeleteRange` and `Compact` with empty responses:
    /// the RPC ceiling of the machine.
    NullServer(NullServerArgs),
}

impl Command {
    /// The options shared by every workload; `None` for `compare` and `null-server`.
    pub fn common(&self) -> Option<&CommonArgs> {
        match self {
            Command::Put(a) => Some(&a.common),
            Command::Range(a) => Some(&a.common),
            Command::TxnPut(a) => Some(&a.common),
            Command::TxnMixed(a) => Some(&a.common),
            Command::Watch(a) | Command::WatchLatency(a) => Some(&a.common),
            Command::LeaseKeepalive(a) => Some(&a.common),
            Command::Compare(_) | Command::NullServer(_) => None,
        }
    }

    pub fn common_mut(&mut self) -> Option<&mut CommonArgs> {
        match self {
            Command::Put(a) => Some(&mut a.common),
            Command::Range(a) => Some(&mut a.common),
            Command::TxnPut(a) => Some(&mut a.common),
            Command::TxnMixed(a) => Some(&mut a.common),
            Command::Watch(a) | Command::WatchLatency(a) => Some(&mut a.common),
            Command::LeaseKeepalive(a) => Some(&mut a.common),
            Command::Compare(_) | Command::NullServer(_) => None,
        }
    }

    /// The workload's name, as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Put(_) => "put",
            Command::Range(_) => "range",
            Command::TxnPut(_) => "txn-put",
            Command::TxnMixed(_) => "txn-mixed",
            Command::Watch(_) => "watch",
            Command::WatchLatency(_) => "watch-latency",
            Command::LeaseKeepalive(_) => "lease-keepalive",
            Command::Compare(_) => "compare",
            Command::NullServer(_) => "null-server",
        }
    }

    /// Whether the null server can answer this workload (it serves only the KV service).
    pub fn null_server_can_serve(&self) -> bool {
        matches!(
            self,
            Command::Put(_) | Command::Range(_) | Command::TxnPut(_) | Command::TxnMixed(_)
        )
    }
}

/// Options of every workload.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// gRPC endpoints (`host:port` or `http://host:port`), comma-separated; connections are
    /// spread over them round-robin.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// HTTP/2 connections to open; clients share them round-robin.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Concurrent clients (each with at most one request in flight).
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Requests to send in all (default 10000 when --duration is not given).
    #[arg(long)]
    pub total: Option<u64>,
    /// Run for this long instead of a request count (e.g. 10s, 500ms, 1m).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Requests per second over all clients; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Never draw a progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

/// Key and value shapes (etcd's flag names).
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long = "val-size", default_value_t = 8)]
    pub value_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Walk the key space in order instead of at random.
    #[arg(long)]
    pub sequential_keys: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PutArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// Read consistency, etcd's `--consistency l|s`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Linearizable (a read index through raft).
    #[value(name = "l")]
    Linearizable,
    /// Serializable (local state).
    #[value(name = "s")]
    Serializable,
}

#[derive(Args, Debug, Clone)]
pub struct RangeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// l = linearizable, s = serializable.
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    /// Read a prefix holding this many keys per request (loaded first); 0 = read one key of the
    /// key space per request (the key space is loaded first).
    #[arg(long, default_value_t = 0)]
    pub prefix_keys: u64,
    /// `limit` of each range request; 0 = no limit.
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
}

#[derive(Args, Debug, Clone)]
pub struct TxnPutArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Puts per transaction (distinct keys).
    #[arg(long, default_value_t = 1)]
    pub txn_ops: usize,
}

#[derive(Args, Debug, Clone)]
pub struct TxnMixedArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Reads per write.
    #[arg(long, default_value_t = 1.0)]
    pub rw_ratio: f64,
    /// Consistency of the reads.
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
}

/// Options of `watch` and `watch-latency`. The put side uses the common options (`--clients`
/// putters, `--rate` puts per second, `--total` puts or `--duration`).
#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Watch streams (each one gRPC `Watch` call), spread over the connections.
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Watchers on each stream.
    #[arg(long, default_value_t = 10)]
    pub watchers_per_stream: usize,
    /// Distinct keys watched; watcher `i` watches key `i mod N` and puts go round-robin over
    /// them. `watch-latency` ignores it and uses one key.
    #[arg(long, default_value_t = 1)]
    pub watched_keys: usize,
    /// Value size in bytes (at least 8: the put's send time travels in the value).
    #[arg(long = "val-size", default_value_t = 8)]
    pub value_size: usize,
    /// Ask for `prev_kv` in events.
    #[arg(long)]
    pub prev_kv: bool,
    /// How long to wait for the last events after the last put.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct LeaseArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// TTL of the lease each client keeps alive, in seconds.
    #[arg(long, default_value_t = 60)]
    pub ttl: i64,
}

/// Which member's client endpoint `compare` lists first for a cluster.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstEndpoint {
    /// The leader's, then the followers' in member order.
    Leader,
    /// A follower's, then the leader's, then the other followers'.
    Follower,
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Rounds; each round runs etcd, Cairn and the null server once, in that order.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Members of each etcd and Cairn deployment. 1 = a single server; N > 1 = an N-member
    /// cluster on loopback ports whose client endpoints are all given to the workload (which
    /// opens connection i to endpoint i mod N); the null server is skipped.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=9))]
    pub members: usize,
    /// With --members > 1: whose endpoint comes first, and so which member a one-connection
    /// workload talks to. The leader's share of the connections is the same either way.
    #[arg(long, value_enum, default_value = "leader")]
    pub first_endpoint: FirstEndpoint,
    /// The etcd binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// The cairn binary.
    #[arg(long, default_value = "target/release/cairn")]
    pub cairn: PathBuf,
    /// Skip the null server.
    #[arg(long)]
    pub no_null: bool,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where to create the servers' data dirs (fresh for every run); default: the system temp
    /// dir. Put it on the disk you want to measure (a tmpfs makes fsync free).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// The workload and its options, after `--`; its `--endpoints` is replaced.
    /// Example: `loadgen compare --rounds 3 -- put --clients 64 --duration 10s`.
    #[arg(last = true, required = true, num_args = 1..)]
    pub workload: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct NullServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2379")]
    pub listen: String,
}

/// `10s`, `500ms`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("invalid duration {text:?}: use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|err| format!("invalid duration {text:?}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn compare_takes_the_workload_after_the_separator() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "compare",
            "--rounds",
            "2",
            "--",
            "put",
            "--clients",
            "64",
        ])
        .expect("parses");
        let Command::Compare(args) = cli.command else {
            panic!("not compare")
        };
        assert_eq!(args.rounds, 2);
        assert_eq!(args.members, 1);
        assert_eq!(args.workload, ["put", "--clients", "64"]);
    }

    #[test]
    fn compare_takes_a_cluster_size() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "compare",
            "--members",
            "3",
            "--first-endpoint",
            "follower",
            "--",
            "put",
        ])
        .expect("parses");
        let Command::Compare(args) = cli.command else {
            panic!("not compare")
        };
        assert_eq!(args.members, 3);
        assert_eq!(args.first_endpoint, FirstEndpoint::Follower);
        assert!(
            Cli::try_parse_from(["loadgen", "compare", "--members", "0", "--", "put"]).is_err()
        );
    }
}
