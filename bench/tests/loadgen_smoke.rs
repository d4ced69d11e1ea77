//! CI smoke test: `loadgen` runs every workload against a Cairn it starts (debug build, free
//! loopback ports, temp data dir) and completes requests without errors. No timing asserts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use cairn_bench::loadgen::compare::{Binaries, ServerKind, ServerProcess};
use cairn_bench::loadgen::report::Report;

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The cairn binary beside loadgen in the target dir, built with cargo if it is missing.
fn cairn_binary() -> anyhow::Result<PathBuf> {
    let binary = Path::new(LOADGEN).with_file_name("cairn");
    if binary.exists() {
        return Ok(binary);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("bench/ has a parent")?;
    let mut build = std::process::Command::new(cargo);
    build.current_dir(workspace).args(["build", "-p", "cairn"]);
    if binary
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|profile| profile == "release")
    {
        build.arg("--release");
    }
    let status = build.status().context("cannot run cargo build -p cairn")?;
    ensure!(status.success(), "cargo build -p cairn failed: {status}");
    ensure!(
        binary.exists(),
        "{} still missing after the build",
        binary.display()
    );
    Ok(binary)
}

/// Runs `loadgen <args> --endpoints <endpoint> --json` and returns its report.
async fn loadgen(endpoint: &str, args: &[&str]) -> anyhow::Result<Report> {
    let run = tokio::process::Command::new(LOADGEN)
        .args(args)
        .args(["--endpoints", endpoint, "--json", "--no-progress"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUN_TIMEOUT, run)
        .await
        .with_context(|| format!("loadgen {args:?} timed out"))??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "loadgen {args:?} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_str(&stdout).with_context(|| format!("loadgen {args:?} printed {stdout}"))
}

fn assert_worked(report: &Report, op: &str) {
    let line = report
        .op(op)
        .unwrap_or_else(|| panic!("no {op} in {report:?}"));
    assert!(line.requests > 0, "no {op} completed: {report:?}");
    assert_eq!(report.total_errors(), 0, "errors: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_runs_every_workload_against_cairn() -> anyhow::Result<()> {
    let binaries = Binaries {
        etcd: PathBuf::from("/usr/bin/etcd"),
        cairn: cairn_binary()?,
        loadgen: PathBuf::from(LOADGEN),
    };
    let server = ServerProcess::start(ServerKind::Cairn, &binaries, None).await?;
    let endpoint = server.endpoint.clone();
    let result = async {
        let common = ["--clients", "4", "--conns", "2"];
        let put = loadgen(
            &endpoint,
            &[
                &["put", "--duration", "1s", "--key-space-size", "100"][..],
                &common,
            ]
            .concat(),
        )
        .await?;
        assert_worked(&put, "put");
        let range = loadgen(
            &endpoint,
            &[
                &["range", "--duration", "1s", "--key-space-size", "100"][..],
                &common,
            ]
            .concat(),
        )
        .await?;
        assert_worked(&range, "range");
        let prefix = loadgen(
            &endpoint,
            &[
                "range",
                "--total",
                "100",
                "--prefix-keys",
                "50",
                "--consistency",
                "s",
            ],
        )
        .await?;
        assert_worked(&prefix, "range");
        let txn_put = loadgen(
            &endpoint,
            &[
                "txn-put",
                "--total",
                "200",
                "--txn-ops",
                "4",
                "--key-space-size",
                "16",
            ],
        )
        .await?;
        assert_worked(&txn_put, "txn-put");
        let mixed = loadgen(
            &endpoint,
            &["txn-mixed", "--total", "200", "--key-space-size", "16"],
        )
        .await?;
        assert_worked(&mixed, "read");
        assert_worked(&mixed, "write");
        let watch = loadgen(
            &endpoint,
            &[
                "watch",
                "--total",
                "100",
                "--streams",
                "2",
                "--watchers-per-stream",
                "5",
                "--watched-keys",
                "3",
            ],
        )
        .await?;
        assert_worked(&watch, "delivery");
        let latency = loadgen(
            &endpoint,
            &[
                "watch-latency",
                "--total",
                "50",
                "--rate",
                "100",
                "--streams",
                "2",
            ],
        )
        .await?;
        assert_worked(&latency, "delivery");
        let lease = loadgen(
            &endpoint,
            &["lease-keepalive", "--total", "200", "--clients", "2"],
        )
        .await?;
        assert_worked(&lease, "keepalive");
        anyhow::Ok(())
    }
    .await;
    let log = server.log_tail();
    server.stop().await?;
    result.with_context(|| format!("cairn log:\n{log}"))
}
