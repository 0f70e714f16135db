//! Loom stream sessions, without IO: the hello decides role, identity and room topic; a producer session turns
//! stream bytes into messages it publishes on the bus, or into the pieces of a message cut through to one consumer
//! when it is over `max_message_bytes`; a consumer session joins the room's group on the bus and turns its
//! deliveries and cut-through messages into Loom messages with per-room server-assigned ids, and keeps the one
//! in-flight message (stop-and-wait, `docs/protocols/loom.md`, "Delivery"). The sessions alone call the bus; how a
//! message looks there is [`super::bridge`]'s.
//!
//! Both transports (raw QUIC streams and HTTP/3 request bodies) drive these the same way; only how a refusal
//! looks differs (see [`super::reject`]). The sessions have no timers: the deadlines of a stream are the driver's
//! IO deadlines.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use core_bus::config::GroupPolicy;
use core_bus::metrics::{record_drop, DropReason};
use core_bus::{AckHandle, Backpressure, Bus, Credit, Mailbox, Origin, Pattern, Topic};
use parking_lot::Mutex;

use super::bridge;
use super::codec::hello::{Hello, Role};
use super::codec::{
    Assembled, ConsumerFrame, Delivery, DeliveryHeader, FrameError, MessageAssembler, StreamStart,
};
use super::key::ConsumerKey;
use super::limits::Limits;
use super::reject::Rejection;
use crate::auth::{Authenticator, Credentials, Identity};

/// A stream whose hello was accepted.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub role: Role,
    /// The room's bus topic.
    pub topic: Topic,
    pub identity: Identity,
}

/// Reads the hello from the front of `src`: `Ok(None)` until it is complete.
pub fn read_hello(src: &mut BytesMut, limits: &Limits) -> Result<Option<Hello>, Rejection> {
    Ok(Hello::decode(src, limits)?)
}

/// The hello once the client finished its half: a partial hello is a rejection.
pub fn finish_hello(src: &mut BytesMut, limits: &Limits) -> Result<Hello, Rejection> {
    Ok(Hello::decode_eof(src, limits)?)
}

/// Authenticates the hello's token and checks the identity's ACL on the room topic. Rooms that would name an
/// internal (`$`) topic are refused: Loom clients must not reach inboxes or RPC topics.
pub fn admit(
    hello: &Hello,
    auth: &Authenticator,
    prefix: Option<&Topic>,
    certificate: Option<&[String]>,
) -> Result<Admitted, Rejection> {
    let secret = std::str::from_utf8(&hello.token).map_err(|_| Rejection::Unauthorized)?;
    let by_token = || {
        auth.authenticate(Credentials {
            login: None,
            secret: Some(secret),
        })
        .map_err(|_| Rejection::Unauthorized)
    };
    // loomd's auth modes: a certificate alone (`mtls`), a token alone (`token`), or both, when the client
    // presents both (`both`): then each identity must allow the stream, and the certificate's names it.
    let (identity, also) = match certificate {
        Some(names) => {
            let identity = auth
                .authenticate_certificate(names)
                .map_err(|_| Rejection::Unauthorized)?;
            let also = if secret.is_empty() {
                None
            } else {
                Some(by_token()?)
            };
            (identity, also)
        }
        None => (by_token()?, None),
    };
    let topic = bridge::room_topic(hello, prefix);
    let allows = |identity: &Identity| match hello.role {
        Role::Producer => identity.may_publish(&topic),
        Role::Consumer => identity.may_subscribe(&Pattern::exact(&topic)),
    };
    if topic.is_internal() || !allows(&identity) || also.as_ref().is_some_and(|i| !allows(i)) {
        return Err(Rejection::Unauthorized);
    }
    Ok(Admitted {
        role: hello.role,
        topic,
        identity,
    })
}

/// Per-room msg id counters of one listener. Ids start at 1 and are never reused; like upstream rooms, a
/// counter lives as long as the process.
#[derive(Debug, Default)]
pub struct MsgIds {
    rooms: Mutex<HashMap<Topic, u64>>,
}

