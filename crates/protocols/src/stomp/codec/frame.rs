//! STOMP frames as values: the [`Command`], the ordered [`Headers`] (duplicates kept, first
//! wins on lookup), the body, and the protocol [`Version`] a session speaks.
//!
//! Header names and values are kept as bytes: STOMP allows any octets in them, and a non-UTF-8
//! header must survive a STOMP-to-STOMP hop unchanged (docs/protocols/stomp.md, "Frames on the
//! wire"). Use [`Frame::header_str`] / [`Frame::require_header`] where the session needs text.
//! A decoded frame's header values without escapes are ranges of the frame's bytes, read through
//! [`Headers::iter`] and [`Headers::get`] as slices; [`Headers::get_bytes`] and
//! [`Headers::iter_shared`] give a value that outlives the frame.

use std::fmt;

use bytes::Bytes;

use crate::stomp::error::StompError;

/// Header names the adapter itself reads or writes.
pub mod header {
    pub const ACCEPT_VERSION: &str = "accept-version";
    pub const ACK: &str = "ack";
    pub const CONTENT_LENGTH: &str = "content-length";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const DESTINATION: &str = "destination";
    pub const HEART_BEAT: &str = "heart-beat";
    pub const HOST: &str = "host";
    pub const ID: &str = "id";
    pub const LOGIN: &str = "login";
    pub const MESSAGE: &str = "message";
    pub const MESSAGE_ID: &str = "message-id";
    pub const PASSCODE: &str = "passcode";
    pub const RECEIPT: &str = "receipt";
    pub const RECEIPT_ID: &str = "receipt-id";
    pub const REDELIVERED: &str = "redelivered";
    pub const REPLY_TO: &str = "reply-to";
    pub const SELECTOR: &str = "selector";
    pub const SERVER: &str = "server";
    pub const SESSION: &str = "session";
    pub const SUBSCRIPTION: &str = "subscription";
    pub const TRANSACTION: &str = "transaction";
    pub const VERSION: &str = "version";

    /// The names above, those a client sends most often first.
    const ALL: [&str; 22] = [
        DESTINATION,
        CONTENT_LENGTH,
        CONTENT_TYPE,
        RECEIPT,
        ID,
        ACK,
        SUBSCRIPTION,
        TRANSACTION,
        REPLY_TO,
        MESSAGE_ID,
        ACCEPT_VERSION,
        HEART_BEAT,
        HOST,
        LOGIN,
        PASSCODE,
        SELECTOR,
        MESSAGE,
        RECEIPT_ID,
        REDELIVERED,
        SERVER,
        SESSION,
        VERSION,
    ];

    /// `name` as one of the names above, so a decoded header of that name needs no reference into its frame's
    /// buffer (a reference count taken and released per header).
    pub fn known(name: &[u8]) -> Option<&'static str> {
        ALL.into_iter().find(|known| known.as_bytes() == name)
    }
}

/// A STOMP protocol version. Ordered, so the highest common version is a `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V1_0,
    V1_1,
    V1_2,
}

