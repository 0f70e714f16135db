//! AstraNet, the stream multiplexer chanserv runs on (docs/protocols/chanserv.md, "Wire format"): the op codec
//! ([`op`]), node ids and addresses ([`addr`]), and the per-connection state machine with its stream table
//! ([`Link`]), as gatewayd's server end or as a client's end.

pub mod addr;
mod handshake;
pub mod link;
pub mod op;
pub mod ports;
mod stream;

pub use addr::{Addr, HostId, InvalidAddr};
pub use link::{
    BindError, CloseReason, DialError, Event, InvalidServiceName, Link, LinkConfig, LinkStats,
    ServiceName, StreamError,
};
pub use op::{Op, OpError, Opcode};
pub use ports::{PortCounter, PORT_BASE, SERVICE_PORT};
pub use stream::{Recv, StreamId, WINDOW};
