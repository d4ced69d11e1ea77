//! Starting and stopping one server process: etcd, Cairn or the null server, each with a fresh
//! data dir, output to a log file beside it. A member of a cluster is one such process;
//! [`super::deployment`] starts the members together.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::loadgen::connect;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Raft timing, passed explicitly to both etcd and Cairn (both servers' defaults, in ms).
const HEARTBEAT_INTERVAL_MS: u64 = 100;
const ELECTION_TIMEOUT_MS: u64 = 1000;
/// `--initial-cluster-token` of the clusters `compare` starts.
const CLUSTER_TOKEN: &str = "loadgen-compare";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Etcd,
    Cairn,
    Null,
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerKind::Etcd => "etcd",
            ServerKind::Cairn => "cairn",
            ServerKind::Null => "null",
        })
    }
}

/// The programs to start.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub cairn: PathBuf,
    /// This program, for `loadgen null-server`.
    pub loadgen: PathBuf,
}

/// One member's name and loopback ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

/// `name=peer_url,…`, etcd's `--initial-cluster`.
fn initial_cluster(cluster: &[Member]) -> String {
    cluster
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A running server. Dropping it kills the process (SIGKILL); [`ServerProcess::stop`] asks it
/// to exit first.
pub struct ServerProcess {
    pub kind: ServerKind,
    /// The member's name (`default` for a single server).
    pub name: String,
    /// `127.0.0.1:port` of the client API.
    pub endpoint: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A port that was free a moment ago (the OS picks it; we release it for the server).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `count` distinct ports that were free a moment ago (all held until all are picked).
pub fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").context("no free port"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// A fresh directory for one server's data and log, under `data_root` (default: the temp dir).
pub fn fresh_dir(data_root: Option<&Path>) -> anyhow::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("loadgen-");
    Ok(match data_root {
        Some(root) => builder
            .tempdir_in(root)
            .with_context(|| format!("cannot create a data dir in {}", root.display()))?,
        None => builder.tempdir()?,
    })
}

impl ServerProcess {
    /// Starts `kind` alone with a fresh data dir under `data_root` (default: the temp dir) and
    /// waits until it answers a Range.
    pub async fn start(
        kind: ServerKind,
        binaries: &Binaries,
        data_root: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let dir = fresh_dir(data_root)?;
        let ports = free_ports(2)?;
        let me = Member {
            name: "default".to_string(),
            client_port: ports[0],
            peer_port: ports[1],
        };
        let mut server = Self::spawn(kind, binaries, dir, &me, std::slice::from_ref(&me))?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// Starts `kind` as member `me` of `cluster` (which includes `me`) in `dir`, without
    /// waiting for it. A one-member `cluster` is a single server, started as `start` does.
    pub fn spawn(
        kind: ServerKind,
        binaries: &Binaries,
        dir: tempfile::TempDir,
        me: &Member,
        cluster: &[Member],
    ) -> anyhow::Result<Self> {
        let data_dir = dir.path().join("data");
        let (client_url, peer_url) = (me.client_url(), me.peer_url());
        let multi = cluster.len() > 1;
        let timing = [
            format!("--heartbeat-interval={HEARTBEAT_INTERVAL_MS}"),
            format!("--election-timeout={ELECTION_TIMEOUT_MS}"),
        ];
        // Flags both servers take with the same meaning (etcd's names).
        let mut shared = vec![
            format!("--name={}", me.name),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
        ];
        if multi {
            shared.extend([
                format!("--initial-cluster={}", initial_cluster(cluster)),
                format!("--initial-cluster-token={CLUSTER_TOKEN}"),
                "--initial-cluster-state=new".to_string(),
            ]);
        }
        let mut command = match kind {
            ServerKind::Etcd => {
                let mut command = Command::new(&binaries.etcd);
                command.args(&shared).args(&timing);
                if !multi {
                    // etcd's default names `default=http://localhost:2380`.
                    command.arg(format!("--initial-cluster={}", initial_cluster(cluster)));
                }
                command.arg("--logger=zap").arg("--log-level=warn");
                command
            }
            ServerKind::Cairn => {
                let mut command = Command::new(&binaries.cairn);
                command.args(&shared).args(&timing).arg("--log-level=warn");
                command
            }
            ServerKind::Null => {
                if multi {
                    bail!("the null server cannot run as a cluster");
                }
                let mut command = Command::new(&binaries.loadgen);
                command
                    .arg("null-server")
                    .arg(format!("--listen=127.0.0.1:{}", me.client_port));
                command
            }
        };
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {kind}"))?;
        Ok(Self {
            kind,
            name: me.name.clone(),
            endpoint: format!("127.0.0.1:{}", me.client_port),
            child,
            log,
            _dir: dir,
        })
    }

    /// An error with the log's tail if the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} {} exited ({status}); log:\n{}",
                self.kind,
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_running()
                .with_context(|| format!("{} was not ready yet", self.kind))?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                bail!(
                    "{} not ready after {READY_TIMEOUT:?}; log:\n{}",
                    self.kind,
                    self.log_tail()
                );
            }
            let wait = remaining.min(Duration::from_millis(500));
            if connect::wait_ready(&self.endpoint, wait).await.is_ok() {
                return Ok(());
            }
        }
    }

    /// The last lines of the server's output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Peak resident set size so far, in bytes (`VmHWM` of `/proc/PID/status`).
    pub fn peak_rss_bytes(&self) -> anyhow::Result<u64> {
        let pid = self.child.id().context("the server has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        parse_vm_hwm(&status).context("no VmHWM in /proc/PID/status")
    }

    /// Asks the server to exit (SIGTERM) without waiting.
    pub async fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
    }

    /// Asks the server to exit (SIGTERM), waits up to 10 s, then kills it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.terminate().await;
        self.wait_or_kill().await
    }

    /// Waits up to 10 s for the server to exit (after [`ServerProcess::terminate`]), then
    /// kills it.
    pub async fn wait_or_kill(mut self) -> anyhow::Result<()> {
        if self.child.id().is_some()
            && tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
                .await
                .is_ok()
        {
            return Ok(());
        }
        self.child.kill().await?;
        Ok(())
    }
}

/// `VmHWM:   123456 kB` → bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_parses() {
        let status = "Name:\tetcd\nVmPeak:\t  900 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(51200 * 1024));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
    }

    #[test]
    fn own_peak_rss_is_readable() {
        let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
        assert!(parse_vm_hwm(&status).is_some_and(|bytes| bytes > 0));
    }
}
