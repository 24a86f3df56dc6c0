//! Proves the draft-18 data-plane codec: every stream type, subgroup header type and datagram type round-trips; truncated stream encodings ask for more bytes; malformed input is refused (never a panic); payload limits apply from the header alone; and the hand-derived vectors in `vectors/data.json` (including the spec's Examples) decode and re-encode byte for byte.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use banyan_moq::coding::{Decode, DecodeError, Encode, EncodeError, KeyValuePair, KvpValue, Location};
use banyan_moq::data::*;
use banyan_moq::Version;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

const V: Version = Version::Draft18;
const LIMIT: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// helpers

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn props(pairs: &[(u64, u64)]) -> ObjectProperties {
    pairs
        .iter()
        .map(|&(k, v)| KeyValuePair::varint(k, v).unwrap())
        .collect()
}

/// Decode a whole subgroup stream (header, then objects until the bytes run out).
fn decode_subgroup_stream(bytes: &[u8]) -> Result<(SubgroupHeader, Vec<SubgroupObject>), DecodeError> {
    let mut buf = Bytes::copy_from_slice(bytes);
    let header = SubgroupHeader::decode(&mut buf, V)?;
    let mut stream = SubgroupStream::new(header.clone());
    let mut objects = Vec::new();
    while !buf.is_empty() {
        let prev = stream.prev_object_id();
        let fields = stream.decode_object_header(&mut buf, V)?;
        assert!(fields.payload_len <= LIMIT);
        let payload = buf.split_to(fields.payload_len as usize);
        let object = SubgroupObject {
            object_id: fields.object_id,
            properties: fields.properties,
            status: fields.status,
            payload,
        };
        // The one-shot decoder agrees with the header-first one.
        let mut enc = BytesMut::new();
        object.encode(&mut enc, &header, prev, V).unwrap();
        assert_eq!(
            SubgroupObject::decode(&mut enc.freeze(), &header, prev, LIMIT, V).unwrap(),
            object
        );
        objects.push(object);
    }
    Ok((header, objects))
}

fn encode_subgroup_stream(header: &SubgroupHeader, objects: &[SubgroupObject]) -> Vec<u8> {
    let mut out = BytesMut::new();
    header.encode(&mut out, V);
    let mut prev = None;
    for object in objects {
        object.encode(&mut out, header, prev, V).unwrap();
        prev = Some(object.object_id);
    }
    out.to_vec()
}

fn decode_fetch_stream(
    bytes: &[u8],
    order: FetchGroupOrder,
) -> Result<(FetchHeader, Vec<FetchItem>), DecodeError> {
    let mut buf = Bytes::copy_from_slice(bytes);
    let header = FetchHeader::decode(&mut buf, V)?;
    let mut stream = FetchStream::new(order);
    let mut items = Vec::new();
    while !buf.is_empty() {
        items.push(stream.decode_item(&mut buf, LIMIT, V)?);
    }
    Ok((header, items))
}

fn encode_fetch_stream(header: &FetchHeader, items: &[FetchItem], order: FetchGroupOrder) -> Vec<u8> {
    let mut out = BytesMut::new();
    header.encode(&mut out, V);
    let mut stream = FetchStream::new(order);
    for item in items {
        stream.encode_item(item, &mut out, V).unwrap();
    }
    out.to_vec()
}

fn header_for(ty: SubgroupType) -> SubgroupHeader {
    SubgroupHeader {
        track_alias: 0x1234,
        group_id: 77,
        subgroup_id: match ty.subgroup_id_mode {
            SubgroupIdMode::Zero => SubgroupId::Zero,
            SubgroupIdMode::FirstObjectId => SubgroupId::FirstObjectId,
            SubgroupIdMode::Explicit => SubgroupId::Explicit(300),
        },
        publisher_priority: (!ty.default_priority).then_some(200),
        properties: ty.properties,
        end_of_group: ty.end_of_group,
        first_object: ty.first_object,
    }
}

fn objects_for(header: &SubgroupHeader) -> Vec<SubgroupObject> {
    let p = |pairs: &[(u64, u64)]| {
        if header.properties {
            props(pairs)
        } else {
            ObjectProperties::new()
        }
    };
    vec![
        SubgroupObject {
            properties: p(&[(0x3C, 1), (0x3800, 9)]),
            ..SubgroupObject::new(4, &b"first"[..])
        },
        SubgroupObject::new(5, &b""[..]),
        SubgroupObject {
            properties: p(&[(0x3E, 3)]),
            ..SubgroupObject::new(9, vec![7u8; 200])
        },
        SubgroupObject::with_status(10, ObjectStatus::EndOfGroup),
    ]
}

fn datagram_for(ty: DatagramType) -> ObjectDatagram {
    let properties = if ty.properties {
        props(&[(0x3C, 2)])
    } else {
        ObjectProperties::new()
    };
    ObjectDatagram {
        track_alias: 3,
        group_id: 1_000_000,
        object_id: if ty.zero_object_id { 0 } else { 17 },
        publisher_priority: (!ty.default_priority).then_some(7),
        end_of_group: ty.end_of_group,
        status: match (ty.status, ty.properties) {
            (true, false) => ObjectStatus::EndOfTrack,
            _ => ObjectStatus::Normal,
        },
        payload: if ty.status {
            Bytes::new()
        } else {
            Bytes::from_static(b"datagram payload")
        },
        properties,
    }
}

