//! REQUEST_OK (draft-18 §10.5): the success response to PUBLISH (PUBLISH_OK), REQUEST_UPDATE
//! (REQUEST_UPDATE_OK), TRACK_STATUS (TRACK_STATUS_OK), SUBSCRIBE_NAMESPACE, SUBSCRIBE_TRACKS
//! and PUBLISH_NAMESPACE.
//!
//! ```text
//! REQUEST_OK Message {
//!   Type (vi64) = 0x7,
//!   Length (16),
//!   Number of Parameters (vi64),
//!   Parameters (..) ...,
//!   Track Properties (..),
//! }
//! ```
//!
//! The codec cannot see which request is answered, so it allows the union of the parameters of
//! PUBLISH_OK, REQUEST_UPDATE_OK and TRACK_STATUS_OK, and accepts Track Properties. The session
//! re-checks with [`Parameters::check_scope`] and refuses properties on anything but
//! TRACK_STATUS_OK ([`RequestOk::check_answers`]).

use bytes::{Buf, BufMut};

use crate::coding::{Decode, DecodeError, Encode, KeyValuePairs, Version};

use super::{ParameterScope, Parameters};

/// A request succeeded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestOk {
    /// Message Parameters.
    pub parameters: Parameters,
    /// Track Properties: populated only in TRACK_STATUS_OK.
    pub track_properties: KeyValuePairs,
}

impl RequestOk {
    /// The Message Type.
    pub const TYPE: u64 = 0x7;
    /// The spec's name.
    pub const NAME: &'static str = "REQUEST_OK";

    /// Check this response against the precise scope of the request it answers (e.g.
    /// [`ParameterScope::TrackStatusOk`]): disallowed parameters, or Track Properties outside
    /// TRACK_STATUS_OK, are protocol violations.
    pub fn check_answers(&self, scope: ParameterScope) -> Result<(), DecodeError> {
        self.parameters.check_scope(scope)?;
        if !self.track_properties.is_empty() && !matches!(scope, ParameterScope::TrackStatusOk) {
            return Err(DecodeError::Invalid(
                "Track Properties in a REQUEST_OK other than TRACK_STATUS_OK",
            ));
        }
        Ok(())
    }
}

impl Decode for RequestOk {
    /// `buf` must hold exactly the payload: Track Properties fill the rest of it.
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let parameters = Parameters::decode_scoped(buf, version, ParameterScope::RequestOk)?;
        let track_properties = KeyValuePairs::decode_all(buf, version)?;
        Ok(Self {
            parameters,
            track_properties,
        })
    }
}

impl Encode for RequestOk {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        self.parameters.encode(buf, version);
        self.track_properties.encode_all(buf, version);
    }
}
