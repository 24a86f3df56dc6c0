//! REQUEST_UPDATE (draft-18 §10.9): change the parameters of an open request; sent on that
//! request's stream and consuming a new Request ID.
//!
//! ```text
//! REQUEST_UPDATE Message {
//!   Type (vi64) = 0x2,
//!   Length (16),
//!   Request ID (vi64),
//!   Number of Parameters (vi64),
//!   Parameters (..) ...
//! }
//! ```
//!
//! The parameters allowed depend on the kind of request updated, which only the session
//! knows: the codec allows the union, and the session re-checks with
//! [`Parameters::check_scope`] and `ParameterScope::RequestUpdate(target)`.

use bytes::{Buf, BufMut};

use crate::coding::{decode_varint, encode_varint, Decode, DecodeError, Encode, Version};

use super::{ParameterScope, Parameters, UpdateTarget};

/// Update an open request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestUpdate {
    /// The new Request ID this update consumes.
    pub request_id: u64,
    /// The parameters to change; absent ones keep their value.
    pub parameters: Parameters,
}

impl RequestUpdate {
    /// The Message Type.
    pub const TYPE: u64 = 0x2;
    /// The spec's name.
    pub const NAME: &'static str = "REQUEST_UPDATE";
}

impl Decode for RequestUpdate {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let request_id = decode_varint(buf)?;
        let parameters =
            Parameters::decode_scoped(buf, version, ParameterScope::RequestUpdate(UpdateTarget::Unknown))?;
        Ok(Self {
            request_id,
            parameters,
        })
    }
}

impl Encode for RequestUpdate {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_varint(self.request_id, buf);
        self.parameters.encode(buf, version);
    }
}
