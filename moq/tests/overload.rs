//! Proves that a `Fanout` whose subscriber cannot keep up (nothing it is sent is acknowledged,
//! as when the relay cannot packetize what it accepted) does not let the backlog decide what
//! goes out: an overtaken group yields to the newest group half its latency budget after it
//! was overtaken (its streams' send order drops below the newest group's), is skipped as late
//! at the full budget, and that budget adds the subscriber's lowest round trip, not a smoothed
//! RTT the sender's own backlog has inflated. On `banyan_tests::mem` under tokio's paused
//! clock, through a transport wrapper that records every stream's send order and can inflate
//! the RTT it reports: exact, whatever the machine's speed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use banyan_moq::coding::{TrackName, TrackNamespace};
use banyan_moq::message::{Parameters, Subscribe, SubscribeOk};
use banyan_moq::session::transport::{
    BiStream, BoxFuture, Connection, RecvStream, SendStream, TransportError,
};
use banyan_moq::session::{
    send_order, yielded_send_order, ClientOptions, PendingSession, Request, Session, SessionConfig,
    Subscription, TrackWriter, TransportKind,
};
use banyan_moq::track::{Fanout, LatencyBudget, Limits, Start, Step, TrackProducer};
use banyan_moq::Version;
use banyan_tests::mem::{self, Config, Link};
use bytes::Bytes;
use common::fanout::{assert_skipped_late, next_step, write_group};
use tokio::time::Instant;

/// The server side of a mem pair, recording each stream's send orders (first the one it was
/// opened with) and reporting its RTT plus `extra_rtt_ms`.
#[derive(Debug)]
struct Watched {
    inner: Arc<mem::Transport>,
    extra_rtt_ms: AtomicU64,
    streams: Mutex<Vec<Arc<Mutex<Vec<i32>>>>>,
}

impl Watched {
    /// The send orders of the stream opened with `order`, in the order they were set.
    fn orders_of_stream_opened_at(&self, order: i32) -> Vec<i32> {
        let streams = self.streams.lock().unwrap();
        let stream = streams
            .iter()
            .find(|s| s.lock().unwrap().first() == Some(&order))
            .unwrap_or_else(|| panic!("no stream opened with send order {order}"));
        let orders = stream.lock().unwrap().clone();
        orders
    }
}

impl Connection for Watched {
    fn open_bi(&self) -> BoxFuture<'_, Result<BiStream, TransportError>> {
        self.inner.open_bi()
    }

    fn open_uni(&self) -> BoxFuture<'_, Result<Box<dyn SendStream>, TransportError>> {
        Box::pin(async move {
            let inner = self.inner.open_uni().await?;
            let orders = Arc::new(Mutex::new(Vec::new()));
            self.streams.lock().unwrap().push(orders.clone());
            Ok(Box::new(WatchedSend { inner, orders }) as Box<dyn SendStream>)
        })
    }

    fn accept_bi(&self) -> BoxFuture<'_, Result<BiStream, TransportError>> {
        self.inner.accept_bi()
    }

    fn accept_uni(&self) -> BoxFuture<'_, Result<Box<dyn RecvStream>, TransportError>> {
        self.inner.accept_uni()
    }

    fn send_datagram(&self, datagram: Bytes) -> Result<(), TransportError> {
        self.inner.send_datagram(datagram)
    }

    fn read_datagram(&self) -> BoxFuture<'_, Result<Bytes, TransportError>> {
        self.inner.read_datagram()
    }

    fn close(&self, code: u64, reason: &str) {
        self.inner.close(code, reason);
    }

    fn closed(&self) -> BoxFuture<'_, TransportError> {
        self.inner.closed()
    }

    fn close_reason(&self) -> Option<TransportError> {
        self.inner.close_reason()
    }

    fn remote_address(&self) -> SocketAddr {
        self.inner.remote_address()
    }

    fn rtt(&self) -> Duration {
        self.inner.rtt() + Duration::from_millis(self.extra_rtt_ms.load(Ordering::Relaxed))
    }
}

#[derive(Debug)]
struct WatchedSend {
    inner: Box<dyn SendStream>,
    orders: Arc<Mutex<Vec<i32>>>,
}

impl SendStream for WatchedSend {
    fn poll_write_chunks(
        &mut self,
        cx: &mut Context<'_>,
        chunks: &mut [Bytes],
    ) -> Poll<Result<usize, TransportError>> {
        self.inner.poll_write_chunks(cx, chunks)
    }

    fn set_priority(&self, order: i32) {
        self.orders.lock().unwrap().push(order);
        self.inner.set_priority(order);
    }

    fn finish(&mut self) -> Result<(), TransportError> {
        self.inner.finish()
    }

    fn reset(&mut self, code: u64) {
        self.inner.reset(code);
    }

    fn stopped(&self) -> BoxFuture<'_, Result<Option<u64>, TransportError>> {
        self.inner.stopped()
    }
}

