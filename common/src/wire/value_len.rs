//! How many bytes the first MessagePack value in a buffer spans, found without decoding it.
//!
//! The decoder parses a body straight from the frame's bytes (field names and strings are
//! borrowed, not copied into a scratch buffer one by one), and that reader cannot say where
//! it stopped. Measuring the value first gives the trailing-bytes check its answer. The walk
//! keeps one counter of values still to skip, never a stack, so nesting costs nothing and a
//! hostile frame cannot make it recurse or allocate.

/// The length of the first value in `buf`, or `None` when it is truncated or uses the
/// reserved marker `0xc1` (the decoder then reports the precise error).
pub(crate) fn value_len(buf: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    // Values still to skip. Every value takes at least one byte, so more pending values than
    // bytes left means the buffer is truncated (and keeps the counter from overflowing).
    let mut pending: u64 = 1;
    while pending > 0 {
        if pending > (buf.len() - at) as u64 {
            return None;
        }
        pending -= 1;
        let marker = *buf.get(at)?;
        at += 1;
        let (skip, more) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (usize::from(marker & 0x1f), 0),
            0xc1 => return None,
            0xc4 | 0xd9 => (read_len(buf, &mut at, 1)?, 0),
            0xc5 | 0xda => (read_len(buf, &mut at, 2)?, 0),
            0xc6 | 0xdb => (read_len(buf, &mut at, 4)?, 0),
            // ext: length, then a type byte, then the data.
            0xc7 => (read_len(buf, &mut at, 1)?.checked_add(1)?, 0),
            0xc8 => (read_len(buf, &mut at, 2)?.checked_add(1)?, 0),
            0xc9 => (read_len(buf, &mut at, 4)?.checked_add(1)?, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, read_len(buf, &mut at, 2)? as u64),
            0xdd => (0, read_len(buf, &mut at, 4)? as u64),
            0xde => (0, 2 * read_len(buf, &mut at, 2)? as u64),
            0xdf => (0, 2 * read_len(buf, &mut at, 4)? as u64),
        };
        at = at.checked_add(skip)?;
        if at > buf.len() {
            return None;
        }
        pending = pending.checked_add(more)?;
    }
    Some(at)
}

/// A big-endian length of `width` bytes at `*at`, advancing past it.
fn read_len(buf: &[u8], at: &mut usize, width: usize) -> Option<usize> {
    let bytes = buf.get(*at..at.checked_add(width)?)?;
    *at += width;
    Some(bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::value_len;

    fn named<T: serde::Serialize>(v: &T) -> Vec<u8> {
        rmp_serde::to_vec_named(v).expect("encode")
    }

    #[test]
    fn spans_what_rmp_serde_wrote() {
        let samples: Vec<Vec<u8>> = vec![
            named(&0u8),
            named(&-1i64),
            named(&u64::MAX),
            named(&i64::MIN),
            named(&1.5f32),
            named(&0.1f64),
            named(&"x".repeat(31)),
            named(&"y".repeat(300)),
            named(&"z".repeat(70_000)),
            named(&serde_bytes_like(300)),
            named(&vec![1u32; 20]),
            named(&vec![vec![0u8; 3]; 70_000]),
            named(&std::collections::BTreeMap::from([("a", vec![Some(1u8), None]), ("b", vec![])])),
            named(&crate::wire::golden::bid()),
        ];
        for (i, bytes) in samples.iter().enumerate() {
            assert_eq!(value_len(bytes), Some(bytes.len()), "sample {i}");
            let mut longer = bytes.clone();
            longer.extend_from_slice(&[0xc0, 0x01]);
            assert_eq!(value_len(&longer), Some(bytes.len()), "sample {i} with trailing bytes");
            for cut in 0..bytes.len().min(400) {
                assert_eq!(value_len(&bytes[..cut]), None, "sample {i} cut at {cut}");
            }
        }
    }

    fn serde_bytes_like(n: usize) -> rmpv_like::Bin {
        rmpv_like::Bin(vec![7; n])
    }

    /// A byte string (`bin`), which serde writes only through `serialize_bytes`.
    mod rmpv_like {
        pub struct Bin(pub Vec<u8>);
        impl serde::Serialize for Bin {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn lying_lengths_and_reserved_markers_are_refused() {
        // An array claiming 2^32-1 elements in 5 bytes, a map claiming 65535 pairs, a string
        // longer than the buffer, the reserved marker.
        assert_eq!(value_len(&[0xdd, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(value_len(&[0xde, 0xff, 0xff, 0x01]), None);
        assert_eq!(value_len(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a']), None);
        assert_eq!(value_len(&[0xc1]), None);
        assert_eq!(value_len(&[]), None);
        // Deep nesting is just a count: 100,000 nested one-element arrays around a nil.
        let mut deep = vec![0x91; 100_000];
        deep.push(0xc0);
        assert_eq!(value_len(&deep), Some(deep.len()));
    }
}
