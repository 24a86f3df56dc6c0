//! Fuzz datagrams: any input decodes or is refused as malformed (never "need more bytes"), and
//! a decoded OBJECT_DATAGRAM re-encodes to a datagram that decodes to the same object.
#![no_main]

use banyan_moq::coding::DecodeError;
use banyan_moq::data::{Datagram, ObjectDatagram};
use banyan_moq::Version;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const V: Version = Version::Draft18;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let _ = Datagram::decode(bytes.clone(), V);
    match ObjectDatagram::decode(bytes, V) {
        Ok(datagram) => {
            let Ok(wire) = datagram.to_bytes(V) else {
                panic!("decoded datagram does not encode: {datagram:?}");
            };
            assert_eq!(ObjectDatagram::decode(wire, V), Ok(datagram));
        }
        Err(DecodeError::Incomplete) => panic!("a datagram never needs more bytes"),
        Err(_) => {}
    }
});
