//! Key-Value-Pairs (draft-18 §1.4.3): types are delta-encoded, even types carry one varint,
//! odd types carry a length-prefixed byte string of at most 65535 bytes. Properties (track
//! and object) are sequences of these, bounded by a known byte length.

use bytes::{Buf, BufMut, Bytes};

use super::{
    decode_length_prefixed, decode_varint, encode_length_prefixed, encode_varint, varint_len, DecodeError,
    Version,
};

/// The longest byte value a Key-Value-Pair may carry.
pub const MAX_KVP_VALUE_LEN: usize = u16::MAX as usize;

/// The value of a Key-Value-Pair: a varint for even types, bytes for odd types.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvpValue {
    /// The value of an even type.
    Varint(u64),
    /// The value of an odd type.
    Bytes(Bytes),
}

/// One Key-Value-Pair with its absolute type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyValuePair {
    /// The absolute type (the wire carries a delta from the previous type).
    pub key: u64,
    /// The value; its kind must match the parity of `key`.
    pub value: KvpValue,
}

impl KeyValuePair {
    /// An even-typed pair carrying a varint. Returns `None` if `key` is odd.
    pub fn varint(key: u64, value: u64) -> Option<Self> {
        (key % 2 == 0).then_some(Self {
            key,
            value: KvpValue::Varint(value),
        })
    }

    /// An odd-typed pair carrying bytes. Returns `None` if `key` is even or the value is too long.
    pub fn bytes(key: u64, value: impl Into<Bytes>) -> Option<Self> {
        let value = value.into();
        (key % 2 == 1 && value.len() <= MAX_KVP_VALUE_LEN).then_some(Self {
            key,
            value: KvpValue::Bytes(value),
        })
    }
}

/// An ordered list of Key-Value-Pairs, e.g. Track or Object Properties.
///
/// Kept in ascending key order (the wire's delta encoding requires it); duplicates are allowed
/// because some properties may repeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyValuePairs(Vec<KeyValuePair>);

impl KeyValuePairs {
    /// An empty list.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Insert a pair, keeping ascending key order (after any pairs with the same key).
    pub fn push(&mut self, pair: KeyValuePair) {
        let at = self.0.partition_point(|p| p.key <= pair.key);
        self.0.insert(at, pair);
    }

    /// The pairs in ascending key order.
    pub fn iter(&self) -> impl Iterator<Item = &KeyValuePair> {
        self.0.iter()
    }

    /// The first value with this key.
    pub fn get(&self, key: u64) -> Option<&KvpValue> {
        self.0.iter().find(|p| p.key == key).map(|p| &p.value)
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decode pairs until `buf` is exhausted. The caller bounds `buf` to the known length.
    ///
    /// Running out of bytes inside a pair is malformed here (the length was known), so this
    /// never returns [`DecodeError::Incomplete`].
    pub fn decode_all<B: Buf>(buf: &mut B, _version: Version) -> Result<Self, DecodeError> {
        let mut pairs = Vec::new();
        let mut key = 0u64;
        while buf.has_remaining() {
            let delta = decode_varint(buf).map_err(|_| DecodeError::Invalid("key-value pair"))?;
            key = key
                .checked_add(delta)
                .ok_or(DecodeError::Invalid("key-value pair type overflow"))?;
            let value = if key % 2 == 0 {
                KvpValue::Varint(decode_varint(buf).map_err(|_| DecodeError::KeyValueFormat(key))?)
            } else {
                let bytes = decode_length_prefixed(buf, "key-value pair value", MAX_KVP_VALUE_LEN);
                KvpValue::Bytes(bytes.map_err(|e| match e {
                    DecodeError::Incomplete => DecodeError::KeyValueFormat(key),
                    other => other,
                })?)
            };
            pairs.push(KeyValuePair { key, value });
        }
        Ok(Self(pairs))
    }

    /// Encode every pair, delta-encoding the types. The caller writes any length prefix.
    pub fn encode_all<B: BufMut>(&self, buf: &mut B, _version: Version) {
        let mut previous = 0u64;
        for pair in &self.0 {
            encode_varint(pair.key - previous, buf);
            previous = pair.key;
            match &pair.value {
                KvpValue::Varint(v) => encode_varint(*v, buf),
                KvpValue::Bytes(b) => encode_length_prefixed(b, buf),
            }
        }
    }

    /// The encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        let mut previous = 0u64;
        let mut len = 0;
        for pair in &self.0 {
            len += varint_len(pair.key - previous);
            previous = pair.key;
            len += match &pair.value {
                KvpValue::Varint(v) => varint_len(*v),
                KvpValue::Bytes(b) => varint_len(b.len() as u64) + b.len(),
            };
        }
        len
    }
}

impl FromIterator<KeyValuePair> for KeyValuePairs {
    fn from_iter<T: IntoIterator<Item = KeyValuePair>>(iter: T) -> Self {
        let mut pairs: Vec<_> = iter.into_iter().collect();
        pairs.sort_by_key(|p| p.key);
        Self(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_delta_types_and_encoded_len() {
        let pairs: KeyValuePairs = [
            KeyValuePair::bytes(0x3f, &b"hello"[..]).unwrap(),
            KeyValuePair::varint(0x02, 300).unwrap(),
            KeyValuePair::varint(0x3800, 1).unwrap(),
        ]
        .into_iter()
        .collect();
        let mut buf = Vec::new();
        pairs.encode_all(&mut buf, Version::Draft18);
        assert_eq!(buf.len(), pairs.encoded_len());
        let decoded = KeyValuePairs::decode_all(&mut &buf[..], Version::Draft18).unwrap();
        assert_eq!(decoded, pairs);
        assert_eq!(decoded.get(0x02), Some(&KvpValue::Varint(300)));
    }

    #[test]
    fn truncated_value_is_a_formatting_error() {
        // Type 1 (odd) claims 5 bytes but only 2 follow.
        let bytes = [0x01, 0x05, b'h', b'i'];
        assert_eq!(
            KeyValuePairs::decode_all(&mut &bytes[..], Version::Draft18),
            Err(DecodeError::KeyValueFormat(1))
        );
    }

    #[test]
    fn oversized_value_is_refused_before_reading_it() {
        let mut bytes = vec![0x01];
        encode_varint(70_000, &mut bytes);
        assert!(matches!(
            KeyValuePairs::decode_all(&mut &bytes[..], Version::Draft18),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn type_overflow_is_refused() {
        let mut bytes = Vec::new();
        encode_varint(u64::MAX - 1, &mut bytes);
        encode_varint(1, &mut bytes); // even type u64::MAX-1 = varint value
        encode_varint(4, &mut bytes); // delta that overflows
        encode_varint(0, &mut bytes);
        assert!(matches!(
            KeyValuePairs::decode_all(&mut &bytes[..], Version::Draft18),
            Err(DecodeError::Invalid(_))
        ));
    }
}
