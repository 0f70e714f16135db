//! SUBSCRIBE and UNSUBSCRIBE: each filter becomes a bus subscription (a fanout pattern, or for
//! `$share/<name>/<filter>` a membership of the bus's group `<name>` on the filter, wildcards allowed), checked
//! against the identity's ACL, answered with one reason code per filter, followed by the retained messages the
//! filter matches (none for shared subscriptions, §4.8.2).

use std::collections::HashMap;

use crate::mqtt::names::pattern_from_mqtt;
use core_bus::config::GroupPolicy;
use core_bus::{Credit, Mailbox, Pattern, SubscribeError, SubscriptionId, MAX_TOPIC_BYTES};
use mqttbytes::v5::{RetainForwardRule, Subscribe, SubscribeFilter, Unsubscribe};
use mqttbytes::QoS;

use super::outgoing::min_qos;
use super::{Flow, Session};
use crate::mqtt::bridge;
use crate::mqtt::codec::Outbound;
use crate::mqtt::reason::{self, ReasonString};

const SHARE_PREFIX: &str = "$share/";

/// One subscription of a session.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub(crate) id: SubscriptionId,
    pub(crate) qos: QoS,
    pub(crate) no_local: bool,
    /// 5.0 Retain As Published: messages keep the RETAIN flag they were published with (otherwise 0).
    pub(crate) retain_as_published: bool,
    /// The 5.0 Subscription Identifier, sent back on every message this subscription delivers.
    pub(crate) identifier: Option<usize>,
}

/// A session's subscriptions by filter, and the filter of each bus subscription id.
#[derive(Default)]
pub(crate) struct Subscriptions {
    by_filter: HashMap<String, Subscription>,
    by_id: HashMap<SubscriptionId, String>,
}

impl Subscriptions {
    pub(crate) fn len(&self) -> usize {
        self.by_filter.len()
    }

    pub(crate) fn get(&self, id: SubscriptionId) -> Option<&Subscription> {
        self.by_id.get(&id).and_then(|f| self.by_filter.get(f))
    }

    fn insert(&mut self, filter: String, subscription: Subscription) -> Option<Subscription> {
        self.by_id.insert(subscription.id, filter.clone());
        let old = self.by_filter.insert(filter, subscription);
        if let Some(old) = &old {
            self.by_id.remove(&old.id);
        }
        old
    }

    fn remove(&mut self, filter: &str) -> Option<Subscription> {
        let old = self.by_filter.remove(filter)?;
        self.by_id.remove(&old.id);
        Some(old)
    }
}

/// What a filter names on the bus.
enum Target {
    Fanout(Pattern),
    /// `$share/<name>/<filter>`: one member of the group `name` on the filter's pattern gets each message.
    Shared {
        name: String,
        pattern: Pattern,
    },
}

impl Target {
    fn pattern(&self) -> &Pattern {
        match self {
            Target::Fanout(pattern) | Target::Shared { pattern, .. } => pattern,
        }
    }
}

fn is_shared(filter: &str) -> bool {
    filter.starts_with(SHARE_PREFIX)
}

fn parse_filter(filter: &str) -> Result<Target, u8> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        return pattern_from_mqtt(filter)
            .map(Target::Fanout)
            .map_err(|_| reason::TOPIC_FILTER_INVALID);
    };
    // §4.8.2: a Share Name of at least one character without `/`, `+` or `#`, then a filter. The name is kept
    // with the group, so it is held to the bound of a topic.
    let Some((name, filter)) = rest.split_once('/') else {
        return Err(reason::TOPIC_FILTER_INVALID);
    };
    if name.is_empty() || name.len() > MAX_TOPIC_BYTES || name.contains(['+', '#']) {
        return Err(reason::TOPIC_FILTER_INVALID);
    }
    let pattern = pattern_from_mqtt(filter).map_err(|_| reason::TOPIC_FILTER_INVALID)?;
    Ok(Target::Shared {
        name: name.to_owned(),
        pattern,
    })
}

fn granted(qos: QoS) -> u8 {
    match qos {
        QoS::AtMostOnce => reason::SUCCESS,
        QoS::AtLeastOnce => reason::GRANTED_QOS_1,
        QoS::ExactlyOnce => reason::GRANTED_QOS_2,
    }
}

fn join(mailbox: &mut Mailbox, target: &Target) -> Result<SubscriptionId, u8> {
    let joined = match target {
        Target::Fanout(pattern) => mailbox.subscribe(pattern.clone()),
        Target::Shared { name, pattern } => {
            mailbox.join_shared(name, pattern, Credit::AutoAck, GroupPolicy::QUEUE)
        }
    };
    joined.map_err(|error| match error {
        SubscribeError::NotInboxOwner(_) => reason::NOT_AUTHORIZED,
        SubscribeError::InternalWildcard | SubscribeError::GroupPattern => {
            reason::TOPIC_FILTER_INVALID
        }
    })
}

