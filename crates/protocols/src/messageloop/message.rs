//! Generation-neutral MessageLoop messages: what a session reads from a client ([`Inbound`]) and writes
//! to it ([`Outbound`]), whichever wire generation (G0, G1, G2) and encoding carried them. The `wire`
//! module converts these to and from each generation's protobuf types.

use std::sync::Arc;

use bytes::Bytes;

use super::codec::shared::SharedPublication;
use super::codes::{DisconnectCode, ErrorCode};

/// A JSON object (a `google.protobuf.Struct` on the wire). Keys are kept sorted.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// Ordered `(name, value)` pairs: G1/G2 `Metadata.entries` (sorted by name) or, for G0, the CloudEvent
/// context attributes as binary-mode `ce-*` headers.
pub type Headers = Vec<(String, Bytes)>;

/// One client → server envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// Client-chosen id; every direct reply echoes it.
    pub id: String,
    pub body: InboundBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InboundBody {
    Connect(Connect),
    Subscribe(Vec<Subscription>),
    Unsubscribe(Vec<Subscription>),
    Publish(Publish),
    Rpc(RpcRequest),
    SubRefresh(Vec<String>),
    SurveyRequest(SurveyRequest),
    SurveyReply(SurveyReply),
    Ping,
    Pong,
    PresenceQuery { channel: String },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Connect {
    pub client_id: String,
    pub client_type: String,
    pub token: String,
    /// Protocol version string (G2 gates on its major number, see [`super::generation::check_g2_version`]).
    pub version: String,
    pub subscriptions: Vec<Subscription>,
    /// Session to resume (G1, G2); empty for none.
    pub session_id: String,
    /// Capabilities (G2).
    pub caps: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    pub channel: String,
    /// No presence tracking for this subscription.
    pub ephemeral: bool,
    pub token: String,
    pub recover: bool,
    /// Where to resume (G1 `offset`/`epoch`, G2 `cursor`).
    pub cursor: Option<Position>,
    /// Replay from the start of the stream (G2).
    pub fresh: bool,
}

impl Subscription {
    /// A plain subscription to `channel`.
    pub fn channel(channel: impl Into<String>) -> Self {
        Subscription {
            channel: channel.into(),
            ..Subscription::default()
        }
    }
}

/// A place in a channel's stream. `offset: None` means "no offset", never "from the start".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    pub stream_epoch: String,
    pub offset: Option<u64>,
}

/// Application data with its content type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    pub content_type: String,
    /// `None` when the client sent no data slot.
    pub data: Option<PayloadData>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PayloadData {
    Json(JsonObject),
    Binary(Bytes),
    Text(String),
}

impl Payload {
    pub fn text(content_type: impl Into<String>, text: impl Into<String>) -> Self {
        Payload {
            content_type: content_type.into(),
            data: Some(PayloadData::Text(text.into())),
        }
    }

    pub fn binary(content_type: impl Into<String>, data: impl Into<Bytes>) -> Self {
        Payload {
            content_type: content_type.into(),
            data: Some(PayloadData::Binary(data.into())),
        }
    }

    pub fn json(content_type: impl Into<String>, object: JsonObject) -> Self {
        Payload {
            content_type: content_type.into(),
            data: Some(PayloadData::Json(object)),
        }
    }

    /// [`Payload::to_bytes`] of a payload no longer needed: binary data is moved, not shared.
    pub fn into_bytes(self) -> Bytes {
        match self.data {
            Some(PayloadData::Binary(bytes)) => bytes,
            Some(PayloadData::Text(text)) => Bytes::from(text.into_bytes()),
            _ => self.to_bytes(),
        }
    }

