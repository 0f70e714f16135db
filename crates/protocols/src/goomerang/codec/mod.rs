//! One binary WebSocket message ⇄ Goomerang frames (docs/protocols/goomerang.md, "On the wire"), and its
//! parts: [`proto`], the generated messages; [`headers`], `Frame.headers`; [`limits`], the size limits. Frames
//! are walked with the crate's in-place field reader ([`crate::protobuf`]).
//!
//! The WebSocket layer already delimits and reassembles messages, so every call sees one whole `Frame`.
//! [`decode`] reads the frame and its command's payload in one pass each, checking the [`Limits`] as it goes,
//! and resolves `Frame.kind` by full protobuf name into a [`Command`]. Every [`DecodeError`] means "drop this
//! frame and keep reading" (upstream answers nothing either), except those whose [`DecodeError::close_reason`]
//! is `Some`.
//!
//! The encoders build what gatewayd sends: plain deliveries and sync replies. [`encode_command`] builds
//! what a client sends, for test clients and round trips, and [`encode_publish`] a publish from borrowed parts
//! (gatewayctl's client). Every frame is written straight into one buffer, byte for byte what prost encodes.
//! Nothing here reads a clock: the caller passes the `creation` time.

pub mod headers;
pub mod limits;
pub mod proto;

use std::time::SystemTime;

use bytes::Bytes;
use prost::encoding::{self, WireType};
use prost::Message;
use thiserror::Error;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use self::headers::FrameHeaders;
use self::limits::{LimitExceeded, Limits};
use self::proto::{
    BroadcastCmd, HeaderEntry, SubscribeCmd, UnsubscribeCmd, BROADCAST_CMD, PACKAGE_PREFIX,
    PUBLISH_CMD, SUBSCRIBE_CMD, UNSUBSCRIBE_CMD,
};
use crate::goomerang::bridge::is_reserved_topic;
use crate::goomerang::close::CloseReason;
use crate::protobuf::{put_key, put_varint, Fields, WireError};

/// What a client asked for with one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SubscribeCmd`: deliver messages published to `topic` to this connection.
    Subscribe { topic: String },
    /// `UnsubscribeCmd`: stop delivering `topic`.
    Unsubscribe { topic: String },
    /// `PublishCmd`: deliver `message` (the protobuf encoding of a `kind`) to the subscribers of `topic`.
    /// `headers` are the frame's headers as sent: user headers carry the `message-` prefix
    /// (see [`bridge::user_headers`](crate::goomerang::bridge::user_headers)).
    ///
    /// Its topic and kind share the message's buffer, as its `message` does.
    Publish {
        topic: Utf8Bytes,
        kind: Utf8Bytes,
        message: Bytes,
        headers: FrameHeaders,
    },
    /// `BroadcastCmd`: deliver `message` to every connected client; `headers` as for `Publish`.
    Broadcast {
        kind: Utf8Bytes,
        message: Bytes,
        headers: FrameHeaders,
    },
    /// A direct send of any other kind, meant for a server-side handler; headers are the user's own.
    Send {
        kind: String,
        payload: Bytes,
        headers: FrameHeaders,
    },
    /// A sync request: like `Send`, but the client waits for one reply carrying the same `uuid`.
    SendSync {
        uuid: String,
        kind: String,
        payload: Bytes,
        headers: FrameHeaders,
    },
}

/// Why a client frame is not a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    #[error("protocol decoding err: {0}")]
    Frame(#[from] WireError),
    #[error("bad {kind} payload: {source}")]
    CommandPayload {
        kind: &'static str,
        source: WireError,
    },
    #[error("frame without kind")]
    MissingKind,
    #[error("{command} without message kind")]
    MissingMessageKind { command: &'static str },
    #[error("unknown built-in command {kind}")]
    UnknownCommand { kind: String },
    #[error("sync request without uuid")]
    SyncWithoutUuid,
    /// The topic is in gatewayd's internal `$` namespace.
    #[error("topic {topic:?} is reserved")]
    ReservedTopic { topic: String },
}

impl DecodeError {
    /// The close gatewayd initiates for this error; `None` means drop the frame and keep reading.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self {
            Self::Limit(limit) => limit.close_reason(),
            Self::Frame(_)
            | Self::CommandPayload { .. }
            | Self::MissingKind
            | Self::MissingMessageKind { .. }
            | Self::UnknownCommand { .. }
            | Self::SyncWithoutUuid
            | Self::ReservedTopic { .. } => None,
        }
    }
}

/// The longest built-in command whose fields (a publish's topic, kind and message) are copied out of their frame
/// rather than shared with it: tungstenite's read buffer's length. A frame still shared when the next one is read makes
/// that read allocate a buffer just large enough for it (the `bytes` crate remembers no original capacity under
/// 1 KiB), so a stream of short frames cost two allocations each and a read per frame. A longer frame gets a
/// buffer of its own anyway, and is shared.
const COPIED_UP_TO: usize = crate::ws::READ_BUFFER_BYTES;

