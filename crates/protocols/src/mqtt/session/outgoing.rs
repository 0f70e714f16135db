//! gatewayd → client publishes: each delivery at the lower of its subscription's QoS and its publisher's, QoS 1
//! and 2 under a packet id until PUBACK, or PUBREC then PUBCOMP. At most the client's Receive Maximum (and
//! `mqtt.receive_maximum`) are in flight; past that the connection stops taking deliveries from its mailbox
//! ([`Session::wants_deliveries`]), so the bus's queue bound and slow-consumer policy apply.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;
use core_bus::metrics::{record_drop, DropReason};
use core_bus::{Delivery, Envelope, Protocol, SubscriptionId};
use mqttbytes::v5::Publish;
use mqttbytes::QoS;

use super::{Flow, Session};
use crate::mqtt::bridge;
use crate::mqtt::codec::{self, Ack, Outbound, Version};
use crate::mqtt::reason;

/// The lower of two QoS levels.
pub(crate) fn min_qos(a: QoS, b: QoS) -> QoS {
    if (a as u8) <= (b as u8) {
        a
    } else {
        b
    }
}

/// The higher of two QoS levels.
fn max_qos(a: QoS, b: QoS) -> QoS {
    if (a as u8) >= (b as u8) {
        a
    } else {
        b
    }
}

/// Where a publish in flight stands.
#[derive(Debug, Clone)]
enum InFlight {
    /// Sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2); resent with DUP on a resumed session.
    Sent(Box<Publish>),
    /// PUBREC received and PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// The outbound QoS 1/2 window of a session.
pub(crate) struct Outgoing {
    next_pkid: u16,
    in_flight: BTreeMap<u16, InFlight>,
    /// Publishes that arrived while the window was full (the rest of one batch).
    waiting: VecDeque<Publish>,
    max_in_flight: usize,
}

impl Outgoing {
    pub(crate) fn new(max_in_flight: usize) -> Outgoing {
        Outgoing {
            next_pkid: 1,
            in_flight: BTreeMap::new(),
            waiting: VecDeque::new(),
            max_in_flight: max_in_flight.max(1),
        }
    }

    pub(crate) fn set_max_in_flight(&mut self, max_in_flight: usize) {
        self.max_in_flight = max_in_flight.max(1);
    }

    pub(crate) fn has_room(&self) -> bool {
        self.waiting.is_empty() && self.in_flight.len() < self.max_in_flight
    }

    fn allocate(&mut self) -> Option<u16> {
        if self.in_flight.len() >= self.max_in_flight
            || self.in_flight.len() >= usize::from(u16::MAX)
        {
            return None;
        }
        loop {
            let pkid = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.in_flight.contains_key(&pkid) {
                return Some(pkid);
            }
        }
    }

    /// What to resend when a session resumes (§4.4): unacknowledged publishes with DUP, then PUBRELs.
    pub(crate) fn resend(&self) -> Vec<Outbound> {
        self.in_flight
            .iter()
            .map(|(&pkid, state)| match state {
                InFlight::Sent(publish) => {
                    let mut publish = (**publish).clone();
                    publish.dup = true;
                    Outbound::Publish(publish)
                }
                InFlight::Released => Outbound::PubRel(Ack::success(pkid)),
            })
            .collect()
    }
}

impl Session {
    /// Sends `delivery`, which also matched this client's subscriptions `overlapping`, as one PUBLISH.
    pub(super) fn outgoing_delivery(&mut self, delivery: Delivery, overlapping: &[SubscriptionId]) {
        let Some(connected) = self.connected.as_ref() else {
            return;
        };
        let origin = delivery.envelope.origin;
        let own = origin == self.origin
            || (origin.protocol == Protocol::Mqtt
                && connected.earlier_connections.contains(origin.connection));
        let published_qos = bridge::published_qos(&delivery.envelope);
        let published_retained = bridge::published_retained(&delivery.envelope);
        let mut send: Option<(QoS, bool)> = None;
        let mut identifiers = Vec::new();
        for id in std::iter::once(delivery.subscription).chain(overlapping.iter().copied()) {
            let Some(subscription) = connected.subscriptions.get(id) else {
                continue;
            };
            if subscription.no_local && own {
                continue;
            }
            let qos = min_qos(subscription.qos, published_qos);
            let retain = subscription.retain_as_published && published_retained;
            send = Some(match send {
                None => (qos, retain),
                Some((most, any)) => (max_qos(most, qos), any || retain),
            });
            identifiers.extend(subscription.identifier);
        }
        if let Some((qos, retain)) = send {
            self.send_publish(&delivery.envelope, qos, retain, &identifiers);
        }
    }

