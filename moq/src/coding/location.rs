use bytes::{Buf, BufMut};

use super::{decode_varint, encode_varint, Decode, DecodeError, Encode, Version};

/// A position in a track: `{Group, Object}` (draft-18 §1.4.2), ordered group-major.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The Group ID.
    pub group: u64,
    /// The Object ID within the group.
    pub object: u64,
}

impl Location {
    /// The location `{group, object}`.
    pub const fn new(group: u64, object: u64) -> Self {
        Self { group, object }
    }
}

impl Decode for Location {
    fn decode<B: Buf>(buf: &mut B, _version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            group: decode_varint(buf)?,
            object: decode_varint(buf)?,
        })
    }
}

impl Encode for Location {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_varint(self.group, buf);
        encode_varint(self.object, buf);
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{{}, {}}}", self.group, self.object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_is_group_major() {
        assert!(Location::new(1, 9) < Location::new(2, 0));
        assert!(Location::new(2, 0) < Location::new(2, 1));
    }
}
