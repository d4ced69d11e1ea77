//! Black-box tests of `kvctl` against a real `cairn` process: writes through the `etcd-client`
//! crate, then every kvctl command online (`--endpoints`) and offline (`--data-dir` after the
//! server stopped), in text and in JSON.
//!
//! ```text
//!   test ──etcd-client──► cairn ──► history (jj commits, one per revision)
//!   test ──► kvctl (child process) ──gRPC cairn.history.v1──► cairn
//!   test ──► kvctl --data-dir (child process, server stopped) ──► data dir
//! ```
//!
//! Revisions are exact: a fresh store is at revision 1 and every write adds one. History is
//! recorded behind the store, so each test waits for it (`kvctl status`) before reading.

mod common;
#[path = "common/kvctl.rs"]
mod kvctl_bin;

use std::time::{Duration, Instant};

use common::Cairn;
use etcd_client::{Client, ConnectOptions, DeleteOptions, GetOptions};
use kvctl_bin::{KvctlRun, kvctl};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// The last part of the server log, for failure messages.
fn log_tail(server: &Cairn) -> String {
    let log = server.log();
    let start = log.len().saturating_sub(4000);
    let start = (start..log.len())
        .find(|&i| log.is_char_boundary(i))
        .unwrap_or(log.len());
    log[start..].to_string()
}

/// Writes through the etcd-client crate, from synchronous tests.
struct Writer {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Writer {
    fn connect(server: &Cairn) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(15));
        let client = runtime
            .block_on(Client::connect([server.endpoint()], Some(options)))
            .expect("connect to cairn");
        Self { runtime, client }
    }

    /// Puts and returns the revision written.
    fn put(&mut self, key: &str, value: &str) -> i64 {
        let response = self
            .runtime
            .block_on(self.client.put(key, value, None))
            .expect("put");
        response.header().expect("a header").revision()
    }

    fn delete(&mut self, key: &str) -> i64 {
        let response = self
            .runtime
            .block_on(self.client.delete(key, None))
            .expect("delete");
        response.header().expect("a header").revision()
    }

    fn delete_prefix(&mut self, prefix: &str) -> i64 {
        let response = self
            .runtime
            .block_on(
                self.client
                    .delete(prefix, Some(DeleteOptions::new().with_prefix())),
            )
            .expect("delete prefix");
        response.header().expect("a header").revision()
    }

    /// The value of `key` now (None: absent), and the store's revision.
    fn get(&mut self, key: &str) -> (Option<String>, i64) {
        let response = self
            .runtime
            .block_on(self.client.get(key, None))
            .expect("get");
        let value = response
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
        (value, response.header().expect("a header").revision())
    }

    /// `key` at `revision` through the KV API (which compaction limits).
    fn get_at(&mut self, key: &str, revision: i64) -> Result<Option<String>, String> {
        self.runtime
            .block_on(
                self.client
                    .get(key, Some(GetOptions::new().with_revision(revision))),
            )
            .map(|r| {
                r.kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
            })
            .map_err(|e| e.to_string())
    }

    fn keys_under(&mut self, prefix: &str) -> Vec<(String, String)> {
        let response = self
            .runtime
            .block_on(
                self.client
                    .get(prefix, Some(GetOptions::new().with_prefix())),
            )
            .expect("get prefix");
        response
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    String::from_utf8_lossy(kv.value()).into_owned(),
                )
            })
            .collect()
    }

    fn compact(&mut self, revision: i64) {
        self.runtime
            .block_on(self.client.compact(revision, None))
            .expect("compact");
    }
}

/// kvctl bound to one server (online) or one data dir (offline).
struct Ctl<'a> {
    server: &'a Cairn,
    offline: bool,
}

impl<'a> Ctl<'a> {
    fn online(server: &'a Cairn) -> Self {
        Self {
            server,
            offline: false,
        }
    }

    fn offline(server: &'a Cairn) -> Self {
        Self {
            server,
            offline: true,
        }
    }

    fn run(&self, args: &[&str]) -> KvctlRun {
        let data_dir = self.server.data_dir.display().to_string();
        let endpoint = self.server.endpoint();
        let mut all: Vec<&str> = if self.offline {
            vec!["--data-dir", &data_dir]
        } else {
            vec!["--endpoints", &endpoint]
        };
        all.extend(args);
        kvctl(&all)
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert!(
            run.success,
            "kvctl {args:?} failed\nstdout: {}\nstderr: {}\nserver log tail:\n{}",
            run.stdout,
            run.stderr,
            log_tail(self.server)
        );
        run.stdout
    }

