//! Length-delimited frames carrying bincode 2 payloads.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of bincode (serde,
//! standard configuration). The decoder yields raw frames; [`decode_message`] turns one into
//! a typed message. Keeping the two apart lets the handshake read a version prefix before
//! it trusts the rest of a frame.

use std::cell::Cell;

use bincode::serde::OwnedSerdeDecoder;
use bytes::{BufMut, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec, LengthDelimitedCodecError};

use crate::capped::{Capped, TrackedSlice};
use crate::error::ProtoError;

/// Default largest frame: room for a 1 MiB output chunk or a collected log file with its
/// envelope, small enough that a hostile length costs little memory.
pub const DEFAULT_MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// No configuration may raise the frame limit past this; bincode's own allocation limit
/// is set to it as a second guard.
pub const HARD_MAX_FRAME_LEN: usize = 64 * 1024 * 1024;

const LENGTH_FIELD_LEN: usize = 4;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<HARD_MAX_FRAME_LEN>()
}

/// bincode's limit counts the in-memory size of what it decodes (a varint of one byte on the
/// wire claims the 8 bytes of its `u64`), so a payload can claim up to this many times its
/// own length.
const CLAIM_PER_WIRE_BYTE: usize = 8;

/// Decodes with bincode's allocation limit set to the smallest bucket that holds what the
/// payload can legitimately claim. A string or byte field can never be longer than the
/// payload it arrived in, so valid messages always fit, while a hostile length claim inside
/// a small frame cannot make bincode reserve more than a small multiple of the frame's size
/// before it notices the bytes are not there. Sequences and maps, which bincode hands to
/// serde's visitors unchecked, have their lengths capped by [`crate::capped`].
fn decode_limited<T: DeserializeOwned>(payload: &[u8]) -> Result<(T, usize), bincode::error::DecodeError> {
    let claimable = payload.len().saturating_mul(CLAIM_PER_WIRE_BYTE);
    macro_rules! within {
        ($($limit:expr),*) => {
            $(
                if claimable <= $limit {
                    return decode_with(payload, bincode::config::standard().with_limit::<{ $limit }>());
                }
            )*
        };
    }
    within!(1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24, 1 << 26, 1 << 28);
    decode_with(payload, bincode::config::standard().with_limit::<{ HARD_MAX_FRAME_LEN * CLAIM_PER_WIRE_BYTE }>())
}

/// Decodes `T` from the start of `payload`, returning it and the bytes it used.
fn decode_with<T: DeserializeOwned, C: bincode::config::Config>(
    payload: &[u8],
    config: C,
) -> Result<(T, usize), bincode::error::DecodeError> {
    let left = Cell::new(payload.len());
    let mut decoder = OwnedSerdeDecoder::from_reader(TrackedSlice::new(payload, &left), config);
    let message = T::deserialize(Capped::new(decoder.as_deserializer(), &left))?;
    Ok((message, payload.len() - left.get()))
}

/// Encodes a message into a standalone payload (no length prefix).
pub fn encode_message<T: Serialize>(message: &T) -> Result<Vec<u8>, ProtoError> {
    bincode::serde::encode_to_vec(message, bincode_config()).map_err(|e| ProtoError::Encode(e.to_string()))
}

/// Decodes a whole frame payload into a message; bytes left over are an error.
pub fn decode_message<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtoError> {
    let (message, used) = decode_prefix::<T>(payload)?;
    if used != payload.len() {
        return Err(ProtoError::TrailingBytes(payload.len() - used));
    }
    Ok(message)
}

/// Decodes a message from the start of a payload, returning it and the bytes it used.
/// The handshake uses this to read the fixed version prefix of any version's `Hello`.
pub fn decode_prefix<T: DeserializeOwned>(payload: &[u8]) -> Result<(T, usize), ProtoError> {
    decode_limited(payload).map_err(|e| ProtoError::Decode(e.to_string()))
}

/// The frame codec: decodes raw frames, encodes any serde message.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    frames: LengthDelimitedCodec,
    max_frame_len: usize,
}

impl FrameCodec {
    /// A codec refusing frames larger than `max_frame_len` (capped at [`HARD_MAX_FRAME_LEN`]).
    pub fn new(max_frame_len: usize) -> FrameCodec {
        let max_frame_len = max_frame_len.clamp(64, HARD_MAX_FRAME_LEN);
        let frames = LengthDelimitedCodec::builder()
            .length_field_length(LENGTH_FIELD_LEN)
            .max_frame_length(max_frame_len)
            .new_codec();
        FrameCodec { frames, max_frame_len }
    }

    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Changes the limit (capped alike): small until a peer is authenticated, then its own.
    pub fn set_max_frame_len(&mut self, max_frame_len: usize) {
        let max_frame_len = max_frame_len.clamp(64, HARD_MAX_FRAME_LEN);
        self.frames.set_max_frame_length(max_frame_len);
        self.max_frame_len = max_frame_len;
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, ProtoError> {
        self.frames.decode(src).map_err(|err| {
            let too_large =
                err.get_ref().is_some_and(|inner| inner.downcast_ref::<LengthDelimitedCodecError>().is_some());
            if too_large && src.len() >= LENGTH_FIELD_LEN {
                // tokio-util refuses the frame while reading its head, leaving the head in the
                // buffer: read the announced length from it so the error can name it.
                let announced = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
                ProtoError::FrameTooLarge { len: announced, max: self.max_frame_len }
            } else {
                ProtoError::Io(err)
            }
        })
    }
}

impl<T: Serialize> Encoder<&T> for FrameCodec {
    type Error = ProtoError;

    fn encode(&mut self, message: &T, dst: &mut BytesMut) -> Result<(), ProtoError> {
        // Encode straight into the output buffer behind a placeholder length, then fill it in:
        // no intermediate copy of large output chunks.
        let start = dst.len();
        dst.put_u32(0);
        let mut writer = dst.writer();
        let written = bincode::serde::encode_into_std_write(message, &mut writer, bincode_config());
        let dst = writer.into_inner();
        let len = match written {
            Ok(len) => len,
            Err(err) => {
                dst.truncate(start);
                return Err(ProtoError::Encode(err.to_string()));
            }
        };
        if len > self.max_frame_len {
            dst.truncate(start);
            return Err(ProtoError::FrameTooLarge { len, max: self.max_frame_len });
        }
        dst[start..start + LENGTH_FIELD_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}
