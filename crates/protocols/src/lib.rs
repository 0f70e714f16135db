//! placeholder

pub mod chanserv;
