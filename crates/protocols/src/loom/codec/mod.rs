//! Loom framing after the hello (reference §3): messages (key, declared size, msg id, chunks, EOM) in both
//! directions and the consumer's ack frames.
//!
//! - [`message`]: incremental decoder turning a message stream into [`MessageEvent`]s.
//! - [`assemble`]: builds whole bodies from those events, passes larger ones on chunk by chunk (cut-through) and
//!   drops whole messages over the streamed limit.
//! - [`ack`]: the consumer→server frames.
//! - [`delivery`]: the server→consumer message encoder, for whole and for cut-through messages.

pub mod ack;
pub mod assemble;
pub mod delivery;
pub mod message;

pub use ack::ConsumerFrame;
pub use assemble::{
    Assembled, DropReason, DroppedMessage, MessageAssembler, ProducedMessage, StreamStart,
};
pub use delivery::{Delivery, DeliveryHeader};
pub use message::{FrameError, MessageDecoder, MessageEvent, MessageHeader};
