//! placeholder
pub mod loom;
