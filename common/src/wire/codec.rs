//! Frame encoding and decoding. Pure: bytes in, messages out, no I/O.

use super::error::{DecodeError, EncodeError};
use super::message::{Message, type_name};
use super::value_len::value_len;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The `u32` big-endian length in front of every frame.
pub const FRAME_HEADER_LEN: usize = 4;
const TYPE_ID_LEN: usize = 2;

/// Append one frame for `msg` to `out`. Fails rather than emit a frame the peer must refuse.
pub fn encode_into(msg: &Message, out: &mut Vec<u8>, max: u32) -> Result<(), EncodeError> {
    encode_typed(msg, msg.type_id(), out, max)
}

/// Append one frame for `msg` in the form a session of protocol `version` expects: from
/// version 3 on, `bids` and `decisions` go packed, every struct an array of its fields in
/// declaration order instead of a map from field names. The receiver needs no version: the
/// type id says which form a frame is in, and both decode to the same [`Message`].
///
/// Packed bodies carry no field names, so they shrink to about a third and skip the name
/// lookups that were most of their decode. The price is that the layout is positional: a
/// field added to `Bid` or `Decision` changes the packed form, which then needs a new type id
/// and version, while the named forms keep evolving by name.
pub fn encode_for(version: u16, msg: &Message, out: &mut Vec<u8>, max: u32) -> Result<(), EncodeError> {
    encode_typed(msg, msg.type_id_for(version), out, max)
}

fn encode_typed(msg: &Message, type_id: u16, out: &mut Vec<u8>, max: u32) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    out.extend_from_slice(&type_id.to_be_bytes());
    let name = type_name(type_id).unwrap_or("unknown");
    let packed = type_id == Message::BIDS_PACKED || type_id == Message::DECISIONS_PACKED;
    let body = match msg {
        Message::Bids(m) if packed => packed_body(out, m),
        Message::Decisions(m) if packed => packed_body(out, m),
        Message::Hello(m) => body(out, m),
        Message::Welcome(m) => body(out, m),
        Message::UnsupportedVersion(m) => body(out, m),
        Message::Report(m) => body(out, m),
        Message::Bid(m) => body(out, m),
        Message::Decisions(m) => body(out, m),
        Message::Bids(m) => body(out, m),
        Message::LeaseRenew(m) => body(out, m),
        Message::LeaseRelease(m) => body(out, m),
        Message::Ack(m) => body(out, m),
        Message::Error(m) => body(out, m),
        Message::Subscribe(m) => body(out, m),
        Message::Inspect(m) => body(out, m),
        Message::HostView(m) => body(out, m),
        Message::HostHistory(m) => body(out, m),
        Message::Federation(m) => body(out, m),
        Message::Raft(m) => body(out, m),
        Message::Redirect(m) => body(out, m),
        Message::ClusterRequest(m) => body(out, m),
        Message::ClusterStatus(m) => body(out, m),
    };
    if let Err(source) = body {
        out.truncate(start);
        return Err(EncodeError::Body { name, source });
    }
    let len = out.len() - start - FRAME_HEADER_LEN;
    match u32::try_from(len) {
        Ok(l) if l <= max => {
            out[start..start + FRAME_HEADER_LEN].copy_from_slice(&l.to_be_bytes());
            Ok(())
        }
        _ => {
            out.truncate(start);
            Err(EncodeError::FrameTooLarge { name, len, max })
        }
    }
}

/// One frame for `msg`, header included.
pub fn encode(msg: &Message, max: u32) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(128);
    encode_into(msg, &mut out, max)?;
    Ok(out)
}

fn body<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), rmp_serde::encode::Error> {
    value.serialize(&mut rmp_serde::Serializer::new(out).with_struct_map())
}

/// Structs as arrays of their fields (rmp-serde's default); enum variants keep their names.
fn packed_body<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), rmp_serde::encode::Error> {
    value.serialize(&mut rmp_serde::Serializer::new(out))
}

/// Check a frame header before reading the rest: the payload length it announces,
/// or why the frame must be refused unread.
pub fn frame_len(header: [u8; FRAME_HEADER_LEN], max: u32) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(header);
    if len > max {
        return Err(DecodeError::FrameTooLarge { len, max });
    }
    if (len as usize) < TYPE_ID_LEN {
        return Err(DecodeError::FrameTooShort { len, min: TYPE_ID_LEN as u32 });
    }
    Ok(len as usize)
}

/// Decode one payload (type id + body), as announced by [`frame_len`].
pub fn decode_payload(payload: &[u8]) -> Result<Message, DecodeError> {
    let (id, body) = match payload {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => {
            return Err(DecodeError::FrameTooShort { len: payload.len() as u32, min: TYPE_ID_LEN as u32 });
        }
    };
    Ok(match id {
        Message::HELLO => Message::Hello(parse(id, body)?),
        Message::WELCOME => Message::Welcome(parse(id, body)?),
        Message::UNSUPPORTED_VERSION => Message::UnsupportedVersion(parse(id, body)?),
        Message::REPORT => Message::Report(parse(id, body)?),
        Message::BID => Message::Bid(parse(id, body)?),
        Message::DECISIONS | Message::DECISIONS_PACKED => Message::Decisions(parse(id, body)?),
        Message::BIDS | Message::BIDS_PACKED => Message::Bids(parse(id, body)?),
        Message::LEASE_RENEW => Message::LeaseRenew(parse(id, body)?),
        Message::LEASE_RELEASE => Message::LeaseRelease(parse(id, body)?),
        Message::ACK => Message::Ack(parse(id, body)?),
        Message::ERROR => Message::Error(parse(id, body)?),
        Message::SUBSCRIBE => Message::Subscribe(parse(id, body)?),
        Message::INSPECT => Message::Inspect(parse(id, body)?),
        Message::HOST_VIEW => Message::HostView(parse(id, body)?),
        Message::HOST_HISTORY => Message::HostHistory(parse(id, body)?),
        Message::FEDERATION => Message::Federation(parse(id, body)?),
        Message::RAFT => Message::Raft(parse(id, body)?),
        Message::REDIRECT => Message::Redirect(parse(id, body)?),
        Message::CLUSTER_REQUEST => Message::ClusterRequest(parse(id, body)?),
        Message::CLUSTER_STATUS => Message::ClusterStatus(parse(id, body)?),
        type_id => return Err(DecodeError::UnknownType { type_id }),
    })
}

