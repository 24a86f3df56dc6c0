//! The object model shared by subgroup streams, fetch streams and datagrams (draft-18 §10.2,
//! "Objects"): [`ObjectStatus`] (§10.2.1.1), [`ObjectProperties`] (§10.2.1.2) and the
//! well-known object property types of §11 ("MOQT Properties"): Immutable Properties,
//! Prior Group ID Gap and Prior Object ID Gap.

use bytes::{Buf, BufMut};

use crate::coding::{
    decode_varint, encode_varint, varint_len, Decode, DecodeError, Encode, KeyValuePair, KeyValuePairs,
    KvpValue, Location, StreamResetCode, Version,
};

/// The largest Properties Length we accept on an object.
///
/// The spec does not bound it; we do, because the properties must be buffered whole before the
/// object header can be returned. Each Key-Value-Pair is itself at most 64 KiB.
pub const MAX_OBJECT_PROPERTIES_LEN: usize = 1 << 20;

/// Property types registered by draft-18 (§11 and the IANA "MOQ Properties" table) that
/// matter to objects, and the reserved ranges.
pub mod property_type {
    /// OBJECT_DELIVERY_TIMEOUT (Track scope).
    pub const OBJECT_DELIVERY_TIMEOUT: u64 = 0x02;
    /// MAX_CACHE_DURATION (Track scope).
    pub const MAX_CACHE_DURATION: u64 = 0x04;
    /// SUBGROUP_DELIVERY_TIMEOUT (Track scope).
    pub const SUBGROUP_DELIVERY_TIMEOUT: u64 = 0x06;
    /// IMMUTABLE_PROPERTIES (Track or Object): a byte string holding Key-Value-Pairs.
    pub const IMMUTABLE_PROPERTIES: u64 = 0x0B;
    /// DEFAULT_PUBLISHER_PRIORITY (Track scope).
    pub const DEFAULT_PUBLISHER_PRIORITY: u64 = 0x0E;
    /// DEFAULT_PUBLISHER_GROUP_ORDER (Track scope).
    pub const DEFAULT_PUBLISHER_GROUP_ORDER: u64 = 0x22;
    /// DYNAMIC_GROUPS (Track scope).
    pub const DYNAMIC_GROUPS: u64 = 0x30;
    /// PRIOR_GROUP_ID_GAP (Object scope): groups before this one that will never exist.
    pub const PRIOR_GROUP_ID_GAP: u64 = 0x3C;
    /// PRIOR_OBJECT_ID_GAP (Object scope): objects before this one that will never exist.
    pub const PRIOR_OBJECT_ID_GAP: u64 = 0x3E;
    /// Mandatory Track Properties (§2.5.1): malformed when carried by an object.
    pub const MANDATORY_TRACK: std::ops::RangeInclusive<u64> = 0x4000..=0x7FFF;

    /// True for the grease values `0x7f * N + 0x9D` (§Grease), reserved in this registry.
    pub const fn is_grease(value: u64) -> bool {
        value >= 0x9D && (value - 0x9D) % 0x7f == 0
    }
}

/// Object Status (§10.2.1.1). Only objects delivered in a subscription carry one.
///
/// draft-18 defines exactly three values; the "Object Does Not Exist" status (0x1) of earlier
/// drafts is gone and is refused like any other unknown value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ObjectStatus {
    /// 0x0: a normal object (implicit for any object with a non-empty payload).
    #[default]
    Normal,
    /// 0x3: no object in this group has this Object ID or a larger one.
    EndOfGroup,
    /// 0x4: no object at this Location or a larger one exists in the track.
    EndOfTrack,
}

impl ObjectStatus {
    /// The value on the wire.
    pub const fn code(self) -> u64 {
        match self {
            ObjectStatus::Normal => 0x0,
            ObjectStatus::EndOfGroup => 0x3,
            ObjectStatus::EndOfTrack => 0x4,
        }
    }

    /// The status for a wire value. Any other value is a protocol violation.
    pub const fn from_code(code: u64) -> Result<Self, DecodeError> {
        match code {
            0x0 => Ok(ObjectStatus::Normal),
            0x3 => Ok(ObjectStatus::EndOfGroup),
            0x4 => Ok(ObjectStatus::EndOfTrack),
            _ => Err(DecodeError::Invalid("object status")),
        }
    }

