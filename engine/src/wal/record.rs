//! Record framing: `[len: u32 LE][crc32: u32 LE][payload: len bytes]`.
//!
//! `crc32` is the CRC-32 (IEEE, as computed by `crc32fast`) of the payload alone. A payload is
//! never empty, so an all-zero header (a zero-filled tail left by a crash or by preallocation)
//! never decodes as a record.

/// Bytes before the payload: length and checksum.
pub const HEADER_LEN: usize = 8;

/// Largest payload a record may carry. Far above any raft entry the API admits (requests are
/// capped at a few MiB); it also bounds what a garbage length field can make the decoder expect.
pub const MAX_PAYLOAD_LEN: usize = 256 * 1024 * 1024;

/// Where a record sits in its segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordPos {
    /// Offset of the frame (its header) in the file.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
}

impl RecordPos {
    /// Offset just past this record.
    pub fn end(self) -> u64 {
        self.offset + HEADER_LEN as u64 + u64::from(self.len)
    }
}

/// Why a frame failed to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadFrame {
    /// Fewer than [`HEADER_LEN`] bytes remain.
    ShortHeader,
    /// A zero length field: a zero-filled tail.
    ZeroLength,
    /// The length field is larger than [`MAX_PAYLOAD_LEN`].
    TooLong,
    /// The payload runs past the end of the data.
    ShortPayload,
    CrcMismatch,
}

/// Appends the frame of `payload` to `buf`.
///
/// The caller guarantees `0 < payload.len() <= MAX_PAYLOAD_LEN`.
pub fn encode_into(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buf.reserve(HEADER_LEN + payload.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// The size of the frame of a payload of `len` bytes.
pub fn frame_len(len: usize) -> u64 {
    (HEADER_LEN + len) as u64
}

/// Decodes the header at the start of `header`: (payload length, crc).
fn parse_header(header: &[u8]) -> Result<(usize, u32), BadFrame> {
    let (Some(len), Some(crc)) = (header.get(0..4), header.get(4..8)) else {
        return Err(BadFrame::ShortHeader);
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if len == 0 {
        return Err(BadFrame::ZeroLength);
    }
    if len > MAX_PAYLOAD_LEN {
        return Err(BadFrame::TooLong);
    }
    Ok((len, crc))
}

/// Decodes the frame starting at `buf[0]`, returning its payload.
pub fn decode(buf: &[u8]) -> Result<&[u8], BadFrame> {
    let (len, crc) = parse_header(buf)?;
    let payload = buf
        .get(HEADER_LEN..HEADER_LEN + len)
        .ok_or(BadFrame::ShortPayload)?;
    if crc32fast::hash(payload) != crc {
        return Err(BadFrame::CrcMismatch);
    }
    Ok(payload)
}

/// The outcome of scanning a segment's bytes from the start.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every good record, in order.
    pub records: Vec<RecordPos>,
    /// The first bad frame, if the data does not end exactly after the last good record.
    pub bad: Option<(u64, BadFrame)>,
}

impl Scan {
    /// Length of the good prefix.
    pub fn valid_len(&self) -> u64 {
        self.records.last().map_or(0, |r| r.end())
    }
}

/// Decodes consecutive frames from the start of `data` until the end or the first bad frame.
pub fn scan(data: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut offset = 0usize;
    while offset < data.len() {
        let rest = &data[offset..];
        match decode(rest) {
            Ok(payload) => {
                scan.records.push(RecordPos {
                    offset: offset as u64,
                    len: payload.len() as u32,
                });
                offset += HEADER_LEN + payload.len();
            }
            Err(bad) => {
                scan.bad = Some((offset as u64, bad));
                break;
            }
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for p in payloads {
            encode_into(&mut buf, p);
        }
        buf
    }

    #[test]
    fn layout_is_len_crc_payload() {
        let buf = frames(&[b"abc"]);
        assert_eq!(&buf[0..4], &3u32.to_le_bytes());
        assert_eq!(&buf[4..8], &crc32fast::hash(b"abc").to_le_bytes());
        assert_eq!(&buf[8..], b"abc");
    }

    #[test]
    fn scan_round_trips() {
        let buf = frames(&[b"a", b"bb", b"ccc"]);
        let scan = scan(&buf);
        assert_eq!(scan.bad, None);
        assert_eq!(scan.records.len(), 3);
        assert_eq!(scan.valid_len(), buf.len() as u64);
        let r = scan.records[1];
        assert_eq!(decode(&buf[r.offset as usize..]).unwrap(), b"bb");
    }

    #[test]
    fn scan_stops_at_torn_or_corrupt_frames() {
        let good = frames(&[b"one", b"two"]);
        let good_len = good.len() as u64;

        let mut short = good.clone();
        short.extend_from_slice(&frames(&[b"three"])[..10]);
        let s = scan(&short);
        assert_eq!(
            (s.records.len(), s.bad),
            (2, Some((good_len, BadFrame::ShortPayload)))
        );

        let mut header = good.clone();
        header.extend_from_slice(&[1, 0, 0]);
        assert_eq!(scan(&header).bad, Some((good_len, BadFrame::ShortHeader)));

        let mut zeros = good.clone();
        zeros.extend_from_slice(&[0; 64]);
        assert_eq!(scan(&zeros).bad, Some((good_len, BadFrame::ZeroLength)));

        let mut flipped = good.clone();
        flipped[9] ^= 1;
        let s = scan(&flipped);
        assert_eq!(
            (s.records.len(), s.bad),
            (0, Some((0, BadFrame::CrcMismatch)))
        );
    }
}
