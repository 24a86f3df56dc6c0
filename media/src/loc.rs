//! LOC object packaging (draft-ietf-moq-loc): one encoded frame per MoQT object, its
//! metadata in Object Properties.
//!
//! Every object Banyan publishes carries the LOC **Timestamp** property ([`TIMESTAMP`], 0x10)
//! with no Timescale property, so by the draft it is wall-clock time in microseconds since the
//! Unix epoch: the frame's capture (or ingest) time. Any viewer computes glass-to-glass latency
//! as `now - timestamp`, and consecutive timestamps give the presentation timeline.
//!
//! The first object of every group also carries the codec configuration ([`VIDEO_CONFIG`] or
//! [`AUDIO_CONFIG`], the WebCodecs `description` bytes), so a decoder can start from any group
//! without the catalog. Frames whose decode time differs from their presentation time (H.264 or
//! HEVC with B-frames) carry [`DECODE_OFFSET`], a Banyan property in the application range.

use banyan_moq::coding::{KeyValuePair, KvpValue};
use banyan_moq::data::{ObjectProperties, SubgroupObject};
use bytes::Bytes;

/// LOC Timestamp: wall-clock microseconds since the Unix epoch (no Timescale present). Even
/// type, so the value is a varint.
pub const TIMESTAMP: u64 = 0x10;
/// LOC Timescale: Timestamp units per second; when present the Timestamp is media time.
/// Banyan never sends it.
pub const TIMESCALE: u64 = 0x08;
/// LOC Video Frame Marking (RFC 9626 flags).
pub const VIDEO_FRAME_MARKING: u64 = 0x09;
/// LOC Audio Level (RFC 6464).
pub const AUDIO_LEVEL: u64 = 0x0C;
/// LOC Video Config: the WebCodecs `VideoDecoderConfig.description` bytes (e.g. avcC).
pub const VIDEO_CONFIG: u64 = 0x0D;
/// LOC Audio Config: the WebCodecs `AudioDecoderConfig.description` bytes (e.g. OpusHead).
pub const AUDIO_CONFIG: u64 = 0x0F;
/// Banyan's presentation-minus-decode time of a frame in microseconds, present only when it is
/// not zero. 0x3A is in MoQT's application-specific property range (0x38–0x3F); relays forward
/// it untouched. Viewers that decode in object order (WebCodecs) can ignore it; the fMP4 muxer
/// needs it to write composition offsets.
pub const DECODE_OFFSET: u64 = 0x3A;

/// Whether a track carries video or audio (decides which config property is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// A video track.
    Video,
    /// An audio track.
    Audio,
}

impl MediaKind {
    /// The LOC property that carries this kind's codec configuration.
    pub fn config_property(self) -> u64 {
        match self {
            MediaKind::Video => VIDEO_CONFIG,
            MediaKind::Audio => AUDIO_CONFIG,
        }
    }
}

/// One LOC object: a frame and its properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocFrame {
    /// Capture time, microseconds since the Unix epoch (the LOC Timestamp property).
    pub timestamp_us: u64,
    /// Presentation minus decode time in microseconds (0 for most streams).
    pub decode_offset_us: u64,
    /// The codec configuration, sent on the first object of each group.
    pub config: Option<Bytes>,
    /// The frame: WebCodecs "internal data" (for H.264, length-prefixed NAL units as in avcC).
    pub payload: Bytes,
}

/// Why an object is not a valid LOC frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocError {
    /// The object has no Timestamp property.
    #[error("object has no LOC Timestamp property (0x10)")]
    MissingTimestamp,
    /// The object carries a Timescale property: its Timestamp is media time, not capture time.
    #[error("object has a LOC Timescale property; Banyan expects wall-clock timestamps")]
    MediaTimescale,
    /// A property had the wrong shape (varint where bytes are expected or the reverse).
    #[error("LOC property {0:#x} has the wrong type")]
    WrongType(u64),
}

impl LocFrame {
    /// A frame with just a capture timestamp.
    pub fn new(timestamp_us: u64, payload: Bytes) -> Self {
        Self {
            timestamp_us,
            decode_offset_us: 0,
            config: None,
            payload,
        }
    }

