//! `cairn`: parses etcd-named flags and wires the engine to the client API. Nothing else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cairn_engine::node::{ClusterState, Node, NodeConfig, StopReason};
use clap::{Args, Parser, Subcommand};

/// Cairn: a replicated key-value engine that speaks the etcd v3 API.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: ServerFlags,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Snapshot utilities.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// History utilities.
    History {
        #[command(subcommand)]
        command: HistoryCommand,
    },
}

#[derive(Subcommand, Debug)]
enum HistoryCommand {
    /// Rebuild the jj history of a stopped server's data dir from its MVCC store.
    Rebuild {
        /// The data dir (the server must be stopped).
        #[arg(long, default_value = "./cairn-data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// Turn a snapshot (from `etcdctl snapshot save` against Cairn) into a new data dir.
    Restore {
        /// The snapshot file.
        file: PathBuf,
        /// The data dir to create; must not exist.
        #[arg(long, default_value = "./cairn-data")]
        data_dir: PathBuf,
    },
}

/// Server flags, named as etcd names them.
#[derive(Args, Debug)]
struct ServerFlags {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    name: String,
    /// Path to the data directory.
    #[arg(long, default_value = "./cairn-data")]
    data_dir: PathBuf,
    /// URLs to listen on for client traffic (comma-separated).
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    listen_client_urls: Vec<String>,
    /// Client URLs advertised to the cluster (comma-separated); defaults to the listen URLs.
    #[arg(long, value_delimiter = ',')]
    advertise_client_urls: Vec<String>,
    /// URLs to listen on for peer traffic (comma-separated).
    #[arg(long, default_value = "http://127.0.0.1:2380", value_delimiter = ',')]
    listen_peer_urls: Vec<String>,
    /// Peer URLs advertised to the cluster (comma-separated); defaults to the listen peer URLs.
    #[arg(long, value_delimiter = ',')]
    initial_advertise_peer_urls: Vec<String>,
    /// Initial cluster configuration, `name=peer_url,…`; empty = this member alone.
    #[arg(long, default_value = "")]
    initial_cluster: String,
    /// `new` for a new cluster, `existing` to join one.
    #[arg(long, default_value = "new", value_parser = ["new", "existing"])]
    initial_cluster_state: String,
    /// Initial cluster token, distinguishing clusters bootstrapped with the same URLs.
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// Raise a NOSPACE alarm when the backend exceeds this size (0 = 2 GiB).
    #[arg(long, default_value_t = 0)]
    quota_backend_bytes: u64,
    /// Maximum client request size in bytes.
    #[arg(long, default_value_t = 1_572_864)]
    max_request_bytes: usize,
    /// Maximum number of operations in one transaction.
    #[arg(long, default_value_t = 128)]
    max_txn_ops: usize,
    /// Time (ms) of a heartbeat interval.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// Time (ms) for an election to time out.
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    /// Applied entries between raft snapshots.
    #[arg(long, default_value_t = 100_000)]
    snapshot_count: u64,
    /// Entries kept behind a snapshot for slow followers to catch up from.
    #[arg(long = "experimental-snapshot-catchup-entries", default_value_t = 5000)]
    snapshot_catchup_entries: u64,
    /// Interval of watch progress notifications (e.g. 10m, 30s, 500ms).
    #[arg(long = "experimental-watch-progress-notify-interval", default_value = "10m", value_parser = parse_duration)]
    watch_progress_notify_interval: Duration,
    /// Disaster recovery: make this member the only member of its cluster, keeping its data.
    /// Start it once with this flag after losing quorum, then add the other members back.
    #[arg(long)]
    force_new_cluster: bool,
    /// Record every revision as a commit in the jj history (browse it with kvctl).
    /// `--history=false` turns it off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    history: bool,
    /// How much history to keep: `0` (everything, the default), an age (`30d`, `12h`) or a
    /// size of the history database (`10GiB`, `500MB`). MVCC compaction never trims history.
    #[arg(long, default_value = "0", value_parser = parse_retention)]
    history_retention: cairn_engine::history::Retention,
    /// Log level: debug, info, warn, error.
    #[arg(long, default_value = "info", value_parser = ["debug", "info", "warn", "error", "panic", "fatal"])]
    log_level: String,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" | "" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        "h" => Ok(Duration::from_secs(value * 3600)),
        _ => Err(format!("invalid duration {text:?}: use ms, s, m or h")),
    }
}

/// `http://host:port` → `host:port`.
fn socket_addr(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("unix://"))
        .with_context(|| {
            format!("URL {url:?} must start with http:// (TLS is not supported yet)")
        })?;
    let host_port = rest.trim_end_matches('/');
    if !host_port.contains(':') {
        bail!("URL {url:?} has no port");
    }
    Ok(host_port.to_string())
}

fn parse_initial_cluster(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut members: Vec<(String, String)> = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .with_context(|| format!("--initial-cluster entry {part:?} is not name=url"))?;
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => {
                urls.push(',');
                urls.push_str(url);
            }
            None => members.push((name.to_string(), url.to_string())),
        }
    }
    Ok(members)
}

fn init_logging(level: &str) {
    let level = match level {
        "panic" | "fatal" => "error",
        other => other,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},openraft=warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::error!(%err, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT, shutting down"),
        _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
    }
}

