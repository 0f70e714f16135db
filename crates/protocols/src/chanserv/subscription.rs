//! One live chanserv subscribe request mapped onto the bus (docs/protocols/chanserv.md, "What comes back"): the
//! selectors turned into canonical patterns ([`bridge::selector_pattern`]), the request's [`Mailbox`], and one
//! [`Source`] per concrete topic that delivers, each with the frames waiting for its frame channel's credit.

use std::collections::HashMap;

use bytes::Bytes;
use core_bus::history::{Recovery, Since};
use core_bus::{Delivery, Envelope, Mailbox, Pattern, Position, SubscriptionId, Topic};

use super::astranet::StreamId;
use super::bridge::{self, selector_pattern};
use super::channel::Outbox;
use super::codec::frame::{Compression, FrameError};
use super::codec::selector::{Selector, StartFrom};

/// A source's frame channel stops taking deliveries from the mailbox once this many encoded bytes wait for its
/// credit (one stream window): further deliveries stay in the bus mailbox, under its queue bound and policy.
pub const HIGH_WATER: usize = 65_536;

/// The header of the extra source announced when a request reaches its source cap.
pub fn cap_header(max_sources: usize) -> Bytes {
    Bytes::from(format!(
        "error=too_many_sources\nmax_sources={max_sources}\n"
    ))
}

/// The header of the source a request of wildcard selectors only gets at once: the Go client's `LookupAndPost`
/// returns only after the first master frame, so without it the caller would block until the first message.
pub fn subscribed_header() -> Bytes {
    Bytes::from_static(b"status=subscribed\n")
}

/// One selector as subscribed.
#[derive(Debug)]
struct Subscribed {
    id: SubscriptionId,
    pattern: Pattern,
}

/// Where a source's frame channel stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Announced on `port`; waiting for the client's DIAL.
    Announced { port: u32 },
    /// Dialed: frames go out on this stream.
    Open(StreamId),
    /// Never dialed, closed by the client or aborted: the topic is not announced again and its deliveries are
    /// dropped.
    Gone,
}

/// One announced topic.
#[derive(Debug)]
pub struct Source {
    pub state: SourceState,
    pub outbox: Outbox,
}

impl Source {
    fn holds_back(&self) -> bool {
        self.state != SourceState::Gone && self.outbox.len() >= HIGH_WATER
    }
}

/// What happened to one delivery.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed {
    /// Queued on this topic's source.
    Queued(Topic),
    /// The topic has no source yet: announce one (or report the cap), then call [`Subscription::deliver`] again;
    /// a second `NewTopic` means no source could be announced.
    NewTopic(Topic),
    /// A second selector matched a topic an earlier one already carries.
    Duplicate,
    /// The topic's source is gone or was never announced because of the cap.
    Dropped,
    /// The message cannot be a chanserv frame (over 100 MiB).
    TooLarge(FrameError),
}

/// A live subscribe request. Dropping it ends every bus subscription.
pub struct Subscription {
    /// The master stream the request came on; announcements go there.
    pub master: StreamId,
    mailbox: Mailbox,
    selectors: Vec<Subscribed>,
    sources: HashMap<Topic, Source>,
    /// Recovered history of exact selectors, to put first on their sources.
    recovered: Vec<(Topic, Recovery)>,
    max_sources: usize,
    capped: bool,
    compression: Compression,
}

/// Why a selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("invalid selector {0:?}: {1}")]
    Invalid(String, core_bus::TopicError),
    #[error("not allowed to subscribe to {0:?}")]
    Denied(String),
    #[error("cannot subscribe to {0:?}: {1}")]
    Refused(String, core_bus::SubscribeError),
}

impl Subscription {
    /// Subscribes `mailbox` to every selector. `may_subscribe` is the identity's ACL. An exact selector with
    /// `from=<offset>` recovers the topic's history when the bus keeps one for it (`history_top` gives the
    /// topic's current position); every other selector starts live.
    pub fn new(
        master: StreamId,
        mut mailbox: Mailbox,
        selectors: &[Selector],
        may_subscribe: impl Fn(&Pattern) -> bool,
        history_top: impl Fn(&Topic) -> Option<Position>,
        max_sources: usize,
        compression: Compression,
    ) -> Result<Subscription, SelectorError> {
        let mut subscribed = Vec::with_capacity(selectors.len());
        let mut recovered = Vec::new();
        for selector in selectors {
            let name = &selector.pattern;
            let pattern =
                selector_pattern(name).map_err(|e| SelectorError::Invalid(name.clone(), e))?;
            if !may_subscribe(&pattern) {
                return Err(SelectorError::Denied(name.clone()));
            }
            let refused = |e| SelectorError::Refused(name.clone(), e);
            let id = match (pattern.as_topic(), selector.from) {
                (Some(topic), Some(StartFrom::Offset(offset))) => {
                    let since = match (history_top(&topic), offset.checked_sub(1)) {
                        (Some(top), Some(after)) if after > 0 => Since::After(Position {
                            epoch: top.epoch,
                            offset: after,
                        }),
                        _ => Since::Beginning,
                    };
                    let (id, recovery) = mailbox
                        .subscribe_with_history(&topic, since)
                        .map_err(refused)?;
                    if let Some(recovery) = recovery {
                        recovered.push((topic, recovery));
                    }
                    id
                }
                _ => mailbox.subscribe(pattern.clone()).map_err(refused)?,
            };
            subscribed.push(Subscribed { id, pattern });
        }
        Ok(Subscription {
            master,
            mailbox,
            selectors: subscribed,
            sources: HashMap::new(),
            recovered,
            max_sources,
            capped: false,
            compression,
        })
    }

