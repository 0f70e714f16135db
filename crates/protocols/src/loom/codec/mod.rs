//! Loom's wire format, bytes ↔ frames, pure (`docs/protocols/loom.md`, "Wire format"): the uvarint, the hello that
//! opens every stream, then messages (key, declared size, msg id, chunks, EOM) in both directions and the
//! consumer's ack frames.
//!
//! - [`varint`]: Loom's uvarint (not QUIC's).
//! - [`hello`]: the hello, the first bytes of every stream.
//! - [`message`]: incremental decoder turning a message stream into [`MessageEvent`]s.
//! - [`assemble`]: builds whole bodies from those events, passes larger ones on chunk by chunk (cut-through) and
//!   drops whole messages over the streamed limit.
//! - [`ack`]: the consumer→server frames.
//! - [`delivery`]: the server→consumer message encoder, for whole and for cut-through messages.

mod cursor;

pub mod ack;
pub mod assemble;
pub mod delivery;
pub mod hello;
pub mod message;
pub mod varint;

pub use ack::ConsumerFrame;
pub use assemble::{
    Assembled, DropReason, DroppedMessage, MessageAssembler, ProducedMessage, StreamStart,
};
pub use delivery::{Delivery, DeliveryHeader};
pub use hello::{Hello, HelloError, HelloField, Role};
pub use message::{FrameError, MessageDecoder, MessageEvent, MessageHeader};
pub use varint::VarintError;
