//! Test harness: a cluster of real `cairn` processes on loopback ports, each started as users
//! start an etcd member (`--name`, `--initial-cluster`, `--initial-cluster-state`, …).
//!
//! ```text
//!   Cluster ── members[i] ── child process  (client port P_i, peer port Q_i)
//!                         ├─ <tmp>/m<i>/data   its data dir
//!                         └─ <tmp>/m<i>.log    its stderr, appended across restarts
//! ```
//!
//! Dropping a [`Cluster`] kills every process (SIGKILL) and removes the data dirs; when the test
//! is failing it first prints the tail of every member's log.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{http_get, kill9_child, terminate_child};

/// Heartbeat interval (ms) every member is started with.
pub const HEARTBEAT_MS: u64 = 50;
/// Election timeout (ms) every member is started with.
pub const ELECTION_MS: u64 = 500;
/// How long a member may take to answer `/health` healthy after it was started.
const READY_WAIT: Duration = Duration::from_secs(30);
/// How much of each member's log a failing test prints.
const LOG_TAIL_BYTES: usize = 6000;

/// `n` distinct free loopback ports (all bound at once, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One member of a [`Cluster`]: its ports, its data dir and (while it runs) its process.
pub struct Member {
    pub name: String,
    pub port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// `--initial-cluster` this member is started with.
    pub initial_cluster: String,
    /// `--initial-cluster-state` this member is started with (`new` or `existing`).
    pub state: String,
    /// `--initial-cluster-token` this member is started with.
    pub token: String,
    /// Further flags (e.g. `--snapshot-count`).
    pub extra_args: Vec<String>,
    child: Option<Child>,
    starts: u32,
}

