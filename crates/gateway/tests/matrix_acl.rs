//! Authorization on canonical topics, the same for every protocol: one gatewayd whose five listeners all act as
//! an identity that may publish on `orders.>` and subscribe to nothing. Each protocol refuses the subscription
//! its documented way (STOMP ERROR, MessageLoop `PERMISSION_DENIED`, chanserv `err` source, Loom STOP_SENDING;
//! Goomerang has no error frame: dropped and counted as `acl_denied`) and accepts the publish. The refusals are
//! wire details `clients::Client` turns into one error, so each protocol's subscriber here is its test client.

mod support;

#[path = "support/chanserv_client.rs"]
mod chanserv_client;
#[path = "support/goomerang_client.rs"]
mod goomerang_client;
#[path = "support/loom_client.rs"]
mod loom_client;
#[path = "matrix/clients.rs"]
mod matrix_clients;
#[path = "support/messageloop_client.rs"]
mod messageloop_client;
#[path = "support/stomp_client.rs"]
mod stomp_client;

use bytes::Bytes;
use matrix_clients::*;
use messageloop_client::grpc;
use protocols::messageloop::pb::messageloop::shared::v2 as ml_shared;
use stomp_client::{frames, Peer};
use support::*;

use grpc::g2::inbound_message::Envelope as MlIn;
use grpc::g2::outbound_message::Envelope as MlOut;

const IDENTITY: &str = "name = \"publisher\"\npublish = [\"orders.>\"]\nsubscribe = []\n";

fn acl_config() -> String {
    let mut extra = String::new();
    for section in ["stomp", "messageloop", "goomerang", "loom", "chanserv"] {
        extra.push_str(&format!("[{section}.auth.anonymous]\n{IDENTITY}"));
    }
    config(&extra)
}

#[test]
fn publish_only_identity_is_refused_subscriptions_in_every_protocol() {
    let gateway = Gatewayd::start(&acl_config());
    let addrs = Addrs::of(&gateway);
    let rt = runtime();

    // STOMP: ERROR "Access refused" and a close on SUBSCRIBE; SEND is accepted.
    let mut stomp = Peer::connect(addrs.stomp);
    stomp.send(&frames::send_string("/topic/orders.eu", "o").header("receipt", "r1"));
    let receipt = stomp.expect_frame(WAIT);
    assert_eq!(receipt.command, "RECEIPT", "{receipt:?}");
    stomp.send(&frames::subscribe("/topic/orders.eu", "auto", "s"));
    let error = stomp.expect_frame(WAIT);
    assert_eq!(error.command, "ERROR");
    assert_eq!(error.get("message"), Some("Access refused"));
    stomp.expect_closed(WAIT);

    // MessageLoop: PERMISSION_DENIED for the subscription; publish acked.
    rt.block_on(async {
        let mut stream = grpc::open_g2(addrs.messageloop_grpc).await;
        stream
            .send(grpc::g2_inbound(
                "c",
                MlIn::Connect(grpc::g2::Connect {
                    version: "2.0.0".into(),
                    ..Default::default()
                }),
            ))
            .await;
        assert!(matches!(
            stream.next().await.expect("connected").envelope,
            Some(MlOut::Connected(_))
        ));
        stream.send(grpc::g2_subscribe("s", "orders.eu")).await;
        loop {
            let out = stream.next().await.expect("an answer");
            match out.envelope {
                Some(MlOut::Error(error)) => {
                    assert_eq!(out.id, "s");
                    assert_eq!(error.code, "PERMISSION_DENIED");
                    break;
                }
                Some(MlOut::Publication(p)) => panic!("delivered despite the ACL: {p:?}"),
                _ => {}
            }
        }
        stream
            .send(grpc::g2_inbound(
                "p",
                MlIn::Publish(grpc::g2::Publish {
                    channel: "orders.eu".into(),
                    payload: Some(ml_shared::Payload {
                        content_type: "text/plain".into(),
                        data: Some(ml_shared::payload::Data::Text("o".into())),
                    }),
                    ..Default::default()
                }),
            ))
            .await;
        loop {
            let out = stream.next().await.expect("an answer");
            match out.envelope {
                Some(MlOut::PublishAck(_)) => break,
                Some(MlOut::Error(error)) => panic!("publish refused: {error:?}"),
                _ => {}
            }
        }
    });

    // Goomerang has no error frame: the subscription is dropped and counted; publishing on orders.> is not.
    let denied = drops(&gateway, "acl_denied", Protocol::Goomerang);
    let mut goomerang = rt.block_on(goomerang_client::GoomerangClient::connect(addrs.goomerang));
    rt.block_on(goomerang.subscribe("orders.eu"));
    rt.block_on(goomerang.publish("orders.eu", GOOMERANG_KIND, Bytes::from_static(b"o"), &[]));
    gateway.wait_for("/api/topics", "the Goomerang refusal counted", |_| {
        drops(&gateway, "acl_denied", Protocol::Goomerang) > denied
    });
    // A publish outside orders.> is the control: it is refused and counted the same way.
    rt.block_on(goomerang.publish("other.eu", GOOMERANG_KIND, Bytes::from_static(b"o"), &[]));
    gateway.wait_for("/api/topics", "the refused publish counted", |_| {
        drops(&gateway, "acl_denied", Protocol::Goomerang) >= denied + 2.0
    });
    assert_eq!(
        drops(&gateway, "acl_denied", Protocol::Goomerang),
        denied + 2.0,
        "the subscription and the publish outside orders.> (not the one on orders.eu)"
    );
    let (_, topics) = gateway.get("/api/topics");
    let topics: serde_json::Value = serde_json::from_str(&topics).expect("json");
    assert_eq!(
        topic_stats(&topics, "orders.eu"),
        (0, 0),
        "no subscriber anywhere"
    );

    // Loom: the consumer stream is refused (FIN + STOP_SENDING 0x01); a producer of orders.eu is accepted.
    rt.block_on(async {
        let client = loom_client::Client::connect(addrs.loom, loom_client::Transport::Quic).await;
        let mut consumer = client
            .open(&loom_client::hello(
                loom_client::CONSUMER,
                b"c",
                b"orders.eu",
                b"",
            ))
            .await;
        let end = tokio::time::timeout(WAIT, consumer.read_to_end()).await;
        assert_eq!(end.expect("refusal in time"), Ok(Vec::new()));
        let stopped = tokio::time::timeout(WAIT, consumer.stopped()).await;
        assert_eq!(stopped.expect("STOP_SENDING in time"), Some(0x01));
        let mut producer = client
            .open(&loom_client::hello(
                loom_client::PRODUCER,
                b"p",
                b"orders.eu",
                b"",
            ))
            .await;
        producer
            .write(&loom_client::message(b"k", b"o", 64))
            .await
            .expect("producer accepted");
        producer.finish().await;
        let end = tokio::time::timeout(WAIT, producer.read_to_end()).await;
        assert_eq!(end.expect("clean end in time"), Ok(Vec::new()));
    });

    // chanserv: the subscribe request gets one `err` source; PUB answers `ok`.
    let mut chanserv = chanserv_client::Client::connect(addrs.chanserv);
    let master = chanserv.post(b"orders.eu\n");
    let (header, _) = chanserv.next_source(master).expect("an answer");
    assert!(header.starts_with("err "), "{header}");
    // `publish` asserts the `ok` answer.
    Pub::connect(Protocol::Chanserv, &addrs, &rt).publish(
        "orders.eu",
        &Outgoing {
            payload: Bytes::from_static(b"o"),
            ..Outgoing::default()
        },
        &rt,
    );
}
