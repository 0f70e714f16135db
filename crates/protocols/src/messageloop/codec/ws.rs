//! The per-connection WebSocket codec: one WS message ↔ one envelope, in the negotiated encoding (JSON
//! text frames or protobuf binary frames) and the connection's wire generation, detected from the first
//! decodable message unless the listener fixes it.
//!
//! A JSON Connect from a G0 or a G1 SDK looks the same. Such a connection stays "G0 or G1" until a
//! message with a generation-specific shape arrives; meanwhile inbound messages are read with the G1
//! schema (which accepts G0's connect/subscribe/ping shapes) and outbound ones carry only what both
//! generations define ([`super::g0_or_g1`]). Once the generation is known, replies use exactly its schema.

use bytes::Bytes;
use prost::Message as _;
use serde_json::Value;

use super::direct_pb;
use super::g0_or_g1;
use super::generation::{
    detect_json, detect_protobuf, legacy_shape, Detected, Encoding, Generation, GenerationSetting,
};
use super::json::{self, JsonError};
use super::publication_json::Direct;
use super::publish_json;
use super::publish_pb;
use super::shared::{json_frame, Encoded, Form};
use super::wire::{DecodeError, G0Wire, G1Wire, G2Wire, Unrepresentable, Wire};
use crate::messageloop::message::{Inbound, Outbound, OutboundBody};