/// Decodes one binary WebSocket message from a client.
///
/// Bytes fields of the result share `message`'s buffer, but a short built-in command's, which share a copy of it
/// (`COPIED_UP_TO`).
pub fn decode(message: Bytes, limits: &Limits) -> Result<Command, DecodeError> {
    limits.check_message(&message)?;
    let frame = FrameFields::read(&message, limits)?;
    let part = |bytes: &[u8]| message.slice_ref(bytes);
    let command = |kind: &'static str, known: &[u32]| {
        // A short command is copied out of the frame (see `COPIED_UP_TO`).
        let payload = if frame.payload.len() <= COPIED_UP_TO {
            Bytes::copy_from_slice(frame.payload)
        } else {
            message.slice_ref(frame.payload)
        };
        CommandFields::read(&payload, known)
            .map_err(|source| DecodeError::CommandPayload { kind, source })
    };
    match frame.kind {
        SUBSCRIBE_CMD => Ok(Command::Subscribe {
            topic: checked_topic(&command(SUBSCRIBE_CMD, &[1])?.topic, limits)?.to_owned(),
        }),
        UNSUBSCRIBE_CMD => Ok(Command::Unsubscribe {
            topic: checked_topic(&command(UNSUBSCRIBE_CMD, &[1])?.topic, limits)?.to_owned(),
        }),
        PUBLISH_CMD => {
            let cmd = command(PUBLISH_CMD, &[1, 2, 3])?;
            checked_topic(&cmd.topic, limits)?;
            Ok(Command::Publish {
                topic: cmd.topic,
                kind: message_kind(PUBLISH_CMD, cmd.kind, limits)?,
                message: cmd.message,
                headers: frame.headers,
            })
        }
        BROADCAST_CMD => {
            let cmd = command(BROADCAST_CMD, &[2, 3])?;
            Ok(Command::Broadcast {
                kind: message_kind(BROADCAST_CMD, cmd.kind, limits)?,
                message: cmd.message,
                headers: frame.headers,
            })
        }
        "" => Err(DecodeError::MissingKind),
        kind if kind.starts_with(PACKAGE_PREFIX) => Err(DecodeError::UnknownCommand {
            kind: kind.to_owned(),
        }),
        _ if frame.is_sync && frame.uuid.is_empty() => Err(DecodeError::SyncWithoutUuid),
        kind if frame.is_sync => Ok(Command::SendSync {
            uuid: frame.uuid.to_owned(),
            kind: kind.to_owned(),
            payload: part(frame.payload),
            headers: frame.headers,
        }),
        kind => Ok(Command::Send {
            kind: kind.to_owned(),
            payload: part(frame.payload),
            headers: frame.headers,
        }),
    }
}

/// The fields of a `Frame` a command is made of, borrowed from the message but for the headers.
struct FrameFields<'a> {
    uuid: &'a str,
    kind: &'a str,
    is_sync: bool,
    headers: FrameHeaders,
    payload: &'a [u8],
}

impl<'a> FrameFields<'a> {
    /// Reads `message` as prost reads a `Frame` (the last of a repeated singular field wins, `creation`
    /// must be a `Timestamp`), refusing a `kind` over the limit before it is checked for UTF-8 and a header over
    /// the limit before it is decoded.
    fn read(message: &'a [u8], limits: &Limits) -> Result<Self, DecodeError> {
        let mut frame = Self {
            uuid: "",
            kind: "",
            is_sync: false,
            headers: FrameHeaders::new(),
            payload: &[],
        };
        let mut headers = 0usize;
        for field in Fields::new(message) {
            let (tag, value) = field?;
            match tag {
                1 => frame.uuid = value.string(tag)?,
                2 => {
                    let kind = value.bytes(tag)?;
                    limits.check_kind_len(kind.len())?;
                    // A command's own kind is known text: no UTF-8 check.
                    frame.kind = match COMMANDS.into_iter().find(|c| c.as_bytes() == kind) {
                        Some(command) => command,
                        None => value.string(tag)?,
                    };
                }
                3 => drop(value.varint(tag)?),
                4 => frame.is_sync = value.varint(tag)? != 0,
                5 => check_timestamp(value.bytes(tag)?)?,
                6 => {
                    headers += 1;
                    limits.check_headers(headers)?;
                    let entry = HeaderEntry::decode(value.bytes(tag)?).map_err(WireError::from)?;
                    frame.headers.insert(entry.key, entry.value);
                }
                7 => frame.payload = value.bytes(tag)?,
                _ => {}
            }
        }
        Ok(frame)
    }
}

