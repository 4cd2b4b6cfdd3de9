//! Frames: a 4-byte big-endian length, then a postcard message. The length is checked against
//! [`MAX_FRAME`] before anything is allocated for the body.

use super::error::ProtoError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest frame body accepted (1 MiB).
pub const MAX_FRAME: usize = 1024 * 1024;
pub const HEADER_LEN: usize = 4;

/// The body length a header announces, if it is within the limit.
pub fn check_header(header: [u8; HEADER_LEN]) -> Result<usize, ProtoError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(ProtoError::FrameTooLarge { len });
    }
    Ok(len)
}

/// One message as a whole frame, header included.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, ProtoError> {
    let body = postcard::to_allocvec(message).map_err(|e| ProtoError::Malformed {
        detail: format!("cannot encode: {e}"),
    })?;
    if body.len() > MAX_FRAME {
        return Err(ProtoError::FrameTooLarge { len: body.len() });
    }
    // The check above keeps the length within u32.
    let len =
        u32::try_from(body.len()).map_err(|_| ProtoError::FrameTooLarge { len: body.len() })?;
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Decodes a frame body; trailing bytes are refused so one message has one encoding.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ProtoError> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((message, [])) => Ok(message),
        Ok((_, rest)) => Err(ProtoError::Malformed {
            detail: format!("{} bytes after the message", rest.len()),
        }),
        Err(e) => Err(ProtoError::Malformed {
            detail: e.to_string(),
        }),
    }
}

/// Splits a byte stream into frame bodies, for callers that read in arbitrary chunks.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame body, `None` if more bytes are needed. An oversized header is an
    /// error as soon as its four bytes are in, before the body arrives.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ProtoError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = check_header(*header)?;
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let body = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(body))
    }

    /// Bytes received that do not yet form a frame (a truncated frame at end of stream).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{AgentMsg, Hello, PROTOCOL_VERSION, Purpose};
    use proptest::prelude::*;

    fn hello() -> AgentMsg {
        AgentMsg::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: "0.1.0".into(),
            purpose: Purpose::Heartbeat,
        })
    }

    #[test]
    fn a_frame_round_trips_through_the_reader_byte_by_byte() {
        let frame = encode(&hello()).unwrap();
        let mut reader = FrameReader::default();
        for (i, byte) in frame.iter().enumerate() {
            assert_eq!(
                reader.next_frame().unwrap(),
                None,
                "complete too early at {i}"
            );
            reader.push(&[*byte]);
        }
        let body = reader.next_frame().unwrap().unwrap();
        assert_eq!(decode::<AgentMsg>(&body).unwrap(), hello());
        assert_eq!(reader.pending(), 0);
    }

    #[test]
    fn an_oversized_header_is_refused_before_the_body() {
        let mut reader = FrameReader::default();
        reader.push(&((MAX_FRAME as u32) + 1).to_be_bytes());
        assert_eq!(
            reader.next_frame(),
            Err(ProtoError::FrameTooLarge { len: MAX_FRAME + 1 })
        );
        assert!(check_header((MAX_FRAME as u32).to_be_bytes()).is_ok());
    }

    #[test]
    fn trailing_bytes_and_garbage_are_malformed() {
        let mut body = postcard::to_allocvec(&hello()).unwrap();
        body.push(0);
        assert!(matches!(
            decode::<AgentMsg>(&body),
            Err(ProtoError::Malformed { .. })
        ));
        assert!(matches!(
            decode::<AgentMsg>(&[0xff; 7]),
            Err(ProtoError::Malformed { .. })
        ));
        assert!(matches!(
            decode::<AgentMsg>(&[]),
            Err(ProtoError::Malformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let mut reader = FrameReader::default();
            reader.push(&bytes);
            while let Ok(Some(body)) = reader.next_frame() {
                let _ = decode::<AgentMsg>(&body);
                let _ = decode::<crate::proto::ManagerMsg>(&body);
            }
        }
    }
}
