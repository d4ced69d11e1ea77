//! `loadgen`: an etcd v3 load generator; see `cairn_bench::loadgen`.

use std::process::ExitCode;

use cairn_bench::loadgen::cli::{Cli, Command};
use cairn_bench::loadgen::{compare, null_server, workloads};
use clap::Parser;

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::NullServer(args) => {
            let listener = tokio::net::TcpListener::bind(&args.listen).await?;
            let shutdown = async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
                match term.as_mut() {
                    Ok(term) => {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            _ = term.recv() => {}
                        }
                    }
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            };
            null_server::serve(listener, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare(args) => {
            let comparison = compare::run(args).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&comparison)?);
            } else {
                print!("{}", comparison.table());
            }
            Ok(ExitCode::SUCCESS)
        }
        workload => {
            let report = workloads::run(workload).await?;
            let json = workload.common().is_some_and(|c| c.json);
            if json {
                println!("{}", report.json()?);
            } else {
                print!("{}", report.table());
            }
            // Failed requests make the exit status non-zero, so scripts notice.
            Ok(if report.total_errors() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("loadgen: {err:#}");
            ExitCode::FAILURE
        }
    }
}
