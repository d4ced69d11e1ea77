//! Bad input: every malformed or over-limit request gets etcd's exact gRPC code and message, and the
//! server keeps serving afterwards (each test checks with a normal request). Also bytes that are
//! not gRPC at all, and bad start-up conditions: a data dir in use, a corrupt data dir, bad flags.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Cairn;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
};

/// Every wait in this file is bounded by this.
const WAIT: Duration = Duration::from_secs(15);
const MIB: usize = 1024 * 1024;

async fn connect(server: &Cairn) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(WAIT);
    Client::connect([server.endpoint()], Some(options))
        .await
        .expect("connect to cairn")
}

fn status_of(err: &etcd_client::Error) -> (String, String) {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            (format!("{:?}", status.code()), status.message().to_owned())
        }
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

fn invalid(message: &str) -> (String, String) {
    ("InvalidArgument".to_owned(), message.to_owned())
}

/// The server still answers a normal write and read, on a fresh connection.
async fn assert_alive(server: &Cairn) {
    let mut client = connect(server).await;
    let marker = format!("alive-{}", rand::random::<u64>());
    client
        .put("alive-check", marker.as_str(), None)
        .await
        .expect("a normal put after bad input");
    let got = client
        .get("alive-check", None)
        .await
        .expect("a normal get after bad input");
    assert_eq!(got.kvs()[0].value(), marker.as_bytes());
}

#[tokio::test]
async fn request_size_limits() {
    let server = Cairn::start();
    let mut client = connect(&server).await;

    // Over --max-request-bytes (1.5 MiB by default) but within the transport limit.
    let err = client
        .put("big", vec![b'x'; MIB * 16 / 10], None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), invalid("etcdserver: request is too large"));
    assert_alive(&server).await;
    let txn = Txn::new().and_then([
        TxnOp::put("big1", vec![b'x'; MIB * 8 / 10], None),
        TxnOp::put("big2", vec![b'y'; MIB * 8 / 10], None),
    ]);
    let err = client.txn(txn).await.unwrap_err();
    assert_eq!(status_of(&err), invalid("etcdserver: request is too large"));
    assert_eq!(
        client
            .get("big", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap()
            .count(),
        0
    );

    // Over the transport limit (max-request-bytes + 512 KiB): gRPC ResourceExhausted.
    let err = client
        .put("huge", vec![b'x'; MIB * 5 / 2], None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err).0, "ResourceExhausted", "{err:?}");
    assert_alive(&server).await;

    // Just under the limit is fine and comes back whole.
    let value = vec![b'z'; MIB * 14 / 10];
    client.put("large", value.clone(), None).await.unwrap();
    let got = client.get("large", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), value.as_slice());
    assert_alive(&server).await;
}

fn puts(count: usize, prefix: &str) -> Vec<TxnOp> {
    (0..count)
        .map(|i| TxnOp::put(format!("{prefix}{i:03}"), "v", None))
        .collect()
}

