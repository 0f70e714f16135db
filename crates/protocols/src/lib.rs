//! placeholder

pub mod goomerang;
