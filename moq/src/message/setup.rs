//! SETUP (draft-18 §10.3): the first message on each endpoint's control stream. Its type,
//! 0x2F00, doubles as the control stream's stream type.
//!
//! ```text
//! SETUP Message {
//!   Type (vi64) = 0x2F00,
//!   Length (16),
//!   Setup Options (..) ...,
//! }
//! ```
//!
//! Setup Options are Key-Value-Pairs filling the payload. Unknown options (including grease)
//! are ignored by the protocol but kept here in [`Setup::unknown_options`] so they round-trip.

use bytes::{Buf, BufMut, Bytes};

use crate::coding::{Decode, DecodeError, Encode, KeyValuePair, KeyValuePairs, KvpValue, Version};

use super::{AliasType, Token, HOP_ID_OPTION};

/// Session setup options, sent by both endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    /// PATH (0x01): the path (and `?query`) of the moqt URI; client, native QUIC only.
    pub path: Option<String>,
    /// AUTHORIZATION TOKEN (0x03): tokens to authorize the session; may repeat. DELETE and
    /// USE_ALIAS are refused in SETUP.
    pub authorization_tokens: Vec<Token>,
    /// MAX_AUTH_TOKEN_CACHE_SIZE (0x04): bytes of registered tokens the sender will store
    /// (absent = 0, no aliases).
    pub max_auth_token_cache_size: Option<u64>,
    /// AUTHORITY (0x05): the authority of the moqt URI; client, native QUIC only.
    pub authority: Option<String>,
    /// MOQT IMPLEMENTATION (0x07): the sender's implementation name and version (SHOULD be
    /// UTF-8, so kept as bytes).
    pub moqt_implementation: Option<Bytes>,
    /// HOP_ID (Banyan extension, [`HOP_ID_OPTION`]): the sender's relay Hop ID; its presence
    /// declares support for the HOP_PATH parameter (see [`super::hop_path`]).
    pub hop_id: Option<u64>,
    /// Options this version does not define, in ascending type order; never holds a type above.
    pub unknown_options: KeyValuePairs,
}

impl Setup {
    /// The Message Type (and control stream type).
    pub const TYPE: u64 = 0x2F00;
    /// The spec's name.
    pub const NAME: &'static str = "SETUP";

    /// PATH.
    pub const PATH: u64 = 0x01;
    /// AUTHORIZATION TOKEN.
    pub const AUTHORIZATION_TOKEN: u64 = 0x03;
    /// MAX_AUTH_TOKEN_CACHE_SIZE.
    pub const MAX_AUTH_TOKEN_CACHE_SIZE: u64 = 0x04;
    /// AUTHORITY.
    pub const AUTHORITY: u64 = 0x05;
    /// MOQT IMPLEMENTATION.
    pub const MOQT_IMPLEMENTATION: u64 = 0x07;

    /// The MOQT IMPLEMENTATION option as text, with invalid UTF-8 replaced.
    pub fn moqt_implementation_lossy(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.moqt_implementation.as_deref().map(String::from_utf8_lossy)
    }

    fn options(&self, version: Version) -> KeyValuePairs {
        let mut options = self.unknown_options.clone();
        let mut bytes = |key: u64, value: Bytes| {
            options.push(KeyValuePair {
                key,
                value: KvpValue::Bytes(value),
            })
        };
        if let Some(path) = &self.path {
            bytes(Self::PATH, Bytes::copy_from_slice(path.as_bytes()));
        }
        for token in &self.authorization_tokens {
            bytes(Self::AUTHORIZATION_TOKEN, token.to_bytes(version));
        }
        if let Some(authority) = &self.authority {
            bytes(Self::AUTHORITY, Bytes::copy_from_slice(authority.as_bytes()));
        }
        if let Some(implementation) = &self.moqt_implementation {
            bytes(Self::MOQT_IMPLEMENTATION, implementation.clone());
        }
        if let Some(hop_id) = self.hop_id {
            options.push(KeyValuePair {
                key: HOP_ID_OPTION,
                value: KvpValue::Varint(hop_id),
            });
        }
        if let Some(size) = self.max_auth_token_cache_size {
            options.push(KeyValuePair {
                key: Self::MAX_AUTH_TOKEN_CACHE_SIZE,
                value: KvpValue::Varint(size),
            });
        }
        options
    }
}

impl Decode for Setup {
    /// Decode the options filling all of `buf` (the payload).
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let options = KeyValuePairs::decode_all(buf, version)?;
        let mut setup = Setup::default();
        let mut unknown = Vec::new();
        for option in options.iter() {
            let KeyValuePair { key, value } = option;
            let key = *key;
            match (key, value) {
                (Self::PATH, KvpValue::Bytes(v)) => set_once(&mut setup.path, key, utf8(v, "PATH")?)?,
                (Self::AUTHORITY, KvpValue::Bytes(v)) => {
                    set_once(&mut setup.authority, key, utf8(v, "AUTHORITY")?)?
                }
                (Self::MOQT_IMPLEMENTATION, KvpValue::Bytes(v)) => {
                    set_once(&mut setup.moqt_implementation, key, v.clone())?
                }
                (Self::MAX_AUTH_TOKEN_CACHE_SIZE, KvpValue::Varint(v)) => {
                    set_once(&mut setup.max_auth_token_cache_size, key, *v)?
                }
                (HOP_ID_OPTION, KvpValue::Varint(v)) => set_once(&mut setup.hop_id, key, *v)?,
                (Self::AUTHORIZATION_TOKEN, KvpValue::Bytes(v)) => {
                    let token = Token::decode(&mut v.clone(), version)?;
                    if matches!(token.alias_type(), AliasType::Delete | AliasType::UseAlias) {
                        return Err(DecodeError::Invalid("DELETE or USE_ALIAS token in SETUP"));
                    }
                    setup.authorization_tokens.push(token);
                }
                // Key-Value-Pair parity fixes the value kind, so the arms above are exhaustive
                // for known keys; everything else is an unknown option.
                _ => unknown.push(option.clone()),
            }
        }
        setup.unknown_options = unknown.into_iter().collect();
        Ok(setup)
    }
}

impl Encode for Setup {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        self.options(version).encode_all(buf, version);
    }
}

fn set_once<T>(slot: &mut Option<T>, key: u64, value: T) -> Result<(), DecodeError> {
    if slot.replace(value).is_some() {
        return Err(DecodeError::DuplicateParameter(key));
    }
    Ok(())
}

fn utf8(bytes: &Bytes, what: &'static str) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Invalid(what))
}
