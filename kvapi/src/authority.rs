//! Repairs the `:authority` that etcdctl's `--cluster` commands send, before hyper sees it.
//!
//! etcdctl 3.4 dials every member's client URL as the gRPC target
//! `passthrough:///http://host:port`, so grpc-go sends the pseudo-header
//! `:authority: http://host:port`. h2 refuses a request whose `:authority` does not parse as a
//! URI authority and resets the stream with `PROTOCOL_ERROR`; etcd's grpc-go server ignores
//! `:authority`. [`AuthorityFix`] wraps each accepted client connection and rewrites such an
//! `:authority` to what follows `scheme://`, or drops it when that is no authority either.
//!
//! ```text
//!  TcpStream ──► AuthorityFix ──► hyper-util auto (h1 / h2c)
//!
//!  not the HTTP/2 preface (HTTP/1.1): every byte passed on untouched
//!  h2c, client → server, frame header by frame header (payloads are not looked at):
//!    frames other than HEADERS/CONTINUATION: passed on untouched
//!    the connection's first header block: HPACK-decoded
//!      ├ :authority fine ─► passed on untouched, and so is the rest of the connection
//!      └ :authority bad  ─► rewritten; from then on every header block is decoded
//!                           (tracking the client's dynamic table) and re-encoded
//!                           with literals only
//!  server → client: untouched
//! ```
//!
//! Why hyper's HPACK decoder stays consistent: until the first rewrite it has seen exactly the
//! client's blocks, so its dynamic table is the client's. From the first rewrite on, every block
//! it sees uses only "literal header field without indexing" with literal names, which neither
//! reads nor changes its dynamic table, so what it holds then no longer matters.
//!
//! Why the first block decides: grpc-go (and tonic) send the same `:authority` on every stream of
//! a connection, so a connection that starts well never needs a rewrite, and those connections,
//! all but etcdctl's `--cluster` ones, cost one HPACK decode in total (loona-hpack's Huffman
//! decoding is slow: tens of microseconds a string). A connection whose first block is malformed
//! is passed on untouched as well: hyper's decoder is still in step with the client there, so h2
//! answers it exactly as it would without this wrapper.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use loona_hpack::Decoder;
use loona_hpack::encoder::encode_integer_into;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Stream dependency (4 bytes) and weight (1 byte) of a HEADERS frame with the PRIORITY flag.
const PRIORITY_LEN: usize = 5;
/// The largest frame payload written to hyper. `SETTINGS_MAX_FRAME_SIZE` cannot be smaller than
/// this (RFC 9113 §6.5.2), and it is what hyper advertises unless configured otherwise (the
/// server in `lib.rs` is not).
const MAX_FRAME_SIZE: usize = 16_384;
/// `SETTINGS_HEADER_TABLE_SIZE` of the server: h2's default, which hyper keeps. The client may
/// not grow its dynamic table beyond it.
const HEADER_TABLE_SIZE: usize = 4_096;
/// A header block (all its frames) larger than this closes the connection; h2 refuses far
/// smaller ones (16 KiB header lists, a handful of CONTINUATION frames).
const MAX_BLOCK_BYTES: usize = 1 << 20;
/// How much is read at a time into the internal buffer (only while a frame header or a header
/// block is incomplete; everything else is read straight into hyper's buffer).
const READ_CHUNK: usize = 16 * 1024;
/// Internal buffers larger than this are freed once empty (after an unusually large block).
const KEEP_BUFFER: usize = 64 * 1024;

/// A client connection whose h2c requests get a valid `:authority` (see the module docs).
pub(crate) struct AuthorityFix<IO> {
    io: IO,
    mode: Mode,
    /// Start in [`Mode::Rewrite`] after the preface (tests: rewrite every block).
    rewrite_all: bool,
    /// Bytes read from `io` not yet given to the reader: `raw[start..end]`.
    raw: Vec<u8>,
    start: usize,
    end: usize,
    /// How many bytes at the front of `raw[start..end]` go to the reader unchanged.
    clear: usize,
    /// Payload bytes, not yet seen, of the frame being passed on.
    skip: usize,
    /// Re-encoded header frames not yet given to the reader: `out[out_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    /// HPACK state while header blocks are inspected or rewritten.
    hpack: Option<Box<Hpack>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Not yet known whether the connection starts with the HTTP/2 preface.
    Sniff,
    /// h2c; the first header block decides between `Passthrough` and `Rewrite`.
    Inspect,
    /// h2c with a repaired `:authority`: every header block is re-encoded.
    Rewrite,
    /// Every byte goes to the reader as read.
    Passthrough,
}

/// What [`AuthorityFix::process`] did.
enum Step {
    /// Something is ready for the reader (or the mode changed).
    Progress,
    /// More input is needed.
    NeedMore,
}

impl<IO> AuthorityFix<IO> {
    pub(crate) fn new(io: IO) -> Self {
        AuthorityFix {
            io,
            mode: Mode::Sniff,
            rewrite_all: false,
            raw: Vec::new(),
            start: 0,
            end: 0,
            clear: 0,
            skip: 0,
            out: Vec::new(),
            out_pos: 0,
            hpack: None,
        }
    }

