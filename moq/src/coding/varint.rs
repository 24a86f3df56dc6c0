//! draft-18 variable-length integers (§1.4.1): the count of leading 1 bits in the first
//! byte gives the length (1 to 9 bytes). Non-minimal encodings are valid on input; we
//! always write the shortest form.

use bytes::{Buf, BufMut};

use super::DecodeError;

/// The longest encoding of a varint, in bytes.
pub const MAX_VARINT_LEN: usize = 9;

/// The number of bytes [`encode_varint`] writes for `value`.
pub const fn varint_len(value: u64) -> usize {
    match value {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0x0fff_ffff => 4,
        0x1000_0000..=0x07_ffff_ffff => 5,
        0x08_0000_0000..=0x03ff_ffff_ffff => 6,
        0x0400_0000_0000..=0x01_ffff_ffff_ffff => 7,
        0x02_0000_0000_0000..=0x00ff_ffff_ffff_ffff => 8,
        _ => 9,
    }
}

/// Write `value` in its shortest encoding.
pub fn encode_varint<B: BufMut>(value: u64, buf: &mut B) {
    let len = varint_len(value);
    if len == 9 {
        buf.put_u8(0xff);
        buf.put_u64(value);
        return;
    }
    // Prefix of (len - 1) one bits then a zero, occupying the top of the first byte.
    let prefix: u64 = !(0xffu64 >> (len - 1)) & 0xff;
    let bytes = (value | (prefix << (8 * (len - 1)))).to_be_bytes();
    buf.put_slice(bytes.get(8 - len..).unwrap_or_default());
}

/// Read one varint, or [`DecodeError::Incomplete`] if `buf` ends inside it.
pub fn decode_varint<B: Buf>(buf: &mut B) -> Result<u64, DecodeError> {
    if !buf.has_remaining() {
        return Err(DecodeError::Incomplete);
    }
    let first = buf.chunk().first().copied().unwrap_or_default();
    let len = first.leading_ones() as usize + 1;
    if buf.remaining() < len.min(MAX_VARINT_LEN) {
        return Err(DecodeError::Incomplete);
    }
    buf.advance(1);
    if len >= MAX_VARINT_LEN {
        return Ok(buf.get_u64());
    }
    // The bits after the length prefix in the first byte, then (len - 1) whole bytes.
    let mut value = u64::from(first) & (0xffu64 >> len);
    for _ in 1..len {
        value = (value << 8) | u64::from(buf.get_u8());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The spec's table of example encodings (§1.4.1), including non-minimal ones.
    #[test]
    fn spec_examples_decode() {
        let examples: &[(&str, u64)] = &[
            ("25", 37),
            ("8025", 37),
            ("bbbd", 15_293),
            ("ed7f3e7d", 226_442_877),
            ("faa1a0e403d8", 2_893_212_287_960),
            ("fc8998abc66bc0", 151_288_809_941_952),
            ("fefa318fa8e3ca11", 70_423_237_261_249_041),
            ("ffffffffffffffffff", u64::MAX),
        ];
        for (bytes, value) in examples {
            let bytes = hex(bytes);
            let mut cursor = &bytes[..];
            assert_eq!(decode_varint(&mut cursor).unwrap(), *value, "{bytes:02x?}");
            assert!(cursor.is_empty());
            for cut in 0..bytes.len() {
                assert_eq!(decode_varint(&mut &bytes[..cut]), Err(DecodeError::Incomplete));
            }
        }
    }

    #[test]
    fn minimal_examples_encode_as_in_spec() {
        for (bytes, value) in [("25", 37u64), ("bbbd", 15_293), ("ed7f3e7d", 226_442_877)] {
            let mut out = Vec::new();
            encode_varint(value, &mut out);
            assert_eq!(out, hex(bytes));
        }
    }

    #[test]
    fn boundaries_round_trip() {
        for len in 1..=9u32 {
            let max = if len == 9 {
                u64::MAX
            } else {
                (1u64 << (7 * len)) - 1
            };
            for value in [max, max.saturating_add(1), max.saturating_sub(1)] {
                let mut out = Vec::new();
                encode_varint(value, &mut out);
                assert_eq!(out.len(), varint_len(value));
                assert_eq!(decode_varint(&mut &out[..]).unwrap(), value);
            }
        }
    }

    proptest! {
        #[test]
        fn round_trip(value: u64) {
            let mut out = Vec::new();
            encode_varint(value, &mut out);
            prop_assert_eq!(out.len(), varint_len(value));
            let mut cursor = &out[..];
            prop_assert_eq!(decode_varint(&mut cursor).unwrap(), value);
            prop_assert!(cursor.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes: Vec<u8>) {
            let _ = decode_varint(&mut &bytes[..]);
        }
    }
}
