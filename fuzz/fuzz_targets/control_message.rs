//! Arbitrary bytes into the control-message decoders: framing (`Message::decode_frame`, over
//! both a slice and a `Bytes` cursor, with a small and the full size limit) and the SETUP
//! payload decoder. Nothing may panic; whatever decodes must re-encode and decode to itself.
#![no_main]

use banyan_moq::coding::{Decode, Encode};
use banyan_moq::message::{Message, Setup, MAX_MESSAGE_SIZE};
use banyan_moq::Version;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let version = Version::Draft18;

    // A stream of frames, as a control or request stream would carry them.
    let mut cursor = data;
    while let Ok(message) = Message::decode_frame(&mut cursor, version, MAX_MESSAGE_SIZE) {
        let frame = message.to_frame(version).expect("a decoded message fits in a frame");
        let again = Message::decode_frame(&mut &frame[..], version, MAX_MESSAGE_SIZE);
        assert_eq!(again.as_ref(), Ok(&message), "re-encoding changed {}", message.name());
    }

    // The zero-copy cursor and a tight limit.
    let mut bytes = Bytes::copy_from_slice(data);
    let _ = Message::decode_frame(&mut bytes, version, 64);

    // The SETUP payload decoder on its own (the control stream's first message).
    if let Ok(setup) = Setup::decode(&mut &data[..], version) {
        let wire = setup.to_bytes(version);
        assert_eq!(Setup::decode(&mut &wire[..], version).ok(), Some(setup));
    }
});
