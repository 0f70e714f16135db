//! Subscribe and unsubscribe: channel rules, the bus subscription, history recovery, the acks and the
//! OnSubscribed / OnUnsubscribed hooks.

use super::acl::Refusals;
use super::*;
use crate::messageloop::proxy::hooks::Hook;
use crate::messageloop::proxy::route::UNSUBSCRIBE;

impl Session {
    /// Subscribe once the backend answered (`refused`: the entries it refused): per-entry errors, then the
    /// ack, then recovery. G2 streams the recovery after the ack; the older generations get it inside the
    /// ack.
    pub(super) fn subscribe_checked(
        &mut self,
        id: &str,
        entries: Vec<Subscription>,
        refused: &Refusals,
        now: Now,
    ) {
        let mut after = Vec::new();
        let Some(mut ack) = self.subscribe_entries(id, entries, refused, now, &mut after) else {
            return;
        };
        if self.generation != Some(Generation::G2) {
            if let OutboundBody::SubscribeAck(body) = &mut ack.body {
                for outbound in after.drain(..) {
                    match outbound.body {
                        OutboundBody::Publication(messages) => body.replayed.extend(messages),
                        OutboundBody::RecoverComplete(result) => body.recover_results.push(*result),
                        _ => {}
                    }
                }
            }
        }
        self.outbox.push(ack);
        self.outbox.extend(after);
    }

    /// Subscribes each entry the backend did not refuse; errors go straight to the outbox, what follows the
    /// ack (replays, RecoverComplete) into `after`; each subscription made fires OnSubscribed. Returns the
    /// ack (`None` after a disconnect) for the caller to place.
    pub(super) fn subscribe_entries(
        &mut self,
        id: &str,
        entries: Vec<Subscription>,
        refused: &Refusals,
        now: Now,
        after: &mut Vec<Outbound>,
    ) -> Option<Outbound> {
        let mut accepted = Vec::new();
        let mut presence = Vec::new();
        let mut recovering = false;
        let mut stream_epoch = self.context.settings.epoch.clone();
        for (index, entry) in entries.into_iter().enumerate() {
            match self.subscribe_one(id, &entry, refused.get(&index), now, after) {
                Ok(outcome) => {
                    let hook = Hook::Subscribed {
                        session_id: self.session_id.clone(),
                        channel: entry.channel.clone(),
                        username: self.user_id(),
                    };
                    self.fire_hook(self.context.router.subscriber(&entry.channel), hook);
                    if let Some(snapshot) = outcome.presence {
                        presence.push(snapshot);
                    }
                    if let Some(epoch) = outcome.epoch {
                        stream_epoch = epoch;
                    }
                    recovering |= entry.recover;
                    accepted.push(entry);
                }
                Err(SubscribeFailure::Refused(error)) => {
                    self.reply(id.to_owned(), now, OutboundBody::Error(Box::new(error)));
                }
                Err(SubscribeFailure::Limit) => {
                    self.close(DisconnectCode::ChannelLimit);
                    return None;
                }
            }
        }
        let ack = SubscribeAck {
            subscriptions: accepted,
            recover: if recovering {
                RecoverState::Pending
            } else {
                RecoverState::None
            },
            stream_epoch,
            presence,
            error: None,
            replayed: Vec::new(),
            recover_results: Vec::new(),
        };
        let ack = Outbound {
            id: id.to_owned(),
            time_ms: now.unix_ms,
            body: OutboundBody::SubscribeAck(Box::new(ack)),
        };
        Some(ack)
    }

