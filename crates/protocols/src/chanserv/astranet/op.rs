//! The AstraNet op: the unit on the wire. A 29-byte big-endian header
//! `cmd(1) dst_host(8) src_host(8) dst_port(4) src_port(4) len(4)` followed by `len` payload bytes
//! (docs/protocols/chanserv.md, "AstraNet ops"), and the opcode table ("Opcodes").
//!
//! Decoding is incremental: [`decode`] takes what is buffered and returns `Ok(None)` until a whole op is there. The
//! payload length is checked against [`MAX_PAYLOAD`] from the header alone, before any buffer grows for it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::addr::{Addr, HostId};

/// Size of the op header.
pub const HEADER_LEN: usize = 29;

/// Largest payload accepted or produced. A Go peer reads ops through a 64 KiB buffer and never sends more than one
/// 65 536-byte window of DATA in one op (docs/protocols/chanserv.md, "AstraNet ops", "Flow control"); a longer op
/// kills its link.
pub const MAX_PAYLOAD: u32 = 65_536;

/// The opcodes AstraNet registers (docs/protocols/chanserv.md, "Opcodes"). Anything else on the wire is
/// [`OpError::UnknownOpcode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Listener → dialer: stream accepted.
    Syn = 0x02,
    /// Dialer → listener: reply to SYN.
    Ack = 0x04,
    /// Listener → dialer: reply to ACK; the dialer may now write.
    SynAck = 0x06,
    /// Registered upstream, local only.
    Fin1 = 0x08,
    /// "I closed my stream": the peer reads EOF after its buffered data.
    Fin2 = 0x10,
    /// Registered upstream, never sent.
    Err = 0x20,
    /// Registered upstream, local only.
    ForceClosed = 0x3E,
    /// Stream bytes.
    Data = 0x80,
    /// u32 BE: replaces the peer's send window. Nobody sends it.
    WndSize = 0x81,
    /// u32 BE n: "I consumed n bytes", credit back to the writer.
    Rewind = 0x82,
    /// Keepalive, all fields zero.
    Ping = 0xA0,
    /// Reply to PING.
    Pong = 0xA1,
    /// Open a stream to `dst` from `src`.
    Dial = 0xBE,
    /// First op on a link, JSON payload.
    Handshake = 0xBF,
    /// Advertise `src` under the service name in the payload.
    Service = 0xC0,
    /// Withdraw an advertisement.
    NoService = 0xC1,
    /// `"ip:port"`: another TCP address of the sender.
    Follow = 0xC2,
    /// Ask a remote node for its FOLLOW addresses.
    Discover = 0xC3,
    /// Sent by relays: the route to `src_host` died.
    Reset = 0xC4,
}

impl Opcode {
    /// Every registered opcode, in code order.
    pub const ALL: [Opcode; 19] = [
        Opcode::Syn,
        Opcode::Ack,
        Opcode::SynAck,
        Opcode::Fin1,
        Opcode::Fin2,
        Opcode::Err,
        Opcode::ForceClosed,
        Opcode::Data,
        Opcode::WndSize,
        Opcode::Rewind,
        Opcode::Ping,
        Opcode::Pong,
        Opcode::Dial,
        Opcode::Handshake,
        Opcode::Service,
        Opcode::NoService,
        Opcode::Follow,
        Opcode::Discover,
        Opcode::Reset,
    ];

    /// The wire byte.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The opcode for a wire byte, if AstraNet registers one.
    pub fn from_code(code: u8) -> Option<Opcode> {
        Opcode::ALL.into_iter().find(|op| op.code() == code)
    }
}

/// Why bytes from the wire are not an op.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// A well-formed op with an opcode AstraNet does not register. The whole op has been consumed; upstream logs and
    /// drops it, so this error is not fatal to the link.
    #[error("unknown op code {cmd:#04x} ({len} payload bytes skipped)")]
    UnknownOpcode { cmd: u8, len: u32 },
    /// The header announces (or a caller asked for) a payload above [`MAX_PAYLOAD`]. The link cannot resynchronise.
    #[error("op payload of {len} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    Oversized { len: u64 },
    /// The byte stream ended inside an op.
    #[error("link ended inside an op: {have} of {need} bytes")]
    Truncated { have: usize, need: usize },
}

impl OpError {
    /// Whether the link must be closed: everything except an unknown opcode.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, OpError::UnknownOpcode { .. })
    }
}

/// One op. The payload never exceeds [`MAX_PAYLOAD`], so every `Op` can be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub opcode: Opcode,
    /// Receiver's end (`Remote`/`RPort` in the sender's terms).
    pub dst: Addr,
    /// Sender's end (`Local`/`LPort`).
    pub src: Addr,
    payload: Bytes,
}

