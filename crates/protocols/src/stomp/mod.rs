//! STOMP 1.0/1.1/1.2 broker adapter: the pure, bus-independent part.
//!
//! * [`frame`]: frames, commands, ordered headers, versions.
//! * [`parser`] / [`writer`]: the incremental decoder and the encoder (with [`limits`] and
//!   the per-version header escaping).
//! * [`negotiate`](mod@negotiate): version and heart-beat negotiation, CONNECTED.
//! * [`error`]: every failure of reference §6 and its ERROR frame.
//! * [`destination`]: destination strings.
//! * [`ack`] / [`transaction`]: per-connection ack and transaction bookkeeping.
//!
//! The reference is `shared/protocols/stomp.md`; section numbers in comments point into it.

pub mod ack;
pub mod destination;
pub mod error;
mod escape;
pub mod frame;
pub mod limits;
pub mod negotiate;
pub mod parser;
pub mod transaction;
pub mod writer;

pub use ack::{ack_id, AckMode, AckTable, ClientAck, Settled};
pub use destination::Destination;
pub use error::StompError;
pub use frame::{Command, Frame, Header, Headers, Version};
pub use limits::{Limit, Limits};
pub use negotiate::{
    connected_frame, negotiate, negotiate_heart_beat, negotiate_version, Connect, HeartBeat,
    HeartBeatPlan, HeartBeatPolicy,
};
pub use parser::{DecodeError, Decoded, Decoder};
pub use transaction::{Transactions, TxLimit, TxLimits};
pub use writer::{encode, encode_heart_beat, Written};
