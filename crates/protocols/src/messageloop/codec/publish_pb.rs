//! A G2 client's protobuf publish command read in place: an `InboundMessage` (`id`, `time`) whose envelope is a
//! `Publish` (`channel`, `token`, `transient`, `idempotency_key`) with a `Payload` (`content_type` and `binary` or
//! `text`) becomes the neutral [`Inbound`] in one pass over the frame, its strings checked where they lie and only
//! what the command keeps copied, instead of prost's generated decoders filling the envelope's structs and the
//! G2 conversion moving them over. Anything else (metadata, a `json` payload, another envelope, a field prost
//! would skip, a message field given twice, a wrong wire type, bad UTF-8, …) gives `None` and takes the general
//! path, which stays the reference: what is read here is what it reads.

use bytes::Bytes;

use crate::messageloop::message::{Inbound, InboundBody, Payload, PayloadData, Publish};
use crate::protobuf::Fields;

/// The publish command in `frame`, or `None` when it is not one in the shape read here.
pub fn publish(frame: &[u8]) -> Option<Inbound> {
    let mut id = "";
    let mut command = None;
    for field in Fields::new(frame) {
        let (tag, value) = field.ok()?;
        match tag {
            1 => id = value.string(tag).ok()?,
            2 => {
                value.varint(tag).ok()?;
            }
            6 if command.is_none() => command = Some(value.bytes(tag).ok()?),
            _ => return None,
        }
    }
    Some(Inbound {
        id: id.to_owned(),
        body: InboundBody::Publish(read_publish(command?)?),
    })
}

/// A `Publish` without metadata.
fn read_publish(command: &[u8]) -> Option<Publish> {
    let mut channel = "";
    let mut payload = None;
    let mut token = "";
    let mut transient = false;
    let mut idempotency_key = "";
    for field in Fields::new(command) {
        let (tag, value) = field.ok()?;
        match tag {
            1 => channel = value.string(tag).ok()?,
            2 if payload.is_none() => payload = Some(read_payload(value.bytes(tag).ok()?)?),
            4 => token = value.string(tag).ok()?,
            5 => transient = value.varint(tag).ok()? != 0,
            6 => idempotency_key = value.string(tag).ok()?,
            _ => return None,
        }
    }
    Some(Publish {
        channel: channel.to_owned(),
        payload: payload.unwrap_or_default(),
        token: token.to_owned(),
        transient,
        idempotency_key: idempotency_key.to_owned(),
        ..Publish::default()
    })
}

