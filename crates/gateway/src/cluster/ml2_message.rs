//! The `data` JSON of upstream MessageLoop's Redis layout (docs/cluster.md, "Sharing a Redis with MessageLoop
//! nodes") and bus envelopes, both ways: `t` `"pub"`, `ch`, `p` (standard base64), `kind` (0 binary, 1 text, 2
//! JSON; left out when 0, as Go's `omitempty` does), `ct`, `id`, `md` (string metadata), `ts` (unix ms), `epoch`,
//! and on the Pub/Sub copy of a stored message `off` and `seq`. gatewayd writes its node id and message id (16 + 32
//! hex digits) as `id`, which tells its nodes their own messages and repeats apart; headers become `md` when their
//! value is UTF-8. Occupancy (`t` `"occupancy"`) is not a message. gatewayd adds one key of its own, `gw`: the rest
//! of its envelope (`docs/envelope.md`, without the payload, base64), so that its other nodes get reply-to,
//! correlation id, key, expiry, binary headers and origin back; upstream nodes ignore unknown keys.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use base64::Engine as _;
use bytes::Bytes;
use core_bus::{now_ms, ConnectionId, Envelope, MessageId, Origin, Protocol, Topic};
use protocols::messageloop::bridge::payload_from;
use protocols::messageloop::message::PayloadData;
use serde::{Deserialize, Serialize};

const PUBLICATION: &str = "pub";
const BINARY: u8 = 0;
const TEXT: u8 = 1;
const JSON: u8 = 2;

fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Data {
    #[serde(default)]
    t: String,
    #[serde(default)]
    ch: String,
    #[serde(default)]
    p: Option<String>,
    /// Entries older than `kind` said text this way.
    #[serde(default, rename = "isText", skip_serializing_if = "is_zero")]
    is_text: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    kind: u8,
    #[serde(default, skip_serializing_if = "is_zero")]
    ct: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    md: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    ts: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) off: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    seq: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    epoch: String,
    /// gatewayd's envelope without its payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gw: Option<String>,
}

impl Data {
    /// What an upstream node stores for `envelope` on `channel` (no `off`/`seq`: those go on the Pub/Sub copy).
    pub(super) fn from_envelope(
        envelope: &Envelope,
        channel: &str,
        epoch: &str,
        node: u64,
    ) -> Data {
        let payload = payload_from(envelope.content_type.as_deref(), &envelope.payload);
        let kind = match payload.data {
            Some(PayloadData::Json(_)) => JSON,
            Some(PayloadData::Text(_)) => TEXT,
            Some(PayloadData::Binary(_)) | None => BINARY,
        };
        let md = envelope
            .headers_with_trace()
            .filter_map(|(name, value)| {
                Some((name.to_owned(), String::from_utf8(value.to_vec()).ok()?))
            })
            .collect();
        let mut rest = envelope.clone();
        rest.payload = Bytes::new();
        rest.position = None;
        let gw =
            base64::engine::general_purpose::STANDARD.encode(core_bus::encoding::encode(&rest));
        Data {
            t: PUBLICATION.to_owned(),
            ch: channel.to_owned(),
            p: Some(base64::engine::general_purpose::STANDARD.encode(&envelope.payload)),
            is_text: false,
            kind,
            ct: envelope
                .content_type
                .as_deref()
                .unwrap_or_default()
                .to_owned(),
            id: format!("{node:016x}{}", envelope.id),
            md,
            ts: i64::try_from(envelope.timestamp_ms).unwrap_or(i64::MAX),
            off: 0,
            seq: 0,
            epoch: epoch.to_owned(),
            gw: Some(gw),
        }
    }

    pub(super) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A publication (`t` = `"pub"`); `None` for occupancy and anything else.
    pub(super) fn parse(json: &[u8]) -> Option<Data> {
        serde_json::from_slice::<Data>(json)
            .ok()
            .filter(|d| d.t == PUBLICATION)
    }

    /// The publishing node and message id in `id`, if a gatewayd node wrote it.
    pub(super) fn gatewayd_id(&self) -> Option<(u64, MessageId)> {
        if self.id.len() != 48 {
            return None;
        }
        let node = u64::from_str_radix(self.id.get(..16)?, 16).ok()?;
        let id = u128::from_str_radix(self.id.get(16..)?, 16).ok()?;
        Some((node, MessageId(id)))
    }

    /// gatewayd's envelope from `gw` (payload empty), when a gatewayd node wrote it.
    fn gatewayd_envelope(&self) -> Option<Envelope> {
        let gw = base64::engine::general_purpose::STANDARD
            .decode(self.gw.as_deref()?)
            .ok()?;
        core_bus::encoding::decode(Bytes::from(gw)).ok()
    }

