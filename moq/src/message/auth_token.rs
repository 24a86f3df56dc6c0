//! The AUTHORIZATION TOKEN `Token` structure (draft-18 §10.2.2), carried by the AUTHORIZATION
//! TOKEN message parameter (0x03) and the AUTHORIZATION TOKEN Setup Option (0x03).
//!
//! ```text
//! Token {
//!   Alias Type (vi64),
//!   [Token Alias (vi64),]
//!   [Token Type (vi64),]
//!   [Token Value (..)]
//! }
//! ```
//!
//! The structure has no length of its own: it fills the length-prefixed parameter (or option)
//! value, and the Token Value is whatever remains after the Token Type.

use bytes::{Buf, BufMut, Bytes};

use crate::coding::{decode_varint, encode_varint, varint_len, Decode, DecodeError, Encode, Version};

/// The parameter / option type that carries a token; used in formatting errors.
const AUTHORIZATION_TOKEN: u64 = 0x03;

/// How a receiver processes a [`Token`] (the "Authorization Token Alias Type" registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AliasType {
    /// Retire a registered alias (0x0).
    Delete,
    /// Register an alias for a Token Type and Value (0x1).
    Register,
    /// Use a previously registered alias (0x2).
    UseAlias,
    /// Use the Token Type and Value given inline, without an alias (0x3).
    UseValue,
}

impl AliasType {
    /// The code on the wire.
    pub const fn code(self) -> u64 {
        match self {
            AliasType::Delete => 0x0,
            AliasType::Register => 0x1,
            AliasType::UseAlias => 0x2,
            AliasType::UseValue => 0x3,
        }
    }

    /// The alias type for a code, if it is one of the four defined.
    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            0x0 => Some(AliasType::Delete),
            0x1 => Some(AliasType::Register),
            0x2 => Some(AliasType::UseAlias),
            0x3 => Some(AliasType::UseValue),
            _ => None,
        }
    }
}

/// An authorization token, or a reference to one by alias.
///
/// `Debug` prints the token value's length only: token values are bearer credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Token {
    /// DELETE: retire `token_alias` and the value registered with it.
    Delete {
        /// The alias to retire.
        token_alias: u64,
    },
    /// REGISTER: associate `token_alias` with this type and value for the session, and use it.
    Register {
        /// The session-specific alias being registered.
        token_alias: u64,
        /// The Token Type (the "MOQT Auth Token Type" registry; 0 = negotiated out of band).
        token_type: u64,
        /// The token payload.
        token_value: Bytes,
    },
    /// USE_ALIAS: use the type and value previously registered with `token_alias`.
    UseAlias {
        /// The registered alias.
        token_alias: u64,
    },
    /// USE_VALUE: use this type and value once, without registering an alias.
    UseValue {
        /// The Token Type.
        token_type: u64,
        /// The token payload.
        token_value: Bytes,
    },
}

impl Token {
    /// The Alias Type this token is encoded with.
    pub const fn alias_type(&self) -> AliasType {
        match self {
            Token::Delete { .. } => AliasType::Delete,
            Token::Register { .. } => AliasType::Register,
            Token::UseAlias { .. } => AliasType::UseAlias,
            Token::UseValue { .. } => AliasType::UseValue,
        }
    }

    /// The alias, for every alias type but USE_VALUE.
    pub const fn token_alias(&self) -> Option<u64> {
        match self {
            Token::Delete { token_alias }
            | Token::Register { token_alias, .. }
            | Token::UseAlias { token_alias } => Some(*token_alias),
            Token::UseValue { .. } => None,
        }
    }

    /// The bytes a REGISTER occupies in the peer's token cache: 16 plus the Token Value
    /// (§10.3.1.3, MAX_AUTH_TOKEN_CACHE_SIZE). `None` for the other alias types.
    pub fn cache_size(&self) -> Option<u64> {
        match self {
            Token::Register { token_value, .. } => Some(16 + token_value.len() as u64),
            _ => None,
        }
    }

