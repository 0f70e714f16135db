//! PUBLISH ↔ bus envelope. Topic names map through `crate::mqtt::names::{topic_from_mqtt, topic_to_mqtt}`; MQTT 5.0
//! properties map onto envelope fields: user properties ↔ headers (in order), content type ↔ content type,
//! response topic ↔ reply-to, correlation data ↔ correlation id (UTF-8; other bytes travel in the header
//! `mqtt-correlation-data`), message expiry ↔ header `mqtt-message-expiry` (seconds; what is left is sent on),
//! payload format indicator ↔ header `mqtt-payload-format`. The publisher's QoS travels in header `mqtt-qos` so
//! that a subscriber gets at most that QoS. `mqtt-*` headers are never sent back as user properties.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::mqtt::names::{topic_from_mqtt, topic_to_mqtt};
use bytes::Bytes;
use core_bus::{Envelope, Origin, Topic};
use mqttbytes::v5::{Publish, PublishProperties};
use mqttbytes::QoS;

use super::reason;

pub const QOS_HEADER: &str = "mqtt-qos";
pub const EXPIRY_HEADER: &str = "mqtt-message-expiry";
pub const FORMAT_HEADER: &str = "mqtt-payload-format";
pub const CORRELATION_HEADER: &str = "mqtt-correlation-data";
/// Set (to `1`) on a message published with the RETAIN flag, for 5.0 Retain As Published subscriptions.
pub const RETAIN_HEADER: &str = "mqtt-retain";

/// Builds the envelope of a PUBLISH whose topic (alias resolved) is `topic`; `Err` is the reason code to
/// refuse it with.
pub fn to_envelope(publish: &Publish, topic: Topic, origin: Origin) -> Result<Envelope, u8> {
    let mut envelope = Envelope::new(topic, publish.payload.clone(), origin);
    // The constant names and values are kept by reference: a publish allocates nothing for them.
    let qos: &'static [u8] = match publish.qos {
        QoS::AtMostOnce => b"0",
        QoS::AtLeastOnce => b"1",
        QoS::ExactlyOnce => b"2",
    };
    envelope
        .headers
        .push_static(QOS_HEADER, Bytes::from_static(qos));
    if publish.retain {
        envelope
            .headers
            .push_static(RETAIN_HEADER, Bytes::from_static(b"1"));
    }
    let Some(properties) = &publish.properties else {
        return Ok(envelope);
    };
    if properties.payload_format_indicator == Some(1) {
        if std::str::from_utf8(&publish.payload).is_err() {
            return Err(reason::PAYLOAD_FORMAT_INVALID);
        }
        envelope
            .headers
            .push_static(FORMAT_HEADER, Bytes::from_static(b"1"));
    }
    if let Some(expiry) = properties.message_expiry_interval {
        envelope
            .headers
            .push_static(EXPIRY_HEADER, Bytes::from(expiry.to_string()));
        // Queues of every protocol drop it once it has expired.
        envelope.expires_at_ms = Some(
            envelope
                .timestamp_ms
                .saturating_add(u64::from(expiry).saturating_mul(1000)),
        );
    }
    envelope.content_type = properties.content_type.clone().map(Into::into);
    if let Some(response) = &properties.response_topic {
        envelope.reply_to =
            Some(topic_from_mqtt(response).map_err(|_| reason::TOPIC_NAME_INVALID)?);
    }
    if let Some(data) = &properties.correlation_data {
        match std::str::from_utf8(data) {
            Ok(text) => envelope.correlation_id = Some(text.to_owned()),
            Err(_) => envelope
                .headers
                .push_static(CORRELATION_HEADER, data.clone()),
        }
    }
    for (name, value) in &properties.user_properties {
        envelope
            .headers
            .push(name.clone(), Bytes::from(value.clone().into_bytes()));
    }
    envelope.adopt_trace_headers();
    Ok(envelope)
}

