//! The gRPC client's codec. Requests leave as protobuf already encoded (a publish written directly, as the
//! WebSocket client writes it), and each reply arrives as the events it means to the client, read as the
//! WebSocket client reads a binary frame (a publication read short): no `InboundMessage` or `OutboundMessage`
//! is built and moved through tonic's streams for them, which was a third of a busy gRPC client's time.

use bytes::{Buf, Bytes};
use protocols::messageloop::grpc_codec::{small_buffers, EncodedReplies};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;

use crate::messageloop::binary_events;
use crate::Event;

/// Encoded envelopes out, client events in.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct EventsCodec;

impl Codec for EventsCodec {
    type Encode = Bytes;
    type Decode = Vec<Event>;
    type Encoder = EncodedReplies;
    type Decoder = Events;

    fn encoder(&mut self) -> EncodedReplies {
        EncodedReplies
    }

    fn decoder(&mut self) -> Events {
        Events
    }
}

/// Reads one `OutboundMessage` into the events it means (none for a publish ack).
#[derive(Debug, Clone, Copy)]
pub(super) struct Events;

impl Decoder for Events {
    type Item = Vec<Event>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<Event>>, Status> {
        let mut events = Vec::new();
        binary_events(src.copy_to_bytes(src.remaining()), &mut events);
        Ok(Some(events))
    }

    fn buffer_settings(&self) -> BufferSettings {
        small_buffers()
    }
}
