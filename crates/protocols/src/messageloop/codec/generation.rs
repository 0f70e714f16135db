//! Which MessageLoop wire generation a connection speaks, and how to tell from its first message
//! (docs/protocols/messageloop.md, "Generations"): gRPC says it with the service path; on WebSocket a protobuf
//! Connect sits at field 11 in G0 and field 3 in G1/G2, and G1/G2 differ by `Connect.version` (G2 requires major
//! version 2, G1 and G0 SDKs send `1.0.0`). A JSON Connect from G0 and G1 looks the same, so JSON may stay
//! undecided between them until a message with a generation-specific shape arrives ([`legacy_shape`]).

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde_json::Value;

/// A wire generation: G0 = upstream v0.1.1 (CloudEvents), G1 = v0.2.0, G2 = HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    G0,
    G1,
    G2,
}

impl Generation {
    /// The gRPC method path the generation's SDK calls.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Generation::G0 => "/messageloop.v1.MessagingService/MessageLoop",
            Generation::G1 => "/messageloop.client.v1.MessageLoopService/MessageLoop",
            Generation::G2 => "/messageloop.client.v2.MessageLoopService/MessageLoop",
        }
    }

    /// The generation a gRPC method path belongs to.
    pub fn from_grpc_path(path: &str) -> Option<Self> {
        [Generation::G0, Generation::G1, Generation::G2]
            .into_iter()
            .find(|generation| generation.grpc_path() == path)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Generation::G0 => "g0",
            Generation::G1 => "g1",
            Generation::G2 => "g2",
        })
    }
}

/// How envelopes are encoded on a WebSocket (gRPC is always protobuf).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// protojson in text frames.
    Json,
    /// Binary protobuf in binary frames.
    Protobuf,
}

/// Per-listener choice: detect the generation from the first message, or force one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GenerationSetting {
    #[default]
    Auto,
    Fixed(Generation),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown MessageLoop generation {0:?} (expected auto, g0, g1 or g2)")]
pub struct UnknownGeneration(pub String);

impl FromStr for GenerationSetting {
    type Err = UnknownGeneration;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(GenerationSetting::Auto),
            "g0" => Ok(GenerationSetting::Fixed(Generation::G0)),
            "g1" => Ok(GenerationSetting::Fixed(Generation::G1)),
            "g2" => Ok(GenerationSetting::Fixed(Generation::G2)),
            _ => Err(UnknownGeneration(text.to_owned())),
        }
    }
}

/// What a first message says about its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Known(Generation),
    /// A JSON message G0 and G1 clients both send in this form.
    G0OrG1,
}

/// The integer before the first `.` of a version string (`"2.0.0"` → 2).
pub fn version_major(version: &str) -> Option<u64> {
    version.split('.').next()?.trim().parse().ok()
}

/// The G2 version gate: the major version must be 2 (otherwise VERSION_UNSUPPORTED, then 3514).
pub fn check_g2_version(version: &str) -> bool {
    version_major(version) == Some(2)
}

