//! Test harness: a real `cairn` process on loopback ports, started as users start it.
//!
//! Every test that starts a server owns it: dropping [`Cairn`] kills the process (SIGKILL) and
//! removes its temporary data dir.

#![allow(dead_code)]

pub mod client;
pub mod cluster;
pub mod linearizability;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound and released; a tiny race is acceptable in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .unwrap()
        .port()
}

/// Whether an external tool is present. Locally a missing tool skips the test with a loud
/// message; under CI (`CI=true`) it fails the test.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{tool} is required under CI but is not installed"
        );
        eprintln!(
            "\n!!!!!!!! SKIPPING: {tool} is not installed (install it; CI fails without it) !!!!!!!!\n"
        );
    }
    found
}

/// SIGKILL a child process (if any) and reap it.
pub fn kill9_child(child: Option<Child>) {
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// SIGTERM a child and wait (bounded, then SIGKILL) for it to exit; returns its exit code.
pub fn terminate_child(mut child: Child) -> Option<i32> {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A running `cairn` server.
pub struct Cairn {
    child: Option<Child>,
    pub port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    extra_args: Vec<String>,
    tmp: Option<tempfile::TempDir>,
    log_path: PathBuf,
}

impl Cairn {
    /// Starts a server with a fresh temporary data dir.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra flags.
    pub fn start_with(extra_args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let mut server = Self::start_in(&data_dir, extra_args);
        server.tmp = Some(tmp);
        server
    }

    /// Starts a server on an existing (or new) data dir that the caller owns.
    ///
    /// A port picked free can be taken by another socket before the server binds it (the
    /// ephemeral range is shared with every client connection the tests open): a first start
    /// that fails with "Address already in use" is retried on new ports, a bounded number of
    /// times, starting from a fresh data dir when this call created it.
    pub fn start_in(data_dir: &Path, extra_args: &[&str]) -> Self {
        const ATTEMPTS: usize = 5;
        let fresh = !data_dir.exists();
        let mut server = Cairn {
            child: None,
            port: free_port(),
            peer_port: free_port(),
            data_dir: data_dir.to_path_buf(),
            extra_args: extra_args.iter().map(|s| (*s).to_string()).collect(),
            tmp: None,
            log_path: data_dir.with_extension("log"),
        };
        for attempt in 1..=ATTEMPTS {
            server.launch();
            match server.ready() {
                Ok(()) => return server,
                Err(log) if attempt < ATTEMPTS && log.contains("Address already in use") => {
                    eprintln!("cairn could not bind its ports (attempt {attempt}); new ports");
                    server.child = None;
                    if fresh {
                        let _ = std::fs::remove_dir_all(data_dir);
                    }
                    server.port = free_port();
                    server.peer_port = free_port();
                }
                Err(log) => panic!("{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        self.launch();
        self.wait_ready();
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("server log file");
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(self.url())
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{}", self.peer_port))
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start cairn");
        self.child = Some(child);
    }

    /// Waits (bounded) until GET /health answers healthy.
    pub fn wait_ready(&mut self) {
        if let Err(message) = self.ready() {
            panic!("{message}");
        }
    }

    /// Waits (bounded) until GET /health answers healthy; the reason (with the log) if not.
    fn ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "cairn exited during startup with {status}; log:\n{}",
                    self.log()
                ));
            }
            if let Some((200, body)) = http_get(self.port, "/health")
                && body.contains("\"true\"")
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "cairn did not become healthy within 30s; log:\n{}",
            self.log()
        ))
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL, no cleanup.
    pub fn kill9(&mut self) {
        kill9_child(self.child.take());
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        terminate_child(self.child.take()?)
    }

    /// Starts the process again on the same data dir and ports.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Cairn {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A minimal HTTP/1.1 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().ok()?,
        Duration::from_millis(500),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status: u16 = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Runs etcdctl (v3 API) against `endpoint` with a bounded timeout; returns (success, stdout, stderr).
pub fn etcdctl(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    etcdctl_with_input(endpoint, args, None)
}

pub fn etcdctl_with_input(
    endpoint: &str,
    args: &[&str],
    input: Option<&str>,
) -> (bool, String, String) {
    let mut child = Command::new("timeout")
        .arg("30")
        .arg("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--dial-timeout=5s")
        .arg("--command-timeout=20s")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    if let Some(input) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().expect("etcdctl output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
