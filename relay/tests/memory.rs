//! Proves the relay's fan-out, slow-subscriber skipping, like windows and parent failover on
//! tokio's paused clock, with relays ([`Node`]s) and clients joined by `banyan_tests::mem`
//! pairs: exact virtual-time latencies and counts, milliseconds of wall time, no sockets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banyan_moq::coding::{PublishDoneCode, TrackName, TrackNamespace};
use banyan_moq::message::{Parameters, PublishNamespace, Subscribe};
use banyan_moq::session::transport::Connection;
use banyan_moq::session::{
    ClientOptions, Error, PendingSession, Request, Session, SessionConfig, SessionDriver, Subscription,
    TrackEvent,
};
use banyan_moq::Version;
use banyan_relay::config::RelayConfig;
use banyan_relay::interact::payload::decode_total;
use banyan_relay::relay::Node;
use banyan_relay::upstream::{Dial, DialFuture};
use banyan_tests::mem::{self, Transport};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;
use url::Url;

use common::{interact, like_datagram};

/// One-way latency of every link.
const LATENCY: Duration = Duration::from_millis(5);

fn link() -> mem::Config {
    mem::Config::symmetric(LATENCY, 0.0)
}

/// A relay configured by `args` (auth off), dialing its parents with `dial`.
fn node(args: &[&str], dial: Option<Arc<dyn Dial>>) -> Node {
    let mut all = vec!["banyan-relay", "--dev-cert", "--insecure-no-auth"];
    all.extend_from_slice(args);
    let config = RelayConfig::load_from(all, |_| None).unwrap();
    let node = Node::new(&config, dial).unwrap();
    node.start();
    node
}

/// A session to `node` over a new pair configured by `config`, its relay side served by
/// `node`; the client's driver is returned to be run, the server's transport to be closed.
async fn dial_node(
    node: &Node,
    config: &mem::Config,
    url: &Url,
    options: ClientOptions,
    session: SessionConfig,
) -> Result<(Session, SessionDriver, Arc<Transport>), Error> {
    let (client, server) = mem::pair(config);
    let accepting = PendingSession::accept_transport(
        server.clone(),
        config.kind,
        Version::default(),
        None,
        node.session_config().clone(),
    );
    let relay = node.clone();
    tokio::spawn(async move {
        if let Ok(pending) = accepting.await {
            relay.serve(pending).await;
        }
    });
    let (session, driver) =
        Session::connect_transport(client, config.kind, Version::default(), url, options, session).await?;
    Ok((session, driver, server))
}

/// A client session to `node` over a pair configured by `config`, its driver running.
async fn connect(node: &Node, config: &mem::Config) -> Session {
    let url = Url::parse("moqt://relay.test/").unwrap();
    let (session, driver, _) = dial_node(
        node,
        config,
        &url,
        ClientOptions::default(),
        SessionConfig::default(),
    )
    .await
    .unwrap();
    tokio::spawn(driver.run());
    session
}

/// Dials parents by host name over in-memory pairs, keeping each link's parent-side
/// transport so a test can cut it.
#[derive(Debug, Default)]
struct MemDial {
    nodes: Mutex<HashMap<String, Node>>,
    links: Mutex<Vec<(String, Arc<Transport>)>>,
}

impl MemDial {
    fn add(&self, host: &str, node: &Node) {
        self.nodes.lock().unwrap().insert(host.into(), node.clone());
    }

    /// The relay at `host` is gone: close every link to it from its side, and refuse new ones.
    fn cut(&self, host: &str) {
        self.nodes.lock().unwrap().remove(host);
        for (to, transport) in self.links.lock().unwrap().iter() {
            if to == host {
                transport.close(0, "parent gone");
            }
        }
    }
}

impl Dial for MemDial {
    fn dial<'a>(&'a self, url: &'a Url, options: ClientOptions) -> DialFuture<'a> {
        Box::pin(async move {
            let host = url.host_str().unwrap_or_default().to_string();
            let node = self.nodes.lock().unwrap().get(&host).cloned();
            let node = node.ok_or_else(|| Error::Connect(format!("no relay {host}")))?;
            let config = node.session_config().clone();
            let (session, driver, server) = dial_node(&node, &link(), url, options, config).await?;
            self.links.lock().unwrap().push((host, server));
            Ok((session, driver))
        })
    }
}

/// A live track: `groups` groups of `objects` objects of `size` bytes, one every `interval`.
#[derive(Clone, Copy, Debug)]
struct Feed {
    groups: u64,
    objects: u64,
    interval: Duration,
    size: usize,
}

