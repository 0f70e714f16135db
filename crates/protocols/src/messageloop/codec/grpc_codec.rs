//! The codec of the generated MessageLoop gRPC services and clients: prost, with small buffers. tonic's default
//! reserves 8 KiB to decode and 8 KiB to encode on every stream, most of what an idle stream costs; MessageLoop
//! envelopes are small, and the buffers grow when a larger one comes.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Bytes reserved per stream for each direction until a larger message needs more.
const BUFFER: usize = 256;
/// tonic's default: encoded bytes after which a response stream yields.
const YIELD_THRESHOLD: usize = 32 << 10;

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
        ProstEncoder::new(BufferSettings::new(BUFFER, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER, YIELD_THRESHOLD))
    }
}
