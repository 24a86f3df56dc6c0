//! PUBLISH_NAMESPACE (draft-18 §10.15): advertise that tracks are available under a namespace; the first message of a request stream.
//!
//! ```text
//! PUBLISH_NAMESPACE Message {
//!   Type (vi64) = 0x6,
//!   Length (16),
//!   Request ID (vi64),
//!   Track Namespace (..),
//!   Number of Parameters (vi64),
//!   Parameters (..) ...
//! }
//! ```

use bytes::{Buf, BufMut};

use crate::coding::{decode_varint, encode_varint, Decode, DecodeError, Encode, TrackNamespace, Version};

use super::{ParameterScope, Parameters};

/// Advertise a namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishNamespace {
    /// The Request ID.
    pub request_id: u64,
    /// Track Namespace (0 to 32 fields).
    pub track_namespace: TrackNamespace,
    /// Message Parameters (AUTHORIZATION TOKEN).
    pub parameters: Parameters,
}

impl PublishNamespace {
    /// The Message Type.
    pub const TYPE: u64 = 0x6;
    /// The spec's name.
    pub const NAME: &'static str = "PUBLISH_NAMESPACE";
}

impl Decode for PublishNamespace {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let request_id = decode_varint(buf)?;
        let track_namespace = TrackNamespace::decode(buf, version)?;
        let parameters = Parameters::decode_scoped(buf, version, ParameterScope::PublishNamespace)?;
        Ok(Self {
            request_id,
            track_namespace,
            parameters,
        })
    }
}

impl Encode for PublishNamespace {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_varint(self.request_id, buf);
        self.track_namespace.encode(buf, version);
        self.parameters.encode(buf, version);
    }
}
