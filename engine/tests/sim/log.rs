//! A small in-memory log of the engine's tracing events, printed when a scenario fails.
//!
//! The last [`CAPACITY`] events at `debug` and above (`CAIRN_SIM_LOG=<level>` to change), and
//! none of openraft's (`CAIRN_SIM_LOG_OPENRAFT=<level>` to add them), are kept in a ring;
//! `CAIRN_SIM_LOG_STDERR=1` also prints every event as it happens. Scenarios run one at a time,
//! so the ring holds one scenario's events.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, PoisonError};
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

const CAPACITY: usize = 20_000;

struct RingLog {
    start: Instant,
    /// The engine's (and everything else's) level.
    level: Level,
    /// openraft's: it logs every failed message and every refused step (a lot, under faults, some
    /// at error level), so none by default.
    openraft: Option<Level>,
    stderr: bool,
    lines: Mutex<VecDeque<String>>,
    next_span: AtomicU64,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl Subscriber for RingLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let limit = if metadata.target().starts_with("openraft") {
            self.openraft
        } else {
            Some(self.level)
        };
        limit.is_some_and(|limit| *metadata.level() <= limit)
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut line = format!(
            "{:>9.3}s {:5} {}:",
            self.start.elapsed().as_secs_f64(),
            meta.level(),
            meta.target()
        );
        event.record(&mut Fields(&mut line));
        if self.stderr {
            eprintln!("{line}");
        }
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == CAPACITY {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

static LOG: std::sync::OnceLock<&'static RingLog> = std::sync::OnceLock::new();
static INSTALL: Once = Once::new();

/// Installs the process-wide log once.
pub fn install() {
    INSTALL.call_once(|| {
        let level = |var: &str| match std::env::var(var).as_deref() {
            Ok("trace") => Some(Level::TRACE),
            Ok("debug") => Some(Level::DEBUG),
            Ok("info") => Some(Level::INFO),
            Ok("warn") => Some(Level::WARN),
            Ok("error") => Some(Level::ERROR),
            _ => None,
        };
        let log: &'static RingLog = Box::leak(Box::new(RingLog {
            start: Instant::now(),
            level: level("CAIRN_SIM_LOG").unwrap_or(Level::DEBUG),
            openraft: level("CAIRN_SIM_LOG_OPENRAFT"),
            stderr: std::env::var("CAIRN_SIM_LOG_STDERR").is_ok_and(|v| v == "1"),
            lines: Mutex::new(VecDeque::new()),
            next_span: AtomicU64::new(1),
        }));
        if tracing::subscriber::set_global_default(Forward(log)).is_ok() {
            let _ = LOG.set(log);
        }
    });
}

/// `set_global_default` takes the subscriber by value; this hands it the leaked one.
struct Forward(&'static RingLog);

impl Subscriber for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.0.new_span(span)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        self.0.record(span, values);
    }
    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.0.record_follows_from(span, follows);
    }
    fn event(&self, event: &Event<'_>) {
        self.0.event(event);
    }
    fn enter(&self, span: &Id) {
        self.0.enter(span);
    }
    fn exit(&self, span: &Id) {
        self.0.exit(span);
    }
}

/// Forgets what was logged so far (a scenario starts).
pub fn clear() {
    if let Some(log) = LOG.get() {
        log.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// The last `n` lines logged.
pub fn tail(n: usize) -> Vec<String> {
    let Some(log) = LOG.get() else {
        return Vec::new();
    };
    let lines = log.lines.lock().unwrap_or_else(PoisonError::into_inner);
    lines
        .iter()
        .skip(lines.len().saturating_sub(n))
        .cloned()
        .collect()
}

/// Lines logged so far that contain `needle`.
pub fn matching(needle: &str) -> Vec<String> {
    let Some(log) = LOG.get() else {
        return Vec::new();
    };
    let lines = log.lines.lock().unwrap_or_else(PoisonError::into_inner);
    lines
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}
