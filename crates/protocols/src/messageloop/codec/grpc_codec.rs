//! The gRPC codecs of MessageLoop, with small buffers: [`SmallBufferCodec`] (prost both ways) for the generated
//! clients and services, and [`EncodedReplyCodec`] for gatewayd's own service, whose requests are decoded into the
//! neutral message in a box ([`BoxedRequests`]) and whose replies are encoded by the session's codec before they
//! reach tonic ([`EncodedReplies`] also writes the requests of gatewayctl's client, encoded before they reach tonic
//! too).
//! tonic's default reserves 8 KiB to decode and 8 KiB to encode on every stream, most of what an idle stream
//! costs; MessageLoop envelopes are small, and the buffers grow when a larger one comes.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::{ProstDecoder, ProstEncoder};

use super::generation::Generation;
use super::publish_pb;
use super::wire::{DecodeError, Wire};
use crate::messageloop::message::Inbound;

/// Bytes reserved per stream for each direction until a larger message needs more.
const BUFFER: usize = 256;
/// tonic's default: encoded bytes after which a response stream yields.
const YIELD_THRESHOLD: usize = 32 << 10;

/// Every MessageLoop gRPC encoder's and decoder's buffers: [`BUFFER`] bytes to start with.
pub fn small_buffers() -> BufferSettings {
    BufferSettings::new(BUFFER, YIELD_THRESHOLD)
}

/// [`tonic_prost::ProstCodec`] with [`BUFFER`]-byte buffers.
#[derive(Debug, Clone, Copy)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        SmallBufferCodec(PhantomData)
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(small_buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(small_buffers())
    }
}

/// Requests of generation `W` decoded into boxed neutral messages; replies are protobuf bytes already, written as
/// they are.
#[derive(Debug, Clone, Copy)]
pub struct EncodedReplyCodec<W>(PhantomData<W>);

impl<W> Default for EncodedReplyCodec<W> {
    fn default() -> Self {
        EncodedReplyCodec(PhantomData)
    }
}

impl<W> Codec for EncodedReplyCodec<W>
where
    W: Wire<Inbound: Message + Default> + Send + 'static,
{
    type Encode = Bytes;
    type Decode = Decoded;
    type Encoder = EncodedReplies;
    type Decoder = BoxedRequests<W>;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedReplies
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoxedRequests(PhantomData)
    }
}

/// One request as the session takes it: the neutral message, or why the envelope has none. Boxed, so that
/// tonic's stream and the session loop pass a pointer along rather than moving the message at every step.
pub type Decoded = Box<Result<Inbound, DecodeError>>;

/// Decodes each request of generation `W`: a G2 publish in the plain shape directly ([`publish_pb`]), anything
/// else with prost, in place in a box, and then into the neutral message.
#[derive(Debug, Clone, Copy)]
pub struct BoxedRequests<W>(PhantomData<W>);

impl<W> Decoder for BoxedRequests<W>
where
    W: Wire<Inbound: Message + Default> + Send + 'static,
{
    type Item = Decoded;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Decoded>, Status> {
        let whole = src.remaining();
        if W::GENERATION == Generation::G2 && src.chunk().len() == whole {
            if let Some(inbound) = publish_pb::publish(src.chunk()) {
                src.advance(whole);
                return Ok(Some(Box::new(Ok(inbound))));
            }
        }
        let mut request = Box::<W::Inbound>::default();
        // As tonic's prost decoder: a message that does not decode is INTERNAL.
        request
            .merge(src)
            .map_err(|error| Status::internal(error.to_string()))?;
        Ok(Some(Box::new(W::inbound(*request))))
    }

    fn buffer_settings(&self) -> BufferSettings {
        small_buffers()
    }
}

/// Copies each encoded message (a reply, or a client's request) into tonic's frame buffer.
#[derive(Debug, Clone, Copy)]
pub struct EncodedReplies;

impl Encoder for EncodedReplies {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        small_buffers()
    }
}
