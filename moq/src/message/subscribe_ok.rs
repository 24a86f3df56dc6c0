//! SUBSCRIBE_OK (draft-18 §10.8): the first response to a successful SUBSCRIBE.
//!
//! ```text
//! SUBSCRIBE_OK Message {
//!   Type (vi64) = 0x4,
//!   Length (16),
//!   Track Alias (vi64),
//!   Number of Parameters (vi64),
//!   Parameters (..) ...,
//!   Track Properties (..),
//! }
//! ```

use bytes::{Buf, BufMut};

use crate::coding::{
    decode_varint, encode_varint, Decode, DecodeError, Encode, KeyValuePair, KeyValuePairs, Version,
};
use crate::data::property_type;

use super::{ParameterScope, Parameters};

/// A subscription is established.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeOk {
    /// The alias Objects of this track carry on data streams and datagrams.
    pub track_alias: u64,
    /// Message Parameters (EXPIRES, LARGEST_OBJECT).
    pub parameters: Parameters,
    /// Track Properties, filling the rest of the payload.
    pub track_properties: KeyValuePairs,
}

impl SubscribeOk {
    /// The Message Type.
    pub const TYPE: u64 = 0x4;
    /// The spec's name.
    pub const NAME: &'static str = "SUBSCRIBE_OK";

    /// The answer for a live media track: newest groups first (the Track Property
    /// DEFAULT_PUBLISHER_GROUP_ORDER = Descending), so on a congested path or an overloaded
    /// relay the live edge goes out before older groups, which a latency budget then abandons.
    pub fn newest_first() -> Self {
        let mut ok = Self::default();
        if let Some(order) = KeyValuePair::varint(
            property_type::DEFAULT_PUBLISHER_GROUP_ORDER,
            super::GroupOrder::Descending.code().into(),
        ) {
            ok.track_properties.push(order);
        }
        ok
    }
}

impl Decode for SubscribeOk {
    /// `buf` must hold exactly the payload: Track Properties fill the rest of it.
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let track_alias = decode_varint(buf)?;
        let parameters = Parameters::decode_scoped(buf, version, ParameterScope::SubscribeOk)?;
        let track_properties = KeyValuePairs::decode_all(buf, version)?;
        Ok(Self {
            track_alias,
            parameters,
            track_properties,
        })
    }
}

impl Encode for SubscribeOk {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_varint(self.track_alias, buf);
        self.parameters.encode(buf, version);
        self.track_properties.encode_all(buf, version);
    }
}
