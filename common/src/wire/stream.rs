//! Reading and writing frames on a QUIC stream, shared by the agent and the arbiter. The
//! length is checked against the maximum before the body is read, so an oversize frame costs
//! 4 bytes of buffering.

use crate::wire::{self, DecodeError, EncodeError, FRAME_HEADER_LEN, Message};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the stream ended")]
    Finished,
    #[error("the stream ended inside a frame")]
    Truncated,
    #[error("failed to read from the stream")]
    Read {
        #[source]
        source: quinn::ReadError,
    },
    #[error("failed to write to the stream")]
    Write {
        #[source]
        source: quinn::WriteError,
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

/// Read one frame. `Finished` only at a frame boundary; a stream that ends mid-frame is `Truncated`.
pub async fn read_frame(recv: &mut quinn::RecvStream, max: u32) -> Result<Message, FrameError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    match recv.read_exact(&mut header).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Err(FrameError::Finished),
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(FrameError::Truncated),
        Err(quinn::ReadExactError::ReadError(source)) => return Err(FrameError::Read { source }),
    }
    let len = wire::frame_len(header, max).map_err(|source| FrameError::Decode { source })?;
    let mut payload = vec![0u8; len];
    match recv.read_exact(&mut payload).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(FrameError::Truncated),
        Err(quinn::ReadExactError::ReadError(source)) => return Err(FrameError::Read { source }),
    }
    wire::decode_payload(&payload).map_err(|source| FrameError::Decode { source })
}

pub async fn write_frame(send: &mut quinn::SendStream, msg: &Message, max: u32) -> Result<(), FrameError> {
    let frame = wire::encode(msg, max).map_err(|source| FrameError::Encode { source })?;
    send.write_all(&frame).await.map_err(|source| FrameError::Write { source })
}
