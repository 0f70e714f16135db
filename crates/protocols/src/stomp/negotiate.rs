//! The pure part of CONNECT: choosing the version from `accept-version`, the heart-beat
//! arithmetic, reading the credentials, and building CONNECTED (docs/protocols/stomp.md, "Connecting").
//!
//! Heart-beat rule: the client offers `cx,cy` ("I can send every cx ms, I want to
//! receive every cy ms"). gatewayd answers `sx = cy == 0 ? 0 : max(cy, min)` and
//! `sy = cx == 0 ? 0 : max(cx, min)` with `min` = 1000 ms by default. The spec's periods are then
//! server→client `max(sx, cy)` and client→server `max(cx, sy)` (0 if either side is 0).
//! The session sends an EOL whenever it has written nothing for the first, and closes after
//! `grace_factor` × the second with nothing received. The default factor is 2: stompjs gives
//! up on a silent server after 2 periods and Artemis uses a 2.0 TTL multiplier, while stomp.py
//! beats on time and waits only 1.5 periods itself. 1.0 sessions have no heart-beats, and no
//! idle timeout is imposed when none was negotiated (the seed client never beats).

use std::time::Duration;

use super::codec::frame::{header, Command, Frame, Version};
use super::error::StompError;

/// A `heart-beat` header: two periods in milliseconds, 0 = none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartBeat {
    /// Smallest period at which the sender of the header will put bytes on the wire.
    pub send_ms: u32,
    /// Period at which the sender of the header wants to receive bytes.
    pub receive_ms: u32,
}

impl HeartBeat {
    pub const NONE: HeartBeat = HeartBeat {
        send_ms: 0,
        receive_ms: 0,
    };

    /// Parse `x,y`: two non-negative integers, blanks around each tolerated (stompit's
    /// parser allows them too).
    pub fn parse(value: &[u8]) -> Option<HeartBeat> {
        let text = std::str::from_utf8(value).ok()?;
        let (send, receive) = text.split_once(',')?;
        let number = |s: &str| {
            let s = s.trim_matches([' ', '\t']);
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse::<u32>().ok()
        };
        Some(HeartBeat {
            send_ms: number(send)?,
            receive_ms: number(receive)?,
        })
    }

    /// The header value, `send,receive`.
    pub fn header_value(self) -> String {
        format!("{},{}", self.send_ms, self.receive_ms)
    }
}

/// gatewayd's side of heart-beat negotiation; the `[stomp.heart_beat]` config section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartBeatPolicy {
    /// Floor for both server periods, in ms.
    pub min_interval_ms: u32,
    /// The receive timeout is this many client→server periods.
    pub grace_factor: u32,
}

impl Default for HeartBeatPolicy {
    fn default() -> Self {
        HeartBeatPolicy {
            min_interval_ms: 1000,
            grace_factor: 2,
        }
    }
}

/// The outcome of heart-beat negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartBeatPlan {
    /// The CONNECTED `heart-beat` header (`sx,sy`).
    pub server: HeartBeat,
    /// Write an EOL when nothing was written for this long; `None` = never.
    pub send_every: Option<Duration>,
    /// Close when nothing was received for this long; `None` = no idle timeout.
    pub receive_timeout: Option<Duration>,
}

impl HeartBeatPlan {
    /// No heart-beats either way (1.0 sessions, or a client offering `0,0`).
    pub const NONE: HeartBeatPlan = HeartBeatPlan {
        server: HeartBeat::NONE,
        send_every: None,
        receive_timeout: None,
    };
}

/// Answer the client's `heart-beat` offer.
pub fn negotiate_heart_beat(client: HeartBeat, policy: &HeartBeatPolicy) -> HeartBeatPlan {
    let floor = |ms: u32| {
        if ms == 0 {
            0
        } else {
            ms.max(policy.min_interval_ms)
        }
    };
    let server = HeartBeat {
        send_ms: floor(client.receive_ms),
        receive_ms: floor(client.send_ms),
    };
    let period = |a: u32, b: u32| (a != 0 && b != 0).then(|| a.max(b));
    let millis = |ms: u32| Duration::from_millis(u64::from(ms));
    let send_every = period(server.send_ms, client.receive_ms).map(millis);
    let receive_timeout = period(client.send_ms, server.receive_ms).map(|ms| {
        millis(ms)
            .checked_mul(policy.grace_factor)
            .unwrap_or(Duration::MAX)
    });
    HeartBeatPlan {
        server,
        send_every,
        receive_timeout,
    }
}

