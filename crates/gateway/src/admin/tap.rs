//! `GET /api/tap?pattern=P`: every message on the topics `P` matches, as server-sent events, for `gatewayctl tap`.
//! A tap is a bus subscription of its own that never slows publishers: when its reader falls behind, its oldest
//! messages are dropped (counted as `queue_full_drop_oldest` under protocol `internal`). At most [`MAX_TAPS`] run
//! at once; each ends with its HTTP connection or on shutdown.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use core_bus::config::{QueueLimits, SlowConsumerPolicy};
use core_bus::{ConnectionId, Delivery, MailboxOptions, Origin, Pattern, Protocol};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::AdminState;

/// Taps open at once over the whole admin listener.
pub const MAX_TAPS: usize = 16;
/// Payload bytes an event shows.
const PREVIEW_BYTES: usize = 1024;
/// What a tap holds for a reader that falls behind.
const LIMITS: QueueLimits = QueueLimits {
    max_messages: 1024,
    max_bytes: 8 << 20,
};

static OPEN: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MAX_TAPS`] places, given back when the tap's stream is dropped.
struct Place;

impl Place {
    fn take() -> Option<Place> {
        OPEN.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
            (open < MAX_TAPS).then_some(open + 1)
        })
        .ok()
        .map(|_| Place)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Deserialize)]
pub struct TapQuery {
    /// A canonical pattern (`docs/topics.md`).
    pattern: String,
}

/// One message as a tap event's JSON.
#[derive(Serialize)]
struct Tapped<'a> {
    topic: &'a str,
    origin: Protocol,
    connection: ConnectionId,
    timestamp_ms: u64,
    size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    /// Header values as text (invalid UTF-8 replaced).
    headers: Vec<(&'a str, String)>,
    /// The first [`PREVIEW_BYTES`] of the payload: as text when they are UTF-8, else in `payload_base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    truncated: bool,
}

fn event(delivery: &Delivery) -> Result<Event, Infallible> {
    let envelope = &delivery.envelope;
    let preview = &envelope.payload[..envelope.payload.len().min(PREVIEW_BYTES)];
    let text = std::str::from_utf8(preview).ok();
    let tapped = Tapped {
        topic: envelope.topic.as_str(),
        origin: envelope.origin.protocol,
        connection: envelope.origin.connection,
        timestamp_ms: envelope.timestamp_ms,
        size: envelope.payload.len(),
        content_type: envelope.content_type.as_deref(),
        reply_to: envelope.reply_to.as_ref().map(|topic| topic.as_str()),
        correlation_id: envelope.correlation_id.as_deref(),
        traceparent: envelope.traceparent.as_deref(),
        headers: envelope
            .headers
            .iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(value).into_owned()))
            .collect(),
        payload: text,
        payload_base64: text
            .is_none()
            .then(|| base64::engine::general_purpose::STANDARD.encode(preview)),
        truncated: preview.len() < envelope.payload.len(),
    };
    Ok(Event::default()
        .event("message")
        .json_data(tapped)
        .unwrap_or_else(|_| Event::default().event("unencodable")))
}

pub async fn tap(State(state): State<AdminState>, Query(query): Query<TapQuery>) -> Response {
    let pattern = match Pattern::parse(&query.pattern) {
        Ok(pattern) => pattern,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, format!("pattern: {error}")).into_response()
        }
    };
    let Some(place) = Place::take() else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            format!("at most {MAX_TAPS} taps at once"),
        )
            .into_response();
    };
    let origin = Origin {
        protocol: Protocol::Internal,
        connection: ConnectionId::next(),
    };
    let options = MailboxOptions {
        limits: LIMITS,
        policy: SlowConsumerPolicy::DropOldest,
        stall_publishers: false,
    };
    let mut mailbox = state.bus.mailbox_with(origin, options);
    if let Err(error) = mailbox.subscribe(pattern) {
        return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
    }
    let shutdown = state.shutdown.clone();
    let events = futures::stream::unfold(
        (mailbox, place, Vec::new()),
        move |(mut mailbox, place, mut batch)| {
            let shutdown = shutdown.clone();
            async move {
                let received = tokio::select! {
                    () = shutdown.cancelled() => return None,
                    received = mailbox.recv_batch(&mut batch, 64) => received,
                };
                received.ok()?;
                let events: Vec<_> = batch.drain(..).map(|delivery| event(&delivery)).collect();
                Some((futures::stream::iter(events), (mailbox, place, batch)))
            }
        },
    )
    .flatten();
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
