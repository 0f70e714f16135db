//! Generated protobuf types and tonic services for the three MessageLoop wire generations, compiled by
//! `build.rs` from `proto/messageloop/`. The module tree mirrors the protobuf packages so the generated
//! cross-package paths (`super::super::shared::v2::Payload`) resolve:
//! G2 = `messageloop::client::v2` + `messageloop::shared::v2`, G1 = `messageloop::client::v1` +
//! `messageloop::shared::v1`, G0 = `messageloop::v1` + `io::cloudevents::v1`. The backend proxy protocol
//! is `messageloop::proxy::v2`.
#![allow(clippy::all, missing_docs, rustdoc::all)]

pub mod messageloop {
    pub mod client {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/messageloop.client.v1.rs"));
        }
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/messageloop.client.v2.rs"));
        }
    }
    pub mod shared {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/messageloop.shared.v1.rs"));
        }
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/messageloop.shared.v2.rs"));
        }
    }
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/messageloop.v1.rs"));
    }
    pub mod proxy {
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/messageloop.proxy.v2.rs"));
        }
    }
}

pub mod io {
    pub mod cloudevents {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/io.cloudevents.v1.rs"));
        }
    }
}
