//! gatewayd as a library: the protocol clients `gatewayctl` uses.

pub mod clients;