/// Decode the first frame in `buf`: `Ok(None)` while it is incomplete, otherwise the
/// message and how many bytes it used. The length is checked against `max` first, so an
/// oversize frame is refused from its header alone.
pub fn decode_frame(buf: &[u8], max: u32) -> Result<Option<(Message, usize)>, DecodeError> {
    let Some(header) = buf.first_chunk::<FRAME_HEADER_LEN>() else {
        return Ok(None);
    };
    let len = frame_len(*header, max)?;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((decode_payload(payload)?, FRAME_HEADER_LEN + len)))
}

fn parse<T: DeserializeOwned>(type_id: u16, body: &[u8]) -> Result<T, DecodeError> {
    let name = type_name(type_id).unwrap_or("unknown");
    // Measured first so the body can be parsed in place: field names and strings are then
    // borrowed from the frame instead of read, one by one, into a scratch buffer (which
    // was most of a bid's decode). A body that cannot be measured is broken; the copying
    // reader below says precisely how.
    let Some(used) = value_len(body) else { return parse_copying(type_id, name, body) };
    let mut de = rmp_serde::Deserializer::from_read_ref(&body[..used]);
    de.set_max_depth(64);
    let value = T::deserialize(&mut de).map_err(|source| DecodeError::Body { type_id, name, source })?;
    if used != body.len() {
        return Err(DecodeError::TrailingBytes { type_id, name, extra: body.len() - used });
    }
    Ok(value)
}

fn parse_copying<T: DeserializeOwned>(type_id: u16, name: &'static str, body: &[u8]) -> Result<T, DecodeError> {
    // A `&[u8]` reader: string and byte lengths are bounded by what is actually left,
    // so a lying length prefix cannot make us allocate more than the frame holds.
    let mut rest = body;
    let mut de = rmp_serde::Deserializer::new(&mut rest);
    de.set_max_depth(64);
    let value = T::deserialize(&mut de).map_err(|source| DecodeError::Body { type_id, name, source })?;
    drop(de);
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { type_id, name, extra: rest.len() });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Ack, MAX_FRAME_BYTES};

    #[test]
    fn oversize_header_is_refused_before_the_body_arrives() {
        let header = (MAX_FRAME_BYTES + 1).to_be_bytes();
        let err = decode_frame(&header, MAX_FRAME_BYTES);
        assert!(matches!(err, Err(DecodeError::FrameTooLarge { len, .. }) if len == MAX_FRAME_BYTES + 1));
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let frame = encode(&Message::Ack(Ack { seq: 9 }), MAX_FRAME_BYTES).expect("encode");
        for cut in 0..frame.len() {
            assert!(matches!(decode_frame(&frame[..cut], MAX_FRAME_BYTES), Ok(None)), "cut at {cut}");
        }
        let (msg, used) = decode_frame(&frame, MAX_FRAME_BYTES).expect("decode").expect("complete");
        assert_eq!((msg, used), (Message::Ack(Ack { seq: 9 }), frame.len()));
    }

    #[test]
    fn unknown_type_and_trailing_bytes_are_errors() {
        assert!(matches!(decode_payload(&[0xff, 0xfe, 0xc0]), Err(DecodeError::UnknownType { type_id: 0xfffe })));
        let mut frame = encode(&Message::Ack(Ack { seq: 1 }), MAX_FRAME_BYTES).expect("encode");
        frame.push(0xc0);
        assert!(matches!(decode_payload(&frame[4..]), Err(DecodeError::TrailingBytes { extra: 1, .. })));
    }

    #[test]
    fn lying_string_length_does_not_allocate_beyond_the_frame() {
        // Hello body: a map whose first value claims a 4 GiB string.
        let mut payload = Message::HELLO.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0x81, 0xa4, b'h', b'o', b's', b't', 0xdb, 0xff, 0xff, 0xff, 0xff, b'x']);
        assert!(matches!(decode_payload(&payload), Err(DecodeError::Body { .. })));
    }

    #[test]
    fn encoder_refuses_frames_the_peer_would_refuse() {
        let err = encode(&Message::Ack(Ack { seq: u64::MAX }), 4);
        assert!(matches!(err, Err(EncodeError::FrameTooLarge { .. })));
    }

    #[test]
    fn too_short_frames_are_refused() {
        assert!(matches!(frame_len(1u32.to_be_bytes(), MAX_FRAME_BYTES), Err(DecodeError::FrameTooShort { .. })));
    }
}
