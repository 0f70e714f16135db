//! MessageLoop client protocol adapter (`docs/protocols/messageloop.md`), three wire generations: G0 = upstream
//! v0.1.1 with CloudEvents, G1 = v0.2.0, G2 = HEAD.
//!
//! The parts, in the adapter contract's order (`docs/architecture.md`, "An adapter"):
//!
//! * [`config`]: the `[messageloop]` section; `settings`: what connections and streams take of it; `reload`:
//!   applies a new one to the running listeners, for the connections and streams they open from then on.
//! * [`codec`]: bytes ↔ messages, every generation and encoding: protobuf types and tonic services, JSON,
//!   generation detection, subprotocol negotiation, generation-neutral messages from and to each generation's
//!   envelopes ([`wire`]), the per-connection WebSocket codec, strict reading as the SDKs read.
//! * [`bridge`]: client data → bus envelope, bus envelope → delivered message, and the CloudEvents mapping of G0
//!   payloads.
//! * [`session`]: one connection's or stream's state machine over the bus (sans-IO).
//! * `driver` / [`listener`]: the tokio glue for `messageloop.ws` and `messageloop.grpc`: the listeners bind,
//!   accept and upgrade, the drivers run one session each.
//!
//! MessageLoop's own parts:
//!
//! * [`message`]: the generation-neutral messages; [`codes`]: error and disconnect codes.
//! * [`channel`]: channel names → bus topics and patterns; [`presence`]: the presence table.
//! * [`proxy`]: the backend proxy for RPC, authentication, ACLs and hooks, and its responder for the other
//!   protocols' requests.

pub mod config;
mod reload;
mod settings;

pub mod codec;

pub mod bridge;

pub mod session;

mod driver;
pub mod listener;

pub mod channel;
pub mod codes;
pub mod message;
pub mod presence;
pub mod proxy;

/// Default cap on one envelope, both directions (`server.limits.max_message_size`).
pub const MAX_MESSAGE_SIZE: usize = 65_536;

pub use codec::{
    conformance, g0_or_g1, generation, grpc_codec, json, pb, subprotocol, wire, EncodeError, Frame,
    WsCodec,
};
pub use codes::{DisconnectCode, ErrorCode};
pub use config::Config;
pub use generation::{Encoding, Generation, GenerationSetting};
pub use listener::start;
pub use message::{Inbound, InboundBody, Outbound, OutboundBody};
pub use wire::{DecodeError, G0Wire, G1Wire, G2Wire, Unrepresentable, Wire};
