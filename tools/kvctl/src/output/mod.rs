//! Formatting of history for people (`text`) and for programs (`json`): pure functions from the
//! engine's history model to strings and JSON values, so that every shape is snapshot-tested
//! without a server.
//!
//! Keys and values are shown through `render` (Kubernetes objects as YAML, JSON pretty-printed,
//! binary as a hex dump); times in the chosen zone ([`Style::zone`]) in text and always in UTC
//! (RFC 3339) in JSON.

pub mod json;
pub mod text;

use anstyle::{AnsiColor, Color, Style as Ansi};
use cairn_engine::history::Origin;
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// How text output looks.
#[derive(Clone, Debug)]
pub struct Style {
    /// ANSI colours (only on a terminal, or when asked for).
    pub color: bool,
    /// The zone times are shown in: the local one, or UTC with `--utc`.
    pub zone: TimeZone,
}

impl Style {
    /// No colour, UTC: the style of tests and pipes.
    pub fn plain() -> Self {
        Self {
            color: false,
            zone: TimeZone::UTC,
        }
    }

    fn paint(&self, style: Ansi, text: &str) -> String {
        if self.color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_owned()
        }
    }

    fn revision(&self, revision: i64) -> String {
        self.paint(fg(AnsiColor::Magenta).bold(), &revision.to_string())
    }

    fn commit(&self, id: &str) -> String {
        self.paint(fg(AnsiColor::Blue), short_id(id))
    }

    fn time(&self, unix_ms: u64) -> String {
        self.paint(fg(AnsiColor::Cyan), &local_time(unix_ms, &self.zone))
    }

    fn put_marker(&self) -> String {
        self.paint(fg(AnsiColor::Green), "+")
    }

    fn delete_marker(&self) -> String {
        self.paint(fg(AnsiColor::Red), "-")
    }

    fn head_node(&self) -> String {
        self.paint(fg(AnsiColor::Green).bold(), "@")
    }

    fn dim(&self, text: &str) -> String {
        self.paint(Ansi::new().dimmed(), text)
    }
}

fn fg(color: AnsiColor) -> Ansi {
    Ansi::new().fg_color(Some(Color::Ansi(color)))
}

/// The first 12 hex digits of a commit or operation id (as jj shows them).
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn timestamp(unix_ms: u64) -> Timestamp {
    i64::try_from(unix_ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(Timestamp::MAX)
}

/// `2026-11-22 10:00:00 +00:00` in `zone`.
pub fn local_time(unix_ms: u64, zone: &TimeZone) -> String {
    timestamp(unix_ms)
        .to_zoned(zone.clone())
        .strftime("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// `2026-11-22T10:00:00.000Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    timestamp(unix_ms)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// `alice via etcdctl/3.4`, `alice`, `via kvctl/0.1.0`; `None` when nothing is known.
pub fn origin_text(origin: &Origin) -> Option<String> {
    match (origin.user.is_empty(), origin.agent.is_empty()) {
        (true, true) => None,
        (false, true) => Some(origin.user.clone()),
        (true, false) => Some(format!("via {}", origin.agent)),
        (false, false) => Some(format!("{} via {}", origin.user, origin.agent)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_in_the_zone_asked_for() {
        let ms = 1_795_860_000_123; // 2026-11-28T10:00:00.123Z
        assert_eq!(rfc3339(ms), "2026-11-28T10:00:00.123Z");
        assert_eq!(local_time(ms, &TimeZone::UTC), "2026-11-28 10:00:00 +00:00");
        let paris = TimeZone::get("Europe/Paris")
            .unwrap_or(TimeZone::fixed(jiff::tz::Offset::from_hours(1).unwrap()));
        assert_eq!(local_time(ms, &paris), "2026-11-28 11:00:00 +01:00");
        // Out-of-range times do not panic.
        let _ = rfc3339(u64::MAX);
        let _ = local_time(u64::MAX, &TimeZone::UTC);
    }

    #[test]
    fn ids_are_shortened_safely() {
        assert_eq!(short_id("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(short_id("ééééééé"), "éééééé");
        assert_eq!(short_id("aéééééééééééé"), "aéééééééééééé");
    }

    #[test]
    fn origins_say_what_is_known() {
        let origin = |user: &str, agent: &str| Origin {
            user: user.into(),
            agent: agent.into(),
        };
        assert_eq!(origin_text(&origin("", "")), None);
        assert_eq!(origin_text(&origin("alice", "")), Some("alice".into()));
        assert_eq!(
            origin_text(&origin("", "kvctl/0.1.0")),
            Some("via kvctl/0.1.0".into())
        );
        assert_eq!(
            origin_text(&origin("alice", "etcdctl")),
            Some("alice via etcdctl".into())
        );
    }
}
