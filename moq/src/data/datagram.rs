//! Datagrams (draft-18 §10.3): OBJECT_DATAGRAM (§10.3.1, "Object Datagram") and the
//! dispatch between it and padding datagrams (§10.5.2).
//!
//! A datagram is whole: there is no "read more", so running out of bytes is malformed and the
//! decoders here never return [`DecodeError::Incomplete`].

use bytes::{Buf, BufMut, Bytes};

use super::object::{ObjectProperties, ObjectStatus};
use super::padding::{PaddingDatagram, PADDING_DATAGRAM};
use crate::coding::{
    decode_u8, decode_varint, encode_varint, Decode, DecodeError, Encode, EncodeError, Version,
};

/// The flag bits of an OBJECT_DATAGRAM type (`0b00X0XXXX`, §10.3.1).
///
/// 24 values are valid: 0x00-0x0F, and 0x20-0x2F without END_OF_GROUP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DatagramType {
    /// PROPERTIES (0x01): the Properties field is present (and must not be empty).
    pub properties: bool,
    /// END_OF_GROUP (0x02): no object in the group has a larger Object ID.
    pub end_of_group: bool,
    /// ZERO_OBJECT_ID (0x04): the Object ID field is absent and the Object ID is 0.
    pub zero_object_id: bool,
    /// DEFAULT_PRIORITY (0x08): the Publisher Priority field is absent.
    pub default_priority: bool,
    /// STATUS (0x20): an Object Status is present instead of a payload.
    pub status: bool,
}

impl DatagramType {
    const PROPERTIES: u64 = 0x01;
    const END_OF_GROUP: u64 = 0x02;
    const ZERO_OBJECT_ID: u64 = 0x04;
    const DEFAULT_PRIORITY: u64 = 0x08;
    const STATUS: u64 = 0x20;

    /// The flags of a type value, or `None` if it is not a valid OBJECT_DATAGRAM type.
    pub const fn from_code(code: u64) -> Option<Self> {
        // 0b00X0XXXX, and STATUS excludes END_OF_GROUP.
        if code & !0x2F != 0 || (code & Self::STATUS != 0 && code & Self::END_OF_GROUP != 0) {
            return None;
        }
        Some(Self {
            properties: code & Self::PROPERTIES != 0,
            end_of_group: code & Self::END_OF_GROUP != 0,
            zero_object_id: code & Self::ZERO_OBJECT_ID != 0,
            default_priority: code & Self::DEFAULT_PRIORITY != 0,
            status: code & Self::STATUS != 0,
        })
    }

    /// The type value on the wire.
    pub const fn code(self) -> u64 {
        (if self.properties { Self::PROPERTIES } else { 0 })
            | (if self.end_of_group { Self::END_OF_GROUP } else { 0 })
            | (if self.zero_object_id {
                Self::ZERO_OBJECT_ID
            } else {
                0
            })
            | (if self.default_priority {
                Self::DEFAULT_PRIORITY
            } else {
                0
            })
            | (if self.status { Self::STATUS } else { 0 })
    }

    /// Every valid OBJECT_DATAGRAM type, in ascending wire order.
    pub fn all() -> impl Iterator<Item = DatagramType> {
        (0x00..0x30).filter_map(Self::from_code)
    }
}

/// OBJECT_DATAGRAM (§10.3.1): one object in one datagram.
///
/// The type is derived from the fields ([`ObjectDatagram::datagram_type`]): Object ID 0 is sent
/// with ZERO_OBJECT_ID, an empty payload is sent as a STATUS datagram (a zero-length object
/// explicitly encodes its Normal status), properties set PROPERTIES.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ObjectDatagram {
    /// Track Alias.
    pub track_alias: u64,
    /// Group ID.
    pub group_id: u64,
    /// Object ID.
    pub object_id: u64,
    /// Publisher Priority; `None` sets DEFAULT_PRIORITY (inherit the subscription's).
    pub publisher_priority: Option<u8>,
    /// Properties; empty means the field is absent.
    pub properties: ObjectProperties,
    /// END_OF_GROUP: no object in this group has a larger Object ID. Only with a payload.
    pub end_of_group: bool,
    /// Object Status; a non-Normal status has no payload and no properties.
    pub status: ObjectStatus,
    /// Object Payload: the rest of the datagram (sliced without copying).
    pub payload: Bytes,
}

impl ObjectDatagram {
    /// The datagram type these fields encode as, or why they cannot be sent in a datagram.
    pub fn datagram_type(&self) -> Result<DatagramType, EncodeError> {
        let status = self.payload.is_empty();
        if !self.status.is_normal() && !status {
            return Err(EncodeError::Invalid("object status with a payload"));
        }
        if !self.status.is_normal() && !self.properties.is_empty() {
            return Err(EncodeError::Invalid("properties on an object that is not normal"));
        }
        if status && self.end_of_group {
            return Err(EncodeError::Invalid(
                "a status datagram cannot signal end of group",
            ));
        }
        Ok(DatagramType {
            properties: !self.properties.is_empty(),
            end_of_group: self.end_of_group,
            zero_object_id: self.object_id == 0,
            default_priority: self.publisher_priority.is_none(),
            status,
        })
    }