#[tokio::test]
async fn txn_operation_limit() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let too_many = invalid("etcdserver: too many operations in txn request");

    let err = client
        .txn(Txn::new().and_then(puts(129, "t/")))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), too_many);
    let err = client
        .txn(Txn::new().or_else(puts(129, "t/")))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), too_many);
    let compares: Vec<Compare> = (0..129)
        .map(|i| Compare::version(format!("t/{i:03}"), CompareOp::Equal, 0))
        .collect();
    let err = client.txn(Txn::new().when(compares)).await.unwrap_err();
    assert_eq!(status_of(&err), too_many);
    assert_eq!(
        client
            .get("t/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap()
            .count(),
        0
    );
    assert_alive(&server).await;

    // 128 of each is the limit, not beyond it; the writes share one revision.
    let compares: Vec<Compare> = (0..128)
        .map(|i| Compare::version(format!("t/{i:03}"), CompareOp::Equal, 0))
        .collect();
    let ok = client
        .txn(
            Txn::new()
                .when(compares)
                .and_then(puts(128, "t/"))
                .or_else(puts(128, "u/")),
        )
        .await
        .unwrap();
    assert!(ok.succeeded());
    let listed = client
        .get("t/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(listed.count(), 128);
    let revision = ok.header().unwrap().revision();
    assert!(listed.kvs().iter().all(|kv| kv.mod_revision() == revision));
    assert_alive(&server).await;
}

#[tokio::test]
async fn duplicate_keys_in_txn() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let duplicate = invalid("etcdserver: duplicate key given in txn request");

    let twice = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    assert_eq!(status_of(&client.txn(twice).await.unwrap_err()), duplicate);
    let in_deleted_range = Txn::new().and_then([
        TxnOp::put("db", "1", None),
        TxnOp::delete("da", Some(DeleteOptions::new().with_range("dc"))),
    ]);
    assert_eq!(
        status_of(&client.txn(in_deleted_range).await.unwrap_err()),
        duplicate
    );
    let in_else = Txn::new().or_else([TxnOp::put("e", "1", None), TxnOp::put("e", "2", None)]);
    assert_eq!(
        status_of(&client.txn(in_else).await.unwrap_err()),
        duplicate
    );
    let nested = Txn::new().and_then([
        TxnOp::put("n", "outer", None),
        TxnOp::txn(Txn::new().and_then([TxnOp::put("n", "inner", None)])),
    ]);
    assert_eq!(status_of(&client.txn(nested).await.unwrap_err()), duplicate);
    assert_eq!(
        client
            .get(
                "",
                Some(GetOptions::new().with_all_keys().with_count_only())
            )
            .await
            .unwrap()
            .count(),
        0
    );
    assert_alive(&server).await;

    // Not duplicates: the same key in different branches, overlapping deletes, a put and a get.
    let branches = Txn::new()
        .when([Compare::version("b", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("b", "then", None)])
        .or_else([TxnOp::put("b", "else", None)]);
    assert!(client.txn(branches).await.unwrap().succeeded());
    let deletes = Txn::new().and_then([
        TxnOp::delete("b", None),
        TxnOp::delete("a", Some(DeleteOptions::new().with_range("c"))),
    ]);
    client.txn(deletes).await.unwrap();
    let put_get = Txn::new().and_then([TxnOp::put("g", "1", None), TxnOp::get("g", None)]);
    client.txn(put_get).await.unwrap();
    assert_alive(&server).await;
}

#[tokio::test]
async fn empty_key() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let no_key = invalid("etcdserver: key is not provided");
    assert_eq!(
        status_of(&client.put("", "v", None).await.unwrap_err()),
        no_key
    );
    assert_eq!(status_of(&client.get("", None).await.unwrap_err()), no_key);
    assert_eq!(
        status_of(&client.delete("", None).await.unwrap_err()),
        no_key
    );
    let txn = Txn::new().and_then([TxnOp::put("", "v", None)]);
    assert_eq!(status_of(&client.txn(txn).await.unwrap_err()), no_key);
    let txn = Txn::new().or_else([TxnOp::get("", None)]);
    assert_eq!(status_of(&client.txn(txn).await.unwrap_err()), no_key);
    assert_alive(&server).await;
}