    pub fn mailbox(&mut self) -> &mut Mailbox {
        &mut self.mailbox
    }

    /// How many bus subscriptions the request holds.
    pub fn subscription_count(&self) -> usize {
        self.selectors.len()
    }

    /// Topics to announce right away: every exact selector, in request order, without repeats.
    pub fn exact_topics(&self) -> Vec<Topic> {
        let mut topics: Vec<Topic> = Vec::new();
        for topic in self.selectors.iter().filter_map(|s| s.pattern.as_topic()) {
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        topics
    }

    /// Whether one more source may be announced; once not, the first refusal returns true from
    /// [`Subscription::cap_reached`] so the cap is reported once.
    pub fn may_announce(&self) -> bool {
        self.sources.len() < self.max_sources
    }

    /// Marks the cap as reported; true the first time.
    pub fn cap_reached(&mut self) -> bool {
        !std::mem::replace(&mut self.capped, true)
    }

    pub fn max_sources(&self) -> usize {
        self.max_sources
    }

    /// Whether the topic's source exists (announced, open or gone).
    pub fn has_source(&self, topic: &Topic) -> bool {
        self.sources.contains_key(topic)
    }

    /// Records an announced source and queues any recovered history for it first. Returns whether the recovery
    /// was complete (true when there was none).
    pub fn add_source(&mut self, topic: Topic, port: u32) -> bool {
        let mut source = Source {
            state: SourceState::Announced { port },
            outbox: Outbox::new(),
        };
        let mut complete = true;
        if let Some(index) = self.recovered.iter().position(|(t, _)| *t == topic) {
            let (_, recovery) = self.recovered.swap_remove(index);
            complete = recovery.complete;
            for envelope in &recovery.messages {
                push_item(&mut source.outbox, envelope, self.compression);
            }
        }
        self.sources.insert(topic, source);
        complete
    }

    pub fn source_mut(&mut self, topic: &Topic) -> Option<&mut Source> {
        self.sources.get_mut(topic)
    }

    /// Every source's topic and state.
    pub fn sources(&self) -> impl Iterator<Item = (&Topic, SourceState)> {
        self.sources.iter().map(|(t, s)| (t, s.state))
    }

    /// Whether more deliveries may be taken from the mailbox: no live source holds a window's worth of frames.
    pub fn wants_deliveries(&self) -> bool {
        !self.sources.values().any(Source::holds_back)
    }

    /// Routes one delivery to its topic's source. A message matched by several selectors is delivered once, by
    /// the first selector (in request order) that matches its topic.
    pub fn deliver(&mut self, delivery: &Delivery) -> Routed {
        let topic = &delivery.envelope.topic;
        let owner = self
            .selectors
            .iter()
            .find(|s| s.pattern.matches(topic))
            .map(|s| s.id);
        if owner != Some(delivery.subscription) {
            return Routed::Duplicate;
        }
        let compression = self.compression;
        match self.sources.get_mut(topic) {
            None => Routed::NewTopic(topic.clone()),
            Some(source) if source.state == SourceState::Gone => Routed::Dropped,
            Some(source) => {
                match bridge::from_envelope(&delivery.envelope, compression, &mut source.outbox) {
                    Ok(()) => Routed::Queued(topic.clone()),
                    Err(e) => Routed::TooLarge(e),
                }
            }
        }
    }
}

fn push_item(outbox: &mut Outbox, envelope: &Envelope, compression: Compression) {
    if let Err(e) = bridge::from_envelope(envelope, compression, outbox) {
        core_bus::metrics::record_drop(
            core_bus::metrics::DropReason::TooLarge,
            core_bus::Protocol::Chanserv,
        );
        tracing::debug!(error = %e, topic = %envelope.topic, "chanserv: recovered message not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_header_is_key_value_lines() {
        assert_eq!(
            &cap_header(3)[..],
            b"error=too_many_sources\nmax_sources=3\n"
        );
    }
}
