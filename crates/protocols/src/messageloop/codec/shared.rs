//! A delivered publication shared by every subscriber of one message ([`SharedPublication`]): the [`Message`]
//! built once, and for each wire form a connection can speak (generation × encoding, and JSON for a client that is
//! still "G0 or G1") the envelope encoded once without the two fields that differ per subscriber, the envelope
//! `id` and `time`. [`SharedPublication::frame`] puts those two around the shared body, so each subscriber gets
//! exactly the bytes the full encoding of its envelope would give.
//!
//! Why splicing gives the same bytes: JSON objects are rendered with their keys in order (serde_json's sorted map),
//! so `id` and `time` go where their keys sort among the shared members; in protobuf, `id` and `time` are the
//! envelope's lowest-numbered fields (G0's `metadata`, between them, is always empty) and prost writes fields in
//! number order, so they come first, then the shared body. Both left out of the shared body by encoding it with
//! their default values (proto3 and protojson leave defaults out).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;

use super::direct_pb;
use super::generation::{Encoding, Generation};
use super::publication_json::{push_id, push_time};
use super::ws::{EncodeError, Frame};
use crate::messageloop::message::{Message, Outbound, OutboundBody};

/// The wire forms one publication can take: protobuf and JSON of each generation, and JSON for "G0 or G1".
const FORMS: usize = 7;

/// One wire form of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Protobuf(Generation),
    /// `None`: a JSON client known to be G0 or G1, not which.
    Json(Option<Generation>),
}

impl Form {
    /// The form for a connection's encoding and (known) generation.
    pub fn of(encoding: Encoding, generation: Generation) -> Form {
        match encoding {
            Encoding::Protobuf => Form::Protobuf(generation),
            Encoding::Json => Form::Json(Some(generation)),
        }
    }

    fn index(self) -> usize {
        let generation = |generation| match generation {
            Generation::G0 => 0,
            Generation::G1 => 1,
            Generation::G2 => 2,
        };
        match self {
            Form::Protobuf(g) => generation(g),
            Form::Json(Some(g)) => 3 + generation(g),
            Form::Json(None) => 6,
        }
    }
}

