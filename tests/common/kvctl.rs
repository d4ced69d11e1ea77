//! The `kvctl` binary for black-box tests: found next to the `cairn` binary under test.
//!
//! `kvctl` belongs to another package (`tools/kvctl`), so cargo does not build it for this
//! package's tests on its own: `cargo test --workspace` does (kvctl has tests of its own), and
//! `cargo build -p kvctl` before `cargo test -p cairn --test kvctl` does. A missing binary fails
//! the test loudly rather than skipping it.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The path of the `kvctl` binary beside `cairn`.
pub fn kvctl_bin() -> PathBuf {
    let cairn = PathBuf::from(env!("CARGO_BIN_EXE_cairn"));
    let dir = cairn
        .parent()
        .expect("the cairn binary lives in a directory");
    let kvctl = dir.join(format!("kvctl{}", std::env::consts::EXE_SUFFIX));
    assert!(
        kvctl.is_file(),
        "kvctl is not built: expected it at {} (run `cargo build -p kvctl`, or \
         `cargo test --workspace`, which builds it)",
        kvctl.display()
    );
    kvctl
}

/// What one kvctl run did.
#[derive(Debug)]
pub struct KvctlRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs kvctl with `args`, bounded by 60 s; colours and progress bars are off (pipes).
pub fn kvctl(args: &[&str]) -> KvctlRun {
    let out = Command::new("timeout")
        .arg("60")
        .arg(kvctl_bin())
        .args(args)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run kvctl");
    KvctlRun {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