    /// The encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Token::Delete { token_alias } | Token::UseAlias { token_alias } => varint_len(*token_alias),
            Token::Register {
                token_alias,
                token_type,
                token_value,
            } => varint_len(*token_alias) + varint_len(*token_type) + token_value.len(),
            Token::UseValue {
                token_type,
                token_value,
            } => varint_len(*token_type) + token_value.len(),
        }
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Bytes| format!("<{} bytes>", v.len());
        match self {
            Token::Delete { token_alias } => f
                .debug_struct("Delete")
                .field("token_alias", token_alias)
                .finish(),
            Token::Register {
                token_alias,
                token_type,
                token_value,
            } => f
                .debug_struct("Register")
                .field("token_alias", token_alias)
                .field("token_type", token_type)
                .field("token_value", &format_args!("{}", redacted(token_value)))
                .finish(),
            Token::UseAlias { token_alias } => f
                .debug_struct("UseAlias")
                .field("token_alias", token_alias)
                .finish(),
            Token::UseValue {
                token_type,
                token_value,
            } => f
                .debug_struct("UseValue")
                .field("token_type", token_type)
                .field("token_value", &format_args!("{}", redacted(token_value)))
                .finish(),
        }
    }
}

impl Decode for Token {
    /// Decode a token that fills all of `buf` (the caller bounds `buf` to the parameter value).
    ///
    /// A structure that cannot be decoded (unknown Alias Type, bytes missing or left over) is a
    /// [`DecodeError::KeyValueFormat`] error, as the spec requires.
    fn decode<B: Buf>(buf: &mut B, _version: Version) -> Result<Self, DecodeError> {
        let malformed = |_| DecodeError::KeyValueFormat(AUTHORIZATION_TOKEN);
        let alias_type = decode_varint(buf).map_err(malformed)?;
        let token = match AliasType::from_code(alias_type) {
            Some(AliasType::Delete) => Token::Delete {
                token_alias: decode_varint(buf).map_err(malformed)?,
            },
            Some(AliasType::UseAlias) => Token::UseAlias {
                token_alias: decode_varint(buf).map_err(malformed)?,
            },
            Some(AliasType::Register) => Token::Register {
                token_alias: decode_varint(buf).map_err(malformed)?,
                token_type: decode_varint(buf).map_err(malformed)?,
                token_value: buf.copy_to_bytes(buf.remaining()),
            },
            Some(AliasType::UseValue) => Token::UseValue {
                token_type: decode_varint(buf).map_err(malformed)?,
                token_value: buf.copy_to_bytes(buf.remaining()),
            },
            None => return Err(DecodeError::KeyValueFormat(AUTHORIZATION_TOKEN)),
        };
        if buf.has_remaining() {
            return Err(DecodeError::KeyValueFormat(AUTHORIZATION_TOKEN));
        }
        Ok(token)
    }
}

impl Encode for Token {
    /// Write the structure without a length prefix (the parameter or option supplies it).
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_varint(self.alias_type().code(), buf);
        match self {
            Token::Delete { token_alias } | Token::UseAlias { token_alias } => {
                encode_varint(*token_alias, buf)
            }
            Token::Register {
                token_alias,
                token_type,
                token_value,
            } => {
                encode_varint(*token_alias, buf);
                encode_varint(*token_type, buf);
                buf.put_slice(token_value);
            }
            Token::UseValue {
                token_type,
                token_value,
            } => {
                encode_varint(*token_type, buf);
                buf.put_slice(token_value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_alias_type_and_sizes_match() {
        let tokens = [
            Token::Delete { token_alias: 7 },
            Token::Register {
                token_alias: 300,
                token_type: 1,
                token_value: Bytes::from_static(b"secret"),
            },
            Token::UseAlias { token_alias: 0 },
            Token::UseValue {
                token_type: 0x9d,
                token_value: Bytes::new(),
            },
        ];
        for token in tokens {
            let wire = token.to_bytes(Version::Draft18);
            assert_eq!(wire.len(), token.encoded_len());
            assert_eq!(Token::decode(&mut wire.clone(), Version::Draft18).unwrap(), token);
        }
    }

    #[test]
    fn malformed_structures_are_formatting_errors() {
        for bad in [&[0x04, 0x01][..], &[0x00][..], &[0x02, 0x01, 0x00][..], &[][..]] {
            assert_eq!(
                Token::decode(&mut &bad[..], Version::Draft18),
                Err(DecodeError::KeyValueFormat(AUTHORIZATION_TOKEN)),
                "{bad:02x?}"
            );
        }
    }

    #[test]
    fn debug_redacts_the_value() {
        let token = Token::UseValue {
            token_type: 1,
            token_value: Bytes::from_static(b"hunter2"),
        };
        let text = format!("{token:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<7 bytes>"), "{text}");
    }
}
