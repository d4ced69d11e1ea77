//! Black-box tests: the real `etcdctl` (v3 API, 3.4 client) against a real `cairn` process.
//!
//! Every expected output here was checked against a real etcd 3.4.23 server driven by the same
//! etcdctl; where etcd 3.4 and 3.6 differ, the 3.6 behaviour is asserted and the difference noted.
//! Revisions are exact: a fresh etcd store is at revision 1 and every write transaction adds one.
//!
//! ```text
//!   test ──► etcdctl (child process, bounded by `timeout`) ──gRPC──► cairn (own port, own data dir)
//!   test ──► etcdctl watch / lock / elect (long-lived child) ──► stdout lines ──► channel ──► test
//! ```

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Cairn, etcdctl, etcdctl_with_input, require_tool};
use serde_json::Value;

/// How long a long-lived etcdctl child may take to print its next line.
const LINE_WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The last part of the server log, for failure messages.
fn log_tail(server: &Cairn) -> String {
    let log = server.log();
    let start = log.len().saturating_sub(4000);
    let start = (start..log.len())
        .find(|&i| log.is_char_boundary(i))
        .unwrap_or(log.len());
    log[start..].to_string()
}

/// etcdctl bound to one server.
struct Ctl<'a> {
    server: &'a Cairn,
}

impl<'a> Ctl<'a> {
    fn new(server: &'a Cairn) -> Self {
        Ctl { server }
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        etcdctl(&self.server.endpoint(), args)
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(
            ok,
            "etcdctl {args:?} failed\nstdout: {out}\nstderr: {err}\nserver log tail:\n{}",
            log_tail(self.server)
        );
        out
    }

    /// Runs a command with stdin that must succeed; returns its stdout.
    fn ok_input(&self, args: &[&str], input: &str) -> String {
        let (ok, out, err) = etcdctl_with_input(&self.server.endpoint(), args, Some(input));
        assert!(
            ok,
            "etcdctl {args:?} <<{input:?} failed\nstdout: {out}\nstderr: {err}\nserver log tail:\n{}",
            log_tail(self.server)
        );
        out
    }

    /// Runs a command that must fail; returns etcdctl's `Error: …` line.
    fn err(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(
            !ok,
            "etcdctl {args:?} should have failed\nstdout: {out}\nstderr: {err}"
        );
        error_line(&err)
    }

    /// Runs a command with `-w json` and parses its stdout.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-w", "json"]);
        let out = self.ok(&all);
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("etcdctl {all:?} printed invalid JSON ({e}): {out}"))
    }

    /// Runs a command with stdin and `-w json`; parses its stdout.
    fn json_input(&self, args: &[&str], input: &str) -> Value {
        let mut all = args.to_vec();
        all.extend(["-w", "json"]);
        let out = self.ok_input(&all, input);
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("etcdctl {all:?} printed invalid JSON ({e}): {out}"))
    }

    /// The store's current revision (the header of a read of an absent key).
    fn revision(&self) -> i64 {
        revision(&self.json(&["get", "cairn-test/absent"]))
    }

    /// The keys (decoded) that a `get` returns.
    fn keys(&self, args: &[&str]) -> Vec<String> {
        kvs(&self.json(args)).into_iter().map(|kv| kv.key).collect()
    }

    fn member_id(&self) -> u64 {
        self.json(&["get", "cairn-test/absent"])["header"]["member_id"]
            .as_u64()
            .expect("header.member_id")
    }
}

/// etcdctl prints `Error: <message>` as the last line of stderr when a command fails.
fn error_line(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("Error:"))
        .unwrap_or_else(|| panic!("no `Error:` line in stderr: {stderr}"))
        .to_string()
}

/// Decodes standard base64 (etcdctl's JSON prints keys and values as base64) into UTF-8 text.
fn b64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let digit = ALPHABET
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("not base64: {text:?}"));
        bits = (bits << 6) | digit as u32;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| panic!("base64 {text:?} is not UTF-8: {e}"))
}

/// A JSON integer field, 0 when omitted (etcdctl's JSON omits zero values).
fn int(value: &Value, field: &str) -> i64 {
    match value.get(field) {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .unwrap_or_else(|| panic!("{field} is not an integer in {value}")),
    }
}

fn revision(response: &Value) -> i64 {
    int(&response["header"], "revision")
}

/// A key-value pair as etcdctl prints it in JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kv {
    key: String,
    value: String,
    create: i64,
    modified: i64,
    version: i64,
    lease: i64,
}

impl Kv {
    fn new(key: &str, value: &str, create: i64, modified: i64, version: i64) -> Self {
        Kv {
            key: key.into(),
            value: value.into(),
            create,
            modified,
            version,
            lease: 0,
        }
    }

    fn with_lease(mut self, lease: i64) -> Self {
        self.lease = lease;
        self
    }
}

fn kv(value: &Value) -> Kv {
    Kv {
        key: b64(value["key"]
            .as_str()
            .unwrap_or_else(|| panic!("kv without key: {value}"))),
        value: value
            .get("value")
            .and_then(Value::as_str)
            .map(b64)
            .unwrap_or_default(),
        create: int(value, "create_revision"),
        modified: int(value, "mod_revision"),
        version: int(value, "version"),
        lease: int(value, "lease"),
    }
}

fn kvs(response: &Value) -> Vec<Kv> {
    response
        .get("kvs")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(kv).collect())
        .unwrap_or_default()
}

/// A watch event as etcdctl prints it in JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    delete: bool,
    kv: Kv,
    prev: Option<Kv>,
}

fn put_event(kv: Kv, prev: Option<Kv>) -> Event {
    Event {
        delete: false,
        kv,
        prev,
    }
}

fn delete_event(key: &str, revision: i64, prev: Option<Kv>) -> Event {
    Event {
        delete: true,
        kv: Kv::new(key, "", 0, revision, 0),
        prev,
    }
}

/// One line of `etcdctl watch -w json`: a watch response with its events.
fn parse_watch_line(what: &str, line: &str) -> Vec<Event> {
    let response: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}"));
    response["Events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|event| Event {
            delete: int(event, "type") == 1,
            kv: kv(&event["kv"]),
            prev: event.get("prev_kv").filter(|p| !p.is_null()).map(kv),
        })
        .collect()
}

/// Parses the lease id etcdctl prints in hex (`lease 694d7a2b1c3e4f51 granted …`).
fn lease_hex(hex: &str) -> i64 {
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("lease id {hex:?} is not hex: {e}"))
        as i64
}

/// `lease grant TTL` → (hex id as printed, id).
fn grant(ctl: &Ctl, ttl: &str, expected_ttl: i64) -> (String, i64) {
    let out = ctl.ok(&["lease", "grant", ttl]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words.len(), 5, "lease grant output: {out:?}");
    assert_eq!(words[0], "lease");
    assert_eq!(
        words[1].len(),
        16,
        "etcdctl prints lease ids as %016x: {out:?}"
    );
    assert_eq!(
        words[2..],
        ["granted", "with", &format!("TTL({expected_ttl}s)")],
        "{out:?}"
    );
    let hex = words[1].to_string();
    let id = lease_hex(&hex);
    (hex, id)
}

/// A long-lived etcdctl child (watch, lock, elect): its stdout lines arrive on a channel.
struct CtlChild {
    what: String,
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl CtlChild {
    fn spawn(endpoint: &str, args: &[&str]) -> Self {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg("--dial-timeout=5s")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start etcdctl");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("stderr sink")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        CtlChild {
            what: format!("etcdctl {args:?}"),
            child,
            lines,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr sink").clone()
    }

    /// The next stdout line (bounded wait).
    fn line(&self) -> String {
        match self.lines.recv_timeout(LINE_WAIT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "{}: no output within {LINE_WAIT:?}; stderr: {}",
                    self.what,
                    self.stderr()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{}: stdout closed; stderr: {}", self.what, self.stderr())
            }
        }
    }

    fn take_lines(&self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.line()).collect()
    }

    /// A line already printed, if any (no waiting).
    fn pending_line(&self) -> Option<String> {
        self.lines.try_recv().ok()
    }

    /// Parses JSON watch responses until `n` events were seen.
    fn events(&self, n: usize) -> Vec<Event> {
        self.events_where(n, |_| true)
    }

    /// Parses JSON watch responses until `n` events passing `keep` were seen; drops the others.
    fn events_where(&self, n: usize, keep: impl Fn(&Event) -> bool) -> Vec<Event> {
        let mut events = Vec::new();
        while events.len() < n {
            let line = self.line();
            events.extend(
                parse_watch_line(&self.what, &line)
                    .into_iter()
                    .filter(|e| keep(e)),
            );
        }
        assert_eq!(
            events.len(),
            n,
            "{}: more events than expected: {events:#?}",
            self.what
        );
        events
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.what);
    }

    /// Waits (bounded) for the child to exit.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LINE_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit; stderr: {}",
                self.what,
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CtlChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls (bounded) until `done` holds; panics with `what` otherwise.
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Starts a server, or returns None (loudly) when etcdctl is missing outside CI.
fn start() -> Option<Cairn> {
    start_with(&[])
}