/// A subscription over a 20 ms-each-way mem pair whose subscriber never reads: every write is
/// taken (the window is large) and nothing is ever acknowledged. Returns the publisher's
/// writer, the watched server transport, and what must stay alive.
async fn stalled_subscriber() -> (TrackWriter, Arc<Watched>, Subscription, Session, Session) {
    let link = Link {
        latency: Duration::from_millis(20),
        ..Link::default()
    };
    let config = Config {
        to_server: link,
        to_client: link,
        ..Config::default()
    };
    let (client_transport, server_transport) = mem::pair(&config);
    let watched = Arc::new(Watched {
        inner: server_transport,
        extra_rtt_ms: AtomicU64::new(0),
        streams: Mutex::new(Vec::new()),
    });
    let url = "moqt://mem.test/live".parse().unwrap();
    let (kind, version) = (TransportKind::Quic, Version::default());
    let client = Session::connect_transport(
        client_transport,
        kind,
        version,
        &url,
        ClientOptions::default(),
        SessionConfig::default(),
    );
    let server = async {
        PendingSession::accept_transport(watched.clone(), kind, version, None, SessionConfig::default())
            .await?
            .accept()
            .await
    };
    let (client, server) = tokio::join!(client, server);
    let ((client, client_driver), (server, server_driver)) = (client.unwrap(), server.unwrap());
    tokio::spawn(client_driver.run());
    tokio::spawn(server_driver.run());
    let accepting = {
        let server = server.clone();
        tokio::spawn(async move {
            let Some(Request::Subscribe(request)) = server.accept().await else {
                panic!("expected SUBSCRIBE")
            };
            request.accept(SubscribeOk::default()).await.unwrap()
        })
    };
    let subscription = client
        .subscribe(Subscribe {
            request_id: 0,
            track_namespace: TrackNamespace::from_path("live").unwrap(),
            track_name: TrackName::from("video"),
            parameters: Parameters::default(),
        })
        .await
        .unwrap();
    (accepting.await.unwrap(), watched, subscription, client, server)
}

/// Group 0 begins, and one second later (one GOP) group 1 overtakes it. Returns when.
async fn overtake(track: &TrackProducer, fanout: &mut Fanout) -> Instant {
    write_group(track, 0, 3, 1000);
    assert_eq!(next_step(fanout).await, Step::Started { group: 0 });
    tokio::time::sleep(Duration::from_secs(1)).await;
    write_group(track, 1, 3, 1000);
    assert_eq!(next_step(fanout).await, Step::Started { group: 1 });
    assert_eq!(fanout.gop(), Some(Duration::from_secs(1)));
    Instant::now()
}

#[tokio::test(start_paused = true)]
async fn an_overtaken_group_yields_to_the_newest_then_is_skipped_as_late() {
    let (writer, watched, _unread, _client, _server) = stalled_subscriber().await;
    let track = TrackProducer::new(Limits::groups(8));
    let mut fanout =
        Fanout::new(track.consume(), writer.sender(), Start::CurrentGroup, 8).budget(LatencyBudget::Auto);
    let overtaken = overtake(&track, &mut fanout).await;
    // The subscription's group order is ascending (no GROUP_ORDER, no publisher preference):
    // group 0 was opened to go before group 1.
    let (first, second) = (send_order(128, 128, 0, false), send_order(128, 128, 1, false));
    assert!(first > second);

    // Budget one GOP + the 40 ms round trip: group 0 yields at half of it, 520 ms.
    let before_yield = tokio::time::timeout(Duration::from_millis(500), fanout.step()).await;
    assert!(
        before_yield.is_err(),
        "no step before the yield: {before_yield:?}"
    );
    assert_eq!(
        watched.orders_of_stream_opened_at(first),
        vec![first],
        "not yet yielded"
    );
    let after_yield = tokio::time::timeout(Duration::from_millis(100), fanout.step()).await;
    assert!(after_yield.is_err(), "a yield is not a step: {after_yield:?}");
    let orders = watched.orders_of_stream_opened_at(first);
    let yielded = yielded_send_order(128, 128);
    println!(
        "group 0's send order: {orders:?} by {:?} after group 1 began (group 1's: {second}, yielded: {yielded})",
        overtaken.elapsed()
    );
    assert_eq!(orders, vec![first, yielded]);
    assert!(yielded < second, "the newest group goes first now");
    assert_eq!(
        watched.orders_of_stream_opened_at(second),
        vec![second],
        "the newest group keeps its order"
    );

    // Then skipped at the full budget, as before.
    let waited = assert_skipped_late(&mut fanout, 0, overtaken, "budget 1 s + 40 ms RTT").await;
    println!("group 0 skipped as late {waited:?} after group 1 began (budget 1 s + 40 ms RTT)");
    assert_eq!(next_step(&mut fanout).await, Step::Finished { group: 0 });
    fanout.abandon().await;
}

#[tokio::test(start_paused = true)]
async fn the_budget_adds_the_lowest_rtt_not_one_the_backlog_inflated() {
    let (writer, watched, _unread, _client, _server) = stalled_subscriber().await;
    let track = TrackProducer::new(Limits::groups(8));
    let mut fanout =
        Fanout::new(track.consume(), writer.sender(), Start::CurrentGroup, 8).budget(LatencyBudget::Auto);
    write_group(&track, 0, 3, 1000);
    assert_eq!(next_step(&mut fanout).await, Step::Started { group: 0 });
    // The sender falls behind: acknowledgments are read late and the smoothed RTT it reports
    // grows from 40 ms to 2 s, though the path is as fast as ever.
    watched.extra_rtt_ms.store(1960, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    write_group(&track, 1, 3, 1000);
    assert_eq!(next_step(&mut fanout).await, Step::Started { group: 1 });
    let overtaken = Instant::now();
    let waited = assert_skipped_late(
        &mut fanout,
        0,
        overtaken,
        "budget 1 s + the lowest RTT (40 ms), not + the inflated 2 s",
    )
    .await;
    println!(
        "group 0 skipped as late {waited:?} after group 1 began (reported RTT {:?}, lowest 40 ms)",
        watched.rtt()
    );
    fanout.abandon().await;
}
