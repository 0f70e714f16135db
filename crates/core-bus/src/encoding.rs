//! Versioned binary encoding of an [`Envelope`], used between cluster nodes. Layout: `docs/envelope.md`.

use std::borrow::Cow;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::envelope::{ConnectionId, Envelope, Headers, MessageId, Origin, Position, Protocol};
use crate::topic::{Topic, TopicError};

const MAGIC: &[u8; 3] = b"GWE";
/// The encoding version this build writes; it reads this one and version 1 (which has no expiry).
pub const ENVELOPE_VERSION: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not an envelope (bad magic)")]
    BadMagic,
    #[error("unsupported envelope version {0}")]
    Version(u8),
    #[error("truncated envelope")]
    Truncated,
    #[error("unknown protocol {0}")]
    Protocol(u8),
    #[error("field is not UTF-8")]
    Utf8,
    #[error("bad topic: {0}")]
    Topic(#[from] TopicError),
    #[error("trailing bytes after the envelope")]
    Trailing,
}

/// Encodes `envelope` as version [`ENVELOPE_VERSION`].
pub fn encode(envelope: &Envelope) -> Bytes {
    let mut out = BytesMut::with_capacity(envelope.size() + 64);
    out.put_slice(MAGIC);
    out.put_u8(ENVELOPE_VERSION);
    put_bytes(&mut out, envelope.topic.as_str().as_bytes());
    put_bytes(&mut out, &envelope.payload);
    put_opt(
        &mut out,
        envelope.content_type.as_deref().map(str::as_bytes),
    );
    put_opt(&mut out, envelope.key.as_deref());
    put_opt(
        &mut out,
        envelope.reply_to.as_ref().map(|t| t.as_str().as_bytes()),
    );
    put_opt(
        &mut out,
        envelope.correlation_id.as_deref().map(str::as_bytes),
    );
    put_opt(&mut out, envelope.traceparent.as_deref().map(str::as_bytes));
    out.put_u8(envelope.origin.protocol.index() as u8);
    out.put_u64(envelope.origin.connection.0);
    out.put_u128(envelope.id.0);
    out.put_u64(envelope.timestamp_ms);
    out.put_u64(envelope.expires_at_ms.unwrap_or(0));
    match envelope.position {
        Some(p) => {
            out.put_u8(1);
            out.put_u64(p.epoch);
            out.put_u64(p.offset);
        }
        None => out.put_u8(0),
    }
    out.put_u32(envelope.headers.len() as u32);
    for (name, value) in envelope.headers.iter() {
        put_bytes(&mut out, name.as_bytes());
        put_bytes(&mut out, value);
    }
    put_opt(&mut out, envelope.tracestate.as_deref().map(str::as_bytes));
    out.freeze()
}

/// Decodes an envelope; the payload and header values share `input`'s buffer.
pub fn decode(mut input: Bytes) -> Result<Envelope, DecodeError> {
    if input.len() < 4 || &input[..3] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = input[3];
    if version != ENVELOPE_VERSION && version != 1 {
        return Err(DecodeError::Version(version));
    }
    input.advance(4);
    let r = &mut input;
    let topic = Topic::parse(&text(take_bytes(r)?)?)?;
    let payload = take_bytes(r)?;
    let content_type = take_opt(r)?.map(text).transpose()?;
    let key = take_opt(r)?;
    let reply_to = take_opt(r)?
        .map(|b| Ok::<_, DecodeError>(Topic::parse(&text(b)?)?))
        .transpose()?;
    let correlation_id = take_opt(r)?.map(text).transpose()?;
    let traceparent = take_opt(r)?.map(text).transpose()?;
    let protocol_index = take_u8(r)?;
    let protocol =
        Protocol::from_index(protocol_index).ok_or(DecodeError::Protocol(protocol_index))?;
    let connection = ConnectionId(take_u64(r)?);
    need(r, 16 + 8)?;
    let id = MessageId(r.get_u128());
    let timestamp_ms = r.get_u64();
    let expires_at_ms = match version {
        1 => None,
        _ => Some(take_u64(r)?).filter(|&at| at != 0),
    };
    let position = match take_u8(r)? {
        0 => None,
        _ => Some(Position {
            epoch: take_u64(r)?,
            offset: take_u64(r)?,
        }),
    };
    need(r, 4)?;
    let count = r.get_u32();
    let mut headers = Headers::new();
    for _ in 0..count {
        let name = text(take_bytes(r)?)?;
        headers.push(name, take_bytes(r)?);
    }
    let tracestate = match version {
        1 => None,
        _ => take_opt(r)?.map(text).transpose()?,
    };
    if r.has_remaining() {
        return Err(DecodeError::Trailing);
    }
    Ok(Envelope {
        topic,
        payload,
        headers,
        content_type: content_type.map(Cow::Owned),
        key,
        reply_to,
        correlation_id,
        traceparent,
        tracestate,
        origin: Origin {
            protocol,
            connection,
        },
        id,
        timestamp_ms,
        position,
        expires_at_ms,
    })
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32(bytes.len() as u32);
    out.put_slice(bytes);
}

