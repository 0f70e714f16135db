//! MessageLoop client protocol (`docs/protocols/messageloop.md`). The bus-independent part: the
//! three wire generations (G0 = upstream v0.1.1 with CloudEvents, G1 = v0.2.0, G2 = HEAD) as protobuf
//! types and tonic services ([`pb`]), their JSON encoding ([`json`]), generation detection
//! ([`generation`]), the replies a JSON client that is G0 or G1 reads alike ([`g0_or_g1`]), WebSocket
//! subprotocol negotiation ([`subprotocol`]), generation-neutral messages ([`message`]) with conversions
//! from and to each generation ([`wire`]), the per-connection WebSocket codec ([`codec`]), error and
//! disconnect codes ([`codes`]), the CloudEvents mapping ([`cloudevent`]), strict reading of server messages
//! as the SDKs read them ([`conformance`]) and the backend proxy for RPC, authentication, ACLs and hooks ([`proxy`]).
//! The part that meets the bus and the network: [`session`], [`listener`] (WebSocket and gRPC), [`config`] (the
//! `[messageloop]` section), `settings` (what connections take of it) and `reload` (applies a new one).

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