fn start_with(flags: &[&str]) -> Option<Cairn> {
    require_tool("etcdctl").then(|| Cairn::start_with(flags))
}

// ---------------------------------------------------------------------------------------------
// put / get
// ---------------------------------------------------------------------------------------------

#[test]
fn put_get_plain_json_and_fields_output() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);

    let empty = ctl.json(&["get", "foo"]);
    assert_eq!(
        revision(&empty),
        1,
        "a fresh etcd store is at revision 1: {empty}"
    );
    assert!(kvs(&empty).is_empty());
    assert_eq!(int(&empty, "count"), 0);
    assert_eq!(
        ctl.ok(&["get", "foo"]),
        "",
        "get of an absent key prints nothing"
    );

    assert_eq!(ctl.ok(&["put", "foo", "bar"]), "OK\n");
    assert_eq!(ctl.ok(&["get", "foo"]), "foo\nbar\n");
    let got = ctl.json(&["get", "foo"]);
    assert_eq!(revision(&got), 2);
    assert_eq!(kvs(&got), [Kv::new("foo", "bar", 2, 2, 1)]);
    assert_eq!(int(&got, "count"), 1);
    assert_eq!(got.get("more"), None, "more is false (omitted): {got}");

    assert_eq!(
        ctl.ok(&["put", "foo", "bar2", "--prev-kv"]),
        "OK\nfoo\nbar\n"
    );
    let put = ctl.json(&["put", "foo", "bar3", "--prev-kv"]);
    assert_eq!(revision(&put), 4);
    assert_eq!(kv(&put["prev_kv"]), Kv::new("foo", "bar2", 2, 3, 2));
    let put = ctl.json(&["put", "other", "x"]);
    assert_eq!(revision(&put), 5);
    assert!(
        put.get("prev_kv").is_none(),
        "no prev_kv unless asked: {put}"
    );

    assert_eq!(
        kvs(&ctl.json(&["get", "foo"])),
        [Kv::new("foo", "bar3", 2, 4, 3)]
    );
    assert_eq!(ctl.ok(&["get", "foo", "--print-value-only"]), "bar3\n");
    assert_eq!(ctl.ok(&["get", "foo", "--keys-only"]), "foo\n\n");

    let fields = ctl.ok(&["get", "foo", "-w", "fields"]);
    for line in [
        "\"Revision\" : 5",
        "\"Key\" : \"foo\"",
        "\"CreateRevision\" : 2",
        "\"ModRevision\" : 4",
        "\"Version\" : 3",
        "\"Value\" : \"bar3\"",
        "\"Lease\" : 0",
        "\"More\" : false",
        "\"Count\" : 1",
    ] {
        assert!(
            fields.lines().any(|l| l == line),
            "missing {line:?} in fields output:\n{fields}"
        );
    }

    // An empty value is a value.
    assert_eq!(ctl.ok(&["put", "empty", ""]), "OK\n");
    assert_eq!(ctl.ok(&["get", "empty"]), "empty\n\n");
    assert_eq!(
        kvs(&ctl.json(&["get", "empty"])),
        [Kv::new("empty", "", 6, 6, 1)]
    );

    // A value from stdin (etcdctl reads it when no value argument is given).
    assert_eq!(ctl.ok_input(&["put", "stdin-key"], "from stdin"), "OK\n");
    assert_eq!(
        ctl.ok(&["get", "stdin-key", "--print-value-only"]),
        "from stdin\n"
    );
    assert_eq!(ctl.revision(), 7);
}

/// Writes the fixture of the range and sort tests, at fixed revisions:
///
/// ```text
/// rev  2: s/c=x2   3: s/a=x4   4: s/d=x1   5: s/b=x3   6,7: s/d=x1   8: s/a=x4   9,10,11: s/c=x2
/// key      value  create  mod  version
/// s/a      x4     3       8    2
/// s/b      x3     5       5    1
/// s/c      x2     2       11   4
/// s/d      x1     4       7    3
/// ```
fn sort_fixture(ctl: &Ctl) {
    for (key, value) in [
        ("s/c", "x2"),
        ("s/a", "x4"),
        ("s/d", "x1"),
        ("s/b", "x3"),
        ("s/d", "x1"),
        ("s/d", "x1"),
        ("s/a", "x4"),
        ("s/c", "x2"),
        ("s/c", "x2"),
        ("s/c", "x2"),
    ] {
        assert_eq!(ctl.ok(&["put", key, value]), "OK\n");
    }
    assert_eq!(ctl.revision(), 11);
}

#[test]
fn get_range_prefix_from_key_limit_rev_and_output_flags() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    sort_fixture(&ctl);
    assert_eq!(ctl.ok(&["put", "t", "outside"]), "OK\n");

    let all = ctl.json(&["get", "s/", "--prefix"]);
    assert_eq!(revision(&all), 12);
    assert_eq!(
        kvs(&all),
        [
            Kv::new("s/a", "x4", 3, 8, 2),
            Kv::new("s/b", "x3", 5, 5, 1),
            Kv::new("s/c", "x2", 2, 11, 4),
            Kv::new("s/d", "x1", 4, 7, 3),
        ]
    );
    assert_eq!(int(&all, "count"), 4);

    // Plain output as users see it.
    assert_eq!(
        ctl.ok(&["get", "s/", "--prefix"]),
        "s/a\nx4\ns/b\nx3\ns/c\nx2\ns/d\nx1\n"
    );
    assert_eq!(
        ctl.ok(&["get", "s/", "--prefix", "--keys-only"]),
        "s/a\n\ns/b\n\ns/c\n\ns/d\n\n"
    );
    assert_eq!(
        ctl.ok(&["get", "s/", "--prefix", "--print-value-only"]),
        "x4\nx3\nx2\nx1\n"
    );
    let keys_only = ctl.json(&["get", "s/", "--prefix", "--keys-only"]);
    for kv in keys_only["kvs"].as_array().expect("kvs") {
        assert!(
            kv.get("value").is_none(),
            "--keys-only must not return values: {kv}"
        );
    }
    assert_eq!(int(&keys_only, "count"), 4);

    // Range end argument: [key, range_end).
    assert_eq!(ctl.keys(&["get", "s/b", "s/d"]), ["s/b", "s/c"]);
    assert_eq!(ctl.ok(&["get", "s/b", "s/d"]), "s/b\nx3\ns/c\nx2\n");
    // --from-key: every key >= the given key.
    assert_eq!(ctl.keys(&["get", "s/c", "--from-key"]), ["s/c", "s/d", "t"]);
    assert_eq!(
        ctl.keys(&["get", "", "--from-key"]),
        ["s/a", "s/b", "s/c", "s/d", "t"]
    );

    // --limit: count is the whole range, more is set.
    let limited = ctl.json(&["get", "s/", "--prefix", "--limit", "2"]);
    assert_eq!(
        kvs(&limited)
            .iter()
            .map(|k| k.key.as_str())
            .collect::<Vec<_>>(),
        ["s/a", "s/b"]
    );
    assert_eq!(int(&limited, "count"), 4);
    assert_eq!(limited["more"], Value::Bool(true), "{limited}");
    let exact = ctl.json(&["get", "s/", "--prefix", "--limit", "4"]);
    assert_eq!(
        exact.get("more"),
        None,
        "a limit equal to the count is not cut: {exact}"
    );
    let from_key_limited = ctl.json(&["get", "s/b", "--from-key", "--limit", "1"]);
    assert_eq!(kvs(&from_key_limited), [Kv::new("s/b", "x3", 5, 5, 1)]);
    assert_eq!(int(&from_key_limited, "count"), 4);

    // --rev: the store as of an older revision (header still says the current revision).
    let old = ctl.json(&["get", "s/", "--prefix", "--rev", "4"]);
    assert_eq!(revision(&old), 12);
    assert_eq!(
        kvs(&old),
        [
            Kv::new("s/a", "x4", 3, 3, 1),
            Kv::new("s/c", "x2", 2, 2, 1),
            Kv::new("s/d", "x1", 4, 4, 1)
        ]
    );
    let old_limited = ctl.json(&["get", "s/", "--prefix", "--rev", "4", "--limit", "1"]);
    assert_eq!(kvs(&old_limited), [Kv::new("s/a", "x4", 3, 3, 1)]);
    assert_eq!(int(&old_limited, "count"), 3);
    assert_eq!(old_limited["more"], Value::Bool(true));
    assert_eq!(ctl.ok(&["get", "s/d", "--rev", "6"]), "s/d\nx1\n");
    assert_eq!(
        kvs(&ctl.json(&["get", "s/d", "--rev", "6"])),
        [Kv::new("s/d", "x1", 4, 6, 2)]
    );
    assert!(
        kvs(&ctl.json(&["get", "s/b", "--rev", "4"])).is_empty(),
        "s/b was created at 5"
    );
    assert!(
        kvs(&ctl.json(&["get", "t", "--rev", "11"])).is_empty(),
        "t was created at 12"
    );

    // Serializable reads answer the same on one member.
    assert_eq!(
        kvs(&ctl.json(&["get", "s/", "--prefix", "--consistency=s"])),
        kvs(&all)
    );
    assert_eq!(ctl.ok(&["get", "s/a", "--consistency=s"]), "s/a\nx4\n");
    assert_eq!(ctl.revision(), 12);
}

