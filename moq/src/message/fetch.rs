//! FETCH (draft-18 §10.12): request a range of already published Objects; the first message of
//! a request stream. Standalone, or joining an existing subscription (relative or absolute).
//!
//! ```text
//! FETCH Message {
//!   Type (vi64) = 0x16,
//!   Length (16),
//!   Request ID (vi64),
//!   Fetch Type (vi64),
//!   [Standalone (Standalone Fetch),]      -- Fetch Type 0x1
//!   [Joining (Joining Fetch),]            -- Fetch Type 0x2 or 0x3
//!   Number of Parameters (vi64),
//!   Parameters (..) ...
//! }
//!
//! Standalone Fetch {
//!   Track Namespace (..),
//!   Track Name Length (vi64),
//!   Track Name (..),
//!   Start Location (Location),
//!   End Location (Location)
//! }
//!
//! Joining Fetch {
//!   Joining Request ID (vi64),
//!   Joining Start (vi64)
//! }
//! ```
//!
//! A Fetch Type other than 1, 2 or 3 is a protocol violation. A range whose end precedes its
//! start is *not* a decode error: the spec gives no session-level consequence, so the
//! publisher answers it (INVALID_RANGE) after checking [`StandaloneFetch::is_empty_range`].

use bytes::{Buf, BufMut};

use crate::coding::{
    decode_varint, encode_varint, Decode, DecodeError, Encode, Location, TrackName, TrackNamespace, Version,
};

use super::{decode_track, ParameterScope, Parameters};

/// Fetch past Objects of a track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// The Request ID.
    pub request_id: u64,
    /// The Fetch Type with its structure.
    pub fetch_type: FetchType,
    /// Message Parameters (SUBSCRIBER_PRIORITY, GROUP_ORDER, FILL_TIMEOUT, AUTHORIZATION TOKEN).
    pub parameters: Parameters,
}

/// The kind of FETCH and the structure that goes with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchType {
    /// Standalone Fetch (0x1): an explicit track and range.
    Standalone(StandaloneFetch),
    /// Relative Joining Fetch (0x2): start `joining_start` groups before the subscription's
    /// Joining Location.
    RelativeJoining(JoiningFetch),
    /// Absolute Joining Fetch (0x3): start at group `joining_start`.
    AbsoluteJoining(JoiningFetch),
}

impl FetchType {
    /// The Fetch Type code on the wire.
    pub const fn code(&self) -> u64 {
        match self {
            FetchType::Standalone(_) => 0x1,
            FetchType::RelativeJoining(_) => 0x2,
            FetchType::AbsoluteJoining(_) => 0x3,
        }
    }
}

/// A Fetch of Objects independent of any subscription.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StandaloneFetch {
    /// The track's namespace.
    pub track_namespace: TrackNamespace,
    /// The track's name.
    pub track_name: TrackName,
    /// The first Location requested.
    pub start_location: Location,
    /// The last Location requested, plus one Object; Object 0 means the whole group.
    pub end_location: Location,
}

impl StandaloneFetch {
    /// The last Location requested, if the end is a single Object (`None` when the End
    /// Location's Object is 0, i.e. the whole of `end_location.group`).
    pub const fn last_object(&self) -> Option<Location> {
        match self.end_location.object.checked_sub(1) {
            Some(object) => Some(Location::new(self.end_location.group, object)),
            None => None,
        }
    }

    /// True when the range selects nothing: the End Location ends before the Start Location.
    pub fn is_empty_range(&self) -> bool {
        match self.last_object() {
            Some(last) => last < self.start_location,
            None => self.end_location.group < self.start_location.group,
        }
    }
}

/// A Fetch tied to an existing subscription.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JoiningFetch {
    /// The Request ID of the subscription joined.
    pub joining_request_id: u64,
    /// Groups before the Joining Location (relative) or the start Group ID (absolute).
    pub joining_start: u64,
}

impl Fetch {
    /// The Message Type.
    pub const TYPE: u64 = 0x16;
    /// The spec's name.
    pub const NAME: &'static str = "FETCH";
}

impl Decode for StandaloneFetch {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let (track_namespace, track_name) = decode_track(buf, version)?;
        Ok(Self {
            track_namespace,
            track_name,
            start_location: Location::decode(buf, version)?,
            end_location: Location::decode(buf, version)?,
        })
    }
}

impl Encode for StandaloneFetch {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        self.track_namespace.encode(buf, version);
        self.track_name.encode(buf, version);
        self.start_location.encode(buf, version);
        self.end_location.encode(buf, version);
    }
}

impl Decode for JoiningFetch {
    fn decode<B: Buf>(buf: &mut B, _version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            joining_request_id: decode_varint(buf)?,
            joining_start: decode_varint(buf)?,
        })
    }
}

impl Encode for JoiningFetch {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_varint(self.joining_request_id, buf);
        encode_varint(self.joining_start, buf);
    }
}

impl Decode for Fetch {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let request_id = decode_varint(buf)?;
        let fetch_type = match decode_varint(buf)? {
            0x1 => FetchType::Standalone(StandaloneFetch::decode(buf, version)?),
            0x2 => FetchType::RelativeJoining(JoiningFetch::decode(buf, version)?),
            0x3 => FetchType::AbsoluteJoining(JoiningFetch::decode(buf, version)?),
            _ => return Err(DecodeError::Invalid("fetch type")),
        };
        let parameters = Parameters::decode_scoped(buf, version, ParameterScope::Fetch)?;
        Ok(Self {
            request_id,
            fetch_type,
            parameters,
        })
    }
}

impl Encode for Fetch {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_varint(self.request_id, buf);
        encode_varint(self.fetch_type.code(), buf);
        match &self.fetch_type {
            FetchType::Standalone(standalone) => standalone.encode(buf, version),
            FetchType::RelativeJoining(joining) | FetchType::AbsoluteJoining(joining) => {
                joining.encode(buf, version)
            }
        }
        self.parameters.encode(buf, version);
    }
}