/// One WebSocket data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opcode 1 (JSON encoding).
    Text(String),
    /// Opcode 2 (protobuf encoding).
    Binary(Bytes),
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The client's generation has no such message; leave it out.
    #[error(transparent)]
    Unrepresentable(#[from] Unrepresentable),
    /// The message could not be rendered (for example a JSON payload nested too deeply).
    #[error(transparent)]
    Json(#[from] JsonError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Undetected,
    Known(Generation),
    /// JSON only: a G0 or a G1 client, not yet told apart.
    G0OrG1,
}

/// Encoding and generation state of one WebSocket connection.
#[derive(Debug, Clone)]
pub struct WsCodec {
    encoding: Encoding,
    state: State,
}

macro_rules! by_generation {
    ($generation:expr, $function:ident($($arg:expr),*)) => {
        match $generation {
            Generation::G0 => $function::<G0Wire>($($arg),*),
            Generation::G1 => $function::<G1Wire>($($arg),*),
            Generation::G2 => $function::<G2Wire>($($arg),*),
        }
    };
}

impl WsCodec {
    pub fn new(encoding: Encoding, setting: GenerationSetting) -> Self {
        let state = match setting {
            GenerationSetting::Auto => State::Undetected,
            GenerationSetting::Fixed(generation) => State::Known(generation),
        };
        WsCodec { encoding, state }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The connection's generation once known. `None` before the first decodable message, and for a JSON
    /// connection still undecided between G0 and G1 (see [`WsCodec::is_g0_or_g1`]).
    pub fn generation(&self) -> Option<Generation> {
        match self.state {
            State::Known(generation) => Some(generation),
            State::Undetected | State::G0OrG1 => None,
        }
    }

    /// Whether a JSON connection is known to be G0 or G1 but not which (the session applies the rules
    /// both share: no G2 version gate).
    pub fn is_g0_or_g1(&self) -> bool {
        self.state == State::G0OrG1
    }

    /// Decodes one received WS message (whatever its opcode, as upstream). The generation is settled by
    /// the first message that decodes; a malformed message settles nothing. A G2 connection's protobuf publish in
    /// the plain shape is read directly ([`publish_pb`]).
    pub fn decode(&mut self, frame: &[u8]) -> Result<Inbound, DecodeError> {
        let (decoded, next) = match self.encoding {
            Encoding::Protobuf => {
                if self.state == State::Known(Generation::G2) {
                    if let Some(inbound) = publish_pb::publish(frame) {
                        return Ok(inbound);
                    }
                }
                let generation = match self.state {
                    State::Known(generation) => generation,
                    State::Undetected | State::G0OrG1 => detect_protobuf(frame),
                };
                let decoded = by_generation!(generation, decode_protobuf(frame));
                (decoded, State::Known(generation))
            }
            Encoding::Json => {
                let value: Value = serde_json::from_slice(frame).map_err(malformed)?;
                let next = match self.state {
                    State::Known(generation) => State::Known(generation),
                    State::Undetected => match detect_json(&value) {
                        Detected::Known(generation) => State::Known(generation),
                        Detected::G0OrG1 => State::G0OrG1,
                    },
                    State::G0OrG1 => legacy_shape(&value).map_or(State::G0OrG1, State::Known),
                };
                let generation = match next {
                    State::Known(generation) => generation,
                    State::Undetected | State::G0OrG1 => Generation::G1,
                };
                (by_generation!(generation, decode_json(value)), next)
            }
        };
        if !matches!(decoded, Err(DecodeError::Malformed(_))) {
            self.state = next;
        }
        decoded
    }

    /// Decodes one text frame (WebSocket has checked it is UTF-8) as [`decode`](Self::decode) does, but a G2 JSON
    /// connection's publish in the plain shape is read directly ([`publish_json`]).
    pub fn decode_text(&mut self, text: &str) -> Result<Inbound, DecodeError> {
        if self.encoding == Encoding::Json && self.state == State::Known(Generation::G2) {
            if let Some(inbound) = publish_json::publish(text) {
                return Ok(inbound);
            }
        }
        self.decode(text.as_bytes())
    }

    /// Encodes one envelope for this connection. Before the generation is known it is written as G2. A shared
    /// publication's body is encoded once per form for all its subscribers.
    pub fn encode(&self, message: &Outbound) -> Result<Frame, EncodeError> {
        if let OutboundBody::Delivered(shared) = &message.body {
            let frame = shared.frame(self.form(), &message.id, message.time_ms, |template| {
                self.encode_parts(template)
            });
            if let Some(frame) = frame {
                return Ok(frame);
            }
        }
        if let Form::Json(Some(generation)) = self.form() {
            if let Some(direct) = Direct::of(generation, message) {
                return Ok(Frame::Text(direct.frame(&message.id, message.time_ms)));
            }
        }
        Ok(match self.encode_parts(message)? {
            Encoded::Json(value) => Frame::Text(value.to_string()),
            Encoded::JsonMembers(members) => {
                Frame::Text(json_frame(&members, &message.id, message.time_ms))
            }
            Encoded::Protobuf(bytes) => Frame::Binary(Bytes::from(bytes)),
        })
    }

    /// The form this connection's envelopes take now (G2 until the generation is known).
    fn form(&self) -> Form {
        match self.state {
            State::Known(generation) => Form::of(self.encoding, generation),
            State::Undetected => Form::of(self.encoding, Generation::G2),
            State::G0OrG1 => Form::Json(None),
        }
    }

    pub(super) fn encode_parts(&self, message: &Outbound) -> Result<Encoded, EncodeError> {
        let generation = match self.form() {
            Form::Protobuf(generation) | Form::Json(Some(generation)) => generation,
            Form::Json(None) => return Ok(Encoded::Json(encode_g0_or_g1(message)?)),
        };
        match self.encoding {
            Encoding::Protobuf if generation == Generation::G2 => {
                // A G2 publication or publish ack is written directly, not through the generated messages.
                let direct = match &message.body {
                    OutboundBody::PublishAck(position) => Some(direct_pb::publish_ack(
                        &message.id,
                        message.time_ms,
                        position,
                    )),
                    body => body.messages().and_then(|messages| {
                        direct_pb::publication(&message.id, message.time_ms, messages)
                    }),
                };
                match direct {
                    Some(bytes) => Ok(Encoded::Protobuf(bytes)),
                    None => encode_protobuf::<G2Wire>(message),
                }
            }
            Encoding::Protobuf => by_generation!(generation, encode_protobuf(message)),
            Encoding::Json => {
                // A G1/G2 publication and a G2 publish ack are written directly, not through the dynamic protojson
                // rendering.
                if let Some(direct) = Direct::of(generation, message) {
                    return Ok(Encoded::JsonMembers(vec![direct.member()]));
                }
                Ok(Encoded::Json(by_generation!(
                    generation,
                    encode_json(message)
                )?))
            }
        }
    }
}

fn malformed(error: impl std::fmt::Display) -> DecodeError {
    DecodeError::Malformed(error.to_string())
}

fn decode_protobuf<W: Wire>(frame: &[u8]) -> Result<Inbound, DecodeError> {
    W::inbound(W::Inbound::decode(frame).map_err(malformed)?)
}

fn decode_json<W: Wire>(value: Value) -> Result<Inbound, DecodeError> {
    W::inbound(json::from_value::<W::Inbound>(value).map_err(malformed)?)
}

fn encode_protobuf<W: Wire>(message: &Outbound) -> Result<Encoded, EncodeError> {
    Ok(Encoded::Protobuf(W::outbound(message)?.encode_to_vec()))
}

fn encode_json<W: Wire>(message: &Outbound) -> Result<Value, EncodeError> {
    Ok(json::to_value(&W::outbound(message)?)?)
}

fn encode_g0_or_g1(message: &Outbound) -> Result<Value, EncodeError> {
    let g0 = encode_json::<G0Wire>(message)?;
    let g1 = encode_json::<G1Wire>(message)?;
    Ok(g0_or_g1::common_reply(&g0, &g1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messageloop::conformance::{check_json, check_protobuf, outbound_name, UnknownKeys};
    use crate::messageloop::message::{
        Connected, Error, InboundBody, Message, OutboundBody, Payload, Position, PresenceAction,
        PresenceEvent, PresenceInfo, PresenceSnapshot, RecoverState, RpcReply, SubscribeAck,
        Subscription,
    };
    use crate::messageloop::ErrorCode;

    fn auto(encoding: Encoding) -> WsCodec {
        WsCodec::new(encoding, GenerationSetting::Auto)
    }

    fn delivery() -> Outbound {
        Outbound {
            id: "u".into(),
            time_ms: 5,
            body: OutboundBody::Publication(vec![Message {
                id: "demo-1".into(),
                channel: "demo".into(),
                position: Position {
                    stream_epoch: "e".into(),
                    offset: Some(1),
                },
                payload: Payload::text("text/plain", "hi"),
                headers: Vec::new(),
                replay: false,
            }]),
        }
    }

    fn text(frame: Frame) -> Value {
        match frame {
            Frame::Text(text) => serde_json::from_str(&text).unwrap(),
            Frame::Binary(_) => panic!("expected a text frame"),
        }
    }

    #[test]
    fn json_g0_or_g1_settles_on_a_shaped_message() {
        let mut codec = auto(Encoding::Json);
        let connect = codec
            .decode(br#"{"id":"1","connect":{"client_type":"sdk","version":"1.0.0"}}"#)
            .unwrap();
        assert!(matches!(connect.body, InboundBody::Connect(_)));
        assert!(codec.is_g0_or_g1());
        assert_eq!(codec.generation(), None);
        let subscribe =
            codec.decode(br#"{"id":"2","subscribe":{"subscriptions":[{"channel":"demo"}]}}"#);
        assert_eq!(
            subscribe.unwrap().body,
            InboundBody::Subscribe(vec![Subscription::channel("demo")])
        );
        assert!(codec.is_g0_or_g1());
        let delivered = text(codec.encode(&delivery()).unwrap());
        let payload = &delivered["publication"]["messages"][0]["payload"];
        assert!(payload.get("text").is_none());
        assert!(payload.get("content_type").is_none());
        assert_eq!(payload["source"], "demo");
        assert_eq!(payload["binary_data"], "aGk=");
        assert_eq!(delivered["publication"]["messages"][0]["offset"], "1");
        codec
            .decode(br#"{"id":"3","publish":{"channel":"demo","payload":{"text":"x"}}}"#)
            .unwrap();
        assert_eq!(codec.generation(), Some(Generation::G1));
        let delivered = text(codec.encode(&delivery()).unwrap());
        assert!(delivered["publication"]["messages"][0]["payload"]
            .get("source")
            .is_none());
    }

    #[test]
    fn malformed_frames_settle_nothing() {
        let mut codec = auto(Encoding::Json);
        assert!(matches!(
            codec.decode(b"{nope"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            codec.decode(br#"{"time":"x"}"#),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(codec.generation(), None);
        assert_eq!(
            codec.decode(br#"{"id":"7"}"#),
            Err(DecodeError::Empty { id: "7".into() })
        );
        assert_eq!(codec.generation(), Some(Generation::G2));
    }

    #[test]
    fn fixed_generation_skips_detection() {
        let mut codec = WsCodec::new(Encoding::Json, GenerationSetting::Fixed(Generation::G2));
        let decoded = codec
            .decode(br#"{"id":"1","connect":{"version":"1.0.0"}}"#)
            .unwrap();
        assert!(matches!(decoded.body, InboundBody::Connect(ref c) if c.version == "1.0.0"));
        assert_eq!(codec.generation(), Some(Generation::G2));
    }

    #[test]
    fn unrepresentable_messages_are_reported() {
        let mut codec = WsCodec::new(Encoding::Protobuf, GenerationSetting::Fixed(Generation::G0));
        let ping = Outbound {
            id: "x".into(),
            time_ms: 0,
            body: OutboundBody::Ping,
        };
        assert!(matches!(
            codec.encode(&ping),
            Err(EncodeError::Unrepresentable(_))
        ));
        codec = auto(Encoding::Protobuf);
        assert!(matches!(codec.encode(&ping), Ok(Frame::Binary(_))));
    }

    #[test]
    fn deeply_nested_payloads_fail_cleanly_on_a_worker_sized_stack() {
        let depth = 120;
        let nested = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
        let frame =
            format!(r#"{{"id":"1","publish":{{"channel":"c","payload":{{"json":{nested}}}}}}}"#);
        let worker = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let mut codec = WsCodec::new(Encoding::Json, GenerationSetting::Auto);
                codec.decode(frame.as_bytes())
            });
        let decoded = worker.unwrap().join().expect("no stack overflow");
        assert!(matches!(decoded, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn an_undecided_json_client_gets_no_g1_only_fields() {
        let mut codec = auto(Encoding::Json);
        codec
            .decode(br#"{"id":"1","connect":{"client_type":"sdk","version":"1.0.0"}}"#)
            .unwrap();
        let connected = Outbound {
            id: "1".into(),
            time_ms: 5,
            body: OutboundBody::Connected(Box::new(Connected {
                session_id: "s".into(),
                stream_epoch: "e".into(),
                ..Connected::default()
            })),
        };
        assert_eq!(
            text(codec.encode(&connected).unwrap()),
            serde_json::json!({"id":"1","time":"5","connected":{"session_id":"s"}})
        );
    }

    /// One reply of every kind the session sends, with every field it can fill.
    fn every_reply() -> Vec<Outbound> {
        let info = PresenceInfo {
            session_id: "s".into(),
            user_id: "u".into(),
            client_id: "c".into(),
            connected_at_ms: 7,
        };
        let snapshot = PresenceSnapshot {
            channel: "demo".into(),
            clients: vec![info.clone()],
            truncated: false,
            occupancy: 1,
        };
        let OutboundBody::Publication(messages) = delivery().body else {
            unreachable!()
        };
        let bodies = vec![
            OutboundBody::Error(Box::new(Error::new(ErrorCode::BadRequest, "bad"))),
            OutboundBody::Connected(Box::new(Connected {
                session_id: "s".into(),
                subscriptions: vec!["demo".into()],
                resumed: false,
                stream_epoch: "e".into(),
                accepted_caps: Vec::new(),
            })),
            OutboundBody::SubscribeAck(Box::new(SubscribeAck {
                subscriptions: vec![Subscription::channel("demo")],
                recover: RecoverState::None,
                stream_epoch: "e".into(),
                presence: vec![snapshot.clone()],
                error: None,
                replayed: messages.clone(),
                recover_results: Vec::new(),
            })),
            OutboundBody::UnsubscribeAck(vec![Subscription::channel("demo")]),
            OutboundBody::PublishAck(Position {
                stream_epoch: "e".into(),
                offset: Some(3),
            }),
            OutboundBody::Publication(messages),
            OutboundBody::RpcReply(Box::new(RpcReply {
                request_id: "r".into(),
                payload: Payload::text("text/plain", "pong"),
                headers: vec![("k".into(), bytes::Bytes::from_static(b"v"))],
                error: None,
            })),
            OutboundBody::RpcReply(Box::new(RpcReply {
                request_id: "r".into(),
                payload: Payload::default(),
                headers: Vec::new(),
                error: Some(Error::new(ErrorCode::RpcTimeout, "late")),
            })),
            OutboundBody::SubRefreshAck,
            OutboundBody::Presence(Box::new(snapshot)),
            OutboundBody::PresenceEvent(Box::new(PresenceEvent {
                channel: "demo".into(),
                action: PresenceAction::Join,
                info,
                generation: 2,
            })),
            OutboundBody::Ping,
            OutboundBody::Pong,
        ];
        bodies
            .into_iter()
            .map(|body| Outbound {
                id: "x".into(),
                time_ms: 5,
                body,
            })
            .collect()
    }

    /// Every reply reads as strictly as the SDKs read: exactly the known generation's schema, and while a JSON
    /// client may be G0 or G1, strictly as G0 (whose SDK rejects unknown keys) and with G1's types.
    #[test]
    fn every_reply_reads_strictly_as_its_generation() {
        let mut undecided = auto(Encoding::Json);
        undecided
            .decode(br#"{"id":"1","connect":{"client_type":"sdk","version":"1.0.0"}}"#)
            .unwrap();
        assert!(undecided.is_g0_or_g1());
        let g0 = outbound_name(Generation::G0);
        let g1 = outbound_name(Generation::G1);
        for reply in every_reply() {
            match undecided.encode(&reply) {
                Ok(frame) => {
                    let value = text(frame);
                    check_json(g0, &value, UnknownKeys::Reject)
                        .unwrap_or_else(|err| panic!("G0 cannot read {value}: {err}"));
                    check_json(g1, &value, UnknownKeys::Discard)
                        .unwrap_or_else(|err| panic!("G1 cannot read {value}: {err}"));
                }
                Err(EncodeError::Unrepresentable(_)) => {}
                Err(err) => panic!("{err}"),
            }
        }
        for generation in [Generation::G0, Generation::G1, Generation::G2] {
            let name = outbound_name(generation);
            for encoding in [Encoding::Json, Encoding::Protobuf] {
                let codec = WsCodec::new(encoding, GenerationSetting::Fixed(generation));
                for reply in every_reply() {
                    let result = match codec.encode(&reply) {
                        Ok(Frame::Text(text)) => {
                            let value = serde_json::from_str(&text).unwrap();
                            check_json(name, &value, UnknownKeys::Reject)
                        }
                        Ok(Frame::Binary(bytes)) => check_protobuf(name, &bytes),
                        Err(EncodeError::Unrepresentable(_)) => Ok(()),
                        Err(err) => panic!("{err}"),
                    };
                    if let Err(err) = result {
                        panic!("{generation} {encoding:?} cannot read {reply:?}: {err}");
                    }
                }
            }
        }
    }
}
