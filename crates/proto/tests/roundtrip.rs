//! Every message survives encoding, framing and decoding unchanged.

mod common;

use bytes::BytesMut;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder};
use xrdtest_proto::*;

fn through_codec<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(message: &T) {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    codec.encode(message, &mut buf).expect("encode");
    let frame = codec.decode(&mut buf).expect("decode frame").expect("a whole frame");
    assert!(buf.is_empty(), "one message is one frame");
    let back: T = decode_message(&frame).expect("decode message");
    assert_eq!(&back, message);
}

#[test]
fn every_from_master_message_round_trips() {
    let all = common::all_from_master();
    assert!(all.len() >= 12);
    for message in &all {
        through_codec(message);
    }
}

#[test]
fn every_to_master_message_round_trips() {
    for message in &common::all_to_master() {
        through_codec(message);
    }
}

#[test]
fn handshake_messages_round_trip() {
    through_codec(&Hello::new(Role::Slave, "slave1", "s3cret"));
    through_codec(&Hello::new(Role::Hypervisor, "hv1.lab", "s3cret"));
    through_codec(&Hello::enrolling(Role::Slave, "slave2", ""));
    through_codec(&common::sample_hello_reply());
}

#[test]
fn hello_starts_with_a_version_prefix_any_version_can_read() {
    let hello = Hello::new(Role::Slave, "slave1", "s3cret");
    let bytes = encode_message(&hello).unwrap();
    let (prefix, _) = codec::decode_prefix::<VersionPrefix>(&bytes).unwrap();
    assert_eq!(prefix, VersionPrefix { magic: MAGIC, protocol_version: PROTOCOL_VERSION });
    let (prefix, _) =
        codec::decode_prefix::<VersionPrefix>(&encode_message(&common::sample_hello_reply()).unwrap()).unwrap();
    assert_eq!(prefix.magic, MAGIC);
}

#[test]
fn debug_output_of_hello_hides_the_secret() {
    let text = format!("{:?}", Hello::new(Role::Slave, "slave1", "hunter2"));
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn several_frames_in_one_buffer_and_split_arrivals_decode_in_order() {
    let all = common::all_to_master();
    let mut codec = FrameCodec::default();
    let mut wire = BytesMut::new();
    for message in &all {
        codec.encode(message, &mut wire).unwrap();
    }
    // Feed the bytes in 7-byte pieces, as a slow network would.
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for piece in wire.chunks(7) {
        buf.extend_from_slice(piece);
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            decoded.push(decode_message::<ToMaster>(&frame).unwrap());
        }
    }
    assert_eq!(decoded, all);
}

#[test]
fn oversized_messages_are_refused_on_both_sides() {
    let mut small = FrameCodec::new(1024);
    let big = ToMaster::Output(OutputChunk {
        stage_id: 1,
        seq: 0,
        lines: vec![OutputLine { unix_ms: 0, text: "x".repeat(4096) }],
    });
    let mut buf = BytesMut::new();
    match small.encode(&big, &mut buf) {
        Err(ProtoError::FrameTooLarge { len, max: 1024 }) => assert!(len > 4096),
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert!(buf.is_empty(), "a refused message leaves nothing half-written");

    let mut large = FrameCodec::default();
    large.encode(&big, &mut buf).unwrap();
    match small.decode(&mut buf) {
        Err(ProtoError::FrameTooLarge { max: 1024, .. }) => {}
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut bytes = encode_message(&ToMaster::TagRequest { request_id: 1 }).unwrap();
    bytes.push(0);
    assert!(matches!(decode_message::<ToMaster>(&bytes), Err(ProtoError::TrailingBytes(1))));
}

#[tokio::test]
async fn messages_cross_a_connection() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut master = Connection::new(a, DEFAULT_MAX_FRAME_LEN);
    let mut slave = Connection::new(b, DEFAULT_MAX_FRAME_LEN);
    let to_send = common::all_from_master();
    let expected = to_send.clone();
    let sender = tokio::spawn(async move {
        for message in &to_send {
            master.feed(message).await.unwrap();
        }
        master.flush().await.unwrap();
        master
    });
    for message in &expected {
        let got: FromMaster = slave.recv().await.unwrap().unwrap();
        assert_eq!(&got, message);
    }
    drop(sender.await.unwrap());
    assert!(slave.recv::<FromMaster>().await.unwrap().is_none(), "clean close reads as None");
}

/// Regression: bincode's limit counts in-memory sizes, so a chunk of many short lines (each
/// `u64` timestamp a few bytes on the wire but 8 in memory) once failed with LimitExceeded.
#[test]
fn large_chunks_of_short_and_long_lines_decode() {
    for (lines, text) in [(60_000usize, ""), (650, "x".repeat(99).as_str()), (20_000, "ab")] {
        let chunk = ToMaster::Output(OutputChunk {
            stage_id: 3,
            seq: 9,
            lines: (0..lines)
                .map(|i| OutputLine { unix_ms: 1_763_000_000_000 + i as u64, text: text.to_string() })
                .collect(),
        });
        through_codec(&chunk);
    }
}

/// A connection starts with a small limit and is given its own once the peer is known: the
/// frame refused before is taken after.
#[test]
fn the_frame_limit_can_be_raised_after_the_handshake() {
    let big = ToMaster::Output(OutputChunk {
        stage_id: 1,
        seq: 0,
        lines: vec![OutputLine { unix_ms: 0, text: "x".repeat(100_000) }],
    });
    let mut wire = BytesMut::new();
    FrameCodec::default().encode(&big, &mut wire).unwrap();
    let mut codec = FrameCodec::new(64 * 1024);
    match codec.decode(&mut wire.clone()) {
        Err(ProtoError::FrameTooLarge { max, .. }) => assert_eq!(max, 64 * 1024),
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    codec.set_max_frame_len(DEFAULT_MAX_FRAME_LEN);
    assert_eq!(codec.max_frame_len(), DEFAULT_MAX_FRAME_LEN);
    let frame = codec.decode(&mut wire).unwrap().expect("a whole frame");
    assert_eq!(decode_message::<ToMaster>(&frame).unwrap(), big);
}
