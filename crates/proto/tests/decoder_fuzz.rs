//! Feeds random, truncated and corrupted bytes to the frame decoder and the message
//! decoders: nothing may panic, and memory stays bounded by the frame limit.
//!
//! One test function only, so that the counting allocator measures this work alone.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};
use xrdtest_proto::*;

struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Runs one input, as one connection's bytes, through a fresh decoder and every message
/// type; returns the frames decoded.
fn feed(max_frame: usize, input: &[u8]) -> usize {
    let mut codec = FrameCodec::new(max_frame);
    let mut buf = BytesMut::from(input);
    let mut frames = 0;
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                frames += 1;
                let _ = decode_message::<FromMaster>(&frame);
                let _ = decode_message::<ToMaster>(&frame);
                let _ = decode_message::<Hello>(&frame);
                let _ = decode_message::<HelloReply>(&frame);
            }
            Ok(None) => break,
            // A decode error ends the connection in the daemons; so it does here.
            Err(_) => break,
        }
    }
    frames
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

#[test]
fn decoder_survives_hostile_input_with_bounded_memory() {
    let max_frame = DEFAULT_MAX_FRAME_LEN;
    let mut rng = Rng(0x5eed_cafe_f00d_beef);

    // A corpus of valid frames of every kind.
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut encoder = FrameCodec::default();
    let mut push = |buf: BytesMut| corpus.push(buf.to_vec());
    for message in common::all_from_master() {
        let mut buf = BytesMut::new();
        encoder.encode(&message, &mut buf).unwrap();
        push(buf);
    }
    for message in common::all_to_master() {
        let mut buf = BytesMut::new();
        encoder.encode(&message, &mut buf).unwrap();
        push(buf);
    }
    let mut buf = BytesMut::new();
    encoder.encode(&Hello::new(Role::Slave, "slave1", "s"), &mut buf).unwrap();
    push(buf);

    let baseline = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(baseline, Ordering::Relaxed);
    let mut decoded_frames = 0usize;
    let mut inputs = 0usize;

    // 1. Every truncation of every valid frame.
    for frame in &corpus {
        for cut in 0..frame.len() {
            decoded_frames += feed(max_frame, &frame[..cut]);
            inputs += 1;
        }
    }
    // 2. Truncated payloads behind a length that matches them (the decoder sees a whole
    //    frame whose message ends early).
    for frame in &corpus {
        let payload = &frame[4..];
        for cut in 0..payload.len() {
            decoded_frames += feed(max_frame, &framed(&payload[..cut]));
            inputs += 1;
        }
    }
    // 3. Bit flips and byte changes in valid frames (payload only, and anywhere).
    for _ in 0..60_000 {
        let mut frame = corpus[rng.below(corpus.len())].clone();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(frame.len());
            if rng.below(2) == 0 {
                frame[at] ^= 1 << rng.below(8);
            } else {
                frame[at] = rng.next() as u8;
            }
        }
        decoded_frames += feed(max_frame, &frame);
        inputs += 1;
    }
    // 4. Random payloads behind a valid length: garbage for bincode to chew on, including
    //    huge announced collection lengths.
    for _ in 0..60_000 {
        let len = rng.below(300);
        decoded_frames += feed(max_frame, &framed(&rng.bytes(len)));
        inputs += 1;
    }
    // 5. Plain random bytes, including random length heads.
    for _ in 0..20_000 {
        let len = rng.below(2048);
        decoded_frames += feed(max_frame, &rng.bytes(len));
        inputs += 1;
    }
    // 6. Heads announcing the largest lengths: refused, never allocated.
    for announced in [u32::MAX, (max_frame + 1) as u32, (HARD_MAX_FRAME_LEN as u32) * 2] {
        let mut buf = BytesMut::from(&announced.to_be_bytes()[..]);
        let result = FrameCodec::new(max_frame).decode(&mut buf);
        assert!(matches!(result, Err(ProtoError::FrameTooLarge { .. })), "{result:?}");
    }
    // 7. A valid-looking varint length of 2^62 elements inside a message body.
    let mut hostile = encode_message(&ToMaster::Reattach { stages: vec![], faults: vec![], sessions: vec![] }).unwrap();
    hostile.truncate(1);
    hostile.extend_from_slice(&[0xFF, 0, 0, 0, 0, 0, 0, 0, 0x40]);
    assert!(decode_message::<ToMaster>(&hostile).is_err());

    let peak_growth = PEAK_BYTES.load(Ordering::Relaxed).saturating_sub(baseline);
    println!("{inputs} inputs, {decoded_frames} frames decoded, peak memory growth {peak_growth} bytes");
    assert!(inputs > 140_000);
    assert!(decoded_frames > 1000, "the corpus frames must decode as frames");
    // Bounded by the frame limit (a partial frame's buffer) plus slack for the decoders.
    assert!(peak_growth < 2 * max_frame + (1 << 20), "peak memory growth {peak_growth} bytes exceeds the bound");
}