    /// The envelope for `topic`: content type `ct`, else the variant's default (`application/json`,
    /// `text/plain`, none for binary), as a MessageLoop publish on gatewayd gets. Messages from upstream nodes get
    /// an id derived from `raw` (the JSON as received), so repeats of one message are recognised.
    pub(super) fn into_envelope(self, topic: Topic, raw: &[u8]) -> Option<Envelope> {
        let payload = match &self.p {
            Some(p) => base64::engine::general_purpose::STANDARD.decode(p).ok()?,
            None => Vec::new(),
        };
        if let Some(mut envelope) = self.gatewayd_envelope() {
            envelope.topic = topic;
            envelope.payload = Bytes::from(payload);
            return Some(envelope);
        }
        let kind = if self.kind == BINARY && self.is_text {
            TEXT
        } else {
            self.kind
        };
        let id = self
            .gatewayd_id()
            .map_or_else(|| derived_id(raw), |(_, id)| id);
        let origin = Origin {
            protocol: Protocol::MessageLoop,
            connection: ConnectionId(0),
        };
        let mut envelope = Envelope::new(topic, Bytes::from(payload), origin);
        envelope.id = id;
        envelope.content_type = match (self.ct.is_empty(), kind) {
            (false, _) => Some(self.ct.into()),
            (true, JSON) => Some("application/json".into()),
            (true, TEXT) => Some("text/plain".into()),
            (true, _) => None,
        };
        for (name, value) in self.md {
            envelope.headers.push(name, value);
        }
        envelope.adopt_trace_headers();
        envelope.timestamp_ms = u64::try_from(self.ts)
            .ok()
            .filter(|&ts| ts > 0)
            .unwrap_or_else(now_ms);
        Some(envelope)
    }
}

/// A message id for what an upstream node wrote: two fixed-key hashes of its JSON.
fn derived_id(raw: &[u8]) -> MessageId {
    let half = |salt: u8| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut hasher);
        raw.hash(&mut hasher);
        hasher.finish()
    };
    MessageId(u128::from(half(1)) << 64 | u128::from(half(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(content_type: Option<&str>, payload: &'static [u8]) -> Envelope {
        let origin = Origin {
            protocol: Protocol::Stomp,
            connection: ConnectionId(1),
        };
        let mut envelope = Envelope::new(Topic::from_dotted(b"chat.room"), payload, origin);
        envelope.content_type = content_type.map(|ct| ct.to_owned().into());
        envelope.headers.push("x-user", "ann");
        envelope.headers.push("raw", Bytes::from_static(b"\xff"));
        envelope
    }

    fn json(data: &Data) -> serde_json::Value {
        serde_json::from_slice(&data.to_json()).expect("json")
    }

    #[test]
    fn envelopes_are_written_as_upstream_writes_publications() {
        let text = Data::from_envelope(&envelope(Some("text/plain"), b"hi"), "chat.room", "e-1", 7);
        let value = json(&text);
        assert_eq!(value["t"], "pub");
        assert_eq!(value["ch"], "chat.room");
        assert_eq!(value["p"], "aGk=");
        assert_eq!(value["kind"], 1);
        assert_eq!(value["ct"], "text/plain");
        assert_eq!(value["md"], serde_json::json!({"x-user": "ann"}));
        assert_eq!(value["epoch"], "e-1");
        assert!(value.get("off").is_none() && value.get("seq").is_none());
        let object = Data::from_envelope(
            &envelope(Some("application/json"), b"{\"a\":1}"),
            "c",
            "e",
            7,
        );
        assert_eq!(json(&object)["kind"], 2);
        let binary = Data::from_envelope(&envelope(None, b"\x00"), "c", "e", 7);
        assert!(json(&binary).get("kind").is_none());
        assert!(json(&binary).get("ct").is_none());
    }

    #[test]
    fn upstream_publications_become_envelopes() {
        let raw = br#"{"t":"pub","ch":"chat.room","p":"eyJhIjoxfQ==","kind":2,"id":"x","md":{"k":"v"},"ts":5,"off":9,"seq":1,"epoch":"e"}"#;
        let data = Data::parse(raw).expect("publication");
        assert_eq!((data.off, data.seq), (9, 1));
        assert_eq!(data.gatewayd_id(), None);
        let envelope = data
            .into_envelope(Topic::from_dotted(b"chat.room"), raw)
            .expect("envelope");
        assert_eq!(envelope.payload.as_ref(), br#"{"a":1}"#);
        assert_eq!(envelope.content_type.as_deref(), Some("application/json"));
        assert_eq!(envelope.headers.get_str("k"), Some("v"));
        assert_eq!(envelope.timestamp_ms, 5);
        assert_eq!(envelope.id, derived_id(raw));
        let legacy =
            Data::parse(br#"{"t":"pub","ch":"c","p":"aGk=","isText":true}"#).expect("legacy");
        let legacy = legacy
            .into_envelope(Topic::from_dotted(b"c"), b"")
            .expect("envelope");
        assert_eq!(legacy.content_type.as_deref(), Some("text/plain"));
        assert!(Data::parse(br#"{"t":"occupancy","ch":"c","gen":1,"evt":{}}"#).is_none());
        assert!(Data::parse(b"not json").is_none());
    }

    #[test]
    fn gatewayd_ids_survive_the_trip() {
        let sent = envelope(None, b"x");
        let data = Data::from_envelope(&sent, "chat.room", "e", 7);
        let back = Data::parse(&data.to_json()).expect("parse");
        assert_eq!(back.gatewayd_id(), Some((7, sent.id)));
        let got = back
            .into_envelope(sent.topic.clone(), b"")
            .expect("envelope");
        assert_eq!(got, sent, "gatewayd's nodes get the whole envelope back");
        // Without `gw` (an upstream node's view): what the JSON keys hold.
        let mut upstream = Data::parse(&data.to_json()).expect("parse");
        upstream.gw = None;
        let got = upstream
            .into_envelope(sent.topic.clone(), b"")
            .expect("envelope");
        assert_eq!(got.id, sent.id);
        assert_eq!(got.headers.get_str("x-user"), Some("ann"));
        assert_eq!(got.headers.get("raw"), None);
    }
}