impl MsgIds {
    pub fn next(&self, room: &Topic) -> u64 {
        let mut rooms = self.rooms.lock();
        let counter = rooms.entry(room.clone()).or_insert(0);
        *counter = counter.saturating_add(1);
        *counter
    }
}

/// What a producer stream's next bytes came to.
#[derive(Debug)]
pub enum Produced {
    /// A whole message (at most `max_message_bytes`) was published on the bus; its back-pressure, if any, is
    /// [`ProducerSession::take_backpressure`].
    Published,
    /// A message over `max_message_bytes` begins: it is cut through to one Loom consumer of the room.
    Streamed(StreamStart),
    /// The next body bytes of the message being cut through.
    Chunk(Bytes),
    /// The message being cut through is complete.
    End,
}

/// A producer stream after its hello.
pub struct ProducerSession {
    bus: Bus,
    topic: Topic,
    origin: Origin,
    assembler: MessageAssembler,
    too_large: Rejection,
    backpressure: Option<Backpressure>,
}

impl ProducerSession {
    pub fn new(bus: Bus, topic: Topic, origin: Origin, limits: &Limits) -> Self {
        ProducerSession {
            bus,
            topic,
            origin,
            assembler: MessageAssembler::new(limits),
            too_large: Rejection::TooLarge {
                limit: limits
                    .max_streamed_message_bytes
                    .max(limits.max_message_bytes),
            },
            backpressure: None,
        }
    }

    /// The next step from `src`: a whole message is published on the bus. `Ok(None)`: more bytes are needed, or,
    /// when `eof`, the stream ended cleanly at a message boundary. A stream ending inside a message is a protocol
    /// error (the partial message is lost); a message over `max_streamed_message_bytes` ends the stream with
    /// [`Rejection::TooLarge`] as soon as that is known.
    pub fn handle_input(
        &mut self,
        src: &mut BytesMut,
        eof: bool,
    ) -> Result<Option<Produced>, Rejection> {
        let assembled = if eof {
            self.assembler.decode_eof(src)
        } else {
            self.assembler.decode(src)
        };
        Ok(Some(match assembled.map_err(Rejection::from)? {
            Some(Assembled::Message(message)) => {
                let envelope = bridge::to_envelope(self.topic.clone(), message, self.origin);
                self.backpressure = self.bus.publish(envelope).backpressure;
                Produced::Published
            }
            Some(Assembled::Streamed(start)) => Produced::Streamed(start),
            Some(Assembled::Chunk(chunk)) => Produced::Chunk(chunk),
            Some(Assembled::End { .. }) => Produced::End,
            Some(Assembled::Dropped(_)) => return Err(self.too_large.clone()),
            None if self.assembler.discarding() => return Err(self.too_large.clone()),
            None => return Ok(None),
        }))
    }

    /// What the last publish reported: the driver reads nothing more until it is ready, so QUIC flow control
    /// pushes back on the producer.
    pub fn take_backpressure(&mut self) -> Option<Backpressure> {
        self.backpressure.take()
    }

    /// The message that just began is cut through to a Loom consumer, past the bus: whoever else would get the
    /// room's messages (its fanout subscribers) cannot take one that is not held whole, and each counts a drop.
    pub fn bypass_bus(&self) {
        for protocol in self.bus.fanout_protocols(&self.topic) {
            record_drop(DropReason::TooLarge, protocol);
        }
    }
}

#[derive(Debug)]
struct InFlight {
    msg_id: u64,
    ack: Option<AckHandle>,
}

/// A cut-through message being written to a consumer: it has its msg id, and is not in flight until its end.
#[derive(Debug)]
#[must_use]
pub struct Writing {
    msg_id: u64,
}

