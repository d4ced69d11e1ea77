//! kvctl's output, without a server: the text and JSON formatters fed with history model values
//! (insta snapshots), and every command run against an in-memory [`Source`] (paging, errors).

use std::io::Write as _;
use std::sync::Mutex;

use bytes::Bytes;
use cairn_engine::history::{
    At, BlameLine, ChangeKind, HistoryError, HistoryStatus, KeyChange, KeyDiff, KeyVersion,
    LogQuery, OperationEntry, Origin, RestoreOutcome, RevisionDetail, RevisionEntry,
};
use clap::Parser;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use kvctl::cli::{Cli, OutputFormat};
use kvctl::output::{Style, json, text};
use kvctl::run::{Settings, fetch_log, run};
use kvctl::source::{LogPage, Source, SourceError, SourceResult};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// 2026-11-22T10:00:00Z.
const T0: u64 = 1_795_341_600_000;

fn key(k: &'static [u8]) -> Bytes {
    Bytes::from_static(k)
}

fn put(k: &'static [u8]) -> KeyChange {
    KeyChange {
        key: key(k),
        kind: ChangeKind::Put,
    }
}

fn delete(k: &'static [u8]) -> KeyChange {
    KeyChange {
        key: key(k),
        kind: ChangeKind::Delete,
    }
}

fn commit(revision: i64) -> String {
    format!("{revision:02x}").repeat(20)
}

fn entry(revision: i64, origin: Origin, changes: Vec<KeyChange>) -> RevisionEntry {
    RevisionEntry {
        revision,
        commit_id: commit(revision),
        parent_commit_id: commit(revision - 1),
        time_unix_ms: T0 + (revision as u64) * 1_500,
        log_term: 2,
        log_index: 10 + revision as u64,
        origin,
        changes_total: changes.len() as u64,
        changes,
    }
}

fn etcdctl() -> Origin {
    Origin {
        user: String::new(),
        agent: "etcdctl/3.4.23 grpc-go/1.26.0".into(),
    }
}

fn alice() -> Origin {
    Origin {
        user: "alice".into(),
        agent: "kube-apiserver/v1.31".into(),
    }
}

/// Revisions 5 (newest) to 2: a txn of many keys (listed only in part), a delete of a binary
/// key, a put with an unknown origin, a put by an authenticated user.
fn revisions() -> Vec<RevisionEntry> {
    let many: Vec<KeyChange> = [
        &b"/k/00"[..],
        b"/k/01",
        b"/k/02",
        b"/k/03",
        b"/k/04",
        b"/k/05",
        b"/k/06",
        b"/k/07",
        b"/k/08",
        b"/k/09",
    ]
    .into_iter()
    .map(|k| KeyChange {
        key: Bytes::copy_from_slice(k),
        kind: ChangeKind::Put,
    })
    .collect();
    let mut txn = entry(5, etcdctl(), many);
    txn.changes_total = 14;
    vec![
        txn,
        entry(
            4,
            etcdctl(),
            vec![delete(b"/bin/\xff\x00"), put(b"/config/a")],
        ),
        entry(3, Origin::default(), vec![put(b"/config/a")]),
        entry(2, alice(), vec![put(b"/registry/configmaps/default/app")]),
    ]
}

const CONFIG_MAP_JSON: &[u8] = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"app","namespace":"default"},"data":{"mode":"blue","replicas":"3"}}"#;
const CONFIG_MAP_JSON_2: &[u8] = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"app","namespace":"default"},"data":{"mode":"green","replicas":"3"}}"#;

fn detail() -> RevisionDetail {
    RevisionDetail {
        entry: entry(
            4,
            etcdctl(),
            vec![
                delete(b"/bin/\xff\x00"),
                put(b"/config/a"),
                put(b"/config/empty"),
                put(b"/registry/configmaps/default/app"),
            ],
        ),
        diffs: vec![
            KeyDiff {
                key: key(b"/bin/\xff\x00"),
                before: Some(key(b"\x00\x01\x02binary\xff")),
                after: None,
            },
            KeyDiff {
                key: key(b"/config/a"),
                before: Some(key(b"one\ntwo\nthree\n")),
                after: Some(key(b"one\n2\nthree\n")),
            },
            KeyDiff {
                key: key(b"/config/empty"),
                before: None,
                after: Some(Bytes::new()),
            },
            KeyDiff {
                key: key(b"/registry/configmaps/default/app"),
                before: Some(Bytes::from_static(CONFIG_MAP_JSON)),
                after: Some(Bytes::from_static(CONFIG_MAP_JSON_2)),
            },
        ],
    }
}

