//! Bytes ↔ MQTT packets for both protocol levels (3.1.1 = level 4, 5.0 = level 5), pure. Decoding is
//! `mqttbytes` (rumqtt's sans-IO codec; MQTT 5.0 UNSUBSCRIBE is read by [`unsubscribe`]) behind a framing check of our own: a frame is read only once all of it is
//! in the buffer, so any error the crate reports on a complete frame is a malformed packet, never "wait for more".
//! Everything a client may send arrives as one [`Inbound`] in the 5.0 model (3.1.1 packets are lifted into it);
//! [`encode`] writes an [`Outbound`] in the connection's level (the acknowledgements and DISCONNECT by [`acks`]), and
//! [`encode_within`] keeps a reason string out of a packet it would make too large. Nothing here panics on input.

use bytes::{Buf, BufMut, BytesMut};
use mqttbytes::v5::{self, ConnAck, ConnectReturnCode};
use mqttbytes::{v4, Error as WireError, PacketType};

use super::reason::{self, ReasonString};

mod acks;
mod unsubscribe;

pub use acks::Ack;

/// The protocol level a connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

/// A packet a client sent, in the MQTT 5.0 model whatever its level.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Connect(Box<v5::Connect>),
    Publish(v5::Publish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe(v5::Subscribe),
    Unsubscribe(v5::Unsubscribe),
    PingReq,
    /// DISCONNECT with its reason code (0 for 3.1.1) and, in 5.0, a new session expiry interval.
    Disconnect {
        reason: u8,
        session_expiry: Option<u32>,
    },
    /// MQTT 5.0 AUTH (enhanced authentication, which gatewayd does not offer).
    Auth,
    /// A packet only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP).
    ServerOnly,
}

/// Why the bytes are not a packet; [`DecodeError::reason`] is the MQTT 5.0 reason code to close with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {0} bytes is over the maximum packet size")]
    TooLarge(usize),
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("the first packet is not CONNECT")]
    NotConnect,
    #[error("unsupported protocol level {0}")]
    ProtocolLevel(u8),
}

impl DecodeError {
    /// The reason code of the DISCONNECT (or CONNACK) this error earns.
    pub fn reason(&self) -> u8 {
        match self {
            DecodeError::TooLarge(_) => reason::PACKET_TOO_LARGE,
            DecodeError::Malformed(_) => reason::MALFORMED_PACKET,
            DecodeError::NotConnect => reason::PROTOCOL_ERROR,
            DecodeError::ProtocolLevel(_) => reason::UNSUPPORTED_PROTOCOL_VERSION,
        }
    }
}

fn malformed(error: WireError) -> DecodeError {
    DecodeError::Malformed(format!("{error:?}"))
}

