//! FETCH_OK (draft-18 §10.13): the response to a successful FETCH, once its end is known.
//!
//! ```text
//! FETCH_OK Message {
//!   Type (vi64) = 0x18,
//!   Length (16),
//!   End Of Track (8),
//!   End Location (Location),
//!   Number of Parameters (vi64),
//!   Parameters (..) ...
//!   Track Properties (..),
//! }
//! ```
//!
//! No draft-18 parameter lists FETCH_OK, so any parameter here is refused. An End Location
//! before the FETCH's start is a protocol violation the session checks (it needs the request).

use bytes::{Buf, BufMut};

use crate::coding::{decode_bool, Decode, DecodeError, Encode, KeyValuePairs, Location, Version};

use super::{ParameterScope, Parameters};

/// A FETCH is accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchOk {
    /// True when every Object of the track has been published and End Location is the last.
    pub end_of_track: bool,
    /// The end of the range served, encoded as in FETCH (last Object plus one; Object 0 = the
    /// whole group).
    pub end_location: Location,
    /// Message Parameters (none are defined for FETCH_OK).
    pub parameters: Parameters,
    /// Track Properties, filling the rest of the payload.
    pub track_properties: KeyValuePairs,
}

impl FetchOk {
    /// The Message Type.
    pub const TYPE: u64 = 0x18;
    /// The spec's name.
    pub const NAME: &'static str = "FETCH_OK";
}

impl Decode for FetchOk {
    /// `buf` must hold exactly the payload: Track Properties fill the rest of it.
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let end_of_track = decode_bool(buf, "End Of Track must be 0 or 1")?;
        let end_location = Location::decode(buf, version)?;
        let parameters = Parameters::decode_scoped(buf, version, ParameterScope::FetchOk)?;
        let track_properties = KeyValuePairs::decode_all(buf, version)?;
        Ok(Self {
            end_of_track,
            end_location,
            parameters,
            track_properties,
        })
    }
}

impl Encode for FetchOk {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        buf.put_u8(u8::from(self.end_of_track));
        self.end_location.encode(buf, version);
        self.parameters.encode(buf, version);
        self.track_properties.encode_all(buf, version);
    }
}