/// G1 vs G2 for a Connect at field 3: major 0 or 1 is G1; anything else (2, unparseable, newer) is G2,
/// whose version gate then answers for it.
fn by_version(version: &str) -> Generation {
    match version_major(version) {
        Some(0 | 1) => Generation::G1,
        _ => Generation::G2,
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct EnvelopeProbe {
    /// G1/G2 `connect` (G0 `method`).
    #[prost(bytes = "bytes", optional, tag = "3")]
    field3: Option<Bytes>,
    /// G0 `connect` (G1/G2 `ping`, always empty).
    #[prost(bytes = "bytes", optional, tag = "11")]
    field11: Option<Bytes>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct VersionProbe {
    #[prost(string, tag = "4")]
    version: String,
}

/// The generation of a first binary protobuf message, decoding only what is needed: a non-empty field 11
/// is a G0 Connect; a field 3 is a G1/G2 Connect, told apart by its version. Anything else (not a Connect,
/// or not decodable) is taken as G2.
pub fn detect_protobuf(frame: &[u8]) -> Generation {
    use prost::Message as _;
    let Ok(probe) = EnvelopeProbe::decode(frame) else {
        return Generation::G2;
    };
    match (probe.field3, probe.field11) {
        (_, Some(g0_connect)) if !g0_connect.is_empty() => Generation::G0,
        (Some(connect), _) => {
            VersionProbe::decode(connect).map_or(Generation::G2, |probe| by_version(&probe.version))
        }
        _ => Generation::G2,
    }
}

/// The generation of a first JSON message: a Connect whose version is not 0.x/1.x is G2; a legacy one is
/// G0 or G1 by shape, undecided when nothing in it tells; any other first message is taken as G2 unless
/// its shape says G0 or G1.
pub fn detect_json(message: &Value) -> Detected {
    let connect = field(message, "connect", "connect");
    match connect.map(|connect| {
        field(connect, "version", "version")
            .and_then(Value::as_str)
            .unwrap_or("")
    }) {
        Some(version) if by_version(version) == Generation::G2 => Detected::Known(Generation::G2),
        Some(_) => legacy_shape(message).map_or(Detected::G0OrG1, Detected::Known),
        None => Detected::Known(legacy_shape(message).unwrap_or(Generation::G2)),
    }
}

const CLOUD_EVENT_KEYS: [&str; 12] = [
    "id",
    "source",
    "spec_version",
    "specVersion",
    "type",
    "attributes",
    "binary_data",
    "binaryData",
    "text_data",
    "textData",
    "proto_data",
    "protoData",
];
const G0_ENVELOPE_KEYS: [&str; 5] = [
    "channel",
    "method",
    "metadata",
    "survey_response",
    "surveyResponse",
];
const G1_ENVELOPE_KEYS: [&str; 5] = [
    "pong",
    "presence_query",
    "presenceQuery",
    "survey_reply",
    "surveyReply",
];
const G1_PUBLISH_KEYS: [&str; 8] = [
    "channel",
    "payload",
    "metadata",
    "token",
    "transient",
    "idempotency_key",
    "idempotencyKey",
    "method",
];
const G1_SURVEY_KEYS: [&str; 4] = ["channel", "metadata", "timeout_ms", "timeoutMs"];
const G1_SUBSCRIPTION_KEYS: [&str; 3] = ["offset", "recover", "epoch"];

/// G0 or G1, when a JSON envelope's keys say which: G0 envelopes carry `channel`/`method`/`metadata` and
/// CloudEvents (in publish, rpc_request, survey payloads); G1 has pong, presence_query, survey_reply,
/// Publish/RpcRequest bodies, resume ids and recovery fields in subscriptions.
pub fn legacy_shape(message: &Value) -> Option<Generation> {
    let object = message.as_object()?;
    if G0_ENVELOPE_KEYS.iter().any(|key| object.contains_key(*key)) {
        return Some(Generation::G0);
    }
    if G1_ENVELOPE_KEYS.iter().any(|key| object.contains_key(*key)) {
        return Some(Generation::G1);
    }
    for (snake, camel) in [("publish", "publish"), ("rpc_request", "rpcRequest")] {
        if let Some(body) = field(message, snake, camel) {
            if has_any(body, &CLOUD_EVENT_KEYS) {
                return Some(Generation::G0);
            }
            if has_any(body, &G1_PUBLISH_KEYS) {
                return Some(Generation::G1);
            }
        }
    }
    if let Some(survey) = field(message, "survey_request", "surveyRequest") {
        if has_any(survey, &G1_SURVEY_KEYS) {
            return Some(Generation::G1);
        }
        if let Some(payload) = survey.get("payload") {
            if has_any(payload, &CLOUD_EVENT_KEYS) {
                return Some(Generation::G0);
            }
            return Some(Generation::G1);
        }
    }
    if let Some(connect) = field(message, "connect", "connect") {
        if has_any(connect, &["session_id", "sessionId"]) {
            return Some(Generation::G1);
        }
    }
    let subscriptions = ["connect", "subscribe", "unsubscribe"]
        .into_iter()
        .filter_map(|key| message.get(key)?.get("subscriptions")?.as_array())
        .flatten();
    for subscription in subscriptions {
        if has_any(subscription, &G1_SUBSCRIPTION_KEYS) {
            return Some(Generation::G1);
        }
    }
    None
}

fn field<'a>(value: &'a Value, snake: &str, camel: &str) -> Option<&'a Value> {
    value
        .get(snake)
        .or_else(|| value.get(camel))
        .filter(|found| !found.is_null())
}

fn has_any(value: &Value, keys: &[&str]) -> bool {
    value
        .as_object()
        .is_some_and(|object| keys.iter().any(|key| object.contains_key(*key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_parse() {
        assert_eq!("auto".parse(), Ok(GenerationSetting::Auto));
        assert_eq!(" G1 ".parse(), Ok(GenerationSetting::Fixed(Generation::G1)));
        assert!("g3".parse::<GenerationSetting>().is_err());
    }

    #[test]
    fn grpc_paths_round_trip() {
        for generation in [Generation::G0, Generation::G1, Generation::G2] {
            assert_eq!(
                Generation::from_grpc_path(generation.grpc_path()),
                Some(generation)
            );
        }
        assert_eq!(Generation::from_grpc_path("/x.Y/Z"), None);
    }

    #[test]
    fn version_gate() {
        assert!(check_g2_version("2.0.0"));
        assert!(check_g2_version("2"));
        assert!(!check_g2_version("1.0.0"));
        assert!(!check_g2_version(""));
        assert!(!check_g2_version("v2"));
        assert_eq!(version_major("12.1"), Some(12));
    }

    #[test]
    fn protobuf_first_messages() {
        let g2 = hex("0a15313739353337343730313434343633323633392d311a0c120373646b2205322e302e30");
        let g0 = hex("0a15313739353337343731363937323134393632352d315a0c120373646b2205312e302e30");
        let g1 = hex("0a01311a0c120373646b2205312e302e30");
        assert_eq!(detect_protobuf(&g2), Generation::G2);
        assert_eq!(detect_protobuf(&g0), Generation::G0);
        assert_eq!(detect_protobuf(&g1), Generation::G1);
        // G2 ping before Connect, garbage, empty.
        assert_eq!(detect_protobuf(&hex("0a01315a00")), Generation::G2);
        assert_eq!(detect_protobuf(&hex("ffff")), Generation::G2);
        assert_eq!(detect_protobuf(&[]), Generation::G2);
    }

    #[test]
    fn json_first_messages() {
        let connect =
            |version: &str| json!({"id":"1","connect":{"client_type":"sdk","version":version}});
        assert_eq!(
            detect_json(&connect("2.0.0")),
            Detected::Known(Generation::G2)
        );
        assert_eq!(
            detect_json(&connect("3.1")),
            Detected::Known(Generation::G2)
        );
        assert_eq!(detect_json(&connect("1.0.0")), Detected::G0OrG1);
        let resume = json!({"connect":{"version":"1.0.0","sessionId":"s"}});
        assert_eq!(detect_json(&resume), Detected::Known(Generation::G1));
        let recover =
            json!({"connect":{"version":"1.0.0","subscriptions":[{"channel":"a","offset":"4"}]}});
        assert_eq!(detect_json(&recover), Detected::Known(Generation::G1));
        let g0 = json!({"connect":{"version":"1.0.0"},"metadata":{"a":"b"}});
        assert_eq!(detect_json(&g0), Detected::Known(Generation::G0));
        assert_eq!(
            detect_json(&json!({"ping":{}})),
            Detected::Known(Generation::G2)
        );
    }

    #[test]
    fn legacy_shapes() {
        let g0_publish = json!({"id":"2","channel":"demo","publish":{"id":"e","source":"/s","specVersion":"1.0"}});
        assert_eq!(legacy_shape(&g0_publish), Some(Generation::G0));
        let g0_bare = json!({"publish":{"source":"demo","binary_data":"aGk="}});
        assert_eq!(legacy_shape(&g0_bare), Some(Generation::G0));
        let g1_publish = json!({"publish":{"channel":"demo","payload":{"text":"hi"}}});
        assert_eq!(legacy_shape(&g1_publish), Some(Generation::G1));
        assert_eq!(
            legacy_shape(&json!({"rpcRequest":{"method":"m"}})),
            Some(Generation::G1)
        );
        assert_eq!(legacy_shape(&json!({"pong":{}})), Some(Generation::G1));
        let g1_survey = json!({"survey_request":{"payload":{"text":"x"}}});
        assert_eq!(legacy_shape(&g1_survey), Some(Generation::G1));
        let g0_survey = json!({"survey_request":{"payload":{"type":"x"}}});
        assert_eq!(legacy_shape(&g0_survey), Some(Generation::G0));
        assert_eq!(
            legacy_shape(&json!({"subscribe":{"subscriptions":[{"channel":"a"}]}})),
            None
        );
        assert_eq!(legacy_shape(&json!({"ping":{}})), None);
        assert_eq!(legacy_shape(&json!([1])), None);
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }
}
