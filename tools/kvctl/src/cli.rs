//! kvctl's command line (clap): global flags, one subcommand per question.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// Where a command reads history when neither `--endpoints` nor `--data-dir` is given.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:2379";

/// Browse, diff and restore the history Cairn keeps of every revision.
///
/// Online against a running server (--endpoints), or offline from a stopped server's data dir
/// (--data-dir). Keys are shown and read with `\xNN` escapes for bytes that are not printable
/// UTF-8 and `\\` for a backslash.
#[derive(Debug, Parser)]
#[command(name = "kvctl", version, about, long_about)]
pub struct Cli {
    /// Servers to ask (comma-separated host:port or URLs), tried in order.
    #[arg(long, global = true, value_name = "URLS", conflicts_with = "data_dir")]
    pub endpoints: Option<String>,

    /// Read the history of a stopped server's data dir instead.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Colour text output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Show times in UTC instead of the local time zone.
    #[arg(long, global = true)]
    pub utc: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Only when stdout is a terminal and `NO_COLOR` is not set.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Revisions, newest first, with the keys each changed.
    Log(LogArgs),
    /// One revision: its header and a diff of every key it changed.
    Show {
        /// The revision.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        revision: i64,
    },
    /// The keys whose values differ between two revisions, as unified diffs.
    Diff {
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        from: i64,
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        to: i64,
        /// Only keys starting with this.
        prefix: Option<String>,
    },
    /// A key's value at a revision or a time.
    Get(GetArgs),
    /// For each key under a prefix, the revision that last changed it.
    Blame {
        /// Keys starting with this (empty: every key).
        #[arg(default_value = "")]
        prefix: String,
        /// At this revision instead of the newest.
        #[arg(long = "rev", value_name = "REV", value_parser = clap::value_parser!(i64).range(1..))]
        revision: Option<i64>,
        /// At most this many keys (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// History's own operations (one per applied batch), newest first.
    Oplog {
        /// At most this many operations.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Put a key (or every key under a prefix) back as it was at a revision. Needs a running
    /// server: the restore is an ordinary write, itself a new revision.
    Restore {
        /// The key, or with --prefix the key prefix.
        key: String,
        #[arg(long)]
        prefix: bool,
        /// The revision to go back to.
        #[arg(long = "to-rev", value_name = "REV", value_parser = clap::value_parser!(i64).range(1..))]
        to_revision: i64,
    },
    /// Where history stands: newest recorded revision, lag behind the store, oldest kept.
    Status,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only revisions that changed this key (or, with --prefix, a key under it).
    pub key: Option<String>,
    #[arg(long, requires = "key")]
    pub prefix: bool,
    /// Revisions from this one (a revision, an RFC 3339 time, or a duration ago: 10m, 2h, 3d).
    #[arg(long, value_name = "REV|TIME")]
    pub since: Option<String>,
    /// Revisions up to this one (same forms as --since).
    #[arg(long, value_name = "REV|TIME")]
    pub until: Option<String>,
    /// At most this many revisions (0: all).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("point").args(["revision", "at"])))]
pub struct GetArgs {
    pub key: String,
    /// At this revision (default, without --at: the newest recorded).
    #[arg(long = "rev", value_name = "REV", value_parser = clap::value_parser!(i64).range(1..))]
    pub revision: Option<i64>,
    /// At this time (RFC 3339 or a duration ago: 10m, 2h, 3d); a plain integer is a revision.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn endpoints_and_data_dir_exclude_each_other() {
        let err = Cli::try_parse_from(["kvctl", "--endpoints", "a:1", "--data-dir", "d", "status"])
            .expect_err("conflict");
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn get_takes_at_most_one_point() {
        let cli = Cli::try_parse_from(["kvctl", "get", "k"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Get(GetArgs {
                revision: None,
                at: None,
                ..
            })
        ));
        assert!(Cli::try_parse_from(["kvctl", "get", "k", "--rev", "2", "--at", "1h"]).is_err());
        assert!(Cli::try_parse_from(["kvctl", "get", "k", "--rev", "0"]).is_err());
        let cli = Cli::try_parse_from(["kvctl", "get", "k", "--at", "1h", "-o", "json"]).unwrap();
        assert_eq!(cli.output, OutputFormat::Json);
        assert!(matches!(
            cli.command,
            Command::Get(GetArgs { at: Some(_), .. })
        ));
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "kvctl",
            "log",
            "/a",
            "--prefix",
            "--utc",
            "--color",
            "never",
            "--data-dir",
            "d",
        ])
        .unwrap();
        assert!(cli.utc);
        assert_eq!(cli.color, ColorChoice::Never);
        assert_eq!(cli.data_dir, Some(PathBuf::from("d")));
        assert!(matches!(
            cli.command,
            Command::Log(LogArgs {
                prefix: true,
                limit: 50,
                ..
            })
        ));
    }

    #[test]
    fn restore_needs_a_target_revision() {
        assert!(Cli::try_parse_from(["kvctl", "restore", "/a"]).is_err());
        let cli =
            Cli::try_parse_from(["kvctl", "restore", "/a", "--prefix", "--to-rev", "3"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Restore {
                prefix: true,
                to_revision: 3,
                ..
            }
        ));
    }
}
