//! The commands: parse arguments, ask a [`Source`], print through `output`.
//!
//! ```text
//!  Cli ─► execute: pick the source (--data-dir: LocalSource, else RemoteSource on --endpoints)
//!      ─► run(source, command): arguments (point, keys) ─► Source ─► output::{text,json} ─► stdout
//! ```

use std::io::{IsTerminal, Write};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use cairn_engine::history::{At, LogQuery, RevisionEntry};
use jiff::Zoned;
use jiff::tz::TimeZone;

use crate::cli::{Cli, ColorChoice, Command, DEFAULT_ENDPOINT, GetArgs, LogArgs, OutputFormat};
use crate::output::{Style, json, text};
use crate::point::{Point, parse_key, parse_point};
use crate::progress;
use crate::render::render_key;
use crate::source::{LocalSource, MAX_LOG_PAGE, RemoteSource, Source, SourceError};

/// Keys in a diff above which rendering them gets a progress bar.
const DIFF_PROGRESS_KEYS: usize = 200;

/// What every command needs besides its arguments.
#[derive(Clone, Debug)]
pub struct Settings {
    pub output: OutputFormat,
    pub style: Style,
    /// Whether progress bars may be drawn (stderr is a terminal).
    pub progress: bool,
    /// The moment relative times (`10m`) count back from.
    pub now: Zoned,
}

impl Settings {
    pub fn from_cli(cli: &Cli) -> Self {
        let color = match cli.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        };
        let zone = if cli.utc {
            TimeZone::UTC
        } else {
            TimeZone::system()
        };
        Self {
            output: cli.output,
            style: Style { color, zone },
            progress: std::io::stderr().is_terminal(),
            now: Zoned::now(),
        }
    }
}

/// Runs the command line: opens the source it names and runs its command, printing to `out`.
pub async fn execute(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let settings = Settings::from_cli(&cli);
    if let Some(dir) = &cli.data_dir {
        if matches!(cli.command, Command::Restore { .. }) {
            return Err(SourceError::OfflineRestore.into());
        }
        let source = LocalSource::open(dir)
            .await
            .with_context(|| format!("opening the history of {}", dir.display()))?;
        run(&source, cli.command, &settings, out).await
    } else {
        let endpoints = cli.endpoints.as_deref().unwrap_or(DEFAULT_ENDPOINT);
        let source = RemoteSource::connect(endpoints).await?;
        run(&source, cli.command, &settings, out).await
    }
}