    /// The Object Properties for this frame of a `kind` track.
    pub fn properties(&self, kind: MediaKind) -> ObjectProperties {
        let mut properties = ObjectProperties::new();
        // The keys below have the right parity for their value types, so these never fail.
        if let Some(pair) = KeyValuePair::varint(TIMESTAMP, self.timestamp_us) {
            properties.push(pair);
        }
        if self.decode_offset_us != 0 {
            if let Some(pair) = KeyValuePair::varint(DECODE_OFFSET, self.decode_offset_us) {
                properties.push(pair);
            }
        }
        if let Some(config) = &self.config {
            if let Some(pair) = KeyValuePair::bytes(kind.config_property(), config.clone()) {
                properties.push(pair);
            }
        }
        properties
    }

    /// The MoQT object carrying this frame as object `object_id` of its group.
    pub fn to_object(&self, kind: MediaKind, object_id: u64) -> SubgroupObject {
        SubgroupObject {
            object_id,
            properties: self.properties(kind),
            payload: self.payload.clone(),
            ..Default::default()
        }
    }

    /// Read a frame of a `kind` track from an object's properties and payload.
    pub fn from_parts(
        kind: MediaKind,
        properties: &ObjectProperties,
        payload: Bytes,
    ) -> Result<Self, LocError> {
        if properties.get(TIMESCALE).is_some() {
            return Err(LocError::MediaTimescale);
        }
        let timestamp_us = capture_timestamp(properties).ok_or_else(|| {
            if properties.get(TIMESTAMP).is_some() {
                LocError::WrongType(TIMESTAMP)
            } else {
                LocError::MissingTimestamp
            }
        })?;
        let decode_offset_us = match properties.get(DECODE_OFFSET) {
            None => 0,
            Some(KvpValue::Varint(v)) => *v,
            Some(KvpValue::Bytes(_)) => return Err(LocError::WrongType(DECODE_OFFSET)),
        };
        let key = kind.config_property();
        let config = match properties.get(key) {
            None => None,
            Some(KvpValue::Bytes(b)) => Some(b.clone()),
            Some(KvpValue::Varint(_)) => return Err(LocError::WrongType(key)),
        };
        Ok(Self {
            timestamp_us,
            decode_offset_us,
            config,
            payload,
        })
    }

    /// Read a frame from a received subgroup object.
    pub fn from_object(kind: MediaKind, object: &SubgroupObject) -> Result<Self, LocError> {
        Self::from_parts(kind, &object.properties, object.payload.clone())
    }
}

/// The capture timestamp (LOC Timestamp, µs since the Unix epoch) an object carries, if any.
pub fn capture_timestamp(properties: &ObjectProperties) -> Option<u64> {
    match properties.get(TIMESTAMP)? {
        KvpValue::Varint(us) => Some(*us),
        KvpValue::Bytes(_) => None,
    }
}

/// Properties carrying only a capture timestamp (what synthetic sources send).
pub fn timestamp_properties(timestamp_us: u64) -> ObjectProperties {
    let mut properties = ObjectProperties::new();
    if let Some(pair) = KeyValuePair::varint(TIMESTAMP, timestamp_us) {
        properties.push(pair);
    }
    properties
}

/// Microseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use banyan_moq::coding::{Decode, Encode};
    use banyan_moq::data::{SubgroupHeader, SubgroupId};
    use banyan_moq::Version;
    use bytes::BytesMut;

    fn header() -> SubgroupHeader {
        SubgroupHeader {
            track_alias: 1,
            group_id: 7,
            subgroup_id: SubgroupId::Zero,
            publisher_priority: None,
            properties: true,
            end_of_group: false,
            first_object: false,
        }
    }

    /// Encode an object on a subgroup stream and decode it back, as a relay and viewer would.
    fn wire_round_trip(object: &SubgroupObject) -> SubgroupObject {
        let version = Version::Draft18;
        let header = header();
        let mut buf = BytesMut::new();
        header.encode(&mut buf, version);
        object.encode(&mut buf, &header, None, version).unwrap();
        let mut cursor = &buf[..];
        let decoded = SubgroupHeader::decode(&mut cursor, version).unwrap();
        SubgroupObject::decode(&mut cursor, &decoded, None, 1 << 20, version).unwrap()
    }

    #[test]
    fn frame_round_trips_through_the_wire() {
        let frame = LocFrame {
            timestamp_us: 1_746_104_606_044_123,
            decode_offset_us: 66_666,
            config: Some(Bytes::from_static(&[1, 0x64, 0, 0x28, 0xff])),
            payload: Bytes::from_static(b"\0\0\0\x05\x65abcd"),
        };
        let back = wire_round_trip(&frame.to_object(MediaKind::Video, 0));
        assert_eq!(back.object_id, 0);
        assert_eq!(LocFrame::from_object(MediaKind::Video, &back).unwrap(), frame);
        // The config is a Video Config property, so an audio reading does not see it.
        assert_eq!(
            LocFrame::from_object(MediaKind::Audio, &back).unwrap().config,
            None
        );
    }

    #[test]
    fn plain_frame_carries_only_the_timestamp() {
        let frame = LocFrame::new(42, Bytes::from_static(b"opus"));
        let properties = frame.properties(MediaKind::Audio);
        assert_eq!(properties.pairs().len(), 1);
        assert_eq!(capture_timestamp(&properties), Some(42));
        let back = wire_round_trip(&frame.to_object(MediaKind::Audio, 3));
        assert_eq!(LocFrame::from_object(MediaKind::Audio, &back).unwrap(), frame);
    }

    /// The property IDs and value shapes registered by the LOC draft's IANA table.
    #[test]
    fn property_ids_match_the_draft() {
        assert_eq!(TIMESTAMP, 0x10);
        assert_eq!(TIMESCALE, 0x08);
        assert_eq!(VIDEO_FRAME_MARKING, 0x09);
        assert_eq!(AUDIO_LEVEL, 0x0C);
        assert_eq!(VIDEO_CONFIG, 0x0D);
        assert_eq!(AUDIO_CONFIG, 0x0F);
        // Even IDs carry a varint, odd IDs carry length-prefixed bytes.
        assert!(KeyValuePair::varint(TIMESTAMP, 1).is_some());
        assert!(KeyValuePair::bytes(VIDEO_CONFIG, Bytes::new()).is_some());
        assert!(KeyValuePair::bytes(AUDIO_CONFIG, Bytes::new()).is_some());
        assert!(KeyValuePair::varint(DECODE_OFFSET, 1).is_some());
        assert!((0x38..=0x3f).contains(&DECODE_OFFSET));
    }

    /// The LOC draft's audio example: 10 ms Opus chunks stamped with wall-clock µs; each
    /// object's timestamp reads back exactly, including values that need 8-byte varints.
    #[test]
    fn timestamps_of_every_size_round_trip() {
        for ts in [
            0,
            63,
            64,
            16_383,
            16_384,
            1_073_741_823,
            1_746_104_606_044_000,
            (1 << 62) - 1,
        ] {
            let frame = LocFrame::new(ts, Bytes::from_static(&[0xfc]));
            let back = wire_round_trip(&frame.to_object(MediaKind::Audio, 0));
            assert_eq!(capture_timestamp(&back.properties), Some(ts));
        }
    }

    #[test]
    fn objects_without_capture_time_are_refused() {
        let object = SubgroupObject::new(0, Bytes::from_static(b"x"));
        assert_eq!(
            LocFrame::from_object(MediaKind::Video, &object),
            Err(LocError::MissingTimestamp)
        );
        let mut properties = timestamp_properties(5);
        properties.push(KeyValuePair::varint(TIMESCALE, 90_000).unwrap());
        assert_eq!(
            LocFrame::from_parts(MediaKind::Video, &properties, Bytes::new()),
            Err(LocError::MediaTimescale)
        );
        let mut properties = timestamp_properties(5);
        properties.push(KeyValuePair::bytes(DECODE_OFFSET + 1, Bytes::new()).unwrap());
        assert!(LocFrame::from_parts(MediaKind::Video, &properties, Bytes::new()).is_ok());
    }
}
