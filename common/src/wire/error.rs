//! Errors at the wire boundary.

/// Why bytes from a peer are not a message. Every variant is the peer's fault or an attack;
/// the receiver logs it and closes that connection.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge { len: u32, max: u32 },
    #[error("frame of {len} bytes is shorter than its {min}-byte type id")]
    FrameTooShort { len: u32, min: u32 },
    #[error("unknown message type id {type_id}")]
    UnknownType { type_id: u16 },
    #[error("malformed {name} body (type id {type_id})")]
    Body {
        type_id: u16,
        name: &'static str,
        #[source]
        source: rmp_serde::decode::Error,
    },
    #[error("{extra} trailing bytes after the {name} body (type id {type_id})")]
    TrailingBytes { type_id: u16, name: &'static str, extra: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("failed to encode a {name} body")]
    Body {
        name: &'static str,
        #[source]
        source: rmp_serde::encode::Error,
    },
    #[error("encoded {name} frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge { name: &'static str, len: usize, max: u32 },
}