    /// One entry: routability, gatewayd's ACL, the backend's `refusal`, then the subscription.
    pub(super) fn subscribe_one(
        &mut self,
        id: &str,
        entry: &Subscription,
        refusal: Option<&Error>,
        now: Now,
        after: &mut Vec<Outbound>,
    ) -> Result<Subscribed, SubscribeFailure> {
        let pattern = channel::subscribe_pattern(&entry.channel, self.generation)
            .map_err(SubscribeFailure::Refused)?;
        let State::Connected { identity, info } = &self.state else {
            return Err(SubscribeFailure::Refused(Error::new(
                ErrorCode::BadRequest,
                "not connected",
            )));
        };
        if !identity.may_subscribe(&pattern) {
            return Err(SubscribeFailure::Refused(Error::new(
                ErrorCode::PermissionDenied,
                format!("subscribe to {:?} denied", entry.channel),
            )));
        }
        if let Some(error) = refusal {
            return Err(SubscribeFailure::Refused(error.clone()));
        }
        let info = info.clone();
        let existing = self.subscriptions.contains_key(&entry.channel);
        if !existing && self.subscriptions.len() >= self.context.settings.max_subscriptions {
            return Err(SubscribeFailure::Limit);
        }
        let exact = pattern.as_topic();
        let mut outcome = Subscribed {
            presence: None,
            epoch: None,
        };
        if existing && !entry.recover {
            if let Some(topic) = &exact {
                outcome.epoch = self.history_epoch(topic);
            }
            if self
                .subscriptions
                .get(&entry.channel)
                .is_some_and(|s| s.presence.is_some())
            {
                outcome.presence = Some(self.context.presence.snapshot(&entry.channel));
            }
            return Ok(outcome);
        }
        // Re-subscribing to recover keeps a tracked member present: no leave/join pair for the others.
        let was_tracked = self
            .subscriptions
            .get(&entry.channel)
            .is_some_and(|s| s.presence.is_some());
        let stays_tracked = was_tracked && exact.is_some() && !entry.ephemeral;
        if existing {
            self.drop_subscription(&entry.channel, !stays_tracked);
        }
        let mut seen_through = None;
        let id_on_bus = match (&exact, entry.recover) {
            (Some(topic), true) => {
                let recovered = self.recover(id, entry, topic, now, after)?;
                outcome.epoch = recovered.epoch;
                seen_through = recovered.seen_through;
                recovered.id
            }
            (None, true) => {
                let bus_id = self.bus_subscribe(pattern)?;
                let error = Error::new(
                    ErrorCode::RecoverSkipped,
                    "wildcard subscriptions do not recover",
                );
                after.push(self.recover_complete(
                    id,
                    &entry.channel,
                    Position::default(),
                    GapReason::None,
                    Some(error),
                    now,
                ));
                bus_id
            }
            (Some(topic), false) => {
                outcome.epoch = self.history_epoch(topic);
                self.bus_subscribe(pattern)?
            }
            (None, false) => self.bus_subscribe(pattern)?,
        };
        self.routes
            .insert(id_on_bus, Route::Channel { seen_through });
        let mut tracked = None;
        if exact.is_some() && !entry.ephemeral {
            let presence_topic = channel::presence_topic(&entry.channel);
            let presence_id = match self.bus_subscribe(Pattern::exact(&presence_topic)) {
                Ok(presence_id) => presence_id,
                Err(failure) => {
                    self.mailbox.unsubscribe(id_on_bus);
                    self.routes.remove(&id_on_bus);
                    return Err(failure);
                }
            };
            self.routes
                .insert(presence_id, Route::Presence(entry.channel.clone()));
            tracked = Some(presence_id);
            if self.context.presence.join(&entry.channel, info.clone()) && !stays_tracked {
                self.announce(&entry.channel, PresenceAction::Join, &info);
            }
            outcome.presence = Some(self.context.presence.snapshot(&entry.channel));
        }
        self.subscriptions.insert(
            entry.channel.clone(),
            ChannelSubscription {
                id: id_on_bus,
                presence: tracked,
            },
        );
        Ok(outcome)
    }

    pub(super) fn bus_subscribe(
        &mut self,
        pattern: Pattern,
    ) -> Result<SubscriptionId, SubscribeFailure> {
        self.mailbox.subscribe(pattern).map_err(|error| {
            SubscribeFailure::Refused(Error::new(ErrorCode::PermissionDenied, error.to_string()))
        })
    }

    pub(super) fn history_epoch(&self, topic: &Topic) -> Option<String> {
        self.context
            .bus
            .history_top(topic)
            .map(|top| self.context.bus.epoch_text(top.epoch))
    }