#[tokio::test]
async fn compacted_and_future_revisions() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let compacted = (
        "OutOfRange".to_owned(),
        "etcdserver: mvcc: required revision has been compacted".to_owned(),
    );
    let future = (
        "OutOfRange".to_owned(),
        "etcdserver: mvcc: required revision is a future revision".to_owned(),
    );
    for i in 0..4 {
        client.put("k", i.to_string(), None).await.unwrap(); // 2..=5
    }
    let err = client
        .get("k", Some(GetOptions::new().with_revision(6)))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), future);
    assert_eq!(
        status_of(&client.compact(6, None).await.unwrap_err()),
        future
    );
    client.compact(4, None).await.unwrap();
    let err = client
        .get("k", Some(GetOptions::new().with_revision(3)))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), compacted);
    let err = client
        .get("k", Some(GetOptions::new().with_revision(1)))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), compacted);
    let txn = Txn::new().and_then([TxnOp::get("k", Some(GetOptions::new().with_revision(2)))]);
    assert_eq!(status_of(&client.txn(txn).await.unwrap_err()), compacted);
    assert_eq!(
        status_of(&client.compact(2, None).await.unwrap_err()),
        compacted
    );
    assert_eq!(status_of(&client.hash_kv(3).await.unwrap_err()), compacted);
    assert_eq!(status_of(&client.hash_kv(9).await.unwrap_err()), future);
    let at = client
        .get("k", Some(GetOptions::new().with_revision(4)))
        .await
        .unwrap();
    assert_eq!(at.kvs()[0].value(), b"2");
    assert_alive(&server).await;
}

#[tokio::test]
async fn unknown_lease() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let not_found = (
        "NotFound".to_owned(),
        "etcdserver: requested lease not found".to_owned(),
    );
    let err = client
        .put("k", "v", Some(PutOptions::new().with_lease(0x0bad)))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), not_found);
    assert_eq!(
        status_of(&client.lease_revoke(0x0bad).await.unwrap_err()),
        not_found
    );
    let txn = Txn::new().and_then([TxnOp::put(
        "k",
        "v",
        Some(PutOptions::new().with_lease(0x0bad)),
    )]);
    assert_eq!(status_of(&client.txn(txn).await.unwrap_err()), not_found);
    assert_eq!(
        client.get("k", None).await.unwrap().count(),
        0,
        "nothing was written"
    );
    assert_eq!(
        client.lease_time_to_live(0x0bad, None).await.unwrap().ttl(),
        -1
    );
    assert!(
        client.lease_keep_alive(0x0bad).await.is_err(),
        "keep-alive of an unknown lease answers ttl 0"
    );
    assert_alive(&server).await;
}

#[tokio::test]
async fn lower_limits_from_flags() {
    let server = Cairn::start_with(&["--max-txn-ops", "4", "--max-request-bytes", "1024"]);
    let mut client = connect(&server).await;
    let err = client
        .txn(Txn::new().and_then(puts(5, "t/")))
        .await
        .unwrap_err();
    assert_eq!(
        status_of(&err),
        invalid("etcdserver: too many operations in txn request")
    );
    client
        .txn(Txn::new().and_then(puts(4, "t/")))
        .await
        .unwrap();

    let err = client.put("k", vec![b'x'; 2000], None).await.unwrap_err();
    assert_eq!(status_of(&err), invalid("etcdserver: request is too large"));
    client.put("k", vec![b'x'; 500], None).await.unwrap();
    // The transport limit follows: 1024 bytes + 512 KiB.
    let err = client
        .put("k", vec![b'x'; 600 * 1024], None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err).0, "ResourceExhausted", "{err:?}");
    assert_eq!(
        client.get("k", None).await.unwrap().kvs()[0].value().len(),
        500
    );
    assert_alive(&server).await;
}

/// Writes `bytes` on a raw connection and reads until the server closes it (bounded).
fn send_raw_until_closed(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // The server may close while we write; that is a fine answer to garbage.
    let _ = stream.write_all(bytes);
    let deadline = Instant::now() + WAIT;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "the server kept a garbage connection open; got {received:?}"
        );
        match stream.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return received, // reset by the server
        }
    }
}

#[tokio::test]
async fn garbage_bytes_on_the_client_port() {
    let server = Cairn::start();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    send_raw_until_closed(server.port, &garbage);
    // Bytes that are not even a request line, then a line end (without it, etcd waits for more).
    let mut line = vec![0xff; 64];
    line.extend_from_slice(b"\r\n\r\n");
    send_raw_until_closed(server.port, &line);
    assert_alive(&server).await;
}

