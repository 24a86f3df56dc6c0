//! SUBSCRIBE_NAMESPACE (draft-18 §10.18): ask for the published namespaces under a prefix, now and as they change; the first message of a request stream. Answered by REQUEST_OK, then NAMESPACE / NAMESPACE_DONE.
//!
//! ```text
//! SUBSCRIBE_NAMESPACE Message {
//!   Type (vi64) = 0x50,
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

/// Subscribe to the namespaces under a prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeNamespace {
    /// The Request ID.
    pub request_id: u64,
    /// Track Namespace Prefix (0 to 32 fields).
    pub track_namespace_prefix: TrackNamespace,
    /// Message Parameters (AUTHORIZATION TOKEN).
    pub parameters: Parameters,
}

impl SubscribeNamespace {
    /// The Message Type.
    pub const TYPE: u64 = 0x50;
    /// The spec's name.
    pub const NAME: &'static str = "SUBSCRIBE_NAMESPACE";
}

impl Decode for SubscribeNamespace {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let request_id = decode_varint(buf)?;
        let track_namespace_prefix = TrackNamespace::decode(buf, version)?;
        let parameters = Parameters::decode_scoped(buf, version, ParameterScope::SubscribeNamespace)?;
        Ok(Self {
            request_id,
            track_namespace_prefix,
            parameters,
        })
    }
}

impl Encode for SubscribeNamespace {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_varint(self.request_id, buf);
        self.track_namespace_prefix.encode(buf, version);
        self.parameters.encode(buf, version);
    }
}