    /// Works on the buffered input `raw[start..end]` (nothing of it is `clear` yet).
    fn process(&mut self) -> io::Result<Step> {
        let pending = &self.raw[self.start..self.end];
        match self.mode {
            Mode::Sniff => {
                let n = pending.len().min(PREFACE.len());
                if pending[..n] != PREFACE[..n] {
                    self.mode = Mode::Passthrough;
                    self.clear = pending.len();
                } else if n == PREFACE.len() {
                    self.mode = if self.rewrite_all {
                        Mode::Rewrite
                    } else {
                        Mode::Inspect
                    };
                    self.clear = n;
                } else {
                    return Ok(Step::NeedMore);
                }
                Ok(Step::Progress)
            }
            Mode::Passthrough => {
                self.clear = pending.len();
                Ok(Step::Progress)
            }
            Mode::Inspect | Mode::Rewrite => {
                let n = scan(&mut self.skip, pending);
                if n > 0 {
                    self.clear = n;
                    Ok(Step::Progress)
                } else if pending.len() < FRAME_HEADER_LEN {
                    Ok(Step::NeedMore)
                } else {
                    // `scan` stopped at a HEADERS or CONTINUATION frame header.
                    self.header_block()
                }
            }
        }
    }

    /// `raw[start..]` starts with a HEADERS (or a stray CONTINUATION) frame header.
    fn header_block(&mut self) -> io::Result<Step> {
        let pending = &self.raw[self.start..self.end];
        let len = match find_block(pending) {
            Found::Incomplete => return Ok(Step::NeedMore),
            Found::Malformed(why) => return self.malformed(why),
            Found::Complete(len) => len,
        };
        let hpack = self.hpack.get_or_insert_with(Hpack::boxed);
        let head = match hpack.parse(&pending[..len]) {
            Ok(head) => head,
            Err(why) => return self.malformed(why),
        };
        let changed = match hpack.reencode() {
            Ok(changed) => changed,
            Err(err) => return self.malformed(&format!("HPACK: {err}")),
        };
        if changed || self.mode == Mode::Rewrite {
            hpack.emit(&head, &mut self.out);
            self.consume(len);
            self.mode = Mode::Rewrite;
        } else {
            // The first block needs nothing: it and the rest of the connection go on untouched.
            self.clear = len;
            self.mode = Mode::Passthrough;
            self.hpack = None;
        }
        Ok(Step::Progress)
    }

    /// A header block this wrapper cannot read.
    fn malformed(&mut self, why: &str) -> io::Result<Step> {
        if self.mode == Mode::Rewrite {
            // hyper's HPACK state no longer follows the client's: the connection cannot go on.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed HTTP/2 header block: {why}"),
            ));
        }
        // Nothing was rewritten yet, so h2 can judge the original bytes itself.
        self.mode = Mode::Passthrough;
        self.hpack = None;
        self.clear = self.end - self.start;
        Ok(Step::Progress)
    }

    /// Drops `n` bytes from the front of the buffered input.
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.mode == Mode::Passthrough || self.raw.len() > KEEP_BUFFER {
                self.raw = Vec::new();
            }
        }
    }

    /// Copies what is ready (re-encoded frames, then input cleared to pass) into `buf`.
    fn deliver(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let mut delivered = false;
        if self.out_pos < self.out.len() {
            let n = buf.remaining().min(self.out.len() - self.out_pos);
            buf.put_slice(&self.out[self.out_pos..self.out_pos + n]);
            self.out_pos += n;
            delivered = true;
            if self.out_pos < self.out.len() {
                return true;
            }
            self.out_pos = 0;
            if self.out.capacity() > KEEP_BUFFER {
                self.out = Vec::new();
            } else {
                self.out.clear();
            }
        }
        if self.clear > 0 && buf.remaining() > 0 {
            let n = buf.remaining().min(self.clear);
            buf.put_slice(&self.raw[self.start..self.start + n]);
            self.clear -= n;
            self.consume(n);
            delivered = true;
        }
        delivered
    }

    /// Stores `tail`, which the reader must not see as is, as the buffered input (empty before).
    fn stash(&mut self, tail: &[u8]) {
        if self.raw.len() < tail.len() {
            self.raw.resize(tail.len().max(READ_CHUNK), 0);
        }
        self.raw[..tail.len()].copy_from_slice(tail);
        self.start = 0;
        self.end = tail.len();
    }
}