fn blame_lines() -> Vec<BlameLine> {
    vec![
        BlameLine {
            key: key(b"/config/a"),
            revision: 4,
            commit_id: commit(4),
            time_unix_ms: T0 + 6_000,
            origin: etcdctl(),
        },
        BlameLine {
            key: key(b"/config/\xffodd"),
            revision: 123,
            commit_id: commit(123),
            time_unix_ms: T0 + 184_500,
            origin: Origin::default(),
        },
    ]
}

fn operations() -> Vec<OperationEntry> {
    vec![
        OperationEntry {
            operation_id: "9f".repeat(64),
            time_unix_ms: T0 + 7_500,
            description: "record revisions 4..5".into(),
            first_revision: 4,
            last_revision: 5,
            attributes: vec![
                ("origin.agent".into(), "etcdctl/3.4.23".into()),
                ("raft.log_id".into(), "2-15".into()),
            ],
        },
        OperationEntry {
            operation_id: "3c".repeat(64),
            time_unix_ms: T0 + 4_500,
            description: "record revision 3".into(),
            first_revision: 3,
            last_revision: 3,
            attributes: vec![("raft.log_id".into(), "2-13".into())],
        },
        OperationEntry {
            operation_id: "00".repeat(64),
            time_unix_ms: T0,
            description: "initialize history".into(),
            first_revision: 0,
            last_revision: 0,
            attributes: Vec::new(),
        },
    ]
}

fn status() -> HistoryStatus {
    HistoryStatus {
        head_revision: 5,
        head_commit_id: commit(5),
        applied_revision: 7,
        oldest_revision: 2,
        db_size_bytes: 3 * 1024 * 1024 + 512 * 1024,
    }
}

