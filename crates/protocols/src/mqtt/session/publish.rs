//! Client → gatewayd PUBLISH: topic alias resolution (5.0), the topic name, the ACL, the retained store, the
//! bus, and the acknowledgement its QoS asks for (QoS 2 exactly once: a packet id seen again before its PUBREL
//! is acknowledged without publishing twice).

use std::sync::Arc;

use crate::mqtt::names::{topic_from_mqtt, topic_to_mqtt};
use core_bus::metrics::{record_drop, DropReason};
use core_bus::{Protocol, Topic};
use mqttbytes::v5::Publish;
use mqttbytes::QoS;

use super::{Flow, Session};
use crate::mqtt::bridge;
use crate::mqtt::codec::{Ack, Outbound, Version};
use crate::mqtt::reason;
use crate::mqtt::retained::Stored;

impl Session {
    pub(super) fn publish(&mut self, publish: Publish) -> Flow {
        let topic = match self.resolve_topic(&publish) {
            Ok(topic) => topic,
            Err((code, why)) => {
                record_drop(DropReason::Malformed, Protocol::Mqtt);
                return self.disconnect(code, why);
            }
        };
        let Some(connected) = self.connected.as_mut() else {
            return Flow::Close;
        };
        if publish.qos == QoS::ExactlyOnce {
            if connected.awaiting_release.contains(&publish.pkid) {
                // A resend of a publish already taken (§4.3.3): acknowledge, do not publish again.
                self.send(Outbound::PubRec(Ack::success(publish.pkid)));
                return Flow::Continue;
            }
            if connected.awaiting_release.len() >= usize::from(self.settings.receive_maximum) {
                return self.disconnect(
                    reason::RECEIVE_MAXIMUM_EXCEEDED,
                    "more QoS 2 publishes in flight than Receive Maximum",
                );
            }
        }
        let ack = if connected.identity.may_publish(&topic) {
            match bridge::to_envelope(&publish, topic, self.origin) {
                Ok(envelope) => {
                    if publish.retain {
                        let stored = self.shared.retained.store(Arc::new(envelope.clone()));
                        if stored == Stored::Full {
                            tracing::debug!("mqtt: retained store full, message not kept");
                        }
                    }
                    let outcome = self.shared.bus.publish(envelope);
                    self.backpressure = outcome.backpressure;
                    Ack::success(publish.pkid)
                }
                // The only envelope a PUBLISH cannot make (`bridge::to_envelope`).
                Err(code) => Ack::failure(
                    publish.pkid,
                    code,
                    "payload format indicator 1 but the payload is not UTF-8",
                ),
            }
        } else {
            record_drop(DropReason::AclDenied, Protocol::Mqtt);
            // 3.1.1 has no refusal code for a publish: it is acknowledged and dropped.
            if self.version == Some(Version::V5) {
                Ack::failure(
                    publish.pkid,
                    reason::NOT_AUTHORIZED,
                    format!(
                        "not authorized to publish to {}",
                        // The name the client used, also when it sent only an alias.
                        topic_to_mqtt(&topic).unwrap_or_else(|| topic.to_string())
                    ),
                )
            } else {
                Ack::success(publish.pkid)
            }
        };
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(Outbound::PubAck(ack)),
            QoS::ExactlyOnce => {
                if ack.reason < 0x80 {
                    if let Some(connected) = self.connected.as_mut() {
                        connected.awaiting_release.insert(publish.pkid);
                    }
                }
                self.send(Outbound::PubRec(ack));
            }
        }
        Flow::Continue
    }

    /// The topic of a PUBLISH: its name, or in 5.0 the topic its alias stands for (an alias with a name sets it).
    fn resolve_topic(&mut self, publish: &Publish) -> Result<Topic, (u8, &'static str)> {
        let max_alias = self.settings.topic_alias_maximum;
        let Some(connected) = self.connected.as_mut() else {
            return Err((reason::PROTOCOL_ERROR, "not connected"));
        };
        let alias = publish.properties.as_ref().and_then(|p| p.topic_alias);
        if let Some(alias) = alias {
            if alias == 0 || alias > max_alias {
                return Err((reason::TOPIC_ALIAS_INVALID, "topic alias out of range"));
            }
        }
        if publish.topic.is_empty() {
            return match alias.and_then(|a| connected.aliases.get(&a)) {
                Some(topic) => Ok(topic.clone()),
                None => Err((reason::PROTOCOL_ERROR, "unknown topic alias")),
            };
        }
        let topic = topic_from_mqtt(&publish.topic)
            .map_err(|_| (reason::TOPIC_NAME_INVALID, "invalid topic name"))?;
        if let Some(alias) = alias {
            connected.aliases.insert(alias, topic.clone());
        }
        Ok(topic)
    }
}
