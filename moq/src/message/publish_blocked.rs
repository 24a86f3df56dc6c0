//! PUBLISH_BLOCKED (draft-18 §10.20): the publisher cannot send PUBLISH for a track matching a
//! SUBSCRIBE_TRACKS; sent on that request's stream.
//!
//! ```text
//! PUBLISH_BLOCKED Message {
//!   Type (vi64) = 0xF,
//!   Length (16),
//!   Track Namespace Suffix (..),
//!   Track Name Length (vi64),
//!   Track Name (..),
//! }
//! ```

use bytes::{Buf, BufMut};

use crate::coding::{Decode, DecodeError, Encode, TrackName, TrackNamespace, Version};

/// A track matching a SUBSCRIBE_TRACKS cannot be published to this subscriber.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishBlocked {
    /// The namespace fields after the SUBSCRIBE_TRACKS's Track Namespace Prefix.
    pub track_namespace_suffix: TrackNamespace,
    /// The track's name.
    pub track_name: TrackName,
}

impl PublishBlocked {
    /// The Message Type.
    pub const TYPE: u64 = 0xF;
    /// The spec's name.
    pub const NAME: &'static str = "PUBLISH_BLOCKED";
}

impl Decode for PublishBlocked {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            track_namespace_suffix: TrackNamespace::decode(buf, version)?,
            track_name: TrackName::decode(buf, version)?,
        })
    }
}

impl Encode for PublishBlocked {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        self.track_namespace_suffix.encode(buf, version);
        self.track_name.encode(buf, version);
    }
}