impl<IO: AsyncRead + Unpin> AuthorityFix<IO> {
    /// Reads more input into `raw`; `Ok(0)` at end of input.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.start > 0 {
            self.raw.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.raw.len() - self.end < READ_CHUNK {
            self.raw.resize(self.end + READ_CHUNK, 0);
        }
        let mut read = ReadBuf::new(&mut self.raw[self.end..]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        self.end += n;
        Poll::Ready(Ok(n))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityFix<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if buf.remaining() == 0 || this.deliver(buf) {
                return Poll::Ready(Ok(()));
            }
            if this.start < this.end || this.mode == Mode::Sniff {
                if let Step::Progress = this.process()? {
                    continue;
                }
                if ready!(this.poll_fill(cx))? == 0 {
                    // The client closed with an incomplete frame (or preface) pending.
                    if this.mode == Mode::Rewrite {
                        this.start = 0;
                        this.end = 0;
                        return Poll::Ready(Ok(()));
                    }
                    this.mode = Mode::Passthrough;
                    this.hpack = None;
                    this.clear = this.end - this.start;
                }
                continue;
            }
            // Nothing buffered: read straight into the reader's buffer.
            if this.mode == Mode::Passthrough {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            let new = &buf.filled()[before..];
            if new.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let n = scan(&mut this.skip, new);
            if n < new.len() {
                // A header block (or an incomplete frame header) starts at `n`: keep it back.
                this.stash(&new[n..]);
                buf.set_filled(before + n);
            }
            if n > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Walks the frames in `data`, continuing a frame whose payload has `skip` bytes left, and
/// returns how many leading bytes go on unchanged: it stops at a HEADERS or CONTINUATION frame
/// header, or at a frame header that is not complete in `data`. Only frame headers are read.
fn scan(skip: &mut usize, data: &[u8]) -> usize {
    let mut pos = 0;
    loop {
        let left = data.len() - pos;
        if *skip >= left {
            *skip -= left;
            return data.len();
        }
        pos += *skip;
        *skip = 0;
        let Some(header) = data[pos..].first_chunk::<FRAME_HEADER_LEN>() else {
            return pos;
        };
        if header[3] == HEADERS || header[3] == CONTINUATION {
            return pos;
        }
        pos += FRAME_HEADER_LEN;
        *skip = frame_len(header);
    }
}

fn frame_len(header: &[u8; FRAME_HEADER_LEN]) -> usize {
    usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2])
}

fn stream_id(header: &[u8; FRAME_HEADER_LEN]) -> u32 {
    u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff
}

enum Found {
    Incomplete,
    /// The block's frames are the first this many bytes.
    Complete(usize),
    Malformed(&'static str),
}

/// Finds the end of the header block (HEADERS, then CONTINUATION frames up to `END_HEADERS`)
/// that `data` starts with.
fn find_block(data: &[u8]) -> Found {
    let mut pos = 0;
    let mut stream = None;
    loop {
        let Some(header) = data[pos..].first_chunk::<FRAME_HEADER_LEN>() else {
            return Found::Incomplete;
        };
        let id = stream_id(header);
        match stream {
            None if header[3] != HEADERS => {
                return Found::Malformed("CONTINUATION frame without a header block");
            }
            Some(open) if header[3] != CONTINUATION || id != open => {
                return Found::Malformed("header block interrupted by another frame");
            }
            _ => stream = Some(id),
        }
        let next = pos + FRAME_HEADER_LEN + frame_len(header);
        if next > MAX_BLOCK_BYTES {
            return Found::Malformed("header block larger than 1 MiB");
        }
        if data.len() < next {
            return Found::Incomplete;
        }
        pos = next;
        if header[4] & END_HEADERS != 0 {
            return Found::Complete(pos);
        }
    }
}

/// What the re-encoded HEADERS frame keeps of the original.
struct Head {
    stream: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
}

/// The client's HPACK context and scratch space for one header block.
struct Hpack {
    decoder: Decoder<'static>,
    /// The block's fragments, joined, without padding and priority fields.
    fragment: Vec<u8>,
    /// The block re-encoded.
    block: Vec<u8>,
}

impl Hpack {
    fn boxed() -> Box<Hpack> {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Box::new(Hpack {
            decoder,
            fragment: Vec::new(),
            block: Vec::new(),
        })
    }

    /// Joins the fragments of a complete block (as found by [`find_block`]) into `fragment`.
    fn parse(&mut self, frames: &[u8]) -> Result<Head, &'static str> {
        self.fragment.clear();
        let mut head = None;
        let mut rest = frames;
        while let Some((header, after)) = rest.split_first_chunk::<FRAME_HEADER_LEN>() {
            let len = frame_len(header);
            let (Some(payload), Some(after)) = (after.get(..len), after.get(len..)) else {
                return Err("truncated frame");
            };
            rest = after;
            if head.is_some() {
                self.fragment.extend_from_slice(payload);
                continue;
            }
            let flags = header[4];
            let mut body = payload;
            let mut pad = 0;
            if flags & PADDED != 0 {
                let Some((&n, unpadded)) = body.split_first() else {
                    return Err("PADDED HEADERS frame without a pad length");
                };
                pad = usize::from(n);
                body = unpadded;
            }
            let mut priority = None;
            if flags & PRIORITY != 0 {
                let Some((fields, after_priority)) = body.split_first_chunk::<PRIORITY_LEN>()
                else {
                    return Err("HEADERS frame too short for its priority fields");
                };
                priority = Some(*fields);
                body = after_priority;
            }
            let Some(kept) = body.len().checked_sub(pad) else {
                return Err("HEADERS padding longer than the frame");
            };
            self.fragment.extend_from_slice(&body[..kept]);
            head = Some(Head {
                stream: [header[5], header[6], header[7], header[8]],
                end_stream: flags & END_STREAM != 0,
                priority,
            });
        }
        head.ok_or("empty header block")
    }

    /// Decodes `fragment` and re-encodes it into `block`, repairing `:authority`; returns
    /// whether `:authority` was changed or dropped.
    fn reencode(&mut self) -> Result<bool, loona_hpack::decoder::DecoderError> {
        let Hpack {
            decoder,
            fragment,
            block,
        } = self;
        block.clear();
        let mut changed = false;
        decoder.decode_with_cb(fragment, |name: Cow<'_, [u8]>, value: Cow<'_, [u8]>| {
            if *name != *b":authority" {
                put_literal(block, &name, &value);
                return;
            }
            match repair_authority(&value) {
                Repair::Keep => put_literal(block, &name, &value),
                Repair::Replace(fixed) => {
                    changed = true;
                    put_literal(block, &name, fixed);
                }
                Repair::Drop => changed = true,
            }
        })?;
        Ok(changed)
    }

    /// Appends `block` to `out` as a HEADERS frame and as many CONTINUATION frames as needed.
    fn emit(&self, head: &Head, out: &mut Vec<u8>) {
        let mut rest: &[u8] = &self.block;
        let mut priority = head.priority;
        let mut first = true;
        loop {
            let extra = if priority.is_some() { PRIORITY_LEN } else { 0 };
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME_SIZE - extra));
            let (kind, mut flags) = if first {
                let end_stream = if head.end_stream { END_STREAM } else { 0 };
                let with_priority = if extra > 0 { PRIORITY } else { 0 };
                (HEADERS, end_stream | with_priority)
            } else {
                (CONTINUATION, 0)
            };
            if tail.is_empty() {
                flags |= END_HEADERS;
            }
            let len = (chunk.len() + extra) as u32;
            out.extend_from_slice(&len.to_be_bytes()[1..]);
            out.extend_from_slice(&[kind, flags]);
            out.extend_from_slice(&head.stream);
            if let Some(fields) = priority.take() {
                out.extend_from_slice(&fields);
            }
            out.extend_from_slice(chunk);
            rest = tail;
            first = false;
            if rest.is_empty() {
                return;
            }
        }
    }
}

