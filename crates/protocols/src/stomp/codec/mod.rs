//! Bytes ↔ STOMP frames, pure and both directions (no IO, no session state beyond the version).
//!
//! * [`frame`]: frames, commands, ordered headers, versions.
//! * [`parser`]: the incremental decoder ([`Decoder`]), under the caps of [`Limits`](super::limits::Limits).
//! * [`writer`]: the encoder ([`encode`]) and the heart-beat EOL.
//! * [`escape`]: the per-version header escaping both of them apply.
//!
//! MESSAGE frames made from bus deliveries are encoded by the bridge, with [`writer`]'s helpers.

pub mod escape;
pub mod frame;
pub mod parser;
pub mod writer;

pub use escape::Escaping;
pub use frame::{Command, Frame, Header, Headers, Version};
pub use parser::{DecodeError, Decoded, Decoder};
pub use writer::{encode, encode_heart_beat, put_decimal, Written};
