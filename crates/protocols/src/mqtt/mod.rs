//! MQTT 3.1.1 and 5.0 broker adapter (`docs/protocols/mqtt.md`).
//!
//! * [`codec`]: bytes ↔ packets of both protocol levels (on `mqttbytes`), [`reason`]: the reason codes sent.
//! * [`bridge`]: PUBLISH ↔ bus envelope (topic names and filters through [`names`], 5.0 properties ↔ envelope
//!   fields).
//! * [`session`]: one connection's state machine over the bus (sans-IO).
//! * [`retained`]: retained messages; [`store`]: client ids across connections and sessions kept for returning
//!   clients. Both are shared by every MQTT listener.
//! * `driver` / `listener`: the tokio glue for `mqtt.tcp`, `mqtt.tls` and `mqtt.ws`, configured by [`config`];
//!   [`settings`]: the config as connections use it; `reload`: applies a new section.

pub mod bridge;
pub mod codec;
pub mod config;
mod driver;
mod listener;
pub mod names;
pub mod reason;
mod reload;
pub mod retained;
pub mod session;
pub mod settings;
pub mod store;

pub use config::Config;
pub use listener::start;
pub use session::{Flow, Session, Settings, Shared};