fn sample_fetch() -> Vec<FetchItem> {
    let obj = |g, s, o, p, props: ObjectProperties, payload: &'static [u8]| {
        FetchItem::Object(FetchObject {
            group_id: g,
            subgroup_id: s,
            object_id: o,
            publisher_priority: p,
            properties: props,
            payload: Bytes::from_static(payload),
        })
    };
    vec![
        obj(5, Some(3), 2, 9, ObjectProperties::new(), b"a"), // explicit subgroup, first object
        obj(5, Some(3), 3, 9, ObjectProperties::new(), b"b"), // prior subgroup, follows
        obj(5, Some(4), 8, 9, props(&[(0x3E, 4)]), b""),      // prior+1, object delta, properties
        obj(5, Some(0), 9, 1, ObjectProperties::new(), b"c"), // zero subgroup, priority change
        obj(5, None, 10, 1, ObjectProperties::new(), b"d"),   // datagram
        FetchItem::EndOfRange(EndOfRange {
            kind: RangeKind::NonExistent,
            group_id: 6,
            object_id: 3,
        }),
        obj(8, Some(4), 0, 1, ObjectProperties::new(), b"e"), // group delta, absolute object
        obj(8, Some(4), 1, 1, ObjectProperties::new(), b"f"),
        FetchItem::EndOfRange(EndOfRange {
            kind: RangeKind::Unknown,
            group_id: 9,
            object_id: 0,
        }),
        obj(9, Some(4), 1, 1, ObjectProperties::new(), b"g"), // same group as the range end
    ]
}

// ---------------------------------------------------------------------------------------------
// stream types

#[test]
fn every_stream_type_round_trips() {
    let subgroups: Vec<_> = SubgroupType::all().collect();
    assert_eq!(subgroups.len(), 48, "8 ranges of 6 valid values");
    let mut types = vec![StreamType::Fetch, StreamType::Setup, StreamType::Padding];
    types.extend(subgroups.iter().map(|t| StreamType::Subgroup(*t)));
    for ty in types {
        let bytes = ty.to_bytes(V);
        assert_eq!(StreamType::decode(&mut &bytes[..], V), Ok(ty));
        for cut in 0..bytes.len() {
            assert_eq!(
                StreamType::decode(&mut &bytes[..cut], V),
                Err(DecodeError::Incomplete)
            );
        }
    }
}

#[test]
fn subgroup_type_bits_follow_the_spec() {
    let t = SubgroupType::from_code(0x14).unwrap();
    assert_eq!(t.subgroup_id_mode, SubgroupIdMode::Explicit);
    assert!(!t.properties && !t.end_of_group && !t.default_priority && !t.first_object);
    let t = SubgroupType::from_code(0x7B).unwrap();
    assert_eq!(t.subgroup_id_mode, SubgroupIdMode::FirstObjectId);
    assert!(t.properties && t.end_of_group && t.default_priority && t.first_object);
    assert_eq!(
        SubgroupType::from_code(0x30).unwrap().subgroup_id_mode,
        SubgroupIdMode::Zero
    );
    for code in 0x10..0x80u64 {
        let valid = code & 0x10 != 0 && (code & 0x06) != 0x06;
        assert_eq!(SubgroupType::from_code(code).is_some(), valid, "{code:#x}");
        if let Some(t) = SubgroupType::from_code(code) {
            assert_eq!(t.code(), code);
        }
    }
}