/// The payload of object (group, object), written now: the time since `base` and the ids,
/// padded to `size`.
fn stamped(base: Instant, group: u64, object: u64, size: usize) -> Bytes {
    let mut payload = BytesMut::with_capacity(size.max(24));
    payload.put_u64(u64::try_from(base.elapsed().as_micros()).unwrap());
    payload.put_u64(group);
    payload.put_u64(object);
    payload.resize(size.max(24), 0);
    payload.freeze()
}

/// The stamp, group and object id of a [`stamped`] payload.
fn unstamp(payload: &[u8]) -> (Duration, u64, u64) {
    let word = |i: usize| u64::from_be_bytes(payload[i * 8..i * 8 + 8].try_into().unwrap());
    (Duration::from_micros(word(0)), word(1), word(2))
}

/// A publisher of `namespace`/`video`: every SUBSCRIBE it accepts gets `feed` once the gate
/// opens; it counts the SUBSCRIBEs.
struct Publisher {
    subscribes: Arc<AtomicUsize>,
    gate: tokio::sync::watch::Sender<bool>,
    /// The last (group, object) written.
    written: tokio::sync::watch::Receiver<(u64, u64)>,
    /// Withdraws the namespace when dropped.
    _publication: banyan_moq::session::NamespacePublication,
}

async fn publish(session: Session, namespace: &str, feed: Feed, base: Instant) -> Publisher {
    let publication = session
        .publish_namespace(PublishNamespace {
            request_id: 0,
            track_namespace: TrackNamespace::from_path(namespace).unwrap(),
            parameters: Parameters::default(),
        })
        .await
        .unwrap();
    let subscribes = Arc::new(AtomicUsize::new(0));
    let (gate, opened) = tokio::sync::watch::channel(false);
    let counted = subscribes.clone();
    let (wrote, written) = tokio::sync::watch::channel((0, 0));
    tokio::spawn(async move {
        while let Some(Request::Subscribe(request)) = session.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut opened = opened.clone();
            let wrote = wrote.clone();
            tokio::spawn(async move {
                let writer = request.accept(Default::default()).await.unwrap();
                opened.wait_for(|open| *open).await.unwrap();
                for group in 0..feed.groups {
                    let mut subgroup = writer.open_subgroup(group, 0, Some(1), false).await.unwrap();
                    for object in 0..feed.objects {
                        let payload = stamped(base, group, object, feed.size);
                        subgroup.write_payload(object, payload).await.unwrap();
                        wrote.send_replace((group, object));
                        tokio::time::sleep(feed.interval).await;
                    }
                    subgroup.finish();
                }
                writer.finish(PublishDoneCode::TrackEnded, "done").await.unwrap();
            });
        }
    });
    Publisher {
        subscribes,
        gate,
        written,
        _publication: publication,
    }
}

fn subscribe_msg(namespace: &str, track: &str) -> Subscribe {
    Subscribe {
        request_id: 0,
        track_namespace: TrackNamespace::from_path(namespace).unwrap(),
        track_name: TrackName::from(track),
        parameters: Parameters::default(),
    }
}

/// What one subscriber received: each object's latency and write time (since the test's
/// base) by (group, object), and how the subscription ended.
#[derive(Debug, Default)]
struct Received {
    latency: BTreeMap<(u64, u64), Duration>,
    written: BTreeMap<(u64, u64), Duration>,
    done: Option<PublishDoneCode>,
}

impl Received {
    /// Object ids per group, in arrival order.
    fn groups(&self) -> BTreeMap<u64, Vec<u64>> {
        let mut groups: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (group, object) in self.latency.keys() {
            groups.entry(*group).or_default().push(*object);
        }
        groups
    }
}

/// Read `subscription` to its end, every subgroup stream concurrently.
async fn read_all(mut subscription: Subscription, base: Instant) -> Received {
    let received = Arc::new(Mutex::new(Received::default()));
    let mut streams = tokio::task::JoinSet::new();
    while let Some(event) = subscription.next().await.unwrap() {
        match event {
            TrackEvent::Subgroup(mut subgroup) => {
                let received = received.clone();
                streams.spawn(async move {
                    // A skipped group's stream is reset: keep what arrived before.
                    while let Ok(Some(object)) = subgroup.next().await {
                        let (stamp, group, id) = unstamp(&object.payload);
                        assert_eq!((group, id), (subgroup.group_id(), object.object_id));
                        let latency = base.elapsed() - stamp;
                        let mut received = received.lock().unwrap();
                        received.latency.insert((group, id), latency);
                        received.written.insert((group, id), stamp);
                    }
                });
            }
            TrackEvent::Done(done) => received.lock().unwrap().done = Some(done.status_code),
            other => panic!("unexpected {other:?}"),
        }
    }
    while streams.join_next().await.transpose().unwrap().is_some() {}
    Arc::into_inner(received).unwrap().into_inner().unwrap()
}