/// The highest version in `accept-version` that gatewayd speaks. No header = 1.0 (the seed
/// client and other 1.0 clients send none).
pub fn negotiate_version(accept_version: Option<&[u8]>) -> Result<Version, StompError> {
    let Some(offered) = accept_version else {
        return Ok(Version::V1_0);
    };
    offered
        .split(|&b| b == b',')
        .filter_map(|v| Version::from_bytes(v.trim_ascii()))
        .max()
        .ok_or_else(|| StompError::VersionMismatch {
            offered: String::from_utf8_lossy(offered).into_owned(),
        })
}

/// What a CONNECT/STOMP frame asks for, once the version and heart-beats are settled.
/// Authentication and the `host` → namespace mapping are the session's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: Version,
    pub host: Option<String>,
    pub login: Option<String>,
    pub passcode: Option<String>,
    pub heart_beat: HeartBeatPlan,
}

/// Read the first frame of a connection. Anything but CONNECT/STOMP is
/// [`StompError::NotConnected`]. In 1.0 leading blanks of the credentials are trimmed (1.0
/// examples pad them) and `heart-beat` is ignored.
pub fn negotiate(frame: &Frame, policy: &HeartBeatPolicy) -> Result<Connect, StompError> {
    if !matches!(frame.command, Command::Connect | Command::Stomp) {
        return Err(StompError::NotConnected {
            command: frame.command,
        });
    }
    let version = negotiate_version(frame.header(header::ACCEPT_VERSION))?;
    let text = |name: &'static str| -> Result<Option<String>, StompError> {
        let value = frame.header_str(name)?;
        Ok(value.map(|v| match version {
            Version::V1_0 => v.trim_start_matches([' ', '\t']).to_owned(),
            _ => v.to_owned(),
        }))
    };
    let heart_beat = match (version, frame.header(header::HEART_BEAT)) {
        (Version::V1_0, _) | (_, None) => HeartBeatPlan::NONE,
        (_, Some(value)) => {
            let offer = HeartBeat::parse(value).ok_or_else(|| StompError::BadHeartBeat {
                value: String::from_utf8_lossy(value).into_owned(),
            })?;
            negotiate_heart_beat(offer, policy)
        }
    };
    Ok(Connect {
        version,
        host: text(header::HOST)?,
        login: text(header::LOGIN)?,
        passcode: text(header::PASSCODE)?,
        heart_beat,
    })
}

