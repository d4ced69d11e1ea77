//! Keys as one line of text that names exactly one byte string.
//!
//! A key of printable UTF-8 without backslashes is shown as it is (`/registry/pods/default/web`).
//! Any other key is escaped byte by byte: each byte of an invalid UTF-8 sequence, of a control
//! character or of an invisible character (zero-width, bidi override, ...) becomes `\xNN`, and a
//! backslash becomes `\\`. So a rendering without a backslash is the key itself, and one with
//! backslashes decodes back to exactly one key: `a\x00` is the two bytes `a`, NUL, while the four
//! characters `a\x00` render as `a\\x00`.

use std::fmt::Write as _;

/// Renders a key unambiguously (see the module docs).
pub fn render_key(key: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(key)
        && text.chars().all(|c| c != '\\' && is_visible(c))
    {
        return text.to_owned();
    }
    let mut out = String::with_capacity(key.len() + 8);
    for chunk in key.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if is_visible(c) {
                out.push(c);
            } else {
                escape_bytes(c.encode_utf8(&mut [0; 4]).as_bytes(), &mut out);
            }
        }
        escape_bytes(chunk.invalid(), &mut out);
    }
    out
}

fn escape_bytes(bytes: &[u8], out: &mut String) {
    for byte in bytes {
        let _ = write!(out, "\\x{byte:02x}");
    }
}

/// Whether a character shows as itself: not a control character, not whitespace other than the
/// plain space, and not one of the format characters that render as nothing.
fn is_visible(c: char) -> bool {
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_keys_are_shown_as_is() {
        assert_eq!(
            render_key(b"/registry/pods/default/web"),
            "/registry/pods/default/web"
        );
        assert_eq!(render_key("/café/ключ/鍵 x".as_bytes()), "/café/ключ/鍵 x");
        assert_eq!(render_key(b""), "");
    }

    #[test]
    fn other_bytes_are_escaped() {
        assert_eq!(render_key(b"a\x00b"), "a\\x00b");
        assert_eq!(render_key(b"\xff\xfe/x"), "\\xff\\xfe/x");
        assert_eq!(render_key(b"line\nbreak\t"), "line\\x0abreak\\x09");
        assert_eq!(
            render_key("zero\u{200b}width".as_bytes()),
            "zero\\xe2\\x80\\x8bwidth"
        );
    }

    #[test]
    fn backslashes_are_doubled_when_escaping() {
        assert_eq!(render_key(b"a\\x00"), "a\\\\x00");
        assert_ne!(render_key(b"a\\x00"), render_key(b"a\x00"));
    }
}
