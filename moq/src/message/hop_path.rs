//! Banyan's relay-path extension: loop and depth safety for relay trees.
//!
//! Relays that subscribe through other relays must not chase their own tail: if A's parent is B
//! and B's parent is A, a SUBSCRIBE would circle forever (and, with coalescing, each relay would
//! wait on the other). The extension follows the idea of draft-lcurley-moq-cluster's hop list,
//! applied to requests rather than namespace advertisements:
//!
//! - **HOP_ID setup option** ([`HOP_ID_OPTION`], even type, so a varint value): the sender's
//!   Hop ID, a number naming the relay (Banyan derives it from the relay id). Sending it also
//!   declares support for the parameter below. Peers that do not know the option ignore it
//!   (draft-18 §9.3: unknown Setup Options are ignored).
//! - **HOP_PATH message parameter** ([`Parameters::HOP_PATH`](super::Parameters::HOP_PATH)) on
//!   SUBSCRIBE, FETCH, TRACK_STATUS, SUBSCRIBE_NAMESPACE and SUBSCRIBE_TRACKS: the Hop IDs of
//!   the relays the request has already passed through, nearest the subscriber first. A relay
//!   that forwards a request upstream appends its own Hop ID. It is only sent to a peer whose
//!   SETUP carried HOP_ID (the negotiation draft-18 §9.3 asks for).
//!
//! ```text
//! HOP_PATH Parameter {
//!   Type (vi64) = 0xBA41,
//!   Length (vi64),
//!   Hop Count (vi64),
//!   Hop ID (vi64) ...,
//! }
//! ```
//!
//! A receiver that finds its own Hop ID in the path has found a loop; one whose position
//! (path length + 1) exceeds its depth limit is too deep. Both refuse the request. Codepoints
//! are Banyan's provisional private values until a cluster extension is registered.

use bytes::{Buf, BufMut};

use crate::coding::{decode_varint, encode_varint, DecodeError};

/// The HOP_ID setup option type (even: its value is a varint).
pub const HOP_ID_OPTION: u64 = 0xBA40;

/// The most Hop IDs a path may carry; a longer one is malformed.
pub const MAX_HOPS: usize = 32;

/// The relays a request has passed through, nearest the subscriber first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HopPath(Vec<u64>);

impl HopPath {
    /// A path through `hops` (nearest the subscriber first); `None` if longer than
    /// [`MAX_HOPS`].
    pub fn new(hops: Vec<u64>) -> Option<Self> {
        (hops.len() <= MAX_HOPS).then_some(Self(hops))
    }

    /// The Hop IDs, nearest the subscriber first.
    pub fn hops(&self) -> &[u64] {
        &self.0
    }

    /// How many relays the request has passed through.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for a request straight from a subscriber.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `hop` is already on the path (forwarding to or through it would loop).
    pub fn contains(&self, hop: u64) -> bool {
        self.0.contains(&hop)
    }

    /// The path a relay sends upstream: this one followed by its own Hop ID; `None` when that
    /// would exceed [`MAX_HOPS`].
    pub fn with(&self, hop: u64) -> Option<Self> {
        let mut hops = self.0.clone();
        hops.push(hop);
        Self::new(hops)
    }

    /// The value's encoded size (without the Length prefix).
    pub fn encoded_len(&self) -> usize {
        let mut buf = Vec::new();
        self.encode_value(&mut buf);
        buf.len()
    }

    /// Encode the value (Hop Count and Hop IDs; the caller writes the Length).
    pub fn encode_value<B: BufMut>(&self, buf: &mut B) {
        encode_varint(self.0.len() as u64, buf);
        for hop in &self.0 {
            encode_varint(*hop, buf);
        }
    }

    /// Decode the value filling all of `buf` (the parameter's length-prefixed contents).
    pub fn decode_value<B: Buf>(buf: &mut B, ty: u64) -> Result<Self, DecodeError> {
        let malformed = |e: DecodeError| match e {
            DecodeError::Incomplete => DecodeError::KeyValueFormat(ty),
            other => other,
        };
        let count = decode_varint(buf).map_err(malformed)?;
        if count > MAX_HOPS as u64 {
            return Err(DecodeError::Invalid("HOP_PATH longer than 32 hops"));
        }
        let mut hops = Vec::with_capacity(count as usize);
        for _ in 0..count {
            hops.push(decode_varint(buf).map_err(malformed)?);
        }
        if buf.has_remaining() {
            return Err(DecodeError::KeyValueFormat(ty));
        }
        Ok(Self(hops))
    }
}

impl std::fmt::Display for HopPath {
    /// Hop IDs in hex, joined by arrows (`[]` when empty).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("[]");
        }
        for (i, hop) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" → ")?;
            }
            write!(f, "{hop:x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trips_and_rejects_trailing_or_short_input() {
        let path = HopPath::new(vec![1, 0x3fff_ffff_ffff_ffff, 42]).unwrap();
        let mut buf = Vec::new();
        path.encode_value(&mut buf);
        assert_eq!(buf.len(), path.encoded_len());
        assert_eq!(HopPath::decode_value(&mut &buf[..], 1).unwrap(), path);

        let mut trailing = buf.clone();
        trailing.push(0);
        assert!(matches!(
            HopPath::decode_value(&mut &trailing[..], 7),
            Err(DecodeError::KeyValueFormat(7))
        ));
        for cut in 0..buf.len() {
            assert!(
                HopPath::decode_value(&mut &buf[..cut], 7).is_err(),
                "prefix {cut}"
            );
        }
    }

    #[test]
    fn paths_are_bounded() {
        assert!(HopPath::new(vec![0; MAX_HOPS]).is_some());
        assert!(HopPath::new(vec![0; MAX_HOPS + 1]).is_none());
        assert!(HopPath::new(vec![0; MAX_HOPS]).unwrap().with(1).is_none());
        let mut long = Vec::new();
        encode_varint(MAX_HOPS as u64 + 1, &mut long);
        assert!(matches!(
            HopPath::decode_value(&mut &long[..], 1),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn loops_are_visible_and_display_is_readable() {
        let path = HopPath::default().with(0xa).unwrap().with(0xb).unwrap();
        assert!(path.contains(0xa) && !path.contains(0xc));
        assert_eq!(path.to_string(), "a → b");
        assert_eq!(HopPath::default().to_string(), "[]");
    }
}