/// The CONNECTED frame gatewayd sends: `version` (also for 1.0), `session`,
/// `server`, and `heart-beat` (`0,0` when none).
pub fn connected_frame(
    version: Version,
    session: &str,
    server: &str,
    heart_beat: HeartBeat,
) -> Frame {
    Frame::new(Command::Connected)
        .with_header(header::VERSION, version.as_str())
        .with_header(header::SESSION, session.to_owned())
        .with_header(header::SERVER, server.to_owned())
        .with_header(header::HEART_BEAT, heart_beat.header_value())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(send_ms: u32, receive_ms: u32) -> HeartBeat {
        HeartBeat {
            send_ms,
            receive_ms,
        }
    }

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn version_is_the_highest_common_one() {
        assert_eq!(negotiate_version(None), Ok(Version::V1_0));
        assert_eq!(negotiate_version(Some(b"1.0")), Ok(Version::V1_0));
        assert_eq!(negotiate_version(Some(b"1.1")), Ok(Version::V1_1));
        assert_eq!(negotiate_version(Some(b"1.2,1.1,1.0")), Ok(Version::V1_2));
        assert_eq!(negotiate_version(Some(b"1.0, 1.1")), Ok(Version::V1_1));
        assert_eq!(negotiate_version(Some(b"1.1,1.3")), Ok(Version::V1_1));
        for bad in [&b"2.0"[..], b"", b"1.3,banana"] {
            assert!(
                matches!(
                    negotiate_version(Some(bad)),
                    Err(StompError::VersionMismatch { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn heart_beat_parsing() {
        assert_eq!(HeartBeat::parse(b"4000,4000"), Some(hb(4000, 4000)));
        assert_eq!(HeartBeat::parse(b" 0 , 10000 "), Some(hb(0, 10000)));
        for bad in [
            &b""[..],
            b"1000",
            b"-1,0",
            b"1,2,3",
            b"a,b",
            b"+1,0",
            b",",
            b"4294967296,0",
        ] {
            assert_eq!(HeartBeat::parse(bad), None, "{bad:?}");
        }
        assert_eq!(hb(10, 20).header_value(), "10,20");
    }

    #[test]
    fn heart_beat_math() {
        let policy = HeartBeatPolicy::default();
        // stomp.py 1000,1000 (the fixture): 1 s both ways, 2 s grace.
        let plan = negotiate_heart_beat(hb(1000, 1000), &policy);
        assert_eq!(plan.server, hb(1000, 1000));
        assert_eq!(plan.send_every, ms(1000));
        assert_eq!(plan.receive_timeout, ms(2000));
        // stompjs default 10000,10000.
        let plan = negotiate_heart_beat(hb(10000, 10000), &policy);
        assert_eq!(plan.server, hb(10000, 10000));
        assert_eq!(plan.receive_timeout, ms(20000));
        // Fast offers are raised to the floor.
        let plan = negotiate_heart_beat(hb(100, 100), &policy);
        assert_eq!(plan.server, hb(1000, 1000));
        assert_eq!(plan.send_every, ms(1000));
        // One direction only.
        let plan = negotiate_heart_beat(hb(0, 4000), &policy);
        assert_eq!(plan.server, hb(4000, 0));
        assert_eq!(plan.send_every, ms(4000));
        assert_eq!(plan.receive_timeout, None);
        let plan = negotiate_heart_beat(hb(3000, 0), &policy);
        assert_eq!(plan.server, hb(0, 3000));
        assert_eq!(plan.send_every, None);
        assert_eq!(plan.receive_timeout, ms(6000));
        assert_eq!(
            negotiate_heart_beat(HeartBeat::NONE, &policy),
            HeartBeatPlan::NONE
        );
        // Huge values do not overflow.
        let plan = negotiate_heart_beat(hb(u32::MAX, u32::MAX), &policy);
        assert_eq!(plan.receive_timeout, ms(2 * u64::from(u32::MAX)));
    }

    fn connect(headers: &[(&str, &str)]) -> Frame {
        headers
            .iter()
            .fold(Frame::new(Command::Stomp), |f, (n, v)| {
                f.with_header(n.to_string(), v.to_string())
            })
    }

    #[test]
    fn negotiate_a_1_2_connect() {
        let frame = connect(&[
            ("accept-version", "1.2"),
            ("heart-beat", "4000,4000"),
            ("host", "127.0.0.1"),
            ("login", "guest"),
            ("passcode", "guest"),
        ]);
        let c = negotiate(&frame, &HeartBeatPolicy::default()).unwrap();
        assert_eq!(c.version, Version::V1_2);
        assert_eq!(c.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.login.as_deref(), Some("guest"));
        assert_eq!(c.passcode.as_deref(), Some("guest"));
        assert_eq!(c.heart_beat.server, hb(4000, 4000));
    }

    #[test]
    fn negotiate_a_seed_style_connect() {
        let frame = Frame::new(Command::Connect)
            .with_header("login", " guest")
            .with_header("passcode", "guest")
            .with_header("heart-beat", "garbage");
        let c = negotiate(&frame, &HeartBeatPolicy::default()).unwrap();
        assert_eq!(c.version, Version::V1_0);
        assert_eq!(c.login.as_deref(), Some("guest"));
        assert_eq!(c.host, None);
        assert_eq!(c.heart_beat, HeartBeatPlan::NONE);
    }

    #[test]
    fn negotiate_errors() {
        let policy = HeartBeatPolicy::default();
        let send = Frame::new(Command::Send);
        assert_eq!(
            negotiate(&send, &policy),
            Err(StompError::NotConnected {
                command: Command::Send
            })
        );
        let bad_hb = connect(&[("accept-version", "1.1"), ("heart-beat", "1,x")]);
        assert!(matches!(
            negotiate(&bad_hb, &policy),
            Err(StompError::BadHeartBeat { .. })
        ));
        let bad_version = connect(&[("accept-version", "3.0")]);
        assert!(matches!(
            negotiate(&bad_version, &policy),
            Err(StompError::VersionMismatch { .. })
        ));
        let bad_login = Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("login", bytes::Bytes::from_static(b"\xff"));
        assert!(matches!(
            negotiate(&bad_login, &policy),
            Err(StompError::InvalidHeader {
                header: "login",
                ..
            })
        ));
    }

    #[test]
    fn connected_frame_headers() {
        let frame = connected_frame(Version::V1_0, "s-1", "gatewayd/0.1.0", HeartBeat::NONE);
        let headers: Vec<_> = frame.headers.iter().map(|h| (h.name, h.value)).collect();
        assert_eq!(
            headers,
            [
                (&b"version"[..], &b"1.0"[..]),
                (b"session", b"s-1"),
                (b"server", b"gatewayd/0.1.0"),
                (b"heart-beat", b"0,0"),
            ]
        );
    }
}