    /// True for [`ObjectStatus::Normal`].
    pub const fn is_normal(self) -> bool {
        matches!(self, ObjectStatus::Normal)
    }
}

impl Decode for ObjectStatus {
    fn decode<B: Buf>(buf: &mut B, _version: Version) -> Result<Self, DecodeError> {
        Self::from_code(decode_varint(buf)?)
    }
}

impl Encode for ObjectStatus {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_varint(self.code(), buf)
    }
}

/// Object Properties (§10.2.1.2): a Properties Length then that many bytes of Key-Value-Pairs.
///
/// Decoding checks only the serialization. The track-level rules of §2.5 and §11 (no Mandatory
/// Track Properties on objects, one Immutable Properties, gap properties at most once and not
/// larger than the ID) make the *track* malformed rather than the session, so they are checked
/// separately by [`ObjectProperties::validate`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ObjectProperties(pub KeyValuePairs);

impl ObjectProperties {
    /// No properties.
    pub const fn new() -> Self {
        Self(KeyValuePairs::new())
    }

    /// True when there are no properties.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The mutable (top-level) Key-Value-Pairs.
    pub fn pairs(&self) -> &KeyValuePairs {
        &self.0
    }

    /// Add a property, keeping type order.
    pub fn push(&mut self, pair: KeyValuePair) {
        self.0.push(pair);
    }

    /// Builder form of setting Prior Group ID Gap.
    pub fn with_prior_group_id_gap(mut self, gap: u64) -> Self {
        self.0.push(KeyValuePair {
            key: property_type::PRIOR_GROUP_ID_GAP,
            value: KvpValue::Varint(gap),
        });
        self
    }

    /// Builder form of setting Prior Object ID Gap.
    pub fn with_prior_object_id_gap(mut self, gap: u64) -> Self {
        self.0.push(KeyValuePair {
            key: property_type::PRIOR_OBJECT_ID_GAP,
            value: KvpValue::Varint(gap),
        });
        self
    }

    /// The first mutable value of a property type (does not look inside Immutable Properties).
    pub fn get(&self, key: u64) -> Option<&KvpValue> {
        self.0.get(key)
    }

    /// The contents of the Immutable Properties property, if present and well formed.
    pub fn immutable(&self) -> Result<Option<KeyValuePairs>, PropertyError> {
        let mut found = None;
        for pair in self
            .0
            .iter()
            .filter(|p| p.key == property_type::IMMUTABLE_PROPERTIES)
        {
            if found.is_some() {
                return Err(PropertyError::Duplicate(property_type::IMMUTABLE_PROPERTIES));
            }
            let KvpValue::Bytes(bytes) = &pair.value else {
                return Err(PropertyError::ImmutableFormat);
            };
            let inner = KeyValuePairs::decode_all(&mut bytes.clone(), Version::Draft18)
                .map_err(|_| PropertyError::ImmutableFormat)?;
            if inner.get(property_type::IMMUTABLE_PROPERTIES).is_some() {
                return Err(PropertyError::NestedImmutable);
            }
            found = Some(inner);
        }
        Ok(found)
    }

    /// Every value of `key`, searching both the mutable list and Immutable Properties, as the
    /// spec requires of processors (§11, "Immutable Properties").
    pub fn find_all(&self, key: u64) -> Result<Vec<KvpValue>, PropertyError> {
        let mut values: Vec<KvpValue> = self
            .0
            .iter()
            .filter(|p| p.key == key)
            .map(|p| p.value.clone())
            .collect();
        if let Some(inner) = self.immutable()? {
            values.extend(inner.iter().filter(|p| p.key == key).map(|p| p.value.clone()));
        }
        Ok(values)
    }

    /// Prior Group ID Gap (0x3C), searched in both lists; more than one instance is malformed.
    pub fn prior_group_id_gap(&self) -> Result<Option<u64>, PropertyError> {
        self.single_varint(property_type::PRIOR_GROUP_ID_GAP)
    }

    /// Prior Object ID Gap (0x3E), searched in both lists; more than one instance is malformed.
    pub fn prior_object_id_gap(&self) -> Result<Option<u64>, PropertyError> {
        self.single_varint(property_type::PRIOR_OBJECT_ID_GAP)
    }