/// The QoS the publisher used: from the `mqtt-qos` header, QoS 2 for other protocols' messages (the subscription
/// alone decides).
pub fn published_qos(envelope: &Envelope) -> QoS {
    match envelope.headers.get(QOS_HEADER).map(|v| &v[..]) {
        Some(b"0") => QoS::AtMostOnce,
        Some(b"1") => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Whether the message was published with the RETAIN flag (header [`RETAIN_HEADER`]).
pub fn published_retained(envelope: &Envelope) -> bool {
    envelope
        .headers
        .get(RETAIN_HEADER)
        .is_some_and(|v| &v[..] == b"1")
}

/// The PUBLISH (without packet id) that carries `envelope` to a subscriber, or `None` when it cannot: a topic
/// MQTT cannot name, or a message whose expiry has passed. `properties` says whether to build 5.0 properties.
pub fn to_publish(envelope: &Envelope, qos: QoS, properties: bool) -> Option<Publish> {
    let topic = topic_to_mqtt(&envelope.topic)?;
    let remaining_expiry = match envelope
        .headers
        .get_str(EXPIRY_HEADER)
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(seconds) => {
            let age = now_ms().saturating_sub(envelope.timestamp_ms) / 1000;
            if age >= seconds {
                return None;
            }
            Some(u32::try_from(seconds - age).unwrap_or(u32::MAX))
        }
        // Another protocol's expiry (STOMP `expires` / `expiration`), in whole seconds left, rounded up.
        None => match envelope.expires_at_ms {
            Some(at) => {
                let left = at.checked_sub(now_ms()).filter(|&left| left > 0)?;
                Some(u32::try_from(left.div_ceil(1000)).unwrap_or(u32::MAX))
            }
            None => None,
        },
    };
    let mut publish = Publish::from_bytes(topic, qos, envelope.payload.clone());
    if properties {
        publish.properties = Some(PublishProperties {
            payload_format_indicator: envelope
                .headers
                .get(FORMAT_HEADER)
                .map(|_| 1)
                .or_else(|| utf8_content_type(envelope).then_some(1)),
            message_expiry_interval: remaining_expiry,
            topic_alias: None,
            response_topic: envelope.reply_to.as_ref().and_then(topic_to_mqtt),
            correlation_data: envelope
                .correlation_id
                .as_ref()
                .map(|id| Bytes::from(id.clone().into_bytes()))
                .or_else(|| envelope.headers.get(CORRELATION_HEADER).cloned()),
            user_properties: envelope
                .headers_with_trace()
                .filter(|(name, _)| !name.starts_with("mqtt-"))
                .filter_map(|(name, value)| {
                    Some((name.to_owned(), String::from_utf8(value.to_vec()).ok()?))
                })
                .collect(),
            subscription_identifiers: Vec::new(),
            content_type: envelope.content_type.as_deref().map(str::to_owned),
        })
        .filter(|p| *p != empty_properties());
    }
    Some(publish)
}

/// Text content types are UTF-8 for the payload format indicator only when the payload really is.
fn utf8_content_type(envelope: &Envelope) -> bool {
    envelope
        .content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with("text/"))
        && std::str::from_utf8(&envelope.payload).is_ok()
}

/// A property list with nothing in it.
pub fn empty_properties() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: None,
        message_expiry_interval: None,
        topic_alias: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Vec::new(),
        subscription_identifiers: Vec::new(),
        content_type: None,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use core_bus::{ConnectionId, Protocol};

    use super::*;

    fn origin() -> Origin {
        Origin {
            protocol: Protocol::Mqtt,
            connection: ConnectionId(7),
        }
    }

    #[test]
    fn properties_round_trip_through_the_envelope() {
        let mut publish = Publish::new("a/b", QoS::AtLeastOnce, b"hi".to_vec());
        publish.pkid = 1;
        let mut properties = empty_properties();
        properties.content_type = Some("text/plain".into());
        properties.response_topic = Some("replies/x".into());
        properties.correlation_data = Some(Bytes::from_static(b"42"));
        properties.user_properties = vec![("k".into(), "v".into()), ("k".into(), "w".into())];
        properties.message_expiry_interval = Some(60);
        publish.properties = Some(properties);
        let topic = topic_from_mqtt(&publish.topic).unwrap();
        let envelope = to_envelope(&publish, topic, origin()).unwrap();
        assert_eq!(envelope.topic.as_str(), "a.b");
        assert_eq!(envelope.reply_to.as_ref().unwrap().as_str(), "replies.x");
        assert_eq!(envelope.correlation_id.as_deref(), Some("42"));
        assert_eq!(published_qos(&envelope), QoS::AtLeastOnce);

        let out = to_publish(&envelope, QoS::AtLeastOnce, true).unwrap();
        let back = out.properties.unwrap();
        assert_eq!(out.topic, "a/b");
        assert_eq!(back.content_type.as_deref(), Some("text/plain"));
        assert_eq!(back.response_topic.as_deref(), Some("replies/x"));
        assert_eq!(back.correlation_data.as_deref(), Some(&b"42"[..]));
        assert_eq!(back.user_properties.len(), 2);
        assert!(back
            .message_expiry_interval
            .is_some_and(|s| (59..=60).contains(&s)));
    }

    #[test]
    fn refuses_a_payload_that_is_not_the_utf8_it_claims() {
        let mut publish = Publish::new("a", QoS::AtMostOnce, vec![0xff]);
        let mut properties = empty_properties();
        properties.payload_format_indicator = Some(1);
        publish.properties = Some(properties);
        let topic = topic_from_mqtt("a").unwrap();
        assert_eq!(
            to_envelope(&publish, topic, origin()),
            Err(reason::PAYLOAD_FORMAT_INVALID)
        );
    }

    #[test]
    fn expired_messages_are_not_delivered() {
        let mut envelope = Envelope::new(Topic::from_dotted(b"a"), "x", origin());
        envelope
            .headers
            .push(EXPIRY_HEADER, Bytes::from_static(b"1"));
        envelope.timestamp_ms -= 5_000;
        assert!(to_publish(&envelope, QoS::AtMostOnce, true).is_none());
    }
}