#[tokio::test(start_paused = true)]
async fn twenty_subscribers_make_one_upstream_subscribe_and_all_get_every_object() {
    const SUBSCRIBERS: usize = 20;
    let feed = Feed {
        groups: 4,
        objects: 5,
        interval: Duration::from_millis(10),
        size: 100,
    };
    let base = Instant::now();
    let relay = node(&[], None);
    let publisher = publish(connect(&relay, &link()).await, "crowd/show", feed, base).await;
    let config = link();
    let sessions = futures::future::join_all((0..SUBSCRIBERS).map(|_| connect(&relay, &config))).await;
    let subscriptions = futures::future::join_all(
        sessions
            .iter()
            .map(|s| s.subscribe(subscribe_msg("crowd/show", "video"))),
    )
    .await;
    let readers: Vec<_> = subscriptions
        .into_iter()
        .map(|s| tokio::spawn(read_all(s.unwrap(), base)))
        .collect();
    assert_eq!(publisher.subscribes.load(Ordering::SeqCst), 1);
    assert_eq!(relay.metrics().upstream_subscribe_total.get(), 1);

    publisher.gate.send_replace(true);
    let every: Vec<u64> = (0..feed.objects).collect();
    for reader in readers {
        let received = reader.await.unwrap();
        let groups = received.groups();
        assert_eq!(groups.len() as u64, feed.groups);
        assert!(groups.values().all(|ids| *ids == every), "{groups:?}");
        // Publisher to relay, relay to subscriber: nothing waits anywhere else.
        assert!(received.latency.values().all(|l| *l == 2 * LATENCY));
        assert_eq!(received.done, Some(PublishDoneCode::TrackEnded));
    }
    assert_eq!(publisher.subscribes.load(Ordering::SeqCst), 1);
    assert_eq!(relay.metrics().upstream_subscribe_total.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_stops_reading_is_skipped_while_a_healthy_one_gets_everything_on_time() {
    const MAX_LAG: u64 = 2;
    // 100 ms groups of 10 KB, far more than the stuck subscriber's window.
    let feed = Feed {
        groups: 8,
        objects: 10,
        interval: Duration::from_millis(10),
        size: 1000,
    };
    let base = Instant::now();
    let relay = node(&["--max-lag-groups", &MAX_LAG.to_string()], None);
    let publisher = publish(connect(&relay, &link()).await, "slow/show", feed, base).await;
    let healthy_session = connect(&relay, &link()).await;
    let healthy = healthy_session
        .subscribe(subscribe_msg("slow/show", "video"))
        .await
        .unwrap();
    let healthy = tokio::spawn(read_all(healthy, base));
    let stuck_link = mem::Config {
        stream_window: 2000,
        ..link()
    };
    let stuck_session = connect(&relay, &stuck_link).await;
    // Subscribed, never read until the track is over.
    let stuck = stuck_session
        .subscribe(subscribe_msg("slow/show", "video"))
        .await
        .unwrap();

    publisher.gate.send_replace(true);
    let received = healthy.await.unwrap();
    let every: Vec<u64> = (0..feed.objects).collect();
    assert_eq!(received.groups().len() as u64, feed.groups);
    assert!(received.groups().values().all(|ids| *ids == every));
    assert!(received.latency.values().all(|l| *l == 2 * LATENCY));
    assert_eq!(received.done, Some(PublishDoneCode::TrackEnded));

    // Each new group beyond MAX_LAG + 1 in flight made the stuck one skip its oldest.
    let skipped = relay.metrics().groups_skipped();
    assert_eq!(skipped, feed.groups - (MAX_LAG + 1));
    let late = read_all(stuck, base).await;
    let complete: Vec<u64> = late
        .groups()
        .into_iter()
        .filter(|(_, ids)| *ids == every)
        .map(|(group, _)| group)
        .collect();
    assert_eq!(complete, (skipped..feed.groups).collect::<Vec<_>>());
}

/// Read a `likes` subscription until it shows `want`: how many objects that took.
async fn watch_likes(mut subscription: Subscription, want: u64) -> u64 {
    let mut objects = 0;
    loop {
        match subscription.next().await.unwrap() {
            Some(TrackEvent::Subgroup(mut reader)) => {
                while let Some(object) = reader.next().await.unwrap() {
                    objects += 1;
                    let total = decode_total(object.payload).unwrap();
                    assert!(total <= want, "total {total} ran past the {want} likes sent");
                    if total == want {
                        return objects;
                    }
                }
            }
            Some(TrackEvent::Datagram(_)) => objects += 1,
            Some(_) => {}
            None => panic!("likes track ended before reaching {want}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn likes_reach_watchers_once_per_window_not_once_per_like() {
    const WATCHERS: usize = 10;
    const LIKES: u64 = 100;
    const WINDOW: Duration = Duration::from_millis(100);
    let relay = node(&["--like-rate", "1000", "--like-window", "100ms"], None);
    let config = link();
    let sessions = futures::future::join_all((0..WATCHERS).map(|_| connect(&relay, &config))).await;
    let subscriptions = futures::future::join_all(
        sessions
            .iter()
            .map(|s| s.subscribe(subscribe_msg("likes/show", "likes"))),
    )
    .await;
    let watchers: Vec<_> = subscriptions
        .into_iter()
        .map(|s| tokio::spawn(watch_likes(s.unwrap(), LIKES)))
        .collect();

    let viewer = connect(&relay, &link()).await;
    let writer = interact(&viewer, "likes/show").await;
    // 100 likes/s for one second.
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / LIKES as u32);
    for total in 1..=LIKES {
        tick.tick().await;
        writer.send_datagram(like_datagram(total, 1, total)).unwrap();
    }
    for watcher in watchers {
        let objects = watcher.await.unwrap();
        // At most one object per window the likes spanned, +1 for the group the watcher joined
        // on (the bound the loopback test uses).
        let windows = started.elapsed().as_millis() / WINDOW.as_millis() + 1;
        assert!(
            u128::from(objects) <= windows + 1,
            "{objects} objects for {windows} windows"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_edge_whose_parent_is_cut_keeps_its_subscribers_fed_from_the_other_parent() {
    let feed = Feed {
        groups: 10,
        objects: 10,
        interval: Duration::from_millis(10),
        size: 200,
    };
    let base = Instant::now();
    let dial = Arc::new(MemDial::default());
    let via = || Some(dial.clone() as Arc<dyn Dial>);
    let origin = node(&["--relay-id", "origin"], via());
    let mid = |id: &str| node(&["--relay-id", id, "--upstream", "moqt://origin.test"], via());
    let (mid_a, mid_b) = (mid("mid-a"), mid("mid-b"));
    let edge = node(
        &[
            "--relay-id",
            "edge",
            "--upstream",
            "moqt://mid-a.test",
            "--upstream",
            "moqt://mid-b.test",
        ],
        via(),
    );
    dial.add("origin.test", &origin);
    dial.add("mid-a.test", &mid_a);
    dial.add("mid-b.test", &mid_b);

    let publisher = publish(connect(&origin, &link()).await, "tree/show", feed, base).await;
    let mut readers = Vec::new();
    for _ in 0..3 {
        let session = connect(&edge, &link()).await;
        let subscription = session
            .subscribe(subscribe_msg("tree/show", "video"))
            .await
            .unwrap();
        readers.push((session, tokio::spawn(read_all(subscription, base))));
    }
    assert_eq!(mid_a.metrics().upstream_subscribe_total.get(), 1);
    assert_eq!(mid_b.metrics().upstream_subscribe_total.get(), 0);

    publisher.gate.send_replace(true);
    // Mid-stream: halfway through group 4.
    let mut written = publisher.written.clone();
    written.wait_for(|w| *w >= (4, 4)).await.unwrap();
    let cut = base.elapsed();
    dial.cut("mid-a.test");

    for (_session, reader) in readers {
        let received = reader.await.unwrap();
        let groups = received.groups();
        assert_eq!(groups.keys().last(), Some(&(feed.groups - 1)));
        // Every group after the one cut short arrives whole.
        let every: Vec<u64> = (0..feed.objects).collect();
        for group in 5..feed.groups {
            assert_eq!(groups.get(&group), Some(&every), "group {group}");
        }
        // Within the failover bound: nothing after the cut waits more than a few round trips.
        let worst = received
            .latency
            .iter()
            .filter(|(key, _)| received.written[key] >= cut)
            .map(|(_, latency)| *latency)
            .max()
            .unwrap();
        assert!(
            worst <= Duration::from_millis(100),
            "worst latency after the cut {worst:?}"
        );
    }
    assert_eq!(edge.metrics().upstream_failovers.get(), 1);
    assert_eq!(mid_b.metrics().upstream_subscribe_total.get(), 1);
    assert_eq!(publisher.subscribes.load(Ordering::SeqCst), 1);
}