    /// Subscribes with history and queues the replay and its RecoverComplete into `after`.
    pub(super) fn recover(
        &mut self,
        id: &str,
        entry: &Subscription,
        topic: &Topic,
        now: Now,
        after: &mut Vec<Outbound>,
    ) -> Result<Recovered, SubscribeFailure> {
        let cursor = entry.cursor.as_ref().and_then(|cursor| {
            let offset = cursor.offset?;
            let epoch = self.context.bus.epoch_from_text(&cursor.stream_epoch)?;
            Some(core_bus::Position { epoch, offset })
        });
        let since = match (entry.fresh, cursor) {
            (true, _) => Some(Since::Beginning),
            (false, Some(position)) => Some(Since::After(position)),
            (false, None) => None,
        };
        let Some(since) = since else {
            let bus_id = self.bus_subscribe(Pattern::exact(topic))?;
            let error = Error::new(ErrorCode::RecoverSkipped, "no cursor to recover from");
            let epoch = self.history_epoch(topic);
            let position = Position {
                stream_epoch: epoch.clone().unwrap_or_default(),
                offset: None,
            };
            after.push(self.recover_complete(
                id,
                &entry.channel,
                position,
                GapReason::None,
                Some(error),
                now,
            ));
            return Ok(Recovered {
                id: bus_id,
                epoch,
                seen_through: None,
            });
        };
        let (bus_id, recovery) =
            self.mailbox
                .subscribe_with_history(topic, since)
                .map_err(|error| {
                    SubscribeFailure::Refused(Error::new(
                        ErrorCode::PermissionDenied,
                        error.to_string(),
                    ))
                })?;
        let Some(recovery) = recovery else {
            let error = Error::new(ErrorCode::RecoverSkipped, "channel keeps no history");
            after.push(self.recover_complete(
                id,
                &entry.channel,
                Position::default(),
                GapReason::None,
                Some(error),
                now,
            ));
            return Ok(Recovered {
                id: bus_id,
                epoch: None,
                seen_through: None,
            });
        };
        let epoch = self.context.bus.epoch_text(recovery.top.epoch);
        // In cluster mode this node's copy of the history can be behind the node the client came from.
        let seen_through = match since {
            Since::After(cursor)
                if cursor.epoch == recovery.top.epoch && cursor.offset > recovery.top.offset =>
            {
                Some(cursor)
            }
            _ => None,
        };
        let skip = recovery.messages.len().saturating_sub(MAX_RECOVER);
        let truncated = !recovery.complete || skip > 0;
        for envelope in recovery.messages.iter().skip(skip) {
            let message = bridge::from_envelope(
                envelope,
                true,
                &self.context.bus,
                &self.context.settings.epoch,
            );
            after.push(Outbound {
                id: id.to_owned(),
                time_ms: now.unix_ms,
                body: OutboundBody::Publication(vec![message]),
            });
        }
        let position = Position {
            stream_epoch: epoch.clone(),
            offset: Some(seen_through.map_or(recovery.top.offset, |c| c.offset)),
        };
        let reason = if truncated {
            GapReason::HeadTrimmed
        } else {
            GapReason::None
        };
        let mut complete = self.recover_complete(id, &entry.channel, position, reason, None, now);
        if let OutboundBody::RecoverComplete(body) = &mut complete.body {
            body.truncated = truncated;
            body.gap = truncated;
        }
        after.push(complete);
        Ok(Recovered {
            id: bus_id,
            epoch: Some(epoch),
            seen_through,
        })
    }

    pub(super) fn recover_complete(
        &self,
        id: &str,
        channel: &str,
        position: Position,
        gap_reason: GapReason,
        error: Option<Error>,
        now: Now,
    ) -> Outbound {
        Outbound {
            id: id.to_owned(),
            time_ms: now.unix_ms,
            body: OutboundBody::RecoverComplete(Box::new(RecoverComplete {
                channel: channel.to_owned(),
                position,
                truncated: false,
                gap: false,
                gap_reason,
                error,
            })),
        }
    }

    /// Ends one client subscription; `announce` sends the presence leave.
    pub(super) fn drop_subscription(&mut self, channel: &str, announce: bool) -> bool {
        let Some(subscription) = self.subscriptions.remove(channel) else {
            return false;
        };
        self.mailbox.unsubscribe(subscription.id);
        self.routes.remove(&subscription.id);
        if let Some(presence_id) = subscription.presence {
            self.mailbox.unsubscribe(presence_id);
            self.routes.remove(&presence_id);
            if let Some(info) = self.context.presence.leave(channel, &self.session_id) {
                if announce {
                    self.announce(channel, PresenceAction::Leave, &info);
                }
            }
        }
        true
    }

    pub(super) fn unsubscribe(&mut self, id: String, entries: Vec<Subscription>, now: Now) {
        for entry in &entries {
            if self.drop_subscription(&entry.channel, true) {
                let hook = Hook::Unsubscribed {
                    session_id: self.session_id.clone(),
                    channel: entry.channel.clone(),
                    username: self.user_id(),
                };
                let target = self.context.router.route(&entry.channel, UNSUBSCRIBE);
                self.fire_hook(target, hook);
            }
        }
        self.reply(id, now, OutboundBody::UnsubscribeAck(entries));
    }
}

pub(super) struct Subscribed {
    pub(super) presence: Option<PresenceSnapshot>,
    pub(super) epoch: Option<String>,
}

/// A subscription made with recovery.
pub(super) struct Recovered {
    pub(super) id: SubscriptionId,
    /// The topic's epoch when it keeps history.
    pub(super) epoch: Option<String>,
    /// The client's cursor when it is ahead of this node's history (see [`Route::Channel`]).
    pub(super) seen_through: Option<core_bus::Position>,
}

pub(super) enum SubscribeFailure {
    Refused(Error),
    Limit,
}