    /// Decode a whole datagram. Truncation, trailing bytes after a status, an empty payload
    /// without STATUS, empty properties with PROPERTIES, and properties on a non-Normal status
    /// are all malformed. A type outside the OBJECT_DATAGRAM set is
    /// [`DecodeError::UnknownDatagramType`].
    pub fn decode(mut datagram: Bytes, version: Version) -> Result<Self, DecodeError> {
        let code = decode_varint(&mut datagram).map_err(truncated)?;
        let datagram_type = DatagramType::from_code(code).ok_or(DecodeError::UnknownDatagramType(code))?;
        Self::decode_after_type(datagram_type, datagram, version)
    }

    /// Decode the rest of a datagram whose type the caller already read.
    pub fn decode_after_type(
        datagram_type: DatagramType,
        mut buf: Bytes,
        version: Version,
    ) -> Result<Self, DecodeError> {
        let buf = &mut buf;
        let track_alias = decode_varint(buf).map_err(truncated)?;
        let group_id = decode_varint(buf).map_err(truncated)?;
        let object_id = if datagram_type.zero_object_id {
            0
        } else {
            decode_varint(buf).map_err(truncated)?
        };
        let publisher_priority = if datagram_type.default_priority {
            None
        } else {
            Some(decode_u8(buf).map_err(truncated)?)
        };
        let properties = if datagram_type.properties {
            let properties = ObjectProperties::decode(buf, version).map_err(truncated)?;
            if properties.is_empty() {
                return Err(DecodeError::Invalid("empty properties with the PROPERTIES bit"));
            }
            properties
        } else {
            ObjectProperties::new()
        };
        let (status, payload) = if datagram_type.status {
            let status = ObjectStatus::decode(buf, version).map_err(truncated)?;
            if !status.is_normal() && !properties.is_empty() {
                return Err(DecodeError::Invalid("properties on an object that is not normal"));
            }
            if buf.has_remaining() {
                return Err(DecodeError::Invalid("bytes after the object status"));
            }
            (status, Bytes::new())
        } else {
            if !buf.has_remaining() {
                return Err(DecodeError::Invalid("empty payload without the STATUS bit"));
            }
            (ObjectStatus::Normal, buf.split_off(0))
        };
        Ok(Self {
            track_alias,
            group_id,
            object_id,
            publisher_priority,
            properties,
            end_of_group: datagram_type.end_of_group,
            status,
            payload,
        })
    }

    /// Append the datagram to `buf`.
    pub fn encode<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        let datagram_type = self.datagram_type()?;
        encode_varint(datagram_type.code(), buf);
        encode_varint(self.track_alias, buf);
        encode_varint(self.group_id, buf);
        if !datagram_type.zero_object_id {
            encode_varint(self.object_id, buf);
        }
        if let Some(priority) = self.publisher_priority {
            buf.put_u8(priority);
        }
        if datagram_type.properties {
            self.properties.encode(buf, version);
        }
        if datagram_type.status {
            self.status.encode(buf, version);
        } else {
            buf.put_slice(&self.payload);
        }
        Ok(())
    }

    /// The datagram as a fresh buffer.
    pub fn to_bytes(&self, version: Version) -> Result<Bytes, EncodeError> {
        let mut buf = bytes::BytesMut::with_capacity(self.payload.len() + 32);
        self.encode(&mut buf, version)?;
        Ok(buf.freeze())
    }
}

/// Any datagram of a MoQT session.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Datagram {
    /// OBJECT_DATAGRAM.
    Object(ObjectDatagram),
    /// A padding datagram, to be discarded.
    Padding(PaddingDatagram),
}

impl Datagram {
    /// Decode a whole datagram, dispatching on its type. An undefined type is
    /// [`DecodeError::UnknownDatagramType`], on which the spec requires closing the session.
    pub fn decode(mut datagram: Bytes, version: Version) -> Result<Self, DecodeError> {
        let code = decode_varint(&mut datagram).map_err(truncated)?;
        if code == PADDING_DATAGRAM {
            return Ok(Datagram::Padding(PaddingDatagram::decode_after_type(datagram)?));
        }
        let datagram_type = DatagramType::from_code(code).ok_or(DecodeError::UnknownDatagramType(code))?;
        Ok(Datagram::Object(ObjectDatagram::decode_after_type(
            datagram_type,
            datagram,
            version,
        )?))
    }
}

/// In a datagram, running out of bytes is malformed rather than "read more".
fn truncated(error: DecodeError) -> DecodeError {
    match error {
        DecodeError::Incomplete => DecodeError::Invalid("truncated datagram"),
        other => other,
    }
}
