//! The WebSocket library on gatewayd's workload (issue 18): the server side of tungstenite (what the WebSocket
//! listeners use), fastwebsockets and tokio-websockets reading a client's masked binary frames and writing unmasked
//! binary frames flushed every [`BATCH`], as the drivers flush a turn. The stream is in memory (reads hand out up
//! to [`CHUNK`] bytes, writes are counted and dropped), so only the library's own work is timed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};
use tokio::runtime::Runtime;

/// Frames written between two flushes.
const BATCH: usize = 64;
/// Most bytes one read hands out, as a socket read into a 64 KiB buffer.
const CHUNK: usize = 64 << 10;
/// Frames read or written per iteration.
const COUNT: usize = 10_000;

/// A connection in memory: reads come from `input`, writes are counted.
struct Memory {
    input: Bytes,
    at: usize,
    written: usize,
}

impl Memory {
    fn new(input: Bytes) -> Memory {
        Memory {
            input,
            at: 0,
            written: 0,
        }
    }
}

impl AsyncRead for Memory {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let at = self.at;
        let n = (self.input.len() - at).min(CHUNK).min(buf.remaining());
        buf.put_slice(&self.input[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Memory {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written += buf.len();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// [`COUNT`] masked binary frames of `size` bytes, as a client sends them.
fn client_frames(size: usize) -> Bytes {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = Vec::new();
    for frame in 0..COUNT {
        out.push(0x82);
        match u8::try_from(size) {
            Ok(short) if short < 126 => out.push(0x80 | short),
            _ => {
                out.push(0x80 | 126);
                out.extend_from_slice(&u16::try_from(size).expect("under 64 KiB").to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend((0..size).map(|at| (frame + at) as u8 ^ mask[at % 4]));
    }
    out.into()
}

async fn tungstenite_read(input: Bytes) -> usize {
    use tokio_tungstenite::tungstenite::protocol::Role;
    let mut ws =
        tokio_tungstenite::WebSocketStream::from_raw_socket(Memory::new(input), Role::Server, None)
            .await;
    let mut total = 0;
    for _ in 0..COUNT {
        total += ws.next().await.expect("a frame").expect("readable").len();
    }
    total
}

async fn tungstenite_write(payload: Bytes) -> usize {
    use tokio_tungstenite::tungstenite::{protocol::Role, Message};
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        Memory::new(Bytes::new()),
        Role::Server,
        None,
    )
    .await;
    for at in 0..COUNT {
        ws.feed(Message::Binary(payload.clone()))
            .await
            .expect("written");
        if at % BATCH == BATCH - 1 {
            ws.flush().await.expect("flushed");
        }
    }
    ws.flush().await.expect("flushed");
    ws.get_ref().written
}

async fn fastwebsockets_read(input: Bytes) -> usize {
    use fastwebsockets::{Role, WebSocket};
    let mut ws = WebSocket::after_handshake(Memory::new(input), Role::Server);
    let mut total = 0;
    for _ in 0..COUNT {
        total += ws.read_frame().await.expect("readable").payload.len();
    }
    total
}

async fn fastwebsockets_write(payload: Bytes) -> usize {
    use fastwebsockets::{Frame, Payload, Role, WebSocket};
    // fastwebsockets writes each frame to its stream: buffered, a batch is one write as with the other two.
    let stream = BufWriter::with_capacity(CHUNK, Memory::new(Bytes::new()));
    let mut ws = WebSocket::after_handshake(stream, Role::Server);
    for at in 0..COUNT {
        let frame = Frame::binary(Payload::Borrowed(&payload));
        ws.write_frame(frame).await.expect("written");
        if at % BATCH == BATCH - 1 {
            ws.flush().await.expect("flushed");
        }
    }
    ws.flush().await.expect("flushed");
    ws.into_inner().get_ref().written
}

async fn tokio_websockets_read(input: Bytes) -> usize {
    let mut ws = tokio_websockets::ServerBuilder::new().serve(Memory::new(input));
    let mut total = 0;
    for _ in 0..COUNT {
        let message = ws.next().await.expect("a frame").expect("readable");
        total += message.as_payload().len();
    }
    total
}

async fn tokio_websockets_write(payload: Bytes) -> usize {
    let mut ws = tokio_websockets::ServerBuilder::new().serve(Memory::new(Bytes::new()));
    for at in 0..COUNT {
        let message = tokio_websockets::Message::binary(payload.clone());
        ws.feed(message).await.expect("written");
        if at % BATCH == BATCH - 1 {
            ws.flush().await.expect("flushed");
        }
    }
    ws.flush().await.expect("flushed");
    ws.get_ref().written
}

fn libraries(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    for size in [16, 1024] {
        let input = client_frames(size);
        let payload = Bytes::from(vec![7; size]);
        let mut read = c.benchmark_group(format!("websocket_read/{size}"));
        read.throughput(Throughput::Elements(COUNT as u64));
        bench(
            &mut read,
            &runtime,
            "tungstenite",
            &input,
            COUNT * size,
            tungstenite_read,
        );
        bench(
            &mut read,
            &runtime,
            "fastwebsockets",
            &input,
            COUNT * size,
            fastwebsockets_read,
        );
        bench(
            &mut read,
            &runtime,
            "tokio-websockets",
            &input,
            COUNT * size,
            tokio_websockets_read,
        );
        read.finish();
        let mut write = c.benchmark_group(format!("websocket_write/{size}"));
        write.throughput(Throughput::Elements(COUNT as u64));
        bench(
            &mut write,
            &runtime,
            "tungstenite",
            &payload,
            COUNT * size,
            tungstenite_write,
        );
        bench(
            &mut write,
            &runtime,
            "fastwebsockets",
            &payload,
            COUNT * size,
            fastwebsockets_write,
        );
        bench(
            &mut write,
            &runtime,
            "tokio-websockets",
            &payload,
            COUNT * size,
            tokio_websockets_write,
        );
        write.finish();
    }
}

/// One library's run over `input`; at least `payload` bytes (every frame's payload) must have passed.
fn bench<F: std::future::Future<Output = usize>>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &Runtime,
    library: &str,
    input: &Bytes,
    payload: usize,
    run: fn(Bytes) -> F,
) {
    group.bench_with_input(BenchmarkId::from_parameter(library), input, |b, input| {
        b.iter(|| {
            let passed = runtime.block_on(run(input.clone()));
            assert!(
                passed >= payload,
                "{library} passed {passed} bytes of {payload}"
            );
        })
    });
}

criterion_group!(benches, libraries);
criterion_main!(benches);
