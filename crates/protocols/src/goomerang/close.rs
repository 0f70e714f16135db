//! The close-handshake policy for Goomerang connections (docs/protocols/goomerang.md, "Closing"), as a pure
//! state machine.
//!
//! The Go client only treats close code 1000 (or a bare TCP EOF) as a clean end: any other code leaves
//! it stuck in `Running`. So gatewayd closes with 1000 in every case, including limit violations and
//! shutdown, and says why in the reason text, which the client ignores. A close from the client is
//! echoed with 1000 and an empty reason (`88 02 03 e8`) at once, and then gatewayd closes TCP: the
//! client leaves that to the server. When gatewayd initiates, it waits at most [`ECHO_TIMEOUT`] for the
//! client's echo before closing TCP.

use std::time::{Duration, Instant};

/// The only close code gatewayd sends to a Goomerang client.
pub const NORMAL_CLOSURE: u16 = 1000;

/// How long gatewayd waits for the client to echo a close it initiated (upstream waits 5 s too).
pub const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

/// Why gatewayd closes a connection; the text goes into the close reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A client message exceeded [`Limits::max_message_size`](super::Limits::max_message_size).
    MessageTooBig,
    /// gatewayd is shutting down.
    Shutdown,
    /// The client does not read its deliveries fast enough.
    SlowConsumer,
    /// Nothing arrived from the client (not even a heartbeat ping) for too long.
    IdleTimeout,
}

impl CloseReason {
    /// The close reason text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageTooBig => "message too big",
            Self::Shutdown => "server shutting down",
            Self::SlowConsumer => "slow consumer",
            Self::IdleTimeout => "idle timeout",
        }
    }
}

/// A close frame gatewayd sends: always code 1000, with a short static reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame {
    reason: &'static str,
}

impl CloseFrame {
    /// The echo of a client's close: 1000 with an empty reason.
    pub const ECHO: CloseFrame = CloseFrame { reason: "" };

    /// The close gatewayd initiates for `reason`.
    pub fn initiate(reason: CloseReason) -> Self {
        Self {
            reason: reason.as_str(),
        }
    }

    /// The status code: always [`NORMAL_CLOSURE`].
    pub fn code(&self) -> u16 {
        NORMAL_CLOSURE
    }

    /// The reason text (at most a few dozen bytes, well under the 123 a control frame allows).
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The close frame's application data: the code big-endian, then the reason.
    pub fn payload(&self) -> Vec<u8> {
        let mut payload = NORMAL_CLOSURE.to_be_bytes().to_vec();
        payload.extend_from_slice(self.reason.as_bytes());
        payload
    }
}

/// What to do when a close frame arrives from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerClose {
    /// The client started the close: send this frame, then close TCP.
    EchoThenCloseTcp(CloseFrame),
    /// The client answered gatewayd's close: close TCP.
    CloseTcp,
    /// The handshake is already over: nothing to do.
    Ignore,
}

/// Where one connection is in the close handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloseHandshake {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Open,
    AwaitingEcho {
        deadline: Instant,
    },
    Closed,
}

impl CloseHandshake {
    /// An open connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether neither side has sent a close yet.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Starts a close for `reason`: returns the frame to send, or `None` if a close is already under way.
    pub fn initiate(&mut self, reason: CloseReason, now: Instant) -> Option<CloseFrame> {
        if self.state != State::Open {
            return None;
        }
        self.state = State::AwaitingEcho {
            deadline: now + ECHO_TIMEOUT,
        };
        Some(CloseFrame::initiate(reason))
    }

    /// A close frame arrived from the client, whatever its code.
    pub fn on_peer_close(&mut self) -> PeerClose {
        let action = match self.state {
            State::Open => PeerClose::EchoThenCloseTcp(CloseFrame::ECHO),
            State::AwaitingEcho { .. } => PeerClose::CloseTcp,
            State::Closed => PeerClose::Ignore,
        };
        self.state = State::Closed;
        action
    }

    /// When to give up waiting for the client's echo, while waiting for it.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::AwaitingEcho { deadline } => Some(deadline),
            State::Open | State::Closed => None,
        }
    }

    /// Call when the clock reaches [`deadline`](Self::deadline): `true` means the echo never came,
    /// close TCP now.
    pub fn on_timeout(&mut self, now: Instant) -> bool {
        match self.state {
            State::AwaitingEcho { deadline } if now >= deadline => {
                self.state = State::Closed;
                true
            }
            State::Open | State::AwaitingEcho { .. } | State::Closed => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_close_is_echoed_with_1000_then_tcp_closes() {
        let mut close = CloseHandshake::new();
        assert!(close.is_open());
        let PeerClose::EchoThenCloseTcp(echo) = close.on_peer_close() else {
            panic!("expected an echo");
        };
        // The echo on the wire is `88 02 03 e8` (docs/protocols/goomerang.md, "Closing").
        assert_eq!(echo.payload(), [0x03, 0xe8]);
        assert_eq!((echo.code(), echo.reason()), (1000, ""));
        assert!(!close.is_open());
        assert_eq!(close.on_peer_close(), PeerClose::Ignore);
        assert_eq!(close.initiate(CloseReason::Shutdown, Instant::now()), None);
    }

    #[test]
    fn initiated_close_uses_1000_and_the_reason_text() {
        let now = Instant::now();
        let mut close = CloseHandshake::new();
        let frame = close.initiate(CloseReason::MessageTooBig, now).unwrap();
        assert_eq!(frame.payload(), b"\x03\xe8message too big");
        assert_eq!(close.deadline(), Some(now + ECHO_TIMEOUT));
        assert_eq!(close.initiate(CloseReason::Shutdown, now), None);
        assert_eq!(close.on_peer_close(), PeerClose::CloseTcp);
        assert_eq!(close.deadline(), None);
    }

    #[test]
    fn missing_echo_times_out_after_five_seconds() {
        let now = Instant::now();
        let mut close = CloseHandshake::new();
        close.initiate(CloseReason::SlowConsumer, now).unwrap();
        assert!(!close.on_timeout(now + Duration::from_millis(4999)));
        assert!(close.on_timeout(now + Duration::from_secs(5)));
        assert!(!close.on_timeout(now + Duration::from_secs(6)));
        assert_eq!(close.on_peer_close(), PeerClose::Ignore);
        assert!(!CloseHandshake::new().on_timeout(now));
    }

    #[test]
    fn reasons_fit_a_control_frame() {
        for reason in [
            CloseReason::MessageTooBig,
            CloseReason::Shutdown,
            CloseReason::SlowConsumer,
            CloseReason::IdleTimeout,
        ] {
            let payload = CloseFrame::initiate(reason).payload();
            assert!(payload.len() <= 125);
            assert_eq!(&payload[2..], reason.as_str().as_bytes());
        }
    }
}
