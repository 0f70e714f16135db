//! Acknowledgement bookkeeping for one connection (docs/protocols/stomp.md, "Subscribing and acknowledging").
//!
//! Every MESSAGE gets an id from the connection's [`AckTable`]; the session writes it as
//! `message-id` and, on 1.2 `client`/`client-individual` subscriptions, as `ack` too. Ids are
//! unique per connection, so an ACK/NACK is resolved from the id alone, whatever the version:
//! by `id` (1.2), else by `message-id` (1.0/1.1; stompit sends both), and `subscription` is never
//! needed. The table maps each unsettled id back to its subscription and to a delivery tag `T`
//! chosen by the session (the bus delivery to settle).
//!
//! * `auto`: nothing is tracked; an ACK/NACK of such an id is ignored.
//! * `client`: cumulative. Settling X settles every earlier unsettled delivery of X's
//!   subscription too, in delivery order.
//! * `client-individual`: settling X settles X only.
//! * An id already settled is ignored; an id never issued is [`StompError::UnknownMessage`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::codec::frame::{header, Command, Frame, Version};
use super::error::StompError;

/// The `ack` header of SUBSCRIBE. All three are accepted in every version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    #[default]
    Auto,
    Client,
    ClientIndividual,
}

/// How an ACK/NACK settles deliveries of a subscription that needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAck {
    /// `client`: the named delivery and every earlier one.
    Cumulative,
    /// `client-individual`: the named delivery only.
    Individual,
}

impl AckMode {
    /// Parse SUBSCRIBE's `ack` header; absent = `auto`.
    pub fn from_header(value: Option<&str>) -> Result<AckMode, StompError> {
        match value {
            None | Some("auto") => Ok(AckMode::Auto),
            Some("client") => Ok(AckMode::Client),
            Some("client-individual") => Ok(AckMode::ClientIndividual),
            Some(_) => Err(StompError::InvalidHeader {
                command: Command::Subscribe,
                header: header::ACK,
                reason: "must be auto, client or client-individual",
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }

    /// `None` for `auto`: its deliveries are settled once written.
    pub fn client_ack(self) -> Option<ClientAck> {
        match self {
            AckMode::Auto => None,
            AckMode::Client => Some(ClientAck::Cumulative),
            AckMode::ClientIndividual => Some(ClientAck::Individual),
        }
    }
}

/// The id an ACK or NACK frame names: `id`, else `message-id`.
pub fn ack_id(frame: &Frame, version: Version) -> Result<&str, StompError> {
    if let Some(id) = frame.header_str(header::ID)? {
        return Ok(id);
    }
    if let Some(id) = frame.header_str(header::MESSAGE_ID)? {
        return Ok(id);
    }
    Err(StompError::MissingHeader {
        command: frame.command,
        header: match version {
            Version::V1_2 => header::ID,
            Version::V1_0 | Version::V1_1 => header::MESSAGE_ID,
        },
    })
}

/// Deliveries settled by one ACK or NACK, all of one subscription, in delivery order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled<T> {
    pub subscription: Arc<str>,
    pub tags: Vec<T>,
}

/// The unsettled deliveries of one connection.
#[derive(Debug)]
pub struct AckTable<T> {
    prefix: String,
    next: u64,
    subscriptions: HashMap<Arc<str>, Unsettled<T>>,
    owners: HashMap<u64, Arc<str>>,
}

#[derive(Debug)]
struct Unsettled<T> {
    mode: ClientAck,
    deliveries: BTreeMap<u64, T>,
}

impl<T> AckTable<T> {
    /// Ids are `prefix` followed by a counter; a per-connection prefix (such as the session
    /// id) keeps message ids distinct across connections.
    pub fn new(prefix: impl Into<String>) -> Self {
        AckTable {
            prefix: prefix.into(),
            next: 0,
            subscriptions: HashMap::new(),
            owners: HashMap::new(),
        }
    }

    /// What every id starts with; the id of sequence number `n` is the prefix followed by `n`
    /// in decimal.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn issue(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        seq
    }

    /// The sequence number of a delivery on an `auto` subscription: nothing to settle later.
    pub fn auto_seq(&mut self) -> u64 {
        self.issue()
    }

    /// Record a delivery the client must ACK or NACK and return its sequence number. `mode` is
    /// the subscription's, the same for all its deliveries.
    pub fn track(&mut self, subscription: &str, mode: ClientAck, tag: T) -> u64 {
        let seq = self.issue();
        let key = match self.subscriptions.get_key_value(subscription) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(subscription),
        };
        let unsettled = self
            .subscriptions
            .entry(Arc::clone(&key))
            .or_insert_with(|| Unsettled {
                mode,
                deliveries: BTreeMap::new(),
            });
        unsettled.mode = mode;
        unsettled.deliveries.insert(seq, tag);
        self.owners.insert(seq, key);
        seq
    }