enum Repair<'a> {
    Keep,
    Replace(&'a [u8]),
    Drop,
}

/// `host:port` stays; `scheme://host:port` becomes `host:port`; anything else h2 would refuse
/// is dropped.
fn repair_authority(value: &[u8]) -> Repair<'_> {
    if is_authority(value) {
        return Repair::Keep;
    }
    match value.windows(3).position(|w| w == b"://") {
        Some(at) if is_authority(&value[at + 3..]) => Repair::Replace(&value[at + 3..]),
        _ => Repair::Drop,
    }
}

/// Whether h2 accepts `value` as `:authority` (it parses it the same way).
fn is_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// Appends a literal header field without indexing, with a literal name (RFC 7541 §6.2.2):
/// the form that neither reads nor changes the decoder's dynamic table.
fn put_literal(block: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    block.push(0x00);
    put_string(block, name);
    put_string(block, value);
}

/// Appends a string literal, not Huffman-coded (RFC 7541 §5.2).
fn put_string(block: &mut Vec<u8>, s: &[u8]) {
    // Writing to a Vec cannot fail.
    let _ = encode_integer_into(s.len(), 7, 0, block);
    block.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    use loona_hpack::Encoder;
    use loona_hpack::decoder::DecoderError;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type Headers = Vec<(Vec<u8>, Vec<u8>)>;

    const DATA: u8 = 0x0;
    const SETTINGS: u8 = 0x4;
    const RST_STREAM: u8 = 0x3;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// What etcdctl's `--cluster` connections send, with `authority`.
    fn grpc_request(authority: &str, path: &str) -> Headers {
        headers(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("user-agent", "grpc-go/1.26.0"),
            ("te", "trailers"),
        ])
    }

    fn with_authority(mut list: Headers, authority: &str) -> Headers {
        for (name, value) in &mut list {
            if name == b":authority" {
                *value = authority.as_bytes().to_vec();
            }
        }
        list
    }

    fn encode(encoder: &mut Encoder<'_>, list: &Headers) -> Vec<u8> {
        encoder.encode(list.iter().map(|(n, v)| (&n[..], &v[..])))
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn settings() -> Vec<u8> {
        frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])
    }

    /// The preface, a SETTINGS frame, then `frames`.
    fn h2(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend(settings());
        for f in frames {
            out.extend_from_slice(f);
        }
        out
    }

    /// A connection whose first header block needs a repair, so the rest is rewritten.
    fn rewriting_start() -> Vec<Vec<u8>> {
        let mut encoder = Encoder::new();
        let first = grpc_request("http://127.0.0.1:2379", "/etcdserverpb.KV/Range");
        vec![frame(
            HEADERS,
            END_HEADERS,
            1,
            &encode(&mut encoder, &first),
        )]
    }

    /// `input` through an [`AuthorityFix`] over a pipe holding `pipe` bytes, read `read` bytes
    /// at a time.
    async fn pass(
        input: &[u8],
        pipe: usize,
        read: usize,
        rewrite_all: bool,
    ) -> io::Result<Vec<u8>> {
        let (mut client, server) = tokio::io::duplex(pipe);
        let mut fix = AuthorityFix::new(server);
        fix.rewrite_all = rewrite_all;
        let input = input.to_vec();
        let writer = async move {
            // Fails once the reader gave up (an error closes the connection).
            let _ = client.write_all(&input).await;
        };
        let reader = async move {
            let mut out = Vec::new();
            let mut buf = vec![0; read];
            loop {
                let n = fix.read(&mut buf).await?;
                if n == 0 {
                    return Ok(out);
                }
                out.extend_from_slice(&buf[..n]);
            }
        };
        let ((), result) = tokio::join!(writer, reader);
        result
    }

    /// `input` through several ways (at once; one byte at a time through the pipe; tiny reads),
    /// which must agree.
    async fn through_as(input: &[u8], rewrite_all: bool) -> io::Result<Vec<u8>> {
        let kind = |r: &io::Result<Vec<u8>>| r.as_ref().map_err(io::Error::kind).cloned();
        let bulk = pass(input, 1 << 20, 64 * 1024, rewrite_all).await;
        for (pipe, read) in [(1, 64 * 1024), (64 * 1024, 1), (1, 7), (13, 5)] {
            let other = pass(input, pipe, read, rewrite_all).await;
            assert_eq!(kind(&other), kind(&bulk), "pipe {pipe}, reads of {read}");
        }
        bulk
    }

    async fn through(input: &[u8]) -> io::Result<Vec<u8>> {
        through_as(input, false).await
    }

    #[derive(Debug, PartialEq, Eq)]
    struct Frame {
        kind: u8,
        flags: u8,
        stream: u32,
        payload: Vec<u8>,
    }

    /// The complete frames at the start of `bytes`, and what follows them.
    fn split_frames(mut rest: &[u8]) -> (Vec<Frame>, &[u8]) {
        let mut out = Vec::new();
        while let Some((header, after)) = rest.split_first_chunk::<FRAME_HEADER_LEN>() {
            let len = frame_len(header);
            let Some(payload) = after.get(..len) else {
                break;
            };
            out.push(Frame {
                kind: header[3],
                flags: header[4],
                stream: stream_id(header),
                payload: payload.to_vec(),
            });
            rest = &after[len..];
        }
        (out, rest)
    }

    /// The frames after the preface.
    fn frames(bytes: &[u8]) -> Vec<Frame> {
        let (frames, rest) = split_frames(bytes.strip_prefix(PREFACE).expect("the preface first"));
        assert!(rest.is_empty(), "a truncated frame at the end");
        frames
    }

    /// The output's header blocks, each decoded with its own fresh decoder (so none may use the
    /// dynamic table), checking the frames as h2 would.
    fn blocks(frames: &[Frame]) -> Vec<(u8, Headers)> {
        let mut out = Vec::new();
        let mut open: Option<(u8, u32, Vec<u8>)> = None;
        for f in frames {
            assert!(f.payload.len() <= MAX_FRAME_SIZE, "frame too large");
            match (&mut open, f.kind) {
                (None, HEADERS) => {
                    assert_eq!(f.flags & PADDED, 0, "no padding is written");
                    let skip = if f.flags & PRIORITY == 0 {
                        0
                    } else {
                        PRIORITY_LEN
                    };
                    open = Some((f.flags, f.stream, f.payload[skip..].to_vec()));
                }
                (Some((_, stream, block)), CONTINUATION) => {
                    assert_eq!(*stream, f.stream);
                    block.extend_from_slice(&f.payload);
                }
                (None, _) => continue,
                (Some(_), kind) => panic!("frame type {kind} inside a header block"),
            }
            if f.flags & END_HEADERS != 0 {
                let (flags, _, block) = open.take().unwrap();
                let mut fresh = Decoder::new();
                let list = fresh.decode(&block).expect("decodable alone");
                out.push((flags | END_HEADERS, list));
            }
        }
        assert!(open.is_none(), "unterminated header block");
        out
    }

    #[tokio::test]
    async fn http1_passes_through_byte_exact() {
        let mut post =
            b"POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1:2379\r\nContent-Length: 40\r\n\r\n"
                .to_vec();
        post.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n0123456789abcdef");
        let inputs: [&[u8]; 6] = [
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n\r\n",
            &post,
            b"PRI * HTTP/1.1\r\n\r\n",
            b"PR",
            b"",
            &[0xff; 300],
        ];
        for input in inputs {
            assert_eq!(through(input).await.unwrap(), input);
            assert_eq!(through_as(input, true).await.unwrap(), input);
        }
    }

    #[tokio::test]
    async fn h2_frames_other_than_headers_pass_byte_exact() {
        let big: Vec<u8> = (0..3 * MAX_FRAME_SIZE).map(|i| (i * 7) as u8).collect();
        let other = [
            frame(SETTINGS, 1, 0, &[]),                   // ACK
            frame(0x8, 0, 0, &[0, 0x0f, 0, 1]),           // WINDOW_UPDATE
            frame(0x6, 0, 0, b"pingpong"),                // PING
            frame(DATA, 0, 1, &[0, 0, 0, 0, 3, 1, 2, 3]), // a small gRPC message
            frame(DATA, 0, 1, &big[..MAX_FRAME_SIZE]),    // large
            frame(DATA, 0x8, 3, &[2, b'h', b'i', 0, 0]),  // PADDED DATA
            frame(0xfa, 0xff, 5, &big[..1000]),           // unknown type
            frame(DATA, END_STREAM, 1, &[]),              // empty
            frame(0x3, 0, 3, &[0, 0, 0, 8]),              // RST_STREAM
            frame(0x7, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0]),  // GOAWAY
        ];
        let input = h2(&other);
        assert_eq!(through(&input).await.unwrap(), input);
        assert_eq!(through_as(&input, true).await.unwrap(), input);
        // Unknown frames of any length, and a truncated last frame, are the server's business.
        let mut input = h2(&[frame(0xfa, 0, 0, &big)]);
        input.extend_from_slice(&[0, 0, 100, DATA, 0, 0, 0, 0, 1, 42]);
        assert_eq!(through(&input).await.unwrap(), input);
    }

    #[tokio::test]
    async fn scheme_prefixed_authority_is_rewritten() {
        let mut encoder = Encoder::new();
        let request = grpc_request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status");
        let message = frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]);
        let input = h2(&[
            frame(HEADERS, END_HEADERS, 1, &encode(&mut encoder, &request)),
            message.clone(),
        ]);
        let out = frames(&through(&input).await.unwrap());
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[0], frames(&h2(&[]))[0], "SETTINGS untouched");
        assert_eq!(
            (out[1].kind, out[1].flags, out[1].stream),
            (HEADERS, END_HEADERS, 1)
        );
        assert_eq!(
            blocks(&out),
            [(END_HEADERS, with_authority(request, "127.0.0.1:2379"))]
        );
        assert_eq!(out[2], frames(&h2(&[message]))[1], "DATA untouched");
    }

    #[test]
    fn authority_repairs() {
        let kept: [&[u8]; 4] = [
            b"127.0.0.1:2379",
            b"localhost",
            b"[::1]:2379",
            b"etcd-0.etcd:2379",
        ];
        for value in kept {
            assert!(matches!(repair_authority(value), Repair::Keep), "{value:?}");
        }
        let replaced: [(&[u8], &[u8]); 3] = [
            (b"http://127.0.0.1:2379", b"127.0.0.1:2379"),
            (b"https://[::1]:2379", b"[::1]:2379"),
            (b"unix+x://etcd:1", b"etcd:1"),
        ];
        for (value, fixed) in replaced {
            assert!(
                matches!(repair_authority(value), Repair::Replace(f) if f == fixed),
                "{value:?}"
            );
        }
        let dropped: [&[u8]; 5] = [
            b"",
            b"http://",
            b"http://host:1/path",
            b"a b",
            b"unix:///tmp/s",
        ];
        for value in dropped {
            assert!(matches!(repair_authority(value), Repair::Drop), "{value:?}");
        }
    }

    #[tokio::test]
    async fn an_authority_beyond_repair_is_dropped_and_end_stream_kept() {
        let mut encoder = Encoder::new();
        let request = grpc_request("http://host:2379/path", "/etcdserverpb.KV/Range");
        let input = h2(&[frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &encode(&mut encoder, &request),
        )]);
        let out = frames(&through(&input).await.unwrap());
        let expected: Headers = request
            .into_iter()
            .filter(|(n, _)| n != b":authority")
            .collect();
        assert_eq!(blocks(&out), [(END_HEADERS | END_STREAM, expected)]);
    }

    #[tokio::test]
    async fn dynamic_table_use_across_blocks_decodes_right() {
        let mut encoder = Encoder::new();
        let bad = "http://127.0.0.1:2379";
        let mut sent = vec![grpc_request(bad, "/etcdserverpb.KV/Range")];
        for i in 0..40 {
            let mut list = grpc_request(
                bad,
                ["/etcdserverpb.KV/Range", "/etcdserverpb.KV/Put"][i % 2],
            );
            list.push((
                b"grpc-timeout".to_vec(),
                format!("{}m", 5000 - i).into_bytes(),
            ));
            // Large enough that entries get evicted from the 4 KiB table.
            list.push((b"x-trace".to_vec(), vec![b'a' + (i % 26) as u8; 300 + i]));
            sent.push(list);
        }
        let mut input_frames = Vec::new();
        for (i, list) in sent.iter().enumerate() {
            let stream = 1 + 2 * i as u32;
            input_frames.push(frame(
                HEADERS,
                END_HEADERS,
                stream,
                &encode(&mut encoder, list),
            ));
            input_frames.push(frame(DATA, END_STREAM, stream, &[0, 0, 0, 0, 0]));
        }
        let out = frames(&through(&h2(&input_frames)).await.unwrap());
        let expected: Vec<(u8, Headers)> = sent
            .iter()
            .map(|list| (END_HEADERS, with_authority(list.clone(), "127.0.0.1:2379")))
            .collect();
        assert_eq!(blocks(&out), expected);

        // Decoded in order by one decoder (as hyper does), the output leaves its table empty.
        let mut hyper = Decoder::new();
        for f in out.iter().filter(|f| f.kind == HEADERS) {
            hyper.decode(&f.payload).unwrap();
        }
        assert_eq!(
            hyper.decode(&[0xbe]).unwrap_err(), // index 62, the first dynamic entry
            DecoderError::HeaderIndexOutOfBounds
        );
    }

    /// RFC 7541 C.4: three requests with Huffman-coded strings and dynamic-table references.
    #[tokio::test]
    async fn huffman_and_table_size_updates_decode_right() {
        let hex = |s: &str| -> Vec<u8> {
            let s: String = s.split_whitespace().collect();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let c41 = hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff");
        let c42 = hex("8286 84be 5886 a8eb 1064 9cbf");
        let c43 = hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 8925 a849 e95b b8e8 b4bf");
        // Table size 0 (evicting everything), back to 4096, then static entries only.
        let mut resized = hex("20 3fe1 1f 8286 84");
        resized.extend_from_slice(&[0x01, 3]);
        resized.extend_from_slice(b"a:1");
        let input = h2(&[
            frame(HEADERS, END_HEADERS, 1, &c41),
            frame(HEADERS, END_HEADERS, 3, &c42),
            frame(HEADERS, END_HEADERS, 5, &c43),
            frame(HEADERS, END_HEADERS, 7, &resized),
        ]);
        let got: Vec<Headers> = blocks(&frames(&through_as(&input, true).await.unwrap()))
            .into_iter()
            .map(|(_, h)| h)
            .collect();
        let first = headers(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ]);
        let mut second = first.clone();
        second.push((b"cache-control".to_vec(), b"no-cache".to_vec()));
        let third = headers(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ]);
        let fourth = headers(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "a:1"),
        ]);
        assert_eq!(got, [first, second, third, fourth]);

        // After the table was emptied, a reference into it is a decoding error: closed.
        let mut input = h2(&[frame(HEADERS, END_HEADERS, 1, &c41)]);
        input.extend(frame(HEADERS, END_HEADERS, 3, &hex("20 3fe1 1f be")));
        let err = through_as(&input, true).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // A table larger than the server's SETTINGS_HEADER_TABLE_SIZE is refused.
        let input = h2(&[frame(HEADERS, END_HEADERS, 1, &hex("3fe2 1f 82"))]);
        assert!(through_as(&input, true).await.is_err());
    }

    #[tokio::test]
    async fn continuation_frames_in_and_out() {
        let mut encoder = Encoder::new();
        let request = grpc_request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status");
        let block = encode(&mut encoder, &request);
        let input = h2(&[
            frame(HEADERS, 0, 1, &block[..5]),
            frame(CONTINUATION, 0, 1, &block[5..20]),
            frame(CONTINUATION, END_HEADERS, 1, &block[20..]),
            frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]),
        ]);
        let out = frames(&through(&input).await.unwrap());
        assert_eq!(out.len(), 3, "one HEADERS frame: {out:?}");
        let fixed = with_authority(request, "127.0.0.1:2379");
        assert_eq!(blocks(&out), [(END_HEADERS, fixed.clone())]);

        // A block larger than a frame comes in as several frames and goes out as several.
        let mut big = fixed.clone();
        big.push((b"x-big".to_vec(), vec![b'v'; 40_000]));
        let mut bad = big.clone();
        bad[3].1 = b"http://127.0.0.1:2379".to_vec();
        let block = encode(&mut Encoder::new(), &bad);
        let chunks: Vec<&[u8]> = block.chunks(MAX_FRAME_SIZE).collect();
        let mut input_frames = vec![frame(HEADERS, END_STREAM, 3, chunks[0])];
        for (i, chunk) in chunks.iter().enumerate().skip(1) {
            let flags = if i + 1 == chunks.len() {
                END_HEADERS
            } else {
                0
            };
            input_frames.push(frame(CONTINUATION, flags, 3, chunk));
        }
        let out = frames(&through(&h2(&input_frames)).await.unwrap());
        let kinds: Vec<(u8, u8)> = out[1..].iter().map(|f| (f.kind, f.flags)).collect();
        assert_eq!(
            kinds,
            [
                (HEADERS, END_STREAM),
                (CONTINUATION, 0),
                (CONTINUATION, END_HEADERS)
            ]
        );
        assert_eq!(blocks(&out), [(END_STREAM | END_HEADERS, big)]);
    }

    #[tokio::test]
    async fn padded_and_prioritised_headers() {
        let mut encoder = Encoder::new();
        let request = grpc_request("http://127.0.0.1:2379", "/etcdserverpb.KV/Range");
        let block = encode(&mut encoder, &request);
        let priority = [0x80, 0, 0, 3, 15]; // exclusive, on stream 3, weight 16
        let mut payload = vec![6];
        payload.extend_from_slice(&priority);
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0; 6]);
        let flags = PADDED | PRIORITY | END_HEADERS | END_STREAM;
        let input = h2(&[frame(HEADERS, flags, 1, &payload)]);
        let out = frames(&through(&input).await.unwrap());
        assert_eq!(out[1].flags, PRIORITY | END_HEADERS | END_STREAM);
        assert_eq!(&out[1].payload[..PRIORITY_LEN], &priority[..]);
        let fixed = with_authority(request.clone(), "127.0.0.1:2379");
        assert_eq!(
            blocks(&out),
            [(PRIORITY | END_HEADERS | END_STREAM, fixed.clone())]
        );

        // Padding only, of length zero.
        let mut encoder = Encoder::new();
        let mut payload = vec![0];
        payload.extend_from_slice(&encode(&mut encoder, &request));
        let input = h2(&[frame(HEADERS, PADDED | END_HEADERS, 1, &payload)]);
        let out = frames(&through(&input).await.unwrap());
        assert_eq!(blocks(&out), [(END_HEADERS, fixed)]);

        // More padding than payload: h2 judges it on a connection not yet rewritten...
        let input = h2(&[frame(HEADERS, PADDED | END_HEADERS, 1, &[200, 0x82])]);
        assert_eq!(through(&input).await.unwrap(), input);
        // ...and a rewritten connection closes.
        let mut start = rewriting_start();
        start.push(frame(HEADERS, PADDED | END_HEADERS, 3, &[200, 0x82]));
        assert!(through(&h2(&start)).await.is_err());
    }

    #[tokio::test]
    async fn a_connection_that_starts_well_is_passed_through() {
        let mut encoder = Encoder::new();
        let good = grpc_request("127.0.0.1:2379", "/etcdserverpb.KV/Range");
        // grpc-go never changes :authority within a connection; if a client did, h2 would judge
        // the later request as it does without this wrapper.
        let later = grpc_request("http://127.0.0.1:2379", "/etcdserverpb.KV/Put");
        let input = h2(&[
            frame(HEADERS, END_HEADERS, 1, &encode(&mut encoder, &good)),
            frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]),
            frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                3,
                &encode(&mut encoder, &good),
            ),
            frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                5,
                &encode(&mut encoder, &later),
            ),
        ]);
        assert_eq!(through(&input).await.unwrap(), input);
    }

    #[tokio::test]
    async fn malformed_blocks_close_a_rewritten_connection() {
        let mut encoder = Encoder::new();
        let good = grpc_request("127.0.0.1:2379", "/etcdserverpb.KV/Range");
        let block = encode(&mut encoder, &good);
        let cases: Vec<Vec<Vec<u8>>> = vec![
            // Undecodable HPACK.
            vec![frame(HEADERS, END_HEADERS, 3, &[0xff; 8])],
            // A CONTINUATION without a header block.
            vec![frame(CONTINUATION, END_HEADERS, 3, &block)],
            // Another frame inside a header block.
            vec![frame(HEADERS, 0, 3, &block[..4]), frame(DATA, 0, 3, &[1])],
            // A CONTINUATION of another stream.
            vec![
                frame(HEADERS, 0, 3, &block[..4]),
                frame(CONTINUATION, END_HEADERS, 5, &block[4..]),
            ],
            // PRIORITY without its fields.
            vec![frame(HEADERS, PRIORITY | END_HEADERS, 3, &[0, 0])],
            // A block ending in a table size update.
            vec![frame(HEADERS, END_HEADERS, 3, &[0x20])],
        ];
        for case in cases {
            let mut all = rewriting_start();
            all.extend(case.iter().cloned());
            let err = through(&h2(&all)).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{case:?}");
            // On a connection not yet rewritten, h2 gets the original bytes to judge.
            let input = h2(&case);
            assert_eq!(through(&input).await.unwrap(), input, "{case:?}");
        }
    }

    #[tokio::test]
    async fn a_header_block_over_the_limit_closes_the_connection() {
        let mut frames_in = rewriting_start();
        frames_in.push(frame(HEADERS, 0, 3, &[0; MAX_FRAME_SIZE]));
        for _ in 0..=(MAX_BLOCK_BYTES / MAX_FRAME_SIZE) {
            frames_in.push(frame(CONTINUATION, 0, 3, &[0; MAX_FRAME_SIZE]));
        }
        // Never terminated: the wrapper must give up without waiting for the end.
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut fix = AuthorityFix::new(server);
        let input = h2(&frames_in);
        let writer = tokio::spawn(async move {
            let _ = client.write_all(&input).await;
            client // kept open
        });
        let mut out = Vec::new();
        let err = fix.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            fix.raw.len() <= MAX_BLOCK_BYTES + 2 * READ_CHUNK,
            "{}",
            fix.raw.len()
        );
        drop(fix);
        drop(writer.await.unwrap());
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    #[tokio::test]
    async fn garbage_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut encoder = Encoder::new();
        let valid = encode(&mut encoder, &grpc_request("h:1", "/p"));
        for round in 0..400 {
            let mut parts = if round % 2 == 0 {
                rewriting_start()
            } else {
                Vec::new()
            };
            for _ in 0..rng.below(6) {
                let kind = [HEADERS, CONTINUATION, DATA, 0x8, 0xfa][rng.below(5)];
                let flags = rng.next() as u8;
                let stream = rng.below(4) as u32;
                let mut payload = if rng.below(3) == 0 {
                    valid.clone()
                } else {
                    let len = rng.below(64);
                    rng.bytes(len)
                };
                if rng.below(4) == 0 {
                    let at = rng.below(payload.len() as u64 + 1);
                    payload.truncate(at);
                }
                parts.push(frame(kind, flags, stream, &payload));
            }
            let mut input = h2(&parts);
            if rng.below(3) == 0 {
                let len = rng.below(100);
                input.extend(rng.bytes(len));
            }
            let rewrite_all = round % 3 == 0;
            let (pipe, read) = [(1 << 16, 4096), (1, 4096), (7, 3)][round % 3];
            let _ = pass(&input, pipe, read, rewrite_all).await;
        }
    }

    #[tokio::test]
    async fn writes_pass_through() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut fix = AuthorityFix::new(server);
        fix.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        fix.flush().await.unwrap();
        fix.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\n");
    }

    /// Requests a real h2 client (Huffman coding, indexing, evictions) sends, as a real h2
    /// server behind the wrapper receives them.
    async fn h2_client_to_server(rewrite_all: bool) {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let mut fix = AuthorityFix::new(server_io);
        fix.rewrite_all = rewrite_all;
        let server = tokio::spawn(async move {
            let mut connection = h2::server::handshake(fix).await.unwrap();
            let mut seen = Vec::new();
            while let Some(request) = connection.accept().await {
                let (request, mut respond) = request.unwrap();
                let (parts, _) = request.into_parts();
                seen.push(format!(
                    "{} {} {:?}",
                    parts.method, parts.uri, parts.headers
                ));
                respond
                    .send_response(http::Response::new(()), true)
                    .unwrap();
            }
            seen
        });
        let (client, connection) = h2::client::handshake(client_io).await.unwrap();
        let connection = tokio::spawn(connection);
        let mut sent = Vec::new();
        for i in 0..60 {
            let method = ["Range", "Put", "Txn"][i % 3];
            let request = http::Request::builder()
                .method("POST")
                .uri(format!("http://127.0.0.1:2379/etcdserverpb.KV/{method}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .header("grpc-timeout", format!("{}m", 5000 - i))
                .header("x-trace", "t".repeat(i * 40))
                .body(())
                .unwrap();
            sent.push(format!(
                "{} {} {:?}",
                request.method(),
                request.uri(),
                request.headers()
            ));
            let mut ready = client.clone().ready().await.unwrap();
            let (response, _) = ready.send_request(request, true).unwrap();
            assert_eq!(response.await.unwrap().status(), 200);
        }
        drop(client);
        connection.await.unwrap().unwrap();
        assert_eq!(server.await.unwrap(), sent);
    }

    #[tokio::test]
    async fn a_real_h2_client_through_the_fix() {
        h2_client_to_server(false).await;
        h2_client_to_server(true).await;
    }

    /// Serves `connection` until the client leaves; the request URIs it received.
    async fn request_uris<T>(mut connection: h2::server::Connection<T, bytes::Bytes>) -> Vec<String>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let mut uris = Vec::new();
        while let Some(Ok((request, mut respond))) = connection.accept().await {
            uris.push(request.uri().to_string());
            let _ = respond.send_response(http::Response::new(()), true);
        }
        uris
    }

    /// etcdctl's request, hand-encoded, against a real h2 server: refused without the wrapper,
    /// served with it.
    #[tokio::test]
    async fn a_real_h2_server_accepts_the_repaired_request() {
        for fixed in [false, true] {
            let (mut client, server_io) = tokio::io::duplex(64 * 1024);
            let server = tokio::spawn(async move {
                if fixed {
                    let io = AuthorityFix::new(server_io);
                    request_uris(h2::server::handshake(io).await.unwrap()).await
                } else {
                    request_uris(h2::server::handshake(server_io).await.unwrap()).await
                }
            });
            let mut encoder = Encoder::new();
            let request = grpc_request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status");
            let input = h2(&[
                frame(HEADERS, END_HEADERS, 1, &encode(&mut encoder, &request)),
                frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]),
            ]);
            client.write_all(&input).await.unwrap();
            // The server's SETTINGS, then its answer on stream 1: HEADERS, or RST_STREAM.
            let mut got = Vec::new();
            let mut buf = [0; 4096];
            let answer = loop {
                let n = client.read(&mut buf).await.unwrap();
                assert!(n > 0, "the server closed");
                got.extend_from_slice(&buf[..n]);
                let (frames, _) = split_frames(&got);
                if let Some(f) = frames
                    .iter()
                    .find(|f| f.stream == 1 && (f.kind == HEADERS || f.kind == RST_STREAM))
                {
                    break f.kind;
                }
            };
            drop(client);
            let uris = server.await.unwrap();
            if fixed {
                assert_eq!(answer, HEADERS);
                assert_eq!(
                    uris,
                    ["http://127.0.0.1:2379/etcdserverpb.Maintenance/Status"]
                );
            } else {
                assert_eq!(answer, RST_STREAM, "h2 refuses the request");
                assert!(uris.is_empty());
            }
        }
    }
}
