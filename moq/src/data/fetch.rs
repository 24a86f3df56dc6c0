//! Fetch streams (draft-18 §10.4.4, "Fetch Header"): the FETCH_HEADER and the objects that
//! follow it, each opened by Serialization Flags (§10.4.4.1, "Flags") or standing for an
//! End of Range (§10.4.4.2).
//!
//! Fetch objects are delta-encoded against the prior object on the stream, and the direction
//! of a Group ID Delta depends on the fetch's Group Order, so decoding and encoding go through
//! a [`FetchStream`] that holds that state. Like subgroup streams, a reader decodes the record
//! header first ([`FetchStream::decode_record`]) and learns `payload_len` before reading the
//! payload.

use bytes::{Buf, BufMut, Bytes};

use super::object::ObjectProperties;
use super::stream_type::{StreamType, FETCH_HEADER};
use super::subgroup::decode_payload;
use crate::coding::{
    decode_u8, decode_varint, encode_varint, varint_len, Decode, DecodeError, Encode, EncodeError, Location,
    Version,
};

/// Serialization Flags value: End of Non-Existent Range.
pub const END_OF_NON_EXISTENT_RANGE: u64 = 0x8C;
/// Serialization Flags value: End of Unknown Range.
pub const END_OF_UNKNOWN_RANGE: u64 = 0x10C;

/// The flag bits of Serialization Flags values below 128.
pub mod flags {
    /// Mask of the two-bit Subgroup ID encoding.
    pub const SUBGROUP_MASK: u64 = 0x03;
    /// Subgroup ID encoding: zero.
    pub const SUBGROUP_ZERO: u64 = 0x00;
    /// Subgroup ID encoding: the prior object's Subgroup ID.
    pub const SUBGROUP_PRIOR: u64 = 0x01;
    /// Subgroup ID encoding: the prior object's Subgroup ID plus one.
    pub const SUBGROUP_NEXT: u64 = 0x02;
    /// Subgroup ID encoding: the Subgroup ID field is present.
    pub const SUBGROUP_PRESENT: u64 = 0x03;
    /// Object ID Delta is present (else the prior Object ID plus one).
    pub const OBJECT_ID_PRESENT: u64 = 0x04;
    /// Group ID Delta is present (else the prior Group ID).
    pub const GROUP_ID_PRESENT: u64 = 0x08;
    /// Publisher Priority is present (else the prior object's).
    pub const PRIORITY_PRESENT: u64 = 0x10;
    /// Properties are present.
    pub const PROPERTIES_PRESENT: u64 = 0x20;
    /// Datagram forwarding preference: no Subgroup ID; the two low bits are ignored.
    pub const DATAGRAM: u64 = 0x40;
}

/// FETCH_HEADER (§10.4.4): opens the stream answering one FETCH.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FetchHeader {
    /// Request ID of the FETCH this stream answers.
    pub request_id: u64,
}

impl FetchHeader {
    /// Decode the fields after a type varint the caller already read and dispatched on.
    pub fn decode_after_type<B: Buf>(buf: &mut B, _version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            request_id: decode_varint(buf)?,
        })
    }

    /// The encoded size, type included.
    pub fn encoded_len(&self) -> usize {
        varint_len(FETCH_HEADER) + varint_len(self.request_id)
    }
}

impl Decode for FetchHeader {
    /// The type varint (which must be 0x05) and the header.
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let code = decode_varint(buf)?;
        match StreamType::from_code(code)? {
            StreamType::Fetch => Self::decode_after_type(buf, version),
            _ => Err(DecodeError::Invalid("stream type is not FETCH_HEADER")),
        }
    }
}

impl Encode for FetchHeader {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_varint(FETCH_HEADER, buf);
        encode_varint(self.request_id, buf);
    }
}

/// The Group Order a fetch is served in (from FETCH_OK); it sets the sign of Group ID Delta.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FetchGroupOrder {
    /// Group IDs increase: Group ID = prior + delta + 1.
    #[default]
    Ascending,
    /// Group IDs decrease: Group ID = prior - (delta + 1).
    Descending,
}

