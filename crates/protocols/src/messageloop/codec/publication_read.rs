//! A G2 publication or publish ack envelope read by a client (gatewayctl) in the plain shape
//! [`super::publication_json`] writes (no metadata, no JSON payload, strings without escapes, padded base64) with
//! [`super::plain_json`] into a [`PlainOutbound`] whose strings are parts of the frame: what the general reading
//! ([`super::json`]) gives, or `None` for any other shape, which is then read that way. A client copies what it
//! keeps (a message's channel and payload), not the ids and positions it steps over.

use super::plain_json::{self, optional, Reader};
pub use super::plain_json::{PlainData, PlainPayload};
use crate::messageloop::pb::messageloop::client::v2 as pb;
use crate::messageloop::pb::messageloop::shared::v2 as shared;

/// A decimal written as protojson writes a 64-bit integer (no sign, no leading zero).
fn uint64(text: &str) -> Option<u64> {
    let canonical =
        text == "0" || (!text.starts_with('0') && text.bytes().all(|b| b.is_ascii_digit()));
    canonical.then(|| text.parse().ok()).flatten()
}

/// A G2 publication or publish ack envelope in the plain shape, its strings borrowed from the frame.
#[derive(Debug, PartialEq)]
pub struct PlainOutbound<'a> {
    pub id: &'a str,
    pub time: u64,
    pub body: PlainBody<'a>,
}

/// The envelope's one member besides `id` and `time`.
#[derive(Debug, PartialEq)]
pub enum PlainBody<'a> {
    Publication(Vec<PlainMessage<'a>>),
    PublishAck {
        id: &'a str,
        position: Option<PlainPosition<'a>>,
    },
}

/// One message of a publication (without metadata).
#[derive(Debug, PartialEq)]
pub struct PlainMessage<'a> {
    pub channel: &'a str,
    pub id: &'a str,
    pub payload: Option<PlainPayload<'a>>,
    pub position: Option<PlainPosition<'a>>,
    pub replay: bool,
}

#[derive(Debug, PartialEq)]
pub struct PlainPosition<'a> {
    pub offset: Option<u64>,
    pub stream_epoch: &'a str,
}

/// A G2 publication or publish ack envelope in the plain shape, read without the dynamic mapping; `None` for any
/// other shape.
pub fn read(frame: &str) -> Option<PlainOutbound<'_>> {
    let mut reader = Reader::new(frame);
    let mut id = "";
    let mut time = None;
    let mut publication = None;
    let mut publish_ack = None;
    let keys = ["id", "publication", "publish_ack", "time"];
    reader.object(&keys, |reader, key| {
        match key {
            0 => id = reader.string()?,
            1 => publication = optional(reader, read_publication)?,
            2 => publish_ack = optional(reader, read_ack)?,
            _ => time = optional(reader, Reader::string)?,
        }
        Some(())
    })?;
    reader.end()?;
    let body = match (publication, publish_ack) {
        (Some(messages), None) => PlainBody::Publication(messages),
        (None, Some((id, position))) => PlainBody::PublishAck { id, position },
        _ => return None,
    };
    let time = match time {
        None => 0,
        Some(time) => uint64(time)?,
    };
    Some(PlainOutbound { id, time, body })
}

/// `{"id":…,"position":…}`.
fn read_ack<'a>(reader: &mut Reader<'a>) -> Option<(&'a str, Option<PlainPosition<'a>>)> {
    let mut id = "";
    let mut position = None;
    reader.object(&["id", "position"], |reader, key| {
        match key {
            0 => id = reader.string()?,
            _ => position = optional(reader, read_position)?,
        }
        Some(())
    })?;
    Some((id, position))
}

/// `{"offset":…,"stream_epoch":…}`.
fn read_position<'a>(reader: &mut Reader<'a>) -> Option<PlainPosition<'a>> {
    let mut position = PlainPosition {
        offset: None,
        stream_epoch: "",
    };
    reader.object(&["offset", "stream_epoch"], |reader, key| {
        match key {
            0 => position.offset = optional(reader, |r| uint64(r.string()?))?,
            _ => position.stream_epoch = reader.string()?,
        }
        Some(())
    })?;
    Some(position)
}

/// `{"messages":[…]}`.
fn read_publication<'a>(reader: &mut Reader<'a>) -> Option<Vec<PlainMessage<'a>>> {
    let mut messages = Vec::new();
    reader.object(&["messages"], |reader, _| {
        reader.array(|reader| {
            messages.push(read_message(reader)?);
            Some(())
        })
    })?;
    Some(messages)
}

/// One message without metadata.
fn read_message<'a>(reader: &mut Reader<'a>) -> Option<PlainMessage<'a>> {
    let mut message = PlainMessage {
        channel: "",
        id: "",
        payload: None,
        position: None,
        replay: false,
    };
    let keys = ["channel", "id", "payload", "position", "replay"];
    reader.object(&keys, |reader, key| {
        match key {
            0 => message.channel = reader.string()?,
            1 => message.id = reader.string()?,
            2 => message.payload = optional(reader, plain_json::payload)?,
            3 => message.position = optional(reader, read_position)?,
            _ => message.replay = optional(reader, Reader::boolean)?.unwrap_or(false),
        }
        Some(())
    })?;
    Some(message)
}

impl PlainOutbound<'_> {
    /// The generated envelope, owning its strings: what the general reading gives for the same frame.
    pub fn generated(self) -> pb::OutboundMessage {
        let envelope = match self.body {
            PlainBody::Publication(messages) => {
                let messages = messages.into_iter().map(|message| pb::Message {
                    channel: message.channel.to_owned(),
                    id: message.id.to_owned(),
                    payload: message.payload.map(PlainPayload::generated),
                    position: message.position.map(PlainPosition::generated),
                    replay: message.replay,
                    ..pb::Message::default()
                });
                pb::outbound_message::Envelope::Publication(pb::Publication {
                    messages: messages.collect(),
                })
            }
            PlainBody::PublishAck { id, position } => {
                pb::outbound_message::Envelope::PublishAck(pb::PublishAck {
                    id: id.to_owned(),
                    position: position.map(PlainPosition::generated),
                })
            }
        };
        pb::OutboundMessage {
            id: self.id.to_owned(),
            time: self.time,
            envelope: Some(envelope),
        }
    }
}

impl PlainPosition<'_> {
    fn generated(self) -> shared::Position {
        shared::Position {
            offset: self.offset,
            stream_epoch: self.stream_epoch.to_owned(),
        }
    }
}

impl PlainPayload<'_> {
    /// The generated payload: what the general reading gives.
    pub fn generated(self) -> shared::Payload {
        shared::Payload {
            content_type: self.content_type.to_owned(),
            data: self.data.map(|data| match data {
                PlainData::Binary(bytes) => shared::payload::Data::Binary(bytes.into()),
                PlainData::Text(text) => shared::payload::Data::Text(text.to_owned()),
            }),
        }
    }
}
