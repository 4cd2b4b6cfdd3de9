//! Protocol frames over an async byte stream: the only I/O the session shells need. The header
//! is checked before the body is allocated.

use crate::proto::{HEADER_LEN, ProtoError, check_header, decode, encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::fmt;
use std::io;

#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    Proto(ProtoError),
    /// The peer closed the connection between frames.
    Closed,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "connection error: {e}"),
            FrameError::Proto(e) => e.fmt(f),
            FrameError::Closed => f.write_str("the peer closed the connection"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads one message. A stream that ends inside a frame is an I/O error (truncated frame); one
/// that ends between frames is [`FrameError::Closed`].
pub async fn read<T: DeserializeOwned, S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<T, FrameError> {
    let body = read_body(stream).await?;
    decode(&body).map_err(FrameError::Proto)
}

/// Reads one frame's body, for a reader that picks the message's form by what it knows of the
/// peer (the manager decodes an agent's messages by the protocol it speaks).
pub async fn read_body<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        let n = stream
            .read(&mut header[filled..])
            .await
            .map_err(FrameError::Io)?;
        if n == 0 {
            return Err(if filled == 0 {
                FrameError::Closed
            } else {
                FrameError::Io(io::ErrorKind::UnexpectedEof.into())
            });
        }
        filled += n;
    }
    let len = check_header(header).map_err(FrameError::Proto)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.map_err(FrameError::Io)?;
    Ok(body)
}

pub async fn write<T: Serialize, S: AsyncWrite + Unpin>(
    stream: &mut S,
    message: &T,
) -> Result<(), FrameError> {
    let frame = encode(message).map_err(FrameError::Proto)?;
    stream.write_all(&frame).await.map_err(FrameError::Io)?;
    stream.flush().await.map_err(FrameError::Io)
}

/// Writes several messages with one flush: a session step that answers with more than one
/// message (`Ack` then `Done`, say) costs one TLS record and one system call, not one each.
pub async fn write_all<T: Serialize, S: AsyncWrite + Unpin>(
    stream: &mut S,
    messages: &[T],
) -> Result<(), FrameError> {
    let mut frames = Vec::new();
    for message in messages {
        frames.extend_from_slice(&encode(message).map_err(FrameError::Proto)?);
    }
    stream.write_all(&frames).await.map_err(FrameError::Io)?;
    stream.flush().await.map_err(FrameError::Io)
}