    /// Whether `id` names a delivery of this connection, without settling anything (for an
    /// ACK/NACK held in a transaction until COMMIT).
    pub fn check(&self, id: &str) -> Result<(), StompError> {
        self.sequence(id).map(|_| ())
    }

    /// Settle what an ACK or NACK of `id` covers. `Ok(None)`: nothing left to settle (already
    /// settled, or an `auto` delivery).
    pub fn settle(&mut self, id: &str) -> Result<Option<Settled<T>>, StompError> {
        let seq = self.sequence(id)?;
        let Some(subscription) = self.owners.get(&seq).cloned() else {
            return Ok(None);
        };
        let Some(unsettled) = self.subscriptions.get_mut(&subscription) else {
            return Ok(None);
        };
        let settled: Vec<(u64, T)> = match unsettled.mode {
            ClientAck::Individual => unsettled
                .deliveries
                .remove_entry(&seq)
                .into_iter()
                .collect(),
            ClientAck::Cumulative => {
                let later = unsettled.deliveries.split_off(&(seq + 1));
                std::mem::replace(&mut unsettled.deliveries, later)
                    .into_iter()
                    .collect()
            }
        };
        if unsettled.deliveries.is_empty() {
            self.subscriptions.remove(&subscription);
        }
        let mut tags = Vec::with_capacity(settled.len());
        for (seq, tag) in settled {
            self.owners.remove(&seq);
            tags.push(tag);
        }
        Ok(Some(Settled { subscription, tags }))
    }

    /// Forget a subscription (UNSUBSCRIBE) and return its unsettled deliveries in delivery
    /// order, for requeueing.
    pub fn remove_subscription(&mut self, subscription: &str) -> Vec<T> {
        let Some(unsettled) = self.subscriptions.remove(subscription) else {
            return Vec::new();
        };
        unsettled
            .deliveries
            .into_iter()
            .map(|(seq, tag)| {
                self.owners.remove(&seq);
                tag
            })
            .collect()
    }

