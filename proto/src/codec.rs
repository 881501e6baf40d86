//! The gRPC codec of the generated gNMI client and server: prost, with small buffers.
//!
//! tonic allocates its encode and decode buffers eagerly per RPC, 8 KiB each by default,
//! and a collector keeps one Subscribe RPC open per device: at 10,000 devices that is
//! about 160 MB of mostly empty buffers. Telemetry notifications are usually a few hundred
//! bytes, so the buffers start at 2 KiB here; tonic grows them in 2 KiB steps for larger
//! messages (up to the configured maximum message size), so nothing is refused for this.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Initial size (and growth step) of each RPC's encode and decode buffer.
pub const BUFFER_SIZE: usize = 2 * 1024;

/// tonic's default: how much an encoder buffers before yielding to the transport.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// prost encoding with [`BUFFER_SIZE`] buffers (see the module documentation).
#[derive(Debug, Clone)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