#[test]
fn unknown_stream_types_are_refused() {
    for code in [
        0x00u64,
        0x04,
        0x06,
        0x0F,
        0x16,
        0x17,
        0x1E,
        0x1F,
        0x3F,
        0x5E,
        0x7F,
        0x80,
        0x90,
        0x2F01,
        0x132B_3E29,
        0x9D,
    ] {
        let mut bytes = Vec::new();
        banyan_moq::coding::encode_varint(code, &mut bytes);
        assert_eq!(
            StreamType::decode(&mut &bytes[..], V),
            Err(DecodeError::UnknownStreamType(code)),
            "{code:#x}"
        );
        assert_eq!(
            SubgroupHeader::decode(&mut &bytes[..], V),
            Err(DecodeError::UnknownStreamType(code))
        );
    }
    // Known but wrong kind of stream.
    assert!(matches!(
        SubgroupHeader::decode(&mut &[0x05u8, 0x01][..], V),
        Err(DecodeError::Invalid(_))
    ));
    assert!(matches!(
        FetchHeader::decode(&mut &[0x10u8, 0x01, 0x01, 0x01][..], V),
        Err(DecodeError::Invalid(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// subgroup streams

#[test]
fn every_subgroup_header_type_round_trips_with_objects() {
    for ty in SubgroupType::all() {
        let header = header_for(ty);
        assert_eq!(header.subgroup_type(), ty);
        let objects = objects_for(&header);
        let bytes = encode_subgroup_stream(&header, &objects);
        assert_eq!(bytes.first().copied(), Some(ty.code() as u8));
        let (decoded_header, decoded) = decode_subgroup_stream(&bytes).unwrap();
        assert_eq!(decoded_header, header, "{:#x}", ty.code());
        assert_eq!(decoded, objects, "{:#x}", ty.code());
        assert_eq!(header.encoded_len(), header.to_bytes(V).len());
    }
}

#[test]
fn subgroup_id_resolves_per_mode() {
    for (mode, expect) in [
        (SubgroupIdMode::Zero, Some(0)),
        (SubgroupIdMode::FirstObjectId, Some(4)),
        (SubgroupIdMode::Explicit, Some(300)),
    ] {
        let ty = SubgroupType {
            properties: false,
            subgroup_id_mode: mode,
            end_of_group: false,
            default_priority: true,
            first_object: false,
        };
        let header = header_for(ty);
        let bytes = encode_subgroup_stream(&header, &objects_for(&header));
        let mut buf = Bytes::from(bytes);
        let mut stream = SubgroupStream::new(SubgroupHeader::decode(&mut buf, V).unwrap());
        if mode == SubgroupIdMode::FirstObjectId {
            assert_eq!(stream.subgroup_id(), None);
        }
        stream.decode_object_header(&mut buf, V).unwrap();
        assert_eq!(stream.subgroup_id(), expect);
    }
}

#[test]
fn every_strict_prefix_of_a_subgroup_header_or_object_is_incomplete() {
    for ty in SubgroupType::all() {
        let header = header_for(ty);
        let bytes = header.to_bytes(V);
        for cut in 0..bytes.len() {
            assert_eq!(
                SubgroupHeader::decode(&mut &bytes[..cut], V),
                Err(DecodeError::Incomplete),
                "{:#x} cut {cut}",
                ty.code()
            );
        }
        let mut prev = None;
        for object in objects_for(&header) {
            let mut enc = Vec::new();
            object.header().encode(&mut enc, &header, prev, V).unwrap();
            assert_eq!(enc.len(), object.header().encoded_len(&header, prev));
            for cut in 0..enc.len() {
                let mut stream = SubgroupStream::new(header.clone());
                assert_eq!(
                    SubgroupObjectHeader::decode(&mut &enc[..cut], &header, prev, V),
                    Err(DecodeError::Incomplete)
                );
                if prev.is_none() {
                    assert_eq!(
                        stream.decode_object_header(&mut &enc[..cut], V),
                        Err(DecodeError::Incomplete)
                    );
                    assert_eq!(stream.prev_object_id(), None, "no state change on Incomplete");
                }
            }
            // Whole object with payload: every cut inside the payload is also Incomplete.
            let mut whole = Vec::new();
            object.encode(&mut whole, &header, prev, V).unwrap();
            for cut in enc.len()..whole.len() {
                assert_eq!(
                    SubgroupObject::decode(&mut &whole[..cut], &header, prev, LIMIT, V),
                    Err(DecodeError::Incomplete)
                );
            }
            prev = Some(object.object_id);
        }
    }
}

#[test]
fn payload_length_above_a_limit_is_detected_from_the_header_alone() {
    let header = header_for(SubgroupType::from_code(0x10).unwrap());
    // Object 0 claiming 1 TiB of payload, with none of it present.
    let mut bytes = vec![0x00];
    banyan_moq::coding::encode_varint(1 << 40, &mut bytes);
    let mut stream = SubgroupStream::new(header.clone());
    let fields = stream.decode_object_header(&mut &bytes[..], V).unwrap();
    assert_eq!(fields.payload_len, 1 << 40);
    assert!(matches!(
        SubgroupObject::decode(&mut &bytes[..], &header, None, LIMIT, V),
        Err(DecodeError::TooLarge { size, .. }) if size == 1 << 40
    ));

    // Fetch: flags 0x1c, group 0, object 0, priority 0, then the huge length.
    let mut bytes = vec![0x1c, 0x00, 0x00, 0x00];
    banyan_moq::coding::encode_varint(1 << 40, &mut bytes);
    let record = FetchStream::new(FetchGroupOrder::Ascending)
        .decode_record(&mut &bytes[..], V)
        .unwrap();
    assert!(matches!(record, FetchRecord::Object(ref h) if h.payload_len == 1 << 40));
    assert!(matches!(
        FetchStream::new(FetchGroupOrder::Ascending).decode_item(&mut &bytes[..], LIMIT, V),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn subgroup_objects_with_each_status() {
    let header = header_for(SubgroupType::from_code(0x11).unwrap());
    for status in [
        ObjectStatus::Normal,
        ObjectStatus::EndOfGroup,
        ObjectStatus::EndOfTrack,
    ] {
        let object = SubgroupObject::with_status(3, status);
        let bytes = encode_subgroup_stream(&header, std::slice::from_ref(&object));
        let (_, decoded) = decode_subgroup_stream(&bytes).unwrap();
        assert_eq!(decoded, vec![object]);
    }
    for code in [0x1u64, 0x2, 0x5, 0x9D] {
        let mut bytes = vec![0x00, 0x00, 0x00];
        banyan_moq::coding::encode_varint(code, &mut bytes);
        assert_eq!(
            SubgroupObjectHeader::decode(&mut &bytes[..], &header, None, V),
            Err(DecodeError::Invalid("object status"))
        );
    }
}

#[test]
fn subgroup_protocol_violations_are_refused() {
    let with_props = header_for(SubgroupType::from_code(0x11).unwrap());
    // Properties on an End of Group object.
    let bytes = [0x00, 0x02, 0x3C, 0x01, 0x00, 0x03];
    assert!(matches!(
        SubgroupObjectHeader::decode(&mut &bytes[..], &with_props, None, V),
        Err(DecodeError::Invalid(_))
    ));
    // Object ID overflow.
    let plain = header_for(SubgroupType::from_code(0x10).unwrap());
    let bytes = [0x00, 0x01, 0xAA];
    assert!(matches!(
        SubgroupObjectHeader::decode(&mut &bytes[..], &plain, Some(u64::MAX), V),
        Err(DecodeError::Invalid(_))
    ));
    // An object after End of Group on the same stream.
    let bytes = [0x00, 0x00, 0x03, 0x00, 0x01, 0xAA];
    let mut stream = SubgroupStream::new(plain.clone());
    let mut cursor = &bytes[..];
    assert_eq!(
        stream.decode_object_header(&mut cursor, V).unwrap().status,
        ObjectStatus::EndOfGroup
    );
    assert!(stream.is_ended());
    assert!(matches!(
        stream.decode_object_header(&mut cursor, V),
        Err(DecodeError::Invalid(_))
    ));
    // Properties length above the cap is refused before buffering.
    let mut bytes = vec![0x00];
    banyan_moq::coding::encode_varint(1 << 30, &mut bytes);
    assert!(matches!(
        SubgroupObjectHeader::decode(&mut &bytes[..], &with_props, None, V),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn subgroup_encode_refuses_what_the_wire_cannot_say() {
    let plain = header_for(SubgroupType::from_code(0x10).unwrap());
    let mut out = Vec::new();
    let object = SubgroupObject::new(3, &b"x"[..]);
    assert!(matches!(
        object.encode(&mut out, &plain, Some(3), V),
        Err(EncodeError::Invalid(_))
    ));
    let with_props = SubgroupObject {
        properties: props(&[(0x3C, 1)]),
        ..object.clone()
    };
    assert!(matches!(
        with_props.encode(&mut out, &plain, None, V),
        Err(EncodeError::Invalid(_))
    ));
    let bad_status = SubgroupObject {
        status: ObjectStatus::EndOfTrack,
        ..object
    };
    assert!(matches!(
        bad_status.encode(&mut out, &plain, None, V),
        Err(EncodeError::Invalid(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// fetch streams

#[test]
fn fetch_stream_round_trips_in_both_orders() {
    let header = FetchHeader { request_id: 42 };
    let items = sample_fetch();
    let bytes = encode_fetch_stream(&header, &items, FetchGroupOrder::Ascending);
    let (h, decoded) = decode_fetch_stream(&bytes, FetchGroupOrder::Ascending).unwrap();
    assert_eq!(h, header);
    assert_eq!(decoded, items);
    assert_eq!(header.encoded_len(), header.to_bytes(V).len());

    // Descending: reverse the group numbers.
    let flip = |g: u64| 100 - g;
    let desc: Vec<_> = items
        .iter()
        .map(|i| match i.clone() {
            FetchItem::Object(mut o) => {
                o.group_id = flip(o.group_id);
                FetchItem::Object(o)
            }
            FetchItem::EndOfRange(mut e) => {
                e.group_id = flip(e.group_id);
                FetchItem::EndOfRange(e)
            }
        })
        .collect();
    let bytes = encode_fetch_stream(&header, &desc, FetchGroupOrder::Descending);
    assert_eq!(
        decode_fetch_stream(&bytes, FetchGroupOrder::Descending)
            .unwrap()
            .1,
        desc
    );
    // The same bytes read in the other order mean other groups: the order matters.
    assert_ne!(
        decode_fetch_stream(&bytes, FetchGroupOrder::Ascending)
            .ok()
            .map(|d| d.1),
        Some(desc)
    );
}

#[test]
fn fetch_flags_cover_every_bit() {
    let items = sample_fetch();
    let mut stream = FetchStream::new(FetchGroupOrder::Ascending);
    let mut seen = 0u64;
    let mut codes = Vec::new();
    for item in &items {
        let mut out = Vec::new();
        stream.encode_item(item, &mut out, V).unwrap();
        let flags = banyan_moq::coding::decode_varint(&mut &out[..]).unwrap();
        if flags < 0x80 {
            seen |= flags;
            codes.push(flags & fetch_flags::SUBGROUP_MASK);
        } else {
            codes.push(flags);
        }
    }
    assert_eq!(seen, 0x7F, "every flag bit used at least once");
    for mode in 0..4 {
        assert!(codes.contains(&mode), "subgroup mode {mode}");
    }
    assert!(codes.contains(&END_OF_NON_EXISTENT_RANGE) && codes.contains(&END_OF_UNKNOWN_RANGE));
}

#[test]
fn every_strict_prefix_of_a_fetch_record_is_incomplete() {
    let header = FetchHeader { request_id: 300 };
    let bytes = header.to_bytes(V);
    for cut in 0..bytes.len() {
        assert_eq!(
            FetchHeader::decode(&mut &bytes[..cut], V),
            Err(DecodeError::Incomplete)
        );
    }
    let mut enc_state = FetchStream::new(FetchGroupOrder::Ascending);
    for item in sample_fetch() {
        let before = enc_state;
        let mut out = Vec::new();
        enc_state.encode_item(&item, &mut out, V).unwrap();
        let payload_len = match &item {
            FetchItem::Object(o) => o.payload.len(),
            FetchItem::EndOfRange(_) => 0,
        };
        for cut in 0..out.len() {
            let mut dec = before;
            let full = dec.decode_item(&mut &out[..cut], LIMIT, V);
            assert_eq!(full, Err(DecodeError::Incomplete), "cut {cut} of {item:?}");
            assert_eq!(dec, before, "no state change on Incomplete");
            if cut < out.len() - payload_len {
                let mut dec = before;
                assert_eq!(
                    dec.decode_record(&mut &out[..cut], V),
                    Err(DecodeError::Incomplete)
                );
            }
        }
    }
}

#[test]
fn fetch_protocol_violations_are_refused() {
    let invalid = |bytes: &[u8]| {
        let mut s = FetchStream::new(FetchGroupOrder::Ascending);
        matches!(s.decode_record(&mut &bytes[..], V), Err(DecodeError::Invalid(_)))
    };
    // First object without Group ID Delta / Object ID Delta / priority / with prior subgroup.
    assert!(invalid(&[0x14, 0x00, 0x00, 0x00])); // no group
    assert!(invalid(&[0x18, 0x00, 0x00, 0x00])); // no object
    assert!(invalid(&[0x0C, 0x00, 0x00, 0x00])); // no priority
    assert!(invalid(&[0x1D, 0x00, 0x00, 0x00, 0x00])); // prior subgroup
    assert!(invalid(&[0x1E, 0x00, 0x00, 0x00, 0x00])); // prior subgroup + 1
                                                       // Serialization flags of 128 or more other than the two End of Range values.
    assert!(invalid(&[0x80, 0x80]));
    assert!(invalid(&[0x80, 0x8D, 0x00, 0x00]));
    // Prior subgroup after a datagram object (flags 0x5c: datagram, group, object, priority).
    let bytes = [0x5C, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00];
    let mut s = FetchStream::new(FetchGroupOrder::Ascending);
    let mut c = &bytes[..];
    s.decode_record(&mut c, V).unwrap();
    assert!(matches!(s.decode_record(&mut c, V), Err(DecodeError::Invalid(_))));
    // Prior subgroup after an End of Range with no object before it.
    let bytes = [0x80, 0x8C, 0x00, 0x00, 0x11, 0x00];
    let mut s = FetchStream::new(FetchGroupOrder::Ascending);
    let mut c = &bytes[..];
    s.decode_record(&mut c, V).unwrap();
    assert!(matches!(s.decode_record(&mut c, V), Err(DecodeError::Invalid(_))));
    // Descending below group 0.
    let bytes = [0x1C, 0x01, 0x00, 0x00, 0x00, 0x08, 0x01, 0x00];
    let mut s = FetchStream::new(FetchGroupOrder::Descending);
    let mut c = &bytes[..];
    s.decode_record(&mut c, V).unwrap();
    assert!(matches!(s.decode_record(&mut c, V), Err(DecodeError::Invalid(_))));
    // Encoding against the order is refused.
    let mut s = FetchStream::new(FetchGroupOrder::Ascending);
    let obj = |g| {
        FetchRecord::Object(FetchObjectHeader {
            group_id: g,
            ..FetchObjectHeader::default()
        })
    };
    s.encode_record(&obj(5), &mut Vec::new(), V).unwrap();
    assert!(matches!(
        s.encode_record(&obj(4), &mut Vec::new(), V),
        Err(EncodeError::Invalid(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// datagrams

#[test]
fn every_datagram_type_round_trips() {
    let types: Vec<_> = DatagramType::all().collect();
    assert_eq!(types.len(), 24);
    for ty in types {
        let datagram = datagram_for(ty);
        assert_eq!(datagram.datagram_type(), Ok(ty));
        let bytes = datagram.to_bytes(V).unwrap();
        assert_eq!(bytes.first().copied(), Some(ty.code() as u8));
        assert_eq!(ObjectDatagram::decode(bytes.clone(), V), Ok(datagram.clone()));
        assert_eq!(Datagram::decode(bytes.clone(), V), Ok(Datagram::Object(datagram)));
        // Truncation is malformed, never "need more".
        for cut in 0..bytes.len() {
            let result = ObjectDatagram::decode(bytes.slice(..cut), V);
            assert_ne!(result, Err(DecodeError::Incomplete));
        }
    }
}

#[test]
fn datagram_payload_is_zero_copy() {
    let datagram = datagram_for(DatagramType::from_code(0x00).unwrap());
    let bytes = datagram.to_bytes(V).unwrap();
    let decoded = ObjectDatagram::decode(bytes.clone(), V).unwrap();
    let offset = bytes.len() - decoded.payload.len();
    assert_eq!(decoded.payload.as_ptr(), bytes[offset..].as_ptr());
}

#[test]
fn invalid_datagrams_are_refused() {
    for code in [
        0x22u64,
        0x23,
        0x26,
        0x27,
        0x2A,
        0x2B,
        0x2E,
        0x2F,
        0x10,
        0x30,
        0x40,
        0x50,
        0x132B_3E28,
    ] {
        let mut bytes = Vec::new();
        banyan_moq::coding::encode_varint(code, &mut bytes);
        bytes.extend_from_slice(&[0x01, 0x02, 0x03, 0x04]);
        assert_eq!(
            ObjectDatagram::decode(Bytes::from(bytes.clone()), V),
            Err(DecodeError::UnknownDatagramType(code))
        );
        assert_eq!(
            Datagram::decode(Bytes::from(bytes), V),
            Err(DecodeError::UnknownDatagramType(code))
        );
    }
    let invalid = |bytes: &'static [u8]| {
        matches!(
            ObjectDatagram::decode(Bytes::from_static(bytes), V),
            Err(DecodeError::Invalid(_))
        )
    };
    assert!(invalid(&[0x01, 0x01, 0x02, 0x03, 0x80, 0x00, 0x68])); // PROPERTIES with length 0
    assert!(invalid(&[0x21, 0x01, 0x02, 0x03, 0x80, 0x02, 0x38, 0x07, 0x03])); // props + End of Group
    assert!(invalid(&[0x20, 0x01, 0x02, 0x03, 0x80, 0x03, 0x00])); // bytes after the status
    assert!(invalid(&[0x00, 0x01, 0x02, 0x03, 0x80])); // payload type, empty payload
    assert!(invalid(&[0x20, 0x01, 0x02, 0x03, 0x80, 0x01])); // unknown status
    assert!(invalid(&[0x00, 0x01])); // truncated
                                     // Fields that cannot be sent.
    let mut d = datagram_for(DatagramType::from_code(0x20).unwrap());
    d.end_of_group = true;
    assert!(matches!(d.to_bytes(V), Err(EncodeError::Invalid(_))));
}

// ---------------------------------------------------------------------------------------------
// object properties and padding

#[test]
fn object_properties_helpers_and_track_rules() {
    let loc = Location::new(10, 5);
    let p = props(&[(0x3C, 2), (0x3E, 5)]);
    assert_eq!(p.prior_group_id_gap(), Ok(Some(2)));
    assert_eq!(p.prior_object_id_gap(), Ok(Some(5)));
    assert_eq!(p.validate(loc), Ok(()));
    assert!(matches!(
        props(&[(0x3E, 6)]).validate(loc),
        Err(PropertyError::GapTooLarge { .. })
    ));
    assert_eq!(
        props(&[(0x3C, 1), (0x3C, 1)]).prior_group_id_gap(),
        Err(PropertyError::Duplicate(0x3C))
    );
    assert_eq!(
        props(&[(0x4000, 1)]).validate(loc),
        Err(PropertyError::MandatoryTrackProperty(0x4000))
    );

    // Immutable Properties: searched alongside the mutable list, never nested, never twice.
    let mut inner = Vec::new();
    props(&[(0x3C, 1)]).0.encode_all(&mut inner, V);
    let immutable: ObjectProperties = [KeyValuePair::bytes(0x0B, inner.clone()).unwrap()]
        .into_iter()
        .collect();
    assert_eq!(immutable.prior_group_id_gap(), Ok(Some(1)));
    let both = immutable.clone().with_prior_group_id_gap(1);
    assert_eq!(both.prior_group_id_gap(), Err(PropertyError::Duplicate(0x3C)));
    let mut nested = Vec::new();
    immutable.0.encode_all(&mut nested, V);
    let nested: ObjectProperties = [KeyValuePair::bytes(0x0B, nested).unwrap()].into_iter().collect();
    assert_eq!(nested.validate(loc), Err(PropertyError::NestedImmutable));
    let twice: ObjectProperties = [
        KeyValuePair::bytes(0x0B, inner.clone()).unwrap(),
        KeyValuePair::bytes(0x0B, inner).unwrap(),
    ]
    .into_iter()
    .collect();
    assert_eq!(twice.validate(loc), Err(PropertyError::Duplicate(0x0B)));
    assert_eq!(
        PropertyError::NestedImmutable.reset_code(),
        banyan_moq::coding::StreamResetCode::MalformedTrack
    );
    assert!(
        property_type::is_grease(0x9D) && property_type::is_grease(0x11C) && !property_type::is_grease(0x9E)
    );

    // Round trip and prefixes.
    let bytes = p.to_bytes(V);
    assert_eq!(bytes.len(), p.encoded_len());
    assert_eq!(ObjectProperties::decode(&mut bytes.clone(), V), Ok(p));
    for cut in 0..bytes.len() {
        assert_eq!(
            ObjectProperties::decode(&mut &bytes[..cut], V),
            Err(DecodeError::Incomplete)
        );
    }
}

#[test]
fn padding_round_trips_and_refuses_non_zero_bytes() {
    let stream = PaddingStream { padding_len: 1000 };
    let mut bytes = Vec::new();
    stream.encode(&mut bytes, V);
    assert_eq!(StreamType::decode(&mut &bytes[..], V), Ok(StreamType::Padding));
    assert_eq!(PaddingStream::decode(&mut &bytes[..], V), Ok(stream));
    bytes.push(1);
    assert!(matches!(
        PaddingStream::decode(&mut &bytes[..], V),
        Err(DecodeError::Invalid(_))
    ));

    let datagram = PaddingDatagram { padding_len: 64 };
    let mut bytes = BytesMut::new();
    datagram.encode(&mut bytes, V);
    let bytes = bytes.freeze();
    assert_eq!(PaddingDatagram::decode(bytes.clone(), V), Ok(datagram.clone()));
    assert_eq!(Datagram::decode(bytes, V), Ok(Datagram::Padding(datagram)));
}

// ---------------------------------------------------------------------------------------------
// spec examples and shared vectors

#[test]
fn spec_example_one_encodes_as_in_the_spec() {
    let header = SubgroupHeader {
        track_alias: 2,
        group_id: 0,
        subgroup_id: SubgroupId::Explicit(0),
        publisher_priority: Some(0),
        properties: false,
        end_of_group: false,
        first_object: false,
    };
    assert_eq!(header.subgroup_type().code(), 0x14);
    let objects = [
        SubgroupObject::new(0, &b"abcd"[..]),
        SubgroupObject::new(1, &b"efgh"[..]),
    ];
    assert_eq!(
        encode_subgroup_stream(&header, &objects),
        hex("1402000000000461626364000465666768")
    );
}

#[test]
fn spec_example_two_encodes_with_draft_18_varints() {
    let header = SubgroupHeader {
        track_alias: 2,
        group_id: 0,
        subgroup_id: SubgroupId::Explicit(0),
        publisher_priority: None,
        properties: true,
        end_of_group: false,
        first_object: false,
    };
    assert_eq!(header.subgroup_type().code(), 0x35);
    let properties: ObjectProperties = [
        KeyValuePair::varint(4, 2_186_796_243).unwrap(),
        KeyValuePair::bytes(77, &b"traceID:123456"[..]).unwrap(),
    ]
    .into_iter()
    .collect();
    let objects = [
        SubgroupObject {
            properties,
            ..SubgroupObject::new(0, &b"abcd"[..])
        },
        SubgroupObject::new(1, &b"efgh"[..]),
    ];
    assert_eq!(
        encode_subgroup_stream(&header, &objects),
        hex("35020000001604f08257dcd3490e747261636549443a313233343536046162636400000465666768")
    );
}

/// One entry of `vectors/data.json`.
struct Vector {
    name: String,
    kind: String,
    hex: String,
}

fn load_vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/data.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let field =
        |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_else(|| panic!("missing {k}")).to_owned();
    json.as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert!(!field(v, "fields").is_empty());
            Vector {
                name: field(v, "name"),
                kind: field(v, "kind"),
                hex: field(v, "hex"),
            }
        })
        .collect()
}

#[test]
fn shared_vectors_decode_and_re_encode() {
    let vectors = load_vectors();
    assert!(vectors.len() >= 20);
    for vector in vectors {
        let bytes = hex(&vector.hex);
        let name = &vector.name;
        let again = match vector.kind.as_str() {
            "stream_type" => StreamType::decode(&mut &bytes[..], V)
                .unwrap()
                .to_bytes(V)
                .to_vec(),
            "subgroup_stream" => {
                let (header, objects) =
                    decode_subgroup_stream(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                encode_subgroup_stream(&header, &objects)
            }
            "fetch_stream" | "fetch_stream_descending" => {
                let order = if vector.kind == "fetch_stream" {
                    FetchGroupOrder::Ascending
                } else {
                    FetchGroupOrder::Descending
                };
                let (header, items) =
                    decode_fetch_stream(&bytes, order).unwrap_or_else(|e| panic!("{name}: {e}"));
                encode_fetch_stream(&header, &items, order)
            }
            "object_datagram" => ObjectDatagram::decode(Bytes::from(bytes.clone()), V)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .to_bytes(V)
                .unwrap()
                .to_vec(),
            "padding_stream" => {
                let mut out = Vec::new();
                PaddingStream::decode(&mut &bytes[..], V)
                    .unwrap()
                    .encode(&mut out, V);
                out
            }
            "padding_datagram" => {
                let mut out = Vec::new();
                PaddingDatagram::decode(Bytes::from(bytes.clone()), V)
                    .unwrap()
                    .encode(&mut out, V);
                out
            }
            other => panic!("unknown vector kind {other}"),
        };
        assert_eq!(again, bytes, "{name}");
    }
}

#[test]
fn vectors_mean_what_their_descriptions_say() {
    // Spot checks of decoded fields for a few vectors, beyond byte equality.
    let (header, objects) = decode_subgroup_stream(&hex("3b010a05023e0201780000000000000004")).unwrap();
    assert_eq!(header.subgroup_id, SubgroupId::FirstObjectId);
    assert!(header.end_of_group && header.publisher_priority.is_none());
    assert_eq!(objects.iter().map(|o| o.object_id).collect::<Vec<_>>(), [5, 6, 7]);
    assert_eq!(objects[0].properties.prior_object_id_gap(), Ok(Some(2)));
    assert_eq!(objects[1].status, ObjectStatus::Normal);
    assert!(objects[1].payload.is_empty());
    assert_eq!(objects[2].status, ObjectStatus::EndOfTrack);

    let (_, objects) = decode_subgroup_stream(
        &hex("110406200004" /* header + obj 0 */)
            .iter()
            .copied()
            .chain(hex("0b023c01026f6b"))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(objects[0].properties.prior_group_id_gap(), Ok(Some(1)));
    assert!(matches!(
        objects[0].properties.get(0x0B),
        Some(KvpValue::Bytes(_))
    ));

    let (_, items) = decode_fetch_stream(
        &hex(
            "05071c020080016100016222023c0100150340016380 8c03040f0107000164400165810c0600"
                .replace(' ', "")
                .as_str(),
        ),
        FetchGroupOrder::Ascending,
    )
    .unwrap();
    let locations: Vec<_> = items
        .iter()
        .map(|i| match i {
            FetchItem::Object(o) => (o.group_id, o.subgroup_id, o.object_id),
            FetchItem::EndOfRange(e) => (e.group_id, None, e.object_id),
        })
        .collect();
    assert_eq!(
        locations,
        [
            (2, Some(0), 0),
            (2, Some(0), 1),
            (2, Some(1), 2),
            (2, Some(1), 5),
            (3, None, 4),
            (5, Some(7), 0),
            (5, None, 1),
            (6, None, 0),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// properties: arbitrary input never panics; arbitrary valid streams round-trip

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes: Vec<u8>, type_code in 0x10u64..0x80) {
        let b = Bytes::from(bytes.clone());
        let _ = StreamType::decode(&mut &bytes[..], V);
        let _ = SubgroupHeader::decode(&mut &bytes[..], V);
        let _ = FetchHeader::decode(&mut &bytes[..], V);
        let _ = PaddingStream::decode(&mut &bytes[..], V);
        let _ = ObjectDatagram::decode(b.clone(), V);
        let _ = Datagram::decode(b.clone(), V);
        let _ = PaddingDatagram::decode(b.clone(), V);
        if let Ok(p) = ObjectProperties::decode(&mut &bytes[..], V) {
            let _ = p.validate(Location::new(1, 1));
            let _ = p.immutable();
        }
        if let Some(ty) = SubgroupType::from_code(type_code) {
            let mut buf = b.clone();
            if let Ok(header) = SubgroupHeader::decode_after_type(ty, &mut buf, V) {
                let mut stream = SubgroupStream::new(header);
                while let Ok(h) = stream.decode_object_header(&mut buf, V) {
                    if h.payload_len > buf.len() as u64 { break; }
                    let _ = buf.split_to(h.payload_len as usize);
                }
            }
        }
        for order in [FetchGroupOrder::Ascending, FetchGroupOrder::Descending] {
            let mut buf = b.clone();
            let mut stream = FetchStream::new(order);
            while stream.decode_item(&mut buf, LIMIT, V).is_ok() {}
        }
    }

    #[test]
    fn arbitrary_fetch_sequences_round_trip(
        steps in proptest::collection::vec((0u64..3, 0u64..4, 0u8..3, 0u8..6, any::<bool>(), 0usize..3), 1..40),
        descending: bool,
    ) {
        let order = if descending { FetchGroupOrder::Descending } else { FetchGroupOrder::Ascending };
        let mut group = if descending { 1000 } else { 0 };
        let mut object = 0u64;
        let mut items = Vec::new();
        for (i, (group_step, object_step, priority, subgroup, with_props, kind)) in steps.into_iter().enumerate() {
            if i > 0 && group_step > 0 {
                group = if descending { group - group_step } else { group + group_step };
                object = object_step;
            } else if i > 0 {
                object += object_step;
            } else {
                object = object_step;
            }
            if kind == 2 && i > 0 {
                items.push(FetchItem::EndOfRange(EndOfRange { kind: RangeKind::Unknown, group_id: group, object_id: object }));
                continue;
            }
            items.push(FetchItem::Object(FetchObject {
                group_id: group,
                subgroup_id: (subgroup < 5).then_some(u64::from(subgroup)),
                object_id: object,
                publisher_priority: priority,
                properties: if with_props { props(&[(0x3E, 1)]) } else { ObjectProperties::new() },
                payload: Bytes::from(vec![1u8; kind]),
            }));
        }
        let header = FetchHeader { request_id: 9 };
        let bytes = encode_fetch_stream(&header, &items, order);
        let (_, decoded) = decode_fetch_stream(&bytes, order).unwrap();
        prop_assert_eq!(decoded, items);
    }

    #[test]
    fn arbitrary_subgroup_objects_round_trip(
        type_code in 0x10u64..0x80,
        gaps in proptest::collection::vec((0u64..1000, 0usize..40, any::<bool>()), 1..20),
    ) {
        if let Some(ty) = SubgroupType::from_code(type_code) {
            let header = header_for(ty);
            let mut id = 0u64;
            let objects: Vec<_> = gaps.into_iter().enumerate().map(|(i, (gap, len, with_props))| {
                id = if i == 0 { gap } else { id + gap + 1 };
                SubgroupObject {
                    properties: if with_props && header.properties { props(&[(0x38, gap)]) } else { ObjectProperties::new() },
                    ..SubgroupObject::new(id, vec![0xAB; len])
                }
            }).collect();
            let bytes = encode_subgroup_stream(&header, &objects);
            let (h, decoded) = decode_subgroup_stream(&bytes).unwrap();
            prop_assert_eq!(h, header);
            prop_assert_eq!(decoded, objects);
        }
    }
}