    /// The data as bytes (JSON serialized compactly with sorted keys; empty when there is none).
    pub fn to_bytes(&self) -> Bytes {
        match &self.data {
            None => Bytes::new(),
            Some(PayloadData::Binary(bytes)) => bytes.clone(),
            Some(PayloadData::Text(text)) => Bytes::from(text.clone().into_bytes()),
            Some(PayloadData::Json(object)) => {
                Bytes::from(serde_json::to_vec(object).unwrap_or_default())
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Publish {
    pub channel: String,
    pub payload: Payload,
    pub headers: Headers,
    /// For the publish access-control hook.
    pub token: String,
    /// Deliver without history.
    pub transient: bool,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RpcRequest {
    pub channel: String,
    pub method: String,
    pub payload: Payload,
    pub headers: Headers,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SurveyRequest {
    pub request_id: String,
    pub channel: String,
    pub payload: Payload,
    pub headers: Headers,
    pub timeout_ms: i32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SurveyReply {
    pub request_id: String,
    pub payload: Payload,
    pub headers: Headers,
    pub error: Option<Error>,
}

/// One server → client envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// The inbound id for direct replies, a fresh UUID for server-initiated envelopes.
    pub id: String,
    /// Unix milliseconds at sending.
    pub time_ms: u64,
    pub body: OutboundBody,
}

/// What a server → client envelope carries. Replies that are rare next to publications and publish acks are boxed,
/// so an [`Outbound`] moved through a session's outbox is a few words, not the size of the largest reply.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboundBody {
    Error(Box<Error>),
    Connected(Box<Connected>),
    SubscribeAck(Box<SubscribeAck>),
    UnsubscribeAck(Vec<Subscription>),
    /// A publish's ack: where the message went (the offset left unset for a transient publish). The ack names
    /// the publish by the envelope's id, which is the publish's.
    PublishAck(Position),
    Publication(Vec<Message>),
    /// A live delivery: one message built (and encoded) once for all its subscribers.
    Delivered(Arc<SharedPublication>),
    RecoverComplete(Box<RecoverComplete>),
    RpcReply(Box<RpcReply>),
    SubRefreshAck,
    SurveyRequest(Box<SurveyRequest>),
    SurveyResult(Box<SurveyResult>),
    Presence(Box<PresenceSnapshot>),
    PresenceEvent(Box<PresenceEvent>),
    Ping,
    Pong,
    GapNotice(Box<GapNotice>),
}

// A publication, a publish ack and an envelope's id and time fit in 80 bytes; a larger variant belongs in a box.
const _: () = assert!(std::mem::size_of::<Outbound>() <= 80);

impl OutboundBody {
    /// The messages of a publication, live or replayed.
    pub fn messages(&self) -> Option<&[Message]> {
        match self {
            OutboundBody::Publication(messages) => Some(messages),
            OutboundBody::Delivered(shared) => Some(std::slice::from_ref(shared.message())),
            _ => None,
        }
    }
}

/// A soft error (the connection stays open).
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub code: ErrorCode,
    /// `Error.type` (`"auth_error"`, `"client_error"`, …).
    pub error_type: String,
    pub message: String,
    pub metadata: JsonObject,
}

impl Error {
    /// An error with the code's usual type.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            error_type: code.default_type().to_owned(),
            code,
            message: message.into(),
            metadata: JsonObject::new(),
        }
    }

    /// The reply to a frame that could not be decoded (sent with a fresh id; the connection stays).
    pub fn undecodable() -> Self {
        Error {
            code: ErrorCode::BadRequest,
            error_type: "client_error".to_owned(),
            message: "Failed to decode message".to_owned(),
            metadata: JsonObject::new(),
        }
    }

    /// The gRPC disconnect notice (sent with a fresh id before the stream ends with status OK):
    /// `DISCONNECT_ERROR`, `transport_error`, the reason text, and `metadata.disconnect_code` = the number.
    pub fn disconnect(code: DisconnectCode) -> Self {
        let mut metadata = JsonObject::new();
        metadata.insert("disconnect_code".to_owned(), code.code().into());
        Error {
            code: ErrorCode::DisconnectError,
            error_type: ErrorCode::DisconnectError.default_type().to_owned(),
            message: code.reason().to_owned(),
            metadata,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connected {
    pub session_id: String,
    /// Channel names.
    pub subscriptions: Vec<String>,
    pub resumed: bool,
    pub stream_epoch: String,
    pub accepted_caps: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeAck {
    /// Accepted entries, echoed as sent.
    pub subscriptions: Vec<Subscription>,
    pub recover: RecoverState,
    pub stream_epoch: String,
    pub presence: Vec<PresenceSnapshot>,
    /// Only with [`RecoverState::Failed`].
    pub error: Option<Error>,
    /// Recovery carried inside the ack (G1: `publications`, `recover_results`). G2 streams replays and
    /// RecoverComplete after the ack instead and leaves these empty.
    pub replayed: Vec<Message>,
    pub recover_results: Vec<RecoverComplete>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoverState {
    None,
    Pending,
    Skipped,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    None,
    HeadTrimmed,
    EmptyExpired,
    EpochReset,
    Middle,
    ReplayTruncated,
}

/// One delivered publication.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `"<channel>-<offset>"`, or a UUID when there is no offset.
    pub id: String,
    pub channel: String,
    pub position: Position,
    pub payload: Payload,
    pub headers: Headers,
    pub replay: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecoverComplete {
    pub channel: String,
    pub position: Position,
    pub truncated: bool,
    pub gap: bool,
    pub gap_reason: GapReason,
    pub error: Option<Error>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapNotice {
    pub channel: String,
    pub position: Position,
    pub gap_reason: GapReason,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RpcReply {
    /// The RPC envelope's id.
    pub request_id: String,
    pub payload: Payload,
    pub headers: Headers,
    pub error: Option<Error>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SurveyResult {
    pub request_id: String,
    pub channel: String,
    pub answers: Vec<SurveyAnswer>,
    pub error: Option<Error>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SurveyAnswer {
    pub session_id: String,
    pub payload: Payload,
    pub headers: Headers,
    pub error: Option<Error>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceInfo {
    pub session_id: String,
    pub user_id: String,
    pub client_id: String,
    /// Unix milliseconds.
    pub connected_at_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceSnapshot {
    pub channel: String,
    pub clients: Vec<PresenceInfo>,
    pub truncated: bool,
    pub occupancy: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvent {
    pub channel: String,
    pub action: PresenceAction,
    pub info: PresenceInfo,
    /// Occupancy generation (G2 only).
    pub generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceAction {
    Join,
    Leave,
}

impl PresenceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceAction::Join => "join",
            PresenceAction::Leave => "leave",
        }
    }
}
