//! How much a byte-stream connection reads next: large reads while data keeps coming, small ones once a read
//! left room unfilled (the socket was emptied), so an idle connection waits without pinning a large buffer.

use bytes::BytesMut;

/// Read size after a read that emptied the socket.
pub const IDLE_READ: usize = 512;

/// The read size of one connection.
#[derive(Debug)]
pub struct ReadSize {
    /// Read size while data keeps coming.
    chunk: usize,
    /// The last read filled all the room it was given, so more input is probably waiting.
    busy: bool,
}

impl ReadSize {
    pub fn new(chunk: usize) -> ReadSize {
        ReadSize { chunk, busy: false }
    }

    /// Makes room in `buf` for the next read: `chunk` bytes when busy, [`IDLE_READ`] otherwise (and an empty
    /// buffer grown by a burst is given back first). Returns the room made.
    pub fn prepare(&self, buf: &mut BytesMut) -> usize {
        if !self.busy && buf.is_empty() && buf.capacity() > IDLE_READ {
            *buf = BytesMut::new();
        }
        buf.reserve(if self.busy { self.chunk } else { IDLE_READ });
        buf.capacity() - buf.len()
    }

    /// Records that a read given `room` bytes returned `read`.
    pub fn read(&mut self, room: usize, read: usize) {
        self.busy = read == room;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_until_a_read_fills_its_room_and_small_again_after_one_does_not() {
        let mut size = ReadSize::new(16 << 10);
        let mut buf = BytesMut::new();
        let room = size.prepare(&mut buf);
        assert!((IDLE_READ..16 << 10).contains(&room), "{room}");
        size.read(room, room);
        buf.clear();
        assert!(size.prepare(&mut buf) >= 16 << 10);
        size.read(16 << 10, 10);
        buf.clear();
        let room = size.prepare(&mut buf);
        assert!(room < 16 << 10, "an idle connection keeps {room} bytes");
    }
}