/// Takes the next whole packet off `buf`: `Ok(None)` while it is incomplete. `version` is `None` until CONNECT,
/// when only CONNECT is accepted. `max_size` bounds the remaining length, checked before the packet is buffered
/// in full.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<Version>,
    max_size: usize,
) -> Result<Option<Inbound>, DecodeError> {
    let header = match mqttbytes::check(buf.iter(), max_size) {
        Ok(header) => header,
        Err(WireError::InsufficientBytes(_)) => return Ok(None),
        Err(WireError::PayloadSizeLimitExceeded(size)) => return Err(DecodeError::TooLarge(size)),
        Err(error) => return Err(malformed(error)),
    };
    let first = buf.first().copied().unwrap_or_default();
    let kind = first >> 4;
    let flags = first & 0x0f;
    check_flags(kind, flags)?;
    let Some(version) = version else {
        if kind != PacketType::Connect as u8 {
            return Err(DecodeError::NotConnect);
        }
        let level = connect_level(buf);
        let frame = buf.split_to(header.frame_length()).freeze();
        // Both readers check the protocol name and level; a 3.1.1 will has no property list, so each level is
        // read in its own layout.
        let read = if level == Some(4) {
            v4::Connect::read(header, frame).map(|c| lift(v4::Packet::Connect(c)))
        } else {
            v5::Connect::read(header, frame).map(|c| Inbound::Connect(Box::new(c)))
        };
        return match read {
            Ok(connect) => Ok(Some(connect)),
            Err(WireError::InvalidProtocolLevel(level)) => Err(DecodeError::ProtocolLevel(level)),
            // MQTT 3.1 names itself "MQIsdp" (level 3).
            Err(WireError::InvalidProtocol) => Err(DecodeError::ProtocolLevel(3)),
            Err(error) => Err(malformed(error)),
        };
    };
    let body_len = header.frame_length() - header_len(buf);
    match (version, kind, body_len) {
        (Version::V5, 14, 0) => {
            buf.advance(header.frame_length());
            return Ok(Some(Inbound::Disconnect {
                reason: reason::SUCCESS,
                session_expiry: None,
            }));
        }
        (Version::V5, 14, 1) => {
            let frame = buf.split_to(header.frame_length());
            return Ok(Some(Inbound::Disconnect {
                reason: frame.last().copied().unwrap_or_default(),
                session_expiry: None,
            }));
        }
        (Version::V5, 10, _) => {
            let start = header_len(buf);
            let frame = buf.split_to(header.frame_length()).freeze();
            return unsubscribe::read(frame.slice(start..))
                .map(|unsubscribe| Some(Inbound::Unsubscribe(unsubscribe)))
                .map_err(DecodeError::Malformed);
        }
        (Version::V5, 15, _) => {
            buf.advance(header.frame_length());
            return Ok(Some(Inbound::Auth));
        }
        _ => {}
    }
    let inbound = match version {
        Version::V311 => lift(v4::read(buf, max_size).map_err(malformed)?),
        Version::V5 => from_v5(v5::read(buf, max_size).map_err(malformed)?),
    };
    Ok(Some(inbound))
}

/// The protocol level byte of the CONNECT at the start of `buf`: after the fixed header and the protocol name.
fn connect_level(buf: &[u8]) -> Option<u8> {
    let start = header_len(buf);
    let name_len = u16::from_be_bytes([*buf.get(start)?, *buf.get(start + 1)?]);
    buf.get(start + 2 + usize::from(name_len)).copied()
}

/// Bytes of the fixed header at the start of `buf` (whose varint `check` has read): the type byte and the
/// remaining length's 1 to 4 bytes.
fn header_len(buf: &[u8]) -> usize {
    1 + buf
        .iter()
        .skip(1)
        .take(4)
        .position(|byte| byte & 0x80 == 0)
        .map_or(4, |last| last + 1)
}

/// Reserved bits of the fixed header (§2.2.2): PUBREL, SUBSCRIBE and UNSUBSCRIBE carry `0010`, PUBLISH its
/// flags (QoS 3 is malformed), every other packet `0000`.
fn check_flags(kind: u8, flags: u8) -> Result<(), DecodeError> {
    let ok = match kind {
        3 => (flags >> 1) & 0b11 != 0b11,
        6 | 8 | 10 => flags == 0b0010,
        _ => flags == 0,
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError::Malformed(format!(
            "packet type {kind} with flags {flags:04b}"
        )))
    }
}

fn from_v5(packet: v5::Packet) -> Inbound {
    match packet {
        v5::Packet::Connect(connect) => Inbound::Connect(Box::new(connect)),
        v5::Packet::Publish(publish) => Inbound::Publish(publish),
        v5::Packet::PubAck(ack) => Inbound::PubAck(ack.pkid),
        v5::Packet::PubRec(rec) => Inbound::PubRec(rec.pkid),
        v5::Packet::PubRel(rel) => Inbound::PubRel(rel.pkid),
        v5::Packet::PubComp(comp) => Inbound::PubComp(comp.pkid),
        v5::Packet::Subscribe(subscribe) => Inbound::Subscribe(subscribe),
        v5::Packet::Unsubscribe(unsubscribe) => Inbound::Unsubscribe(unsubscribe),
        v5::Packet::PingReq => Inbound::PingReq,
        v5::Packet::Disconnect(disconnect) => Inbound::Disconnect {
            reason: disconnect.reason_code as u8,
            session_expiry: disconnect
                .properties
                .and_then(|p| p.session_expiry_interval),
        },
        v5::Packet::ConnAck(_)
        | v5::Packet::SubAck(_)
        | v5::Packet::UnsubAck(_)
        | v5::Packet::PingResp => Inbound::ServerOnly,
    }
}

