//! Hex dumps in the layout of `xxd`: offset, sixteen bytes as eight groups of two, then the bytes
//! as ASCII with `.` for anything unprintable. Long values are cut after [`MAX_BYTES`] with a line
//! saying how many bytes were left out.

use std::fmt::Write as _;

/// How many bytes a dump shows before it stops (256 lines).
pub(crate) const MAX_BYTES: usize = 4096;

const BYTES_PER_LINE: usize = 16;

/// Dumps `bytes`, one line per sixteen bytes, each line ending in `\n`; empty input gives "".
pub(crate) fn dump(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(MAX_BYTES)];
    let mut out = String::with_capacity(shown.len() / BYTES_PER_LINE * 68 + 68);
    for (line, chunk) in shown.chunks(BYTES_PER_LINE).enumerate() {
        let _ = write!(out, "{:08x}:", line * BYTES_PER_LINE);
        for column in 0..BYTES_PER_LINE {
            if column % 2 == 0 {
                out.push(' ');
            }
            match chunk.get(column) {
                Some(byte) => {
                    let _ = write!(out, "{byte:02x}");
                }
                None => out.push_str("  "),
            }
        }
        out.push_str("  ");
        out.extend(chunk.iter().map(|&byte| {
            if byte.is_ascii_graphic() || byte == b' ' {
                char::from(byte)
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    if bytes.len() > shown.len() {
        let _ = writeln!(out, "… {} more bytes", bytes.len() - shown.len());
    }
    out
}

/// The bytes as one run of lowercase hex digits (`0a02`).
pub(crate) fn plain(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_xxd_layout() {
        assert_eq!(
            dump(b"k8s\0\n\x0b\n\x02v1\x12\x03Pod\x12hello world"),
            "00000000: 6b38 7300 0a0b 0a02 7631 1203 506f 6412  k8s.....v1..Pod.\n\
             00000010: 6865 6c6c 6f20 776f 726c 64              hello world\n"
        );
    }

    #[test]
    fn empty_is_empty() {
        assert_eq!(dump(b""), "");
    }

    #[test]
    fn odd_length_pads_the_hex_column() {
        assert_eq!(
            dump(b"abc"),
            "00000000: 6162 63                                  abc\n"
        );
    }

    #[test]
    fn caps_huge_values() {
        let bytes = vec![0xffu8; MAX_BYTES + 10];
        let text = dump(&bytes);
        assert_eq!(text.lines().count(), MAX_BYTES / BYTES_PER_LINE + 1);
        assert!(text.ends_with("… 10 more bytes\n"));
    }
}
