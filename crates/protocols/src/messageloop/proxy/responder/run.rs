//! One responder generation: takes requests from its mailbox, calls the backend a route names (at most
//! [`MAX_IN_FLIGHT`] calls at once) and publishes each answer to the request's inbox. Told to stop (a
//! reload), it unsubscribes and still answers the calls it made; at shutdown it ends at once.

use std::collections::HashMap;
use std::sync::OnceLock;

use core_bus::names::INBOX_TOKEN;
use core_bus::{Bus, Delivery, Mailbox, MessageId, Origin, Topic};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_util::sync::CancellationToken;

use super::super::call::{ProxyAnswer, ProxyCall, ProxyFailure, ProxyReply, ProxyRequest};
use super::super::Proxies;
use super::{reply, topics, REQUESTS};
use crate::messageloop::codes::ErrorCode;
use crate::messageloop::message::Error;

/// Backend calls one responder has open at once; a request past it gets a `RATE_LIMITED` error reply.
const MAX_IN_FLIGHT: usize = 256;
/// Deliveries taken from the mailbox at a time.
const BATCH: usize = 64;

/// Where the answer of an open call goes.
struct Waiting {
    reply_to: Topic,
    correlation_id: Option<String>,
}

/// A responder's subscriptions and backends, until a reload replaces them.
pub struct Generation {
    pub bus: Bus,
    pub mailbox: Mailbox,
    pub proxies: Proxies,
    /// Cancelled when a reload replaces this generation.
    pub stop: CancellationToken,
    /// Cancelled when the daemon shuts down.
    pub shutdown: CancellationToken,
}

struct State {
    bus: Bus,
    /// The responder's own origin, which its replies carry.
    origin: Origin,
    proxies: Proxies,
    answers: UnboundedSender<ProxyAnswer>,
    waiting: HashMap<String, Waiting>,
    next_call: u64,
}

impl Generation {
    pub async fn run(self) {
        let Generation {
            bus,
            mut mailbox,
            proxies,
            stop,
            shutdown,
        } = self;
        let (answers, mut answered) = unbounded_channel();
        let mut state = State {
            bus,
            origin: mailbox.owner(),
            proxies,
            answers,
            waiting: HashMap::new(),
            next_call: 1,
        };
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            // Stop first: once a reload returned, this generation takes no new request. Answers next: they
            // are bounded by the open calls, so they cannot starve requests.
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(answer) = answered.recv() => state.answer(answer),
                received = mailbox.recv_batch(&mut batch, BATCH) => {
                    if received.is_err() {
                        break;
                    }
                    for delivery in batch.drain(..) {
                        state.request(delivery);
                    }
                }
            }
        }
        drop(mailbox);
        while !state.waiting.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(answer) = answered.recv() => state.answer(answer),
            }
        }
    }
}

impl State {
    /// Calls the backend for a request a route claims; anything else is left to the bus's other responders.
    fn request(&mut self, delivery: Delivery) {
        if let Some(ack) = delivery.ack {
            ack.ack();
        }
        let envelope = &delivery.envelope;
        let Some(reply_to) = envelope.reply_to.clone() else {
            return;
        };
        // Every node runs its own responder: the node where the request entered answers it.
        if !published_here(envelope.id) {
            return;
        }
        let Some((channel, method)) = topics::request_of(&envelope.topic) else {
            return;
        };
        let Some(target) = self.proxies.router().route(&channel, &method) else {
            return;
        };
        if reply_to.tokens().next() != Some(INBOX_TOKEN) {
            // A reply to a topic would publish the backend's answer where the requester may not publish.
            count("not_inbox");
            tracing::debug!(topic = %envelope.topic, %reply_to, "proxy responder: reply-to is not an inbox");
            return;
        }
        if self.waiting.len() >= MAX_IN_FLIGHT {
            count("busy");
            let error = Error::new(ErrorCode::RateLimited, "too many proxy calls at once");
            let busy = reply::error_reply(
                reply_to,
                envelope.correlation_id.clone(),
                &error,
                self.origin,
            );
            self.bus.publish(busy);
            return;
        }
        let id = format!("bus-{}", self.next_call);
        self.next_call += 1;
        self.waiting.insert(
            id.clone(),
            Waiting {
                reply_to,
                correlation_id: envelope.correlation_id.clone(),
            },
        );
        let call = ProxyCall {
            id,
            proxy: target.proxy,
            timeout: target.timeout,
            request: ProxyRequest::Rpc(reply::call_of(envelope, channel, method)),
        };
        self.proxies.spawn(call, None, self.answers.clone());
    }

    /// Publishes what the backend answered to the request's inbox.
    fn answer(&mut self, answer: ProxyAnswer) {
        let Some(waiting) = self.waiting.remove(&answer.id) else {
            return;
        };
        count(match &answer.outcome {
            Ok(ProxyReply::Rpc { error: None, .. }) => "answered",
            Ok(ProxyReply::Rpc { error: Some(_), .. }) => "backend_error",
            Err(ProxyFailure::Timeout) => "timeout",
            Ok(ProxyReply::Authenticate { .. } | ProxyReply::Acl { .. })
            | Err(ProxyFailure::Failed(_)) => "failed",
        });
        let envelope = reply::answer(
            waiting.reply_to,
            waiting.correlation_id,
            answer.outcome,
            self.origin,
        );
        self.bus.publish(envelope);
    }
}

fn count(outcome: &'static str) {
    metrics::counter!(REQUESTS, "outcome" => outcome).increment(1);
}

/// Whether a message was published by this process: message ids start with a per-process random prefix.
fn published_here(id: MessageId) -> bool {
    static HERE: OnceLock<u64> = OnceLock::new();
    let here = *HERE.get_or_init(|| (MessageId::next().0 >> 64) as u64);
    (id.0 >> 64) as u64 == here
}