/// A 3.1.1 packet in the 5.0 model: no properties, subscription options at their 3.1.1 meaning.
fn lift(packet: v4::Packet) -> Inbound {
    match packet {
        v4::Packet::Connect(connect) => Inbound::Connect(Box::new(v5::Connect {
            protocol: connect.protocol,
            keep_alive: connect.keep_alive,
            client_id: connect.client_id,
            clean_session: connect.clean_session,
            last_will: connect.last_will.map(|will| v5::LastWill {
                topic: will.topic,
                message: will.message,
                qos: will.qos,
                retain: will.retain,
                properties: None,
            }),
            login: connect.login.map(|login| v5::Login {
                username: login.username,
                password: login.password,
            }),
            properties: None,
        })),
        v4::Packet::Publish(publish) => Inbound::Publish(v5::Publish {
            dup: publish.dup,
            qos: publish.qos,
            retain: publish.retain,
            topic: publish.topic,
            pkid: publish.pkid,
            properties: None,
            payload: publish.payload,
        }),
        v4::Packet::PubAck(ack) => Inbound::PubAck(ack.pkid),
        v4::Packet::PubRec(rec) => Inbound::PubRec(rec.pkid),
        v4::Packet::PubRel(rel) => Inbound::PubRel(rel.pkid),
        v4::Packet::PubComp(comp) => Inbound::PubComp(comp.pkid),
        v4::Packet::Subscribe(subscribe) => Inbound::Subscribe(v5::Subscribe {
            pkid: subscribe.pkid,
            filters: subscribe
                .filters
                .into_iter()
                .map(|filter| v5::SubscribeFilter::new(filter.path, filter.qos))
                .collect(),
            properties: None,
        }),
        v4::Packet::Unsubscribe(unsubscribe) => Inbound::Unsubscribe(v5::Unsubscribe {
            pkid: unsubscribe.pkid,
            filters: unsubscribe.topics,
            properties: None,
        }),
        v4::Packet::PingReq => Inbound::PingReq,
        v4::Packet::Disconnect => Inbound::Disconnect {
            reason: reason::SUCCESS,
            session_expiry: None,
        },
        v4::Packet::ConnAck(_)
        | v4::Packet::SubAck(_)
        | v4::Packet::UnsubAck(_)
        | v4::Packet::PingResp => Inbound::ServerOnly,
    }
}

/// A packet gatewayd sends; reason codes are MQTT 5.0's and are mapped down for 3.1.1. A failure may carry a
/// [`ReasonString`] (5.0 only; [`encode_within`] leaves it out of a packet it would make too large).
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// A refusal's reason string is in its properties.
    ConnAck(Box<ConnAck>),
    Publish(v5::Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    SubAck {
        pkid: u16,
        reasons: Vec<u8>,
        /// Which filters were refused and why.
        reason_string: Option<ReasonString>,
    },
    /// gatewayd's UNSUBACK codes are success or 0x11 (no subscription existed), never a failure: no reason string.
    UnsubAck {
        pkid: u16,
        reasons: Vec<u8>,
    },
    PingResp,
    /// 5.0 only (a 3.1.1 connection is just closed).
    Disconnect {
        reason: u8,
        reason_string: Option<ReasonString>,
    },
}

impl Outbound {
    /// Whether this packet may carry a reason string to a client that set Request Problem Information to 0
    /// (§3.1.2.11.7: only CONNACK, PUBLISH and DISCONNECT may).
    pub fn problem_information_always_allowed(&self) -> bool {
        matches!(
            self,
            Outbound::ConnAck(_) | Outbound::Publish(_) | Outbound::Disconnect { .. }
        )
    }

    /// Removes the packet's reason string; whether it had one.
    pub fn strip_reason_string(&mut self) -> bool {
        let reason_string = match self {
            Outbound::ConnAck(connack) => {
                return connack
                    .properties
                    .as_mut()
                    .and_then(|p| p.reason_string.take())
                    .is_some()
            }
            Outbound::PubAck(ack)
            | Outbound::PubRec(ack)
            | Outbound::PubRel(ack)
            | Outbound::PubComp(ack) => &mut ack.reason_string,
            Outbound::SubAck { reason_string, .. } | Outbound::Disconnect { reason_string, .. } => {
                reason_string
            }
            Outbound::Publish(_) | Outbound::UnsubAck { .. } | Outbound::PingResp => return false,
        };
        reason_string.take().is_some()
    }
}

