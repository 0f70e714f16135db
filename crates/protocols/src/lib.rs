//! placeholder

pub mod stomp;
