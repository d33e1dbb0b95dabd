//! A framed stream that sends and receives typed messages.

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::codec::{decode_message, FrameCodec};
use crate::error::ProtoError;

/// Buffers grown past this are given back once empty: a rare large frame (a session's
/// slave list, a log file) must not stay allocated on each of thousands of connections.
const KEPT_BUFFER: usize = 64 * 1024;

/// One peer connection: owns the stream and its buffers, offers only whole messages.
///
/// [`Connection::recv`] is cancel-safe, so it can sit in a `tokio::select!` beside an
/// outgoing queue: a frame half-read when the other branch wins stays buffered.
pub struct Connection<S> {
    framed: Framed<S, FrameCodec>,
    /// A frame queued since the last flush was large: give the buffer back after it.
    large_queued: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S, max_frame_len: usize) -> Connection<S> {
        Connection { framed: Framed::new(stream, FrameCodec::new(max_frame_len)), large_queued: false }
    }

    /// Changes the largest frame accepted and sent from now on (see [`FrameCodec::new`]).
    pub fn set_max_frame_len(&mut self, max_frame_len: usize) {
        self.framed.codec_mut().set_max_frame_len(max_frame_len);
    }

    /// Sends one message and flushes it.
    pub async fn send<T: Serialize>(&mut self, message: &T) -> Result<(), ProtoError> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Queues one message without flushing; follow with [`Connection::flush`]. For bursts.
    pub async fn feed<T: Serialize>(&mut self, message: &T) -> Result<(), ProtoError> {
        self.framed.feed(message).await?;
        self.large_queued |= self.framed.write_buffer().len() > KEPT_BUFFER;
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<(), ProtoError> {
        SinkExt::<&()>::flush(&mut self.framed).await?;
        // Written out, the buffer still holds its allocation (a consumed `BytesMut` reports
        // only what is left of it as capacity), so the size is known from before.
        if std::mem::take(&mut self.large_queued) && self.framed.write_buffer().is_empty() {
            *self.framed.write_buffer_mut() = BytesMut::new();
        }
        Ok(())
    }

    /// The next raw frame; `None` when the peer closed the connection cleanly.
    pub async fn recv_frame(&mut self) -> Result<Option<BytesMut>, ProtoError> {
        let frame = self.framed.next().await.transpose()?;
        let large = frame.as_ref().is_some_and(|f| f.len() > KEPT_BUFFER);
        if large && self.framed.read_buffer().is_empty() {
            *self.framed.read_buffer_mut() = BytesMut::new();
        }
        Ok(frame)
    }

    /// The next message; `None` when the peer closed the connection cleanly.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ProtoError> {
        match self.recv_frame().await? {
            Some(frame) => decode_message(&frame).map(Some),
            None => Ok(None),
        }
    }

    pub fn get_ref(&self) -> &S {
        self.framed.get_ref()
    }

    pub fn get_mut(&mut self) -> &mut S {
        self.framed.get_mut()
    }
}