/// The fields of one fetch object up to and excluding its payload, with every delta resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FetchObjectHeader {
    /// Group ID.
    pub group_id: u64,
    /// Subgroup ID; `None` for an object whose forwarding preference is Datagram (flag 0x40).
    pub subgroup_id: Option<u64>,
    /// Object ID.
    pub object_id: u64,
    /// Publisher Priority.
    pub publisher_priority: u8,
    /// Properties (empty when absent).
    pub properties: ObjectProperties,
    /// Object Payload Length: the payload bytes that follow. Fetch objects carry no status;
    /// zero means an empty Normal object.
    pub payload_len: u64,
}

impl FetchObjectHeader {
    /// The object's Location.
    pub const fn location(&self) -> Location {
        Location::new(self.group_id, self.object_id)
    }
}

/// Which kind of End of Range (§10.4.4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RangeKind {
    /// 0x8C: the objects in the range do not exist.
    NonExistent,
    /// 0x10C: the status of the objects in the range is unknown.
    Unknown,
}

impl RangeKind {
    /// The Serialization Flags value.
    pub const fn code(self) -> u64 {
        match self {
            RangeKind::NonExistent => END_OF_NON_EXISTENT_RANGE,
            RangeKind::Unknown => END_OF_UNKNOWN_RANGE,
        }
    }
}

/// End of Range: every Location after the last serialized object, up to and including this
/// one, does not exist or is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndOfRange {
    /// Non-existent or unknown.
    pub kind: RangeKind,
    /// Group ID (absolute on the wire, not a delta).
    pub group_id: u64,
    /// Object ID (absolute on the wire, not a delta).
    pub object_id: u64,
}

impl EndOfRange {
    /// The range's last Location.
    pub const fn location(&self) -> Location {
        Location::new(self.group_id, self.object_id)
    }
}

/// What follows on a fetch stream: an object header (its payload follows) or an End of Range.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FetchRecord {
    /// An object; `payload_len` bytes of payload follow.
    Object(FetchObjectHeader),
    /// An End of Range marker; nothing follows it.
    EndOfRange(EndOfRange),
}

/// One whole fetch object: its fields and its payload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FetchObject {
    /// Group ID.
    pub group_id: u64,
    /// Subgroup ID; `None` for Datagram forwarding preference.
    pub subgroup_id: Option<u64>,
    /// Object ID.
    pub object_id: u64,
    /// Publisher Priority.
    pub publisher_priority: u8,
    /// Properties.
    pub properties: ObjectProperties,
    /// Object Payload.
    pub payload: Bytes,
}

impl FetchObject {
    /// The fields before the payload.
    pub fn header(&self) -> FetchObjectHeader {
        FetchObjectHeader {
            group_id: self.group_id,
            subgroup_id: self.subgroup_id,
            object_id: self.object_id,
            publisher_priority: self.publisher_priority,
            properties: self.properties.clone(),
            payload_len: self.payload.len() as u64,
        }
    }
}

/// A whole item on a fetch stream, payload included.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FetchItem {
    /// An object with its payload.
    Object(FetchObject),
    /// An End of Range marker.
    EndOfRange(EndOfRange),
}

/// The delta state of one fetch stream after its header, for either direction.
///
/// The "prior object" of §10.4.4.1: the prior Location comes from the last object or End of
/// Range; the prior Subgroup ID and Priority from the last actual object only (§10.4.4.2).
/// Referencing a prior field that does not exist is a protocol violation, as is referencing
/// the prior Subgroup ID when the prior object had Datagram forwarding preference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FetchStream {
    /// The fetch's Group Order.
    pub order: FetchGroupOrder,
    prior_location: Option<Location>,
    prior_subgroup_id: Option<u64>,
    prior_priority: Option<u8>,
}

impl FetchStream {
    /// Start a stream in `order`.
    pub const fn new(order: FetchGroupOrder) -> Self {
        Self {
            order,
            prior_location: None,
            prior_subgroup_id: None,
            prior_priority: None,
        }
    }

    /// Decode the next record up to any payload; the caller then checks `payload_len` and
    /// reads that many bytes before calling again. State advances only on success.
    pub fn decode_record<B: Buf>(
        &mut self,
        buf: &mut B,
        version: Version,
    ) -> Result<FetchRecord, DecodeError> {
        let flags = decode_varint(buf)?;
        let record = match flags {
            END_OF_NON_EXISTENT_RANGE | END_OF_UNKNOWN_RANGE => {
                let kind = if flags == END_OF_NON_EXISTENT_RANGE {
                    RangeKind::NonExistent
                } else {
                    RangeKind::Unknown
                };
                FetchRecord::EndOfRange(EndOfRange {
                    kind,
                    group_id: decode_varint(buf)?,
                    object_id: decode_varint(buf)?,
                })
            }
            0x80.. => return Err(DecodeError::Invalid("fetch serialization flags")),
            _ => FetchRecord::Object(self.decode_object_fields(flags, buf, version)?),
        };
        self.observe(&record);
        Ok(record)
    }

