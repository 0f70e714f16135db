//! STOMP 1.0/1.1/1.2 broker adapter (`docs/protocols/stomp.md`).
//!
//! The parts, in the adapter contract's order (`docs/architecture.md`, "An adapter"):
//!
//! * [`config`]: the `[stomp]` section; `settings`: what connections take of it; `reload`: applies
//!   a new one to the running listeners, for the connections they accept from then on.
//! * [`codec`]: bytes ↔ frames, both directions, with the per-version header escaping.
//! * [`bridge`]: SEND → bus envelope, bus envelope → MESSAGE (written straight from deliveries),
//!   and the names MESSAGE gives bus topics.
//! * [`session`]: one connection's state machine over the bus (sans-IO).
//! * `driver` / `listener`: the tokio glue for `stomp.tcp`, `stomp.tls` and `stomp.ws`.
//!
//! STOMP's own parts:
//!
//! * [`limits`]: the frame caps the decoder enforces; [`outbox`]: encoded frames waiting for
//!   one write.
//! * [`negotiate`](mod@negotiate): version and heart-beat negotiation, CONNECTED.
//! * [`error`]: every way a connection fails, and its ERROR frame.
//! * [`destination`]: destination strings.
//! * [`durable`]: durable topic subscriptions (the bus keeps their queues).
//! * [`ack`] / [`transaction`]: per-connection ack and transaction bookkeeping.

pub mod config;
mod reload;
mod settings;

pub mod codec;

pub mod bridge;

pub mod session;

mod driver;
mod listener;

pub mod ack;
pub mod destination;
pub mod durable;
pub mod error;
pub mod limits;
pub mod negotiate;
pub mod outbox;
pub mod transaction;

pub use ack::{ack_id, AckMode, AckTable, ClientAck, Settled};
pub use codec::{
    encode, encode_heart_beat, put_decimal, Command, DecodeError, Decoded, Decoder, Escaping,
    Frame, Header, Headers, Version, Written,
};
pub use config::Config;
pub use destination::Destination;
pub use error::StompError;
pub use limits::{Limit, Limits};
pub use listener::start;
pub use negotiate::{
    connected_frame, negotiate, negotiate_heart_beat, negotiate_version, Connect, HeartBeat,
    HeartBeatPlan, HeartBeatPolicy,
};
pub use session::{Flow, Session, Settings};
pub use transaction::{Transactions, TxLimit, TxLimits};
