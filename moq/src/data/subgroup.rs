//! Subgroup streams (draft-18 §10.4.2, "Subgroup Header"): the SUBGROUP_HEADER and the
//! object fields that follow it.
//!
//! A stream reader works header-first so it never buffers a payload it will refuse:
//!
//! 1. [`StreamType::decode`](super::StreamType) (or [`SubgroupHeader::decode`] directly);
//! 2. [`SubgroupStream::new`] with the header;
//! 3. per object, [`SubgroupStream::decode_object_header`] returns a [`SubgroupObjectHeader`]
//!    whose `payload_len` the reader checks against its limit before reading the payload.
//!
//! [`SubgroupObject::decode`] does steps 3 and the payload in one go for callers that hold the
//! whole object in memory anyway.

use bytes::{Buf, BufMut, Bytes};

use super::object::{ObjectProperties, ObjectStatus};
use super::stream_type::{SubgroupIdMode, SubgroupType};
use crate::coding::{
    decode_u8, decode_varint, encode_varint, varint_len, Decode, DecodeError, Encode, EncodeError, Version,
};

/// The Subgroup ID as a SUBGROUP_HEADER conveys it (the SUBGROUP_ID_MODE flag and field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubgroupId {
    /// Mode 0b00: the Subgroup ID is 0.
    Zero,
    /// Mode 0b01: the Subgroup ID is the Object ID of the first object on the stream.
    FirstObjectId,
    /// Mode 0b10: the Subgroup ID field carries this value.
    Explicit(u64),
}

impl SubgroupId {
    /// The mode bits this choice uses.
    pub const fn mode(self) -> SubgroupIdMode {
        match self {
            SubgroupId::Zero => SubgroupIdMode::Zero,
            SubgroupId::FirstObjectId => SubgroupIdMode::FirstObjectId,
            SubgroupId::Explicit(_) => SubgroupIdMode::Explicit,
        }
    }

    /// The Subgroup ID, given the Object ID of the first object on the stream (needed only for
    /// [`SubgroupId::FirstObjectId`]).
    pub const fn resolve(self, first_object_id: Option<u64>) -> Option<u64> {
        match self {
            SubgroupId::Zero => Some(0),
            SubgroupId::FirstObjectId => first_object_id,
            SubgroupId::Explicit(id) => Some(id),
        }
    }
}

/// SUBGROUP_HEADER (§10.4.2): opens a subgroup stream.
///
/// The stream type is not stored: it is derived from the fields ([`SubgroupHeader::subgroup_type`]),
/// so a header can never disagree with its type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubgroupHeader {
    /// Track Alias: the track, as named in SUBSCRIBE_OK or PUBLISH.
    pub track_alias: u64,
    /// Group ID.
    pub group_id: u64,
    /// Subgroup ID, and how it is conveyed.
    pub subgroup_id: SubgroupId,
    /// Publisher Priority; `None` sets DEFAULT_PRIORITY (inherit the subscription's).
    pub publisher_priority: Option<u8>,
    /// PROPERTIES: every object on the stream carries a Properties field.
    pub properties: bool,
    /// END_OF_GROUP: this subgroup holds the largest object of the group.
    pub end_of_group: bool,
    /// FIRST_OBJECT: the first object on the stream is the first the publisher published in the
    /// subgroup.
    pub first_object: bool,
}

impl SubgroupHeader {
    /// The stream type these fields encode as.
    pub const fn subgroup_type(&self) -> SubgroupType {
        SubgroupType {
            properties: self.properties,
            subgroup_id_mode: self.subgroup_id.mode(),
            end_of_group: self.end_of_group,
            default_priority: self.publisher_priority.is_none(),
            first_object: self.first_object,
        }
    }

    /// Decode the fields after a type varint that the caller already read and dispatched on.
    pub fn decode_after_type<B: Buf>(
        subgroup_type: SubgroupType,
        buf: &mut B,
        _version: Version,
    ) -> Result<Self, DecodeError> {
        let track_alias = decode_varint(buf)?;
        let group_id = decode_varint(buf)?;
        let subgroup_id = match subgroup_type.subgroup_id_mode {
            SubgroupIdMode::Zero => SubgroupId::Zero,
            SubgroupIdMode::FirstObjectId => SubgroupId::FirstObjectId,
            SubgroupIdMode::Explicit => SubgroupId::Explicit(decode_varint(buf)?),
        };
        let publisher_priority = if subgroup_type.default_priority {
            None
        } else {
            Some(decode_u8(buf)?)
        };
        Ok(Self {
            track_alias,
            group_id,
            subgroup_id,
            publisher_priority,
            properties: subgroup_type.properties,
            end_of_group: subgroup_type.end_of_group,
            first_object: subgroup_type.first_object,
        })
    }

    /// The encoded size, type included.
    pub fn encoded_len(&self) -> usize {
        varint_len(self.subgroup_type().code())
            + varint_len(self.track_alias)
            + varint_len(self.group_id)
            + match self.subgroup_id {
                SubgroupId::Explicit(id) => varint_len(id),
                _ => 0,
            }
            + usize::from(self.publisher_priority.is_some())
    }
}