/// Runs one command against `source`.
pub async fn run<S: Source>(
    source: &S,
    command: Command,
    settings: &Settings,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let style = &settings.style;
    let as_json = settings.output == OutputFormat::Json;
    match command {
        Command::Log(args) => log(source, args, settings, out).await?,
        Command::Show { revision } => {
            let detail = source.show(revision).await?;
            if as_json {
                json_line(out, &json::detail(&detail))?;
            } else {
                out.write_all(text::show(&detail, style).as_bytes())?;
            }
        }
        Command::Diff { from, to, prefix } => {
            let prefix = prefix.as_deref().map(parse_key).transpose()?;
            diff(source, from, to, prefix.unwrap_or_default(), settings, out).await?;
        }
        Command::Get(args) => get(source, args, settings, out).await?,
        Command::Blame {
            prefix,
            revision,
            limit,
        } => {
            let lines = source.blame(parse_key(&prefix)?, revision, limit).await?;
            if as_json {
                for line in &lines {
                    json_line(out, &json::blame(line))?;
                }
            } else {
                out.write_all(text::blame(&lines, style).as_bytes())?;
            }
        }
        Command::Oplog { limit } => {
            let operations = source.oplog(limit).await?;
            if as_json {
                for op in &operations {
                    json_line(out, &json::operation(op))?;
                }
            } else {
                out.write_all(text::oplog(&operations, style).as_bytes())?;
            }
        }
        Command::Restore {
            key,
            prefix,
            to_revision,
        } => {
            let key = parse_key(&key)?;
            let outcome = source.restore(key.clone(), prefix, to_revision).await?;
            if as_json {
                json_line(out, &json::restore(&key, prefix, to_revision, &outcome))?;
            } else {
                let shown = text::restore(&key, prefix, to_revision, &outcome, style);
                out.write_all(shown.as_bytes())?;
            }
        }
        Command::Status => {
            let status = source.status().await?;
            if as_json {
                json_line(out, &json::status(&status))?;
            } else {
                out.write_all(text::status(&status).as_bytes())?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn json_line(out: &mut dyn Write, value: &serde_json::Value) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// The engine's query for `log`'s arguments (the page size is set while paging).
pub fn log_query(args: &LogArgs, now: &Zoned, changes_limit: usize) -> anyhow::Result<LogQuery> {
    let mut query = LogQuery {
        changes_limit,
        ..LogQuery::default()
    };
    if let Some(key) = &args.key {
        query.key = Some(parse_key(key)?);
        query.prefix = args.prefix;
    }
    if let Some(since) = &args.since {
        match parse_point(since, now)? {
            Point::Revision(revision) => query.min_revision = revision,
            Point::Time(ms) => query.since_unix_ms = ms,
        }
    }
    if let Some(until) = &args.until {
        match parse_point(until, now)? {
            Point::Revision(revision) => query.max_revision = revision,
            Point::Time(ms) => query.until_unix_ms = ms,
        }
    }
    if query.min_revision != 0 && query.max_revision != 0 && query.min_revision > query.max_revision
    {
        bail!(
            "--since revision {} is after --until revision {}",
            query.min_revision,
            query.max_revision
        );
    }
    if query.since_unix_ms != 0
        && query.until_unix_ms != 0
        && query.since_unix_ms > query.until_unix_ms
    {
        bail!("--since is later than --until");
    }
    Ok(query)
}

/// Up to `limit` revisions (0: all) matching `query`, page after page; and whether older ones
/// were left out.
pub async fn fetch_log<S: Source>(
    source: &S,
    mut query: LogQuery,
    limit: usize,
    show_progress: bool,
) -> anyhow::Result<(Vec<RevisionEntry>, bool)> {
    let unbounded = limit == 0;
    let many = unbounded || limit > MAX_LOG_PAGE;
    let bar = progress::bar(
        show_progress && many,
        (!unbounded).then_some(limit as u64),
        "reading log",
    );
    let mut entries: Vec<RevisionEntry> = Vec::new();
    let mut more = false;
    loop {
        query.limit = if unbounded {
            MAX_LOG_PAGE
        } else {
            (limit - entries.len()).min(MAX_LOG_PAGE)
        };
        let page = source.log(query.clone()).await?;
        let got = page.entries.len();
        entries.extend(page.entries);
        bar.set_position(entries.len() as u64);
        let next = page.next_max_revision;
        // Stop on the last page, and on a page that would not move back (a confused server).
        if next <= 0 || got == 0 || (query.max_revision != 0 && next >= query.max_revision) {
            break;
        }
        if !unbounded && entries.len() >= limit {
            more = true;
            break;
        }
        query.max_revision = next;
    }
    bar.finish_and_clear();
    Ok((entries, more))
}

async fn log<S: Source>(
    source: &S,
    args: LogArgs,
    settings: &Settings,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let as_json = settings.output == OutputFormat::Json;
    let changes_limit = if as_json { 0 } else { text::LOG_CHANGES_SHOWN };
    let query = log_query(&args, &settings.now, changes_limit)?;
    let (entries, more) = fetch_log(source, query, args.limit, settings.progress).await?;
    if as_json {
        for entry in &entries {
            json_line(out, &json::revision(entry))?;
        }
    } else {
        // The head gets jj's `@`; without a status the graph is still complete.
        let head = source.status().await.ok().map(|s| s.head_revision);
        out.write_all(text::log(&entries, head, more, &settings.style).as_bytes())?;
    }
    Ok(())
}

async fn diff<S: Source>(
    source: &S,
    from: i64,
    to: i64,
    prefix: Bytes,
    settings: &Settings,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if from > to {
        bail!("the first revision ({from}) must not be after the second ({to})");
    }
    let diffs = source.diff(from, to, prefix).await?;
    let as_json = settings.output == OutputFormat::Json;
    let bar = progress::bar(
        settings.progress && !as_json && diffs.len() > DIFF_PROGRESS_KEYS,
        Some(diffs.len() as u64),
        "rendering",
    );
    if !as_json {
        out.write_all(text::diff_header(from, to, diffs.len()).as_bytes())?;
    }
    for diff in &diffs {
        if as_json {
            json_line(out, &json::key_diff(diff, from, to))?;
        } else {
            let shown = text::key_diff(diff, from, to, &settings.style);
            bar.suspend(|| -> std::io::Result<()> {
                out.write_all(b"\n")?;
                out.write_all(shown.as_bytes())
            })?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(())
}

async fn get<S: Source>(
    source: &S,
    args: GetArgs,
    settings: &Settings,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let key = parse_key(&args.key)?;
    let point = match (args.revision, &args.at) {
        (Some(revision), _) => Point::Revision(revision),
        (None, Some(at)) => parse_point(at, &settings.now)?,
        (None, None) => match source.status().await?.head_revision {
            0 => bail!("no revision is recorded yet"),
            head => Point::Revision(head),
        },
    };
    let at = match point {
        Point::Revision(revision) => At::Revision(revision),
        Point::Time(ms) => At::Time(ms),
    };
    let Some(kv) = source.get(key.clone(), at).await? else {
        let when = match point {
            Point::Revision(revision) => format!("revision {revision}"),
            Point::Time(ms) => crate::output::rfc3339(ms),
        };
        bail!("{} did not exist at {when}", render_key(&key));
    };
    if settings.output == OutputFormat::Json {
        json_line(out, &json::key_version(&kv))?;
    } else {
        out.write_all(text::value(&kv).as_bytes())?;
    }
    Ok(())
}
