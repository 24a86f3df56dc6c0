//! Codec throughput: data-plane encode/decode (subgroup object headers with small payloads,
//! object datagrams) and control-message framing.
//!
//! Run: `cargo bench -p banyan-codec-bench` (add `-- --quick` for a fast pass). It is a package
//! of its own so that building it compiles only the codec and criterion, not the session stack
//! and interop peers that `banyan-moq`'s tests depend on. Criterion reports time per iteration
//! and throughput: `elem/s` counts objects (or messages) and `B/s` counts wire bytes. Each
//! iteration processes a batch of `BATCH` objects from/to a pre-allocated buffer, so allocation
//! of the output buffer is amortised and the figures measure the codec, not the allocator.
//! Numbers are for one core; compare runs on the same machine only.
use std::hint::black_box;

use banyan_moq::coding::KeyValuePair;
use banyan_moq::data::{
    ObjectDatagram, ObjectProperties, SubgroupHeader, SubgroupId, SubgroupObject, SubgroupStream,
};
use banyan_moq::message::{Message, MAX_MESSAGE_SIZE};
use banyan_moq::Version;
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const V: Version = Version::Draft18;
const BATCH: usize = 1000;

fn subgroup_header(properties: bool) -> SubgroupHeader {
    SubgroupHeader {
        track_alias: 7,
        group_id: 12_345,
        subgroup_id: SubgroupId::Zero,
        publisher_priority: Some(128),
        properties,
        end_of_group: false,
        first_object: true,
    }
}

fn objects(payload_len: usize, properties: bool) -> Vec<SubgroupObject> {
    let payload = Bytes::from(vec![0x5A; payload_len]);
    (0..BATCH as u64)
        .map(|id| SubgroupObject {
            properties: if properties {
                // A capture timestamp, as every Banyan media object carries (LOC 0x06).
                [KeyValuePair::varint(0x06, 1_700_000_000_000 + id).unwrap_or_else(|| unreachable!())]
                    .into_iter()
                    .collect()
            } else {
                ObjectProperties::new()
            },
            ..SubgroupObject::new(id, payload.clone())
        })
        .collect()
}

fn encode_stream(header: &SubgroupHeader, objects: &[SubgroupObject], out: &mut BytesMut) {
    let mut prev = None;
    for object in objects {
        if object.encode(out, header, prev, V).is_err() {
            unreachable!("benchmark objects are valid");
        }
        prev = Some(object.object_id);
    }
}