impl Session {
    pub(super) fn subscribe(&mut self, subscribe: Subscribe) -> Flow {
        if subscribe.filters.is_empty() {
            return self.disconnect(reason::PROTOCOL_ERROR, "SUBSCRIBE without a filter");
        }
        let max = self.settings.max_subscriptions;
        let Some(connected) = self.connected.as_mut() else {
            return Flow::Close;
        };
        let identifier = subscribe.properties.as_ref().and_then(|p| p.id);
        if identifier == Some(0) {
            return self.disconnect(reason::PROTOCOL_ERROR, "Subscription Identifier 0");
        }
        if subscribe
            .filters
            .iter()
            .any(|f| f.nolocal && is_shared(&f.path))
        {
            // [MQTT-3.8.3-4]
            return self.disconnect(reason::PROTOCOL_ERROR, "No Local on a shared subscription");
        }
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut refusals = Vec::new();
        let mut retained = Vec::new();
        for filter in &subscribe.filters {
            let code = (|| {
                let target = parse_filter(&filter.path)?;
                if !connected.identity.may_subscribe(target.pattern()) {
                    return Err(reason::NOT_AUTHORIZED);
                }
                let replacing = connected.subscriptions.by_filter.contains_key(&filter.path);
                if !replacing && connected.subscriptions.len() >= max {
                    return Err(reason::QUOTA_EXCEEDED);
                }
                let id = join(&mut connected.mailbox, &target)?;
                let old = connected.subscriptions.insert(
                    filter.path.clone(),
                    Subscription {
                        id,
                        qos: filter.qos,
                        no_local: filter.nolocal,
                        retain_as_published: filter.preserve_retain,
                        identifier,
                    },
                );
                if let Some(old) = old {
                    connected.mailbox.unsubscribe(old.id);
                }
                if let Target::Fanout(pattern) = &target {
                    if sends_retained(filter, replacing) {
                        retained.push((pattern.clone(), filter.qos));
                    }
                }
                Ok(granted(filter.qos))
            })();
            reasons.push(code.unwrap_or_else(|refused| {
                refusals.push(refusal(refused, &filter.path, max));
                refused
            }));
        }
        self.send(Outbound::SubAck {
            pkid: subscribe.pkid,
            reasons,
            reason_string: (!refusals.is_empty())
                .then(|| ReasonString::new(refusals.join("; ")))
                .flatten(),
        });
        for (pattern, qos) in retained {
            for message in self.shared.retained.matching(&pattern) {
                let qos = min_qos(qos, bridge::published_qos(&message));
                self.send_publish(&message, qos, true, identifier.as_slice());
            }
        }
        Flow::Continue
    }

    pub(super) fn unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Flow {
        if unsubscribe.filters.is_empty() {
            return self.disconnect(reason::PROTOCOL_ERROR, "UNSUBSCRIBE without a filter");
        }
        let Some(connected) = self.connected.as_mut() else {
            return Flow::Close;
        };
        let reasons = unsubscribe
            .filters
            .iter()
            .map(|filter| match connected.subscriptions.remove(filter) {
                Some(old) => {
                    connected.mailbox.unsubscribe(old.id);
                    reason::SUCCESS
                }
                None => reason::NO_SUBSCRIPTION_EXISTED,
            })
            .collect();
        self.send(Outbound::UnsubAck {
            pkid: unsubscribe.pkid,
            reasons,
        });
        Flow::Continue
    }
}

/// Why `filter` was refused with `code`, for the SUBACK's reason string (`max`: the subscription limit).
fn refusal(code: u8, filter: &str, max: usize) -> String {
    match code {
        reason::NOT_AUTHORIZED => format!("not authorized to subscribe to {filter}"),
        reason::QUOTA_EXCEEDED => format!("{filter}: over the limit of {max} subscriptions"),
        _ => format!("topic filter invalid: {filter}"),
    }
}

/// Retain handling (§3.8.3.1): 0 sends the retained messages, 1 only for a new subscription, 2 never.
fn sends_retained(filter: &SubscribeFilter, replacing: bool) -> bool {
    match filter.retain_forward_rule {
        RetainForwardRule::OnEverySubscribe => true,
        RetainForwardRule::OnNewSubscribe => !replacing,
        RetainForwardRule::Never => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_name(filter: &str) -> Result<String, u8> {
        match parse_filter(filter)? {
            Target::Shared { name, pattern } => Ok(format!("{name} {pattern}")),
            Target::Fanout(pattern) => Ok(format!("fanout {pattern}")),
        }
    }

    #[test]
    fn share_names_and_filters() {
        assert_eq!(shared_name("$share/g/a/b"), Ok("g a.b".into()));
        assert_eq!(shared_name("$share/g/a/+/#"), Ok("g a.*.#".into()));
        assert_eq!(shared_name("a/b"), Ok("fanout a.b".into()));
        for bad in [
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/#/a",
            "$share/g/",
        ] {
            assert_eq!(shared_name(bad), Err(reason::TOPIC_FILTER_INVALID), "{bad}");
        }
        let long = format!("$share/{}/a", "n".repeat(MAX_TOPIC_BYTES + 1));
        assert_eq!(shared_name(&long), Err(reason::TOPIC_FILTER_INVALID));
        let longest = format!("$share/{}/a", "n".repeat(MAX_TOPIC_BYTES));
        assert!(shared_name(&longest).is_ok());
    }
}