#[test]
fn get_sort_by_every_target_and_order() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    sort_fixture(&ctl);

    let cases: &[(&[&str], [&str; 4])] = &[
        (
            &["--sort-by=KEY", "--order=ASCEND"],
            ["s/a", "s/b", "s/c", "s/d"],
        ),
        (
            &["--sort-by=KEY", "--order=DESCEND"],
            ["s/d", "s/c", "s/b", "s/a"],
        ),
        (
            &["--sort-by=VALUE", "--order=ASCEND"],
            ["s/d", "s/c", "s/b", "s/a"],
        ),
        (
            &["--sort-by=VALUE", "--order=DESCEND"],
            ["s/a", "s/b", "s/c", "s/d"],
        ),
        (
            &["--sort-by=CREATE", "--order=ASCEND"],
            ["s/c", "s/a", "s/d", "s/b"],
        ),
        (
            &["--sort-by=CREATE", "--order=DESCEND"],
            ["s/b", "s/d", "s/a", "s/c"],
        ),
        (
            &["--sort-by=MODIFY", "--order=ASCEND"],
            ["s/b", "s/d", "s/a", "s/c"],
        ),
        (
            &["--sort-by=MODIFY", "--order=DESCEND"],
            ["s/c", "s/a", "s/d", "s/b"],
        ),
        (
            &["--sort-by=VERSION", "--order=ASCEND"],
            ["s/b", "s/a", "s/d", "s/c"],
        ),
        (
            &["--sort-by=VERSION", "--order=DESCEND"],
            ["s/c", "s/d", "s/a", "s/b"],
        ),
        // A sort target without an order: etcdctl sends SortOrder NONE, the server sorts ascending.
        (&["--sort-by=VALUE"], ["s/d", "s/c", "s/b", "s/a"]),
        (&["--sort-by=CREATE"], ["s/c", "s/a", "s/d", "s/b"]),
        (&["--sort-by=MODIFY"], ["s/b", "s/d", "s/a", "s/c"]),
        (&["--sort-by=VERSION"], ["s/b", "s/a", "s/d", "s/c"]),
        // An order without a target sorts by key.
        (&["--order=DESCEND"], ["s/d", "s/c", "s/b", "s/a"]),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["get", "s/", "--prefix"];
        args.extend_from_slice(flags);
        assert_eq!(ctl.keys(&args), expected, "etcdctl {args:?}");
        let mut serializable = args.clone();
        serializable.push("--consistency=s");
        assert_eq!(
            ctl.keys(&serializable),
            expected,
            "etcdctl {serializable:?}"
        );
    }

    // The limit applies after sorting.
    let top = ctl.json(&[
        "get",
        "s/",
        "--prefix",
        "--sort-by=MODIFY",
        "--order=DESCEND",
        "--limit",
        "2",
    ]);
    assert_eq!(
        kvs(&top),
        [
            Kv::new("s/c", "x2", 2, 11, 4),
            Kv::new("s/a", "x4", 3, 8, 2)
        ]
    );
    assert_eq!(int(&top, "count"), 4);
    assert_eq!(top["more"], Value::Bool(true));
    let last = ctl.json(&["get", "s/", "--prefix", "--order=DESCEND", "--limit", "2"]);
    assert_eq!(
        kvs(&last)
            .iter()
            .map(|k| k.key.as_str())
            .collect::<Vec<_>>(),
        ["s/d", "s/c"]
    );
    assert_eq!(last["more"], Value::Bool(true));

    // Sorting a historical read: at revision 7 the mod revisions are c=2, a=3, b=5, d=7.
    assert_eq!(
        ctl.keys(&[
            "get",
            "s/",
            "--prefix",
            "--rev",
            "7",
            "--sort-by=MODIFY",
            "--order=DESCEND"
        ]),
        ["s/d", "s/b", "s/a", "s/c"]
    );
}

/// etcdctl 3.4 has no `--count-only` (3.5 added it), so the flag is driven through the
/// `etcd-client` crate, and through etcdctl too when the installed one knows the flag.
#[test]
fn get_count_only() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    sort_fixture(&ctl);
    assert_eq!(ctl.ok(&["put", "t", "outside"]), "OK\n");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (count, kv_count, more, header_revision) = runtime.block_on(async {
        let mut client = etcd_client::Client::connect([server.endpoint()], None)
            .await
            .expect("connect");
        let options = etcd_client::GetOptions::new()
            .with_prefix()
            .with_count_only();
        let response = client
            .get("s/", Some(options))
            .await
            .expect("count-only get");
        (
            response.count(),
            response.kvs().len(),
            response.more(),
            response.header().expect("header").revision(),
        )
    });
    assert_eq!((count, kv_count, more, header_revision), (4, 0, false, 12));

    let help = ctl.ok(&["get", "--help"]);
    if help.contains("--count-only") {
        let counted = ctl.json(&["get", "s/", "--prefix", "--count-only"]);
        assert_eq!(int(&counted, "count"), 4);
        assert!(kvs(&counted).is_empty(), "{counted}");
    }
}

#[test]
fn put_with_lease_ignore_value_ignore_lease() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    let (hex1, lease1) = grant(&ctl, "100", 100);
    let (hex2, lease2) = grant(&ctl, "200", 200);
    assert_eq!(ctl.revision(), 1, "lease grants do not change the revision");

    assert_eq!(
        ctl.ok(&["put", "iv", "one", &format!("--lease={hex1}")]),
        "OK\n"
    );
    assert_eq!(
        kvs(&ctl.json(&["get", "iv"])),
        [Kv::new("iv", "one", 2, 2, 1).with_lease(lease1)]
    );

    // --ignore-value: keep the value, change the lease.
    assert_eq!(
        ctl.ok(&["put", "iv", "--ignore-value", &format!("--lease={hex2}")]),
        "OK\n"
    );
    assert_eq!(
        kvs(&ctl.json(&["get", "iv"])),
        [Kv::new("iv", "one", 2, 3, 2).with_lease(lease2)]
    );

    // --ignore-lease: keep the lease, change the value.
    assert_eq!(ctl.ok(&["put", "iv", "two", "--ignore-lease"]), "OK\n");
    assert_eq!(
        kvs(&ctl.json(&["get", "iv"])),
        [Kv::new("iv", "two", 2, 4, 3).with_lease(lease2)]
    );

    // A plain put detaches the lease.
    assert_eq!(ctl.ok(&["put", "iv", "three"]), "OK\n");
    assert_eq!(
        kvs(&ctl.json(&["get", "iv"])),
        [Kv::new("iv", "three", 2, 5, 4)]
    );
    let ttl = ctl.json(&["lease", "timetolive", &hex2, "--keys"]);
    assert!(
        ttl.get("keys").is_none_or(Value::is_null),
        "iv no longer belongs to the lease: {ttl}"
    );

    // Both flags need an existing key; an unknown lease is refused; nothing is written.
    assert_eq!(
        ctl.err(&["put", "missing", "--ignore-value"]),
        "Error: etcdserver: key not found"
    );
    assert_eq!(
        ctl.err(&["put", "missing", "v", "--ignore-lease"]),
        "Error: etcdserver: key not found"
    );
    assert_eq!(
        ctl.err(&["put", "x", "v", "--lease=1234abcd"]),
        "Error: etcdserver: requested lease not found"
    );
    assert_eq!(ctl.revision(), 5);
    assert!(
        kvs(&ctl.json(&["get", "", "--from-key", "--keys-only"]))
            .iter()
            .all(|kv| kv.key == "iv")
    );
}

