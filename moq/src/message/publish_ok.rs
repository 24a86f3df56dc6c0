//! PUBLISH_OK (draft-18 §10.1 table: type 0x1E, layout "see REQUEST_OK").
//!
//! draft-18 removed PUBLISH_OK as a message of its own (change log: "Remove PUBLISH_OK message
//! type, make it a REQUEST_OK alias"): the normal answer to PUBLISH is a [`RequestOk`]
//! (type 0x7), which the spec calls PUBLISH_OK in prose. The message type table still lists
//! 0x1E for PUBLISH_OK, pointing at the REQUEST_OK layout, and peers (moq-transport 0.17)
//! still accept it, so this type decodes and encodes 0x1E with REQUEST_OK's layout:
//!
//! ```text
//! PUBLISH_OK Message {
//!   Type (vi64) = 0x1E,
//!   Length (16),
//!   Number of Parameters (vi64),
//!   Parameters (..) ...,
//!   Track Properties (..),   -- always empty in PUBLISH_OK
//! }
//! ```
//!
//! Senders should prefer [`RequestOk`].
//!
//! [`RequestOk`]: super::RequestOk

use bytes::{Buf, BufMut};

use crate::coding::{Decode, DecodeError, Encode, Version};

use super::{ParameterScope, Parameters};

/// The subscriber accepts a PUBLISH (legacy 0x1E form; see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishOk {
    /// Message Parameters (the PUBLISH_OK set: FORWARD, SUBSCRIBER_PRIORITY, GROUP_ORDER,
    /// SUBSCRIPTION_FILTER, delivery timeouts, EXPIRES, NEW_GROUP_REQUEST).
    pub parameters: Parameters,
}

impl PublishOk {
    /// The Message Type.
    pub const TYPE: u64 = 0x1E;
    /// The spec's name.
    pub const NAME: &'static str = "PUBLISH_OK";
}

impl Decode for PublishOk {
    /// `buf` must hold exactly the payload; Track Properties (bytes after the parameters) are
    /// a protocol violation in PUBLISH_OK.
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let parameters = Parameters::decode_scoped(buf, version, ParameterScope::PublishOk)?;
        if buf.has_remaining() {
            return Err(DecodeError::Invalid("Track Properties in PUBLISH_OK"));
        }
        Ok(Self { parameters })
    }
}

impl Encode for PublishOk {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        self.parameters.encode(buf, version);
    }
}
