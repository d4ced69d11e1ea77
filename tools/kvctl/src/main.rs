//! The `kvctl` binary: parses the command line and runs it (see the library for the commands).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use kvctl::cli::Cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let result = kvctl::run::execute(cli, &mut stdout).await;
    let flushed = stdout.flush();
    match result.and_then(|()| flushed.map_err(Into::into)) {
        Ok(()) => ExitCode::SUCCESS,
        // `kvctl log | head`: the reader left; that is not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kvctl: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