/// Appends `packet` in the connection's level; `Err` only for a packet over the 256 MiB the format can express.
pub fn encode(packet: &Outbound, version: Version, out: &mut BytesMut) -> Result<(), WireError> {
    match (packet, version) {
        (Outbound::ConnAck(connack), Version::V5) => {
            connack.write(out)?;
        }
        (Outbound::ConnAck(connack), Version::V311) => {
            let code = v311_connack_code(connack.code);
            out.put_slice(&[0x20, 2, u8::from(connack.session_present), code]);
        }
        (Outbound::Publish(publish), Version::V5) => {
            publish.write(out)?;
        }
        (Outbound::Publish(publish), Version::V311) => {
            let mut v4 = v4::Publish::from_bytes(
                publish.topic.clone(),
                publish.qos,
                publish.payload.clone(),
            );
            v4.pkid = publish.pkid;
            v4.retain = publish.retain;
            v4.dup = publish.dup;
            v4.write(out)?;
        }
        (Outbound::PubAck(ack), _) => acks::ack(out, 0x40, ack, version),
        (Outbound::PubRec(ack), _) => acks::ack(out, 0x50, ack, version),
        (Outbound::PubRel(ack), _) => acks::ack(out, 0x62, ack, version),
        (Outbound::PubComp(ack), _) => acks::ack(out, 0x70, ack, version),
        (
            Outbound::SubAck {
                pkid,
                reasons,
                reason_string,
            },
            _,
        ) => {
            let codes: Vec<u8> = match version {
                Version::V5 => reasons.clone(),
                Version::V311 => reasons
                    .iter()
                    .map(|&code| if code < 0x80 { code } else { 0x80 })
                    .collect(),
            };
            acks::list_ack(out, 0x90, *pkid, &codes, reason_string.as_ref(), version);
        }
        (Outbound::UnsubAck { pkid, reasons }, Version::V5) => {
            acks::list_ack(out, 0xB0, *pkid, reasons, None, version)
        }
        (Outbound::UnsubAck { pkid, .. }, Version::V311) => {
            acks::list_ack(out, 0xB0, *pkid, &[], None, version)
        }
        (Outbound::PingResp, _) => out.put_slice(&[0xD0, 0]),
        (Outbound::Disconnect { .. }, Version::V311) => {}
        (
            Outbound::Disconnect {
                reason,
                reason_string,
            },
            Version::V5,
        ) => acks::disconnect(out, *reason, reason_string.as_ref()),
    }
    Ok(())
}

/// Appends `packet` as [`encode`] does, but without its reason string when that would make the packet larger than
/// `limit`, the client's Maximum Packet Size (§3.2.2.3.8 and the Reason String of every other packet): a reason
/// string is sent whole or not at all.
pub fn encode_within(
    mut packet: Outbound,
    version: Version,
    limit: usize,
    out: &mut BytesMut,
) -> Result<(), WireError> {
    let start = out.len();
    encode(&packet, version, out)?;
    if out.len() - start > limit && packet.strip_reason_string() {
        out.truncate(start);
        encode(&packet, version, out)?;
    }
    Ok(())
}

/// The 3.1.1 CONNACK return code closest to a 5.0 reason (§3.2.2.3 of 3.1.1).
fn v311_connack_code(code: ConnectReturnCode) -> u8 {
    match code {
        ConnectReturnCode::Success => 0,
        ConnectReturnCode::UnsupportedProtocolVersion => 1,
        ConnectReturnCode::ClientIdentifierNotValid => 2,
        ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::BadAuthenticationMethod => 4,
        ConnectReturnCode::NotAuthorized | ConnectReturnCode::Banned => 5,
        _ => 3,
    }
}

/// Writes a variable byte integer (§1.5.5); returns its length.
fn write_varint(out: &mut BytesMut, mut value: usize) -> usize {
    let mut written = 0;
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        written += 1;
        if value == 0 || written == 4 {
            return written;
        }
    }
}

#[cfg(test)]
mod tests;