impl Version {
    /// Every version gatewayd speaks, lowest first.
    pub const ALL: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    /// The version as written in `accept-version` / `version` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// Parse one `accept-version` entry (`"1.0"`, `"1.1"`, `"1.2"`).
    pub fn from_bytes(s: &[u8]) -> Option<Version> {
        match s {
            b"1.0" => Some(Version::V1_0),
            b"1.1" => Some(Version::V1_1),
            b"1.2" => Some(Version::V1_2),
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every command of STOMP 1.0–1.2, client and server side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    // Client frames.
    Connect,
    Stomp,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    // Server frames.
    Connected,
    Message,
    Receipt,
    Error,
}

impl Command {
    /// Every command, client commands first.
    pub const ALL: [Command; 15] = [
        Command::Connect,
        Command::Stomp,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Connected,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];

    /// The command as written on the wire (commands are case-sensitive).
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// The command spelled exactly `s`, if any.
    pub fn from_bytes(s: &[u8]) -> Option<Command> {
        Command::ALL
            .into_iter()
            .find(|c| c.as_str().as_bytes() == s)
    }

    /// A frame a client may send (CONNECT … DISCONNECT).
    pub fn is_client(self) -> bool {
        !self.is_server()
    }

    /// A frame only a server sends (CONNECTED, MESSAGE, RECEIPT, ERROR).
    pub fn is_server(self) -> bool {
        matches!(
            self,
            Command::Connected | Command::Message | Command::Receipt | Command::Error
        )
    }

    /// CONNECT, STOMP and CONNECTED: their headers are never escaped, in any version.
    pub fn is_connect(self) -> bool {
        matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }

    /// SEND, MESSAGE and ERROR: the only frames that may carry a body.
    pub fn allows_body(self) -> bool {
        matches!(self, Command::Send | Command::Message | Command::Error)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `name:value` header, unescaped, as [`Headers::iter`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// Where a header value is kept: a range of the frame it was decoded from (a decoded value without escapes,
/// which so takes no reference count of its own), or bytes of its own (an unescaped value, a header pushed by
/// code).
#[derive(Clone)]
enum Value {
    InFrame(std::ops::Range<usize>),
    Own(Bytes),
}

/// A header's name and value.
#[derive(Clone)]
pub(crate) struct Entry {
    name: Bytes,
    value: Value,
}

impl Entry {
    /// A decoded header whose value is `frame[value]` as it is.
    pub(crate) fn in_frame(name: Bytes, value: std::ops::Range<usize>) -> Entry {
        Entry {
            name,
            value: Value::InFrame(value),
        }
    }

    /// A decoded header whose value had to be unescaped.
    pub(crate) fn owned(name: Bytes, value: Bytes) -> Entry {
        Entry {
            name,
            value: Value::Own(value),
        }
    }
}

/// Headers in wire order. Repeated names are kept; lookups return the first one, which is
/// the one that counts (STOMP 1.1/1.2 "Repeated Header Entries").
#[derive(Clone, Default)]
pub struct Headers {
    /// The decoded frame the [`Value::InFrame`] ranges point into (empty for built headers).
    frame: Bytes,
    entries: Vec<Entry>,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// The headers decoded from `frame`.
    pub(crate) fn decoded(frame: Bytes, entries: Vec<Entry>) -> Headers {
        Headers { frame, entries }
    }

    fn value<'a>(&'a self, value: &'a Value) -> &'a [u8] {
        match value {
            Value::InFrame(range) => &self.frame[range.clone()],
            Value::Own(bytes) => bytes,
        }
    }

    fn shared(&self, value: &Value) -> Bytes {
        match value {
            Value::InFrame(range) => self.frame.slice(range.clone()),
            Value::Own(bytes) => bytes.clone(),
        }
    }

    /// Append a header (after any existing one of the same name, so it does not win).
    pub fn push(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.entries.push(Entry {
            name: name.into(),
            value: Value::Own(value.into()),
        });
    }

    /// The value of the first header called `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|h| h.name == name.as_bytes())
            .map(|h| h.value)
    }

    /// The value of the first header called `name`, as bytes sharing the frame's.
    pub fn get_bytes(&self, name: &str) -> Option<Bytes> {
        let entry = self.entries.iter().find(|e| e.name == name.as_bytes())?;
        Some(self.shared(&entry.value))
    }

    /// Every header in wire order, each able to give its value as bytes sharing the frame's (which takes a
    /// reference on the frame's buffer only for the values taken).
    pub fn iter_shared(&self) -> impl Iterator<Item = SharedHeader<'_>> + '_ {
        self.entries.iter().map(|entry| SharedHeader {
            headers: self,
            entry,
        })
    }

    /// Every value of the headers called `name`, in wire order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |h| h.name == name.as_bytes())
            .map(|h| h.value)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Remove every header called `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.name != name.as_bytes());
        before - self.entries.len()
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            headers: self,
            entries: self.entries.iter(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A header of [`Headers::iter_shared`].
pub struct SharedHeader<'a> {
    headers: &'a Headers,
    entry: &'a Entry,
}

impl<'a> SharedHeader<'a> {
    pub fn name(&self) -> &'a [u8] {
        &self.entry.name
    }

    pub fn value(&self) -> &'a [u8] {
        self.headers.value(&self.entry.value)
    }

    /// The value as bytes sharing the frame's.
    pub fn shared(&self) -> Bytes {
        self.headers.shared(&self.entry.value)
    }
}

/// The headers of a [`Headers`], in wire order.
pub struct Iter<'a> {
    headers: &'a Headers,
    entries: std::slice::Iter<'a, Entry>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        let entry = self.entries.next()?;
        Some(Header {
            name: &entry.name,
            value: self.headers.value(&entry.value),
        })
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = Header<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|h| {
                (
                    String::from_utf8_lossy(h.name),
                    String::from_utf8_lossy(h.value),
                )
            }))
            .finish()
    }
}

/// One STOMP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    pub headers: Headers,
    pub body: Bytes,
}

impl Frame {
    /// A frame with no headers and no body.
    pub fn new(command: Command) -> Self {
        Frame {
            command,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Builder form of [`Headers::push`].
    pub fn with_header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.headers.push(name, value);
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// A RECEIPT for the `receipt` header value of a processed frame: `receipt-id` and nothing
    /// else (stompest compares the whole frame, stompit wants an empty body).
    pub fn receipt(receipt_id: Bytes) -> Self {
        Frame::new(Command::Receipt).with_header(header::RECEIPT_ID, receipt_id)
    }

    /// The first value of header `name`, as bytes.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// The client's `receipt` header: the `receipt-id` for a RECEIPT, or for the ERROR this
    /// frame caused.
    pub fn receipt_request(&self) -> Option<Bytes> {
        self.headers.get_bytes(header::RECEIPT)
    }

    /// The first value of header `name` as text; an error naming the header if it is not UTF-8.
    pub fn header_str(&self, name: &'static str) -> Result<Option<&str>, StompError> {
        match self.header(name) {
            None => Ok(None),
            Some(value) => core_bus::text::utf8(value)
                .map(Some)
                .ok_or(StompError::InvalidHeader {
                    command: self.command,
                    header: name,
                    reason: "not UTF-8",
                }),
        }
    }

    /// Like [`Frame::header_str`], but a missing header is an error too.
    pub fn require_header(&self, name: &'static str) -> Result<&str, StompError> {
        self.header_str(name)?.ok_or(StompError::MissingHeader {
            command: self.command,
            header: name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_header_names_are_found_whole_and_case_sensitively() {
        assert_eq!(header::known(b"destination"), Some(header::DESTINATION));
        assert_eq!(header::known(b"version"), Some(header::VERSION));
        assert_eq!(header::known(b"destinatio"), None);
        assert_eq!(header::known(b"Destination"), None);
        assert_eq!(header::known(b"x-custom"), None);
        assert_eq!(header::known(b""), None);
    }

    #[test]
    fn command_names_round_trip_and_are_case_sensitive() {
        for command in Command::ALL {
            assert_eq!(
                Command::from_bytes(command.as_str().as_bytes()),
                Some(command)
            );
        }
        assert_eq!(Command::from_bytes(b"send"), None);
        assert_eq!(Command::from_bytes(b"SEND "), None);
        assert_eq!(Command::from_bytes(b""), None);
    }

    #[test]
    fn command_classes() {
        assert!(Command::Send.is_client() && !Command::Send.is_server());
        assert!(Command::Message.is_server() && !Command::Message.is_client());
        let bodies: Vec<_> = Command::ALL
            .into_iter()
            .filter(|c| c.allows_body())
            .collect();
        assert_eq!(bodies, [Command::Send, Command::Message, Command::Error]);
        let raw: Vec<_> = Command::ALL
            .into_iter()
            .filter(|c| c.is_connect())
            .collect();
        assert_eq!(raw, [Command::Connect, Command::Stomp, Command::Connected]);
    }

    #[test]
    fn versions_order_and_parse() {
        assert!(Version::V1_0 < Version::V1_1 && Version::V1_1 < Version::V1_2);
        for v in Version::ALL {
            assert_eq!(Version::from_bytes(v.as_str().as_bytes()), Some(v));
        }
        assert_eq!(Version::from_bytes(b"1.3"), None);
        assert_eq!(Version::V1_2.to_string(), "1.2");
    }

    #[test]
    fn first_header_wins_and_duplicates_are_kept() {
        let frame = Frame::new(Command::Send)
            .with_header("a", "1")
            .with_header("b", "2")
            .with_header("a", "3");
        assert_eq!(frame.header("a"), Some(&b"1"[..]));
        let all: Vec<_> = frame.headers.get_all("a").collect();
        assert_eq!(all, [&b"1"[..], &b"3"[..]]);
        assert_eq!(frame.headers.len(), 3);
        assert!(frame.header("c").is_none());
    }

    #[test]
    fn remove_drops_every_copy() {
        let mut headers = Headers::new();
        headers.push("ack", "x");
        headers.push("keep", "y");
        headers.push("ack", "z");
        assert_eq!(headers.remove("ack"), 2);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains("keep"));
    }

    #[test]
    fn header_str_and_require_header() {
        let frame = Frame::new(Command::Send)
            .with_header("destination", "/queue/a")
            .with_header("bad", Bytes::from_static(b"\xff"));
        assert_eq!(frame.require_header("destination"), Ok("/queue/a"));
        assert_eq!(frame.header_str("missing"), Ok(None));
        assert_eq!(
            frame.require_header("missing"),
            Err(StompError::MissingHeader {
                command: Command::Send,
                header: "missing"
            })
        );
        assert!(matches!(
            frame.header_str("bad"),
            Err(StompError::InvalidHeader { header: "bad", .. })
        ));
    }

    #[test]
    fn receipt_frame_has_only_receipt_id() {
        let frame = Frame::receipt(Bytes::from_static(b"r-1"));
        assert_eq!(frame.command, Command::Receipt);
        assert_eq!(frame.headers.len(), 1);
        assert_eq!(frame.header("receipt-id"), Some(&b"r-1"[..]));
        assert!(frame.body.is_empty());
    }
}
