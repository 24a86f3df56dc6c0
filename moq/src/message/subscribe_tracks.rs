//! SUBSCRIBE_TRACKS (draft-18 §10.19): ask for PUBLISH of every track under a prefix, now and in future; the first message of a request stream. Answered by REQUEST_OK, then PUBLISH on new streams or PUBLISH_BLOCKED.
//!
//! ```text
//! SUBSCRIBE_TRACKS Message {
//!   Type (vi64) = 0x51,
//!   Length (16),
//!   Request ID (vi64),
//!   Track Namespace Prefix (..),
//!   Number of Parameters (vi64),
//!   Parameters (..) ...
//! }
//! ```

use bytes::{Buf, BufMut};

use crate::coding::{decode_varint, encode_varint, Decode, DecodeError, Encode, TrackNamespace, Version};

use super::{ParameterScope, Parameters};

/// Subscribe to the tracks under a prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeTracks {
    /// The Request ID.
    pub request_id: u64,
    /// Track Namespace Prefix (0 to 32 fields).
    pub track_namespace_prefix: TrackNamespace,
    /// Message Parameters (AUTHORIZATION TOKEN, FORWARD).
    pub parameters: Parameters,
}

impl SubscribeTracks {
    /// The Message Type.
    pub const TYPE: u64 = 0x51;
    /// The spec's name.
    pub const NAME: &'static str = "SUBSCRIBE_TRACKS";
}

impl Decode for SubscribeTracks {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let request_id = decode_varint(buf)?;
        let track_namespace_prefix = TrackNamespace::decode(buf, version)?;
        let parameters = Parameters::decode_scoped(buf, version, ParameterScope::SubscribeTracks)?;
        Ok(Self {
            request_id,
            track_namespace_prefix,
            parameters,
        })
    }
}

impl Encode for SubscribeTracks {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_varint(self.request_id, buf);
        self.track_namespace_prefix.encode(buf, version);
        self.parameters.encode(buf, version);
    }
}
