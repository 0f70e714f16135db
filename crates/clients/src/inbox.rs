//! The receiving side every client shares: what a connection reports ([`Incoming`]), in batches (every frame of
//! one read together), either from a reader task through a bounded channel or read in place by the task that
//! waits for the next event ([`Reading`]), and the waits built on it (the next message, a confirmation, a reply).

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::{ClientError, Message};

/// How many batches of received events (a batch: what one read of the socket brought) a connection buffers
/// before its reader stops reading the socket.
const INCOMING_BATCHES: usize = 16;

/// What a connection's reader task reports.
#[derive(Debug)]
pub enum Incoming {
    Message(Message),
    /// The reply to request `correlation` (its id in the protocol's terms).
    Reply {
        correlation: String,
        message: Message,
    },
    /// The server confirmed the request with this id (a STOMP RECEIPT, a MessageLoop subscribe ack).
    Confirmed(String),
    /// The server refused something; the text is its explanation.
    Refused(String),
}

/// How a client reads its socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reading {
    /// A reader task of the client's own reads whatever comes and hands it to the inbox, so acknowledgements are
    /// read while the client writes.
    #[default]
    Task,
    /// The inbox reads the socket itself, in the task that waits for the next event: no task and no hand-over per
    /// message, and nothing read while nobody waits (fit for a client that only receives).
    Direct,
}

/// The batches of events a connection's frames make, one batch per read, read where the inbox says.
pub(crate) type Batches = std::pin::Pin<Box<dyn futures::Stream<Item = Vec<Event>> + Send + Sync>>;

/// The receiving side shared by every client: events in batches (every frame of one read together), from a
/// reader task through a channel or read in place ([`Reading`]).
pub struct Inbox {
    source: Source,
    batch: std::vec::IntoIter<Event>,
}

enum Source {
    Task(mpsc::Receiver<Vec<Event>>),
    /// `None` once the reading stopped (the stream ended, or a batch ended with an error, where a reader task
    /// stops too): an ended stream is not polled again.
    Direct(Option<Batches>),
}

/// One thing a reader task reports.
pub(crate) type Event = Result<Incoming, ClientError>;

/// The sending half handed to a reader task.
#[derive(Clone)]
pub struct InboxSender {
    tx: mpsc::Sender<Vec<Event>>,
}

/// The [`Inbox`] was dropped: nobody reads what the reader task would send.
#[derive(Debug)]
pub struct InboxGone;

impl InboxSender {
    /// Hands `event` to the inbox.
    pub async fn send(&self, event: Event) -> Result<(), InboxGone> {
        self.send_all(vec![event]).await
    }

    /// Hands `events` to the inbox, in order, as one batch.
    pub async fn send_all(&self, events: Vec<Event>) -> Result<(), InboxGone> {
        if events.is_empty() {
            return Ok(());
        }
        self.tx.send(events).await.map_err(|_| InboxGone)
    }
}

/// `events` up to and including the first error, which ends the reading, and whether there was one.
fn until_error(mut events: Vec<Event>) -> (Vec<Event>, bool) {
    let failed = events.iter().position(Result::is_err);
    if let Some(at) = failed {
        events.truncate(at + 1);
    }
    (events, failed.is_some())
}

/// Hands `events` to the inbox up to and including the first error, which ends the reader: `Break` when the
/// reader should stop (an error was sent, or the inbox is gone).
pub(crate) async fn send_until_error(
    tx: &InboxSender,
    events: Vec<Event>,
) -> std::ops::ControlFlow<()> {
    let (events, failed) = until_error(events);
    if tx.send_all(events).await.is_err() || failed {
        std::ops::ControlFlow::Break(())
    } else {
        std::ops::ControlFlow::Continue(())
    }
}

impl Inbox {
    pub fn new() -> (InboxSender, Inbox) {
        let (tx, rx) = mpsc::channel(INCOMING_BATCHES);
        (InboxSender { tx }, Inbox::of(Source::Task(rx)))
    }

    /// The inbox of a connection whose frames `batches` reads: by a reader task spawned here, or in place.
    pub(crate) fn reading(mut batches: Batches, reading: Reading) -> Inbox {
        match reading {
            Reading::Direct => Inbox::of(Source::Direct(Some(batches))),
            Reading::Task => {
                let (tx, inbox) = Inbox::new();
                tokio::spawn(async move {
                    while let Some(events) = batches.next().await {
                        if send_until_error(&tx, events).await.is_break() {
                            return;
                        }
                    }
                    let _ = tx.send(Err(ClientError::Closed)).await;
                });
                inbox
            }
        }
    }

    fn of(source: Source) -> Inbox {
        Inbox {
            source,
            batch: Vec::new().into_iter(),
        }
    }

    /// The next batch; `None` once the reading has stopped.
    async fn next_batch(&mut self) -> Option<Vec<Event>> {
        match &mut self.source {
            Source::Task(rx) => rx.recv().await,
            Source::Direct(batches) => {
                let Some(events) = batches.as_mut()?.next().await else {
                    *batches = None;
                    return None;
                };
                let (events, failed) = until_error(events);
                if failed {
                    *batches = None;
                }
                Some(events)
            }
        }
    }

