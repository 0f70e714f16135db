//! Bytes ↔ MessageLoop messages, every generation and encoding, with nothing of the bus or the network in it:
//!
//! * [`pb`]: the protobuf types and tonic services of the three wire generations (G0 = upstream v0.1.1 with
//!   CloudEvents, G1 = v0.2.0, G2 = HEAD) and of the backend proxy; [`grpc_codec`]: the gRPC codec they use.
//! * [`json`]: their JSON encoding; [`generation`]: which generation and encoding a client speaks;
//!   [`subprotocol`]: WebSocket subprotocol negotiation; [`g0_or_g1`]: the replies a JSON client that is G0 or
//!   G1 reads alike.
//! * [`wire`]: generation-neutral messages from and to each generation's envelopes (and the proxy calls).
//! * [`ws`]: the per-connection WebSocket codec, one WebSocket message ↔ one envelope; [`shared`]: a delivered
//!   publication encoded once for all its subscribers; [`publication_json`]: the JSON of a G1/G2 publication,
//!   written directly, and [`publication_read`]: a client's direct reading of it; [`direct_pb`]: the protobuf of
//!   a G2 publication and publish ack, written directly; [`publish_json`] and [`publish_pb`]: a G2 client's
//!   publish command, read directly (JSON, protobuf); [`plain_json`]: the reader of the plain JSON shape both
//!   direct JSON readers (`publish_json`, `publication_read`) take.
//! * [`conformance`]: strict reading of server messages as the SDKs read them.

pub mod conformance;
pub mod direct_pb;
pub mod g0_or_g1;
pub mod generation;
pub mod grpc_codec;
pub mod json;
pub mod pb;
mod plain_json;
pub mod publication_json;
pub mod publication_read;
pub mod publish_json;
pub mod publish_pb;
pub mod shared;
pub mod subprotocol;
pub mod wire;
pub mod ws;

pub use ws::{EncodeError, Frame, WsCodec};

/// The G2 `InboundMessage` a client builds to publish `binary` data without metadata, which the direct writers
/// ([`direct_pb::publish`], [`publish_json::write`]) are checked against.
#[cfg(test)]
fn binary_publish(
    id: &str,
    channel: &str,
    content_type: &str,
    binary: &[u8],
) -> pb::messageloop::client::v2::InboundMessage {
    use pb::messageloop::client::v2 as client;
    use pb::messageloop::shared::v2 as shared;
    client::InboundMessage {
        id: id.into(),
        time: 0,
        envelope: Some(client::inbound_message::Envelope::Publish(
            client::Publish {
                channel: channel.into(),
                payload: Some(shared::Payload {
                    content_type: content_type.into(),
                    data: Some(shared::payload::Data::Binary(
                        bytes::Bytes::copy_from_slice(binary),
                    )),
                }),
                ..Default::default()
            },
        )),
    }
}
