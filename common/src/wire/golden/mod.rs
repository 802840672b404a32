//! Golden bytes: the exact frame of every message is checked in under `fixtures/`, so an
//! accidental change to a field name, order or type id fails here before it reaches a peer.
//! After an intended change, regenerate with `TRUCE_BLESS=1 cargo test -p truce-common
//! --features user wire::golden` and review the diff. `bids` and `decisions` also have a
//! packed fixture (`bids_packed`, `decisions_packed`): their form from protocol version 3 on.

mod messages;

use super::*;
use messages::samples;

// value_len's tests measure this bid's encoding.
pub(super) use messages::bid;

/// Every sample as it travels in a session of `version` (packed `bids` and `decisions` from
/// version 3 on), named after the type id it travels under.
fn frames_for(version: u16) -> Vec<(String, u16, Message)> {
    samples()
        .into_iter()
        .map(|(name, msg)| {
            let id = msg.type_id_for(version);
            let name = if id == msg.type_id() { name.to_string() } else { type_name(id).expect("known id").to_string() };
            (name, id, msg)
        })
        .collect()
}

/// The named samples, then the packed ones (only those whose type id differs).
fn all_frames() -> Vec<(String, u16, Message)> {
    let named = frames_for(VERSION_MIN);
    let packed = frames_for(VERSION_PACKED).into_iter().filter(|(_, id, m)| *id != m.type_id());
    named.into_iter().chain(packed).collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).expect("fixture is ascii");
            u8::from_str_radix(s, 16).expect("fixture is hex")
        })
        .collect()
}

#[test]
fn every_message_matches_its_golden_bytes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/wire/fixtures");
    let bless = std::env::var_os("TRUCE_BLESS").is_some();
    let mut failures = Vec::new();
    for (name, id, msg) in all_frames() {
        let version = if id == msg.type_id() { VERSION_MIN } else { VERSION_PACKED };
        let mut bytes = Vec::new();
        encode_for(version, &msg, &mut bytes, MAX_FRAME_BYTES).expect("encode sample");
        let path = dir.join(format!("{name}.hex"));
        if bless {
            std::fs::write(&path, to_hex(&bytes) + "\n").expect("write fixture");
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let golden = from_hex(&text);
        if golden != bytes {
            failures.push(format!("{name}: encoded\n  {}\nbut fixture has\n  {}", to_hex(&bytes), text.trim()));
        }
        let (decoded, used) = decode_frame(&golden, MAX_FRAME_BYTES).expect("decode fixture").expect("complete fixture");
        assert_eq!(used, golden.len(), "{name}: fixture has trailing bytes");
        assert_eq!(decoded, msg, "{name}: fixture decodes to a different message");
    }
    assert!(failures.is_empty(), "golden bytes changed:\n{}", failures.join("\n"));
}

#[test]
fn every_type_id_has_a_golden_fixture() {
    let covered: std::collections::HashSet<u16> = all_frames().iter().map(|(_, id, _)| *id).collect();
    for (id, name) in MESSAGE_TYPES {
        assert!(covered.contains(id), "message {name} ({id}) has no golden fixture");
    }
}

#[test]
fn type_ids_are_unique_and_never_reuse_retired_ids() {
    let mut seen = std::collections::HashSet::new();
    for (id, name) in MESSAGE_TYPES {
        assert!(seen.insert(*id), "type id {id} used twice ({name})");
        assert!(!RETIRED_TYPE_IDS.contains(id), "type id {id} ({name}) was retired");
    }
    for (name, msg) in samples() {
        assert_eq!(type_name(msg.type_id()), Some(msg.name()), "{name}");
    }
}

#[test]
fn packed_frames_are_smaller_and_decode_to_the_same_message() {
    for (name, msg) in samples() {
        let (mut named, mut packed) = (Vec::new(), Vec::new());
        encode_for(VERSION_BIDS, &msg, &mut named, MAX_FRAME_BYTES).expect("named");
        encode_for(VERSION_PACKED, &msg, &mut packed, MAX_FRAME_BYTES).expect("packed");
        let (back, _) = decode_frame(&packed, MAX_FRAME_BYTES).expect("decode packed").expect("complete");
        assert_eq!(back, msg, "{name}");
        if msg.type_id_for(VERSION_PACKED) != msg.type_id() {
            assert!(packed.len() * 2 < named.len(), "{name}: packed {} bytes, named {}", packed.len(), named.len());
        } else {
            assert_eq!(packed, named, "{name}: only bids and decisions change form");
        }
    }
}
