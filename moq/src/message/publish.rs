//! PUBLISH (draft-18 §10.10): the publisher opens a subscription for a track; the first
//! message of a request stream.
//!
//! ```text
//! PUBLISH Message {
//!   Type (vi64) = 0x1D,
//!   Length (16),
//!   Request ID (vi64),
//!   Track Namespace (..),
//!   Track Name Length (vi64),
//!   Track Name (..),
//!   Track Alias (vi64),
//!   Number of Parameters (vi64),
//!   Parameters (..) ...,
//!   Track Properties (..),
//! }
//! ```

use bytes::{Buf, BufMut};

use crate::coding::{
    decode_varint, encode_varint, Decode, DecodeError, Encode, KeyValuePairs, TrackName, TrackNamespace,
    Version,
};

use super::{decode_track, ParameterScope, Parameters};

/// Offer a track to the peer as a subscription.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Publish {
    /// The Request ID.
    pub request_id: u64,
    /// The track's namespace.
    pub track_namespace: TrackNamespace,
    /// The track's name.
    pub track_name: TrackName,
    /// The alias Objects of this track carry on data streams and datagrams.
    pub track_alias: u64,
    /// Message Parameters (FORWARD, EXPIRES, LARGEST_OBJECT, AUTHORIZATION TOKEN).
    pub parameters: Parameters,
    /// Track Properties, filling the rest of the payload.
    pub track_properties: KeyValuePairs,
}

impl Publish {
    /// The Message Type.
    pub const TYPE: u64 = 0x1D;
    /// The spec's name.
    pub const NAME: &'static str = "PUBLISH";
}

impl Decode for Publish {
    /// `buf` must hold exactly the payload: Track Properties fill the rest of it.
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let request_id = decode_varint(buf)?;
        let (track_namespace, track_name) = decode_track(buf, version)?;
        let track_alias = decode_varint(buf)?;
        let parameters = Parameters::decode_scoped(buf, version, ParameterScope::Publish)?;
        let track_properties = KeyValuePairs::decode_all(buf, version)?;
        Ok(Self {
            request_id,
            track_namespace,
            track_name,
            track_alias,
            parameters,
            track_properties,
        })
    }
}

impl Encode for Publish {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_varint(self.request_id, buf);
        self.track_namespace.encode(buf, version);
        self.track_name.encode(buf, version);
        encode_varint(self.track_alias, buf);
        self.parameters.encode(buf, version);
        self.track_properties.encode_all(buf, version);
    }
}
