//! TRACK_STATUS (draft-18 §10.14): ask for a track's status (Largest Object, Track
//! Properties) without subscribing; the first and only message of a request stream. The
//! layout is SUBSCRIBE's.
//!
//! ```text
//! TRACK_STATUS Message {
//!   Type (vi64) = 0xD,
//!   Length (16),
//!   Request ID (vi64),
//!   Track Namespace (..),
//!   Track Name Length (vi64),
//!   Track Name (..),
//!   Number of Parameters (vi64),
//!   Parameters (..) ...
//! }
//! ```
//!
//! Delivery-related subscriber parameters are not included; of the draft-18 parameters only
//! AUTHORIZATION TOKEN lists TRACK_STATUS.

use bytes::{Buf, BufMut};

use crate::coding::{
    decode_varint, encode_varint, Decode, DecodeError, Encode, TrackName, TrackNamespace, Version,
};

use super::{decode_track, ParameterScope, Parameters};

/// Ask for a track's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackStatus {
    /// The Request ID.
    pub request_id: u64,
    /// The track's namespace.
    pub track_namespace: TrackNamespace,
    /// The track's name.
    pub track_name: TrackName,
    /// Message Parameters (AUTHORIZATION TOKEN only).
    pub parameters: Parameters,
}

impl TrackStatus {
    /// The Message Type.
    pub const TYPE: u64 = 0xD;
    /// The spec's name.
    pub const NAME: &'static str = "TRACK_STATUS";
}

impl Decode for TrackStatus {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let request_id = decode_varint(buf)?;
        let (track_namespace, track_name) = decode_track(buf, version)?;
        let parameters = Parameters::decode_scoped(buf, version, ParameterScope::TrackStatus)?;
        Ok(Self {
            request_id,
            track_namespace,
            track_name,
            parameters,
        })
    }
}

impl Encode for TrackStatus {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_varint(self.request_id, buf);
        self.track_namespace.encode(buf, version);
        self.track_name.encode(buf, version);
        self.parameters.encode(buf, version);
    }
}
