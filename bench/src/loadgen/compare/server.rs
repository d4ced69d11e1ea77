//! Starting and stopping the compared servers: etcd, Cairn and the null server, each on free
//! loopback ports with a fresh data dir, output to a log file beside it.

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

/// A running server. Dropping it kills the process (SIGKILL); [`ServerProcess::stop`] asks it
/// to exit first.
pub struct ServerProcess {
    pub kind: ServerKind,
    /// `127.0.0.1:port` of the client API.
    pub endpoint: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A port that was free a moment ago (the OS picks it; we release it for the server).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(listener.local_addr()?.port())
}

impl ServerProcess {
    /// Starts `kind` with a fresh data dir under `data_root` (default: the temp dir) and waits
    /// until it answers a Range.
    pub async fn start(
        kind: ServerKind,
        binaries: &Binaries,
        data_root: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let dir = match data_root {
            Some(root) => tempfile::Builder::new()
                .prefix("loadgen-")
                .tempdir_in(root)?,
            None => tempfile::Builder::new().prefix("loadgen-").tempdir()?,
        };
        let data_dir = dir.path().join("data");
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut command = match kind {
            ServerKind::Etcd => {
                let mut command = Command::new(&binaries.etcd);
                command
                    .arg("--name=default")
                    .arg(format!("--data-dir={}", data_dir.display()))
                    .arg(format!("--listen-client-urls={client_url}"))
                    .arg(format!("--advertise-client-urls={client_url}"))
                    .arg(format!("--listen-peer-urls={peer_url}"))
                    .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                    .arg(format!("--initial-cluster=default={peer_url}"))
                    .arg("--logger=zap")
                    .arg("--log-level=warn");
                command
            }
            ServerKind::Cairn => {
                let mut command = Command::new(&binaries.cairn);
                command
                    .arg("--name=default")
                    .arg(format!("--data-dir={}", data_dir.display()))
                    .arg(format!("--listen-client-urls={client_url}"))
                    .arg(format!("--listen-peer-urls={peer_url}"))
                    .arg("--log-level=warn");
                command
            }
            ServerKind::Null => {
                let mut command = Command::new(&binaries.loadgen);
                command
                    .arg("null-server")
                    .arg(format!("--listen=127.0.0.1:{client_port}"));
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
        let mut server = Self {
            kind,
            endpoint: format!("127.0.0.1:{client_port}"),
            child,
            log,
            _dir: dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited before it was ready ({status}); log:\n{}",
                    self.kind,
                    self.log_tail()
                );
            }
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

    /// Asks the server to exit (SIGTERM), waits up to 10 s, then kills it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
            if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
                .await
                .is_ok()
            {
                return Ok(());
            }
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