async fn serve(flags: ServerFlags) -> anyhow::Result<()> {
    let advertise_client_urls = if flags.advertise_client_urls.is_empty() {
        flags.listen_client_urls.clone()
    } else {
        flags.advertise_client_urls.clone()
    };
    let advertise_peer_urls = if flags.initial_advertise_peer_urls.is_empty() {
        flags.listen_peer_urls.clone()
    } else {
        flags.initial_advertise_peer_urls.clone()
    };
    let mut listeners = Vec::new();
    for url in &flags.listen_client_urls {
        let addr = socket_addr(url)?;
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen for clients on {addr}"))?;
        listeners.push(listener);
    }
    let mut peer_listeners = Vec::new();
    for url in &flags.listen_peer_urls {
        let addr = socket_addr(url)?;
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen for peers on {addr}"))?;
        peer_listeners.push(listener);
    }
    let config = NodeConfig {
        name: flags.name.clone(),
        data_dir: flags.data_dir.clone(),
        listen_peer_urls: flags.listen_peer_urls.clone(),
        advertise_peer_urls,
        advertise_client_urls,
        initial_cluster: parse_initial_cluster(&flags.initial_cluster)?,
        initial_cluster_state: if flags.initial_cluster_state == "existing" {
            ClusterState::Existing
        } else {
            ClusterState::New
        },
        initial_cluster_token: flags.initial_cluster_token.clone(),
        quota_backend_bytes: flags.quota_backend_bytes,
        heartbeat_interval: Duration::from_millis(flags.heartbeat_interval),
        election_timeout: Duration::from_millis(flags.election_timeout),
        snapshot_count: flags.snapshot_count,
        snapshot_catchup_entries: flags.snapshot_catchup_entries,
        watch_progress_notify_interval: flags.watch_progress_notify_interval,
        force_new_cluster: flags.force_new_cluster,
        history: flags.history,
        history_retention: flags.history_retention,
    };
    let transport = Arc::new(cairn_kvapi::peer::GrpcTransport::new());
    let node = Node::start(config, transport)
        .await
        .with_context(|| format!("cannot start member {:?}", flags.name))?;
    let api = cairn_kvapi::ApiConfig {
        max_request_bytes: flags.max_request_bytes,
        max_txn_ops: flags.max_txn_ops,
        progress_notify_interval: flags.watch_progress_notify_interval,
        quota_backend_bytes: if flags.quota_backend_bytes == 0 {
            cairn_engine::node::DEFAULT_QUOTA_BYTES
        } else {
            flags.quota_backend_bytes
        },
        ..cairn_kvapi::ApiConfig::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let mut peer_servers = tokio::task::JoinSet::new();
    for listener in peer_listeners {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "serving peers");
        let mut stop = stop_rx.clone();
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        peer_servers.spawn(cairn_kvapi::peer::serve_peers(
            node.peer_service(),
            listener,
            stopped,
        ));
    }
    for listener in listeners {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "serving etcd v3 gRPC and HTTP");
        let mut stop = stop_rx.clone();
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        servers.spawn(cairn_kvapi::serve(
            node.clone(),
            listener,
            api.clone(),
            stopped,
        ));
    }
    let mut fatal = None;
    tokio::select! {
        () = shutdown_signal() => {}
        reason = node.stopped() => match reason {
            StopReason::Removed => tracing::warn!(
                "the member has been permanently removed from the cluster; stopping"
            ),
            StopReason::RaftStopped => fatal = Some("raft stopped on a fatal error (see above)"),
        },
        Some(result) = servers.join_next() => {
            result.context("client server task")?.context("client server")?;
        }
        Some(result) = peer_servers.join_next() => {
            result.context("peer server task")?.context("peer server")?;
        }
    }
    stop_tx.send_replace(true);
    let drain = async {
        while servers.join_next().await.is_some() {}
        while peer_servers.join_next().await.is_some() {}
    };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        tracing::warn!("client connections did not close within 5s");
    }
    node.shutdown().await;
    tracing::info!("stopped");
    match fatal {
        Some(reason) => bail!(reason),
        None => Ok(()),
    }
}

fn parse_retention(text: &str) -> Result<cairn_engine::history::Retention, String> {
    text.parse()
}

/// `cairn history rebuild`: progress on stderr, the outcome on stdout.
fn rebuild_history(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let mut last_report = std::time::Instant::now();
    let status = cairn_engine::history::rebuild(data_dir, &mut |head, target| {
        if last_report.elapsed() >= Duration::from_secs(1) {
            eprintln!("rebuilding history: revision {head} of {target}");
            last_report = std::time::Instant::now();
        }
    })
    .with_context(|| format!("cannot rebuild the history of {}", data_dir.display()))?;
    println!(
        "history rebuilt: revisions {}..{}, head commit {}",
        status.oldest_revision, status.head_revision, status.head_commit_id
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.server.log_level);
    let result = match cli.command {
        Some(Command::Snapshot {
            command: SnapshotCommand::Restore { file, data_dir },
        }) => cairn_engine::node::restore_data_dir(&file, &data_dir)
            .map(|revision| {
                println!(
                    "restored {} into {} at revision {revision}",
                    file.display(),
                    data_dir.display()
                );
            })
            .with_context(|| format!("cannot restore {}", file.display())),
        Some(Command::History {
            command: HistoryCommand::Rebuild { data_dir },
        }) => rebuild_history(&data_dir),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|runtime| runtime.block_on(serve(cli.server))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cairn: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
