//! gatewayd as a library: the protocol clients `gatewayctl` uses, and the configuration loader and cluster
//! settings `gatewayd` (and the config fuzz target) use, and the OTLP trace exporter.

pub mod clients;
pub mod cluster;
pub mod config;
pub mod telemetry;
