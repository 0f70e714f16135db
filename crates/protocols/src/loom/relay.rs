//! Cut-through of Loom messages over `max_message_bytes`: they never go onto the bus. A listener keeps its
//! consumer streams by room ([`Relay`]); a producer picks one by rendezvous hashing of the message key over the
//! room's consumer streams and hands it a [`Streamed`] message whose body follows through a pipe of
//! [`PIPE_CHUNKS`] pieces. While the pipe is full the producer reads nothing more from its stream, so QUIC flow
//! control pushes back on it: a message is never held whole. A pipe dropped before [`Pipe::finish`] means the
//! message failed, and the consumer's stream must end in an error, never in what looks like a whole message.
//!
//! Every streamed message is counted once, when it is dropped, as
//! `gatewayd_loom_streamed_messages_total{outcome="delivered"|"failed"}`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use core_bus::Topic;
use metrics::counter;
use parking_lot::Mutex;
use tokio::sync::mpsc;

/// Pieces (chunks as the producer sent them) buffered per streamed message, as upstream's 1 MiB / 64 KiB.
pub const PIPE_CHUNKS: usize = 16;

/// Streamed messages by outcome.
pub const STREAMED: &str = "gatewayd_loom_streamed_messages_total";

/// The consumer stream went away before it took the whole message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerGone;

/// The producer's side failed before the message's end (over the limit, stream broken, silent too long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken;

enum Piece {
    Body(Bytes),
    End,
}

/// The consumer stream of one room a message goes to.
struct Entry {
    id: u64,
    offers: mpsc::Sender<Streamed>,
}

/// The consumer streams of one listener, by room topic.
#[derive(Default)]
pub struct Relay {
    rooms: Mutex<HashMap<Topic, Vec<Entry>>>,
    next_id: AtomicU64,
}

impl Relay {
    /// Registers a consumer stream of `topic`; it leaves the room when the [`Seat`] is dropped.
    pub fn join(self: &Arc<Self>, topic: &Topic) -> Seat {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (offers, receiver) = mpsc::channel(1);
        self.rooms
            .lock()
            .entry(topic.clone())
            .or_default()
            .push(Entry { id, offers });
        Seat {
            relay: self.clone(),
            topic: topic.clone(),
            id,
            offers: receiver,
        }
    }

    /// The consumer stream of `topic` that `key` goes to: the highest rendezvous weight of key and stream, so a
    /// key sticks to one stream while the room's streams stay the same. `None` when the room has none.
    pub fn pick(&self, topic: &Topic, key: &[u8]) -> Option<Offer> {
        let rooms = self.rooms.lock();
        let entry = rooms.get(topic)?.iter().max_by_key(|entry| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut hasher);
            entry.id.hash(&mut hasher);
            hasher.finish()
        })?;
        Some(Offer(entry.offers.clone()))
    }
}

/// One consumer stream's place in its room.
pub struct Seat {
    relay: Arc<Relay>,
    topic: Topic,
    id: u64,
    offers: mpsc::Receiver<Streamed>,
}

impl Seat {
    /// The next message handed to this consumer stream. Call it only when the stream may take a message.
    pub async fn next(&mut self) -> Option<Streamed> {
        self.offers.recv().await
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut rooms = self.relay.rooms.lock();
        if let Some(entries) = rooms.get_mut(&self.topic) {
            entries.retain(|entry| entry.id != self.id);
            if entries.is_empty() {
                rooms.remove(&self.topic);
            }
        }
    }
}

/// A chosen consumer stream, not yet given the message.
pub struct Offer(mpsc::Sender<Streamed>);

impl Offer {
    /// Hands the message to the consumer stream (waiting while another handed message waits there) and returns
    /// the pipe its body goes through.
    pub async fn hand(self, key: Bytes, declared_size: u64) -> Result<Pipe, ConsumerGone> {
        let (pipe, pieces) = mpsc::channel(PIPE_CHUNKS);
        let streamed = Streamed {
            key,
            declared_size,
            pieces,
            delivered: false,
        };
        self.0.send(streamed).await.map_err(|_| ConsumerGone)?;
        Ok(Pipe(pipe))
    }
}

/// The producer's end of a streamed message's body. Dropping it before [`Pipe::finish`] fails the message.
pub struct Pipe(mpsc::Sender<Piece>);

impl Pipe {
    /// Passes on the next body bytes, waiting while [`PIPE_CHUNKS`] pieces are not yet written.
    pub async fn send(&mut self, body: Bytes) -> Result<(), ConsumerGone> {
        if body.is_empty() {
            return Ok(());
        }
        self.0
            .send(Piece::Body(body))
            .await
            .map_err(|_| ConsumerGone)
    }

    /// The message is complete.
    pub async fn finish(self) -> Result<(), ConsumerGone> {
        self.0.send(Piece::End).await.map_err(|_| ConsumerGone)
    }
}