impl Decode for SubgroupHeader {
    /// The type varint and the header. A valid stream type that is not a SUBGROUP_HEADER is
    /// [`DecodeError::Invalid`]; an undefined one is [`DecodeError::UnknownStreamType`].
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let code = decode_varint(buf)?;
        match super::StreamType::from_code(code)? {
            super::StreamType::Subgroup(t) => Self::decode_after_type(t, buf, version),
            _ => Err(DecodeError::Invalid("stream type is not SUBGROUP_HEADER")),
        }
    }
}

impl Encode for SubgroupHeader {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_varint(self.subgroup_type().code(), buf);
        encode_varint(self.track_alias, buf);
        encode_varint(self.group_id, buf);
        if let SubgroupId::Explicit(id) = self.subgroup_id {
            encode_varint(id, buf);
        }
        if let Some(priority) = self.publisher_priority {
            buf.put_u8(priority);
        }
    }
}

/// The fields of one object on a subgroup stream, up to and excluding the payload.
///
/// `object_id` is absolute; the wire carries an Object ID Delta from the previous object on the
/// stream, so decoding and encoding take that previous Object ID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SubgroupObjectHeader {
    /// Object ID (resolved from Object ID Delta).
    pub object_id: u64,
    /// Properties; always empty when the stream type lacks PROPERTIES.
    pub properties: ObjectProperties,
    /// Object Payload Length: the number of payload bytes that follow.
    pub payload_len: u64,
    /// Object Status: on the wire only when `payload_len` is 0, otherwise Normal.
    pub status: ObjectStatus,
}

impl SubgroupObjectHeader {
    /// Decode one object's fields up to the payload, which the caller then reads
    /// (`payload_len` bytes). `prev_object_id` is the previous object's ID on this stream.
    ///
    /// Refuses (as protocol violations): an Object ID past 2^64-1, an unknown status, and
    /// non-empty properties on an object whose status is not Normal.
    pub fn decode<B: Buf>(
        buf: &mut B,
        header: &SubgroupHeader,
        prev_object_id: Option<u64>,
        version: Version,
    ) -> Result<Self, DecodeError> {
        let delta = decode_varint(buf)?;
        let object_id = match prev_object_id {
            None => delta,
            Some(prev) => prev
                .checked_add(delta)
                .and_then(|id| id.checked_add(1))
                .ok_or(DecodeError::Invalid("object id overflow"))?,
        };
        let properties = if header.properties {
            ObjectProperties::decode(buf, version)?
        } else {
            ObjectProperties::new()
        };
        let payload_len = decode_varint(buf)?;
        let status = if payload_len == 0 {
            ObjectStatus::decode(buf, version)?
        } else {
            ObjectStatus::Normal
        };
        if !status.is_normal() && !properties.is_empty() {
            return Err(DecodeError::Invalid("properties on an object that is not normal"));
        }
        Ok(Self {
            object_id,
            properties,
            payload_len,
            status,
        })
    }

    /// Encode this object's fields up to the payload.
    ///
    /// Fails if `object_id` does not come after `prev_object_id`, if there are properties but the
    /// stream type lacks PROPERTIES, if a non-Normal status has a payload or properties.
    pub fn encode<B: BufMut>(
        &self,
        buf: &mut B,
        header: &SubgroupHeader,
        prev_object_id: Option<u64>,
        version: Version,
    ) -> Result<(), EncodeError> {
        let delta = self.object_id_delta(prev_object_id)?;
        self.check(header)?;
        encode_varint(delta, buf);
        if header.properties {
            self.properties.encode(buf, version);
        }
        encode_varint(self.payload_len, buf);
        if self.payload_len == 0 {
            self.status.encode(buf, version);
        }
        Ok(())
    }

    /// The Object ID Delta on the wire after `prev_object_id`.
    pub fn object_id_delta(&self, prev_object_id: Option<u64>) -> Result<u64, EncodeError> {
        match prev_object_id {
            None => Ok(self.object_id),
            Some(prev) => self
                .object_id
                .checked_sub(prev)
                .and_then(|d| d.checked_sub(1))
                .ok_or(EncodeError::Invalid("object id does not follow the previous one")),
        }
    }

    /// The encoded size after `prev_object_id` (payload excluded).
    pub fn encoded_len(&self, header: &SubgroupHeader, prev_object_id: Option<u64>) -> usize {
        let delta = self.object_id_delta(prev_object_id).unwrap_or(self.object_id);
        varint_len(delta)
            + if header.properties {
                self.properties.encoded_len()
            } else {
                0
            }
            + varint_len(self.payload_len)
            + if self.payload_len == 0 {
                varint_len(self.status.code())
            } else {
                0
            }
    }

    fn check(&self, header: &SubgroupHeader) -> Result<(), EncodeError> {
        if !header.properties && !self.properties.is_empty() {
            return Err(EncodeError::Invalid(
                "properties on a stream type without PROPERTIES",
            ));
        }
        if !self.status.is_normal() && (self.payload_len != 0 || !self.properties.is_empty()) {
            return Err(EncodeError::Invalid(
                "non-normal status with payload or properties",
            ));
        }
        Ok(())
    }
}