    /// Decode the next whole item, refusing a payload above `max_payload_len` before buffering
    /// it. State advances only on success.
    pub fn decode_item<B: Buf>(
        &mut self,
        buf: &mut B,
        max_payload_len: u64,
        version: Version,
    ) -> Result<FetchItem, DecodeError> {
        let mut next = *self;
        let item = match next.decode_record(buf, version)? {
            FetchRecord::EndOfRange(end) => FetchItem::EndOfRange(end),
            FetchRecord::Object(h) => FetchItem::Object(FetchObject {
                payload: decode_payload(buf, h.payload_len, max_payload_len)?,
                group_id: h.group_id,
                subgroup_id: h.subgroup_id,
                object_id: h.object_id,
                publisher_priority: h.publisher_priority,
                properties: h.properties,
            }),
        };
        *self = next;
        Ok(item)
    }

    /// Encode a record (an object's fields, or an End of Range) with the smallest flags that
    /// the prior state allows. Fails if the Location cannot be expressed from the prior one
    /// (a group against the fetch's order, or an Object ID going backwards within a group).
    pub fn encode_record<B: BufMut>(
        &mut self,
        record: &FetchRecord,
        buf: &mut B,
        version: Version,
    ) -> Result<(), EncodeError> {
        match record {
            FetchRecord::EndOfRange(end) => {
                encode_varint(end.kind.code(), buf);
                encode_varint(end.group_id, buf);
                encode_varint(end.object_id, buf);
            }
            FetchRecord::Object(object) => self.encode_object_fields(object, buf, version)?,
        }
        self.observe(record);
        Ok(())
    }

    /// Encode a whole item, payload included.
    pub fn encode_item<B: BufMut>(
        &mut self,
        item: &FetchItem,
        buf: &mut B,
        version: Version,
    ) -> Result<(), EncodeError> {
        match item {
            FetchItem::EndOfRange(end) => self.encode_record(&FetchRecord::EndOfRange(*end), buf, version),
            FetchItem::Object(object) => {
                self.encode_record(&FetchRecord::Object(object.header()), buf, version)?;
                buf.put_slice(&object.payload);
                Ok(())
            }
        }
    }

    fn observe(&mut self, record: &FetchRecord) {
        match record {
            FetchRecord::Object(object) => {
                self.prior_location = Some(object.location());
                self.prior_subgroup_id = object.subgroup_id;
                self.prior_priority = Some(object.publisher_priority);
            }
            FetchRecord::EndOfRange(end) => self.prior_location = Some(end.location()),
        }
    }

    fn decode_object_fields<B: Buf>(
        &self,
        flags: u64,
        buf: &mut B,
        version: Version,
    ) -> Result<FetchObjectHeader, DecodeError> {
        const NO_PRIOR: DecodeError = DecodeError::Invalid("fetch object references a missing prior object");
        const OVERFLOW: DecodeError = DecodeError::Invalid("fetch object id out of range");

        let group_present = flags & flags::GROUP_ID_PRESENT != 0;
        let group_id = match (group_present, self.prior_location) {
            (true, None) => decode_varint(buf)?,
            (true, Some(prior)) => {
                let step = decode_varint(buf)?.checked_add(1).ok_or(OVERFLOW)?;
                match self.order {
                    FetchGroupOrder::Ascending => prior.group.checked_add(step),
                    FetchGroupOrder::Descending => prior.group.checked_sub(step),
                }
                .ok_or(OVERFLOW)?
            }
            (false, Some(prior)) => prior.group,
            (false, None) => return Err(NO_PRIOR),
        };
        let subgroup_id = if flags & flags::DATAGRAM != 0 {
            None
        } else {
            Some(match flags & flags::SUBGROUP_MASK {
                flags::SUBGROUP_ZERO => 0,
                flags::SUBGROUP_PRIOR => self.prior_subgroup_id.ok_or(NO_PRIOR)?,
                flags::SUBGROUP_NEXT => self
                    .prior_subgroup_id
                    .ok_or(NO_PRIOR)?
                    .checked_add(1)
                    .ok_or(OVERFLOW)?,
                _ => decode_varint(buf)?,
            })
        };
        let object_id = match (flags & flags::OBJECT_ID_PRESENT != 0, self.prior_location) {
            (true, None) => decode_varint(buf)?,
            (true, Some(_)) if group_present => decode_varint(buf)?,
            (true, Some(prior)) => prior.object.checked_add(decode_varint(buf)?).ok_or(OVERFLOW)?,
            (false, Some(prior)) => prior.object.checked_add(1).ok_or(OVERFLOW)?,
            (false, None) => return Err(NO_PRIOR),
        };
        let publisher_priority = if flags & flags::PRIORITY_PRESENT != 0 {
            decode_u8(buf)?
        } else {
            self.prior_priority.ok_or(NO_PRIOR)?
        };
        let properties = if flags & flags::PROPERTIES_PRESENT != 0 {
            ObjectProperties::decode(buf, version)?
        } else {
            ObjectProperties::new()
        };
        let payload_len = decode_varint(buf)?;
        Ok(FetchObjectHeader {
            group_id,
            subgroup_id,
            object_id,
            publisher_priority,
            properties,
            payload_len,
        })
    }

