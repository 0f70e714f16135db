//! Loom (v4) adapter: Loom over raw QUIC (ALPN `loom/1`, legacy `loom`) and HTTP/3 (`h3`, `POST /stream`) on one
//! UDP port, bridged to the bus. Rooms are anycast groups; Loom keys are envelope keys (`docs/protocols/loom.md`).
//!
//! The parts, in the adapter contract's order (`docs/architecture.md`, "An adapter"):
//! * [`config`]: the `[loom]` section; `settings`: what streams take of it; `reload`: applies a new one.
//! * [`codec`]: bytes ↔ frames, pure: the uvarint, the hello that opens every stream, messages (key, declared
//!   size, msg id, chunks, EOM) both ways and the consumer's acks.
//! * [`bridge`]: Loom message ↔ bus envelope: the room's topic, [`bridge::to_envelope`],
//!   [`bridge::from_envelope`].
//! * [`session`]: one stream's sans-IO state machine: the hello's admission, then the producer or the consumer
//!   session (msg ids, stop-and-wait acks); it alone calls the bus (publish, group join, ack).
//! * `driver`: the tokio life of one stream, the same over both transports: feeds the session, awaits the
//!   back-pressure it hands back, writes what it returns.
//! * `listener` (`listener/quic.rs`, `listener/h3.rs`): the quinn endpoint, connection accounting, the raw QUIC
//!   and HTTP/3 transports, started by [`start`].
//!
//! Loom's own parts: [`key`] (the consumer-facing key rules), [`limits`] (the configurable limits), [`reject`]
//! (how a refused stream is answered on QUIC and HTTP/3), all pure; the private `relay` hands a message over
//! `max_message_bytes` to one Loom consumer of the room while it arrives (cut-through, off the bus).

mod driver;
mod listener;
mod relay;
mod reload;
mod settings;

pub mod bridge;
pub mod codec;
pub mod config;
pub mod key;
pub mod limits;
pub mod reject;
pub mod session;

pub use codec::{
    Assembled, ConsumerFrame, Delivery, DeliveryHeader, DropReason, DroppedMessage, FrameError,
    Hello, HelloError, HelloField, MessageAssembler, MessageDecoder, MessageEvent, MessageHeader,
    ProducedMessage, Role, StreamStart, VarintError,
};
pub use config::Config;
pub use key::{ConsumerKey, KeyError};
pub use limits::Limits;
pub use listener::{start, LISTENER};
pub use reject::Rejection;