/// The kinds of the built-in commands.
const COMMANDS: [&str; 4] = [PUBLISH_CMD, SUBSCRIBE_CMD, UNSUBSCRIBE_CMD, BROADCAST_CMD];

/// `creation` read as prost reads a `google.protobuf.Timestamp`, whose `seconds` (1) and `nanos` (2) are varints;
/// its values are not used.
fn check_timestamp(timestamp: &[u8]) -> Result<(), WireError> {
    for field in Fields::new(timestamp) {
        let (tag, value) = field?;
        if tag == 1 || tag == 2 {
            value.varint(tag)?;
        }
    }
    Ok(())
}

/// The `topic` (1), `kind` (2) and `message` (3) fields of a built-in command's payload, sharing the payload's
/// buffer.
struct CommandFields {
    topic: Utf8Bytes,
    kind: Utf8Bytes,
    message: Bytes,
}

impl CommandFields {
    /// Reads `payload` as prost reads the command whose fields are `known` (the others it skips); the fields kept
    /// share its buffer.
    fn read(payload: &Bytes, known: &[u32]) -> Result<Self, WireError> {
        let text =
            |tag, bytes| crate::ws::text(payload.slice_ref(bytes)).ok_or(WireError::NotUtf8(tag));
        let mut command = Self {
            topic: Utf8Bytes::default(),
            kind: Utf8Bytes::default(),
            message: Bytes::new(),
        };
        for field in Fields::new(payload) {
            let (tag, value) = field?;
            match tag {
                _ if !known.contains(&tag) => {}
                1 => command.topic = text(tag, value.bytes(tag)?)?,
                2 => command.kind = text(tag, value.bytes(tag)?)?,
                3 => command.message = payload.slice_ref(value.bytes(tag)?),
                _ => {}
            }
        }
        Ok(command)
    }
}

/// `topic`, when a client may name it.
fn checked_topic<'a>(topic: &'a str, limits: &Limits) -> Result<&'a str, DecodeError> {
    limits.check_topic(topic)?;
    if is_reserved_topic(topic) {
        return Err(DecodeError::ReservedTopic {
            topic: topic.to_owned(),
        });
    }
    Ok(topic)
}

fn message_kind(
    command: &'static str,
    kind: Utf8Bytes,
    limits: &Limits,
) -> Result<Utf8Bytes, DecodeError> {
    limits.check_kind_len(kind.len())?;
    if kind.is_empty() {
        return Err(DecodeError::MissingMessageKind { command });
    }
    Ok(kind)
}

/// A message for one client, as it will see it: the message's full name, its protobuf encoding, and
/// plain (unprefixed) headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub kind: String,
    pub payload: Bytes,
    pub headers: FrameHeaders,
}

/// Encodes a delivery to a subscriber or broadcast receiver: no uuid, not sync (docs/protocols/goomerang.md,
/// "Deliveries and sync replies").
pub fn encode_delivery(delivery: &Delivery, creation: SystemTime) -> Bytes {
    encode_frame(
        "",
        false,
        &delivery.kind,
        &delivery.payload,
        &delivery.headers,
        creation,
    )
}

/// Encodes the one reply to a sync request: the request's `uuid`, `is_sync` set, and the reply message's own
/// kind (docs/protocols/goomerang.md, "Deliveries and sync replies").
pub fn encode_sync_reply(uuid: &str, reply: &Delivery, creation: SystemTime) -> Bytes {
    encode_frame(
        uuid,
        true,
        &reply.kind,
        &reply.payload,
        &reply.headers,
        creation,
    )
}

/// Encodes a `PublishCmd` of `message` (the protobuf encoding of a `kind`) on `topic` with the frame headers
/// `headers` (user headers carry the `message-` prefix): [`encode_command`] of a [`Command::Publish`], from
/// borrowed parts.
pub fn encode_publish(
    topic: &str,
    kind: &str,
    message: &[u8],
    headers: &FrameHeaders,
    creation: SystemTime,
) -> Bytes {
    let cmd_len = len_field_len(1, topic.len())
        + len_field_len(2, kind.len())
        + len_field_len(3, message.len());
    encode_frame_with("", false, PUBLISH_CMD, cmd_len, headers, creation, |buf| {
        put_len_field(1, topic.as_bytes(), buf);
        put_len_field(2, kind.as_bytes(), buf);
        put_len_field(3, message, buf);
    })
}

