//! NAMESPACE (draft-18 §10.16): a namespace under the prefix of a SUBSCRIBE_NAMESPACE is published; sent on that request's stream.
//!
//! ```text
//! NAMESPACE Message {
//!   Type (vi64) = 0x8,
//!   Length (16),
//!   Track Namespace Suffix (..),
//! }
//! ```

use bytes::{Buf, BufMut};

use crate::coding::{Decode, DecodeError, Encode, TrackNamespace, Version};

/// A namespace matching a SUBSCRIBE_NAMESPACE appeared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    /// The namespace fields after the SUBSCRIBE_NAMESPACE's Track Namespace Prefix.
    pub track_namespace_suffix: TrackNamespace,
}

impl Namespace {
    /// The Message Type.
    pub const TYPE: u64 = 0x8;
    /// The spec's name.
    pub const NAME: &'static str = "NAMESPACE";
}

impl Decode for Namespace {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            track_namespace_suffix: TrackNamespace::decode(buf, version)?,
        })
    }
}

impl Encode for Namespace {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        self.track_namespace_suffix.encode(buf, version);
    }
}
