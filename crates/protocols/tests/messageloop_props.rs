//! Property tests for the MessageLoop JSON rules (docs/protocols/messageloop.md, "JSON encoding") and decoder
//! robustness: snake_case keys out, 64-bit integers as strings, both key spellings and numeric 64-bit values
//! accepted in, unknown keys ignored; random and mutated input never panics.

use std::path::PathBuf;

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message as _;
use protocols::messageloop::codes::ErrorCode;
use protocols::messageloop::generation::{Encoding, Generation, GenerationSetting};
use protocols::messageloop::message::{
    Connected, Error, JsonObject, Message, Outbound, OutboundBody, Payload, PayloadData, Position,
    PresenceAction, PresenceEvent, PresenceInfo, RpcReply,
};
use protocols::messageloop::pb::messageloop::client::v2 as g2;
use protocols::messageloop::pb::messageloop::shared::v2 as shared;
use protocols::messageloop::wire::{G0Wire, G1Wire, G2Wire, Wire};
use protocols::messageloop::{json, Frame, WsCodec};
use serde_json::Value;

const GENERATIONS: [Generation; 3] = [Generation::G0, Generation::G1, Generation::G2];
/// Keys whose values hold free-form names (payload objects, metadata maps, CloudEvent attributes).
const FREE_FORM: [&str; 4] = ["json", "entries", "attributes", "metadata"];
const SIXTY_FOUR_BIT: [&str; 4] = ["time", "offset", "gen", "connected_at"];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        any::<i16>().prop_map(|n| Value::from(f64::from(n) + 0.5)),
        "[ -~]{0,8}".prop_map(Value::from),
    ]
}

fn json_object() -> impl Strategy<Value = JsonObject> {
    let value = json_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{1,6}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    });
    prop::collection::btree_map("[a-zA-Z_]{1,6}", value, 0..4)
        .prop_map(|map| map.into_iter().collect())
}

fn payload() -> impl Strategy<Value = Payload> {
    let data = prop_oneof![
        json_object().prop_map(PayloadData::Json),
        prop::collection::vec(any::<u8>(), 0..16)
            .prop_map(|bytes| PayloadData::Binary(Bytes::from(bytes))),
        "\\PC{0,12}".prop_map(PayloadData::Text),
    ];
    ("[a-z/+.]{0,16}", prop::option::of(data))
        .prop_map(|(content_type, data)| Payload { content_type, data })
}

fn headers() -> impl Strategy<Value = Vec<(String, Bytes)>> {
    prop::collection::btree_map("[a-zA-Z-]{1,8}", "\\PC{0,8}", 0..3).prop_map(|map| {
        map.into_iter()
            .map(|(name, value)| (name, Bytes::from(value.into_bytes())))
            .collect()
    })
}

fn position() -> impl Strategy<Value = Position> {
    ("[a-f0-9-]{0,12}", prop::option::of(any::<u64>())).prop_map(|(stream_epoch, offset)| {
        Position {
            stream_epoch,
            offset,
        }
    })
}

fn error() -> impl Strategy<Value = Error> {
    ("[A-Z_]{1,20}", "[a-z_]{0,12}", "\\PC{0,16}", json_object()).prop_map(
        |(code, error_type, message, metadata)| Error {
            code: ErrorCode::parse(&code),
            error_type,
            message,
            metadata,
        },
    )
}

