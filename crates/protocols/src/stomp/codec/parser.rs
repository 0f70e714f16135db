//! The incremental, sans-IO STOMP frame decoder.
//!
//! Feed it the connection's read buffer: [`Decoder::decode`] removes one complete frame (or one
//! heart-beat EOL) from the front and returns it, returns `Ok(None)` while the next frame is still
//! incomplete, and an error when the input breaks the grammar or a [`Limits`] cap.
//!
//! Guarantees the listener can build on:
//! * Limits are checked before anything is buffered on their behalf: while `decode` returns
//!   `Ok(None)` the buffer never holds more than the frame cap, a `content-length` beyond the
//!   body or frame cap fails at once, and the decoder's own allocations are bounded by the
//!   header line and count caps. It never reserves buffer space from a wire length.
//! * The outcome, errors included, does not depend on how the bytes were split into reads:
//!   every check fires at a fixed byte offset (header escapes are checked once the frame is
//!   complete), and the earliest one wins.
//! * After an error the decoder is fused: every later call returns the same error. The session
//!   sends ERROR (see [`crate::stomp::error::StompError`]) and closes.
//!
//! Wire rules (docs/protocols/stomp.md, "Frames on the wire"): EOL is LF or CR LF in every version;
//! LF, CR LF and NUL between frames are heart-beats; a CR not followed by LF is fatal.
//! `content-length` bodies may hold NULs and must be followed by a NUL. Headers are unescaped per
//! the version set with [`Decoder::set_version`] (none before that, and never for
//! CONNECT/STOMP/CONNECTED); in 1.0 leading spaces and tabs of values are trimmed.

use bytes::{Buf, Bytes, BytesMut};

use super::escape::Escaping;
use super::frame::{header, Command, Entry, Frame, Headers, Version};
use crate::stomp::limits::{Limit, Limits};

/// What one call to [`Decoder::decode`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Frame(Frame),
    /// One EOL (LF or CR LF) or stray NUL between frames: proof the peer is alive.
    HeartBeat,
}

/// Why the input cannot be decoded. Every variant is fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{limit} (limit {max})")]
    LimitExceeded { limit: Limit, max: usize },
    /// Not a STOMP command (commands are upper case). Holds the line up to the first byte
    /// that ruled it out.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// A frame started with 0x16, the first byte of a TLS ClientHello.
    #[error("TLS handshake on a plaintext STOMP port")]
    TlsHandshake,
    #[error("invalid content-length {0:?}")]
    InvalidContentLength(String),
    #[error("the octet after the content-length body is not NUL")]
    MissingNul,
    #[error("header line without ':'")]
    HeaderWithoutColon,
    #[error("empty header name")]
    EmptyHeaderName,
    #[error("invalid escape sequence in a header")]
    InvalidEscape,
    #[error("CR not followed by LF")]
    BareCr,
}

/// Decodes a stream of client (or server) frames. One per connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    version: Option<Version>,
    partial: Option<Partial>,
    failed: Option<DecodeError>,
    /// The line list of the last frame, emptied, for the next one when it was already in the buffer.
    spare_lines: Vec<Line>,
}

/// A frame whose command line has been read. Offsets index the caller's buffer, whose
/// front is the first byte of the command.
#[derive(Debug)]
struct Partial {
    command: Command,
    lines: Vec<Line>,
    /// Start of the header line being read, or of the body once `body` is set.
    pos: usize,
    /// Next byte to examine; everything between `pos` and `scan` has passed the checks.
    scan: usize,
    body: Option<Body>,
}

/// A complete header line: `name` is `start..colon`, the value `colon + 1..end`.
#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    colon: usize,
    end: usize,
}

#[derive(Debug, Clone, Copy)]
struct Body {
    start: usize,
    /// From `content-length`; `None` = the body ends at the first NUL.
    length: Option<usize>,
}