#[test]
fn del_key_range_prefix_from_key_and_prev_kv() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    for (key, value) in [
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("p/1", "x"),
        ("p/2", "y"),
        ("q", "z"),
    ] {
        ctl.ok(&["put", key, value]);
    }
    assert_eq!(ctl.revision(), 7);

    // Absent key: 0 deleted, no new revision.
    assert_eq!(ctl.ok(&["del", "nothing"]), "0\n");
    let none = ctl.json(&["del", "nothing"]);
    assert_eq!(revision(&none), 7);
    assert_eq!(int(&none, "deleted"), 0);

    // Range [a, c) with prev kvs.
    let ranged = ctl.json(&["del", "a", "c", "--prev-kv"]);
    assert_eq!(revision(&ranged), 8);
    assert_eq!(int(&ranged, "deleted"), 2);
    let prev: Vec<Kv> = ranged["prev_kvs"]
        .as_array()
        .expect("prev_kvs")
        .iter()
        .map(kv)
        .collect();
    assert_eq!(
        prev,
        [Kv::new("a", "1", 2, 2, 1), Kv::new("b", "2", 3, 3, 1)]
    );
    assert_eq!(
        ctl.keys(&["get", "", "--from-key"]),
        ["c", "p/1", "p/2", "q"]
    );

    // --prefix, plain output with --prev-kv: the count then each deleted pair.
    assert_eq!(
        ctl.ok(&["del", "p/", "--prefix", "--prev-kv"]),
        "2\np/1\nx\np/2\ny\n"
    );
    assert_eq!(ctl.revision(), 9);

    // Single key.
    assert_eq!(ctl.ok(&["del", "c"]), "1\n");
    assert_eq!(ctl.revision(), 10);

    // --from-key.
    ctl.ok(&["put", "r", "1"]);
    ctl.ok(&["put", "s", "2"]);
    assert_eq!(ctl.ok(&["del", "r", "--from-key"]), "2\n");
    assert_eq!(ctl.keys(&["get", "", "--from-key"]), ["q"]);
    assert_eq!(ctl.revision(), 13);

    // The history of a deleted key is still readable, and a re-created key starts a new life.
    assert_eq!(
        kvs(&ctl.json(&["get", "a", "--rev", "7"])),
        [Kv::new("a", "1", 2, 2, 1)]
    );
    assert!(kvs(&ctl.json(&["get", "a", "--rev", "8"])).is_empty());
    ctl.ok(&["put", "a", "again"]);
    assert_eq!(
        kvs(&ctl.json(&["get", "a"])),
        [Kv::new("a", "again", 14, 14, 1)]
    );
}

// ---------------------------------------------------------------------------------------------
// txn
// ---------------------------------------------------------------------------------------------

#[test]
fn txn_interactive_success_and_failure_branches() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    ctl.ok(&["put", "foo", "bar"]);
    ctl.ok(&["put", "foo", "bar2"]);
    assert_eq!(ctl.revision(), 3);

    // Success: both compares hold; the put and the get run in one revision.
    let out = ctl.ok_input(
        &["txn"],
        "value(\"foo\") = \"bar2\"\nversion(\"foo\") = \"2\"\n\nput foo bar3\nget foo\n\nput nope x\n\n",
    );
    assert_eq!(out, "SUCCESS\n\nOK\n\nfoo\nbar3\n");
    assert_eq!(
        kvs(&ctl.json(&["get", "foo"])),
        [Kv::new("foo", "bar3", 2, 4, 3)]
    );
    assert!(
        kvs(&ctl.json(&["get", "nope"])).is_empty(),
        "the failure branch must not run"
    );
    assert_eq!(ctl.revision(), 4);

    // Failure, JSON: the else branch runs; its get sees the store before its put.
    let failed = ctl.json_input(
        &["txn"],
        "mod(\"foo\") > \"100\"\n\nput foo nope\n\nget foo\nput fail yes\n\n",
    );
    assert_eq!(revision(&failed), 5);
    assert_eq!(
        failed.get("succeeded"),
        None,
        "succeeded is false (omitted): {failed}"
    );
    let responses = failed["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 2, "{failed}");
    let range = &responses[0]["Response"]["ResponseRange"];
    assert_eq!(kvs(range), [Kv::new("foo", "bar3", 2, 4, 3)], "{failed}");
    assert_eq!(int(range, "count"), 1);
    assert!(
        responses[1]["Response"]["ResponsePut"].is_object(),
        "{failed}"
    );
    assert_eq!(
        kvs(&ctl.json(&["get", "fail"])),
        [Kv::new("fail", "yes", 5, 5, 1)]
    );
    assert_eq!(
        kvs(&ctl.json(&["get", "foo"])),
        [Kv::new("foo", "bar3", 2, 4, 3)]
    );

    // Create-if-absent, twice: the second sees the key and takes the failure branch.
    let created = ctl.ok_input(&["txn"], "create(\"zzz\") = \"0\"\n\nput zzz first\n\n\n");
    assert_eq!(created, "SUCCESS\n\nOK\n");
    let exists = ctl.ok_input(
        &["txn"],
        "create(\"zzz\") = \"0\"\n\nput zzz second\n\nget zzz\n\n",
    );
    assert_eq!(exists, "FAILURE\n\nzzz\nfirst\n");
    assert_eq!(ctl.revision(), 6, "a txn that only reads adds no revision");

    // Several writes in one txn share one revision; delete with prev kv in a txn.
    let multi = ctl.json_input(
        &["txn"],
        "value(\"zzz\") = \"first\"\n\nput m1 a\nput m2 b\ndel zzz\n\n\n",
    );
    assert_eq!(multi["succeeded"], Value::Bool(true), "{multi}");
    assert_eq!(revision(&multi), 7);
    assert_eq!(
        kvs(&ctl.json(&["get", "m", "--prefix"])),
        [Kv::new("m1", "a", 7, 7, 1), Kv::new("m2", "b", 7, 7, 1)]
    );
    let deleted = &multi["responses"][2]["Response"]["ResponseDeleteRange"];
    assert_eq!(int(deleted, "deleted"), 1, "{multi}");
    let out = ctl.ok_input(
        &["txn"],
        "version(\"m1\") = \"1\"\n\ndel m --prefix --prev-kv\n\n\n",
    );
    assert_eq!(out, "SUCCESS\n\n2\nm1\na\nm2\nb\n");
    assert_eq!(ctl.revision(), 8);
}

#[test]
fn txn_compares_on_value_version_create_and_mod() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    ctl.ok(&["put", "c/k", "v1"]);
    ctl.ok(&["put", "c/k", "v2"]);
    // c/k: value v2, version 2, create 2, mod 3; c/missing does not exist.
    let cases = [
        ("value(\"c/k\") = \"v2\"", true),
        ("value(\"c/k\") = \"v1\"", false),
        ("value(\"c/k\") > \"v1\"", true),
        ("value(\"c/k\") < \"v1\"", false),
        ("value(\"c/k\") != \"v2\"", false),
        ("val(\"c/k\") != \"zz\"", true),
        ("version(\"c/k\") = \"2\"", true),
        ("version(\"c/k\") < \"2\"", false),
        ("ver(\"c/k\") > \"1\"", true),
        ("create(\"c/k\") = \"2\"", true),
        ("create(\"c/k\") > \"2\"", false),
        ("c(\"c/k\") != \"3\"", true),
        ("mod(\"c/k\") = \"3\"", true),
        ("mod(\"c/k\") > \"3\"", false),
        ("m(\"c/k\") < \"4\"", true),
        // An absent key has version, create and mod 0, and no value: a value compare fails.
        ("version(\"c/missing\") = \"0\"", true),
        ("create(\"c/missing\") = \"0\"", true),
        ("mod(\"c/missing\") = \"0\"", true),
        ("mod(\"c/missing\") > \"0\"", false),
        ("value(\"c/missing\") != \"x\"", false),
        ("value(\"c/missing\") = \"\"", false),
        // All compares must hold.
        (
            "value(\"c/k\") = \"v2\"\nversion(\"c/k\") = \"2\"\ncreate(\"c/k\") = \"2\"\nmod(\"c/k\") = \"3\"",
            true,
        ),
        (
            "value(\"c/k\") = \"v2\"\nversion(\"c/k\") = \"2\"\ncreate(\"c/k\") = \"2\"\nmod(\"c/k\") = \"2\"",
            false,
        ),
    ];
    for (compares, expected) in cases {
        let out = ctl.ok_input(&["txn"], &format!("{compares}\n\nget c/k\n\n\n"));
        let (verdict, rest) = if expected {
            ("SUCCESS", "\n\nc/k\nv2\n")
        } else {
            ("FAILURE", "\n")
        };
        assert_eq!(out, format!("{verdict}{rest}"), "txn compares:\n{compares}");
    }
    assert_eq!(ctl.revision(), 3, "read-only txns add no revision");
}

// ---------------------------------------------------------------------------------------------
// watch
// ---------------------------------------------------------------------------------------------