/// One whole object on a subgroup stream: its fields and its payload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SubgroupObject {
    /// Object ID.
    pub object_id: u64,
    /// Properties; always empty when the stream type lacks PROPERTIES.
    pub properties: ObjectProperties,
    /// Object Status; Normal for any object with a payload.
    pub status: ObjectStatus,
    /// Object Payload (sliced without copying when decoded from `Bytes`).
    pub payload: Bytes,
}

impl SubgroupObject {
    /// A normal object.
    pub fn new(object_id: u64, payload: impl Into<Bytes>) -> Self {
        Self {
            object_id,
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// An empty object carrying a status (e.g. End of Group).
    pub fn with_status(object_id: u64, status: ObjectStatus) -> Self {
        Self {
            object_id,
            status,
            ..Self::default()
        }
    }

    /// The fields before the payload.
    pub fn header(&self) -> SubgroupObjectHeader {
        SubgroupObjectHeader {
            object_id: self.object_id,
            properties: self.properties.clone(),
            payload_len: self.payload.len() as u64,
            status: self.status,
        }
    }

    /// Decode a whole object: the header, a check of its payload length against
    /// `max_payload_len` (before any payload is buffered), then the payload.
    pub fn decode<B: Buf>(
        buf: &mut B,
        header: &SubgroupHeader,
        prev_object_id: Option<u64>,
        max_payload_len: u64,
        version: Version,
    ) -> Result<Self, DecodeError> {
        let fields = SubgroupObjectHeader::decode(buf, header, prev_object_id, version)?;
        let payload = decode_payload(buf, fields.payload_len, max_payload_len)?;
        Ok(Self {
            object_id: fields.object_id,
            properties: fields.properties,
            status: fields.status,
            payload,
        })
    }

    /// Encode the whole object after `prev_object_id`.
    pub fn encode<B: BufMut>(
        &self,
        buf: &mut B,
        header: &SubgroupHeader,
        prev_object_id: Option<u64>,
        version: Version,
    ) -> Result<(), EncodeError> {
        self.header().encode(buf, header, prev_object_id, version)?;
        buf.put_slice(&self.payload);
        Ok(())
    }
}

/// The receive state of one subgroup stream after its header: the previous Object ID, the
/// resolved Subgroup ID, and whether an End of Group / End of Track object closed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubgroupStream {
    /// The stream's header.
    pub header: SubgroupHeader,
    first_object_id: Option<u64>,
    prev_object_id: Option<u64>,
    ended: bool,
}

impl SubgroupStream {
    /// Start reading objects after `header`.
    pub const fn new(header: SubgroupHeader) -> Self {
        Self {
            header,
            first_object_id: None,
            prev_object_id: None,
            ended: false,
        }
    }

    /// Decode the next object's fields up to its payload; the caller then checks `payload_len`
    /// against its limit and reads (or skips) that many bytes before the next call.
    ///
    /// State advances only on success, so after [`DecodeError::Incomplete`] call again with
    /// more bytes from the same position. An object after one with End of Group or End of
    /// Track status is a protocol violation.
    pub fn decode_object_header<B: Buf>(
        &mut self,
        buf: &mut B,
        version: Version,
    ) -> Result<SubgroupObjectHeader, DecodeError> {
        if self.ended {
            // Only an empty remainder is fine; any byte starts a forbidden object.
            return if buf.has_remaining() {
                Err(DecodeError::Invalid("object after end of group or track"))
            } else {
                Err(DecodeError::Incomplete)
            };
        }
        let object = SubgroupObjectHeader::decode(buf, &self.header, self.prev_object_id, version)?;
        self.first_object_id.get_or_insert(object.object_id);
        self.prev_object_id = Some(object.object_id);
        self.ended = !object.status.is_normal();
        Ok(object)
    }

    /// The Object ID of the last object decoded.
    pub const fn prev_object_id(&self) -> Option<u64> {
        self.prev_object_id
    }

    /// The Subgroup ID, once known (mode FirstObjectId needs the first object).
    pub const fn subgroup_id(&self) -> Option<u64> {
        self.header.subgroup_id.resolve(self.first_object_id)
    }

    /// True after an object with End of Group or End of Track status.
    pub const fn is_ended(&self) -> bool {
        self.ended
    }
}

/// Read a payload of `len` bytes after checking it against `max`.
pub(crate) fn decode_payload<B: Buf>(buf: &mut B, len: u64, max: u64) -> Result<Bytes, DecodeError> {
    if len > max {
        return Err(DecodeError::TooLarge {
            what: "object payload length",
            size: len,
            limit: max,
        });
    }
    let len = usize::try_from(len).map_err(|_| DecodeError::TooLarge {
        what: "object payload length",
        size: len,
        limit: usize::MAX as u64,
    })?;
    if buf.remaining() < len {
        return Err(DecodeError::Incomplete);
    }
    Ok(buf.copy_to_bytes(len))
}
