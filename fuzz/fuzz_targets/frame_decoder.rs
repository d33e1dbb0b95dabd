//! Bytes from the network, as both ends of a connection read them: the master (a peer's
//! `Hello` under the pre-handshake frame limit, then `ToMaster` under its configured limit)
//! and a peer (the master's `HelloReply`, then `FromMaster`). The bytes arrive in chunks, as
//! a stream delivers them, and every decoded frame also goes through every message decoder.
//!
//! Nothing may panic, and the memory one input makes the decoder hold stays bounded by
//! the frame limit (a counting allocator checks it).
//!
//! Input: byte 0 picks the limits and the chunk size; the rest is the stream.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use xrdtest_proto::handshake::{is_valid_peer_name, secrets_match};
use xrdtest_proto::{
    decode_message, FrameCodec, FromMaster, Hello, HelloReply, ToMaster, VersionPrefix, DEFAULT_MAX_FRAME_LEN, MAGIC,
    PROTOCOL_VERSION,
};

/// The master's limit before a peer is welcomed (`PRE_HANDSHAKE_MAX_FRAME` in
/// crates/master/src/listener.rs; copied, as the fuzz crate does not build the master).
const PRE_HANDSHAKE_MAX_FRAME: usize = 64 * 1024;
/// Session limits tried: the default, the smallest `max_frame` of master.toml, and small ones
/// down to the least `FrameCodec` accepts (64).
const LIMITS: [usize; 4] = [DEFAULT_MAX_FRAME_LEN, 64 * 1024, 1024, 64];
/// How many bytes each read delivers; 0 is the whole input at once.
const CHUNKS: [usize; 8] = [0, 1, 2, 3, 7, 64, 1000, 4096];
const LENGTH_HEAD: usize = 4;

/// Counts live heap bytes, so that each input's peak can be checked against its bound.
struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Which end of the connection reads the stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Master,
    Peer,
}

/// What the reading end expects next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    Session,
    /// A bad frame or a refused handshake: the daemons close the connection.
    Closed,
}

/// One end's decoder, with the read buffer a `Framed` would hold.
struct Reader {
    end: End,
    codec: FrameCodec,
    buf: BytesMut,
    phase: Phase,
    session_limit: usize,
}

impl Reader {
    fn new(end: End, session_limit: usize) -> Reader {
        // The master reads a stranger's first frame under a small limit; a peer uses its own
        // configured limit from the start.
        let first_limit = if end == End::Master { PRE_HANDSHAKE_MAX_FRAME } else { session_limit };
        Reader {
            end,
            codec: FrameCodec::new(first_limit),
            buf: BytesMut::new(),
            phase: Phase::Handshake,
            session_limit,
        }
    }

    /// One read from the socket: buffer the bytes, then take every whole frame.
    fn receive(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
        while self.phase != Phase::Closed {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => self.on_frame(&frame),
                Ok(None) => break,
                Err(err) => {
                    let _ = err.to_string();
                    self.phase = Phase::Closed;
                }
            }
        }
    }

    fn on_frame(&mut self, frame: &[u8]) {
        decode_as_everything(frame);
        self.phase = match (self.end, self.phase) {
            (End::Master, Phase::Handshake) => self.master_handshake(frame),
            (End::Peer, Phase::Handshake) => peer_handshake(frame),
            (End::Master, Phase::Session) => session::<ToMaster>(frame),
            (End::Peer, Phase::Session) => session::<FromMaster>(frame),
            (_, Phase::Closed) => Phase::Closed,
        };
    }

    /// `server_handshake`'s checks; a welcomed peer gets the configured frame limit.
    fn master_handshake(&mut self, frame: &[u8]) -> Phase {
        if !prefix_is_ours(frame) {
            return Phase::Closed;
        }
        let Ok(hello) = decode_message::<Hello>(frame) else { return Phase::Closed };
        if !is_valid_peer_name(&hello.name) {
            return Phase::Closed;
        }
        let _ = secrets_match("the-enrollment-secret", &hello.secret);
        let _ = format!("{hello:?}");
        self.codec.set_max_frame_len(self.session_limit);
        Phase::Session
    }

    /// The most this input may make the decoder hold: one partial frame under the largest
    /// limit in force (the codec reserves what a head announces), the chunk being appended,
    /// and the buffer's doubling growth.
    fn memory_bound(&self, chunk: usize) -> usize {
        let limit = self.codec.max_frame_len().max(PRE_HANDSHAKE_MAX_FRAME);
        2 * (LENGTH_HEAD + limit + chunk) + 4096
    }
}

/// `client_handshake`'s checks on the master's answer.
fn peer_handshake(frame: &[u8]) -> Phase {
    if !prefix_is_ours(frame) {
        return Phase::Closed;
    }
    match decode_message::<HelloReply>(frame) {
        Ok(reply) if reply.refusal.is_none() => Phase::Session,
        Ok(reply) => {
            let _ = format!("{reply:?}");
            Phase::Closed
        }
        Err(_) => Phase::Closed,
    }
}

/// The fixed version prefix both handshake messages start with.
fn prefix_is_ours(frame: &[u8]) -> bool {
    match xrdtest_proto::codec::decode_prefix::<VersionPrefix>(frame) {
        Ok((prefix, _)) => prefix.magic == MAGIC && prefix.protocol_version == PROTOCOL_VERSION,
        Err(_) => false,
    }
}

/// After the handshake a frame that does not decode ends the connection.
fn session<T: serde::de::DeserializeOwned + std::fmt::Debug>(frame: &[u8]) -> Phase {
    match decode_message::<T>(frame) {
        Ok(message) => {
            // The daemons log messages: their Debug output must not panic either.
            let _ = format!("{message:?}");
            Phase::Session
        }
        Err(err) => {
            let _ = err.to_string();
            Phase::Closed
        }
    }
}

/// Every decoder on every frame, whatever the phase: more of each decoder is reached than
/// the handshake's gate alone would let through.
fn decode_as_everything(frame: &[u8]) {
    let _ = decode_message::<ToMaster>(frame);
    let _ = decode_message::<FromMaster>(frame);
    let _ = decode_message::<Hello>(frame);
    let _ = decode_message::<HelloReply>(frame);
}

/// Feeds `stream` to one end in chunks of `chunk` bytes (0: at once), checking memory.
fn run(end: End, session_limit: usize, chunk: usize, stream: &[u8]) {
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let mut reader = Reader::new(end, session_limit);
    let size = if chunk == 0 { stream.len().max(1) } else { chunk };
    for piece in stream.chunks(size) {
        reader.receive(piece);
        let grown = PEAK.load(Ordering::Relaxed).saturating_sub(start);
        let bound = reader.memory_bound(size) + decoder_slack(stream.len());
        assert!(grown <= bound, "{grown} bytes held for a {}-byte input (bound {bound})", stream.len());
        if reader.phase == Phase::Closed {
            break;
        }
    }
}

/// What bincode may reserve while decoding one frame: its limit is a small multiple of the
/// frame's length (see `decode_limited` in crates/proto/src/codec.rs), plus fixed slack for
/// the decoded message and its Debug text.
fn decoder_slack(input_len: usize) -> usize {
    64 * input_len + (1 << 20)
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else { return };
    let session_limit = LIMITS[usize::from(control & 0b11)];
    let chunk = CHUNKS[usize::from(control >> 2) % CHUNKS.len()];
    run(End::Master, session_limit, chunk, stream);
    run(End::Peer, session_limit, chunk, stream);
});