#[tokio::test]
async fn http2_preface_then_garbage() {
    let server = Cairn::start();
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0xff; 64]);
    send_raw_until_closed(server.port, &bytes);
    // A valid SETTINGS frame, then a frame header announcing an unknown-length DATA frame on stream 0.
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    bytes.extend_from_slice(&[0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    send_raw_until_closed(server.port, &bytes);
    assert_alive(&server).await;
}

/// A gRPC call sent frame by frame: returns (grpc-status, response body).
async fn raw_grpc(
    sender: &h2::client::SendRequest<Bytes>,
    port: u16,
    path: &str,
    frame: Vec<u8>,
) -> (u32, Vec<u8>) {
    let call = async {
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://127.0.0.1:{port}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let mut ready = sender.clone().ready().await.expect("h2 connection ready");
        let (response, mut body) = ready.send_request(request, false).expect("send headers");
        body.send_data(Bytes::from(frame), true).expect("send body");
        let (parts, mut received) = response.await.expect("response headers").into_parts();
        assert_eq!(parts.status, 200, "gRPC answers over HTTP 200");
        let status = |headers: &http::HeaderMap| -> Option<u32> {
            headers
                .get("grpc-status")
                .map(|v| v.to_str().unwrap().parse().unwrap())
        };
        if let Some(code) = status(&parts.headers) {
            return (code, Vec::new()); // trailers-only response
        }
        let mut data = Vec::new();
        while let Some(chunk) = received.data().await {
            let chunk = chunk.expect("response data");
            let _ = received.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = received
            .trailers()
            .await
            .expect("trailers")
            .expect("gRPC sends trailers");
        (status(&trailers).expect("grpc-status trailer"), data)
    };
    tokio::time::timeout(WAIT, call)
        .await
        .expect("a raw gRPC answer within the wait bound")
}

/// A length-prefixed gRPC message frame; `declared` overrides the length prefix.
fn grpc_frame(message: &[u8], declared: Option<u32>) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&declared.unwrap_or(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

#[tokio::test]
async fn grpc_frames_with_bad_bodies() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    client.put("raw", "ok", None).await.unwrap();

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let (sender, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(connection);

    // Field 1 with wire type 7 does not exist: not protobuf.
    let (code, _) = raw_grpc(
        &sender,
        server.port,
        "/etcdserverpb.KV/Put",
        grpc_frame(&[0x0f, 0xff, 0xff], None),
    )
    .await;
    assert_eq!(
        code, 13,
        "an undecodable request is INTERNAL, as grpc-go answers"
    );
    // A length-delimited field longer than the message.
    let (code, _) = raw_grpc(
        &sender,
        server.port,
        "/etcdserverpb.KV/Range",
        grpc_frame(&[0x0a, 0x7f, b'a'], None),
    )
    .await;
    assert_eq!(code, 13);
    // The frame announces more bytes than the stream carries.
    let (code, _) = raw_grpc(
        &sender,
        server.port,
        "/etcdserverpb.KV/Range",
        grpc_frame(&[0x0a, 0x01, b'a'], Some(100)),
    )
    .await;
    assert_ne!(code, 0, "a truncated message must fail");
    // An unknown method.
    let (code, _) = raw_grpc(
        &sender,
        server.port,
        "/etcdserverpb.KV/NoSuchMethod",
        grpc_frame(&[], None),
    )
    .await;
    assert_eq!(code, 12, "UNIMPLEMENTED");

    // The same connection still serves a well-formed Range{key: "raw"}.
    let (code, body) = raw_grpc(
        &sender,
        server.port,
        "/etcdserverpb.KV/Range",
        grpc_frame(b"\x0a\x03raw", None),
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(body[0], 0, "uncompressed");
    assert_eq!(
        u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize,
        body.len() - 5
    );
    let message = &body[5..];
    assert!(
        message.windows(3).any(|w| w == b"raw") && message.windows(2).any(|w| w == b"ok"),
        "{message:?}"
    );
    assert_alive(&server).await;
}

/// Runs `cairn` with `args` to completion (bounded): (exit code, stderr).
fn run_cairn(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cairn");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait for cairn") {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status.code(), stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cairn {args:?} did not exit within 30s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Exited with an error of its own: non-zero and not a Rust panic (exit code 101).
fn assert_clean_failure(code: Option<i32>, stderr: &str) {
    assert!(
        code.is_some_and(|c| c != 0 && c != 101),
        "expected a clean non-zero exit, got {code:?}; stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "a bad start must not panic; stderr:\n{stderr}"
    );
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    client.put("k", "before", None).await.unwrap();
    let data_dir = server.data_dir.to_str().unwrap().to_owned();
    let (client_url, peer_url) = (url(common::free_port()), url(common::free_port()));
    let (code, stderr) = run_cairn(&[
        "--data-dir",
        &data_dir,
        "--listen-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
    ]);
    assert_clean_failure(code, &stderr);
    assert!(
        stderr.to_lowercase().contains("in use"),
        "the error must say the data dir is in use:\n{stderr}"
    );
    assert!(
        stderr.contains(&data_dir),
        "the error must name the data dir:\n{stderr}"
    );
    // The first server is unharmed.
    assert_eq!(
        client.get("k", None).await.unwrap().kvs()[0].value(),
        b"before"
    );
    assert_alive(&server).await;
}

/// Overwrites every file under `dir` with bytes that are no valid format.
fn corrupt(dir: &Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            count += corrupt(&path);
        } else {
            let len = std::fs::metadata(&path).unwrap().len().max(4096) as usize;
            let garbage: Vec<u8> = (0..len)
                .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] | 1)
                .collect();
            std::fs::write(&path, garbage).unwrap();
            count += 1;
        }
    }
    count
}

#[tokio::test]
async fn a_corrupt_data_dir_gives_a_clear_error() {
    let mut server = Cairn::start();
    let mut client = connect(&server).await;
    for i in 0..20 {
        client.put(format!("k{i}"), "v", None).await.unwrap();
    }
    drop(client);
    assert_eq!(
        server.terminate(),
        Some(0),
        "a clean shutdown first; log:\n{}",
        server.log()
    );
    assert!(corrupt(&server.data_dir) > 0, "the data dir holds files");

    let data_dir = server.data_dir.to_str().unwrap().to_owned();
    let (client_url, peer_url) = (url(common::free_port()), url(common::free_port()));
    let (code, stderr) = run_cairn(&[
        "--data-dir",
        &data_dir,
        "--listen-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
    ]);
    assert_clean_failure(code, &stderr);
    assert!(
        stderr.contains(&data_dir),
        "the error must name the corrupt file or dir:\n{stderr}"
    );
}

#[tokio::test]
async fn bad_flags_fail_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let data_dir = data_dir.to_str().unwrap();

    let (code, stderr) = run_cairn(&["--data-dir", data_dir, "--no-such-flag"]);
    assert_clean_failure(code, &stderr);
    assert!(stderr.contains("no-such-flag"), "{stderr}");

    let (code, stderr) = run_cairn(&["--data-dir", data_dir, "--max-txn-ops", "not-a-number"]);
    assert_clean_failure(code, &stderr);
    assert!(
        stderr.contains("max-txn-ops") && stderr.contains("not-a-number"),
        "{stderr}"
    );

    let peer = url(common::free_port());
    let (code, stderr) = run_cairn(&[
        "--data-dir",
        data_dir,
        "--listen-client-urls",
        "ftp://127.0.0.1:1",
        "--listen-peer-urls",
        &peer,
    ]);
    assert_clean_failure(code, &stderr);
    assert!(stderr.contains("ftp://127.0.0.1:1"), "{stderr}");
}
