//! Unidirectional stream types (draft-18 §3.3, "Unidirectional Stream Types"): the varint that
//! opens every unidirectional stream, and the flag bits of the SUBGROUP_HEADER family
//! (§10.4.2, "Subgroup Header").

use bytes::{Buf, BufMut};

use crate::coding::{decode_varint, encode_varint, Decode, DecodeError, Encode, Version};

/// FETCH_HEADER (§10.4.4).
pub const FETCH_HEADER: u64 = 0x05;
/// SETUP, the first message of the control stream (§9.3).
pub const SETUP: u64 = 0x2F00;
/// PADDING stream (§10.5.1).
pub const PADDING_STREAM: u64 = 0x132B_3E28;

/// The first varint of a unidirectional stream.
///
/// Decoding an undefined value (including the reserved subgroup-id mode 0b11) returns
/// [`DecodeError::UnknownStreamType`]; the spec requires closing the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamType {
    /// 0x05: a FETCH response stream.
    Fetch,
    /// 0b0XX1XXXX: a subgroup stream; the flags say which fields follow.
    Subgroup(SubgroupType),
    /// 0x2F00: the control stream, opened with SETUP.
    Setup,
    /// 0x132B3E28: padding, to be discarded.
    Padding,
}

impl StreamType {
    /// The value on the wire.
    pub const fn code(self) -> u64 {
        match self {
            StreamType::Fetch => FETCH_HEADER,
            StreamType::Subgroup(t) => t.code(),
            StreamType::Setup => SETUP,
            StreamType::Padding => PADDING_STREAM,
        }
    }

    /// The stream type for a wire value.
    pub const fn from_code(code: u64) -> Result<Self, DecodeError> {
        match code {
            FETCH_HEADER => Ok(StreamType::Fetch),
            SETUP => Ok(StreamType::Setup),
            PADDING_STREAM => Ok(StreamType::Padding),
            _ => match SubgroupType::from_code(code) {
                Some(t) => Ok(StreamType::Subgroup(t)),
                None => Err(DecodeError::UnknownStreamType(code)),
            },
        }
    }
}

impl Decode for StreamType {
    fn decode<B: Buf>(buf: &mut B, _version: Version) -> Result<Self, DecodeError> {
        Self::from_code(decode_varint(buf)?)
    }
}

impl Encode for StreamType {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_varint(self.code(), buf)
    }
}

/// How a subgroup stream conveys its Subgroup ID (the SUBGROUP_ID_MODE field, mask 0x06).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubgroupIdMode {
    /// 0b00: absent; the Subgroup ID is 0.
    Zero,
    /// 0b01: absent; the Subgroup ID is the Object ID of the first object on the stream.
    FirstObjectId,
    /// 0b10: present in the header.
    Explicit,
}

/// The flag bits of a SUBGROUP_HEADER type (`0b0XX1XXXX`, §10.4.2).
///
/// Every combination of these fields is a valid type; the reserved subgroup-id mode 0b11 and
/// values outside the pattern have no representation. There are 48 valid types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubgroupType {
    /// PROPERTIES (0x01): every object on the stream carries a Properties field.
    pub properties: bool,
    /// SUBGROUP_ID_MODE (0x06): how the Subgroup ID is conveyed.
    pub subgroup_id_mode: SubgroupIdMode,
    /// END_OF_GROUP (0x08): this subgroup holds the largest object of the group, so a FIN
    /// tells the receiver no larger Object ID exists.
    pub end_of_group: bool,
    /// DEFAULT_PRIORITY (0x20): the Publisher Priority field is absent and the subgroup inherits
    /// the subscription's priority.
    pub default_priority: bool,
    /// FIRST_OBJECT (0x40): the first object on this stream is the first object the original
    /// publisher published in the subgroup.
    pub first_object: bool,
}

impl SubgroupType {
    const PROPERTIES: u64 = 0x01;
    const SUBGROUP_ID_MODE: u64 = 0x06;
    const END_OF_GROUP: u64 = 0x08;
    const ALWAYS_SET: u64 = 0x10;
    const DEFAULT_PRIORITY: u64 = 0x20;
    const FIRST_OBJECT: u64 = 0x40;

    /// The flags of a type value, or `None` if the value is not a valid SUBGROUP_HEADER type.
    pub const fn from_code(code: u64) -> Option<Self> {
        // 0b0XX1XXXX: below 0x80 with bit 4 set.
        if code >= 0x80 || code & Self::ALWAYS_SET == 0 {
            return None;
        }
        let subgroup_id_mode = match (code & Self::SUBGROUP_ID_MODE) >> 1 {
            0b00 => SubgroupIdMode::Zero,
            0b01 => SubgroupIdMode::FirstObjectId,
            0b10 => SubgroupIdMode::Explicit,
            _ => return None,
        };
        Some(Self {
            properties: code & Self::PROPERTIES != 0,
            subgroup_id_mode,
            end_of_group: code & Self::END_OF_GROUP != 0,
            default_priority: code & Self::DEFAULT_PRIORITY != 0,
            first_object: code & Self::FIRST_OBJECT != 0,
        })
    }

    /// The type value on the wire.
    pub const fn code(self) -> u64 {
        let mode = match self.subgroup_id_mode {
            SubgroupIdMode::Zero => 0b00,
            SubgroupIdMode::FirstObjectId => 0b01,
            SubgroupIdMode::Explicit => 0b10,
        };
        Self::ALWAYS_SET
            | (mode << 1)
            | if self.properties { Self::PROPERTIES } else { 0 }
            | if self.end_of_group { Self::END_OF_GROUP } else { 0 }
            | if self.default_priority {
                Self::DEFAULT_PRIORITY
            } else {
                0
            }
            | if self.first_object { Self::FIRST_OBJECT } else { 0 }
    }

    /// Every valid SUBGROUP_HEADER type, in ascending wire order.
    pub fn all() -> impl Iterator<Item = SubgroupType> {
        (0x10..0x80).filter_map(Self::from_code)
    }
}
