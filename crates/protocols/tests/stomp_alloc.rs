//! The decoder never allocates in proportion to what the wire announces or sends: with small
//! limits, no single allocation made inside `Decoder::decode` may exceed a bound set by the
//! header caps, however large or hostile the input. A counting global allocator measures the
//! largest allocation made on this thread while a `decode` call runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use proptest::prelude::*;
use protocols::stomp::{Decoded, Decoder, Limits, Version};

struct Tracking;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    let _ = ACTIVE.try_with(|active| {
        if active.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

const LIMITS: Limits = Limits {
    max_frame_size: 16 * 1024,
    max_pre_connect_frame_size: 16 * 1024,
    max_body_size: 8 * 1024,
    max_headers: 8,
    max_header_line: 128,
    max_command_line: 32,
};

/// What the decoder may allocate at once under `LIMITS`: its header tables (8 entries) and
/// one unescaped header line, with room for allocator rounding. Bodies, frames and announced
/// lengths are far larger than this.
const BOUND: usize = 1024;

/// Feed `input` in `chunk`-byte reads; returns the largest allocation seen inside `decode`
/// and the number of frames decoded.
fn largest_allocation(input: &[u8], chunk: usize, version: Option<Version>) -> (usize, usize) {
    let mut decoder = Decoder::new(LIMITS);
    if let Some(v) = version {
        decoder.set_version(v);
    }
    let mut buf = BytesMut::with_capacity(input.len());
    LARGEST.with(|l| l.set(0));
    let mut frames = 0;
    'feed: for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            ACTIVE.with(|a| a.set(true));
            let result = decoder.decode(&mut buf);
            ACTIVE.with(|a| a.set(false));
            match result {
                Ok(Some(Decoded::Frame(_))) => frames += 1,
                Ok(Some(Decoded::HeartBeat)) => {}
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    (LARGEST.with(|l| l.get()), frames)
}

fn big_frame(body: usize, escapes: bool) -> Vec<u8> {
    let value = if escapes {
        "a\\nb\\c".repeat(20)
    } else {
        "v".repeat(120)
    };
    let mut frame =
        format!("SEND\ndestination:/queue/a\nx-h:{value}\ncontent-length:{body}\n\n").into_bytes();
    frame.extend(std::iter::repeat_n(b'\0', body));
    frame.push(0);
    frame
}

#[test]
fn large_valid_frames_do_not_allocate_their_size() {
    for chunk in [1, 7, 4096, usize::MAX] {
        for escapes in [false, true] {
            let input = big_frame(8 * 1024, escapes);
            let (largest, frames) = largest_allocation(&input, chunk, Some(Version::V1_2));
            assert_eq!(frames, 1);
            assert!(
                largest <= BOUND,
                "chunk {chunk}: allocated {largest} bytes at once"
            );
        }
    }
}

#[test]
fn announced_lengths_are_not_allocated() {
    let input = b"SEND\ncontent-length:18446744073709551615\n\nxyz";
    assert!(largest_allocation(input, usize::MAX, Some(Version::V1_2)).0 <= BOUND);
    let input = b"SEND\ncontent-length:8000\n\nxyz";
    assert!(largest_allocation(input, 1, Some(Version::V1_2)).0 <= BOUND);
}

#[test]
fn the_bound_is_tight_enough_to_catch_a_copy() {
    // Self-check of the harness: copying the body inside the measured region is caught.
    let body = vec![7u8; 8 * 1024];
    ACTIVE.with(|a| a.set(true));
    LARGEST.with(|l| l.set(0));
    let copy = std::hint::black_box(body.clone());
    ACTIVE.with(|a| a.set(false));
    assert_eq!(copy.len(), body.len());
    assert!(LARGEST.with(|l| l.get()) > BOUND);
}

proptest! {
    #[test]
    fn hostile_streams_stay_within_the_bound(
        parts in prop::collection::vec(prop_oneof![
            prop::sample::select(vec![
                &b"SEND\n"[..], b"MESSAGE\r\n", b"CONNECT\n", b"content-length:", b"9000", b"12",
                b"\n", b"\r\n", b"\0", b":", b"\\n", b"\\c", b"x-h:", b"\n\n",
            ]).prop_map(|s| s.to_vec()),
            prop::collection::vec(any::<u8>(), 0..64),
            (1usize..4096).prop_map(|n| vec![b'q'; n]),
        ], 0..48),
        chunk in 1usize..2048,
        version in prop_oneof![
            Just(None),
            prop::sample::select(Version::ALL.to_vec()).prop_map(Some),
        ],
    ) {
        let input = parts.concat();
        let (largest, _) = largest_allocation(&input, chunk, version);
        prop_assert!(largest <= BOUND, "allocated {} bytes at once", largest);
    }
}
