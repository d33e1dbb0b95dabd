//! Inputs that `fuzz/`'s coverage-guided targets (scripts/fuzz) found, minimized, kept so
//! that what they showed stays fixed.
//!
//! One test function only, so that the counting allocator measures this work alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use tokio_util::codec::Decoder;
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

/// The peak heap growth while `work` runs.
fn peak_growth(work: impl FnOnce()) -> usize {
    let baseline = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(baseline, Ordering::Relaxed);
    work();
    PEAK_BYTES.load(Ordering::Relaxed).saturating_sub(baseline)
}

/// frame_decoder, crash-72e1ac70 (minimized): one 34-byte frame whose nested sequences
/// announce long lengths. serde's `Vec` visitor reserved up to 1 MiB for each before bincode
/// found the elements missing, so decoding it held 2 MiB: 60,000 times the frame, and 32
/// times the master's pre-handshake frame limit.
const NESTED_SEQUENCE_CLAIMS: &str = "0000002204000000fde87a21010066fdda000d0000ffff0000000000fcfcfcfcfcfc9a000b9a";

/// Also each kind of message whose first collection claims 2^32 elements in a few bytes.
fn long_claims() -> Vec<Vec<u8>> {
    (0u8..24).map(|variant| vec![variant, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00]).collect()
}

fn decode_everything(payload: &[u8]) {
    let _ = decode_message::<ToMaster>(payload);
    let _ = decode_message::<FromMaster>(payload);
    let _ = decode_message::<Hello>(payload);
    let _ = decode_message::<HelloReply>(payload);
}

#[test]
fn hostile_lengths_reserve_little() {
    let stream = hex_bytes(NESTED_SEQUENCE_CLAIMS);
    let mut buf = BytesMut::from(&stream[..]);
    let frame = FrameCodec::new(64 * 1024).decode(&mut buf).unwrap().expect("one whole frame");
    assert_eq!(frame.len(), 34);
    let grown = peak_growth(|| decode_everything(&frame));
    // What the decoded parts themselves take (a few small vectors), far below the 64 KiB
    // pre-handshake limit; it was 2 MiB.
    assert!(grown < 16 * 1024, "decoding a 34-byte frame held {grown} bytes");
    for payload in long_claims() {
        let grown = peak_growth(|| decode_everything(&payload));
        assert!(grown < 16 * 1024, "decoding {payload:02x?} held {grown} bytes");
    }
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}