/// An envelope encoded by the codec before it becomes a frame.
pub enum Encoded {
    Json(Value),
    /// JSON written directly: the members other than `id` and `time`, each as `"key":value`, in key order.
    JsonMembers(Vec<(Cow<'static, str>, String)>),
    Protobuf(Vec<u8>),
}

/// The shared part of one form.
#[derive(Debug)]
enum Body {
    /// The envelope's JSON members other than `id` and `time`, each rendered as `"key":value`, in key order.
    Json(Vec<(Cow<'static, str>, String)>),
    /// The envelope's fields after `time`, encoded.
    Protobuf(Bytes),
}

/// One delivered message, built once for all its subscribers, with its encodings made as subscribers need them.
#[derive(Debug)]
pub struct SharedPublication {
    message: Message,
    /// Per [`Form::index`]; `None` once encoding the form failed (each subscriber then encodes, and reports, alone).
    bodies: [OnceLock<Option<Body>>; FORMS],
}

impl PartialEq for SharedPublication {
    /// Equal messages are equal publications, however many forms are encoded yet.
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl SharedPublication {
    pub fn new(message: Message) -> SharedPublication {
        SharedPublication {
            message,
            bodies: Default::default(),
        }
    }

    /// The delivered message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The frame of the envelope `id`/`time_ms` carrying this publication in `form`. The shared body is encoded
    /// with `encode` (given the envelope with neither, carrying this publication) the first time a form is asked
    /// for. `None` when that failed.
    pub fn frame(
        self: &Arc<Self>,
        form: Form,
        id: &str,
        time_ms: u64,
        encode: impl FnOnce(&Outbound) -> Result<Encoded, EncodeError>,
    ) -> Option<Frame> {
        let body = self.bodies[form.index()].get_or_init(|| {
            let template = Outbound {
                id: String::new(),
                time_ms: 0,
                body: OutboundBody::Delivered(self.clone()),
            };
            match encode(&template).ok()? {
                Encoded::Json(Value::Object(members)) => Some(Body::Json(
                    members
                        .into_iter()
                        .filter(|(key, _)| key != "id" && key != "time")
                        .map(|(key, value)| {
                            let member = format!("{}:{value}", Value::String(key.clone()));
                            (Cow::Owned(key), member)
                        })
                        .collect(),
                )),
                Encoded::Json(_) => None,
                Encoded::JsonMembers(members) => Some(Body::Json(members)),
                Encoded::Protobuf(bytes) => Some(Body::Protobuf(Bytes::from(bytes))),
            }
        });
        match body.as_ref()? {
            Body::Json(members) => Some(Frame::Text(json_frame(members, id, time_ms))),
            Body::Protobuf(body) => {
                // The envelope's `time` field: G0 has `metadata` = 2 before it.
                let time_field = if form == Form::Protobuf(Generation::G0) {
                    3
                } else {
                    2
                };
                Some(Frame::Binary(Bytes::from(direct_pb::around(
                    body, time_field, id, time_ms,
                ))))
            }
        }
    }
}

/// `{…}` with `id` and `time` (left out when empty or zero, as protojson does) among the shared members, written
/// into one buffer.
pub(super) fn json_frame(
    members: &[(Cow<'static, str>, String)],
    id: &str,
    time_ms: u64,
) -> String {
    let own = [
        (!id.is_empty()).then_some("id"),
        (time_ms != 0).then_some("time"),
    ];
    let mut own = own.into_iter().flatten().peekable();
    let size = members.iter().map(|(_, m)| m.len() + 1).sum::<usize>() + id.len() + 48;
    let mut out = String::with_capacity(size);
    out.push('{');
    let comma = |out: &mut String| {
        if out.len() > 1 {
            out.push(',');
        }
    };
    let put_own = |out: &mut String, name: &str| {
        comma(out);
        if name == "id" {
            push_id(out, id);
        } else {
            push_time(out, time_ms);
        }
    };
    for (key, member) in members {
        while let Some(first) = own.next_if(|name| *name < key.as_ref()) {
            put_own(&mut out, first);
        }
        comma(&mut out);
        out.push_str(member);
    }
    for name in own {
        put_own(&mut out, name);
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::messageloop::codec::generation::GenerationSetting;
    use crate::messageloop::codec::ws::WsCodec;
    use crate::messageloop::message::{Payload, Position};

    fn message(payload: Payload, offset: Option<u64>) -> Message {
        Message {
            id: "demo-1".into(),
            channel: "chat.room".into(),
            position: Position {
                stream_epoch: "e\"1".into(),
                offset,
            },
            payload,
            headers: vec![("k".into(), bytes::Bytes::from_static(b"v\xc3\xa9"))],
            replay: false,
        }
    }

    fn messages() -> Vec<Message> {
        let object = serde_json::json!({"n": 1, "f": 1.5, "s": "é\"", "list": [2, {"m": -3}]});
        let serde_json::Value::Object(object) = object else {
            unreachable!()
        };
        vec![
            message(Payload::json("application/json", object), Some(7)),
            message(Payload::text("text/plain", "hi"), None),
            message(Payload::binary("", &b"\x00\xff"[..]), Some(0)),
            message(Payload::default(), Some(3)),
        ]
    }

    /// A codec in every state a connection can be in: undetected, each generation of each encoding, and a JSON
    /// client that is G0 or G1.
    fn codecs() -> Vec<WsCodec> {
        let mut codecs = Vec::new();
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            codecs.push(WsCodec::new(encoding, GenerationSetting::Auto));
            for generation in [Generation::G0, Generation::G1, Generation::G2] {
                codecs.push(WsCodec::new(encoding, GenerationSetting::Fixed(generation)));
            }
        }
        let mut undecided = WsCodec::new(Encoding::Json, GenerationSetting::Auto);
        undecided
            .decode(br#"{"id":"1","connect":{"client_type":"sdk","version":"1.0.0"}}"#)
            .unwrap();
        assert!(undecided.is_g0_or_g1());
        codecs.push(undecided);
        codecs
    }

    /// Each subscriber's frame of a shared publication is byte for byte the frame its own envelope would give.
    #[test]
    fn shared_frames_are_the_frames_of_the_whole_envelope() {
        for message in messages() {
            let shared = Arc::new(SharedPublication::new(message.clone()));
            for codec in codecs() {
                for (id, time_ms) in [("u-1", 1_763_800_000_000), ("é\"\n", 1), ("", 0)] {
                    let whole = Outbound {
                        id: id.into(),
                        time_ms,
                        body: OutboundBody::Publication(vec![message.clone()]),
                    };
                    let delivered = Outbound {
                        body: OutboundBody::Delivered(shared.clone()),
                        ..whole.clone()
                    };
                    assert_eq!(
                        codec.encode(&delivered).unwrap(),
                        codec.encode(&whole).unwrap(),
                        "{codec:?} {id:?} {message:?}"
                    );
                }
            }
        }
    }

    /// Subscribers of one form share one encoded body: it is encoded for the first only.
    #[test]
    fn a_form_is_encoded_once_for_all_subscribers() {
        let shared = Arc::new(SharedPublication::new(messages().remove(0)));
        let codec = WsCodec::new(Encoding::Json, GenerationSetting::Fixed(Generation::G2));
        let encodings = Cell::new(0);
        let frames: Vec<Frame> = ["a", "b", "c"]
            .into_iter()
            .map(|id| {
                shared
                    .frame(Form::Json(Some(Generation::G2)), id, 5, |template| {
                        encodings.set(encodings.get() + 1);
                        codec.encode_parts(template)
                    })
                    .unwrap()
            })
            .collect();
        assert_eq!(encodings.get(), 1);
        let Frame::Text(first) = &frames[0] else {
            panic!("{frames:?}")
        };
        assert!(first.starts_with(r#"{"id":"a","publication":"#), "{first}");
        assert!(first.ends_with(r#","time":"5"}"#), "{first}");
        let protobuf = WsCodec::new(Encoding::Protobuf, GenerationSetting::Fixed(Generation::G2));
        shared.frame(Form::Protobuf(Generation::G2), "a", 5, |template| {
            encodings.set(encodings.get() + 1);
            protobuf.encode_parts(template)
        });
        assert_eq!(encodings.get(), 2, "another form has its own body");
    }
}