    /// The next event; `Err(Closed)` once the reader has stopped.
    pub async fn next(&mut self) -> Result<Incoming, ClientError> {
        loop {
            if let Some(event) = self.batch.next() {
                return event;
            }
            match self.next_batch().await {
                Some(batch) => self.batch = batch.into_iter(),
                None => return Err(ClientError::Closed),
            }
        }
    }

    /// The next message, skipping replies; refusals become errors.
    pub async fn next_message(&mut self) -> Result<Message, ClientError> {
        self.next_with(std::convert::identity).await
    }

    /// What `pick` takes from the next message, found as [`Inbox::next_message`] finds it. The message is
    /// picked where its batch hands it out: a subscriber that wants only the payload saves moving the whole
    /// [`Message`] up through every caller (a tenth of a busy benchmark subscriber).
    pub async fn next_with<T>(&mut self, pick: fn(Message) -> T) -> Result<T, ClientError> {
        loop {
            if let Some(event) = self.batch.next() {
                match event? {
                    Incoming::Message(message) => return Ok(pick(message)),
                    Incoming::Refused(text) => return Err(ClientError::Refused(text)),
                    Incoming::Reply { .. } | Incoming::Confirmed(_) => continue,
                }
            }
            match self.next_batch().await {
                Some(batch) => self.batch = batch.into_iter(),
                None => return Err(ClientError::Closed),
            }
        }
    }

    /// Waits for the confirmation of request `id`, skipping messages, within `timeout`.
    pub async fn confirmation(&mut self, id: &str, timeout: Duration) -> Result<(), ClientError> {
        let wait = async {
            loop {
                match self.next().await? {
                    Incoming::Confirmed(c) if c == id => return Ok(()),
                    Incoming::Refused(text) => return Err(ClientError::Refused(text)),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    /// The reply with `correlation`, skipping anything else, within `timeout`.
    pub async fn reply(
        &mut self,
        correlation: &str,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let wait = async {
            loop {
                match self.next().await? {
                    Incoming::Reply {
                        correlation: c,
                        message,
                    } if c == correlation => return Ok(message),
                    Incoming::Refused(text) => return Err(ClientError::Refused(text)),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;

    fn message(payload: &'static str) -> Event {
        Ok(Incoming::Message(Message {
            payload: Bytes::from_static(payload.as_bytes()),
            ..Message::default()
        }))
    }

    /// Three batches, the second ending in an error after which its last message must not be seen, and a count of
    /// the batches taken from the source.
    fn source() -> (Batches, Arc<AtomicUsize>) {
        let taken = Arc::new(AtomicUsize::new(0));
        let counted = taken.clone();
        let batches = vec![
            vec![message("a"), message("b")],
            vec![
                message("c"),
                Err(ClientError::Refused("no".into())),
                message("d"),
            ],
            vec![message("e")],
        ];
        let stream = futures::stream::iter(batches).inspect(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        (Box::pin(stream), taken)
    }

    /// What an inbox gives until it says the connection closed.
    async fn drain(inbox: &mut Inbox) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match inbox.next().await {
                Ok(Incoming::Message(m)) => {
                    seen.push(String::from_utf8_lossy(&m.payload).into_owned())
                }
                Ok(other) => seen.push(format!("{other:?}")),
                Err(ClientError::Closed) => return seen,
                Err(error) => seen.push(format!("error: {error}")),
            }
        }
    }

    #[tokio::test]
    async fn both_readings_give_the_events_in_order_up_to_the_first_error() {
        for reading in [Reading::Task, Reading::Direct] {
            let (batches, taken) = source();
            let mut inbox = Inbox::reading(batches, reading);
            let seen = drain(&mut inbox).await;
            assert_eq!(
                seen,
                ["a", "b", "c", "error: the server refused: no"],
                "{reading:?}"
            );
            assert_eq!(
                taken.load(Ordering::SeqCst),
                2,
                "{reading:?}: nothing is read after an error"
            );
            assert!(matches!(inbox.next().await, Err(ClientError::Closed)));
        }
    }

    #[tokio::test]
    async fn an_inbox_whose_reading_ended_says_closed_again() {
        for reading in [Reading::Task, Reading::Direct] {
            // An unfold stream, as `ws::batches` makes, must not be polled again once it ended.
            let batches = futures::stream::unfold(false, |done| async move {
                (!done).then(|| (vec![message("a")], true))
            });
            let mut inbox = Inbox::reading(Box::pin(batches), reading);
            assert!(matches!(inbox.next().await, Ok(Incoming::Message(_))));
            for _ in 0..2 {
                assert!(
                    matches!(inbox.next().await, Err(ClientError::Closed)),
                    "{reading:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_direct_inbox_reads_only_when_asked() {
        let (batches, taken) = source();
        let mut inbox = Inbox::reading(batches, Reading::Direct);
        tokio::task::yield_now().await;
        assert_eq!(taken.load(Ordering::SeqCst), 0, "no reader task runs");
        assert!(matches!(inbox.next().await, Ok(Incoming::Message(_))));
        assert_eq!(
            taken.load(Ordering::SeqCst),
            1,
            "one batch for two messages"
        );
    }
}
