//! Proves the draft-18 control-message codec: every message type round-trips with non-trivial
//! fields, hand-derived byte vectors (moq/vectors/control.json) decode and re-encode exactly,
//! every truncated frame is "need more bytes", and malformed frames (oversized, unknown type,
//! length mismatch, disallowed/duplicate/unknown parameters, bad enum values) are refused
//! without panicking, including under arbitrary input.

// Test helpers outside `#[test]` functions unwrap known-good fixtures.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use banyan_moq::coding::{
    encode_varint, DecodeError, Encode, KeyValuePair, KeyValuePairs, Location, PublishDoneCode, ReasonPhrase,
    RequestErrorCode, TrackName, TrackNamespace,
};
use banyan_moq::message::*;
use banyan_moq::Version;
use bytes::{BufMut, Bytes};
use proptest::prelude::*;

const V: Version = Version::Draft18;

fn ns(path: &str) -> TrackNamespace {
    TrackNamespace::from_path(path).unwrap()
}

fn props(pairs: &[(u64, u64)]) -> KeyValuePairs {
    pairs
        .iter()
        .map(|&(k, v)| KeyValuePair::varint(k, v).unwrap())
        .collect()
}

fn full_params() -> Parameters {
    Parameters {
        authorization_tokens: vec![
            Token::UseValue {
                token_type: 1,
                token_value: Bytes::from_static(b"eyJhbGciOi"),
            },
            Token::Register {
                token_alias: 3,
                token_type: 0x9d,
                token_value: Bytes::from_static(b"cat"),
            },
        ],
        ..Parameters::default()
    }
}

/// One value of every message type, with non-trivial fields.
fn every_message() -> Vec<Message> {
    let subscribe_params = Parameters {
        object_delivery_timeout: Some(250),
        rendezvous_timeout: Some(10_000),
        subgroup_delivery_timeout: Some(1_000),
        forward: Some(false),
        subscriber_priority: Some(200),
        subscription_filter: Some(SubscriptionFilter::AbsoluteRange {
            start_location: Location::new(100, 3),
            end_group_delta: 20,
        }),
        group_order: Some(GroupOrder::Descending),
        new_group_request: Some(101),
        ..full_params()
    };
    vec![
        Setup {
            path: Some("/live?room=9".into()),
            authorization_tokens: vec![Token::Register {
                token_alias: 1,
                token_type: 1,
                token_value: Bytes::from_static(b"token"),
            }],
            max_auth_token_cache_size: Some(1 << 20),
            authority: Some("relay.example:443".into()),
            moqt_implementation: Some(Bytes::from_static(b"banyan/0.1.0")),
            hop_id: None,
            unknown_options: [
                KeyValuePair::bytes(0x9d, &b"grease"[..]).unwrap(),
                KeyValuePair::varint(0x11c, 7).unwrap(),
            ]
            .into_iter()
            .collect(),
        }
        .into(),
        Goaway {
            new_session_uri: "moqt://edge-7.example/live".into(),
            timeout: 30_000,
            request_id: Some(42),
        }
        .into(),
        Goaway {
            new_session_uri: String::new(),
            timeout: 0,
            request_id: None,
        }
        .into(),
        RequestOk {
            parameters: Parameters {
                expires: Some(60_000),
                largest_object: Some(Location::new(9, 99)),
                ..Parameters::default()
            },
            track_properties: props(&[(0x04, 5_000), (0x0e, 7)]),
        }
        .into(),
        RequestError::new(RequestErrorCode::ExcessiveLoad, 501, "busy").into(),
        RequestError::redirect(
            Redirect {
                connect_uri: "moqt://other.example".into(),
                track_namespace: ns("live/show"),
                track_name: TrackName::from("video"),
            },
            0,
            "moved",
        )
        .into(),
        RequestUpdate {
            request_id: 6,
            parameters: Parameters {
                forward: Some(true),
                subscription_filter: Some(SubscriptionFilter::AbsoluteStart {
                    start_location: Location::new(4, 0),
                }),
                track_namespace_prefix: Some(ns("live/other")),
                ..full_params()
            },
        }
        .into(),
        Subscribe {
            request_id: 0,
            track_namespace: ns("live/show/cam1"),
            track_name: TrackName::from("video"),
            parameters: subscribe_params.clone(),
        }
        .into(),
        SubscribeOk {
            track_alias: 12_345,
            parameters: Parameters {
                expires: Some(1),
                largest_object: Some(Location::new(u64::MAX >> 2, 0)),
                ..Parameters::default()
            },
            track_properties: [
                KeyValuePair::varint(0x30, 1).unwrap(),
                KeyValuePair::bytes(0x3801, &b"app"[..]).unwrap(),
            ]
            .into_iter()
            .collect(),
        }
        .into(),
        Publish {
            request_id: 1,
            track_namespace: ns("live/show"),
            track_name: TrackName::from("audio"),
            track_alias: 2,
            parameters: Parameters {
                forward: Some(true),
                expires: Some(5),
                largest_object: Some(Location::new(3, 4)),
                ..full_params()
            },
            track_properties: props(&[(0x22, 2)]),
        }
        .into(),
        PublishOk {
            parameters: Parameters {
                forward: Some(true),
                subscriber_priority: Some(1),
                group_order: Some(GroupOrder::Ascending),
                subscription_filter: Some(SubscriptionFilter::NextGroupStart),
                ..Parameters::default()
            },
        }
        .into(),
        PublishDone {
            status_code: PublishDoneCode::TooFarBehind,
            stream_count: PublishDone::UNKNOWN_STREAM_COUNT,
            error_reason: ReasonPhrase::from("slow"),
        }
        .into(),
        Fetch {
            request_id: 4,
            fetch_type: FetchType::Standalone(StandaloneFetch {
                track_namespace: ns("vod"),
                track_name: TrackName::from("v"),
                start_location: Location::new(1, 2),
                end_location: Location::new(5, 0),
            }),
            parameters: Parameters {
                fill_timeout: Some(0),
                subscriber_priority: Some(0),
                group_order: Some(GroupOrder::Descending),
                ..full_params()
            },
        }
        .into(),
        Fetch {
            request_id: 8,
            fetch_type: FetchType::RelativeJoining(JoiningFetch {
                joining_request_id: 0,
                joining_start: 3,
            }),
            parameters: Parameters::default(),
        }
        .into(),
        Fetch {
            request_id: 10,
            fetch_type: FetchType::AbsoluteJoining(JoiningFetch {
                joining_request_id: 2,
                joining_start: 77,
            }),
            parameters: Parameters::default(),
        }
        .into(),
        FetchOk {
            end_of_track: true,
            end_location: Location::new(5, 1),
            parameters: Parameters::default(),
            track_properties: props(&[(0x02, 100)]),
        }
        .into(),
        TrackStatus {
            request_id: 12,
            track_namespace: ns("live"),
            track_name: TrackName::from("catalog"),
            parameters: full_params(),
        }
        .into(),
        PublishNamespace {
            request_id: 14,
            track_namespace: ns("live/show"),
            parameters: full_params(),
        }
        .into(),
        Namespace {
            track_namespace_suffix: ns("show/cam2"),
        }
        .into(),
        NamespaceDone {
            track_namespace_suffix: ns("show/cam2"),
        }
        .into(),
        SubscribeNamespace {
            request_id: 16,
            track_namespace_prefix: ns("live"),
            parameters: full_params(),
        }
        .into(),
        SubscribeTracks {
            request_id: 18,
            track_namespace_prefix: TrackNamespace::default(),
            parameters: Parameters {
                forward: Some(false),
                ..full_params()
            },
        }
        .into(),
        PublishBlocked {
            track_namespace_suffix: ns("show"),
            track_name: TrackName::from("chat"),
        }
        .into(),
    ]
}