fn outbound() -> impl Strategy<Value = Outbound> {
    let message = (
        "[a-z0-9-]{1,12}",
        "[a-z.]{1,12}",
        position(),
        payload(),
        headers(),
        any::<bool>(),
    )
        .prop_map(
            |(id, channel, position, payload, headers, replay)| Message {
                id,
                channel,
                position,
                payload,
                headers,
                replay,
            },
        );
    let body = prop_oneof![
        position().prop_map(OutboundBody::PublishAck),
        prop::collection::vec(message, 1..3).prop_map(OutboundBody::Publication),
        (
            "[a-f0-9-]{1,12}",
            "[a-f0-9-]{0,12}",
            prop::collection::vec("[a-z.]{1,8}", 0..3)
        )
            .prop_map(|(session_id, stream_epoch, subscriptions)| {
                OutboundBody::Connected(Box::new(Connected {
                    session_id,
                    subscriptions,
                    stream_epoch,
                    ..Connected::default()
                }))
            }),
        error().prop_map(|error| OutboundBody::Error(Box::new(error))),
        ("[a-z.]{1,8}", any::<bool>(), any::<i64>(), any::<u64>()).prop_map(
            |(channel, join, at, generation)| {
                OutboundBody::PresenceEvent(Box::new(PresenceEvent {
                    channel,
                    action: if join {
                        PresenceAction::Join
                    } else {
                        PresenceAction::Leave
                    },
                    info: PresenceInfo {
                        session_id: "s".into(),
                        user_id: "u".into(),
                        client_id: String::new(),
                        connected_at_ms: at,
                    },
                    generation,
                }))
            }
        ),
        (".{0,8}", payload(), headers()).prop_map(|(request_id, payload, headers)| {
            OutboundBody::RpcReply(Box::new(RpcReply {
                request_id,
                payload,
                headers,
                error: None,
            }))
        }),
        Just(OutboundBody::Pong),
    ];
    (".{0,16}", any::<u64>(), body).prop_map(|(id, time_ms, body)| Outbound { id, time_ms, body })
}