    /// Check the per-object rules whose violation makes the track malformed (§2.5.1, §11):
    /// no Mandatory Track Property, at most one well-formed and un-nested Immutable Properties,
    /// each gap property at most once and no larger than the object's Group / Object ID.
    ///
    /// Rules that need history (a gap covering an object already received) are the caller's.
    pub fn validate(&self, location: Location) -> Result<(), PropertyError> {
        let immutable = self.immutable()?.unwrap_or_default();
        for pair in self.0.iter().chain(immutable.iter()) {
            if property_type::MANDATORY_TRACK.contains(&pair.key) {
                return Err(PropertyError::MandatoryTrackProperty(pair.key));
            }
        }
        if let Some(gap) = self.prior_group_id_gap()? {
            if gap > location.group {
                return Err(PropertyError::GapTooLarge {
                    property: property_type::PRIOR_GROUP_ID_GAP,
                    gap,
                    id: location.group,
                });
            }
        }
        if let Some(gap) = self.prior_object_id_gap()? {
            if gap > location.object {
                return Err(PropertyError::GapTooLarge {
                    property: property_type::PRIOR_OBJECT_ID_GAP,
                    gap,
                    id: location.object,
                });
            }
        }
        Ok(())
    }

    /// The bytes after the Properties Length.
    pub fn properties_len(&self) -> usize {
        self.0.encoded_len()
    }

    /// The whole encoding, Properties Length included.
    pub fn encoded_len(&self) -> usize {
        let len = self.properties_len();
        varint_len(len as u64) + len
    }

    fn single_varint(&self, key: u64) -> Result<Option<u64>, PropertyError> {
        let values = self.find_all(key)?;
        match values.as_slice() {
            [] => Ok(None),
            [KvpValue::Varint(v)] => Ok(Some(*v)),
            [KvpValue::Bytes(_)] => Err(PropertyError::ImmutableFormat),
            _ => Err(PropertyError::Duplicate(key)),
        }
    }
}

impl From<KeyValuePairs> for ObjectProperties {
    fn from(pairs: KeyValuePairs) -> Self {
        Self(pairs)
    }
}

impl FromIterator<KeyValuePair> for ObjectProperties {
    fn from_iter<T: IntoIterator<Item = KeyValuePair>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Decode for ObjectProperties {
    /// Properties Length, refused above [`MAX_OBJECT_PROPERTIES_LEN`] before buffering, then
    /// the pairs. [`DecodeError::Incomplete`] until all `Properties Length` bytes are present.
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let len = decode_varint(buf)?;
        if len > MAX_OBJECT_PROPERTIES_LEN as u64 {
            return Err(DecodeError::TooLarge {
                what: "object properties length",
                size: len,
                limit: MAX_OBJECT_PROPERTIES_LEN as u64,
            });
        }
        let len = len as usize;
        if buf.remaining() < len {
            return Err(DecodeError::Incomplete);
        }
        let mut bytes = buf.copy_to_bytes(len);
        Ok(Self(KeyValuePairs::decode_all(&mut bytes, version)?))
    }
}

impl Encode for ObjectProperties {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_varint(self.properties_len() as u64, buf);
        self.0.encode_all(buf, version);
    }
}

/// An object property breaks a rule that makes its track malformed (§2.5.1, §11).
///
/// A receiver treats the track as malformed (reset the stream with
/// [`StreamResetCode::MalformedTrack`], end the subscription with MALFORMED_TRACK); it does not
/// close the session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    /// A Mandatory Track Property (0x4000-0x7FFF) appeared on an object.
    #[error("mandatory track property {0:#x} on an object")]
    MandatoryTrackProperty(u64),
    /// A property that may appear once appeared more than once.
    #[error("property {0:#x} appears more than once")]
    Duplicate(u64),
    /// Immutable Properties holds another Immutable Properties.
    #[error("nested immutable properties")]
    NestedImmutable,
    /// Immutable Properties (or a value inside it) could not be parsed.
    #[error("badly formatted immutable properties")]
    ImmutableFormat,
    /// A Prior Group/Object ID Gap larger than the ID it precedes.
    #[error("property {property:#x}: gap {gap} exceeds id {id}")]
    GapTooLarge {
        /// Which gap property.
        property: u64,
        /// The gap.
        gap: u64,
        /// The Group or Object ID it was attached to.
        id: u64,
    },
}

impl PropertyError {
    /// The stream reset code for a data stream carrying the offending object.
    pub const fn reset_code(&self) -> StreamResetCode {
        StreamResetCode::MalformedTrack
    }
}
