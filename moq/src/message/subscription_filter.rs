//! Subscription Filters (draft-18 §5.1.2), carried by the SUBSCRIPTION_FILTER parameter (0x21).
//!
//! ```text
//! Subscription Filter {
//!   Filter Type (vi64),
//!   [Start Location (Location),]
//!   [End Group Delta (vi64),]
//! }
//! ```

use bytes::{Buf, BufMut};

use crate::coding::{decode_varint, encode_varint, Decode, DecodeError, Encode, Location, Version};

/// The Filter Type code of a [`SubscriptionFilter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterType {
    /// Next Group Start (0x1).
    NextGroupStart,
    /// Largest Object (0x2).
    LargestObject,
    /// AbsoluteStart (0x3).
    AbsoluteStart,
    /// AbsoluteRange (0x4).
    AbsoluteRange,
}

impl FilterType {
    /// The code on the wire.
    pub const fn code(self) -> u64 {
        match self {
            FilterType::NextGroupStart => 0x1,
            FilterType::LargestObject => 0x2,
            FilterType::AbsoluteStart => 0x3,
            FilterType::AbsoluteRange => 0x4,
        }
    }

    /// The filter type for a code; any other value is a protocol violation.
    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            0x1 => Some(FilterType::NextGroupStart),
            0x2 => Some(FilterType::LargestObject),
            0x3 => Some(FilterType::AbsoluteStart),
            0x4 => Some(FilterType::AbsoluteRange),
            _ => None,
        }
    }
}

/// Which Objects of a track a subscription passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionFilter {
    /// Start at `{Largest Object.Group + 1, 0}`; open ended.
    NextGroupStart,
    /// Start at `{Largest Object.Group, Largest Object.Object + 1}`; open ended.
    LargestObject,
    /// Start at `start_location`; open ended.
    AbsoluteStart {
        /// The first Location that passes.
        start_location: Location,
    },
    /// Start at `start_location`; end with group `start_location.group + end_group_delta`
    /// (a delta of 0 ends with the start group).
    AbsoluteRange {
        /// The first Location that passes.
        start_location: Location,
        /// The last group, as a delta from the start group.
        end_group_delta: u64,
    },
}

impl SubscriptionFilter {
    /// The filter's type code.
    pub const fn filter_type(&self) -> FilterType {
        match self {
            SubscriptionFilter::NextGroupStart => FilterType::NextGroupStart,
            SubscriptionFilter::LargestObject => FilterType::LargestObject,
            SubscriptionFilter::AbsoluteStart { .. } => FilterType::AbsoluteStart,
            SubscriptionFilter::AbsoluteRange { .. } => FilterType::AbsoluteRange,
        }
    }

    /// The explicit Start Location, for the absolute filters.
    pub const fn start_location(&self) -> Option<Location> {
        match self {
            SubscriptionFilter::AbsoluteStart { start_location }
            | SubscriptionFilter::AbsoluteRange { start_location, .. } => Some(*start_location),
            _ => None,
        }
    }

    /// The last Group ID that passes, for AbsoluteRange (`None` if it would overflow, which a
    /// decoded filter never does).
    pub const fn end_group(&self) -> Option<u64> {
        match self {
            SubscriptionFilter::AbsoluteRange {
                start_location,
                end_group_delta,
            } => start_location.group.checked_add(*end_group_delta),
            _ => None,
        }
    }
}

impl Decode for SubscriptionFilter {
    /// Decode one filter. An unknown Filter Type, or an End Group beyond 2^64 - 1, is
    /// [`DecodeError::Invalid`] (the spec's PROTOCOL_VIOLATION).
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let code = decode_varint(buf)?;
        match FilterType::from_code(code) {
            Some(FilterType::NextGroupStart) => Ok(SubscriptionFilter::NextGroupStart),
            Some(FilterType::LargestObject) => Ok(SubscriptionFilter::LargestObject),
            Some(FilterType::AbsoluteStart) => Ok(SubscriptionFilter::AbsoluteStart {
                start_location: Location::decode(buf, version)?,
            }),
            Some(FilterType::AbsoluteRange) => {
                let start_location = Location::decode(buf, version)?;
                let end_group_delta = decode_varint(buf)?;
                if start_location.group.checked_add(end_group_delta).is_none() {
                    return Err(DecodeError::Invalid("subscription filter end group overflows"));
                }
                Ok(SubscriptionFilter::AbsoluteRange {
                    start_location,
                    end_group_delta,
                })
            }
            None => Err(DecodeError::Invalid("subscription filter type")),
        }
    }
}

impl Encode for SubscriptionFilter {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_varint(self.filter_type().code(), buf);
        match self {
            SubscriptionFilter::NextGroupStart | SubscriptionFilter::LargestObject => {}
            SubscriptionFilter::AbsoluteStart { start_location } => start_location.encode(buf, version),
            SubscriptionFilter::AbsoluteRange {
                start_location,
                end_group_delta,
            } => {
                start_location.encode(buf, version);
                encode_varint(*end_group_delta, buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_layouts() {
        let range = SubscriptionFilter::AbsoluteRange {
            start_location: Location::new(5, 1),
            end_group_delta: 3,
        };
        assert_eq!(&range.to_bytes(Version::Draft18)[..], &[0x04, 0x05, 0x01, 0x03]);
        assert_eq!(range.end_group(), Some(8));
        assert_eq!(
            &SubscriptionFilter::LargestObject.to_bytes(Version::Draft18)[..],
            &[0x02]
        );
    }

    #[test]
    fn rejects_unknown_types_and_overflow() {
        assert_eq!(
            SubscriptionFilter::decode(&mut &[0x05][..], Version::Draft18),
            Err(DecodeError::Invalid("subscription filter type"))
        );
        let mut wire = vec![0x04];
        crate::coding::encode_varint(u64::MAX, &mut wire);
        wire.push(0x00);
        wire.push(0x01);
        assert!(matches!(
            SubscriptionFilter::decode(&mut &wire[..], Version::Draft18),
            Err(DecodeError::Invalid(_))
        ));
    }
}