/// Calls `visit(key, value)` for every key outside free-form subtrees.
fn walk_keys(value: &Value, visit: &mut impl FnMut(&str, &Value)) {
    match value {
        Value::Object(object) => {
            for (key, field) in object {
                visit(key, field);
                if !FREE_FORM.contains(&key.as_str()) {
                    walk_keys(field, visit);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| walk_keys(item, visit)),
        _ => {}
    }
}

fn is_snake_case(key: &str) -> bool {
    key.split('_').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    }) && key.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Adds `key: extra` to every object outside free-form subtrees.
fn add_unknown_keys(value: &mut Value, key: &str, extra: &Value) {
    match value {
        Value::Object(object) => {
            for (name, field) in object.iter_mut() {
                if !FREE_FORM.contains(&name.as_str()) {
                    add_unknown_keys(field, key, extra);
                }
            }
            object.insert(key.to_owned(), extra.clone());
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| add_unknown_keys(item, key, extra)),
        _ => {}
    }
}

/// Turns 64-bit integer strings a double holds exactly into JSON numbers.
fn numeric_sixty_four_bit(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (name, field) in object.iter_mut() {
                if SIXTY_FOUR_BIT.contains(&name.as_str()) {
                    if let Some(number) = field.as_str().and_then(|text| text.parse::<i64>().ok()) {
                        if number.unsigned_abs() < 1 << 53 {
                            *field = Value::from(number);
                        }
                    }
                } else if !FREE_FORM.contains(&name.as_str()) {
                    numeric_sixty_four_bit(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(numeric_sixty_four_bit),
        _ => {}
    }
}

fn check_json_forms<W: Wire>(
    message: &Outbound,
    unknown: &str,
    extra: &Value,
) -> Result<(), TestCaseError> {
    let Ok(wire) = W::outbound(message) else {
        return Ok(());
    };
    let snake = json::to_value(&wire).unwrap();
    prop_assert_eq!(
        &json::from_value::<W::Outbound>(snake.clone()).unwrap(),
        &wire
    );
    let camel = json::to_camel_value(&wire).unwrap();
    prop_assert_eq!(&json::from_value::<W::Outbound>(camel).unwrap(), &wire);
    let mut numeric = snake.clone();
    numeric_sixty_four_bit(&mut numeric);
    prop_assert_eq!(&json::from_value::<W::Outbound>(numeric).unwrap(), &wire);
    let mut padded = snake;
    add_unknown_keys(&mut padded, unknown, extra);
    prop_assert_eq!(&json::from_value::<W::Outbound>(padded).unwrap(), &wire);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn json_out_is_snake_case_with_string_64_bit_integers(message in outbound()) {
        for generation in GENERATIONS {
            let codec = WsCodec::new(Encoding::Json, GenerationSetting::Fixed(generation));
            let Ok(frame) = codec.encode(&message) else { continue };
            let Frame::Text(text) = frame else { panic!("JSON encoding gives text frames") };
            let rendered: Value = serde_json::from_str(&text).unwrap();
            let mut failures = Vec::new();
            walk_keys(&rendered, &mut |key, value| {
                if !is_snake_case(key) {
                    failures.push(format!("key {key}"));
                }
                if SIXTY_FOUR_BIT.contains(&key) && value.as_str().and_then(|text| text.parse::<i128>().ok()).is_none() {
                    failures.push(format!("{key} = {value}"));
                }
            });
            prop_assert!(failures.is_empty(), "{generation}: {failures:?} in {text}");
            if message.time_ms != 0 {
                prop_assert_eq!(&rendered["time"], &Value::from(message.time_ms.to_string()));
            }
        }
    }

    #[test]
    fn json_in_accepts_both_spellings_numbers_and_unknown_keys(
        message in outbound(),
        unknown in "x_[a-z]{1,8}",
        extra in json_leaf(),
    ) {
        check_json_forms::<G0Wire>(&message, &unknown, &extra)?;
        check_json_forms::<G1Wire>(&message, &unknown, &extra)?;
        check_json_forms::<G2Wire>(&message, &unknown, &extra)?;
    }

    #[test]
    fn protobuf_frames_carry_the_wire_message(message in outbound()) {
        for generation in GENERATIONS {
            let codec = WsCodec::new(Encoding::Protobuf, GenerationSetting::Fixed(generation));
            let Ok(frame) = codec.encode(&message) else { continue };
            let Frame::Binary(bytes) = frame else { panic!("protobuf encoding gives binary frames") };
            match generation {
                Generation::G0 => prop_assert_eq!(
                    G0Wire::outbound(&message).unwrap(),
                    <G0Wire as Wire>::Outbound::decode(bytes).unwrap()
                ),
                Generation::G1 => prop_assert_eq!(
                    G1Wire::outbound(&message).unwrap(),
                    <G1Wire as Wire>::Outbound::decode(bytes).unwrap()
                ),
                Generation::G2 => prop_assert_eq!(
                    G2Wire::outbound(&message).unwrap(),
                    <G2Wire as Wire>::Outbound::decode(bytes).unwrap()
                ),
            }
        }
    }

    #[test]
    fn client_messages_decode_the_same_in_every_form(message in g2_inbound(), unknown in "x_[a-z]{1,8}") {
        let expected = G2Wire::inbound(message.clone());
        let mut forms = vec![
            json::to_value(&message).unwrap(),
            json::to_camel_value(&message).unwrap(),
        ];
        let mut padded = forms[0].clone();
        add_unknown_keys(&mut padded, &unknown, &Value::from(1));
        numeric_sixty_four_bit(&mut padded);
        forms.push(padded);
        for form in forms {
            let mut codec = WsCodec::new(Encoding::Json, GenerationSetting::Fixed(Generation::G2));
            prop_assert_eq!(&codec.decode(form.to_string().as_bytes()), &expected, "{}", form);
        }
        let mut codec = WsCodec::new(Encoding::Protobuf, GenerationSetting::Fixed(Generation::G2));
        prop_assert_eq!(codec.decode(&message.encode_to_vec()), expected);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for codec in codecs() {
            let mut codec = codec;
            let _ = codec.decode(&bytes);
            let _ = codec.decode(&bytes);
        }
    }

    #[test]
    fn random_json_never_panics(value in random_json()) {
        let text = value.to_string();
        for codec in codecs() {
            let mut codec = codec;
            let _ = codec.decode(text.as_bytes());
        }
    }

    #[test]
    fn mutated_fixture_frames_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let frames = fixture_frames();
        let mut frame = frames[pick.index(frames.len())].clone();
        for (at, byte) in edits {
            let at = at.index(frame.len());
            frame[at] = byte;
        }
        frame.truncate(cut.index(frame.len() + 1));
        for codec in codecs() {
            let mut codec = codec;
            let _ = codec.decode(&frame);
        }
    }
}

fn codecs() -> Vec<WsCodec> {
    let settings = [
        GenerationSetting::Auto,
        GenerationSetting::Fixed(Generation::G0),
        GenerationSetting::Fixed(Generation::G1),
        GenerationSetting::Fixed(Generation::G2),
    ];
    settings
        .into_iter()
        .flat_map(|setting| {
            [
                WsCodec::new(Encoding::Json, setting),
                WsCodec::new(Encoding::Protobuf, setting),
            ]
        })
        .collect()
}

/// JSON shaped like envelopes: real field names in both spellings mixed with random ones, any value kinds.
fn random_json() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "id",
        "time",
        "connect",
        "subscribe",
        "publish",
        "payload",
        "json",
        "binary",
        "text",
        "channel",
        "subscriptions",
        "version",
        "cursor",
        "offset",
        "stream_epoch",
        "streamEpoch",
        "metadata",
        "entries",
        "specVersion",
        "binary_data",
        "attributes",
        "ceString",
        "ce_timestamp",
        "proto_data",
        "@type",
        "rpc_request",
        "survey_request",
        "presenceQuery",
        "pong",
        "ping",
        "x",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        "-?[0-9]{1,25}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..5).prop_map(|fields| Value::Object(
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

fn g2_inbound() -> impl Strategy<Value = g2::InboundMessage> {
    use g2::inbound_message::Envelope;
    let shared_payload = prop_oneof![
        json_object().prop_map(|object| shared::payload::Data::Json(struct_of(&object))),
        prop::collection::vec(any::<u8>(), 0..8)
            .prop_map(|b| shared::payload::Data::Binary(Bytes::from(b))),
        "\\PC{0,8}".prop_map(shared::payload::Data::Text),
    ];
    let subscription = (
        "[a-z.*]{1,8}",
        any::<bool>(),
        any::<bool>(),
        prop::option::of(any::<u64>()),
        any::<bool>(),
    )
        .prop_map(
            |(channel, ephemeral, recover, offset, fresh)| g2::Subscription {
                channel,
                ephemeral,
                token: String::new(),
                recover,
                cursor: offset.map(|offset| shared::Position {
                    stream_epoch: "e".into(),
                    offset: Some(offset),
                }),
                fresh,
            },
        );
    let envelope = prop_oneof![
        (
            "\\PC{0,8}",
            "[0-9.]{0,6}",
            prop::collection::vec(subscription.clone(), 0..3)
        )
            .prop_map(
                |(token, version, subscriptions)| Envelope::Connect(g2::Connect {
                    token,
                    version,
                    subscriptions,
                    client_type: "sdk".into(),
                    ..g2::Connect::default()
                })
            ),
        prop::collection::vec(subscription, 0..3)
            .prop_map(|subscriptions| Envelope::Subscribe(g2::Subscribe { subscriptions })),
        (
            "[a-z.]{0,8}",
            "[a-z/]{0,8}",
            prop::option::of(shared_payload),
            any::<bool>()
        )
            .prop_map(
                |(channel, content_type, data, transient)| Envelope::Publish(g2::Publish {
                    channel,
                    payload: Some(shared::Payload { content_type, data }),
                    transient,
                    ..g2::Publish::default()
                })
            ),
        "[a-z.]{0,8}".prop_map(|channel| Envelope::PresenceQuery(g2::PresenceQuery { channel })),
        Just(Envelope::Ping(g2::Ping {})),
        Just(Envelope::Pong(g2::Pong {})),
    ];
    (".{0,12}", any::<u64>(), prop::option::of(envelope))
        .prop_map(|(id, time, envelope)| g2::InboundMessage { id, time, envelope })
}

/// A `google.protobuf.Struct` for a JSON object (through the JSON mapping, as a client would send it).
fn struct_of(object: &JsonObject) -> prost_types::Struct {
    let publish =
        serde_json::json!({"publish": {"payload": {"json": Value::Object(object.clone())}}});
    let message: g2::InboundMessage = json::from_value(publish).unwrap();
    match message.envelope {
        Some(g2::inbound_message::Envelope::Publish(g2::Publish {
            payload:
                Some(shared::Payload {
                    data: Some(shared::payload::Data::Json(object)),
                    ..
                }),
            ..
        })) => object,
        other => panic!("unexpected {other:?}"),
    }
}

fn fixture_frames() -> &'static Vec<Vec<u8>> {
    static FRAMES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    FRAMES.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire/messageloop");
        let mut frames = Vec::new();
        for entry in
            std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for line in text.lines() {
                let line: Value = serde_json::from_str(line).unwrap();
                let hexes = line["payload_hex"].as_str().into_iter().chain(
                    line["grpc_messages"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|m| m["hex"].as_str()),
                );
                for hex in hexes.filter(|hex| !hex.is_empty()) {
                    frames.push(
                        (0..hex.len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                            .collect(),
                    );
                }
            }
        }
        assert!(frames.len() > 20, "fixture frames found");
        frames
    })
}