    fn encode_object_fields<B: BufMut>(
        &self,
        object: &FetchObjectHeader,
        buf: &mut B,
        version: Version,
    ) -> Result<(), EncodeError> {
        let mut bits = 0;
        let mut group_field = None;
        let mut object_field = None;
        let follows = |prior: Location| prior.object.checked_add(1) == Some(object.object_id);
        match self.prior_location {
            None => {
                bits |= flags::GROUP_ID_PRESENT | flags::OBJECT_ID_PRESENT;
                group_field = Some(object.group_id);
                object_field = Some(object.object_id);
            }
            Some(prior) if prior.group == object.group_id => {
                if !follows(prior) {
                    let delta = object
                        .object_id
                        .checked_sub(prior.object)
                        .ok_or(EncodeError::Invalid(
                            "fetch object id goes backwards within a group",
                        ))?;
                    bits |= flags::OBJECT_ID_PRESENT;
                    object_field = Some(delta);
                }
            }
            Some(prior) => {
                let distance = match self.order {
                    FetchGroupOrder::Ascending => object.group_id.checked_sub(prior.group),
                    FetchGroupOrder::Descending => prior.group.checked_sub(object.group_id),
                }
                .and_then(|d| d.checked_sub(1))
                .ok_or(EncodeError::Invalid("fetch group id against the group order"))?;
                bits |= flags::GROUP_ID_PRESENT;
                group_field = Some(distance);
                if !follows(prior) {
                    bits |= flags::OBJECT_ID_PRESENT;
                    object_field = Some(object.object_id);
                }
            }
        }
        let mut subgroup_field = None;
        match object.subgroup_id {
            None => bits |= flags::DATAGRAM,
            Some(0) => bits |= flags::SUBGROUP_ZERO,
            Some(id) if self.prior_subgroup_id == Some(id) => bits |= flags::SUBGROUP_PRIOR,
            Some(id) if self.prior_subgroup_id.and_then(|p| p.checked_add(1)) == Some(id) => {
                bits |= flags::SUBGROUP_NEXT
            }
            Some(id) => {
                bits |= flags::SUBGROUP_PRESENT;
                subgroup_field = Some(id);
            }
        }
        if self.prior_priority != Some(object.publisher_priority) {
            bits |= flags::PRIORITY_PRESENT;
        }
        if !object.properties.is_empty() {
            bits |= flags::PROPERTIES_PRESENT;
        }

        encode_varint(bits, buf);
        if let Some(group) = group_field {
            encode_varint(group, buf);
        }
        if let Some(subgroup) = subgroup_field {
            encode_varint(subgroup, buf);
        }
        if let Some(object_id) = object_field {
            encode_varint(object_id, buf);
        }
        if bits & flags::PRIORITY_PRESENT != 0 {
            buf.put_u8(object.publisher_priority);
        }
        if bits & flags::PROPERTIES_PRESENT != 0 {
            object.properties.encode(buf, version);
        }
        encode_varint(object.payload_len, buf);
        Ok(())
    }
}