    /// Runs a command that must fail; returns its stderr.
    fn err(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert!(
            !run.success,
            "kvctl {args:?} should have failed\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        run.stderr
    }

    /// Runs a command with `-o json`; parses each line.
    fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["-o", "json"];
        all.extend(args);
        self.ok(&all)
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("kvctl {all:?} printed invalid JSON ({e}): {line}"))
            })
            .collect()
    }

    fn status(&self) -> Value {
        self.json(&["status"]).remove(0)
    }

    /// Waits (bounded) until history has recorded `revision`.
    fn wait_recorded(&self, revision: i64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let run = self.run(&["-o", "json", "status"]);
            if run.success {
                let status: Value = serde_json::from_str(run.stdout.trim()).expect("status JSON");
                if status["head_revision"].as_i64() >= Some(revision) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "history did not record revision {revision} within {WAIT:?}: {}{}\nserver log \
                 tail:\n{}",
                run.stdout,
                run.stderr,
                log_tail(self.server)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `-o json` and `args`.
fn as_json<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [&["-o", "json"][..], args].concat()
}

/// A jj commit id: lowercase hex, longer than the 12 digits text output shows.
fn is_hex_id(id: &Value) -> bool {
    id.as_str().is_some_and(|id| {
        id.len() > 12
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn revisions(lines: &[Value]) -> Vec<i64> {
    lines
        .iter()
        .map(|l| l["revision"].as_i64().expect("revision"))
        .collect()
}

/// `(kind, key)` of each change of a log line.
fn changes(line: &Value) -> Vec<(String, String)> {
    line["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_owned(),
                c["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pair(kind: &str, key: &str) -> (String, String) {
    (kind.to_owned(), key.to_owned())
}

/// Revisions 2..=6: put /a 1, put /a 2, put /b x, delete /a, put /p/x 1.
fn write_basic(writer: &mut Writer) -> i64 {
    assert_eq!(writer.put("/a", "1"), 2);
    assert_eq!(writer.put("/a", "2"), 3);
    assert_eq!(writer.put("/b", "x"), 4);
    assert_eq!(writer.delete("/a"), 5);
    assert_eq!(writer.put("/p/x", "1"), 6);
    6
}

#[test]
fn log_show_diff_get_blame_oplog() {
    let server = Cairn::start();
    let mut writer = Writer::connect(&server);
    let ctl = Ctl::online(&server);
    let head = write_basic(&mut writer);
    ctl.wait_recorded(head);

    // status
    let status = ctl.status();
    assert_eq!(status["head_revision"], head);
    assert!(is_hex_id(&status["head_commit_id"]), "{status}");
    assert!(
        ctl.ok(&["status"])
            .starts_with(&format!("head      {head} "))
    );

    // log KEY: newest first, with the change kinds.
    let log = ctl.json(&["log", "/a"]);
    assert_eq!(revisions(&log), [5, 3, 2]);
    assert_eq!(changes(&log[0]), [pair("delete", "/a")]);
    assert_eq!(changes(&log[1]), [pair("put", "/a")]);
    for line in &log {
        assert!(is_hex_id(&line["commit_id"]), "{line}");
        assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(
            !line["origin"]["agent"].as_str().unwrap().is_empty(),
            "writes through a gRPC client have a user agent: {line}"
        );
    }
    // Each commit's parent is the previous revision's commit.
    let all = ctl.json(&["log"]);
    assert_eq!(revisions(&all), [6, 5, 4, 3, 2]);
    for window in all.windows(2) {
        assert_eq!(window[0]["parent_commit_id"], window[1]["commit_id"]);
    }

    // log --prefix, --since/--until by revision and by time, --limit.
    assert_eq!(revisions(&ctl.json(&["log", "/p/", "--prefix"])), [6]);
    assert_eq!(revisions(&ctl.json(&["log", "/p/"])), Vec::<i64>::new());
    assert_eq!(
        revisions(&ctl.json(&["log", "--since", "3", "--until", "5"])),
        [5, 4, 3]
    );
    let time_of_3 = all[3]["time"].as_str().unwrap().to_owned();
    let time_of_4 = all[2]["time"].as_str().unwrap().to_owned();
    assert_eq!(
        revisions(&ctl.json(&["log", "--since", &time_of_3, "--until", &time_of_4])),
        [4, 3]
    );
    assert_eq!(revisions(&ctl.json(&["log", "--limit", "2"])), [6, 5]);
    assert_eq!(
        revisions(&ctl.json(&["log", "--since", "1h"])),
        [6, 5, 4, 3, 2]
    );

    // The text graph: head `@`, the others `○`, changed keys with markers.
    let graph = ctl.ok(&["log", "--color", "never"]);
    let lines: Vec<&str> = graph.lines().collect();
    assert!(lines[0].starts_with("@  6  "), "{graph}");
    assert_eq!(lines[1], "│  + /p/x", "{graph}");
    assert!(lines[2].starts_with("○  5  "), "{graph}");
    assert_eq!(lines[3], "│  - /a", "{graph}");
    assert_eq!(lines.last().copied(), Some("   + /a"), "{graph}");
    assert!(!graph.contains('\x1b'), "no colour on a pipe: {graph}");
    let graph = ctl.ok(&["log", "/a", "--color", "always"]);
    assert!(graph.contains('\x1b'), "colour when asked for: {graph}");

    // show
    let show = ctl.json(&["show", "3"]).remove(0);
    assert_eq!(show["revision"], 3);
    assert_eq!(show["diffs"][0]["key"], "/a");
    assert_eq!(show["diffs"][0]["before"], "1");
    assert_eq!(show["diffs"][0]["after"], "2");
    let text = ctl.ok(&["show", "3"]);
    assert!(text.starts_with("revision 3\n"), "{text}");
    assert!(text.contains("--- /a @ 2\n+++ /a @ 3\n"), "{text}");
    assert!(text.contains("\n-1\n") && text.contains("\n+2\n"), "{text}");
    let text = ctl.ok(&["show", "5"]);
    assert!(text.contains("+++ /a @ 5 (absent)"), "{text}");

    // diff
    let diff = ctl.json(&["diff", "2", "4"]);
    let keys: Vec<&str> = diff.iter().map(|d| d["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["/a", "/b"]);
    assert_eq!(diff[0]["before"], "1");
    assert_eq!(diff[0]["after"], "2");
    assert_eq!(diff[1]["before"], Value::Null);
    assert_eq!(diff[1]["after"], "x");
    assert_eq!(ctl.json(&["diff", "2", "6", "/p/"]).len(), 1);
    let text = ctl.ok(&["diff", "2", "4"]);
    assert!(text.starts_with("diff 2..4: 2 keys changed\n"), "{text}");
    assert!(text.contains("+++ /b @ 4\n"), "{text}");

    // get --rev / --at
    assert_eq!(ctl.ok(&["get", "/a", "--rev", "2"]), "1\n");
    assert_eq!(ctl.ok(&["get", "/a", "--rev", "4"]), "2\n");
    let got = ctl.json(&["get", "/a", "--rev", "4"]).remove(0);
    assert_eq!(got["key"], "/a");
    assert_eq!(got["value"], "2");
    assert_eq!(got["mod_revision"], 3);
    assert_eq!(got["revision"], 4);
    assert_eq!(ctl.ok(&["get", "/a", "--at", &time_of_3]), "2\n");
    assert_eq!(ctl.ok(&["get", "/b", "--at", "0s"]), "x\n");
    let err = ctl.err(&["get", "/a", "--rev", "5"]);
    assert!(err.contains("/a did not exist at revision 5"), "{err}");
    // Without a point: the newest recorded revision (6).
    assert_eq!(ctl.ok(&["get", "/b"]), "x\n");
    assert_eq!(ctl.json(&["get", "/b"]).remove(0)["revision"], 6);
    let err = ctl.err(&["get", "/a"]);
    assert!(err.contains("/a did not exist at revision 6"), "{err}");

    // blame
    let blame = ctl.json(&["blame"]);
    let rows: Vec<(String, i64)> = blame
        .iter()
        .map(|b| {
            (
                b["key"].as_str().unwrap().to_owned(),
                b["revision"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("/b".to_owned(), 4), ("/p/x".to_owned(), 6)]);
    let blame = ctl.json(&["blame", "/a", "--rev", "3"]);
    assert_eq!(blame.len(), 1);
    assert_eq!(blame[0]["revision"], 3);
    let text = ctl.ok(&["blame", "/"]);
    assert!(text.starts_with("REVISION  COMMIT"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.ends_with("/p/x") && l.trim_start().starts_with("6 ")),
        "{text}"
    );

    // oplog
    let ops = ctl.json(&["oplog", "--limit", "50"]);
    assert!(!ops.is_empty());
    assert!(
        ops.iter()
            .all(|op| !op["operation_id"].as_str().unwrap().is_empty())
    );
    assert!(
        ops.iter()
            .any(|op| op["last_revision"].as_i64() == Some(head)),
        "an operation recorded the head: {ops:?}"
    );
    assert!(ctl.ok(&["oplog"]).starts_with("○  "));
}

#[test]
fn bad_requests_are_refused_clearly() {
    let server = Cairn::start();
    let mut writer = Writer::connect(&server);
    let ctl = Ctl::online(&server);
    let head = write_basic(&mut writer);
    ctl.wait_recorded(head);

    let err = ctl.err(&["show", "999"]);
    assert!(err.contains("999"), "{err}");
    let err = ctl.err(&["get", "/a", "--rev", "999"]);
    assert!(err.contains("999"), "{err}");
    let err = ctl.err(&["diff", "4", "2"]);
    assert!(err.contains("must not be after"), "{err}");
    let err = ctl.err(&["show", "0"]);
    assert!(err.contains("invalid value '0'"), "{err}");
    let err = ctl.err(&["get", "/a", "--at", "next tuesday"]);
    assert!(err.contains("expected a revision"), "{err}");
    // An endpoint list is tried in order.
    let run = kvctl(&[
        "--endpoints",
        &format!("127.0.0.1:1,{}", server.endpoint()),
        "-o",
        "json",
        "status",
    ]);
    assert!(run.success, "{}", run.stderr);
    let run = kvctl(&["--endpoints", "127.0.0.1:1", "status"]);
    assert!(!run.success);
    assert!(
        run.stderr.contains("cannot connect to 127.0.0.1:1"),
        "{}",
        run.stderr
    );
}

#[test]
fn restore_round_trip() {
    let server = Cairn::start();
    let mut writer = Writer::connect(&server);
    let ctl = Ctl::online(&server);
    assert_eq!(writer.put("/r", "v1"), 2);
    assert_eq!(writer.put("/r", "v2"), 3);
    ctl.wait_recorded(3);

    let restored = ctl.json(&["restore", "/r", "--to-rev", "2"]).remove(0);
    assert_eq!(restored["revision"], 4, "{restored}");
    assert_eq!(changes(&restored), [pair("put", "/r")]);
    assert_eq!(writer.get("/r"), (Some("v1".to_owned()), 4));

    // The restore is a revision like any other, made by kvctl.
    ctl.wait_recorded(4);
    let log = ctl.json(&["log", "/r"]);
    assert_eq!(revisions(&log), [4, 3, 2]);
    let agent = log[0]["origin"]["agent"].as_str().unwrap();
    assert!(agent.starts_with("kvctl/"), "{agent}");
    assert_eq!(ctl.ok(&["get", "/r", "--rev", "4"]), "v1\n");

    // Nothing to do: no write.
    let again = ctl.json(&["restore", "/r", "--to-rev", "2"]).remove(0);
    assert_eq!(again["revision"], 0, "{again}");
    assert_eq!(writer.get("/r").1, 4);

    // A prefix: changed keys go back, deleted keys come back, new keys go away.
    assert_eq!(writer.put("/q/a", "1"), 5);
    assert_eq!(writer.put("/q/b", "1"), 6);
    assert_eq!(writer.put("/q/a", "2"), 7);
    assert_eq!(writer.delete("/q/b"), 8);
    assert_eq!(writer.put("/q/c", "3"), 9);
    ctl.wait_recorded(9);
    let text = ctl.ok(&["restore", "/q/", "--prefix", "--to-rev", "6"]);
    assert!(
        text.starts_with("restored keys under /q/ to revision 6 as revision 10"),
        "{text}"
    );
    assert_eq!(
        writer.keys_under("/q/"),
        [
            ("/q/a".to_owned(), "1".to_owned()),
            ("/q/b".to_owned(), "1".to_owned())
        ]
    );
    ctl.wait_recorded(10);
    let show = ctl.json(&["show", "10"]).remove(0);
    let keys: Vec<&str> = show["diffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["/q/a", "/q/b", "/q/c"]);

    // Restoring a key absent at the target deletes it.
    writer.delete_prefix("/q/");
    assert_eq!(writer.put("/q/new", "n"), 12);
    ctl.wait_recorded(12);
    ctl.json(&["restore", "/q/new", "--to-rev", "11"]);
    assert_eq!(writer.get("/q/new").0, None);
}

#[test]
fn history_outlives_compaction() {
    let server = Cairn::start();
    let mut writer = Writer::connect(&server);
    let ctl = Ctl::online(&server);
    assert_eq!(writer.put("/c", "1"), 2);
    assert_eq!(writer.put("/c", "2"), 3);
    assert_eq!(writer.put("/c", "3"), 4);
    writer.compact(4);
    let err = writer
        .get_at("/c", 2)
        .expect_err("compacted in the KV store");
    assert!(err.contains("compacted"), "{err}");

    ctl.wait_recorded(4);
    assert_eq!(ctl.ok(&["get", "/c", "--rev", "2"]), "1\n");
    assert_eq!(ctl.ok(&["get", "/c", "--rev", "3"]), "2\n");
    assert_eq!(revisions(&ctl.json(&["log", "/c"])), [4, 3, 2]);
    let diff = ctl.json(&["diff", "2", "4"]);
    assert_eq!(diff[0]["before"], "1");
    assert_eq!(diff[0]["after"], "3");

    // And a restore from before the compaction.
    let restored = ctl.json(&["restore", "/c", "--to-rev", "2"]).remove(0);
    assert_eq!(restored["revision"], 5);
    assert_eq!(writer.get("/c").0.as_deref(), Some("1"));
}

#[test]
fn offline_data_dir_reads_what_the_server_served() {
    let mut server = Cairn::start();
    let mut writer = Writer::connect(&server);
    let head = write_basic(&mut writer);
    // Enough revisions for the log to take two pages (the server serves at most 1000).
    let mut last = head;
    for i in 0..1100 {
        last = writer.put(&format!("/many/{}", i % 7), &i.to_string());
    }
    let online = Ctl::online(&server);
    online.wait_recorded(last);

    let queries: [&[&str]; 7] = [
        &["log", "--limit", "0"],
        &["log", "/a"],
        &["show", "3"],
        &["diff", "2", "6"],
        &["get", "/a", "--rev", "2"],
        &["blame", "/"],
        &["status"],
    ];
    let served: Vec<String> = queries.iter().map(|q| online.ok(&as_json(q))).collect();
    let all = online.json(&["log", "--limit", "0"]);
    assert_eq!(all.len() as i64, last - 1, "every revision, across pages");
    assert_eq!(revisions(&all).first(), Some(&last));
    assert_eq!(revisions(&all).last(), Some(&2));
    assert_eq!(online.json(&["log", "--limit", "1050"]).len(), 1050);

    drop(writer);
    assert_eq!(server.terminate(), Some(0), "clean shutdown");

    let offline = Ctl::offline(&server);
    for (query, served) in queries.iter().zip(&served) {
        let read = offline.ok(&as_json(query));
        if query[0] == "status" {
            // The database size may differ after shutdown; the positions may not.
            let a: Value = serde_json::from_str(served.trim()).unwrap();
            let b: Value = serde_json::from_str(read.trim()).unwrap();
            assert_eq!(a["head_revision"], b["head_revision"]);
            assert_eq!(a["head_commit_id"], b["head_commit_id"]);
        } else {
            assert_eq!(&read, served, "kvctl {query:?} offline differs from online");
        }
    }
    assert!(offline.ok(&["log", "/a"]).contains("- /a"));
    let err = offline.err(&["restore", "/a", "--to-rev", "2"]);
    assert!(
        err.contains("restore needs a running server (--endpoints)"),
        "{err}"
    );
}

#[test]
fn disabled_history_says_so() {
    let server = Cairn::start_with(&["--history=false"]);
    let ctl = Ctl::online(&server);
    let err = ctl.err(&["status"]);
    assert!(err.contains("history is disabled on this server"), "{err}");
    let err = ctl.err(&["restore", "/a", "--to-rev", "2"]);
    assert!(err.contains("history is disabled on this server"), "{err}");
}
