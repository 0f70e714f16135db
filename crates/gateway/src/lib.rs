//! gatewayd as a library: the configuration loader and cluster settings `gatewayd` (and the config fuzz target)
//! use, and the OTLP trace exporter. The protocol clients `gatewayctl` uses are the `clients` crate.

pub mod cluster;
pub mod config;
pub mod telemetry;