#[test]
fn watch_prefix_with_prev_kv_from_a_revision_plain_output() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    ctl.ok(&["put", "w/0", "before"]);
    // Starting at revision 3 makes the test independent of when the watch is established.
    let watch = CtlChild::spawn(
        &server.endpoint(),
        &["watch", "w/", "--prefix", "--prev-kv", "--rev", "3"],
    );
    ctl.ok(&["put", "w/1", "a"]); // 3
    ctl.ok(&["put", "w/1", "b"]); // 4
    ctl.ok(&["put", "other", "x"]); // 5: outside the prefix
    ctl.ok(&["del", "w/1"]); // 6
    ctl.ok(&["put", "w/0", "after"]); // 7
    // Simple format: the event type, then prev kv (when there is one), then the kv.
    assert_eq!(
        watch.take_lines(17),
        [
            "PUT", "w/1", "a", //
            "PUT", "w/1", "a", "w/1", "b", //
            "DELETE", "w/1", "b", "w/1", "", //
            "PUT", "w/0", "before", "w/0",
        ]
    );
    assert_eq!(watch.line(), "after");
    assert_eq!(watch.pending_line(), None, "nothing else was watched");
}

#[test]
fn watch_json_history_replay_and_live_events() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    ctl.ok(&["put", "w/1", "a"]); // 2
    ctl.ok(&["put", "w/2", "x"]); // 3
    ctl.ok(&["put", "w/1", "b"]); // 4
    ctl.ok(&["del", "w/1"]); // 5

    // A single key from revision 1: the past is replayed from history, without prev kv.
    let single = CtlChild::spawn(
        &server.endpoint(),
        &["watch", "w/1", "--rev", "1", "-w", "json"],
    );
    assert_eq!(
        single.events(3),
        [
            put_event(Kv::new("w/1", "a", 2, 2, 1), None),
            put_event(Kv::new("w/1", "b", 2, 4, 2), None),
            delete_event("w/1", 5, None),
        ]
    );
    // Range [w/1, w/3) from revision 3 with prev kv.
    let ranged = CtlChild::spawn(
        &server.endpoint(),
        &[
            "watch",
            "w/1",
            "w/3",
            "--rev",
            "3",
            "--prev-kv",
            "-w",
            "json",
        ],
    );
    assert_eq!(
        ranged.events(3),
        [
            put_event(Kv::new("w/2", "x", 3, 3, 1), None),
            put_event(
                Kv::new("w/1", "b", 2, 4, 2),
                Some(Kv::new("w/1", "a", 2, 2, 1))
            ),
            delete_event("w/1", 5, Some(Kv::new("w/1", "b", 2, 4, 2))),
        ]
    );

    // A watch without a start revision sees only what happens after it is established; a marker
    // key is written until the watch reports it, then the real writes follow.
    let live = CtlChild::spawn(
        &server.endpoint(),
        &["watch", "live/", "--prefix", "--prev-kv", "-w", "json"],
    );
    let mut established = false;
    for attempt in 0..100 {
        ctl.ok(&["put", "live/sync", &attempt.to_string()]);
        if let Ok(line) = live.lines.recv_timeout(Duration::from_millis(300)) {
            let events = parse_watch_line("live watch", &line);
            assert!(events.iter().all(|e| e.kv.key == "live/sync"), "{events:?}");
            established = true;
            break;
        }
    }
    assert!(established, "the watch never reported an event");
    let before = ctl.revision();
    ctl.ok(&["put", "live/k", "1"]);
    ctl.ok(&["put", "live/k", "2"]);
    ctl.ok(&["del", "live/k"]);
    assert_eq!(
        live.events_where(3, |e| e.kv.key != "live/sync"),
        [
            put_event(Kv::new("live/k", "1", before + 1, before + 1, 1), None),
            put_event(
                Kv::new("live/k", "2", before + 1, before + 2, 2),
                Some(Kv::new("live/k", "1", before + 1, before + 1, 1))
            ),
            delete_event(
                "live/k",
                before + 3,
                Some(Kv::new("live/k", "2", before + 1, before + 2, 2))
            ),
        ]
    );
    // The earlier watches kept running and saw the live writes of their ranges only.
    ctl.ok(&["put", "w/1", "again"]);
    assert_eq!(
        single.events(1),
        [put_event(
            Kv::new("w/1", "again", before + 4, before + 4, 1),
            None
        )]
    );
    assert_eq!(
        ranged.events(1),
        [put_event(
            Kv::new("w/1", "again", before + 4, before + 4, 1),
            None
        )]
    );
}

// ---------------------------------------------------------------------------------------------
// lease
// ---------------------------------------------------------------------------------------------

#[test]
fn lease_grant_keep_alive_time_to_live_list_and_revoke() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    let (hex, id) = grant(&ctl, "60", 60);
    let other = ctl.json(&["lease", "grant", "100"]);
    assert_eq!(int(&other, "TTL"), 100, "{other}");
    let other_id = int(&other, "ID");
    assert!(other_id > 0 && other_id != id, "{other}");
    let other_hex = format!("{other_id:016x}");

    assert_eq!(
        ctl.ok(&["put", "lk", "v", &format!("--lease={hex}")]),
        "OK\n"
    );
    assert_eq!(
        ctl.ok(&["put", "lk2", "v2", &format!("--lease={hex}")]),
        "OK\n"
    );
    assert_eq!(ctl.revision(), 3);

    let ttl = ctl.ok(&["lease", "timetolive", &hex]);
    let remaining = ttl
        .strip_prefix(&format!("lease {hex} granted with TTL(60s), remaining("))
        .and_then(|rest| rest.strip_suffix("s)\n"))
        .unwrap_or_else(|| panic!("timetolive output: {ttl:?}"));
    let remaining: i64 = remaining.parse().expect("remaining seconds");
    assert!((50..=60).contains(&remaining), "{ttl:?}");
    let with_keys = ctl.ok(&["lease", "timetolive", &hex, "--keys"]);
    assert!(
        with_keys.ends_with(", attached keys([lk lk2])\n")
            || with_keys.ends_with(", attached keys([lk2 lk])\n"),
        "{with_keys:?}"
    );
    let ttl = ctl.json(&["lease", "timetolive", &hex, "--keys"]);
    assert_eq!(int(&ttl, "id"), id);
    assert_eq!(int(&ttl, "granted-ttl"), 60);
    assert!((50..=60).contains(&int(&ttl, "ttl")), "{ttl}");
    let keys: BTreeSet<String> = ttl["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| b64(k.as_str().expect("key")))
        .collect();
    assert_eq!(keys, BTreeSet::from(["lk".to_string(), "lk2".to_string()]));
    assert_eq!(
        kvs(&ctl.json(&["get", "lk"])),
        [Kv::new("lk", "v", 2, 2, 1).with_lease(id)]
    );

    assert_eq!(
        ctl.ok(&["lease", "keep-alive", "--once", &hex]),
        format!("lease {hex} keepalived with TTL(60)\n")
    );
    let kept = ctl.json(&["lease", "keep-alive", "--once", &other_hex]);
    assert_eq!(
        (int(&kept, "ID"), int(&kept, "TTL")),
        (other_id, 100),
        "{kept}"
    );

    let list = ctl.ok(&["lease", "list"]);
    let mut lines = list.lines();
    assert_eq!(lines.next(), Some("found 2 leases"), "{list:?}");
    assert_eq!(
        lines.collect::<BTreeSet<_>>(),
        BTreeSet::from([hex.as_str(), other_hex.as_str()])
    );
    let listed = ctl.json(&["lease", "list"]);
    let ids: BTreeSet<i64> = listed["leases"]
        .as_array()
        .expect("leases")
        .iter()
        .map(|l| int(l, "id"))
        .collect();
    assert_eq!(ids, BTreeSet::from([id, other_id]));

    // Revoking deletes every attached key in one revision.
    assert_eq!(
        ctl.ok(&["lease", "revoke", &hex]),
        format!("lease {hex} revoked\n")
    );
    assert_eq!(ctl.revision(), 4);
    assert!(kvs(&ctl.json(&["get", "lk", "lk3"])).is_empty());
    assert_eq!(
        ctl.ok(&["lease", "timetolive", &hex]),
        format!("lease {hex} already expired\n")
    );
    let gone = ctl.json(&["lease", "timetolive", &hex]);
    assert_eq!(int(&gone, "ttl"), -1, "{gone}");
    assert_eq!(
        ctl.err(&["lease", "revoke", &hex]),
        "Error: failed to revoke lease (etcdserver: requested lease not found)"
    );
    assert_eq!(
        ctl.err(&["lease", "keep-alive", "--once", &hex]),
        "Error: etcdserver: requested lease not found"
    );
    assert_eq!(
        ctl.ok(&["lease", "list"]),
        format!("found 1 leases\n{other_hex}\n")
    );

    // Revoking a lease without keys writes nothing.
    assert_eq!(
        ctl.ok(&["lease", "revoke", &other_hex]),
        format!("lease {other_hex} revoked\n")
    );
    assert_eq!(ctl.revision(), 4);
    assert_eq!(ctl.ok(&["lease", "list"]), "found 0 leases\n");

    // etcd raises a TTL below its minimum (1.5 election timeouts, rounded up: 2s by default).
    grant(&ctl, "1", 2);
}