fn lines(values: impl IntoIterator<Item = Value>) -> String {
    values
        .into_iter()
        .map(|v| serde_json::to_string(&v).expect("JSON") + "\n")
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Snapshots of the formatters

#[test]
fn fixture_time_is_what_the_docs_say() {
    let t: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
    assert_eq!(u64::try_from(t.as_millisecond()).unwrap(), T0);
}

#[test]
fn log_text() {
    let style = Style::plain();
    insta::assert_snapshot!("log_text", text::log(&revisions(), Some(5), false, &style));
    insta::assert_snapshot!(
        "log_text_more",
        text::log(&revisions()[1..3], Some(5), true, &style)
    );
}

#[test]
fn log_text_in_colour() {
    let style = Style {
        color: true,
        zone: TimeZone::fixed(jiff::tz::Offset::from_hours(1).unwrap()),
    };
    insta::assert_snapshot!(
        "log_text_colour",
        text::log(&revisions()[1..2], Some(4), false, &style).escape_debug()
    );
}

#[test]
fn log_json() {
    let out = lines(revisions().iter().map(json::revision));
    for line in out.lines() {
        let value: Value = serde_json::from_str(line).expect("each line is JSON");
        assert!(value["revision"].is_i64());
        assert!(value["time"].as_str().unwrap().ends_with('Z'));
    }
    insta::assert_snapshot!("log_json", out);
}

#[test]
fn show_text_and_json() {
    insta::assert_snapshot!("show_text", text::show(&detail(), &Style::plain()));
    insta::assert_snapshot!(
        "show_json",
        serde_json::to_string_pretty(&json::detail(&detail())).unwrap()
    );
}

#[test]
fn diff_text_and_json() {
    let diffs = detail().diffs;
    insta::assert_snapshot!("diff_text", text::diff(2, 4, &diffs, &Style::plain()));
    insta::assert_snapshot!(
        "diff_json",
        lines(diffs.iter().map(|d| json::key_diff(d, 2, 4)))
    );
    assert_eq!(text::diff_header(1, 1, 0), "diff 1..1: 0 keys changed\n");
}

#[test]
fn get_text_and_json() {
    let kv = KeyVersion {
        key: key(b"/registry/configmaps/default/app"),
        value: Bytes::from_static(CONFIG_MAP_JSON),
        mod_revision: 2,
        revision: 4,
    };
    insta::assert_snapshot!("get_text", text::value(&kv));
    insta::assert_snapshot!("get_json", lines([json::key_version(&kv)]));
    let binary = KeyVersion {
        key: key(b"/bin/\xff"),
        value: key(b"\xde\xad\xbe\xef"),
        mod_revision: 3,
        revision: 3,
    };
    let value = json::key_version(&binary);
    assert_eq!(value["key"], "L2Jpbi//");
    assert_eq!(value["key_encoding"], "base64");
    assert_eq!(value["value"], "3q2+7w==");
    assert_eq!(value["value_encoding"], "base64");
    assert_eq!(
        text::value(&binary),
        "00000000: dead beef                                ....\n"
    );
}

#[test]
fn blame_text_and_json() {
    insta::assert_snapshot!("blame_text", text::blame(&blame_lines(), &Style::plain()));
    insta::assert_snapshot!("blame_json", lines(blame_lines().iter().map(json::blame)));
}

#[test]
fn oplog_text_and_json() {
    insta::assert_snapshot!("oplog_text", text::oplog(&operations(), &Style::plain()));
    insta::assert_snapshot!(
        "oplog_json",
        lines(operations().iter().map(json::operation))
    );
}

#[test]
fn status_text_and_json() {
    insta::assert_snapshot!("status_text", text::status(&status()));
    insta::assert_snapshot!("status_json", lines([json::status(&status())]));
}

#[test]
fn restore_text_and_json() {
    let outcome = RestoreOutcome {
        revision: 9,
        changes: vec![put(b"/config/a"), delete(b"/config/new")],
    };
    let style = Style::plain();
    insta::assert_snapshot!(
        "restore_text",
        text::restore(b"/config/", true, 3, &outcome, &style)
    );
    insta::assert_snapshot!(
        "restore_json",
        lines([json::restore(b"/config/", true, 3, &outcome)])
    );
    let nothing = RestoreOutcome {
        revision: 0,
        changes: Vec::new(),
    };
    assert_eq!(
        text::restore(b"/config/a", false, 3, &nothing, &style),
        "nothing to restore: /config/a already as at revision 3\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Commands against an in-memory source

/// Revisions 1..=n, each putting `/k/<rev>`; pages of at most `page` revisions whatever the
/// query asks (as a server capping its pages would).
struct FakeSource {
    revisions: Vec<RevisionEntry>,
    page: usize,
    queries: Mutex<Vec<LogQuery>>,
}

impl FakeSource {
    fn new(n: i64, page: usize) -> Self {
        let revisions = (1..=n)
            .rev()
            .map(|r| RevisionEntry {
                revision: r,
                commit_id: commit(r),
                parent_commit_id: commit(r - 1),
                time_unix_ms: T0 + r as u64 * 1000,
                log_term: 1,
                log_index: r as u64,
                origin: Origin::default(),
                changes: vec![KeyChange {
                    key: Bytes::from(format!("/k/{r}")),
                    kind: ChangeKind::Put,
                }],
                changes_total: 1,
            })
            .collect();
        Self {
            revisions,
            page,
            queries: Mutex::new(Vec::new()),
        }
    }
}

impl Source for FakeSource {
    async fn status(&self) -> SourceResult<HistoryStatus> {
        Ok(HistoryStatus {
            head_revision: self.revisions.first().map_or(0, |e| e.revision),
            ..HistoryStatus::default()
        })
    }

    async fn log(&self, query: LogQuery) -> SourceResult<LogPage> {
        self.queries.lock().unwrap().push(query.clone());
        let page = query.limit.min(self.page);
        let matching: Vec<_> = self
            .revisions
            .iter()
            .filter(|e| query.max_revision == 0 || e.revision <= query.max_revision)
            .filter(|e| e.revision >= query.min_revision)
            .cloned()
            .collect();
        let more = matching.len() > page;
        let entries: Vec<_> = matching.into_iter().take(page).collect();
        let next_max_revision = if more {
            entries.last().map_or(0, |e| e.revision - 1)
        } else {
            0
        };
        Ok(LogPage {
            entries,
            next_max_revision,
        })
    }

    async fn show(&self, revision: i64) -> SourceResult<RevisionDetail> {
        Err(HistoryError::NoSuchRevision(revision).into())
    }

    async fn diff(&self, _from: i64, _to: i64, _prefix: Bytes) -> SourceResult<Vec<KeyDiff>> {
        Ok(vec![KeyDiff {
            key: key(b"/k/1"),
            before: None,
            after: Some(key(b"v")),
        }])
    }

    async fn get(&self, key: Bytes, at: At) -> SourceResult<Option<KeyVersion>> {
        Ok(match at {
            At::Revision(3) => Some(KeyVersion {
                key,
                value: Bytes::from_static(b"three"),
                mod_revision: 3,
                revision: 3,
            }),
            _ => None,
        })
    }

    async fn blame(
        &self,
        _prefix: Bytes,
        _at: Option<i64>,
        _limit: usize,
    ) -> SourceResult<Vec<BlameLine>> {
        Ok(Vec::new())
    }

    async fn oplog(&self, _limit: usize) -> SourceResult<Vec<OperationEntry>> {
        Ok(Vec::new())
    }

    async fn restore(&self, _: Bytes, _: bool, _: i64) -> SourceResult<RestoreOutcome> {
        Err(SourceError::OfflineRestore)
    }
}

fn settings(output: OutputFormat) -> Settings {
    let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
    Settings {
        output,
        style: Style::plain(),
        progress: false,
        now: Zoned::new(now, TimeZone::UTC),
    }
}

async fn kvctl(source: &FakeSource, args: &[&str]) -> anyhow::Result<String> {
    let cli = Cli::try_parse_from(std::iter::once("kvctl").chain(args.iter().copied()))?;
    let settings = settings(cli.output);
    let mut out = Vec::new();
    run(source, cli.command, &settings, &mut out).await?;
    out.flush()?;
    Ok(String::from_utf8(out)?)
}

#[tokio::test]
async fn log_pages_until_the_limit() {
    let source = FakeSource::new(10, 3);
    let (entries, more) = fetch_log(&source, LogQuery::default(), 5, false)
        .await
        .unwrap();
    let revisions: Vec<i64> = entries.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, [10, 9, 8, 7, 6]);
    assert!(more);
    let queries = source.queries.lock().unwrap().clone();
    assert_eq!(
        queries
            .iter()
            .map(|q| (q.limit, q.max_revision))
            .collect::<Vec<_>>(),
        [(5, 0), (2, 7)]
    );
}

#[tokio::test]
async fn log_without_a_limit_reads_everything() {
    let source = FakeSource::new(10, 4);
    let (entries, more) = fetch_log(&source, LogQuery::default(), 0, false)
        .await
        .unwrap();
    assert_eq!(entries.len(), 10);
    assert!(!more);
    let (entries, more) = fetch_log(&source, LogQuery::default(), 10, false)
        .await
        .unwrap();
    assert_eq!(entries.len(), 10);
    assert!(!more, "exactly the limit and nothing older");
}

#[tokio::test]
async fn log_command_prints_a_graph_or_json_lines() {
    let source = FakeSource::new(4, 100);
    let graph = kvctl(&source, &["log", "--limit", "2"]).await.unwrap();
    assert_eq!(
        graph,
        "@  4  040404040404  2026-11-22 10:00:04 +00:00\n\
         │  + /k/4\n\
         ○  3  030303030303  2026-11-22 10:00:03 +00:00\n\
         │  + /k/3\n\
         ~  (older revisions not shown; raise --limit)\n"
    );
    let json = kvctl(
        &source,
        &["-o", "json", "log", "--since", "2", "--until", "3"],
    )
    .await
    .unwrap();
    let revisions: Vec<i64> = json
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["revision"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(revisions, [3, 2]);
    let err = kvctl(&source, &["log", "--since", "3", "--until", "2"])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--since revision 3 is after --until revision 2"
    );
}

#[tokio::test]
async fn get_prints_the_value_or_says_it_was_absent() {
    let source = FakeSource::new(4, 100);
    assert_eq!(
        kvctl(&source, &["get", "/k/3", "--rev", "3"])
            .await
            .unwrap(),
        "three\n"
    );
    assert_eq!(
        kvctl(&source, &["get", "/k/3", "--at", "3"]).await.unwrap(),
        "three\n",
        "a plain integer is a revision"
    );
    let err = kvctl(
        &source,
        &["get", "/k/\\xff", "--at", "2026-11-22T09:00:00Z"],
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/k/\\xff did not exist at 2026-11-22T09:00:00.000Z"
    );
}

#[tokio::test]
async fn errors_read_as_the_source_reports_them() {
    let source = FakeSource::new(4, 100);
    let err = kvctl(&source, &["show", "9"]).await.unwrap_err();
    assert_eq!(err.to_string(), "revision 9 is not in history");
    let err = kvctl(&source, &["restore", "/k/1", "--to-rev", "1"])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "restore needs a running server (--endpoints)"
    );
    let err = kvctl(&source, &["diff", "4", "2"]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the first revision (4) must not be after the second (2)"
    );
    let err = kvctl(&source, &["blame", "/bad\\q"]).await.unwrap_err();
    assert!(err.to_string().starts_with("bad escape in key"), "{err}");
}

#[tokio::test]
async fn diff_command_prints_one_diff_per_key() {
    let source = FakeSource::new(4, 100);
    assert_eq!(
        kvctl(&source, &["diff", "1", "2", "/k/"]).await.unwrap(),
        "diff 1..2: 1 key changed\n\n--- /k/1 @ 1 (absent)\n+++ /k/1 @ 2\n@@ -0,0 +1 @@\n+v\n\\ No newline at end of file\n"
    );
}