/// The consumer's end of a streamed message.
pub struct Streamed {
    pub key: Bytes,
    /// The producer's announced size (0 = unknown).
    pub declared_size: u64,
    pieces: mpsc::Receiver<Piece>,
    delivered: bool,
}

impl Streamed {
    /// The next body bytes, `Ok(None)` once the message is complete.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Broken> {
        match self.pieces.recv().await {
            Some(Piece::Body(body)) => Ok(Some(body)),
            Some(Piece::End) => Ok(None),
            None => Err(Broken),
        }
    }

    /// The whole message, EOM included, was written to the consumer.
    pub fn delivered(mut self) {
        self.delivered = true;
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        let outcome = if self.delivered {
            "delivered"
        } else {
            "failed"
        };
        counter!(STREAMED, "outcome" => outcome).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> Topic {
        Topic::parse(name).unwrap()
    }

    /// The id of the stream `key` goes to.
    fn target(relay: &Relay, room: &Topic, key: &[u8]) -> u64 {
        let offer = relay.pick(room, key).unwrap();
        let rooms = relay.rooms.lock();
        rooms[room]
            .iter()
            .find(|entry| entry.offers.same_channel(&offer.0))
            .unwrap()
            .id
    }

    #[tokio::test]
    async fn a_key_sticks_to_one_stream_and_moves_only_when_its_stream_leaves() {
        let relay = Arc::new(Relay::default());
        let room = topic("r");
        let mut seats: Vec<Seat> = (0..3).map(|_| relay.join(&room)).collect();
        assert!(relay.pick(&topic("other"), b"k").is_none());
        let keys: Vec<Vec<u8>> = (0..64).map(|i| format!("key{i}").into_bytes()).collect();
        let before: Vec<u64> = keys.iter().map(|k| target(&relay, &room, k)).collect();
        let again: Vec<u64> = keys.iter().map(|k| target(&relay, &room, k)).collect();
        assert_eq!(before, again);
        assert!(
            seats.iter().all(|seat| before.contains(&seat.id)),
            "{before:?}"
        );
        let gone = seats.remove(1).id;
        for (key, was) in keys.iter().zip(&before) {
            let now = target(&relay, &room, key);
            assert_ne!(now, gone);
            if *was != gone {
                assert_eq!(now, *was, "only the leaving stream's keys move");
            }
        }
        seats.clear();
        assert!(relay.rooms.lock().is_empty());
    }

    #[tokio::test]
    async fn body_flows_until_end_and_a_dropped_pipe_is_broken() {
        let relay = Arc::new(Relay::default());
        let room = topic("r");
        let mut seat = relay.join(&room);
        let offer = relay.pick(&room, b"k").unwrap();
        let mut pipe = offer.hand(Bytes::from_static(b"k"), 7).await.unwrap();
        let mut streamed = seat.next().await.unwrap();
        assert_eq!((&streamed.key[..], streamed.declared_size), (&b"k"[..], 7));
        pipe.send(Bytes::from_static(b"ab")).await.unwrap();
        pipe.send(Bytes::new()).await.unwrap();
        pipe.finish().await.unwrap();
        assert_eq!(streamed.next().await, Ok(Some(Bytes::from_static(b"ab"))));
        assert_eq!(streamed.next().await, Ok(None));
        streamed.delivered();

        let mut pipe = relay
            .pick(&room, b"k")
            .unwrap()
            .hand(Bytes::from_static(b"k"), 0)
            .await
            .unwrap();
        let mut streamed = seat.next().await.unwrap();
        pipe.send(Bytes::from_static(b"x")).await.unwrap();
        drop(pipe);
        assert_eq!(streamed.next().await, Ok(Some(Bytes::from_static(b"x"))));
        assert_eq!(streamed.next().await, Err(Broken));
        drop(streamed);

        // The consumer's side going away is seen by the producer.
        let mut pipe = relay
            .pick(&room, b"k")
            .unwrap()
            .hand(Bytes::from_static(b"k"), 0)
            .await
            .unwrap();
        let offer = relay.pick(&room, b"k").unwrap();
        drop(seat);
        assert_eq!(pipe.send(Bytes::from_static(b"x")).await, Err(ConsumerGone));
        assert!(offer.hand(Bytes::from_static(b"k"), 0).await.is_err());
    }

    #[tokio::test]
    async fn a_full_pipe_holds_the_producer() {
        let relay = Arc::new(Relay::default());
        let room = topic("r");
        let _seat = relay.join(&room);
        let mut pipe = relay
            .pick(&room, b"k")
            .unwrap()
            .hand(Bytes::from_static(b"k"), 0)
            .await
            .unwrap();
        for _ in 0..PIPE_CHUNKS {
            pipe.send(Bytes::from_static(b"c")).await.unwrap();
        }
        let more = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            pipe.send(Bytes::from_static(b"c")),
        );
        assert!(more.await.is_err(), "a seventeenth piece must wait");
    }
}