#[test]
fn lease_keep_alive_stream_extends_the_lease_until_stopped() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    let (hex, _) = grant(&ctl, "3", 3);
    ctl.ok(&["put", "ka", "v", &format!("--lease={hex}")]);
    let keeper = CtlChild::spawn(&server.endpoint(), &["lease", "keep-alive", &hex]);
    // etcdctl renews every TTL/3: four renewals span more than one TTL.
    let started = Instant::now();
    for _ in 0..4 {
        assert_eq!(keeper.line(), format!("lease {hex} keepalived with TTL(3)"));
    }
    wait_until("one TTL to pass", Duration::from_secs(10), || {
        started.elapsed() > Duration::from_secs(4)
    });
    assert_eq!(
        ctl.ok(&["get", "ka"]),
        "ka\nv\n",
        "a kept-alive lease must not expire"
    );
    let ttl = ctl.json(&["lease", "timetolive", &hex]);
    assert!(int(&ttl, "ttl") > 0, "{ttl}");
    drop(keeper);
    wait_until(
        "the lease to expire once renewals stop",
        Duration::from_secs(20),
        || ctl.ok(&["get", "ka"]).is_empty(),
    );
    assert_eq!(
        ctl.ok(&["lease", "timetolive", &hex]),
        format!("lease {hex} already expired\n")
    );
}

#[test]
fn lease_expires_on_its_own_and_deletes_its_keys_at_one_revision() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    let (hex, id) = grant(&ctl, "2", 2);
    ctl.ok(&["put", "e/1", "a", &format!("--lease={hex}")]); // 2
    ctl.ok(&["put", "e/2", "b", &format!("--lease={hex}")]); // 3
    ctl.ok(&["put", "e/3", "kept"]); // 4
    let watch = CtlChild::spawn(
        &server.endpoint(),
        &[
            "watch",
            "e/",
            "--prefix",
            "--prev-kv",
            "--rev",
            "5",
            "-w",
            "json",
        ],
    );

    wait_until(
        "the expired lease's keys to disappear",
        Duration::from_secs(20),
        || ctl.keys(&["get", "e/", "--prefix"]) == ["e/3"],
    );
    assert_eq!(
        ctl.revision(),
        5,
        "an expired lease is revoked in one write"
    );
    let mut events = watch.events(2);
    events.sort_by(|a, b| a.kv.key.cmp(&b.kv.key));
    assert_eq!(
        events,
        [
            delete_event("e/1", 5, Some(Kv::new("e/1", "a", 2, 2, 1).with_lease(id))),
            delete_event("e/2", 5, Some(Kv::new("e/2", "b", 3, 3, 1).with_lease(id))),
        ]
    );
    assert_eq!(
        ctl.ok(&["lease", "timetolive", &hex]),
        format!("lease {hex} already expired\n")
    );
    assert_eq!(ctl.ok(&["lease", "list"]), "found 0 leases\n");
}

// ---------------------------------------------------------------------------------------------
// compaction, defrag, endpoint, member
// ---------------------------------------------------------------------------------------------

const COMPACTED: &str = "Error: etcdserver: mvcc: required revision has been compacted";
const FUTURE: &str = "Error: etcdserver: mvcc: required revision is a future revision";

#[test]
fn compaction_errors_and_watch_below_the_compacted_revision() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    for value in ["v1", "v2", "v3", "v4", "v5"] {
        ctl.ok(&["put", "foo", value]); // revisions 2..=6
    }
    assert_eq!(ctl.ok(&["compaction", "4"]), "compacted revision 4\n");
    assert_eq!(ctl.revision(), 6, "compaction writes no revision");

    assert_eq!(ctl.err(&["get", "foo", "--rev", "3"]), COMPACTED);
    assert_eq!(
        ctl.ok(&["get", "foo", "--rev", "4"]),
        "foo\nv3\n",
        "the compacted revision stays readable"
    );
    assert_eq!(
        kvs(&ctl.json(&["get", "foo"])),
        [Kv::new("foo", "v5", 2, 6, 5)]
    );
    assert_eq!(ctl.err(&["compaction", "4"]), COMPACTED);
    assert_eq!(ctl.err(&["compaction", "2"]), COMPACTED);
    assert_eq!(ctl.err(&["compaction", "100"]), FUTURE);
    assert_eq!(ctl.err(&["get", "foo", "--rev", "100"]), FUTURE);

    // A watch starting below the compacted revision is canceled with the compact revision.
    let (ok, out, err) = ctl.run(&["watch", "foo", "--rev", "2"]);
    assert!(!ok);
    assert_eq!(out, "");
    let canceled_line =
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)";
    assert!(err.lines().any(|l| l == canceled_line), "{err:?}");
    assert_eq!(error_line(&err), "Error: watch is canceled by the server");
    let (ok, out, err) = ctl.run(&["watch", "foo", "--rev", "3", "-w", "json"]);
    assert!(!ok);
    assert!(err.lines().any(|l| l == canceled_line), "{err:?}");
    let canceled: Value =
        serde_json::from_str(out.lines().next().expect("a response")).expect("JSON");
    assert_eq!(canceled["CompactRevision"], 4, "{canceled}");
    assert_eq!(canceled["Canceled"], true, "{canceled}");
    assert_eq!(
        canceled["Events"].as_array().map(Vec::len),
        Some(0),
        "{canceled}"
    );
    // From the compacted revision itself the history is still there.
    let watch = CtlChild::spawn(
        &server.endpoint(),
        &["watch", "foo", "--rev", "4", "-w", "json"],
    );
    assert_eq!(
        watch.events(3),
        [
            put_event(Kv::new("foo", "v3", 2, 4, 3), None),
            put_event(Kv::new("foo", "v4", 2, 5, 4), None),
            put_event(Kv::new("foo", "v5", 2, 6, 5), None),
        ]
    );

    assert_eq!(
        ctl.ok(&["compaction", "--physical", "5"]),
        "compacted revision 5\n"
    );
    assert_eq!(ctl.err(&["get", "foo", "--rev", "4"]), COMPACTED);
    let hash = ctl.json(&["endpoint", "hashkv"]);
    assert_eq!(hash[0]["HashKV"]["compact_revision"], 5, "{hash}");
    // Compacting up to the current revision keeps the current values.
    assert_eq!(ctl.ok(&["compaction", "6"]), "compacted revision 6\n");
    assert_eq!(
        kvs(&ctl.json(&["get", "foo"])),
        [Kv::new("foo", "v5", 2, 6, 5)]
    );
    ctl.ok(&["put", "foo", "v6"]);
    assert_eq!(
        kvs(&ctl.json(&["get", "foo"])),
        [Kv::new("foo", "v6", 2, 7, 6)]
    );
}

#[test]
fn defrag_keeps_every_key_and_revision() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    for i in 0..20 {
        ctl.ok(&["put", &format!("d/{i:02}"), &"v".repeat(1000 + i)]);
    }
    ctl.ok(&["del", "d/0", "--prefix"]); // d/00..d/09: revision 22
    ctl.ok(&["compaction", "22"]);
    let before = ctl.json(&["get", "d/", "--prefix"]);
    assert_eq!(
        ctl.ok(&["defrag"]),
        format!(
            "Finished defragmenting etcd member[{}]\n",
            server.endpoint()
        )
    );
    let after = ctl.json(&["get", "d/", "--prefix"]);
    assert_eq!(kvs(&after), kvs(&before));
    assert_eq!(kvs(&after).len(), 10);
    assert_eq!(revision(&after), 22);
    ctl.ok(&["put", "d/new", "x"]);
    assert_eq!(ctl.revision(), 23);
}

/// `X.Y.Z[-pre]` → (X, Y, Z).
fn semver(version: &str) -> (u64, u64, u64) {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<u64> = core
        .split('.')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("version {version:?} is not semver"))
        })
        .collect();
    assert_eq!(parts.len(), 3, "version {version:?} is not semver");
    (parts[0], parts[1], parts[2])
}

