//! Loom over raw QUIC (`loom/1`): every client-initiated bidirectional stream is one Loom session. Refusals
//! follow upstream's FIN-only answer plus STOP_SENDING (docs/protocols/loom.md, "Refusals and errors", and
//! [`crate::loom::reject`]); the connection stays open.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use quinn::VarInt;

use crate::loom::codec::hello::Role;
use crate::loom::driver::{self, Conn, Gone, Inbound, Outbound, Outcome, Shared};
use crate::loom::reject::{QUIC_MESSAGE_CUT, QUIC_SHUTDOWN};
use crate::CloseCause;

/// Largest read from a stream at once.
const READ_CHUNK: usize = 64 << 10;

struct In(quinn::RecvStream);

impl Inbound for In {
    async fn read_more(&mut self, buf: &mut BytesMut) -> Result<bool, Gone> {
        match self.0.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => {
                buf.extend_from_slice(&chunk.bytes);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(_) => Err(Gone),
        }
    }
}

struct Out(quinn::SendStream);

impl Outbound for Out {
    async fn write(&mut self, mut segments: Vec<Bytes>) -> Result<(), Gone> {
        self.0
            .write_all_chunks(&mut segments)
            .await
            .map_err(|_| Gone)
    }
}

/// Accepts streams until the connection closes; on shutdown closes it with [`QUIC_SHUTDOWN`].
pub(super) async fn serve(quic: quinn::Connection, conn: Arc<Conn>, shared: Arc<Shared>) {
    let streams = shared.services.shutdown.child_token();
    loop {
        tokio::select! {
            () = shared.services.shutdown.cancelled() => {
                conn.guard.closing(CloseCause::Shutdown);
                quic.close(VarInt::from_u32(QUIC_SHUTDOWN), b"gatewayd shutting down");
                break;
            }
            accepted = quic.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    let (conn, shared, stop) = (conn.clone(), shared.clone(), streams.clone());
                    tokio::spawn(async move {
                        tokio::select! {
                            () = stop.cancelled() => {}
                            () = stream(Out(send), In(recv), &conn, &shared) => {}
                        }
                    });
                }
                Err(error) => {
                    if let quinn::ConnectionError::TimedOut = error {
                        conn.guard.closing(CloseCause::Deadline);
                    }
                    break;
                }
            },
        }
    }
    streams.cancel();
}

async fn stream(mut output: Out, mut input: In, conn: &Conn, shared: &Shared) {
    let mut buf = BytesMut::new();
    let settings = shared.settings.load_full();
    let outcome = match driver::open(&mut input, &mut buf, &settings, conn).await {
        Err(outcome) => outcome,
        Ok(admitted) => match admitted.role {
            Role::Producer => {
                driver::produce(
                    &mut input,
                    &mut buf,
                    admitted.topic,
                    shared,
                    &settings,
                    conn,
                )
                .await
            }
            Role::Consumer => {
                driver::consume(
                    &mut input,
                    &mut buf,
                    &mut output,
                    admitted.topic,
                    shared,
                    &settings,
                    conn,
                )
                .await
            }
        },
    };
    finish(output, input, outcome);
}

/// FIN on our half; a refused or broken stream also gets STOP_SENDING with the rejection's code; a consumer whose
/// cut-through message was cut off gets RESET_STREAM instead of a FIN.
fn finish(mut output: Out, mut input: In, outcome: Outcome) {
    match outcome {
        Outcome::Clean => {
            let _ = output.0.finish();
        }
        Outcome::Rejected(rejection) => {
            tracing::debug!(%rejection, "loom stream closed");
            let _ = output.0.finish();
            let _ = input.0.stop(VarInt::from_u32(rejection.quic_code()));
        }
        Outcome::Cut => {
            let _ = output.0.reset(VarInt::from_u32(QUIC_MESSAGE_CUT));
        }
        Outcome::Gone => {}
    }
}