fn frame(message: &Message) -> Bytes {
    message.to_frame(V).unwrap()
}

fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut cursor = bytes;
    Message::decode_frame(&mut cursor, V, MAX_MESSAGE_SIZE)
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// A frame with a hand-built payload.
fn raw_frame(type_id: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_varint(type_id, &mut out);
    out.put_u16(payload.len() as u16);
    out.extend_from_slice(payload);
    out
}

#[test]
fn every_message_type_round_trips() {
    let messages = every_message();
    let mut seen = std::collections::BTreeSet::new();
    for message in &messages {
        seen.insert(message.type_id());
        let wire = frame(message);
        // Through a `Bytes` (zero-copy) cursor ...
        let mut bytes = wire.clone();
        assert_eq!(
            &Message::decode_frame(&mut bytes, V, MAX_MESSAGE_SIZE).unwrap(),
            message
        );
        assert!(bytes.is_empty(), "{} left bytes", message.name());
        // ... and a slice cursor.
        assert_eq!(&decode(&wire).unwrap(), message, "{}", message.name());
    }
    assert_eq!(
        seen.len(),
        19,
        "every draft-18 message type (plus legacy PUBLISH_OK) is covered"
    );
}

#[test]
fn frames_decode_back_to_back_and_only_advance_on_success() {
    let messages = every_message();
    let mut stream = Vec::new();
    for message in &messages {
        message.encode_frame(&mut stream, V).unwrap();
    }
    // Feed one byte at a time, as a stream would arrive.
    let mut buffered = Vec::new();
    let mut decoded = Vec::new();
    for byte in stream {
        buffered.push(byte);
        let mut cursor = &buffered[..];
        match Message::decode_frame(&mut cursor, V, MAX_MESSAGE_SIZE) {
            Ok(message) => {
                assert!(cursor.is_empty());
                decoded.push(message);
                buffered.clear();
            }
            Err(DecodeError::Incomplete) => assert_eq!(cursor.len(), buffered.len(), "not consumed"),
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(decoded, messages);
}

#[test]
fn every_strict_prefix_is_incomplete() {
    for message in every_message() {
        let wire = frame(&message);
        for cut in 0..wire.len() {
            let mut prefix = wire.slice(..cut);
            assert_eq!(
                Message::decode_frame(&mut prefix, V, MAX_MESSAGE_SIZE),
                Err(DecodeError::Incomplete),
                "{} cut at {cut}",
                message.name()
            );
            assert_eq!(prefix.len(), cut, "buffer untouched on Incomplete");
        }
    }
}

#[test]
fn oversized_length_is_refused_from_the_header_alone() {
    // SUBSCRIBE type, declared length 1000, no payload yet.
    let header = [0x03, 0x03, 0xe8];
    let mut cursor = &header[..];
    assert_eq!(
        Message::decode_frame(&mut cursor, V, 999),
        Err(DecodeError::TooLarge {
            what: "control message",
            size: 1000,
            limit: 999
        })
    );
    assert_eq!(cursor.len(), 3);
    assert!(matches!(decode(&[0x03, 0x03]), Err(DecodeError::Incomplete)));
}

#[test]
fn encode_refuses_payloads_over_the_16_bit_length() {
    let message = Message::from(Setup {
        moqt_implementation: Some(Bytes::from(vec![b'x'; MAX_MESSAGE_SIZE])),
        ..Setup::default()
    });
    let mut out = Vec::new();
    assert!(matches!(
        message.encode_frame(&mut out, V),
        Err(banyan_moq::coding::EncodeError::TooLarge { .. })
    ));
    assert!(out.is_empty(), "nothing written");
}

#[test]
fn unknown_and_retired_types_are_refused() {
    for type_id in [0x01, 0x20, 0x21, 0x40, 0x41, 0x0a, 0x17, 0x9d, 0x2f01] {
        let wire = raw_frame(type_id, &[]);
        assert_eq!(decode(&wire), Err(DecodeError::UnknownMessage(type_id)));
        // Known to be unknown as soon as the type is readable.
        let mut type_only = Vec::new();
        encode_varint(type_id, &mut type_only);
        assert_eq!(decode(&type_only), Err(DecodeError::UnknownMessage(type_id)));
    }
}

#[test]
fn payload_length_mismatches_are_refused() {
    // NAMESPACE with one extra byte after the namespace: leftover bytes.
    let mut payload = ns("a").to_bytes(V).to_vec();
    payload.push(0x00);
    assert_eq!(
        decode(&raw_frame(Namespace::TYPE, &payload)),
        Err(DecodeError::LengthMismatch { declared: 4, used: 3 })
    );
    // PUBLISH_DONE whose length stops inside the reason phrase: malformed, not Incomplete.
    let done = frame(&every_message()[11]);
    assert_eq!(every_message()[11].name(), "PUBLISH_DONE");
    let mut short = done.to_vec();
    short[2] -= 1; // shrink the declared length by one ...
    short.pop(); // ... and drop the last payload byte so the frame is "complete"
    let result = decode(&short);
    assert!(matches!(result, Err(DecodeError::Invalid(_))), "{result:?}");
    // A GOAWAY whose declared length cuts the Timeout: malformed.
    assert!(matches!(
        decode(&raw_frame(Goaway::TYPE, &[0x00])),
        Err(DecodeError::Invalid(_))
    ));
}

#[test]
fn parameter_not_allowed_in_message_is_refused() {
    // RENDEZVOUS_TIMEOUT (0x04) is SUBSCRIBE-only: refuse it in FETCH.
    let mut payload = vec![0x02, 0x02, 0x00, 0x05]; // request 2, relative joining {0, 5}
    payload.extend_from_slice(&[0x01, 0x04, 0x0a]); // 1 param: type 4 = 10
    assert_eq!(
        decode(&raw_frame(Fetch::TYPE, &payload)),
        Err(DecodeError::UnknownParameter(0x04))
    );
    // Any parameter in FETCH_OK (none are defined for it).
    let payload = [0x00, 0x01, 0x00, 0x01, 0x10, 0x01];
    assert_eq!(
        decode(&raw_frame(FetchOk::TYPE, &payload)),
        Err(DecodeError::UnknownParameter(0x10))
    );
    // LARGEST_OBJECT in SUBSCRIBE.
    let mut payload = vec![0x00];
    payload.extend_from_slice(&ns("a").to_bytes(V));
    payload.extend_from_slice(&[0x00, 0x01, 0x09, 0x01, 0x02]);
    assert_eq!(
        decode(&raw_frame(Subscribe::TYPE, &payload)),
        Err(DecodeError::UnknownParameter(0x09))
    );
    // Encoding does not police scopes, but decoding does.
    let bad: Message = TrackStatus {
        request_id: 0,
        track_namespace: ns("a"),
        track_name: TrackName::from("b"),
        parameters: Parameters {
            subscriber_priority: Some(1),
            ..Parameters::default()
        },
    }
    .into();
    assert_eq!(decode(&frame(&bad)), Err(DecodeError::UnknownParameter(0x20)));
}

#[test]
fn session_scopes_are_finer_than_the_codec_union() {
    let ok = RequestOk {
        parameters: Parameters {
            largest_object: Some(Location::new(1, 1)),
            ..Parameters::default()
        },
        track_properties: props(&[(0x04, 1)]),
    };
    assert!(decode(&frame(&ok.clone().into())).is_ok(), "allowed by the union");
    assert_eq!(ok.check_answers(ParameterScope::TrackStatusOk), Ok(()));
    assert_eq!(
        ok.check_answers(ParameterScope::PublishOk),
        Err(DecodeError::UnknownParameter(0x09))
    );
    let no_params = RequestOk {
        parameters: Parameters::default(),
        track_properties: props(&[(0x04, 1)]),
    };
    assert!(matches!(
        no_params.check_answers(ParameterScope::NamespaceOk),
        Err(DecodeError::Invalid(_))
    ));
    let prefix = Parameters {
        track_namespace_prefix: Some(ns("x")),
        ..Parameters::default()
    };
    assert!(prefix
        .check_scope(ParameterScope::RequestUpdate(UpdateTarget::SubscribeTracks))
        .is_ok());
    assert_eq!(
        prefix.check_scope(ParameterScope::RequestUpdate(UpdateTarget::Subscription)),
        Err(DecodeError::UnknownParameter(0x34))
    );
}

#[test]
fn duplicate_unknown_and_malformed_parameters_are_refused() {
    let subscribe_with = |params: &[u8]| {
        let mut payload = vec![0x00];
        payload.extend_from_slice(&ns("a").to_bytes(V));
        payload.push(0x00); // empty track name
        payload.extend_from_slice(params);
        decode(&raw_frame(Subscribe::TYPE, &payload))
    };
    // FORWARD twice (second delta 0).
    assert_eq!(
        subscribe_with(&[0x02, 0x10, 0x01, 0x00, 0x01]),
        Err(DecodeError::DuplicateParameter(0x10))
    );
    // AUTHORIZATION TOKEN may repeat.
    assert!(subscribe_with(&[0x02, 0x03, 0x02, 0x02, 0x01, 0x00, 0x02, 0x02, 0x02]).is_ok());
    // Unknown type 0x05 (and grease-looking 0x9d).
    assert_eq!(
        subscribe_with(&[0x01, 0x05, 0x00]),
        Err(DecodeError::UnknownParameter(0x05))
    );
    assert_eq!(
        subscribe_with(&[0x01, 0x80, 0x9d, 0x00]),
        Err(DecodeError::UnknownParameter(0x9d))
    );
    // Out-of-range values.
    assert!(matches!(
        subscribe_with(&[0x01, 0x10, 0x02]),
        Err(DecodeError::Invalid(_))
    ));
    assert!(matches!(
        subscribe_with(&[0x01, 0x22, 0x00]),
        Err(DecodeError::Invalid(_))
    ));
    assert!(matches!(
        subscribe_with(&[0x01, 0x22, 0x03]),
        Err(DecodeError::Invalid(_))
    ));
    assert!(matches!(
        subscribe_with(&[0x01, 0x21, 0x01, 0x05]),
        Err(DecodeError::Invalid(_))
    ));
    // A filter value with a trailing byte, and a token with an unknown alias type.
    assert_eq!(
        subscribe_with(&[0x01, 0x21, 0x02, 0x02, 0x00]),
        Err(DecodeError::KeyValueFormat(0x21))
    );
    assert_eq!(
        subscribe_with(&[0x01, 0x03, 0x01, 0x07]),
        Err(DecodeError::KeyValueFormat(0x03))
    );
    // Parameter type delta that overflows 2^64 - 1.
    let mut params = vec![0x02, 0x03, 0x02, 0x02, 0x01]; // token USE_ALIAS 1, then ...
    encode_varint(u64::MAX, &mut params);
    assert!(matches!(subscribe_with(&params), Err(DecodeError::Invalid(_))));
}

#[test]
fn field_validation() {
    // Fetch Type 4.
    assert_eq!(
        decode(&raw_frame(Fetch::TYPE, &[0x00, 0x04, 0x00])),
        Err(DecodeError::Invalid("fetch type"))
    );
    // FETCH_OK End Of Track 2.
    assert!(matches!(
        decode(&raw_frame(FetchOk::TYPE, &[0x02, 0x00, 0x00, 0x00])),
        Err(DecodeError::Invalid(_))
    ));
    // PUBLISH_OK (0x1E) with Track Properties.
    assert!(matches!(
        decode(&raw_frame(PublishOk::TYPE, &[0x00, 0x04, 0x01])),
        Err(DecodeError::Invalid(_))
    ));
    // A REDIRECT error code without a Redirect structure is malformed.
    assert!(matches!(
        decode(&raw_frame(RequestError::TYPE, &[0x34, 0x00, 0x00])),
        Err(DecodeError::Invalid(_))
    ));
    // A GOAWAY URI over 8192 bytes.
    let mut payload = Vec::new();
    encode_varint(8193, &mut payload);
    payload.extend(std::iter::repeat_n(b'a', 8193));
    payload.push(0x00);
    assert!(matches!(
        decode(&raw_frame(Goaway::TYPE, &payload)),
        Err(DecodeError::TooLarge { .. })
    ));
    // SETUP with a USE_ALIAS token.
    assert!(matches!(
        decode(&raw_frame(Setup::TYPE, &[0x03, 0x02, 0x02, 0x01])),
        Err(DecodeError::Invalid(_))
    ));
    // SETUP repeating PATH; but unknown options may repeat.
    assert_eq!(
        decode(&raw_frame(Setup::TYPE, &[0x01, 0x01, b'/', 0x00, 0x01, b'/'])),
        Err(DecodeError::DuplicateParameter(0x01))
    );
    assert!(decode(&raw_frame(Setup::TYPE, &[0x09, 0x01, b'x', 0x00, 0x01, b'y'])).is_ok());
    // A standalone range ending before its start decodes (the publisher answers INVALID_RANGE).
    let backwards = StandaloneFetch {
        start_location: Location::new(5, 5),
        end_location: Location::new(5, 5),
        ..StandaloneFetch::default()
    };
    assert!(backwards.is_empty_range());
    assert!(!StandaloneFetch {
        end_location: Location::new(5, 0),
        ..backwards.clone()
    }
    .is_empty_range());
}

#[test]
fn message_metadata() {
    for message in every_message() {
        let starts = matches!(
            message,
            Message::Subscribe(_)
                | Message::Publish(_)
                | Message::Fetch(_)
                | Message::TrackStatus(_)
                | Message::PublishNamespace(_)
                | Message::SubscribeNamespace(_)
                | Message::SubscribeTracks(_)
        );
        assert_eq!(message.is_request_start(), starts, "{}", message.name());
        let consumes_id = starts || matches!(message, Message::RequestUpdate(_));
        assert_eq!(message.request_id().is_some(), consumes_id, "{}", message.name());
    }
    assert_eq!(Message::from(Setup::default()).type_id(), 0x2F00);
    assert_eq!(Message::from(Setup::default()).to_string(), "SETUP");
}

#[test]
fn spec_vectors_decode_and_re_encode_exactly() {
    let vectors: serde_json::Value = serde_json::from_str(include_str!("../vectors/control.json")).unwrap();
    let vectors = vectors.as_array().unwrap();
    assert!(vectors.len() >= 19);
    let mut types = std::collections::BTreeSet::new();
    for vector in vectors {
        let name = vector["name"].as_str().unwrap();
        let wire = hex(vector["hex"].as_str().unwrap());
        let message = decode(&wire).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(message.name(), vector["message"].as_str().unwrap(), "{name}");
        assert_eq!(frame(&message).to_vec(), wire, "{name} re-encodes");
        types.insert(message.type_id());
    }
    assert_eq!(types.len(), 19, "vectors cover every message type");
}

#[test]
fn spec_vectors_spot_checks() {
    let vectors: serde_json::Value = serde_json::from_str(include_str!("../vectors/control.json")).unwrap();
    let find = |name: &str| {
        let vector = vectors
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap();
        decode(&hex(vector["hex"].as_str().unwrap())).unwrap()
    };
    let Message::Subscribe(subscribe) = find("subscribe") else {
        panic!("not a SUBSCRIBE")
    };
    assert_eq!(subscribe.track_namespace, ns("live/show"));
    assert_eq!(subscribe.parameters.subscriber_priority, Some(128));
    assert_eq!(
        subscribe.parameters.subscription_filter,
        Some(SubscriptionFilter::AbsoluteRange {
            start_location: Location::new(5, 0),
            end_group_delta: 2
        })
    );
    assert_eq!(
        subscribe.parameters.authorization_tokens,
        vec![Token::UseAlias { token_alias: 7 }]
    );
    let Message::Setup(setup) = find("setup_client") else {
        panic!("not a SETUP")
    };
    assert_eq!(setup.path.as_deref(), Some("/live?room=1"));
    assert_eq!(setup.authority.as_deref(), Some("relay.example:4443"));
    assert_eq!(setup.max_auth_token_cache_size, Some(4096));
    assert_eq!(setup.unknown_options.len(), 1);
    let Message::RequestError(error) = find("request_error_redirect") else {
        panic!("not a REQUEST_ERROR")
    };
    assert_eq!(error.retry_interval, 1001);
    assert_eq!(error.redirect.unwrap().connect_uri, "moqt://r2.example");
    let Message::Goaway(goaway) = find("goaway_control_stream") else {
        panic!("not a GOAWAY")
    };
    assert_eq!(goaway.request_id, Some(4));
}

// ---- property tests ----

fn arb_namespace() -> impl Strategy<Value = TrackNamespace> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 1..8), 0..5)
        .prop_map(|fields| TrackNamespace::new(fields.into_iter().map(Bytes::from)).unwrap())
}