/// Encodes `command` the way the Go client does: the inverse of [`decode`].
pub fn encode_command(command: &Command, creation: SystemTime) -> Bytes {
    let none = FrameHeaders::new();
    let (uuid, kind, payload, headers) = match command {
        Command::Subscribe { topic } => {
            let cmd = SubscribeCmd {
                topic: topic.clone(),
            };
            ("", SUBSCRIBE_CMD, Bytes::from(cmd.encode_to_vec()), &none)
        }
        Command::Unsubscribe { topic } => {
            let cmd = UnsubscribeCmd {
                topic: topic.clone(),
            };
            ("", UNSUBSCRIBE_CMD, Bytes::from(cmd.encode_to_vec()), &none)
        }
        Command::Publish {
            topic,
            kind,
            message,
            headers,
        } => return encode_publish(topic, kind, message, headers, creation),
        Command::Broadcast {
            kind,
            message,
            headers,
        } => {
            let cmd = BroadcastCmd {
                kind: kind.to_string(),
                message: message.clone(),
            };
            ("", BROADCAST_CMD, Bytes::from(cmd.encode_to_vec()), headers)
        }
        Command::Send {
            kind,
            payload,
            headers,
        } => ("", kind.as_str(), payload.clone(), headers),
        Command::SendSync {
            uuid,
            kind,
            payload,
            headers,
        } => (uuid.as_str(), kind.as_str(), payload.clone(), headers),
    };
    let is_sync = matches!(command, Command::SendSync { .. });
    encode_frame(uuid, is_sync, kind, &payload, headers, creation)
}

fn encode_frame(
    uuid: &str,
    is_sync: bool,
    kind: &str,
    payload: &[u8],
    headers: &FrameHeaders,
    creation: SystemTime,
) -> Bytes {
    encode_frame_with(
        uuid,
        is_sync,
        kind,
        payload.len(),
        headers,
        creation,
        |buf| buf.extend_from_slice(payload),
    )
}

/// The bytes prost encodes for the `Frame` of these parts (fields in number order, proto3 defaults left out),
/// written straight from borrowed parts into one buffer of the exact size: `put_payload` writes the
/// `payload_len` bytes of `Frame.payload`.
fn encode_frame_with(
    uuid: &str,
    is_sync: bool,
    kind: &str,
    payload_len: usize,
    headers: &FrameHeaders,
    creation: SystemTime,
    put_payload: impl FnOnce(&mut Vec<u8>),
) -> Bytes {
    let payload_size = i64::try_from(payload_len).unwrap_or(i64::MAX);
    let creation = prost_types::Timestamp::from(creation);
    let entry_len =
        |key: &str, value: &str| len_field_len(1, key.len()) + len_field_len(2, value.len());
    let headers_len: usize = headers
        .iter()
        .map(|(key, value)| {
            let len = entry_len(key, value);
            1 + encoding::encoded_len_varint(len as u64) + len
        })
        .sum();
    let creation_len = creation.encoded_len();
    let len = len_field_len(1, uuid.len())
        + len_field_len(2, kind.len())
        + if payload_size != 0 {
            1 + encoding::encoded_len_varint(payload_size as u64)
        } else {
            0
        }
        + if is_sync { 2 } else { 0 }
        + 1
        + encoding::encoded_len_varint(creation_len as u64)
        + creation_len
        + headers_len
        + len_field_len(7, payload_len);
    let mut buf = Vec::with_capacity(len);
    put_len_field(1, uuid.as_bytes(), &mut buf);
    put_len_field(2, kind.as_bytes(), &mut buf);
    if payload_size != 0 {
        put_key(3, WireType::Varint, &mut buf);
        put_varint(payload_size as u64, &mut buf);
    }
    if is_sync {
        put_key(4, WireType::Varint, &mut buf);
        put_varint(1, &mut buf);
    }
    put_key(5, WireType::LengthDelimited, &mut buf);
    put_varint(creation_len as u64, &mut buf);
    // `Timestamp`'s `seconds` (int64) and `nanos` (int32), written as prost writes them: a negative value as its
    // ten-byte two's complement.
    for (tag, value) in [(1, creation.seconds), (2, i64::from(creation.nanos))] {
        if value != 0 {
            put_key(tag, WireType::Varint, &mut buf);
            put_varint(value as u64, &mut buf);
        }
    }
    for (key, value) in headers.iter() {
        put_key(6, WireType::LengthDelimited, &mut buf);
        put_varint(entry_len(key, value) as u64, &mut buf);
        put_len_field(1, key.as_bytes(), &mut buf);
        put_len_field(2, value.as_bytes(), &mut buf);
    }
    if payload_len != 0 {
        put_key(7, WireType::LengthDelimited, &mut buf);
        put_varint(payload_len as u64, &mut buf);
        put_payload(&mut buf);
    }
    Bytes::from(buf)
}

/// Encoded length of a length-delimited field `tag` of `len` bytes; 0 when empty (a proto3 default).
fn len_field_len(tag: u32, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
}

/// Writes a length-delimited field `tag` of `bytes`; nothing when empty (a proto3 default).
fn put_len_field(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    put_key(tag, WireType::LengthDelimited, buf);
    put_varint(bytes.len() as u64, buf);
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests;