/// Bytes of a rejected value quoted back in an error.
const QUOTE_MAX: usize = 64;

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            version: None,
            partial: None,
            failed: None,
            spare_lines: Vec::new(),
        }
    }

    /// Switch to the negotiated version. Call it once CONNECTED is sent, before decoding
    /// the next frame: it turns on the version's header unescaping and replaces the
    /// pre-CONNECT frame cap with the full one.
    pub fn set_version(&mut self, version: Version) {
        self.version = Some(version);
    }

    pub fn version(&self) -> Option<Version> {
        self.version
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Remove and return the next frame or heart-beat at the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, DecodeError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.step(buf);
        if let Err(error) = &result {
            self.partial = None;
            self.failed = Some(error.clone());
        }
        result
    }

    fn frame_cap(&self) -> usize {
        match self.version {
            None => self.limits.max_pre_connect_frame_size,
            Some(_) => self.limits.max_frame_size,
        }
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, DecodeError> {
        let mut partial = match self.partial.take() {
            Some(partial) => partial,
            None => {
                match buf.first() {
                    None => return Ok(None),
                    Some(b'\n' | b'\0') => {
                        buf.advance(1);
                        return Ok(Some(Decoded::HeartBeat));
                    }
                    Some(b'\r') => {
                        return match buf.get(1) {
                            None => Ok(None),
                            Some(b'\n') => {
                                buf.advance(2);
                                Ok(Some(Decoded::HeartBeat))
                            }
                            Some(_) => Err(DecodeError::BareCr),
                        };
                    }
                    Some(0x16) => return Err(DecodeError::TlsHandshake),
                    Some(_) => {}
                }
                match self.command_line(buf)? {
                    Some(mut partial) => {
                        partial.lines = std::mem::take(&mut self.spare_lines);
                        partial
                    }
                    None => return Ok(None),
                }
            }
        };
        match self.advance(&mut partial, buf)? {
            Some(nul) => Ok(Some(Decoded::Frame(self.finish(partial, buf, nul)?))),
            None => {
                self.partial = Some(partial);
                Ok(None)
            }
        }
    }

    /// Read the command line at the front of `buf`. Only a prefix of some command is
    /// accepted, so this never looks at more than a dozen bytes.
    fn command_line(&self, buf: &[u8]) -> Result<Option<Partial>, DecodeError> {
        let cap = self.frame_cap();
        // The common case in one comparison: a whole command and LF, within the caps (the byte
        // by byte walk below would accept it too).
        let whole = Command::ALL.into_iter().find(|c| {
            let name = c.as_str().as_bytes();
            buf.starts_with(name) && buf.get(name.len()) == Some(&b'\n')
        });
        if let Some(command) = whole {
            let len = command.as_str().len();
            if len < cap && len <= self.limits.max_command_line {
                return Ok(Some(Partial {
                    command,
                    lines: Vec::new(),
                    pos: len + 1,
                    scan: len + 1,
                    body: None,
                }));
            }
        }
        let mut offset = 0;
        loop {
            let Some(&byte) = buf.get(offset) else {
                return Ok(None);
            };
            if offset >= cap {
                return Err(too_large(Limit::FrameSize, cap));
            }
            let next = match byte {
                b'\n' => offset + 1,
                b'\r' => match buf.get(offset + 1) {
                    None => return Ok(None),
                    Some(_) if offset + 1 >= cap => return Err(too_large(Limit::FrameSize, cap)),
                    Some(b'\n') => offset + 2,
                    Some(_) => return Err(DecodeError::BareCr),
                },
                _ => {
                    let text = &buf[..=offset];
                    if !Command::ALL
                        .iter()
                        .any(|c| c.as_str().as_bytes().starts_with(text))
                    {
                        return Err(DecodeError::UnknownCommand(quote(text)));
                    }
                    if offset >= self.limits.max_command_line {
                        return Err(too_large(Limit::CommandLine, self.limits.max_command_line));
                    }
                    offset += 1;
                    continue;
                }
            };
            let text = &buf[..offset];
            let command = Command::from_bytes(text)
                .ok_or_else(|| DecodeError::UnknownCommand(quote(text)))?;
            return Ok(Some(Partial {
                command,
                lines: Vec::new(),
                pos: next,
                scan: next,
                body: None,
            }));
        }
    }

    /// Examine the bytes that arrived since the last call. Returns the offset of the NUL
    /// ending the frame once it is complete.
    fn advance(&self, p: &mut Partial, buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        let body = match p.body {
            Some(body) => body,
            None => match self.headers(p, buf)? {
                Some(body) => body,
                None => return Ok(None),
            },
        };
        let cap = self.frame_cap();
        match body.length {
            Some(length) => {
                // Bounds were checked when the length was read: start + length < cap.
                let nul = body.start + length;
                match buf.get(nul) {
                    None => Ok(None),
                    Some(0) => Ok(Some(nul)),
                    Some(_) => Err(DecodeError::MissingNul),
                }
            }
            None => {
                // A NUL at offset `o` is acceptable while `o < cap` and the body stays within
                // its cap; the first byte past both bounds decides which limit broke.
                let body_bound = body
                    .start
                    .saturating_add(self.limits.max_body_size)
                    .saturating_add(1);
                let bound = cap.min(body_bound);
                let window_end = buf.len().min(bound);
                let from = p.scan.min(window_end);
                if let Some(i) = memchr::memchr(0, &buf[from..window_end]) {
                    return Ok(Some(from + i));
                }
                p.scan = window_end;
                if buf.len() <= bound {
                    Ok(None)
                } else if cap <= body_bound {
                    Err(too_large(Limit::FrameSize, cap))
                } else {
                    Err(too_large(Limit::BodySize, self.limits.max_body_size))
                }
            }
        }
    }

    /// Read header lines up to the blank line. Returns where the body starts once it is seen.
    fn headers(&self, p: &mut Partial, buf: &[u8]) -> Result<Option<Body>, DecodeError> {
        let cap = self.frame_cap();
        let max_line = self.limits.max_header_line;
        loop {
            let (line_end, next) = loop {
                // Skip ahead to the next CR or LF, within the caps: the bytes before it pass
                // every check below.
                let end = buf.len().min(cap).min(p.pos.saturating_add(max_line));
                if p.scan < end {
                    let eol = memchr::memchr2(b'\n', b'\r', &buf[p.scan..end]);
                    p.scan = eol.map_or(end, |i| p.scan + i);
                }
                let offset = p.scan;
                let Some(&byte) = buf.get(offset) else {
                    return Ok(None);
                };
                if offset >= cap {
                    return Err(too_large(Limit::FrameSize, cap));
                }
                match byte {
                    b'\n' => break (offset, offset + 1),
                    b'\r' => match buf.get(offset + 1) {
                        None => return Ok(None),
                        Some(_) if offset + 1 >= cap => {
                            return Err(too_large(Limit::FrameSize, cap))
                        }
                        Some(b'\n') => break (offset, offset + 2),
                        Some(_) => return Err(DecodeError::BareCr),
                    },
                    _ => {
                        if offset - p.pos >= max_line {
                            return Err(too_large(Limit::HeaderLine, max_line));
                        }
                        p.scan += 1;
                    }
                }
            };
            let start = p.pos;
            p.pos = next;
            p.scan = next;
            if line_end == start {
                let body = Body {
                    start: next,
                    length: self.content_length(p, buf, next)?,
                };
                p.body = Some(body);
                return Ok(Some(body));
            }
            let colon = memchr::memchr(b':', &buf[start..line_end])
                .ok_or(DecodeError::HeaderWithoutColon)?;
            if colon == 0 {
                return Err(DecodeError::EmptyHeaderName);
            }
            if p.lines.len() >= self.limits.max_headers {
                return Err(too_large(Limit::HeaderCount, self.limits.max_headers));
            }
            p.lines.push(Line {
                start,
                colon: start + colon,
                end: line_end,
            });
        }
    }

    /// The first `content-length` header, validated against the caps before any body byte
    /// is awaited.
    fn content_length(
        &self,
        p: &Partial,
        buf: &[u8],
        body_start: usize,
    ) -> Result<Option<usize>, DecodeError> {
        let name = header::CONTENT_LENGTH.as_bytes();
        let Some(line) = p.lines.iter().find(|l| &buf[l.start..l.colon] == name) else {
            return Ok(None);
        };
        let raw = &buf[line.colon + 1..line.end];
        let digits = trim_blanks(raw);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(DecodeError::InvalidContentLength(quote(raw)));
        }
        let length = digits.iter().try_fold(0usize, |n, &d| {
            n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
        });
        let max_body = self.limits.max_body_size;
        let length = match length {
            Some(length) if length <= max_body => length,
            _ => return Err(too_large(Limit::BodySize, max_body)),
        };
        let cap = self.frame_cap();
        match body_start.checked_add(length) {
            Some(nul) if nul < cap => Ok(Some(length)),
            _ => Err(too_large(Limit::FrameSize, cap)),
        }
    }

    /// Cut the complete frame off the front of `buf` and build it.
    fn finish(
        &mut self,
        mut p: Partial,
        buf: &mut BytesMut,
        nul: usize,
    ) -> Result<Frame, DecodeError> {
        let raw = buf.split_to(nul + 1).freeze();
        let mut escaping = match self.version {
            None => Escaping::Raw,
            Some(version) => Escaping::for_frame(p.command, version),
        };
        // One look for a backslash in the whole header block instead of two per header.
        let block = match (p.lines.first(), p.lines.last()) {
            (Some(first), Some(last)) => &raw[first.start..last.end],
            _ => &[],
        };
        if memchr::memchr(b'\\', block).is_none() {
            escaping = Escaping::Raw;
        }
        let trim = self.version == Some(Version::V1_0);
        let mut headers = Vec::with_capacity(p.lines.len());
        for line in &p.lines {
            let mut value_start = line.colon + 1;
            if trim {
                value_start += raw[value_start..line.end]
                    .iter()
                    .take_while(|b| is_blank(b))
                    .count();
            }
            let name = match header::known(&raw[line.start..line.colon]) {
                Some(name) => Bytes::from_static(name.as_bytes()),
                None => escaping
                    .unescape(raw.slice(line.start..line.colon))
                    .map_err(|_| DecodeError::InvalidEscape)?,
            };
            // Without escapes a value is a range of the frame: no reference count of its own.
            headers.push(match escaping {
                Escaping::Raw => Entry::in_frame(name, value_start..line.end),
                _ => Entry::owned(
                    name,
                    escaping
                        .unescape(raw.slice(value_start..line.end))
                        .map_err(|_| DecodeError::InvalidEscape)?,
                ),
            });
        }
        let body_start = p.body.map_or(nul, |b| b.start);
        // Kept while frames follow in the buffer; a connection that went quiet keeps none.
        if !buf.is_empty() {
            p.lines.clear();
            self.spare_lines = p.lines;
        }
        let body = raw.slice(body_start..nul);
        Ok(Frame {
            command: p.command,
            headers: Headers::decoded(raw, headers),
            body,
        })
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(Limits::DEFAULT)
    }
}

fn too_large(limit: Limit, max: usize) -> DecodeError {
    DecodeError::LimitExceeded { limit, max }
}

fn quote(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(QUOTE_MAX)]).into_owned()
}

fn is_blank(b: &u8) -> bool {
    matches!(b, b' ' | b'\t')
}

fn trim_leading_blanks(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !is_blank(b)).unwrap_or(s.len());
    &s[start..]
}

fn trim_blanks(s: &[u8]) -> &[u8] {
    let s = trim_leading_blanks(s);
    let end = s.iter().rposition(|b| !is_blank(b)).map_or(0, |i| i + 1);
    &s[..end]
}

#[cfg(test)]
mod tests;
