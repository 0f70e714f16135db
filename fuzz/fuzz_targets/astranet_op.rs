//! AstraNet: the op decoder and the link state machine behind it (handshake, service lookup, DIAL, streams,
//! windows, keepalive): any bytes from a peer, split anywhere, never panic, and every stream's data is read.
#![no_main]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use gatewayd_fuzz::chunked;
use libfuzzer_sys::fuzz_target;
use protocols::chanserv::astranet::{op, Event, HostId, Link, LinkConfig, Recv};

fuzz_target!(|data: &[u8]| {
    let mut ops = BytesMut::from(data);
    while let Ok(Some(_)) | Err(op::OpError::UnknownOpcode { .. }) = op::decode(&mut ops) {}

    let mut now = Instant::now();
    let mut link = Link::new(LinkConfig::new(HostId(0x1234)), None, now);
    for chunk in chunked(data) {
        link.handle_input(chunk, now);
        while link.poll_transmit(now).is_some() {}
        while let Some(event) = link.poll_event() {
            if let Event::Readable { stream } = event {
                while let Ok(Recv::Data(_)) = link.recv(stream) {}
            }
        }
        now += Duration::from_millis(500);
        link.handle_timeout(now);
    }
    link.handle_eof();
    while link.poll_event().is_some() {}
});