impl Op {
    /// An op with a payload; fails if the payload is longer than [`MAX_PAYLOAD`].
    pub fn new(opcode: Opcode, dst: Addr, src: Addr, payload: Bytes) -> Result<Op, OpError> {
        if payload.len() > MAX_PAYLOAD as usize {
            return Err(OpError::Oversized {
                len: payload.len() as u64,
            });
        }
        Ok(Op {
            opcode,
            dst,
            src,
            payload,
        })
    }

    /// An op without payload (SYN, ACK, FIN2, PING, …).
    pub fn empty(opcode: Opcode, dst: Addr, src: Addr) -> Op {
        Op {
            opcode,
            dst,
            src,
            payload: Bytes::new(),
        }
    }

    /// An op whose payload is one big-endian `u32` (REWIND, WND_SIZE).
    pub fn with_u32(opcode: Opcode, dst: Addr, src: Addr, value: u32) -> Op {
        Op {
            opcode,
            dst,
            src,
            payload: Bytes::copy_from_slice(&value.to_be_bytes()),
        }
    }

    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The payload as one big-endian `u32`, if it is exactly four bytes (REWIND, WND_SIZE).
    pub fn payload_u32(&self) -> Option<u32> {
        let bytes: [u8; 4] = self.payload.as_ref().try_into().ok()?;
        Some(u32::from_be_bytes(bytes))
    }

    pub fn into_payload(self) -> Bytes {
        self.payload
    }

    /// Header plus payload.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Appends the op's wire form to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.put_u8(self.opcode.code());
        dst.put_u64(self.dst.host.0);
        dst.put_u64(self.src.host.0);
        dst.put_u32(self.dst.port);
        dst.put_u32(self.src.port);
        // Lossless: `Op` never holds more than MAX_PAYLOAD bytes.
        dst.put_u32(self.payload.len() as u32);
        dst.put_slice(&self.payload);
    }
}

/// Takes one op off the front of `buf`. `Ok(None)`: more bytes are needed (the buffer's capacity has been grown to
/// hold the whole op). A non-fatal [`OpError::UnknownOpcode`] has consumed its op; after a fatal error the buffer is
/// left as it was.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Op>, OpError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut header = header;
    let cmd = header.get_u8();
    let dst_host = header.get_u64();
    let src_host = header.get_u64();
    let dst_port = header.get_u32();
    let src_port = header.get_u32();
    let len = header.get_u32();
    if len > MAX_PAYLOAD {
        return Err(OpError::Oversized { len: len.into() });
    }
    let total = HEADER_LEN + len as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut op = buf.split_to(total).freeze();
    op.advance(HEADER_LEN);
    let opcode = Opcode::from_code(cmd).ok_or(OpError::UnknownOpcode { cmd, len })?;
    Ok(Some(Op {
        opcode,
        dst: Addr::new(HostId(dst_host), dst_port),
        src: Addr::new(HostId(src_host), src_port),
        payload: op,
    }))
}

/// Like [`decode`], for when the byte stream has ended: leftover bytes that are not a whole op are
/// [`OpError::Truncated`].
pub fn decode_eof(buf: &mut BytesMut) -> Result<Option<Op>, OpError> {
    match decode(buf)? {
        Some(op) => Ok(Some(op)),
        None if buf.is_empty() => Ok(None),
        None => Err(OpError::Truncated {
            have: buf.len(),
            need: needed(buf),
        }),
    }
}