    /// Every unsettled delivery of the connection in delivery order (connection closed).
    pub fn drain(&mut self) -> Vec<T> {
        self.owners.clear();
        let mut all: Vec<(u64, T)> = self
            .subscriptions
            .drain()
            .flat_map(|(_, u)| u.deliveries)
            .collect();
        all.sort_unstable_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, tag)| tag).collect()
    }

    /// Unsettled deliveries of one subscription (its used prefetch credit).
    pub fn unsettled(&self, subscription: &str) -> usize {
        self.subscriptions
            .get(subscription)
            .map_or(0, |u| u.deliveries.len())
    }

    /// Unsettled deliveries of the connection.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// The counter value inside an id this table issued.
    fn sequence(&self, id: &str) -> Result<u64, StompError> {
        id.strip_prefix(self.prefix.as_str())
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&seq| seq < self.next)
            .ok_or_else(|| StompError::UnknownMessage { id: id.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags<T: Clone>(s: Option<Settled<T>>) -> Vec<T> {
        s.map(|s| s.tags).unwrap_or_default()
    }

    /// Tracks a delivery and returns its id as the client sees it.
    fn track<T>(t: &mut AckTable<T>, subscription: &str, mode: ClientAck, tag: T) -> String {
        let seq = t.track(subscription, mode, tag);
        format!("{}{seq}", t.prefix())
    }

    #[test]
    fn ack_mode_header() {
        assert_eq!(AckMode::from_header(None), Ok(AckMode::Auto));
        for mode in [AckMode::Auto, AckMode::Client, AckMode::ClientIndividual] {
            assert_eq!(AckMode::from_header(Some(mode.as_str())), Ok(mode));
        }
        assert!(matches!(
            AckMode::from_header(Some("Client")),
            Err(StompError::InvalidHeader { header: "ack", .. })
        ));
        assert_eq!(AckMode::Auto.client_ack(), None);
        assert_eq!(AckMode::Client.client_ack(), Some(ClientAck::Cumulative));
        assert_eq!(
            AckMode::ClientIndividual.client_ack(),
            Some(ClientAck::Individual)
        );
    }

    #[test]
    fn ack_id_per_version() {
        let v10 = Frame::new(Command::Ack).with_header("message-id", "m1");
        assert_eq!(ack_id(&v10, Version::V1_0), Ok("m1"));
        let v11 = v10.clone().with_header("subscription", "s");
        assert_eq!(ack_id(&v11, Version::V1_1), Ok("m1"));
        let v12 = Frame::new(Command::Nack).with_header("id", "a1");
        assert_eq!(ack_id(&v12, Version::V1_2), Ok("a1"));
        // stompit: all three headers, `id` wins.
        let stompit = Frame::new(Command::Ack)
            .with_header("subscription", "s")
            .with_header("message-id", "m1")
            .with_header("id", "a1");
        assert_eq!(ack_id(&stompit, Version::V1_1), Ok("a1"));
        // Missing: the version's own header is named.
        let empty = Frame::new(Command::Ack);
        assert_eq!(
            ack_id(&empty, Version::V1_2),
            Err(StompError::MissingHeader {
                command: Command::Ack,
                header: "id"
            })
        );
        assert_eq!(
            ack_id(&empty, Version::V1_0),
            Err(StompError::MissingHeader {
                command: Command::Ack,
                header: "message-id"
            })
        );
    }

    #[test]
    fn client_mode_is_cumulative_per_subscription() {
        let mut t = AckTable::new("c1-");
        let a1 = track(&mut t, "a", ClientAck::Cumulative, 1);
        let b1 = track(&mut t, "b", ClientAck::Cumulative, 10);
        let a2 = track(&mut t, "a", ClientAck::Cumulative, 2);
        let a3 = track(&mut t, "a", ClientAck::Cumulative, 3);
        assert_eq!(t.len(), 4);
        let s = t.settle(&a2).unwrap().unwrap();
        assert_eq!(&*s.subscription, "a");
        assert_eq!(s.tags, [1, 2]);
        // b's delivery is untouched; a1 is already settled and ignored.
        assert_eq!(t.unsettled("b"), 1);
        assert_eq!(t.settle(&a1), Ok(None));
        assert_eq!(tags(t.settle(&a3).unwrap()), [3]);
        assert_eq!(tags(t.settle(&b1).unwrap()), [10]);
        assert!(t.is_empty());
    }

    #[test]
    fn client_individual_settles_one() {
        let mut t = AckTable::new("x");
        let ids: Vec<_> = (0..3)
            .map(|i| track(&mut t, "s", ClientAck::Individual, i))
            .collect();
        assert_eq!(tags(t.settle(&ids[1]).unwrap()), [1]);
        assert_eq!(t.unsettled("s"), 2);
        assert_eq!(t.settle(&ids[1]), Ok(None));
        assert_eq!(tags(t.settle(&ids[2]).unwrap()), [2]);
        assert_eq!(tags(t.settle(&ids[0]).unwrap()), [0]);
    }

    #[test]
    fn unknown_and_auto_ids() {
        let mut t: AckTable<u8> = AckTable::new("p-");
        let seq = t.auto_seq();
        let auto = format!("{}{seq}", t.prefix());
        assert_eq!(auto, "p-0");
        assert_eq!(t.settle(&auto), Ok(None));
        assert_eq!(t.check(&auto), Ok(()));
        for bad in [
            "p-1",
            "p-",
            "q-0",
            "p-+0",
            "p-0x",
            "",
            "p-99999999999999999999999",
        ] {
            assert_eq!(
                t.settle(bad),
                Err(StompError::UnknownMessage { id: bad.into() }),
                "{bad}"
            );
            assert!(t.check(bad).is_err());
        }
    }

    #[test]
    fn ids_are_unique_across_subscriptions() {
        let mut t = AckTable::new("");
        let a = track(&mut t, "a", ClientAck::Individual, ());
        let auto = t.auto_seq().to_string();
        let b = track(&mut t, "b", ClientAck::Individual, ());
        assert_eq!([a.as_str(), auto.as_str(), b.as_str()], ["0", "1", "2"]);
    }

    #[test]
    fn removing_a_subscription_returns_its_unsettled_deliveries() {
        let mut t = AckTable::new("");
        let a1 = track(&mut t, "a", ClientAck::Cumulative, 1);
        track(&mut t, "b", ClientAck::Cumulative, 2);
        track(&mut t, "a", ClientAck::Cumulative, 3);
        assert_eq!(t.remove_subscription("a"), [1, 3]);
        assert_eq!(t.remove_subscription("a"), Vec::<i32>::new());
        // Its ids are now "already settled": ignored, not unknown.
        assert_eq!(t.settle(&a1), Ok(None));
        assert_eq!(t.len(), 1);
        // A new subscription may reuse the name.
        track(&mut t, "a", ClientAck::Individual, 4);
        assert_eq!(t.drain(), [2, 4]);
        assert!(t.is_empty());
        assert_eq!(t.unsettled("a"), 0);
    }
}
