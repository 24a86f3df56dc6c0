//! Fuzz a fetch stream: FETCH_HEADER, then records in a loop in the group order chosen by the
//! first byte; "need more bytes" must not change state, and decoded items must re-encode and
//! decode to the same items.
#![no_main]

use banyan_moq::coding::{Decode, DecodeError};
use banyan_moq::data::{FetchGroupOrder, FetchHeader, FetchStream};
use banyan_moq::Version;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

const V: Version = Version::Draft18;
const MAX_PAYLOAD: u64 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&order, data)) = data.split_first() else {
        return;
    };
    let order = if order & 1 == 0 {
        FetchGroupOrder::Ascending
    } else {
        FetchGroupOrder::Descending
    };
    let mut buf = Bytes::copy_from_slice(data);
    if FetchHeader::decode(&mut buf, V).is_err() {
        return;
    }
    let mut stream = FetchStream::new(order);
    let mut items = Vec::new();
    loop {
        let before = stream;
        match stream.decode_item(&mut buf, MAX_PAYLOAD, V) {
            Ok(item) => items.push(item),
            Err(DecodeError::Incomplete) => {
                assert_eq!(stream, before, "state changed on Incomplete");
                break;
            }
            Err(_) => break,
        }
    }
    // Canonical re-encoding decodes to the same items (encoding may legitimately refuse
    // sequences it cannot express, e.g. an object going backwards within a group).
    let mut out = BytesMut::new();
    let mut encoder = FetchStream::new(order);
    for item in &items {
        if encoder.encode_item(item, &mut out, V).is_err() {
            return;
        }
    }
    let mut out = out.freeze();
    let mut decoder = FetchStream::new(order);
    for item in &items {
        match decoder.decode_item(&mut out, MAX_PAYLOAD, V) {
            Ok(again) => assert_eq!(&again, item),
            Err(e) => panic!("re-encoded fetch stream does not decode: {e}"),
        }
    }
});
