//! The data plane (draft-18 §10, "Data Streams and Datagrams"): subgroup and fetch streams,
//! objects, datagrams, padding.
//!
//! | file | spec section | types |
//! |---|---|---|
//! | `stream_type.rs` | §3.3 Unidirectional Stream Types; §10.4.2 type bits | [`StreamType`], [`SubgroupType`], [`SubgroupIdMode`] |
//! | `subgroup.rs` | §10.4.2 Subgroup Header and its object fields | [`SubgroupHeader`], [`SubgroupObjectHeader`], [`SubgroupObject`], [`SubgroupStream`] |
//! | `fetch.rs` | §10.4.4 Fetch Header, Flags, End of Range | [`FetchHeader`], [`FetchStream`], [`FetchRecord`], [`FetchObjectHeader`], [`FetchObject`], [`EndOfRange`] |
//! | `datagram.rs` | §10.3.1 Object Datagram | [`Datagram`], [`ObjectDatagram`], [`DatagramType`] |
//! | `object.rs` | §10.2 Objects (Object Status, Object Properties); §11 Immutable Properties, Prior Group/Object ID Gap | [`ObjectStatus`], [`ObjectProperties`], [`property_type`] |
//! | `padding.rs` | §10.5 Padding | [`PaddingStream`], [`PaddingDatagram`] |
//!
//! # Reading a stream
//!
//! Streams are read header-first so that a payload's length is known (and can be refused) before
//! any of it is buffered:
//!
//! ```
//! use banyan_moq::data::{StreamType, SubgroupHeader, SubgroupStream};
//! use banyan_moq::coding::{Decode, DecodeError};
//! use banyan_moq::Version;
//!
//! # fn main() -> Result<(), DecodeError> {
//! let bytes: &[u8] = &[0x14, 0x02, 0x00, 0x00, 0x00, 0x00, 0x04, b'a', b'b', b'c', b'd'];
//! let mut cursor = bytes;
//! let StreamType::Subgroup(ty) = StreamType::decode(&mut cursor, Version::Draft18)? else {
//!     unreachable!()
//! };
//! let header = SubgroupHeader::decode_after_type(ty, &mut cursor, Version::Draft18)?;
//! let mut stream = SubgroupStream::new(header);
//! let object = stream.decode_object_header(&mut cursor, Version::Draft18)?;
//! assert!(object.payload_len <= 1 << 20, "refuse before buffering");
//! assert_eq!(cursor, b"abcd");
//! # Ok(())
//! # }
//! ```
//!
//! Decoders return [`DecodeError::Incomplete`](crate::coding::DecodeError::Incomplete) when the
//! buffer ends early; the stateful readers ([`SubgroupStream`], [`FetchStream`]) only advance on
//! success, so the caller retries from the same position with more bytes. Datagrams are whole,
//! so their decoders treat truncation as malformed.

mod datagram;
mod fetch;
mod object;
mod padding;
mod stream_type;
mod subgroup;

pub use datagram::{Datagram, DatagramType, ObjectDatagram};
pub use fetch::{
    flags as fetch_flags, EndOfRange, FetchGroupOrder, FetchHeader, FetchItem, FetchObject,
    FetchObjectHeader, FetchRecord, FetchStream, RangeKind, END_OF_NON_EXISTENT_RANGE, END_OF_UNKNOWN_RANGE,
};
pub use object::{property_type, ObjectProperties, ObjectStatus, PropertyError, MAX_OBJECT_PROPERTIES_LEN};
pub use padding::{PaddingDatagram, PaddingStream, PADDING_DATAGRAM};
pub use stream_type::{StreamType, SubgroupIdMode, SubgroupType, FETCH_HEADER, PADDING_STREAM, SETUP};
pub use subgroup::{SubgroupHeader, SubgroupId, SubgroupObject, SubgroupObjectHeader, SubgroupStream};