/// A consumer stream after its hello: a member of the room's group on the bus, with at most one message in
/// flight until the consumer acks its id.
pub struct ConsumerSession {
    topic: Topic,
    ids: Arc<MsgIds>,
    in_flight: Option<InFlight>,
    /// The next message to write.
    transmit: Option<Delivery>,
    /// Dropped after `in_flight`: leaving the group hands an unacked message to another consumer.
    mailbox: Mailbox,
}

impl ConsumerSession {
    /// Joins the room's anycast group with a window of one: one delivery at a time, the next after the ack.
    pub fn join(
        bus: &Bus,
        origin: Origin,
        topic: Topic,
        ids: Arc<MsgIds>,
    ) -> Result<Self, Rejection> {
        let mut mailbox = bus.mailbox(origin);
        mailbox
            .join_group(&topic, Credit::Window(1), GroupPolicy::ROOM)
            .map_err(|_| Rejection::Unauthorized)?;
        Ok(ConsumerSession {
            topic,
            ids,
            in_flight: None,
            transmit: None,
            mailbox,
        })
    }

    /// The mailbox the driver waits on for [`ConsumerSession::handle_deliveries`].
    pub fn mailbox_mut(&mut self) -> &mut Mailbox {
        &mut self.mailbox
    }

    /// Whether the consumer may get its next message.
    pub fn ready(&self) -> bool {
        self.in_flight.is_none()
    }

    /// Takes a bus delivery (the window is one, so a batch is one delivery): the Loom message to write, under the
    /// room's next msg id, is [`ConsumerSession::poll_transmit`]'s.
    pub fn handle_deliveries(&mut self, delivery: core_bus::Delivery) {
        let msg_id = self.ids.next(&self.topic);
        let message = bridge::from_envelope(&delivery.envelope, msg_id);
        self.in_flight = Some(InFlight {
            msg_id,
            ack: delivery.ack,
        });
        self.transmit = Some(message);
    }

    /// The Loom message to write now, if any.
    pub fn poll_transmit(&mut self) -> Option<Delivery> {
        self.transmit.take()
    }

    /// Starts writing a cut-through message: assigns the room's next msg id. The message is in flight once
    /// [`ConsumerSession::written`] is given the returned [`Writing`] after its EOM.
    pub fn start_streamed(&mut self, key: &Bytes, declared_size: u64) -> (DeliveryHeader, Writing) {
        let msg_id = self.ids.next(&self.topic);
        let header = DeliveryHeader {
            key: ConsumerKey::derive(key, msg_id),
            declared_size,
            msg_id,
        };
        (header, Writing { msg_id })
    }

    /// The cut-through message's EOM is written: it waits for its ack like any other.
    pub fn written(&mut self, writing: Writing) {
        self.in_flight = Some(InFlight {
            msg_id: writing.msg_id,
            ack: None,
        });
    }