fn put_opt(out: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            out.put_u8(1);
            put_bytes(out, b);
        }
        None => out.put_u8(0),
    }
}

fn need(r: &Bytes, n: usize) -> Result<(), DecodeError> {
    if r.remaining() < n {
        Err(DecodeError::Truncated)
    } else {
        Ok(())
    }
}

fn take_u8(r: &mut Bytes) -> Result<u8, DecodeError> {
    need(r, 1)?;
    Ok(r.get_u8())
}

fn take_u64(r: &mut Bytes) -> Result<u64, DecodeError> {
    need(r, 8)?;
    Ok(r.get_u64())
}

fn take_bytes(r: &mut Bytes) -> Result<Bytes, DecodeError> {
    need(r, 4)?;
    let len = r.get_u32() as usize;
    need(r, len)?;
    Ok(r.split_to(len))
}

fn take_opt(r: &mut Bytes) -> Result<Option<Bytes>, DecodeError> {
    match take_u8(r)? {
        0 => Ok(None),
        _ => take_bytes(r).map(Some),
    }
}

fn text(bytes: Bytes) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Utf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Envelope {
        let origin = Origin {
            protocol: Protocol::Loom,
            connection: ConnectionId(9),
        };
        let mut env = Envelope::new(Topic::from_dotted(b"orders.eu"), &b"bin\0ary"[..], origin);
        env.headers.push("x-a", &b"\xff\x00"[..]);
        env.headers.push("x-a", "second");
        env.content_type = Some("application/octet-stream".into());
        env.key = Some(Bytes::from_static(b"customer-1"));
        env.reply_to = Some(Topic::parse("$inbox.9.r").unwrap());
        env.correlation_id = Some("c-1".into());
        env.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        env.tracestate = Some("vendor=opaque".into());
        env.position = Some(Position {
            epoch: 7,
            offset: 42,
        });
        env.expires_at_ms = Some(1_700_000_000_000);
        env
    }

    #[test]
    fn round_trip() {
        let env = sample();
        assert_eq!(decode(encode(&env)), Ok(env));
    }

    #[test]
    fn reads_version_1_which_has_no_expiry() {
        let mut env = sample();
        env.position = None;
        env.headers = Headers::new();
        env.tracestate = None;
        let v2 = encode(&env);
        // Version 1 is version 2 without the expiry's 8 bytes, which here come right before the position flag
        // (1 byte) and the header count (4 bytes), and without the tracestate flag (the last byte).
        let expiry_at = v2.len() - 1 - 5 - 8;
        let mut v1 = v2[..expiry_at].to_vec();
        v1.extend_from_slice(&v2[expiry_at + 8..v2.len() - 1]);
        v1[3] = 1;
        env.expires_at_ms = None;
        assert_eq!(decode(v1.into()), Ok(env));
    }

    #[test]
    fn rejects_other_versions_and_garbage() {
        let mut bytes = encode(&sample()).to_vec();
        bytes[3] = 3;
        assert_eq!(decode(bytes.into()), Err(DecodeError::Version(3)));
        assert_eq!(
            decode(Bytes::from_static(b"nope")),
            Err(DecodeError::BadMagic)
        );
    }

    proptest! {
        #[test]
        fn truncation_and_noise_never_panic(cut in 0usize..400, noise in proptest::collection::vec(any::<u8>(), 0..64)) {
            let full = encode(&sample());
            let cut = cut.min(full.len());
            let mut bytes = full[..cut].to_vec();
            bytes.extend(noise);
            let _ = decode(bytes.into());
        }

        #[test]
        fn payloads_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut env = sample();
            env.payload = payload.into();
            prop_assert_eq!(decode(encode(&env)), Ok(env));
        }
    }
}