#[test]
fn endpoint_status_health_and_hashkv() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    for i in 0..5 {
        ctl.ok(&["put", &format!("k{i}"), "v"]);
    }
    let member_id = ctl.member_id();

    let status = ctl.json(&["endpoint", "status"]);
    assert_eq!(status.as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(status[0]["Endpoint"], server.endpoint().as_str());
    let st = &status[0]["Status"];
    let version = st["version"].as_str().expect("version");
    // kube-apiserver needs >= 3.5.13 to use watch progress requests; etcd 3.4 itself fails this.
    assert!(
        semver(version) >= (3, 5, 13),
        "version {version:?} must be semver >= 3.5.13"
    );
    assert!(int(st, "dbSize") > 0, "{st}");
    assert!(
        int(st, "dbSizeInUse") > 0 && int(st, "dbSizeInUse") <= int(st, "dbSize"),
        "{st}"
    );
    assert_eq!(
        st["leader"].as_u64(),
        Some(member_id),
        "the only member leads: {st}"
    );
    assert_eq!(st["header"]["member_id"].as_u64(), Some(member_id));
    assert_eq!(revision(st), 6);
    let term = st["raftTerm"].as_u64().expect("raftTerm");
    let index = st["raftIndex"].as_u64().expect("raftIndex");
    let applied = st["raftAppliedIndex"].as_u64().expect("raftAppliedIndex");
    assert!(term >= 1, "{st}");
    assert!(
        applied >= 6 && applied <= index,
        "five puts were applied: {st}"
    );
    assert!(
        st.get("errors")
            .is_none_or(|e| e.as_array().is_some_and(Vec::is_empty)),
        "{st}"
    );

    // Plain: endpoint, id, version, size, is leader, is learner, term, index, applied, errors.
    let plain = ctl.ok(&["endpoint", "status"]);
    let fields: Vec<&str> = plain.trim_end_matches('\n').split(", ").collect();
    assert_eq!(fields.len(), 10, "{plain:?}");
    assert_eq!(fields[0], server.endpoint());
    assert_eq!(fields[1], format!("{member_id:x}"));
    assert_eq!(fields[2], version);
    assert_eq!(fields[4..6], ["true", "false"], "{plain:?}");
    assert_eq!(fields[6], term.to_string());
    assert_eq!(fields[9], "", "no errors: {plain:?}");

    let (ok, out, err) = ctl.run(&["endpoint", "health"]);
    assert!(ok, "{out}{err}");
    let healthy = format!(
        "{} is healthy: successfully committed proposal: took = ",
        server.endpoint()
    );
    assert!(err.lines().any(|l| l.starts_with(&healthy)), "{err:?}");
    let health = ctl.json(&["endpoint", "health"]);
    assert_eq!(health[0]["health"], true, "{health}");
    assert_eq!(health[0]["endpoint"], server.endpoint().as_str());

    // HashKV: stable without writes, changed by a write, and a hash at a past revision is fixed.
    let hash_at = |rev: Option<&str>| {
        let mut args = vec!["endpoint", "hashkv"];
        if let Some(rev) = rev {
            args.extend(["--rev", rev]);
        }
        let h = ctl.json(&args);
        assert_eq!(h[0]["Endpoint"], server.endpoint().as_str());
        assert_eq!(
            h[0]["HashKV"]["header"]["member_id"].as_u64(),
            Some(member_id)
        );
        h[0]["HashKV"]["hash"].as_u64().unwrap_or(0)
    };
    let now = hash_at(None);
    assert_eq!(hash_at(None), now);
    assert_eq!(hash_at(Some("6")), now);
    let at4 = hash_at(Some("4"));
    assert_ne!(at4, now, "revisions 5 and 6 wrote keys");
    ctl.ok(&["put", "k9", "v"]);
    assert_ne!(hash_at(None), now);
    assert_eq!(hash_at(Some("6")), now);
    assert_eq!(hash_at(Some("4")), at4);
    let plain = ctl.ok(&["endpoint", "hashkv", "--rev", "6"]);
    assert_eq!(plain, format!("{}, {now}\n", server.endpoint()));
}

#[test]
fn member_list_shows_the_single_member() {
    let Some(server) = start_with(&["--name", "node-one"]) else {
        return;
    };
    let ctl = Ctl::new(&server);
    let member_id = ctl.member_id();
    let peer_url = format!("http://127.0.0.1:{}", server.peer_port);
    assert_eq!(
        ctl.ok(&["member", "list"]),
        format!(
            "{member_id:x}, started, node-one, {peer_url}, {}, false\n",
            server.url()
        )
    );
    let list = ctl.json(&["member", "list"]);
    let members = list["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{list}");
    assert_eq!(members[0]["ID"].as_u64(), Some(member_id));
    assert_eq!(members[0]["name"], "node-one");
    assert_eq!(members[0]["peerURLs"], serde_json::json!([peer_url]));
    assert_eq!(members[0]["clientURLs"], serde_json::json!([server.url()]));
    assert!(
        members[0].get("isLearner").is_none_or(|l| l == false),
        "{list}"
    );
    assert_eq!(list["header"]["member_id"].as_u64(), Some(member_id));
}

#[test]
fn member_update_changes_the_single_members_peer_urls() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    let header = ctl.json(&["get", "cairn-test/absent"])["header"].clone();
    let member_id = header["member_id"].as_u64().expect("member_id");
    let cluster_id = header["cluster_id"].as_u64().expect("cluster_id");
    let id_hex = format!("{member_id:x}");
    // etcdctl prints both ids with %16x (space padded): an id of fewer than 16 hex digits gets
    // a leading space.
    let updated = format!("Member {member_id:16x} updated in cluster {cluster_id:16x}\n");

    let current_peer = format!("http://127.0.0.1:{}", server.peer_port);
    assert_eq!(
        ctl.ok(&[
            "member",
            "update",
            &id_hex,
            &format!("--peer-urls={current_peer}")
        ]),
        updated
    );
    let new_peer = format!("http://127.0.0.1:{}", common::free_port());
    assert_eq!(
        ctl.ok(&[
            "member",
            "update",
            &id_hex,
            &format!("--peer-urls={new_peer}")
        ]),
        updated
    );
    let list = ctl.json(&["member", "list"]);
    assert_eq!(
        list["members"][0]["peerURLs"],
        serde_json::json!([new_peer]),
        "{list}"
    );
    assert_eq!(
        list["members"][0]["clientURLs"],
        serde_json::json!([server.url()]),
        "{list}"
    );
    assert_eq!(
        ctl.err(&[
            "member",
            "update",
            "1234",
            &format!("--peer-urls={new_peer}")
        ]),
        "Error: etcdserver: member not found"
    );
    assert_eq!(ctl.ok(&["put", "still", "serving"]), "OK\n");
}

#[test]
fn move_leader_to_itself_and_to_an_unknown_member() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    let id_hex = format!("{:x}", ctl.member_id());
    assert_eq!(
        ctl.ok(&["move-leader", &id_hex]),
        format!("Leadership transferred from {id_hex} to {id_hex}\n")
    );
    assert_eq!(
        ctl.err(&["move-leader", "1234"]),
        "Error: etcdserver: bad leader transferee"
    );
    assert_eq!(ctl.ok(&["put", "still", "serving"]), "OK\n");
    assert_eq!(ctl.revision(), 2);
}

// ---------------------------------------------------------------------------------------------
// snapshot, alarms
// ---------------------------------------------------------------------------------------------

#[test]
fn snapshot_save_then_cairn_restore_serves_the_same_keys() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    ctl.ok(&["put", "snap/a", "1"]); // 2
    ctl.ok(&["put", "snap/b", "2"]); // 3
    ctl.ok(&["put", "snap/a", "3"]); // 4
    ctl.ok(&["put", "snap/gone", "x"]); // 5
    ctl.ok(&["del", "snap/gone"]); // 6
    let expected = kvs(&ctl.json(&["get", "snap/", "--prefix"]));
    assert_eq!(
        expected,
        [
            Kv::new("snap/a", "3", 2, 4, 2),
            Kv::new("snap/b", "2", 3, 3, 1)
        ]
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("backup.db");
    let file_arg = file.to_str().expect("UTF-8 path");
    assert_eq!(
        ctl.ok(&["snapshot", "save", file_arg]),
        format!("Snapshot saved at {file_arg}\n")
    );
    let size = std::fs::metadata(&file).expect("snapshot file").len();
    assert!(size > 0, "snapshot file is empty");

    let restored_dir = dir.path().join("restored");
    restore(&file, &restored_dir);
    drop(server);

    let restored = Cairn::start_in(&restored_dir, &[]);
    let ctl = Ctl::new(&restored);
    let got = ctl.json(&["get", "snap/", "--prefix"]);
    assert_eq!(
        kvs(&got),
        expected,
        "restored keys keep their revisions and versions"
    );
    assert_eq!(
        revision(&got),
        6,
        "the restored store continues at the snapshot's revision"
    );
    assert!(kvs(&ctl.json(&["get", "snap/gone"])).is_empty());
    ctl.ok(&["put", "snap/c", "new"]);
    assert_eq!(
        kvs(&ctl.json(&["get", "snap/c"])),
        [Kv::new("snap/c", "new", 7, 7, 1)]
    );
}

