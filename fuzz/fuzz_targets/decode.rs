//! Feed arbitrary bytes to the frame decoder the arbiter runs on every agent's stream.
//! It must return a message or a `DecodeError`, never panic, hang or allocate beyond the
//! frame; whatever decodes must re-encode and decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use truce_common::wire::{MAX_FRAME_BYTES, decode_frame, encode};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    // Decode frames back to back, as the arbiter does on a stream.
    while let Ok(Some((msg, used))) = decode_frame(buf, MAX_FRAME_BYTES) {
        if let Ok(frame) = encode(&msg, MAX_FRAME_BYTES) {
            let again = decode_frame(&frame, MAX_FRAME_BYTES);
            // Floats may be NaN (NaN != NaN), so compare the bytes of a second encoding.
            if let Ok(Some((back, _))) = again {
                assert_eq!(encode(&back, MAX_FRAME_BYTES).ok(), Some(frame), "re-encode differs");
            } else {
                panic!("a decoded message failed to decode after re-encoding: {again:?}");
            }
        }
        buf = &buf[used..];
    }
});
