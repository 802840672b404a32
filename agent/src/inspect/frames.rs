//! Wire frames on a byte stream (the agent's unix socket): the same length-prefixed
//! MessagePack frames as the QUIC stream, length checked before the body is read.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use truce_common::wire::{self, DecodeError, EncodeError, FRAME_HEADER_LEN, Message};

#[derive(Debug, thiserror::Error)]
pub enum StreamFrameError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("the connection ended inside a frame")]
    Truncated,
    #[error("i/o error on the connection")]
    Io {
        #[source]
        source: std::io::Error,
    },
    #[error("bad frame")]
    Decode {
        #[source]
        source: DecodeError,
    },
    #[error("could not encode a frame")]
    Encode {
        #[source]
        source: EncodeError,
    },
}

/// Read one frame; `Closed` only at a frame boundary.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: u32) -> Result<Message, StreamFrameError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut got = 0;
    while got < FRAME_HEADER_LEN {
        match r.read(&mut header[got..]).await {
            Ok(0) if got == 0 => return Err(StreamFrameError::Closed),
            Ok(0) => return Err(StreamFrameError::Truncated),
            Ok(n) => got += n,
            Err(source) => return Err(StreamFrameError::Io { source }),
        }
    }
    let len = wire::frame_len(header, max).map_err(|source| StreamFrameError::Decode { source })?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.map_err(|source| match source.kind() {
        std::io::ErrorKind::UnexpectedEof => StreamFrameError::Truncated,
        _ => StreamFrameError::Io { source },
    })?;
    wire::decode_payload(&payload).map_err(|source| StreamFrameError::Decode { source })
}

pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, msg: &Message, max: u32) -> Result<(), StreamFrameError> {
    let frame = wire::encode(msg, max).map_err(|source| StreamFrameError::Encode { source })?;
    w.write_all(&frame).await.map_err(|source| StreamFrameError::Io { source })?;
    w.flush().await.map_err(|source| StreamFrameError::Io { source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use truce_common::wire::{Ack, MAX_FRAME_BYTES};

    #[tokio::test]
    async fn frames_cross_a_stream_and_an_oversize_header_is_refused_unread() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let msg = Message::Ack(Ack { seq: 7 });
        write_frame(&mut a, &msg, MAX_FRAME_BYTES).await.expect("write");
        assert_eq!(read_frame(&mut b, MAX_FRAME_BYTES).await.expect("read"), msg);
        a.write_all(&(MAX_FRAME_BYTES + 1).to_be_bytes()).await.expect("write header");
        assert!(matches!(read_frame(&mut b, MAX_FRAME_BYTES).await, Err(StreamFrameError::Decode { .. })));
        drop(a);
        assert!(matches!(read_frame(&mut b, MAX_FRAME_BYTES).await, Err(StreamFrameError::Closed)));
    }
}
