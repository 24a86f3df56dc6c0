//! Track Namespaces and Track Names (draft-18 §2.4.1) and their recommended text form (§1.5).

use bytes::{Buf, BufMut, Bytes};

use super::{
    decode_length_prefixed, decode_varint, encode_length_prefixed, encode_varint, Decode, DecodeError,
    Encode, Version,
};

/// The most fields a Track Namespace may have.
pub const MAX_NAMESPACE_FIELDS: usize = 32;
/// The longest Full Track Name (namespace fields plus track name), in bytes.
pub const MAX_FULL_TRACK_NAME_LEN: usize = 4096;

/// Why a name could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// More than 32 namespace fields.
    #[error("a namespace has at most {MAX_NAMESPACE_FIELDS} fields")]
    TooManyFields,
    /// A namespace field of zero bytes.
    #[error("namespace fields must not be empty")]
    EmptyField,
    /// More than 4096 bytes in all.
    #[error("a full track name is at most {MAX_FULL_TRACK_NAME_LEN} bytes")]
    TooLong,
    /// Text that is not in the canonical serialized form.
    #[error("invalid serialized name: {0}")]
    Syntax(&'static str),
}

/// An ordered tuple of 0 to 32 non-empty byte fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackNamespace(Vec<Bytes>);

impl TrackNamespace {
    /// A namespace from its fields, checked against the spec's limits.
    pub fn new<I, F>(fields: I) -> Result<Self, NameError>
    where
        I: IntoIterator<Item = F>,
        F: Into<Bytes>,
    {
        let fields: Vec<Bytes> = fields.into_iter().map(Into::into).collect();
        if fields.len() > MAX_NAMESPACE_FIELDS {
            return Err(NameError::TooManyFields);
        }
        if fields.iter().any(|f| f.is_empty()) {
            return Err(NameError::EmptyField);
        }
        if fields.iter().map(Bytes::len).sum::<usize>() > MAX_FULL_TRACK_NAME_LEN {
            return Err(NameError::TooLong);
        }
        Ok(Self(fields))
    }

    /// A namespace from `/`-separated UTF-8 text, e.g. `"live/show"` → `("live", "show")`.
    /// The empty string is the empty namespace.
    pub fn from_path(path: &str) -> Result<Self, NameError> {
        if path.is_empty() {
            return Ok(Self::default());
        }
        Self::new(path.split('/').map(|f| Bytes::copy_from_slice(f.as_bytes())))
    }

    /// The fields joined by `/` (the inverse of [`from_path`](Self::from_path) for UTF-8
    /// fields without `/`; other bytes are replaced with U+FFFD).
    pub fn to_path(&self) -> String {
        self.0
            .iter()
            .map(|f| String::from_utf8_lossy(f))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The fields in order.
    pub fn fields(&self) -> &[Bytes] {
        &self.0
    }

    /// The sum of the field lengths.
    pub fn byte_len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    /// True when `prefix`'s fields are the first fields of `self` (every namespace has the
    /// empty prefix).
    pub fn has_prefix(&self, prefix: &TrackNamespace) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// The fields after `prefix`, if `prefix` is a prefix of `self`.
    pub fn strip_prefix(&self, prefix: &TrackNamespace) -> Option<TrackNamespace> {
        self.has_prefix(prefix)
            .then(|| TrackNamespace(self.0.get(prefix.0.len()..).unwrap_or_default().to_vec()))
    }

    /// `self` followed by `suffix`'s fields, checked against the limits.
    pub fn join(&self, suffix: &TrackNamespace) -> Result<TrackNamespace, NameError> {
        Self::new(self.0.iter().chain(suffix.0.iter()).cloned())
    }
}

impl Decode for TrackNamespace {
    fn decode<B: Buf>(buf: &mut B, _version: Version) -> Result<Self, DecodeError> {
        let count = decode_varint(buf)?;
        if count > MAX_NAMESPACE_FIELDS as u64 {
            return Err(DecodeError::TooLarge {
                what: "namespace field count",
                size: count,
                limit: MAX_NAMESPACE_FIELDS as u64,
            });
        }
        let mut fields = Vec::with_capacity(count as usize);
        let mut total = 0usize;
        for _ in 0..count {
            let field = decode_length_prefixed(buf, "namespace field", MAX_FULL_TRACK_NAME_LEN - total)?;
            if field.is_empty() {
                return Err(DecodeError::Invalid("empty namespace field"));
            }
            total += field.len();
            fields.push(field);
        }
        Ok(Self(fields))
    }
}

impl Encode for TrackNamespace {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_varint(self.0.len() as u64, buf);
        for field in &self.0 {
            encode_length_prefixed(field, buf);
        }
    }
}

impl std::fmt::Display for TrackNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, field) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            write_escaped(f, field)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for TrackNamespace {
    type Err = NameError;

    /// Parse the spec's canonical text form (`example.2enet-team2`).
    fn from_str(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Ok(Self::default());
        }
        Self::new(s.split('-').map(parse_escaped).collect::<Result<Vec<_>, _>>()?)
    }
}

/// The name of a track within its namespace: any bytes, possibly empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackName(Bytes);

impl TrackName {
    /// A track name; its length is checked when paired with a namespace.
    pub fn new(name: impl Into<Bytes>) -> Self {
        Self(name.into())
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl From<&str> for TrackName {
    fn from(name: &str) -> Self {
        Self(Bytes::copy_from_slice(name.as_bytes()))
    }
}

impl Decode for TrackName {
    fn decode<B: Buf>(buf: &mut B, _version: Version) -> Result<Self, DecodeError> {
        Ok(Self(decode_length_prefixed(
            buf,
            "track name",
            MAX_FULL_TRACK_NAME_LEN,
        )?))
    }
}

impl Encode for TrackName {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_length_prefixed(&self.0, buf);
    }
}

impl std::fmt::Display for TrackName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_escaped(f, &self.0)
    }
}

