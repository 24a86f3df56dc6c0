//! NAMESPACE_DONE (draft-18 §10.17): a namespace announced by NAMESPACE no longer takes new subscriptions; sent on the SUBSCRIBE_NAMESPACE's stream.
//!
//! ```text
//! NAMESPACE_DONE Message {
//!   Type (vi64) = 0xE,
//!   Length (16),
//!   Track Namespace Suffix (..),
//! }
//! ```

use bytes::{Buf, BufMut};

use crate::coding::{Decode, DecodeError, Encode, TrackNamespace, Version};

/// A namespace matching a SUBSCRIBE_NAMESPACE went away.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceDone {
    /// The namespace fields after the SUBSCRIBE_NAMESPACE's Track Namespace Prefix.
    pub track_namespace_suffix: TrackNamespace,
}

impl NamespaceDone {
    /// The Message Type.
    pub const TYPE: u64 = 0xE;
    /// The spec's name.
    pub const NAME: &'static str = "NAMESPACE_DONE";
}

impl Decode for NamespaceDone {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            track_namespace_suffix: TrackNamespace::decode(buf, version)?,
        })
    }
}

impl Encode for NamespaceDone {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        self.track_namespace_suffix.encode(buf, version);
    }
}
