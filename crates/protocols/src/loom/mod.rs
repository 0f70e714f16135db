//! Loom (v4) adapter: the pure, bus-independent half.
//!
//! Owns Loom's wire format as described in `shared/protocols/loom.md`: the uvarint ([`varint`]), the hello that
//! opens every stream ([`hello`]), the message/chunk/EOM and ack framing ([`codec`]), the consumer-facing key rules
//! ([`key`]), the configurable limits ([`limits`]) and how a refused stream is answered on QUIC and HTTP/3
//! ([`reject`]). Nothing here touches sockets, tokio or the clock: bytes go in, frames and events come out.

mod cursor;

pub mod codec;
pub mod hello;
pub mod key;
pub mod limits;
pub mod reject;
pub mod varint;

pub use codec::{
    Assembled, ConsumerFrame, Delivery, DropReason, DroppedMessage, FrameError, MessageAssembler,
    MessageDecoder, MessageEvent, MessageHeader, ProducedMessage,
};
pub use hello::{Hello, HelloError, HelloField, Role};
pub use key::{ConsumerKey, KeyError};
pub use limits::Limits;
pub use reject::Rejection;
pub use varint::VarintError;
