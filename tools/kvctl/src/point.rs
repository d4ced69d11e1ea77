//! Points in history as users write them on the command line, and keys as kvctl prints them.
//!
//! | written | means |
//! |---------|-------|
//! | `42` | revision 42 |
//! | `2026-11-22T10:00:00Z`, `2026-11-22T11:00:00+01:00` | that instant (RFC 3339) |
//! | `10m`, `2h`, `3d`, `1w`, `2h 30m`, `3 days ago` | that long before now (days and weeks in the local calendar) |

use bytes::Bytes;
use jiff::{Span, Timestamp, Zoned};

/// A revision or an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    Revision(i64),
    /// Milliseconds since the Unix epoch.
    Time(u64),
}

/// Why a point or a key could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("revision must be 1 or more, got {0}")]
    Revision(i64),
    #[error(
        "expected a revision (42), an RFC 3339 time (2026-11-22T10:00:00Z) or a duration ago \
         (10m, 2h, 3d), got {0:?}"
    )]
    Point(String),
    #[error("{0:?} is before 1970")]
    BeforeEpoch(String),
    #[error("{0:?} is too far back")]
    TooFarBack(String),
    #[error(
        "bad escape in key {key:?} at byte {at}: use \\\\ for a backslash and \\xNN for a byte"
    )]
    KeyEscape { key: String, at: usize },
}

/// Reads a point; relative durations count back from `now` (in `now`'s time zone).
pub fn parse_point(text: &str, now: &Zoned) -> Result<Point, ArgError> {
    let text = text.trim();
    if let Ok(revision) = text.parse::<i64>() {
        return if revision >= 1 {
            Ok(Point::Revision(revision))
        } else {
            Err(ArgError::Revision(revision))
        };
    }
    let instant = if let Ok(timestamp) = text.parse::<Timestamp>() {
        timestamp
    } else if let Ok(span) = text.parse::<Span>() {
        // "3 days ago" parses as a negative span; "3d" as a positive one: both mean the past.
        now.checked_sub(span.abs())
            .map_err(|_| ArgError::TooFarBack(text.to_owned()))?
            .timestamp()
    } else {
        return Err(ArgError::Point(text.to_owned()));
    };
    u64::try_from(instant.as_millisecond())
        .map(Point::Time)
        .map_err(|_| ArgError::BeforeEpoch(text.to_owned()))
}

/// Reads a key as `render::render_key` prints it: `\\` is a backslash, `\xNN` a byte, anything
/// else is itself. So any key kvctl shows can be pasted back.
pub fn parse_key(text: &str) -> Result<Bytes, ArgError> {
    let bytes = text.as_bytes();
    if !bytes.contains(&b'\\') {
        return Ok(Bytes::copy_from_slice(bytes));
    }
    let mut key = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            key.push(bytes[i]);
            i += 1;
            continue;
        }
        let bad = || ArgError::KeyEscape {
            key: text.to_owned(),
            at: i,
        };
        match bytes.get(i + 1) {
            Some(b'\\') => {
                key.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = bytes.get(i + 2..i + 4).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                key.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 4;
            }
            _ => return Err(bad()),
        }
    }
    Ok(Bytes::from(key))
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;

    use super::*;

    fn now() -> Zoned {
        "2026-11-22T10:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .to_zoned(TimeZone::UTC)
    }

    fn ms(rfc3339: &str) -> Point {
        let t: Timestamp = rfc3339.parse().unwrap();
        Point::Time(u64::try_from(t.as_millisecond()).unwrap())
    }

    #[test]
    fn integers_are_revisions() {
        assert_eq!(parse_point("42", &now()), Ok(Point::Revision(42)));
        assert_eq!(parse_point(" 7 ", &now()), Ok(Point::Revision(7)));
        assert_eq!(parse_point("0", &now()), Err(ArgError::Revision(0)));
        assert_eq!(parse_point("-3", &now()), Err(ArgError::Revision(-3)));
    }

    #[test]
    fn rfc3339_times_are_instants() {
        assert_eq!(
            parse_point("2026-11-22T09:00:00Z", &now()),
            Ok(ms("2026-11-22T09:00:00Z"))
        );
        assert_eq!(
            parse_point("2026-11-22T10:00:00+01:00", &now()),
            Ok(ms("2026-11-22T09:00:00Z"))
        );
        assert_eq!(
            parse_point("2026-11-22T09:00:00.250Z", &now()),
            Ok(ms("2026-11-22T09:00:00.250Z"))
        );
    }

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(parse_point("10m", &now()), Ok(ms("2026-11-22T09:50:00Z")));
        assert_eq!(parse_point("2h", &now()), Ok(ms("2026-11-22T08:00:00Z")));
        assert_eq!(parse_point("3d", &now()), Ok(ms("2026-11-19T10:00:00Z")));
        assert_eq!(parse_point("1w", &now()), Ok(ms("2026-11-15T10:00:00Z")));
        assert_eq!(
            parse_point("2h 30m", &now()),
            Ok(ms("2026-11-22T07:30:00Z"))
        );
        assert_eq!(
            parse_point("3 days ago", &now()),
            Ok(ms("2026-11-19T10:00:00Z"))
        );
    }

    #[test]
    fn nonsense_is_refused() {
        for text in ["", "yesterday-ish", "10 parsecs", "2026-13-40T00:00:00Z"] {
            assert_eq!(
                parse_point(text, &now()),
                Err(ArgError::Point(text.trim().to_owned())),
                "{text}"
            );
        }
        assert_eq!(
            parse_point("1969-12-31T23:59:59Z", &now()),
            Err(ArgError::BeforeEpoch("1969-12-31T23:59:59Z".into()))
        );
        assert!(matches!(
            parse_point("999999y", &now()),
            Err(ArgError::TooFarBack(_) | ArgError::Point(_))
        ));
    }

    #[test]
    fn keys_read_back_what_render_key_prints() {
        for key in [
            &b"/registry/pods/default/web"[..],
            b"a\x00b",
            b"\xff\xfe/x",
            b"a\\x00",
            b"line\nbreak",
            b"",
        ] {
            let shown = crate::render::render_key(key);
            assert_eq!(parse_key(&shown).unwrap(), key, "{shown}");
        }
    }

    #[test]
    fn bad_key_escapes_are_refused() {
        for (text, at) in [("a\\", 1), ("a\\q", 1), ("\\x1", 0), ("x\\xzz", 1)] {
            assert_eq!(
                parse_key(text),
                Err(ArgError::KeyEscape {
                    key: text.into(),
                    at
                }),
                "{text}"
            );
        }
    }
}
