//! STOMP 1.0/1.1/1.2 broker adapter.
//!
//! * [`codec`]: frames, commands, ordered headers, versions; the incremental decoder and the
//!   encoder (with [`limits`] and the per-version header escaping); [`outbox`]: encoded frames
//!   waiting for one write.
//! * [`negotiate`](mod@negotiate): version and heart-beat negotiation, CONNECTED.
//! * [`error`]: every failure of reference §6 and its ERROR frame.
//! * [`destination`]: destination strings.
//! * [`durable`] / [`forwarder`]: durable topic subscriptions and the tasks feeding their queues.
//! * [`ack`] / [`transaction`]: per-connection ack and transaction bookkeeping.
//! * [`bridge`]: SEND → bus envelope, bus envelope → MESSAGE (written straight from deliveries),
//!   and the names MESSAGE gives bus topics.
//! * [`session`]: one connection's state machine over the bus (sans-IO).
//! * `driver` / `listener`: the tokio glue for `stomp.tcp`, `stomp.tls` and `stomp.ws`,
//!   configured by [`config`]; `reload`: hot reload of `[stomp]` for new connections.
//!
//! The reference is `shared/protocols/stomp.md`; section numbers in comments point into it.

pub mod ack;
pub mod bridge;
pub mod codec;
pub mod config;
pub mod destination;
mod driver;
pub mod durable;
pub mod error;
pub mod forwarder;
pub mod limits;
mod listener;
pub mod negotiate;
pub mod outbox;
mod reload;
pub mod session;
pub mod transaction;

pub use ack::{ack_id, AckMode, AckTable, ClientAck, Settled};
pub use codec::{
    encode, encode_heart_beat, put_decimal, Command, DecodeError, Decoded, Decoder, Escaping,
    Frame, Header, Headers, Version, Written,
};
pub use config::Config;
pub use destination::Destination;
pub use error::StompError;
pub use forwarder::Durables;
pub use limits::{Limit, Limits};
pub use listener::start;
pub use negotiate::{
    connected_frame, negotiate, negotiate_heart_beat, negotiate_version, Connect, HeartBeat,
    HeartBeatPlan, HeartBeatPolicy,
};
pub use session::{Flow, Session, Settings};
pub use transaction::{Transactions, TxLimit, TxLimits};