impl Member {
    /// `127.0.0.1:P`, as the etcd-client crate and etcdctl take it.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The command line this member is started with, as an operator would type it.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--name",
            &self.name,
            "--data-dir",
            &self.data_dir.display().to_string(),
            "--listen-client-urls",
            &self.client_url(),
            "--advertise-client-urls",
            &self.client_url(),
            "--listen-peer-urls",
            &self.peer_url(),
            "--initial-advertise-peer-urls",
            &self.peer_url(),
            "--initial-cluster",
            &self.initial_cluster,
            "--initial-cluster-state",
            &self.state,
            "--initial-cluster-token",
            &self.token,
            "--heartbeat-interval",
            &HEARTBEAT_MS.to_string(),
            "--election-timeout",
            &ELECTION_MS.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        args.extend(self.extra_args.iter().cloned());
        args
    }

    fn open_log(&self, what: &str) -> std::fs::File {
        use std::io::Write as _;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("member log file");
        let _ = writeln!(
            log,
            "===== harness: {what} {} (start #{}) =====",
            self.name, self.starts
        );
        log
    }

    /// Starts the process (no wait). Panics if it is already running.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.starts += 1;
        let log = self.open_log("starting");
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(self.args())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start cairn");
        self.child = Some(child);
    }

    /// Runs the process with `args` replacing its usual command line and waits (bounded) for it
    /// to exit: for start-up refusals. Returns the exit status (`None`: still running after
    /// `limit`, then killed) and what it wrote to stderr.
    pub fn run_to_exit(
        &mut self,
        args: &[String],
        limit: Duration,
    ) -> (Option<ExitStatus>, String) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.starts += 1;
        let before = self.log().len();
        let log = self.open_log("running to exit");
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start cairn");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = self.log();
        (status, log.get(before..).unwrap_or_default().to_string())
    }

    /// Whether the process is running (it was started and has not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_)) | Err(_)) | None => false,
        }
    }

    /// The exit status, if the process was started and has exited on its own.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// Waits (bounded) until `GET /health` answers healthy (which needs a leader).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.exit_status() {
                panic!(
                    "{} exited during startup with {status}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            if let Some((200, body)) = http_get(self.port, "/health")
                && body.contains("\"true\"")
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not become healthy within {READY_WAIT:?}; log:\n{}",
            self.name,
            self.log()
        );
    }

    /// The member's stderr so far (all starts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `bytes` of the member's log.
    pub fn log_tail(&self, bytes: usize) -> String {
        let log = self.log();
        let start = log.len().saturating_sub(bytes);
        let start = (start..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(log.len());
        log[start..].to_string()
    }

    /// SIGKILL, no cleanup.
    pub fn kill9(&mut self) {
        kill9_child(self.child.take());
    }

    /// SIGTERM and wait (bounded) for the exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        terminate_child(self.child.take()?)
    }

    /// Kills the process if it runs, starts it again on the same data dir and ports and waits
    /// until it is healthy.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready();
    }

    /// One gauge of `/metrics` (e.g. `etcd_server_is_leader`); `None` if unreachable.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (status, body) = http_get(self.port, "/metrics")?;
        if status != 200 {
            return None;
        }
        body.lines().find_map(|line| {
            let (metric, value) = line.split_once(' ')?;
            (metric == name).then(|| value.trim().parse().ok())?
        })
    }

    /// Whether this member says it is the leader (via `/metrics`).
    pub fn says_leader(&self) -> bool {
        self.metric("etcd_server_is_leader") == Some(1.0)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// N `cairn` members bootstrapped together. Members added later (`member add`) get the next
/// indices.
pub struct Cluster {
    pub members: Vec<Member>,
    pub token: String,
    extra_args: Vec<String>,
    tmp: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` members of a new cluster with `extra_args` each, and waits until every one is
    /// healthy (so a leader is elected).
    pub fn start(n: usize, extra_args: &[&str]) -> Self {
        let cluster = Self::spawn(n, extra_args);
        let mut cluster = cluster;
        for member in &mut cluster.members {
            member.wait_ready();
        }
        cluster
    }

    /// Starts `n` members of a new cluster without waiting for them.
    pub fn spawn(n: usize, extra_args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let token = format!("cairn-test-{}", rand::random::<u32>());
        let ports = free_ports(2 * n);
        let initial_cluster = (0..n)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let extra_args: Vec<String> = extra_args.iter().map(|s| (*s).to_string()).collect();
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: tmp.path().join(format!("m{i}")).join("data"),
                log_path: tmp.path().join(format!("m{i}.log")),
                initial_cluster: initial_cluster.clone(),
                state: "new".to_string(),
                token: token.clone(),
                extra_args: extra_args.clone(),
                child: None,
                starts: 0,
            })
            .collect();
        let mut cluster = Cluster {
            members,
            token,
            extra_args,
            tmp,
        };
        for member in &mut cluster.members {
            member.spawn();
        }
        cluster
    }

    /// Prepares (does not start) a member joining this cluster with
    /// `--initial-cluster-state existing`: fresh ports and data dir, and an `--initial-cluster`
    /// naming the members at `existing` and itself. Returns its index.
    pub fn prepare_joiner(&mut self, name: &str, existing: &[usize]) -> usize {
        let ports = free_ports(2);
        let mut initial: Vec<String> = existing
            .iter()
            .map(|&i| format!("{}={}", self.members[i].name, self.members[i].peer_url()))
            .collect();
        initial.push(format!("{name}=http://127.0.0.1:{}", ports[1]));
        self.members.push(Member {
            name: name.to_string(),
            port: ports[0],
            peer_port: ports[1],
            data_dir: self.tmp.path().join(name).join("data"),
            log_path: self.tmp.path().join(format!("{name}.log")),
            initial_cluster: initial.join(","),
            state: "existing".to_string(),
            token: self.token.clone(),
            extra_args: self.extra_args.clone(),
            child: None,
            starts: 0,
        });
        self.members.len() - 1
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's `127.0.0.1:P`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// The members whose process runs.
    pub fn running(&mut self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].is_running())
            .collect()
    }

    /// The index of the running member that says it leads, if exactly one does.
    pub fn leader(&mut self) -> Option<usize> {
        let leaders: Vec<usize> = self
            .running()
            .into_iter()
            .filter(|&i| self.members[i].says_leader())
            .collect();
        match leaders.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// Waits (bounded) until exactly one running member leads; returns it and how long it took.
    pub fn wait_leader(&mut self, limit: Duration) -> (usize, Duration) {
        let started = Instant::now();
        loop {
            if let Some(leader) = self.leader() {
                return (leader, started.elapsed());
            }
            assert!(
                started.elapsed() < limit,
                "no leader among the running members within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Prints the tail of every member's log.
    pub fn print_logs(&self) {
        for member in &self.members {
            eprintln!(
                "---- {} log tail ({}) ----\n{}",
                member.name,
                member.log_path.display(),
                member.log_tail(LOG_TAIL_BYTES)
            );
        }
    }
}

impl std::ops::Index<usize> for Cluster {
    type Output = Member;
    fn index(&self, i: usize) -> &Member {
        &self.members[i]
    }
}

impl std::ops::IndexMut<usize> for Cluster {
    fn index_mut(&mut self, i: usize) -> &mut Member {
        &mut self.members[i]
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.kill9();
        }
        if std::thread::panicking() {
            self.print_logs();
        }
    }
}
