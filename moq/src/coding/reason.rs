use bytes::{Buf, BufMut};

use super::{decode_length_prefixed, encode_length_prefixed, Decode, DecodeError, Encode, Version};

/// The longest Reason Phrase the spec allows, in bytes.
pub const MAX_REASON_PHRASE_LEN: usize = 1024;

/// Diagnostic text attached to errors (draft-18 §1.4.4): UTF-8, at most 1024 bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReasonPhrase(String);

impl ReasonPhrase {
    /// A reason phrase, truncated at a character boundary to the spec's 1024-byte limit.
    pub fn new(text: impl Into<String>) -> Self {
        let mut text = text.into();
        if text.len() > MAX_REASON_PHRASE_LEN {
            let mut cut = MAX_REASON_PHRASE_LEN;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        Self(text)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ReasonPhrase {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for ReasonPhrase {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl std::fmt::Display for ReasonPhrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Decode for ReasonPhrase {
    fn decode<B: Buf>(buf: &mut B, _version: Version) -> Result<Self, DecodeError> {
        let bytes = decode_length_prefixed(buf, "reason phrase", MAX_REASON_PHRASE_LEN)?;
        // Diagnostic text only: invalid UTF-8 is replaced rather than failing the session.
        Ok(Self(String::from_utf8_lossy(&bytes).into_owned()))
    }
}

impl Encode for ReasonPhrase {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_length_prefixed(self.0.as_bytes(), buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_a_char_boundary() {
        let long = "é".repeat(600); // 1200 bytes
        let phrase = ReasonPhrase::new(long);
        assert!(phrase.as_str().len() <= MAX_REASON_PHRASE_LEN);
        assert_eq!(phrase.as_str().len(), 1024);
    }

    #[test]
    fn over_long_phrase_on_the_wire_is_refused() {
        let mut buf = Vec::new();
        crate::coding::encode_varint(1025, &mut buf);
        buf.extend(std::iter::repeat_n(b'a', 1025));
        assert!(matches!(
            ReasonPhrase::decode(&mut &buf[..], Version::Draft18),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