fn subgroup_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("subgroup_objects");
    for (payload_len, properties) in [(16usize, false), (200, false), (200, true), (1200, true)] {
        let header = subgroup_header(properties);
        let objects = objects(payload_len, properties);
        let mut wire = BytesMut::new();
        encode_stream(&header, &objects, &mut wire);
        let wire = wire.freeze();
        let label = format!("{payload_len}B{}", if properties { "+props" } else { "" });

        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_with_input(
            BenchmarkId::new("encode/objects", &label),
            &objects,
            |b, objects| {
                let mut out = BytesMut::with_capacity(wire.len());
                b.iter(|| {
                    out.clear();
                    encode_stream(&header, objects, &mut out);
                    black_box(out.len())
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("decode/objects", &label), &wire, |b, wire| {
            b.iter(|| decode_stream(&header, wire.clone()))
        });
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::new("decode/bytes", &label), &wire, |b, wire| {
            b.iter(|| decode_stream(&header, wire.clone()))
        });
    }
    group.finish();
}

/// Header-first decode of a batch, slicing payloads out of the shared buffer without copying.
fn decode_stream(header: &SubgroupHeader, mut wire: Bytes) -> usize {
    let mut stream = SubgroupStream::new(header.clone());
    let mut total = 0;
    while !wire.is_empty() {
        let Ok(fields) = stream.decode_object_header(&mut wire, V) else {
            unreachable!("benchmark stream is valid")
        };
        let payload = wire.split_to(fields.payload_len as usize);
        total += black_box(payload).len();
    }
    total
}

fn datagram_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("object_datagrams");
    for payload_len in [16usize, 200, 1100] {
        let datagrams: Vec<ObjectDatagram> = (0..BATCH as u64)
            .map(|id| ObjectDatagram {
                track_alias: 3,
                group_id: 99,
                object_id: id,
                publisher_priority: None,
                payload: Bytes::from(vec![1u8; payload_len]),
                ..ObjectDatagram::default()
            })
            .collect();
        let wires: Vec<Bytes> = datagrams
            .iter()
            .map(|d| d.to_bytes(V).unwrap_or_else(|_| unreachable!()))
            .collect();
        let wire_bytes: usize = wires.iter().map(Bytes::len).sum();
        let label = format!("{payload_len}B");

        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_with_input(
            BenchmarkId::new("encode/objects", &label),
            &datagrams,
            |b, datagrams| {
                let mut out = BytesMut::with_capacity(wire_bytes);
                b.iter(|| {
                    out.clear();
                    for d in datagrams {
                        if d.encode(&mut out, V).is_err() {
                            unreachable!()
                        }
                    }
                    black_box(out.len())
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("decode/objects", &label), &wires, |b, wires| {
            b.iter(|| decode_datagrams(wires))
        });
        group.throughput(Throughput::Bytes(wire_bytes as u64));
        group.bench_with_input(BenchmarkId::new("decode/bytes", &label), &wires, |b, wires| {
            b.iter(|| decode_datagrams(wires))
        });
    }
    group.finish();
}

fn decode_datagrams(wires: &[Bytes]) -> usize {
    wires
        .iter()
        .map(|w| match ObjectDatagram::decode(w.clone(), V) {
            Ok(d) => black_box(d).payload.len(),
            Err(_) => unreachable!("benchmark datagrams are valid"),
        })
        .sum()
}

/// Control-message framing benches.
///
/// PLACEHOLDER for the control-message engineer: bench `Message::encode_frame` /
/// `decode_frame` for SUBSCRIBE and SUBSCRIBE_OK here (Throughput::Elements per message and
/// Throughput::Bytes per frame), following the batch pattern above.
/// Control messages a relay handles per subscriber: SUBSCRIBE (with a token and a filter) and
/// SUBSCRIBE_OK, framed (type, length, payload) as on a request stream.
fn control_messages() -> Vec<Message> {
    use banyan_moq::coding::{Location, TrackName, TrackNamespace};
    use banyan_moq::message::{GroupOrder, Parameters, Subscribe, SubscribeOk, SubscriptionFilter, Token};
    let namespace = TrackNamespace::from_path("banyan/live/celebrity-show").unwrap_or_default();
    (0..BATCH as u64)
        .map(|i| {
            if i % 2 == 0 {
                let parameters = Parameters {
                    authorization_tokens: vec![Token::UseValue {
                        token_type: 0,
                        token_value: Bytes::from(vec![b'j'; 180]),
                    }],
                    subscriber_priority: Some(64),
                    group_order: Some(GroupOrder::Ascending),
                    subscription_filter: Some(SubscriptionFilter::LargestObject),
                    ..Default::default()
                };
                Message::from(Subscribe {
                    request_id: i,
                    track_namespace: namespace.clone(),
                    track_name: TrackName::from("video"),
                    parameters,
                })
            } else {
                let parameters = Parameters {
                    largest_object: Some(Location::new(i, 29)),
                    ..Default::default()
                };
                Message::from(SubscribeOk {
                    track_alias: i,
                    parameters,
                    track_properties: Default::default(),
                })
            }
        })
        .collect()
}

fn control_benches(c: &mut Criterion) {
    let messages = control_messages();
    let mut wire = BytesMut::new();
    for message in &messages {
        if message.encode_frame(&mut wire, V).is_err() {
            unreachable!("benchmark messages are valid");
        }
    }
    let wire = wire.freeze();
    let mut group = c.benchmark_group("control/subscribe+subscribe_ok");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("encode", |b| {
        let mut out = BytesMut::with_capacity(wire.len());
        b.iter(|| {
            out.clear();
            for message in &messages {
                let _ = message.encode_frame(&mut out, V);
            }
            black_box(out.len())
        })
    });
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut cursor = wire.clone();
            let mut count = 0;
            while let Ok(message) = Message::decode_frame(&mut cursor, V, MAX_MESSAGE_SIZE) {
                black_box(&message);
                count += 1;
            }
            assert_eq!(count, BATCH);
        })
    });
    group.finish();
}

criterion_group!(benches, subgroup_benches, datagram_benches, control_benches);
criterion_main!(benches);