fn arb_name() -> impl Strategy<Value = TrackName> {
    prop::collection::vec(any::<u8>(), 0..12).prop_map(TrackName::new)
}

fn arb_location() -> impl Strategy<Value = Location> {
    (any::<u64>(), any::<u64>()).prop_map(|(g, o)| Location::new(g, o))
}

fn arb_token() -> impl Strategy<Value = Token> {
    let value = prop::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from);
    prop_oneof![
        any::<u64>().prop_map(|token_alias| Token::Delete { token_alias }),
        (any::<u64>(), any::<u64>(), value.clone()).prop_map(|(token_alias, token_type, token_value)| {
            Token::Register {
                token_alias,
                token_type,
                token_value,
            }
        }),
        any::<u64>().prop_map(|token_alias| Token::UseAlias { token_alias }),
        (any::<u64>(), value).prop_map(|(token_type, token_value)| Token::UseValue {
            token_type,
            token_value
        }),
    ]
}

fn arb_filter() -> impl Strategy<Value = SubscriptionFilter> {
    prop_oneof![
        Just(SubscriptionFilter::NextGroupStart),
        Just(SubscriptionFilter::LargestObject),
        arb_location().prop_map(|start_location| SubscriptionFilter::AbsoluteStart { start_location }),
        (arb_location(), any::<u64>()).prop_map(|(start_location, delta)| {
            SubscriptionFilter::AbsoluteRange {
                start_location,
                end_group_delta: delta.min(u64::MAX - start_location.group),
            }
        }),
    ]
}