/// `cairn snapshot restore FILE --data-dir DIR`.
fn restore(file: &Path, data_dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("snapshot")
        .arg("restore")
        .arg(file)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run cairn snapshot restore");
    assert!(
        out.status.success(),
        "cairn snapshot restore failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        data_dir.is_dir(),
        "restore did not create {}",
        data_dir.display()
    );
}

#[test]
fn alarm_list_and_disarm_without_alarms() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    assert_eq!(ctl.ok(&["alarm", "list"]), "");
    assert_eq!(ctl.ok(&["alarm", "disarm"]), "");
    assert_eq!(ctl.ok(&["alarm", "list"]), "");
    assert_eq!(ctl.ok(&["put", "k", "v"]), "OK\n");
}

#[test]
fn nospace_alarm_is_raised_listed_and_disarmed() {
    let Some(server) = start_with(&["--quota-backend-bytes", "2097152"]) else {
        return;
    };
    let ctl = Ctl::new(&server);
    let member_id = ctl.member_id();
    let big = "x".repeat(100_000);
    let mut stored = 0;
    for i in 0..200 {
        let (ok, out, err) = etcdctl_with_input(
            &server.endpoint(),
            &["put", &format!("big/{i:03}")],
            Some(&big),
        );
        if !ok {
            assert_eq!(
                error_line(&err),
                "Error: etcdserver: mvcc: database space exceeded",
                "{out}"
            );
            break;
        }
        stored += 1;
    }
    assert!(
        stored > 0,
        "the first 100 kB value must fit in a 2 MiB quota"
    );
    assert!(stored < 200, "200 x 100 kB never exceeded a 2 MiB quota");

    let nospace = format!("memberID:{member_id} alarm:NOSPACE \n");
    assert_eq!(ctl.ok(&["alarm", "list"]), nospace);
    assert_eq!(
        ctl.err(&["put", "small", "x"]),
        "Error: etcdserver: mvcc: database space exceeded"
    );
    assert_eq!(
        ctl.ok(&["get", "big/000", "--keys-only"]),
        "big/000\n\n",
        "reads still work"
    );

    // Recovery as etcd documents it: delete, compact, defrag, disarm.
    assert_eq!(ctl.ok(&["del", "big/", "--prefix"]), format!("{stored}\n"));
    let current = ctl.revision().to_string();
    ctl.ok(&["compaction", &current]);
    ctl.ok(&["defrag"]);
    assert_eq!(ctl.ok(&["alarm", "disarm"]), nospace);
    assert_eq!(ctl.ok(&["alarm", "list"]), "");
    assert_eq!(ctl.ok(&["put", "small", "x"]), "OK\n");
}

// ---------------------------------------------------------------------------------------------
// lock, elect
// ---------------------------------------------------------------------------------------------

#[test]
fn lock_runs_a_command_and_serialises_holders() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);

    let out = ctl.ok(&[
        "lock",
        "mylock",
        "--",
        "sh",
        "-c",
        "echo \"held $ETCD_LOCK_KEY\"",
    ]);
    assert!(out.starts_with("held mylock/"), "{out:?}");
    assert!(
        ctl.keys(&["get", "mylock/", "--prefix"]).is_empty(),
        "the lock is released after the command"
    );

    // A holder without a command prints its key and waits.
    let holder = CtlChild::spawn(&server.endpoint(), &["lock", "mylock"]);
    let held = holder.line();
    assert!(held.starts_with("mylock/"), "{held:?}");
    let kvs_held = kvs(&ctl.json(&["get", "mylock/", "--prefix"]));
    assert_eq!(kvs_held.len(), 1);
    assert_eq!(kvs_held[0].key, held);
    assert!(
        kvs_held[0].lease != 0,
        "lock keys belong to the session lease"
    );

    // A second locker queues behind the holder (its own key, a later create revision) and waits.
    let mut waiter = CtlChild::spawn(
        &server.endpoint(),
        &["lock", "mylock", "--", "echo", "second"],
    );
    wait_until(
        "the second locker to queue",
        Duration::from_secs(15),
        || ctl.keys(&["get", "mylock/", "--prefix"]).len() == 2,
    );
    let queued = kvs(&ctl.json(&["get", "mylock/", "--prefix", "--sort-by=CREATE"]));
    assert_eq!(queued[0].key, held, "the holder's key is the oldest");
    assert_eq!(
        waiter.pending_line(),
        None,
        "the second locker must wait for the holder"
    );

    holder.signal("INT");
    assert_eq!(waiter.line(), "second");
    assert!(waiter.wait().success());
    wait_until(
        "every lock key to be released",
        Duration::from_secs(15),
        || ctl.keys(&["get", "mylock/", "--prefix"]).is_empty(),
    );
}

#[test]
fn elect_campaign_observe_and_failover() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);

    let first = CtlChild::spawn(&server.endpoint(), &["elect", "myelection", "p1"]);
    let leader_key = first.line();
    assert!(leader_key.starts_with("myelection/"), "{leader_key:?}");
    assert_eq!(first.line(), "p1");
    let stored = kvs(&ctl.json(&["get", "myelection/", "--prefix"]));
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].key.as_str(), stored[0].value.as_str()),
        (leader_key.as_str(), "p1")
    );

    let observer = CtlChild::spawn(&server.endpoint(), &["elect", "myelection", "--listen"]);
    assert_eq!(
        observer.take_lines(2),
        [leader_key.clone(), "p1".to_string()]
    );

    let second = CtlChild::spawn(&server.endpoint(), &["elect", "myelection", "p2"]);
    wait_until(
        "the second candidate to campaign",
        Duration::from_secs(15),
        || ctl.keys(&["get", "myelection/", "--prefix"]).len() == 2,
    );
    assert_eq!(second.pending_line(), None, "only one leader at a time");

    // The leader resigns (SIGINT): the second candidate wins and the observer sees it.
    first.signal("INT");
    let second_key = second.line();
    assert!(
        second_key.starts_with("myelection/") && second_key != leader_key,
        "{second_key:?}"
    );
    assert_eq!(second.line(), "p2");
    assert_eq!(
        observer.take_lines(2),
        [second_key.clone(), "p2".to_string()]
    );
    let stored = kvs(&ctl.json(&["get", "myelection/", "--prefix"]));
    assert_eq!(stored.len(), 1, "the resigned leader's key is gone");
    assert_eq!(stored[0].key, second_key);
}

// ---------------------------------------------------------------------------------------------
// endpoint --cluster
// ---------------------------------------------------------------------------------------------

/// With `--cluster`, etcdctl asks for the member list, then dials each member's client URL as the
/// gRPC target `passthrough:///http://127.0.0.1:PORT`, so its requests carry
/// `:authority: http://127.0.0.1:PORT`, which etcd ignores.
#[test]
fn endpoint_commands_with_cluster_dial_each_members_client_url() {
    let Some(server) = start() else { return };
    let ctl = Ctl::new(&server);
    ctl.ok(&["put", "k", "v"]);
    let member_id = ctl.member_id();
    let url = server.url();

    let status = ctl.json(&["endpoint", "status", "--cluster"]);
    assert_eq!(status.as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(status[0]["Endpoint"], url.as_str());
    let st = &status[0]["Status"];
    assert_eq!(st["header"]["member_id"].as_u64(), Some(member_id), "{st}");
    assert_eq!(st["leader"].as_u64(), Some(member_id), "{st}");
    assert_eq!(revision(st), 2);
    assert!(int(st, "dbSize") > 0, "{st}");
    assert!(st["raftTerm"].as_u64().is_some_and(|t| t >= 1), "{st}");
    let plain = ctl.ok(&["endpoint", "status", "--cluster"]);
    assert!(
        plain.starts_with(&format!("{url}, {member_id:x}, ")),
        "{plain:?}"
    );

    let (ok, out, err) = ctl.run(&["endpoint", "health", "--cluster"]);
    assert!(ok, "{out}{err}");
    let healthy = format!("{url} is healthy: successfully committed proposal: took = ");
    assert!(err.lines().any(|l| l.starts_with(&healthy)), "{err:?}");
    let health = ctl.json(&["endpoint", "health", "--cluster"]);
    assert_eq!(health.as_array().map(Vec::len), Some(1), "{health}");
    assert_eq!(health[0]["endpoint"], url.as_str());
    assert_eq!(health[0]["health"], true, "{health}");

    let hash = ctl.json(&["endpoint", "hashkv", "--cluster"]);
    assert_eq!(hash.as_array().map(Vec::len), Some(1), "{hash}");
    assert_eq!(hash[0]["Endpoint"], url.as_str());
    assert_eq!(
        hash[0]["HashKV"]["header"]["member_id"].as_u64(),
        Some(member_id)
    );
    let direct = ctl.json(&["endpoint", "hashkv"]);
    assert_eq!(
        hash[0]["HashKV"]["hash"], direct[0]["HashKV"]["hash"],
        "the same store, dialled either way"
    );
}
