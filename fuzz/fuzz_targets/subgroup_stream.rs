//! Fuzz a subgroup stream: stream type, SUBGROUP_HEADER, then objects header-first in a loop,
//! cross-checked against the one-shot object decoder; "need more bytes" must not change state.
#![no_main]

use banyan_moq::coding::{Decode, DecodeError};
use banyan_moq::data::{StreamType, SubgroupHeader, SubgroupObject, SubgroupStream};
use banyan_moq::Version;
use bytes::{Buf, Bytes};
use libfuzzer_sys::fuzz_target;

const V: Version = Version::Draft18;
const MAX_PAYLOAD: u64 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let mut buf = Bytes::copy_from_slice(data);
    let Ok(StreamType::Subgroup(ty)) = StreamType::decode(&mut buf, V) else {
        return;
    };
    let Ok(header) = SubgroupHeader::decode_after_type(ty, &mut buf, V) else {
        return;
    };
    let mut stream = SubgroupStream::new(header);
    loop {
        let before = stream.clone();
        let one_shot = SubgroupObject::decode(
            &mut buf.clone(),
            &stream.header,
            stream.prev_object_id(),
            MAX_PAYLOAD,
            V,
        );
        let mut cursor = buf.clone();
        match stream.decode_object_header(&mut cursor, V) {
            Ok(fields) => {
                let Ok(len) = usize::try_from(fields.payload_len) else {
                    return;
                };
                if fields.payload_len > MAX_PAYLOAD || cursor.remaining() < len {
                    return;
                }
                let payload = cursor.copy_to_bytes(len);
                let Ok(object) = one_shot else {
                    panic!("one-shot decoder disagrees: {one_shot:?}");
                };
                assert_eq!(object.object_id, fields.object_id);
                assert_eq!(object.payload, payload);
                buf = cursor;
            }
            Err(DecodeError::Incomplete) => {
                assert_eq!(stream, before, "state changed on Incomplete");
                return;
            }
            Err(_) => return,
        }
    }
});
