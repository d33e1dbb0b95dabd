//! Errors of framing and decoding.

/// Why a frame could not be read or written. Any of these ends the connection it came on;
/// none of them is a reason to stop a daemon.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes is larger than the maximum of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("frame has {0} bytes left over after its message")]
    TrailingBytes(usize),
}
