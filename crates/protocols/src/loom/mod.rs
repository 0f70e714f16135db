//! Loom (v4) adapter: Loom over raw QUIC (ALPN `loom/1`, legacy `loom`) and HTTP/3 (`h3`, `POST /stream`) on one
//! UDP port, bridged to the bus. Rooms are anycast groups; Loom keys are envelope keys.
//!
//! Owns Loom's wire format as described in `shared/protocols/loom.md`: the uvarint ([`codec::varint`]), the hello that
//! opens every stream ([`codec::hello`]), the message/chunk/EOM and ack framing ([`codec`]), the consumer-facing key rules
//! ([`key`]), the configurable limits ([`limits`]) and how a refused stream is answered on QUIC and HTTP/3
//! ([`reject`]); those are pure. [`session`] holds the sans-IO stream logic (admission, msg ids, acks),
//! [`config`] the `[loom]` section, the private `relay` the hand-over of messages over `max_message_bytes` to one
//! Loom consumer (cut-through), and the private `driver`, `listener` (with its `quic` and `h3` parts) modules
//! the tokio/quinn/h3 glue started by [`start`].

mod driver;
mod listener;
mod relay;

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
pub use config::LoomConfig;
pub use key::{ConsumerKey, KeyError};
pub use limits::Limits;
pub use listener::{start, LISTENER};
pub use reject::Rejection;