    /// Decodes every complete frame the consumer sent in `src`; an ack for the in-flight id settles it on the bus.
    /// Acks for other ids and frames of other types are ignored, as upstream does.
    pub fn handle_input(&mut self, src: &mut BytesMut) -> Result<(), Rejection> {
        while let Some(frame) = ConsumerFrame::decode(src).map_err(FrameError::from)? {
            if let ConsumerFrame::Ack { msg_id } = frame {
                if self.in_flight.as_ref().is_some_and(|f| f.msg_id == msg_id) {
                    if let Some(ack) = self.in_flight.take().and_then(|f| f.ack) {
                        ack.ack();
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Allowed, AuthConfig, CertificateIdentity, StaticToken};
    use bytes::Bytes;
    use core_bus::config::{BusConfig, GroupPolicy};
    use core_bus::{ConnectionId, Envelope, Protocol};

    use crate::loom::bridge::tests::hello;

    fn auth() -> Authenticator {
        let identity = |name: &str, publish: &str, subscribe: &str| Identity {
            name: name.into(),
            publish: Allowed::Patterns(vec![Pattern::parse(publish).unwrap()]),
            subscribe: Allowed::Patterns(vec![Pattern::parse(subscribe).unwrap()]),
        };
        Authenticator::new(AuthConfig {
            required: true,
            tokens: vec![
                StaticToken {
                    login: None,
                    token: "p".into(),
                    identity: identity("producer", "orders.>", "none"),
                },
                StaticToken {
                    login: None,
                    token: "c".into(),
                    identity: identity("consumer", "none", "orders.>"),
                },
            ],
            certificates: vec![CertificateIdentity {
                common_name: "billing.example".into(),
                identity: identity("billing", "orders.eu", "orders.>"),
            }],
            ..AuthConfig::default()
        })
        .unwrap()
    }

    fn bus() -> Bus {
        Bus::new(BusConfig::default())
    }

    fn origin() -> Origin {
        Origin {
            protocol: Protocol::Loom,
            connection: ConnectionId(1),
        }
    }

    #[test]
    fn a_certificate_names_the_identity_and_a_token_beside_it_must_agree() {
        let auth = auth();
        let names = ["billing-cn".to_owned(), "billing.example".to_owned()];
        // mtls: the certificate alone (here by its DNS subject alternative name).
        let ok = admit(
            &hello(Role::Producer, "orders.eu", ""),
            &auth,
            None,
            Some(&names),
        )
        .unwrap();
        assert_eq!(ok.identity.name, "billing");
        assert_eq!(
            admit(
                &hello(Role::Producer, "orders.us", ""),
                &auth,
                None,
                Some(&names)
            )
            .unwrap_err(),
            Rejection::Unauthorized
        );
        // A certificate no entry names is refused, whatever the token.
        let stranger = ["someone".to_owned()];
        assert!(admit(
            &hello(Role::Producer, "orders.eu", "p"),
            &auth,
            None,
            Some(&stranger)
        )
        .is_err());
        // both: the token must be valid and allow the stream too.
        assert!(admit(
            &hello(Role::Producer, "orders.eu", "p"),
            &auth,
            None,
            Some(&names)
        )
        .is_ok());
        assert!(admit(
            &hello(Role::Producer, "orders.eu", "c"),
            &auth,
            None,
            Some(&names)
        )
        .is_err());
        assert!(admit(
            &hello(Role::Producer, "orders.eu", "x"),
            &auth,
            None,
            Some(&names)
        )
        .is_err());
    }

    #[test]
    fn admission_checks_token_role_and_room() {
        let auth = auth();
        let ok = admit(&hello(Role::Producer, "orders.eu", "p"), &auth, None, None).unwrap();
        assert_eq!((ok.role, ok.topic.as_str()), (Role::Producer, "orders.eu"));
        assert_eq!(ok.identity.name, "producer");
        assert!(admit(&hello(Role::Consumer, "orders.eu", "c"), &auth, None, None).is_ok());
        for (role, room, token) in [
            (Role::Producer, "orders.eu", ""),
            (Role::Producer, "orders.eu", "wrong"),
            (Role::Consumer, "orders.eu", "p"),
            (Role::Producer, "orders.eu", "c"),
            (Role::Producer, "other", "p"),
        ] {
            assert_eq!(
                admit(&hello(role, room, token), &auth, None, None).unwrap_err(),
                Rejection::Unauthorized,
                "{role:?} {room} {token}"
            );
        }
        let bad_utf8 = Hello {
            token: Bytes::from_static(b"\xff"),
            ..hello(Role::Producer, "orders.eu", "")
        };
        assert_eq!(
            admit(&bad_utf8, &auth, None, None).unwrap_err(),
            Rejection::Unauthorized
        );
    }

    #[test]
    fn internal_rooms_are_refused_even_when_open() {
        let open = Authenticator::open();
        let h = hello(Role::Producer, "$inbox.1.x", "");
        assert_eq!(
            admit(&h, &open, None, None).unwrap_err(),
            Rejection::Unauthorized
        );
        let prefix = Topic::parse("loom").unwrap();
        assert!(admit(&h, &open, Some(&prefix), None).is_ok());
    }

    #[test]
    fn read_hello_needs_more_then_refuses_truncation() {
        let mut bytes = Vec::new();
        hello(Role::Consumer, "r", "").encode(&mut bytes);
        let mut src = BytesMut::from(&bytes[..5]);
        assert_eq!(read_hello(&mut src, &Limits::default()), Ok(None));
        assert!(finish_hello(&mut src, &Limits::default()).is_err());
        let mut src = BytesMut::from(&bytes[..]);
        assert!(finish_hello(&mut src, &Limits::default()).is_ok());
    }

    #[test]
    fn msg_ids_are_per_room_from_one() {
        let ids = MsgIds::default();
        let (a, b) = (Topic::parse("a").unwrap(), Topic::parse("b").unwrap());
        assert_eq!((ids.next(&a), ids.next(&a), ids.next(&b)), (1, 2, 1));
    }

    #[test]
    fn producer_session_publishes_keyed_envelopes_and_drops_whole() {
        let limits = Limits {
            max_message_bytes: 4,
            max_streamed_message_bytes: 4,
            ..Limits::default()
        };
        let bus = bus();
        let topic = Topic::parse("r").unwrap();
        let mut mailbox = bus.mailbox(origin());
        mailbox
            .join_group(&topic, Credit::Window(1), GroupPolicy::ROOM)
            .unwrap();
        let mut session = ProducerSession::new(bus.clone(), topic.clone(), origin(), &limits);
        // The test vectors' message (key k, declared 5 → over the limit of 4), then key k, body "hi", msg id 9.
        let mut src = BytesMut::from(
            &[
                0x01, 0x6b, 0x05, 0x07, 0x05, b'h', b'e', b'l', b'l', b'o', 0x00, 0x01, 0x6b, 0x00,
                0x09, 0x02, b'h', b'i', 0x00, 0x01,
            ][..],
        );
        assert_eq!(
            session.handle_input(&mut src, false).unwrap_err(),
            Rejection::TooLarge { limit: 4 }
        );
        // A new stream: only the message within the limit.
        let mut session = ProducerSession::new(bus.clone(), topic, origin(), &limits);
        let mut src = BytesMut::from(&[0x01, 0x6b, 0x00, 0x09, 0x02, b'h', b'i', 0x00, 0x01][..]);
        let Ok(Some(Produced::Published)) = session.handle_input(&mut src, false) else {
            panic!("expected a message");
        };
        let mut got = Vec::new();
        assert_eq!(mailbox.try_recv_batch(&mut got, 8), Ok(1));
        let envelope = &got[0].envelope;
        assert_eq!(envelope.topic.as_str(), "r");
        assert_eq!(&envelope.payload[..], b"hi");
        assert_eq!(envelope.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(envelope.content_type, None);
        assert!(envelope.headers.is_empty());
        assert!(matches!(session.handle_input(&mut src, false), Ok(None)));
        assert_eq!(
            session.handle_input(&mut src, true).unwrap_err(),
            Rejection::Protocol(FrameError::Truncated)
        );
        let mut empty_key = BytesMut::from(&[0x00][..]);
        assert_eq!(
            session.handle_input(&mut empty_key, false).unwrap_err(),
            Rejection::Protocol(FrameError::EmptyKey)
        );
    }

    #[test]
    fn producer_session_cuts_through_between_the_limits() {
        let limits = Limits {
            max_message_bytes: 4,
            max_streamed_message_bytes: 6,
            ..Limits::default()
        };
        let mut session =
            ProducerSession::new(bus(), Topic::parse("r").unwrap(), origin(), &limits);
        // Key k, declared 0, body "hel" + "lo": held until it passes 4 bytes, then passed on.
        let mut src = BytesMut::from(
            &[
                0x01, 0x6b, 0x00, 0x00, 0x03, b'h', b'e', b'l', 0x02, b'l', b'o', 0x00,
            ][..],
        );
        let Ok(Some(Produced::Streamed(start))) = session.handle_input(&mut src, false) else {
            panic!("expected a cut-through start");
        };
        assert_eq!(
            (&start.key[..], &start.held[..]),
            (&b"k"[..], &b"hello"[..])
        );
        assert!(matches!(
            session.handle_input(&mut src, false),
            Ok(Some(Produced::End))
        ));
        // Declared 5: passed on from the first chunk; a body past 6 bytes ends the stream.
        src.extend_from_slice(&[0x01, 0x6b, 0x05, 0x00, 0x04, b'a', b'b', b'c', b'd']);
        assert!(matches!(
            session.handle_input(&mut src, false),
            Ok(Some(Produced::Streamed(StreamStart {
                declared_size: 5,
                ..
            })))
        ));
        assert!(
            matches!(session.handle_input(&mut src, false), Ok(Some(Produced::Chunk(c))) if &c[..] == b"abcd")
        );
        src.extend_from_slice(&[0x03, b'e', b'f', b'g']);
        assert_eq!(
            session.handle_input(&mut src, false).unwrap_err(),
            Rejection::TooLarge { limit: 6 }
        );
    }

    #[test]
    fn a_streamed_message_is_in_flight_once_written() {
        let topic = Topic::parse("room").unwrap();
        let mut session =
            ConsumerSession::join(&bus(), origin(), topic, Arc::new(MsgIds::default())).unwrap();
        let (header, writing) = session.start_streamed(&Bytes::from_static(b"k"), 0);
        assert_eq!((header.msg_id, header.key.as_bytes()), (1, &b"k"[..]));
        assert!(session.ready());
        session.written(writing);
        assert!(!session.ready());
        session
            .handle_input(&mut BytesMut::from(&[0x01, 0x01][..]))
            .unwrap();
        assert!(session.ready());
    }

    #[test]
    fn consumer_session_is_stop_and_wait() {
        let bus = bus();
        let topic = Topic::parse("room").unwrap();
        let ids = Arc::new(MsgIds::default());
        let mut session =
            ConsumerSession::join(&bus, origin(), topic.clone(), ids.clone()).unwrap();
        for body in ["one", "two"] {
            bus.publish(Envelope::new(topic.clone(), body, origin()));
        }
        let mut got = Vec::new();
        assert_eq!(session.mailbox_mut().try_recv_batch(&mut got, 8), Ok(1));
        session.handle_deliveries(got.remove(0));
        let first = session.poll_transmit().unwrap();
        assert_eq!((first.msg_id, &first.body[..]), (1, &b"one"[..]));
        // Key-less bus message → key is the msg id in decimal.
        assert_eq!(first.key.as_bytes(), b"1");
        assert!(!session.ready());
        assert_eq!(session.mailbox_mut().try_recv_batch(&mut got, 8), Ok(0));

        // Unknown frame types and other ids change nothing.
        let mut frames = BytesMut::from(&[0x02, 0x01, 0x01, 0x63, 0x01][..]);
        session.handle_input(&mut frames).unwrap();
        assert_eq!(&frames[..], &[0x01]);
        assert!(!session.ready());
        assert_eq!(session.mailbox_mut().try_recv_batch(&mut got, 8), Ok(0));

        frames.extend_from_slice(&[0x01]);
        session.handle_input(&mut frames).unwrap();
        assert!(session.ready());
        assert_eq!(session.mailbox_mut().try_recv_batch(&mut got, 8), Ok(1));
        session.handle_deliveries(got.remove(0));
        let second = session.poll_transmit().unwrap();
        assert_eq!((second.msg_id, &second.body[..]), (2, &b"two"[..]));
        assert_eq!(ids.next(&topic), 3);

        let mut corrupt = BytesMut::from(&[0xff; 11][..]);
        assert!(matches!(
            session.handle_input(&mut corrupt),
            Err(Rejection::Protocol(FrameError::Varint(_)))
        ));
    }
}