fn arb_group_order() -> impl Strategy<Value = GroupOrder> {
    prop_oneof![Just(GroupOrder::Ascending), Just(GroupOrder::Descending)]
}

/// Any parameters, restricted afterwards to a scope.
fn arb_parameters(scope: ParameterScope) -> impl Strategy<Value = Parameters> {
    (
        (
            any::<Option<u64>>(),
            prop::collection::vec(arb_token(), 0..3),
            any::<Option<u64>>(),
            any::<Option<u64>>(),
            any::<Option<u64>>(),
            prop::option::of(arb_location()),
            any::<Option<u64>>(),
        ),
        (
            any::<Option<bool>>(),
            any::<Option<u8>>(),
            prop::option::of(arb_filter()),
            prop::option::of(arb_group_order()),
            any::<Option<u64>>(),
            prop::option::of(arb_namespace()),
        ),
        prop::option::of(prop::collection::vec(0u64..1 << 62, 0..5)),
    )
        .prop_map(
            move |((odt, tokens, rt, sdt, exp, lo, ft), (fw, sp, sf, go, ngr, tnp), hops)| {
                let keep = |ty: u64| Parameters::allowed(ty, scope);
                Parameters {
                    object_delivery_timeout: odt.filter(|_| keep(Parameters::OBJECT_DELIVERY_TIMEOUT)),
                    authorization_tokens: if keep(Parameters::AUTHORIZATION_TOKEN) {
                        tokens
                    } else {
                        Vec::new()
                    },
                    rendezvous_timeout: rt.filter(|_| keep(Parameters::RENDEZVOUS_TIMEOUT)),
                    subgroup_delivery_timeout: sdt.filter(|_| keep(Parameters::SUBGROUP_DELIVERY_TIMEOUT)),
                    expires: exp.filter(|_| keep(Parameters::EXPIRES)),
                    largest_object: lo.filter(|_| keep(Parameters::LARGEST_OBJECT)),
                    fill_timeout: ft.filter(|_| keep(Parameters::FILL_TIMEOUT)),
                    forward: fw.filter(|_| keep(Parameters::FORWARD)),
                    subscriber_priority: sp.filter(|_| keep(Parameters::SUBSCRIBER_PRIORITY)),
                    subscription_filter: sf.filter(|_| keep(Parameters::SUBSCRIPTION_FILTER)),
                    group_order: go.filter(|_| keep(Parameters::GROUP_ORDER)),
                    new_group_request: ngr.filter(|_| keep(Parameters::NEW_GROUP_REQUEST)),
                    track_namespace_prefix: tnp.filter(|_| keep(Parameters::TRACK_NAMESPACE_PREFIX)),
                    hop_path: hops.and_then(HopPath::new).filter(|_| keep(Parameters::HOP_PATH)),
                }
            },
        )
}