/// A `Payload` whose data, if any, is `binary` or `text`, given once.
fn read_payload(payload: &[u8]) -> Option<Payload> {
    let mut content_type = "";
    let mut data = None;
    for field in Fields::new(payload) {
        let (tag, value) = field.ok()?;
        match tag {
            1 => content_type = value.string(tag).ok()?,
            3 if data.is_none() => {
                data = Some(PayloadData::Binary(Bytes::copy_from_slice(
                    value.bytes(tag).ok()?,
                )));
            }
            4 if data.is_none() => {
                data = Some(PayloadData::Text(value.string(tag).ok()?.to_owned()))
            }
            _ => return None,
        }
    }
    Some(Payload {
        content_type: content_type.to_owned(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;
    use crate::messageloop::codec::wire::{G2Wire, Wire};
    use crate::messageloop::pb::messageloop::client::v2 as pb;
    use crate::messageloop::pb::messageloop::shared::v2 as shared;

    /// What the general path (prost's decoders and the G2 conversion) reads.
    fn general(frame: &[u8]) -> Option<Inbound> {
        G2Wire::inbound(pb::InboundMessage::decode(frame).ok()?).ok()
    }

    fn envelope(id: &str, publish: pb::Publish) -> Vec<u8> {
        pb::InboundMessage {
            id: id.into(),
            time: 0,
            envelope: Some(pb::inbound_message::Envelope::Publish(publish)),
        }
        .encode_to_vec()
    }

    fn payload(content_type: &str, data: Option<shared::payload::Data>) -> Option<shared::Payload> {
        Some(shared::Payload {
            content_type: content_type.into(),
            data,
        })
    }

    /// Publishes as SDKs build them are read directly, exactly as the general path reads them.
    #[test]
    fn plain_publishes_read_as_the_general_path_reads_them() {
        use shared::payload::Data;
        let binary = |bytes: &'static [u8]| Some(Data::Binary(Bytes::from_static(bytes)));
        let text = |text: &str| Some(Data::Text(text.into()));
        let publishes = [
            pb::Publish {
                channel: "chat.room".into(),
                payload: payload("", binary(b"\0\xffhi")),
                ..Default::default()
            },
            pb::Publish {
                channel: "é.ü".into(),
                payload: payload("text/plain", text("ünïcode ✓")),
                token: "t".into(),
                transient: true,
                idempotency_key: "k".into(),
                ..Default::default()
            },
            pb::Publish {
                channel: "a".into(),
                payload: payload("x/y", None),
                ..Default::default()
            },
            pb::Publish {
                channel: "a".into(),
                payload: payload("", binary(b"")),
                ..Default::default()
            },
            pb::Publish::default(),
        ];
        for publish in publishes {
            for id in ["", "1", "a-rather-long-client-chosen-envelope-id"] {
                let frame = envelope(id, publish.clone());
                let direct = super::publish(&frame);
                assert!(direct.is_some(), "{publish:?}");
                assert_eq!(direct, general(&frame), "{publish:?}");
            }
        }
        // Written by hand: the time set, a string given twice (the last counts), fields in another order, a
        // `transient` varint longer than one byte.
        let frames: [&[u8]; 4] = [
            b"\x0a\x013\x10\x05\x32\x03\x0a\x01a",
            b"\x0a\x011\x0a\x012\x32\x06\x0a\x01a\x0a\x01b",
            b"\x32\x0b\x12\x06\x1a\x02hi\x0a\x00\x0a\x01a\x0a\x017",
            b"\x32\x06\x28\x81\x80\x00\x0a\x00",
        ];
        for frame in frames {
            let direct = super::publish(frame);
            assert!(direct.is_some(), "{frame:x?}");
            assert_eq!(direct, general(frame), "{frame:x?}");
        }
    }

    /// Every other shape is left to the general path (whatever it makes of it).
    #[test]
    fn other_shapes_take_the_general_path() {
        let metadata = pb::Publish {
            channel: "a".into(),
            metadata: Some(shared::Metadata {
                entries: [("k".to_owned(), "v".to_owned())].into(),
            }),
            ..Default::default()
        };
        let json = pb::Publish {
            channel: "a".into(),
            payload: payload(
                "",
                Some(shared::payload::Data::Json(prost_types::Struct::default())),
            ),
            ..Default::default()
        };
        let ping = pb::InboundMessage {
            id: "1".into(),
            time: 0,
            envelope: Some(pb::inbound_message::Envelope::Ping(pb::Ping {})),
        }
        .encode_to_vec();
        let owned = [envelope("1", metadata), envelope("1", json), ping];
        let frames: [&[u8]; 14] = [
            &owned[0],
            &owned[1],
            &owned[2],
            // No envelope; the publish given twice; an unknown field; a publish and a ping.
            b"\x0a\x011",
            b"\x32\x03\x0a\x01a\x32\x03\x0a\x01b",
            b"\x32\x03\x0a\x01a\x78\x01",
            b"\x32\x00\x5a\x00",
            // An unknown field in the publish, and in its payload; a payload given twice; binary and text.
            b"\x32\x03\x38\x01",
            b"\x32\x04\x12\x02\x28\x01",
            b"\x32\x04\x12\x00\x12\x00",
            b"\x32\x08\x12\x06\x1a\x01a\x22\x01b",
            // A string that is not UTF-8; a string as a varint; a field that runs past its message.
            b"\x0a\x02\xff\xfe\x32\x00",
            b"\x08\x01\x32\x00",
            b"\x32\x05\x0a\x07abc",
        ];
        for frame in frames {
            assert_eq!(super::publish(frame), None, "{frame:x?}");
        }
    }

    proptest! {
        /// On any bytes (publishes as prost writes them, then cut short or with a byte changed, and noise),
        /// whatever is read directly is what the general path reads.
        #[test]
        fn direct_reading_agrees_with_the_general_path(
            id in ".{0,6}",
            channel in ".{0,8}",
            content_type in ".{0,4}",
            data in proptest::option::of(prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..12)
                    .prop_map(|bytes| shared::payload::Data::Binary(Bytes::from(bytes))),
                ".{0,6}".prop_map(shared::payload::Data::Text),
            ]),
            token in ".{0,3}",
            transient in any::<bool>(),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
            noise in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            let frame = envelope(&id, pb::Publish {
                channel,
                payload: payload(&content_type, data),
                token,
                transient,
                ..Default::default()
            });
            prop_assert_eq!(super::publish(&frame), general(&frame));
            prop_assert!(super::publish(&frame).is_some());
            let cut = &frame[..cut.index(frame.len() + 1)];
            let mut flipped = frame.clone();
            if !flipped.is_empty() {
                let at = flip.0.index(flipped.len());
                flipped[at] ^= flip.1;
            }
            for bytes in [cut, &flipped, &noise] {
                if let Some(direct) = super::publish(bytes) {
                    prop_assert_eq!(Some(direct), general(bytes));
                }
            }
        }
    }
}