/// How many bytes the op at the front of `buf` needs in all (the header alone while the header is incomplete).
fn needed(buf: &[u8]) -> usize {
    match buf.get(25..HEADER_LEN) {
        Some(len) => {
            let mut len = len;
            HEADER_LEN + len.get_u32() as usize
        }
        None => HEADER_LEN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GW: HostId = HostId(0x547C_9609_6AF7_F642);
    const CL: HostId = HostId(0x1122_3344_5566_7788);

    fn hex(s: &str) -> Vec<u8> {
        let digits: String = s.split_whitespace().collect();
        (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
            .collect()
    }

    fn encode(op: &Op) -> Vec<u8> {
        let mut buf = BytesMut::new();
        op.encode(&mut buf);
        buf.to_vec()
    }

    fn decode_all(bytes: &[u8]) -> Vec<Result<Op, OpError>> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match decode_eof(&mut buf) {
                Ok(Some(op)) => out.push(Ok(op)),
                Ok(None) => return out,
                Err(e) => {
                    let fatal = e.is_fatal();
                    out.push(Err(e));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }

    #[test]
    fn example_a_handshake() {
        let bytes = hex(
            "bf 00 00 00 00 00 00 00 00 54 7c 96 09 6a f7 f6 42 00 00 00 00 00 00 00 00 00 00 00 1a
             7b 22 52 41 64 64 72 22 3a 22 31 30 2e 30 2e 30 2e 37 3a 35 31 32 33 34 22 7d",
        );
        let op = Op::new(
            Opcode::Handshake,
            Addr::default(),
            Addr::new(GW, 0),
            Bytes::from_static(br#"{"RAddr":"10.0.0.7:51234"}"#),
        )
        .unwrap();
        assert_eq!(bytes.len(), 55);
        assert_eq!(encode(&op), bytes);
        assert_eq!(decode_all(&bytes), vec![Ok(op)]);
    }

    #[test]
    fn example_b_service() {
        let bytes = hex(
            "c0 00 00 00 00 00 00 00 00 54 7c 96 09 6a f7 f6 42 00 00 00 00 00 00 00 07 00 00 00 08
             63 68 61 6e 73 65 72 76",
        );
        let op = Op::new(
            Opcode::Service,
            Addr::default(),
            Addr::new(GW, 7),
            Bytes::from_static(b"chanserv"),
        )
        .unwrap();
        assert_eq!(encode(&op), bytes);
        assert_eq!(decode_all(&bytes), vec![Ok(op)]);
    }

    #[test]
    fn example_c_dial_syn_ack_synack() {
        let dial = hex("be 54 7c 96 09 6a f7 f6 42 11 22 33 44 55 66 77 88 00 00 00 07 01 00 00 01 00 00 00 00");
        let syn = hex("02 11 22 33 44 55 66 77 88 54 7c 96 09 6a f7 f6 42 01 00 00 01 00 00 00 07 00 00 00 00");
        let gw = Addr::new(GW, 7);
        let cl = Addr::new(CL, 0x0100_0001);
        assert_eq!(decode_all(&dial), vec![Ok(Op::empty(Opcode::Dial, gw, cl))]);
        assert_eq!(encode(&Op::empty(Opcode::Syn, cl, gw)), syn);
        let mut ack = dial.clone();
        ack[0] = 0x04;
        assert_eq!(decode_all(&ack), vec![Ok(Op::empty(Opcode::Ack, gw, cl))]);
        let mut syn_ack = syn.clone();
        syn_ack[0] = 0x06;
        assert_eq!(encode(&Op::empty(Opcode::SynAck, cl, gw)), syn_ack);
    }

    #[test]
    fn example_d_request_data_and_rewind() {
        let data = hex(
            "80 54 7c 96 09 6a f7 f6 42 11 22 33 44 55 66 77 88 00 00 00 07 01 00 00 01 00 00 00 08  05 00 00 00 00 00 00 00
             80 54 7c 96 09 6a f7 f6 42 11 22 33 44 55 66 77 88 00 00 00 07 01 00 00 01 00 00 00 05  68 65 6c 6c 6f",
        );
        let rewind = hex(
            "82 11 22 33 44 55 66 77 88 54 7c 96 09 6a f7 f6 42 01 00 00 01 00 00 00 07 00 00 00 04  00 00 00 0d",
        );
        let gw = Addr::new(GW, 7);
        let cl = Addr::new(CL, 0x0100_0001);
        let ops = decode_all(&data);
        assert_eq!(
            ops,
            vec![
                Ok(Op::new(
                    Opcode::Data,
                    gw,
                    cl,
                    Bytes::from_static(&[5, 0, 0, 0, 0, 0, 0, 0])
                )
                .unwrap()),
                Ok(Op::new(Opcode::Data, gw, cl, Bytes::from_static(b"hello")).unwrap()),
            ]
        );
        let op = Op::with_u32(Opcode::Rewind, cl, gw, 13);
        assert_eq!(encode(&op), rewind);
        assert_eq!(op.payload_u32(), Some(13));
    }

    #[test]
    fn example_g_h_ping_pong_fin2() {
        let mut ping = vec![0u8; 29];
        ping[0] = 0xa0;
        assert_eq!(
            encode(&Op::empty(Opcode::Ping, Addr::default(), Addr::default())),
            ping
        );
        let mut pong = ping.clone();
        pong[0] = 0xa1;
        assert_eq!(
            decode_all(&pong),
            vec![Ok(Op::empty(
                Opcode::Pong,
                Addr::default(),
                Addr::default()
            ))]
        );
        let fin = hex("10 11 22 33 44 55 66 77 88 54 7c 96 09 6a f7 f6 42 01 00 00 01 00 00 00 07 00 00 00 00");
        let op = Op::empty(Opcode::Fin2, Addr::new(CL, 0x0100_0001), Addr::new(GW, 7));
        assert_eq!(encode(&op), fin);
    }

    #[test]
    fn unknown_opcode_is_consumed_and_not_fatal() {
        let mut bytes = hex("77 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02 ab cd");
        bytes.extend(encode(&Op::empty(
            Opcode::Ping,
            Addr::default(),
            Addr::default(),
        )));
        let ops = decode_all(&bytes);
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0], Err(OpError::UnknownOpcode { cmd: 0x77, len: 2 }));
        assert!(!ops[0].as_ref().unwrap_err().is_fatal());
        assert_eq!(ops[1].as_ref().unwrap().opcode, Opcode::Ping);
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone() {
        let mut buf = BytesMut::from(&hex("80 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 00 01")[..]);
        let capacity = buf.capacity();
        assert_eq!(decode(&mut buf), Err(OpError::Oversized { len: 65_537 }));
        assert!(OpError::Oversized { len: 65_537 }.is_fatal());
        assert_eq!(
            buf.capacity(),
            capacity,
            "nothing may be allocated for an oversized op"
        );
        let mut buf = BytesMut::from(&hex("80 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ff ff ff ff")[..]);
        assert_eq!(
            decode(&mut buf),
            Err(OpError::Oversized {
                len: u32::MAX.into()
            })
        );
        assert_eq!(
            Op::new(
                Opcode::Data,
                Addr::default(),
                Addr::default(),
                Bytes::from(vec![0; 65_537])
            ),
            Err(OpError::Oversized { len: 65_537 })
        );
        // The largest legal op decodes.
        let op = Op::new(
            Opcode::Data,
            Addr::default(),
            Addr::default(),
            Bytes::from(vec![7; 65_536]),
        )
        .unwrap();
        assert_eq!(decode_all(&encode(&op)), vec![Ok(op)]);
    }

    #[test]
    fn truncated_op_is_an_error_at_eof_only() {
        let full = encode(
            &Op::new(
                Opcode::Data,
                Addr::default(),
                Addr::default(),
                Bytes::from_static(b"abc"),
            )
            .unwrap(),
        );
        for cut in 1..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(decode(&mut buf), Ok(None));
            let need = if cut < HEADER_LEN {
                HEADER_LEN
            } else {
                full.len()
            };
            assert_eq!(
                decode_eof(&mut buf),
                Err(OpError::Truncated { have: cut, need })
            );
        }
    }

    fn any_opcode() -> impl Strategy<Value = Opcode> {
        proptest::sample::select(Opcode::ALL.to_vec())
    }

    fn any_addr() -> impl Strategy<Value = Addr> {
        (any::<u64>(), any::<u32>()).prop_map(|(h, p)| Addr::new(HostId(h), p))
    }

    fn any_op() -> impl Strategy<Value = Op> {
        (
            any_opcode(),
            any_addr(),
            any_addr(),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(opcode, dst, src, payload)| {
                Op::new(opcode, dst, src, payload.into()).unwrap()
            })
    }

    proptest! {
        #[test]
        fn round_trip(ops in proptest::collection::vec(any_op(), 0..8)) {
            let mut bytes = BytesMut::new();
            for op in &ops {
                op.encode(&mut bytes);
            }
            let decoded: Vec<_> = decode_all(&bytes).into_iter().map(|r| r.unwrap()).collect();
            prop_assert_eq!(decoded, ops);
        }

        #[test]
        fn split_at_every_boundary_decodes_the_same(ops in proptest::collection::vec(any_op(), 1..4)) {
            let mut bytes = BytesMut::new();
            for op in &ops {
                op.encode(&mut bytes);
            }
            for cut in 0..=bytes.len() {
                let mut buf = BytesMut::from(&bytes[..cut]);
                let mut out = Vec::new();
                while let Some(op) = decode(&mut buf).unwrap() {
                    out.push(op);
                }
                buf.extend_from_slice(&bytes[cut..]);
                while let Some(op) = decode(&mut buf).unwrap() {
                    out.push(op);
                }
                prop_assert!(buf.is_empty());
                prop_assert_eq!(&out, &ops);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_all(&bytes);
        }

        #[test]
        fn mutated_ops_never_panic(
            ops in proptest::collection::vec(any_op(), 1..4),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = BytesMut::new();
            for op in &ops {
                op.encode(&mut bytes);
            }
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let _ = decode_all(&bytes);
        }
    }
}