/// A Track Namespace with a Track Name: what a subscription names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FullTrackName {
    /// The namespace tuple.
    pub namespace: TrackNamespace,
    /// The track name.
    pub name: TrackName,
}

impl FullTrackName {
    /// A full track name, checked against the 4096-byte limit.
    pub fn new(namespace: TrackNamespace, name: TrackName) -> Result<Self, NameError> {
        if namespace.byte_len() + name.0.len() > MAX_FULL_TRACK_NAME_LEN {
            return Err(NameError::TooLong);
        }
        Ok(Self { namespace, name })
    }
}

impl Decode for FullTrackName {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let namespace = TrackNamespace::decode(buf, version)?;
        let name = TrackName::decode(buf, version)?;
        if namespace.byte_len() + name.0.len() > MAX_FULL_TRACK_NAME_LEN {
            return Err(DecodeError::TooLarge {
                what: "full track name",
                size: (namespace.byte_len() + name.0.len()) as u64,
                limit: MAX_FULL_TRACK_NAME_LEN as u64,
            });
        }
        Ok(Self { namespace, name })
    }
}

impl Encode for FullTrackName {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        self.namespace.encode(buf, version);
        self.name.encode(buf, version);
    }
}

impl std::fmt::Display for FullTrackName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}--{}", self.namespace, self.name)
    }
}

fn is_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn write_escaped(f: &mut std::fmt::Formatter<'_>, bytes: &[u8]) -> std::fmt::Result {
    for &b in bytes {
        if is_literal(b) {
            write!(f, "{}", b as char)?;
        } else {
            write!(f, ".{b:02x}")?;
        }
    }
    Ok(())
}

fn parse_escaped(text: &str) -> Result<Bytes, NameError> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'.' {
            let hi = bytes
                .next()
                .ok_or(NameError::Syntax("'.' must be followed by two hex digits"))?;
            let lo = bytes
                .next()
                .ok_or(NameError::Syntax("'.' must be followed by two hex digits"))?;
            let value = (hex_digit(hi)? << 4) | hex_digit(lo)?;
            if is_literal(value) {
                return Err(NameError::Syntax("a literal byte must not be hex-encoded"));
            }
            out.push(value);
        } else if is_literal(b) {
            out.push(b);
        } else {
            return Err(NameError::Syntax("byte must be hex-encoded"));
        }
    }
    Ok(Bytes::from(out))
}

fn hex_digit(c: u8) -> Result<u8, NameError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(NameError::Syntax("hex digits must be 0-9 or lowercase a-f")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_text_example() {
        let ns = TrackNamespace::new(
            ["example.net", "team2", "project_x"].map(|s| Bytes::from_static(s.as_bytes())),
        )
        .unwrap();
        let full = FullTrackName::new(ns.clone(), TrackName::from("report")).unwrap();
        assert_eq!(full.to_string(), "example.2enet-team2-project_x--report");
        assert_eq!(
            "example.2enet-team2-project_x".parse::<TrackNamespace>().unwrap(),
            ns
        );
    }

    #[test]
    fn text_form_rejects_non_canonical_input() {
        assert!(
            ".61".parse::<TrackNamespace>().is_err(),
            "literal byte hex-encoded"
        );
        assert!("a.2E".parse::<TrackNamespace>().is_err(), "uppercase hex");
        assert!("a.2".parse::<TrackNamespace>().is_err(), "short escape");
        assert!("a b".parse::<TrackNamespace>().is_err(), "unescaped space");
    }

    #[test]
    fn limits_are_enforced_on_construction_and_decode() {
        assert_eq!(
            TrackNamespace::new((0..33).map(|_| Bytes::from_static(b"x"))),
            Err(NameError::TooManyFields)
        );
        assert_eq!(TrackNamespace::new([Bytes::new()]), Err(NameError::EmptyField));

        let mut wire = Vec::new();
        encode_varint(33, &mut wire);
        assert!(matches!(
            TrackNamespace::decode(&mut &wire[..], Version::Draft18),
            Err(DecodeError::TooLarge { .. })
        ));

        let mut wire = Vec::new();
        encode_varint(1, &mut wire);
        encode_varint(0, &mut wire);
        assert_eq!(
            TrackNamespace::decode(&mut &wire[..], Version::Draft18),
            Err(DecodeError::Invalid("empty namespace field"))
        );

        let ns = TrackNamespace::new([Bytes::from(vec![b'a'; 4000])]).unwrap();
        let full = FullTrackName {
            namespace: ns,
            name: TrackName::new(vec![b'b'; 97]),
        };
        let wire = full.to_bytes(Version::Draft18);
        assert!(matches!(
            FullTrackName::decode(&mut &wire[..], Version::Draft18),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn prefixes() {
        let ns = TrackNamespace::from_path("live/show/video").unwrap();
        let prefix = TrackNamespace::from_path("live").unwrap();
        assert!(ns.has_prefix(&prefix));
        assert!(ns.has_prefix(&TrackNamespace::default()));
        assert_eq!(
            ns.strip_prefix(&prefix).unwrap(),
            TrackNamespace::from_path("show/video").unwrap()
        );
        assert!(!prefix.has_prefix(&ns));
        assert_eq!(
            prefix
                .join(&TrackNamespace::from_path("show/video").unwrap())
                .unwrap(),
            ns
        );
    }
}