fn arb_properties() -> impl Strategy<Value = KeyValuePairs> {
    prop::collection::vec(
        (
            0u64..0x5000,
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..6),
        ),
        0..4,
    )
    .prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(key, v, b)| {
                KeyValuePair::varint(key, v)
                    .or_else(|| KeyValuePair::bytes(key, b))
                    .unwrap()
            })
            .collect()
    })
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u64>(),
            arb_namespace(),
            arb_name(),
            arb_parameters(ParameterScope::Subscribe)
        )
            .prop_map(
                |(request_id, track_namespace, track_name, parameters)| Subscribe {
                    request_id,
                    track_namespace,
                    track_name,
                    parameters
                }
                .into()
            ),
        (
            any::<u64>(),
            arb_parameters(ParameterScope::SubscribeOk),
            arb_properties()
        )
            .prop_map(|(track_alias, parameters, track_properties)| SubscribeOk {
                track_alias,
                parameters,
                track_properties
            }
            .into()),
        (
            any::<u64>(),
            arb_namespace(),
            arb_name(),
            any::<u64>(),
            arb_parameters(ParameterScope::Publish),
            arb_properties()
        )
            .prop_map(
                |(request_id, track_namespace, track_name, track_alias, parameters, track_properties)| {
                    Publish {
                        request_id,
                        track_namespace,
                        track_name,
                        track_alias,
                        parameters,
                        track_properties,
                    }
                    .into()
                }
            ),
        (
            any::<u64>(),
            prop_oneof![
                (arb_namespace(), arb_name(), arb_location(), arb_location()).prop_map(|(n, t, s, e)| {
                    FetchType::Standalone(StandaloneFetch {
                        track_namespace: n,
                        track_name: t,
                        start_location: s,
                        end_location: e,
                    })
                }),
                (any::<u64>(), any::<u64>()).prop_map(|(r, s)| FetchType::RelativeJoining(JoiningFetch {
                    joining_request_id: r,
                    joining_start: s
                })),
                (any::<u64>(), any::<u64>()).prop_map(|(r, s)| FetchType::AbsoluteJoining(JoiningFetch {
                    joining_request_id: r,
                    joining_start: s
                })),
            ],
            arb_parameters(ParameterScope::Fetch)
        )
            .prop_map(|(request_id, fetch_type, parameters)| Fetch {
                request_id,
                fetch_type,
                parameters
            }
            .into()),
        (any::<bool>(), arb_location(), arb_properties()).prop_map(
            |(end_of_track, end_location, track_properties)| {
                FetchOk {
                    end_of_track,
                    end_location,
                    parameters: Parameters::default(),
                    track_properties,
                }
                .into()
            }
        ),
        (arb_parameters(ParameterScope::RequestOk), arb_properties()).prop_map(
            |(parameters, track_properties)| {
                RequestOk {
                    parameters,
                    track_properties,
                }
                .into()
            }
        ),
        (
            any::<u64>(),
            arb_parameters(ParameterScope::RequestUpdate(UpdateTarget::Unknown))
        )
            .prop_map(|(request_id, parameters)| RequestUpdate {
                request_id,
                parameters
            }
            .into()),
        arb_parameters(ParameterScope::PublishOk).prop_map(|parameters| PublishOk { parameters }.into()),
        (
            any::<u64>(),
            arb_namespace(),
            arb_name(),
            arb_parameters(ParameterScope::TrackStatus)
        )
            .prop_map(
                |(request_id, track_namespace, track_name, parameters)| TrackStatus {
                    request_id,
                    track_namespace,
                    track_name,
                    parameters
                }
                .into()
            ),
        (
            any::<u64>(),
            arb_namespace(),
            arb_parameters(ParameterScope::SubscribeTracks)
        )
            .prop_map(
                |(request_id, track_namespace_prefix, parameters)| SubscribeTracks {
                    request_id,
                    track_namespace_prefix,
                    parameters
                }
                .into()
            ),
        (
            any::<u64>(),
            any::<u64>(),
            "[ -~]{0,20}",
            prop::option::of(("[ -~]{0,20}", arb_namespace(), arb_name()))
        )
            .prop_map(|(code, retry_interval, reason, redirect)| {
                let redirect = redirect.map(|(connect_uri, track_namespace, track_name)| Redirect {
                    connect_uri,
                    track_namespace,
                    track_name,
                });
                RequestError {
                    error_code: if redirect.is_some() {
                        RequestErrorCode::Redirect
                    } else {
                        RequestErrorCode::from_code(if code == 0x34 { 0 } else { code })
                    },
                    retry_interval,
                    error_reason: ReasonPhrase::from(reason),
                    redirect,
                }
                .into()
            }),
        ("[ -~]{0,30}", any::<u64>(), any::<Option<u64>>()).prop_map(
            |(new_session_uri, timeout, request_id)| {
                Goaway {
                    new_session_uri,
                    timeout,
                    request_id,
                }
                .into()
            }
        ),
        (any::<u64>(), any::<u64>(), "[ -~]{0,20}").prop_map(|(code, stream_count, reason)| PublishDone {
            status_code: PublishDoneCode::from_code(code),
            stream_count,
            error_reason: ReasonPhrase::from(reason),
        }
        .into()),
        arb_namespace().prop_map(|track_namespace_suffix| Namespace {
            track_namespace_suffix
        }
        .into()),
        arb_namespace().prop_map(|track_namespace_suffix| NamespaceDone {
            track_namespace_suffix
        }
        .into()),
        (
            any::<u64>(),
            arb_namespace(),
            arb_parameters(ParameterScope::PublishNamespace)
        )
            .prop_map(|(request_id, track_namespace, parameters)| PublishNamespace {
                request_id,
                track_namespace,
                parameters
            }
            .into()),
        (
            any::<u64>(),
            arb_namespace(),
            arb_parameters(ParameterScope::SubscribeNamespace)
        )
            .prop_map(
                |(request_id, track_namespace_prefix, parameters)| SubscribeNamespace {
                    request_id,
                    track_namespace_prefix,
                    parameters
                }
                .into()
            ),
        (arb_namespace(), arb_name()).prop_map(|(track_namespace_suffix, track_name)| PublishBlocked {
            track_namespace_suffix,
            track_name
        }
        .into()),
        (
            prop::option::of("[ -~]{0,20}"),
            prop::collection::vec(arb_token(), 0..3),
            any::<Option<u64>>(),
            prop::option::of("[ -~]{0,20}"),
            prop::option::of(0u64..1 << 62),
        )
            .prop_map(
                |(path, tokens, max_auth_token_cache_size, authority, hop_id)| Setup {
                    path,
                    authorization_tokens: tokens
                        .into_iter()
                        .filter(|t| matches!(t.alias_type(), AliasType::Register | AliasType::UseValue))
                        .collect(),
                    max_auth_token_cache_size,
                    authority,
                    moqt_implementation: None,
                    hop_id,
                    unknown_options: KeyValuePairs::new(),
                }
                .into()
            ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut cursor = &bytes[..];
        let _ = Message::decode_frame(&mut cursor, V, MAX_MESSAGE_SIZE);
        let _ = Message::decode_frame(&mut cursor, V, 16);
    }

    #[test]
    fn arbitrary_payload_for_each_type_never_panics(
        type_index in 0usize..19,
        payload in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let types = [0x2F00, 0x10, 0x7, 0x5, 0x2, 0x3, 0x4, 0x1D, 0x1E, 0xB, 0x16, 0x18, 0xD, 0x6, 0x8, 0xE, 0x50, 0x51, 0xF];
        let wire = raw_frame(types[type_index], &payload);
        match decode(&wire) {
            // Whatever decodes must re-encode to something that decodes to the same value.
            Ok(message) => prop_assert_eq!(decode(&frame(&message)).unwrap(), message),
            Err(e) => prop_assert!(!e.is_incomplete(), "a complete frame is never Incomplete"),
        }
    }

    #[test]
    fn generated_messages_round_trip(message in arb_message()) {
        let wire = frame(&message);
        prop_assert_eq!(decode(&wire).unwrap(), message.clone());
        for cut in [0, 1, wire.len() / 2, wire.len() - 1] {
            prop_assert_eq!(decode(&wire[..cut]), Err(DecodeError::Incomplete));
        }
    }
}

#[test]
fn hop_path_extension_rides_on_requests_and_setup_only() {
    let path = HopPath::new(vec![0xa, 0x3fff_ffff_ffff_ffff]).unwrap();
    let params = Parameters {
        hop_path: Some(path.clone()),
        ..Parameters::default()
    };
    let mut buf = Vec::new();
    params.encode(&mut buf, V);
    for scope in [
        ParameterScope::Subscribe,
        ParameterScope::Fetch,
        ParameterScope::TrackStatus,
        ParameterScope::SubscribeNamespace,
    ] {
        let decoded = Parameters::decode_scoped(&mut &buf[..], V, scope).unwrap();
        assert_eq!(decoded.hop_path.as_ref(), Some(&path), "{scope:?}");
    }
    // Not a response parameter.
    assert!(Parameters::decode_scoped(&mut &buf[..], V, ParameterScope::SubscribeOk).is_err());

    let setup = Setup {
        hop_id: Some(0xba5e),
        ..Setup::default()
    };
    let mut bytes = Vec::new();
    setup.encode(&mut bytes, V);
    let decoded = <Setup as banyan_moq::coding::Decode>::decode(&mut &bytes[..], V).unwrap();
    assert_eq!(decoded.hop_id, Some(0xba5e));
}
