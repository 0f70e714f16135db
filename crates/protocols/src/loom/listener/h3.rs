//! Loom over HTTP/3 (`h3`): `POST /stream`, the request body carries the client→server bytes and the response
//! body the server→client bytes. Refusals are status codes with empty bodies (docs/protocols/loom.md, "Refusals and
//! errors"): 404/405 before the body is read, 400/401 for the hello, a producer's status when its body ends (200)
//! or breaks (400), and a consumer's 200 with `application/octet-stream` as soon as it is admitted. A consumer's
//! response body is reset (`H3_INTERNAL_ERROR`) when a message cut through to it cannot be finished.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use h3::error::Code;
use h3::server::RequestStream;
use quinn::VarInt;

use crate::loom::codec::hello::Role;
use crate::loom::driver::{self, Conn, Gone, Inbound, Outbound, Outcome, Shared};
use crate::loom::reject::{h3_route, H3_CONTENT_TYPE, H3_OK};
use crate::CloseCause;

type Send = RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type Recv = RequestStream<h3_quinn::RecvStream, Bytes>;

struct In(Recv);

impl Inbound for In {
    async fn read_more(&mut self, buf: &mut BytesMut) -> Result<bool, Gone> {
        match self.0.recv_data().await {
            Ok(Some(mut data)) => {
                while data.has_remaining() {
                    let chunk = data.chunk();
                    let n = chunk.len();
                    buf.extend_from_slice(chunk);
                    data.advance(n);
                }
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(_) => Err(Gone),
        }
    }
}

struct Out(Send);

impl Outbound for Out {
    async fn write(&mut self, segments: Vec<Bytes>) -> Result<(), Gone> {
        for segment in segments {
            self.0.send_data(segment).await.map_err(|_| Gone)?;
        }
        Ok(())
    }
}

/// Serves requests until the connection closes; on shutdown closes it with `H3_NO_ERROR`.
pub(super) async fn serve(quic: quinn::Connection, conn: Arc<Conn>, shared: Arc<Shared>) {
    let mut h3 = match h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(
        quic.clone(),
    ))
    .await
    {
        Ok(h3) => h3,
        Err(error) => {
            tracing::debug!(%error, "loom h3 connection setup failed");
            return;
        }
    };
    let requests = shared.services.shutdown.child_token();
    loop {
        tokio::select! {
            () = shared.services.shutdown.cancelled() => {
                conn.guard.closing(CloseCause::Shutdown);
                quic.close(VarInt::from(Code::H3_NO_ERROR.value() as u32), b"gatewayd shutting down");
                break;
            }
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let (conn, shared, stop) = (conn.clone(), shared.clone(), requests.clone());
                    tokio::spawn(async move {
                        let Ok((request, stream)) = resolver.resolve_request().await else {
                            return;
                        };
                        let (send, recv) = stream.split();
                        tokio::select! {
                            () = stop.cancelled() => {}
                            () = serve_request(request, Out(send), In(recv), &conn, &shared) => {}
                        }
                    });
                }
                Ok(None) | Err(_) => {
                    if let Some(quinn::ConnectionError::TimedOut) = quic.close_reason() {
                        conn.guard.closing(CloseCause::Deadline);
                    }
                    break;
                }
            },
        }
    }
    requests.cancel();
}

async fn serve_request(
    request: http::Request<()>,
    mut output: Out,
    mut input: In,
    conn: &Conn,
    shared: &Shared,
) {
    if let Err(status) = h3_route(request.method().as_str(), request.uri().path()) {
        return refuse(output, input, status).await;
    }
    let mut buf = BytesMut::new();
    let settings = shared.settings.load_full();
    let admitted = match driver::open(&mut input, &mut buf, &settings, conn).await {
        Ok(admitted) => admitted,
        Err(Outcome::Rejected(rejection)) => {
            return refuse(output, input, rejection.h3_status()).await
        }
        Err(_) => return,
    };
    match admitted.role {
        Role::Producer => {
            match driver::produce(
                &mut input,
                &mut buf,
                admitted.topic,
                shared,
                &settings,
                conn,
            )
            .await
            {
                Outcome::Clean => {
                    if respond(&mut output.0, H3_OK, None).await.is_ok() {
                        let _ = output.0.finish().await;
                    }
                }
                Outcome::Rejected(rejection) => refuse(output, input, rejection.h3_status()).await,
                Outcome::Gone | Outcome::Cut => {}
            }
        }
        Role::Consumer => {
            if respond(&mut output.0, H3_OK, Some(H3_CONTENT_TYPE))
                .await
                .is_err()
            {
                return;
            }
            let outcome = driver::consume(
                &mut input,
                &mut buf,
                &mut output,
                admitted.topic,
                shared,
                &settings,
                conn,
            )
            .await;
            match outcome {
                Outcome::Rejected(rejection) => {
                    tracing::debug!(%rejection, "loom h3 consumer closed");
                    input.0.stop_sending(Code::H3_NO_ERROR);
                    let _ = output.0.finish().await;
                }
                // A cut-through message cut off: a reset response body, never a clean end after a partial message.
                Outcome::Cut => output.0.stop_stream(Code::H3_INTERNAL_ERROR),
                Outcome::Clean => {
                    let _ = output.0.finish().await;
                }
                Outcome::Gone => {}
            }
        }
    }
}

/// Answers `status` with an empty body, then stops reading the request body (RFC 9114 §4.1.2: the complete
/// response first, so the client has it before it sees the STOP_SENDING).
async fn refuse(mut output: Out, mut input: In, status: u16) {
    if respond(&mut output.0, status, None).await.is_ok() {
        let _ = output.0.finish().await;
    }
    input.0.stop_sending(Code::H3_NO_ERROR);
}

async fn respond(send: &mut Send, status: u16, content_type: Option<&str>) -> Result<(), Gone> {
    let mut response = http::Response::builder().status(status);
    if let Some(content_type) = content_type {
        response = response.header(http::header::CONTENT_TYPE, content_type);
    }
    let response = response.body(()).map_err(|_| Gone)?;
    send.send_response(response).await.map_err(|_| Gone)
}