    /// Sends `envelope` at `qos` (`retain`: a retained message handed out on subscribe) for the subscriptions
    /// with 5.0 Subscription Identifiers `identifiers`.
    pub(crate) fn send_publish(
        &mut self,
        envelope: &Arc<Envelope>,
        qos: QoS,
        retain: bool,
        identifiers: &[usize],
    ) {
        let v5 = self.version == Some(Version::V5);
        let Some(mut publish) = bridge::to_publish(envelope, qos, v5) else {
            record_drop(DropReason::Unroutable, Protocol::Mqtt);
            return;
        };
        publish.retain = retain;
        if v5 && !identifiers.is_empty() {
            publish
                .properties
                .get_or_insert_with(bridge::empty_properties)
                .subscription_identifiers
                .extend_from_slice(identifiers);
        }
        let Some(connected) = self.connected.as_mut() else {
            return;
        };
        if qos == QoS::AtMostOnce {
            self.write_publish(publish);
            return;
        }
        match connected.outgoing.allocate() {
            Some(pkid) => self.write_in_flight(publish, pkid),
            None => connected.outgoing.waiting.push_back(publish),
        }
    }

    /// Writes a QoS 1/2 `publish` under packet id `pkid` and keeps it in flight until acknowledged.
    fn write_in_flight(&mut self, mut publish: Publish, pkid: u16) {
        publish.pkid = pkid;
        if self.write_publish(publish.clone()) {
            if let Some(connected) = self.connected.as_mut() {
                connected
                    .outgoing
                    .in_flight
                    .insert(pkid, InFlight::Sent(Box::new(publish)));
            }
        }
    }

    /// Writes a PUBLISH (5.0: under its topic alias) unless it is over the client's Maximum Packet Size (then it
    /// is dropped, §3.1.2.11.4).
    fn write_publish(&mut self, mut publish: Publish) -> bool {
        let limit = self.client_max_packet.unwrap_or(usize::MAX);
        let Some(connected) = self.connected.as_mut() else {
            return false;
        };
        let version = self.version.unwrap_or(Version::V311);
        let new_alias = match version {
            Version::V5 => connected.outbound_aliases.apply(&mut publish),
            Version::V311 => None,
        };
        let mut packet = BytesMut::new();
        let encoded = codec::encode(&Outbound::Publish(publish), version, &mut packet);
        if encoded.is_err() || packet.len() > limit {
            record_drop(DropReason::TooLarge, Protocol::Mqtt);
            return false;
        }
        if let Some(new_alias) = new_alias {
            connected.outbound_aliases.remember(new_alias);
        }
        self.out.extend_from_slice(&packet);
        true
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) for `pkid`: the publish is done and its slot free.
    pub(super) fn acknowledged(&mut self, pkid: u16, qos: QoS) -> Flow {
        let Some(connected) = self.connected.as_mut() else {
            return Flow::Close;
        };
        let done = match (connected.outgoing.in_flight.get(&pkid), qos) {
            (Some(InFlight::Sent(publish)), QoS::AtLeastOnce) => publish.qos == QoS::AtLeastOnce,
            (Some(InFlight::Released), QoS::ExactlyOnce) => true,
            // An acknowledgement of nothing in flight is ignored (it may be a late duplicate).
            _ => false,
        };
        if done {
            connected.outgoing.in_flight.remove(&pkid);
            self.send_waiting();
        }
        Flow::Continue
    }

    /// PUBREC for `pkid`: answer PUBREL and wait for PUBCOMP.
    pub(super) fn received(&mut self, pkid: u16) -> Flow {
        let Some(connected) = self.connected.as_mut() else {
            return Flow::Close;
        };
        let ack = match connected.outgoing.in_flight.get_mut(&pkid) {
            Some(state) => {
                *state = InFlight::Released;
                Ack::success(pkid)
            }
            None => Ack::failure(
                pkid,
                reason::PACKET_IDENTIFIER_NOT_FOUND,
                format!("no QoS 2 publish with packet identifier {pkid} in flight"),
            ),
        };
        self.send(Outbound::PubRel(ack));
        Flow::Continue
    }

    /// Sends what waited for room in the window.
    fn send_waiting(&mut self) {
        while let Some(connected) = self.connected.as_mut() {
            let Some(publish) = connected.outgoing.waiting.pop_front() else {
                return;
            };
            let Some(pkid) = connected.outgoing.allocate() else {
                connected.outgoing.waiting.push_front(publish);
                return;
            };
            self.write_in_flight(publish, pkid);
        }
    }
}
