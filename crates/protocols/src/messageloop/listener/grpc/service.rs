//! The three generations' `MessageLoop` services as gatewayd serves them (tonic's `Grpc` with the session's own
//! reply encoding), and the opening of one stream: its connection registered, its session started, its replies
//! handed to tonic turn by turn.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use core_bus::Protocol;
use futures::Stream;
use tokio::sync::mpsc;
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::server::{NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};

use super::{ConnectionExecutor, Shared, LANE, NAME};
use crate::messageloop::codec::grpc_codec::{Decoded, EncodedReplyCodec};
use crate::messageloop::driver::{
    self,
    grpc::{Handover, OpenStream, Reply},
};
use crate::messageloop::pb::messageloop::client::{v1 as g1, v2 as g2};
use crate::messageloop::pb::messageloop::v1 as g0;
use crate::messageloop::wire::{G0Wire, G1Wire, G2Wire, Wire};

/// A generation's gRPC service, as gatewayd serves it: tonic's `Grpc` runs the one streaming method, with requests
/// decoded into neutral messages and replies written as the session's codec encoded them ([`EncodedReplyCodec`]),
/// in place of the generated server, whose replies are prost messages built and encoded for each stream.
trait GrpcService: Wire<Inbound: prost::Message + Default> + Send + 'static {
    /// The service's full name, the first segment of its paths.
    const NAME: &'static str;
}

impl GrpcService for G2Wire {
    const NAME: &'static str = g2::message_loop_service_server::SERVICE_NAME;
}

impl GrpcService for G1Wire {
    const NAME: &'static str = g1::message_loop_service_server::SERVICE_NAME;
}

impl GrpcService for G0Wire {
    const NAME: &'static str = g0::messaging_service_server::SERVICE_NAME;
}

/// The method every generation's service has: the session's bidirectional stream.
const METHOD: &str = "MessageLoop";

/// One generation's service on the listener's router (tonic routes by the service's name).
pub(super) struct MessageLoop<W>(Arc<Shared>, PhantomData<fn() -> W>);

impl<W> MessageLoop<W> {
    pub(super) fn new(shared: Arc<Shared>) -> MessageLoop<W> {
        MessageLoop(shared, PhantomData)
    }
}

impl<W> Clone for MessageLoop<W> {
    fn clone(&self) -> Self {
        MessageLoop(self.0.clone(), PhantomData)
    }
}

impl<W: GrpcService> NamedService for MessageLoop<W> {
    const NAME: &'static str = W::NAME;
}

impl<W, B> tower_service::Service<http::Request<B>> for MessageLoop<W>
where
    W: GrpcService,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let method = path
            .strip_prefix('/')
            .and_then(|path| path.strip_prefix(W::NAME))
            .and_then(|path| path.strip_prefix('/'));
        let ours = method == Some(METHOD);
        if !ours {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let shared = self.0.clone();
        Box::pin(async move {
            let max = Some(shared.max_message_size);
            let mut grpc = tonic::server::Grpc::new(EncodedReplyCodec::<W>::default())
                .apply_max_message_size_config(max, max);
            Ok(grpc
                .streaming(Open::<W>(shared, PhantomData), request)
                .await)
        })
    }
}

/// Opens a stream's session when tonic has its request.
struct Open<W>(Arc<Shared>, PhantomData<fn() -> W>);

impl<W: GrpcService> StreamingService<Decoded> for Open<W> {
    type Response = Bytes;
    type ResponseStream = Replies;
    type Future = Ready<Result<Response<Replies>, Status>>;

    fn call(&mut self, request: Request<Streaming<Decoded>>) -> Self::Future {
        ready(open::<W>(&self.0, request))
    }
}

/// A stream's replies as tonic takes them: the envelopes of each turn in its lane, one after the other. tonic
/// encodes what is ready before it writes, so a turn goes out together (one DATA frame while it fits the frame
/// size).
struct Replies {
    lane: mpsc::Receiver<Reply>,
    /// What is left of the turn being taken.
    turn: std::vec::IntoIter<Bytes>,
}

impl Replies {
    fn new(lane: mpsc::Receiver<Reply>) -> Replies {
        Replies {
            lane,
            turn: Vec::new().into_iter(),
        }
    }
}

impl Stream for Replies {
    type Item = Result<Bytes, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let replies = self.get_mut();
        loop {
            if let Some(bytes) = replies.turn.next() {
                return Poll::Ready(Some(Ok(bytes)));
            }
            let Some(reply) = ready!(replies.lane.poll_recv(cx)) else {
                return Poll::Ready(None);
            };
            match *reply {
                Ok(turn) => replies.turn = turn.into_iter(),
                Err(status) => return Poll::Ready(Some(Err(status))),
            }
        }
    }
}

/// Registers the stream's connection and starts its session task.
fn open<W: Wire>(
    shared: &Arc<Shared>,
    request: Request<Streaming<Decoded>>,
) -> Result<Response<Replies>, Status> {
    let peer = request
        .remote_addr()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let settings = shared.settings.load_full();
    // The connection holds the listener slot; its streams are at most `MAX_STREAMS`.
    let guard = shared
        .services
        .connections
        .register_stream(Protocol::MessageLoop, NAME, peer);
    let (tx, rx) = mpsc::channel(LANE);
    let shared = shared.clone();
    let executor = request.extensions().get::<ConnectionExecutor>().cloned();
    let inbound = request.into_inner();
    let session = async move {
        let handover = Handover {
            shutdown: shared.services.shutdown.clone(),
            deadlines: shared.settings.load().deadlines,
            max_message_size: shared.max_message_size,
        };
        let stream = OpenStream {
            inbound,
            tx,
            guard,
            peer,
        };
        driver::grpc::run::<W>(handover, settings, stream).await;
    };
    match executor {
        Some(executor) => executor.spawn(session),
        None => {
            tokio::spawn(session);
        }
    }
    Ok(Response::new(Replies::new(rx)))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    /// The envelopes of a turn reach tonic one by one and in order, then the next turn's, then the status that
    /// ends the stream; the stream ends when the session drops its lane.
    #[tokio::test]
    async fn replies_take_each_turn_in_order() {
        let (tx, rx) = mpsc::channel(3);
        let mut replies = Replies::new(rx);
        let turns = [
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
            vec![Bytes::from_static(b"c")],
        ];
        for turn in turns {
            tx.try_send(Box::new(Ok(turn))).unwrap();
        }
        tx.try_send(Box::new(Err(Status::internal("end")))).unwrap();
        drop(tx);
        let mut taken = Vec::new();
        while let Some(reply) = replies.next().await {
            taken.push(reply.map_err(|status| status.message().to_owned()));
        }
        let expected: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::from_static(b"a")),
            Ok(Bytes::from_static(b"b")),
            Ok(Bytes::from_static(b"c")),
            Err("end".to_owned()),
        ];
        assert_eq!(taken, expected);
    }
}
