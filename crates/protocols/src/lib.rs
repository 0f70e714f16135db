//! placeholder
pub mod messageloop;
