//! SUBSCRIBE (draft-18 §10.7): open a subscription; the first message of a request stream.
//!
//! ```text
//! SUBSCRIBE Message {
//!   Type (vi64) = 0x3,
//!   Length (16),
//!   Request ID (vi64),
//!   Track Namespace (..),
//!   Track Name Length (vi64),
//!   Track Name (..),
//!   Number of Parameters (vi64),
//!   Parameters (..) ...
//! }
//! ```

use bytes::{Buf, BufMut};

use crate::coding::{
    decode_varint, encode_varint, Decode, DecodeError, Encode, TrackName, TrackNamespace, Version,
};

use super::{decode_track, ParameterScope, Parameters};

/// Subscribe to a track's newly published Objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subscribe {
    /// The Request ID (client even, server odd).
    pub request_id: u64,
    /// The track's namespace.
    pub track_namespace: TrackNamespace,
    /// The track's name.
    pub track_name: TrackName,
    /// Message Parameters (filter, forward, priority, group order, timeouts, token, ...).
    pub parameters: Parameters,
}

impl Subscribe {
    /// The Message Type.
    pub const TYPE: u64 = 0x3;
    /// The spec's name.
    pub const NAME: &'static str = "SUBSCRIBE";
}

impl Decode for Subscribe {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let request_id = decode_varint(buf)?;
        let (track_namespace, track_name) = decode_track(buf, version)?;
        let parameters = Parameters::decode_scoped(buf, version, ParameterScope::Subscribe)?;
        Ok(Self {
            request_id,
            track_namespace,
            track_name,
            parameters,
        })
    }
}

impl Encode for Subscribe {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_varint(self.request_id, buf);
        self.track_namespace.encode(buf, version);
        self.track_name.encode(buf, version);
        self.parameters.encode(buf, version);
    }
}
