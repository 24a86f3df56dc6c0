//! Proves the UDP impairment proxy does what its counters say: a clean proxy forwards every
//! datagram both ways; loss, delay, duplication, reordering and the rate cap happen and the
//! counters agree with what the receiver saw; each client gets its own upstream socket, and
//! idle clients are forgotten.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banyan_tests::impair::{Impairment, Proxy, ProxyConfig, ProxyStats};
use tokio::net::UdpSocket;
use tokio::time::{timeout, Instant};

/// What the echo server has seen.
#[derive(Debug, Default)]
struct EchoLog {
    packets: u64,
    sources: HashSet<SocketAddr>,
}

/// A UDP echo server on a free loopback port; runs until the test's runtime ends.
async fn echo_server() -> (SocketAddr, Arc<Mutex<EchoLog>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let log = Arc::new(Mutex::new(EchoLog::default()));
    let seen = log.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            {
                let mut log = seen.lock().unwrap();
                log.packets += 1;
                log.sources.insert(from);
            }
            let _ = socket.send_to(&buf[..len], from).await;
        }
    });
    (addr, log)
}

async fn proxy(upstream: SocketAddr, c2s: Impairment, s2c: Impairment, seed: u64) -> Proxy {
    let mut config = ProxyConfig::new(upstream);
    config.client_to_server = c2s;
    config.server_to_client = s2c;
    config.seed = seed;
    let (proxy, driver) = Proxy::bind(config).await.unwrap();
    tokio::spawn(driver);
    proxy
}

async fn client(proxy: &Proxy) -> Arc<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(proxy.local_addr()).await.unwrap();
    Arc::new(socket)
}

/// Receives on `socket` until `done` says enough or `limit` passes; returns sequence numbers
/// (first 4 bytes, big-endian) in arrival order.
async fn collect(socket: &UdpSocket, limit: Duration, mut done: impl FnMut(&[u32]) -> bool) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !done(&got) {
        match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Ok(Ok(len)) if len >= 4 => got.push(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]])),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    got
}

/// Sends `count` numbered datagrams of `size` bytes, paced so loopback buffers never overflow.
async fn send_numbered(socket: &UdpSocket, count: u32, size: usize) {
    let mut payload = vec![0u8; size.max(4)];
    for seq in 0..count {
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        socket.send(&payload).await.unwrap();
        if seq % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Polls the proxy's counters until `settled` holds (bounded).
async fn stats_when(proxy: &Proxy, settled: impl Fn(&ProxyStats) -> bool) -> ProxyStats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = proxy.stats();
        if settled(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_proxy_forwards_everything_both_ways() {
    let (echo, log) = echo_server().await;
    let proxy = proxy(echo, Impairment::default(), Impairment::default(), 1).await;
    let socket = client(&proxy).await;
    let receiver = {
        let socket = socket.clone();
        tokio::spawn(async move { collect(&socket, Duration::from_secs(10), |g| g.len() >= 500).await })
    };
    send_numbered(&socket, 500, 100).await;
    let mut got = receiver.await.unwrap();
    got.sort_unstable();
    assert_eq!(got, (0..500).collect::<Vec<_>>());
    let s = proxy.stats();
    for d in [s.client_to_server, s.server_to_client] {
        assert_eq!(d.packets_in, 500);
        assert_eq!(d.forwarded, 500);
        assert_eq!(d.bytes_forwarded, 500 * 100);
        assert_eq!(
            d.dropped_loss + d.dropped_rate + d.dropped_other + d.duplicated + d.reordered,
            0
        );
    }
    assert_eq!(log.lock().unwrap().packets, 500);
    assert_eq!(s.clients, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_loss_is_counted_exactly() {
    let (echo, log) = echo_server().await;
    let lossy = Impairment {
        loss: 0.10,
        ..Default::default()
    };
    let proxy = proxy(echo, lossy, Impairment::default(), 7).await;
    let socket = client(&proxy).await;
    let receiver = {
        let socket = socket.clone();
        // Nothing arrives more than a moment after the last send; stop once quiet.
        tokio::spawn(async move { collect(&socket, Duration::from_secs(3), |g| g.len() >= 2000).await })
    };
    send_numbered(&socket, 2000, 64).await;
    let s = stats_when(&proxy, |s| {
        s.client_to_server.packets_in == 2000 && s.server_to_client.forwarded == s.client_to_server.forwarded
    })
    .await;
    let got = receiver.await.unwrap();
    let c2s = s.client_to_server;
    assert_eq!(c2s.packets_in, 2000);
    assert!(
        (100..=300).contains(&c2s.dropped_loss),
        "dropped {} of 2000",
        c2s.dropped_loss
    );
    assert_eq!(c2s.forwarded + c2s.dropped_loss, 2000);
    assert_eq!(
        log.lock().unwrap().packets,
        c2s.forwarded,
        "echo server saw what the proxy forwarded"
    );
    let distinct: HashSet<u32> = got.iter().copied().collect();
    assert_eq!(distinct.len(), got.len(), "no duplicates without duplication");
    assert_eq!(
        got.len() as u64,
        c2s.forwarded,
        "client got back exactly what was forwarded"
    );
    assert_eq!(s.server_to_client.forwarded, c2s.forwarded);
    assert_eq!(s.server_to_client.dropped_loss, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_is_observed() {
    let (echo, _log) = echo_server().await;
    let delayed = Impairment {
        delay: Duration::from_millis(50),
        ..Default::default()
    };
    let proxy = proxy(echo, delayed, Impairment::default(), 1).await;
    let socket = client(&proxy).await;
    let mut buf = [0u8; 64];
    for seq in 0u32..5 {
        let sent = Instant::now();
        socket.send(&seq.to_be_bytes()).await.unwrap();
        let len = timeout(Duration::from_secs(2), socket.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let rtt = sent.elapsed();
        assert_eq!(&buf[..len], &seq.to_be_bytes());
        assert!(
            rtt >= Duration::from_millis(50),
            "rtt {rtt:?} below the 50 ms delay"
        );
        assert!(
            rtt < Duration::from_millis(1000),
            "rtt {rtt:?} far above the 50 ms delay"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplication_is_counted_and_observed() {
    let (echo, log) = echo_server().await;
    let dup = Impairment {
        duplicate: 0.2,
        ..Default::default()
    };
    let proxy = proxy(echo, dup, Impairment::default(), 3).await;
    let socket = client(&proxy).await;
    let receiver = {
        let socket = socket.clone();
        tokio::spawn(async move { collect(&socket, Duration::from_secs(3), |_| false).await })
    };
    send_numbered(&socket, 500, 64).await;
    let s = stats_when(&proxy, |s| {
        s.client_to_server.packets_in == 500 && s.server_to_client.forwarded == s.client_to_server.forwarded
    })
    .await;
    let got = receiver.await.unwrap();
    let c2s = s.client_to_server;
    assert!(
        (50..=150).contains(&c2s.duplicated),
        "duplicated {} of 500",
        c2s.duplicated
    );
    assert_eq!(c2s.forwarded, 500 + c2s.duplicated);
    assert_eq!(log.lock().unwrap().packets, c2s.forwarded);
    assert_eq!(got.len() as u64, c2s.forwarded);
    let distinct: HashSet<u32> = got.iter().copied().collect();
    assert_eq!(distinct.len(), 500, "every datagram arrived at least once");
    assert_eq!(
        got.len() - distinct.len(),
        c2s.duplicated as usize,
        "extra copies observed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_cap_limits_throughput_and_counts_drops() {
    const CAP: u64 = 100_000; // bytes per second
    const SIZE: usize = 1_000;
    let (echo, _log) = echo_server().await;
    let capped = Impairment {
        rate_bytes_per_s: Some(CAP),
        ..Default::default()
    };
    let proxy = proxy(echo, capped, Impairment::default(), 1).await;
    let socket = client(&proxy).await;
    let receiver = {
        let socket = socket.clone();
        tokio::spawn(async move { collect(&socket, Duration::from_millis(1_500), |_| false).await })
    };
    // Offer about 500 kB/s, five times the cap, for one second.
    let start = Instant::now();
    let mut payload = vec![0u8; SIZE];
    for seq in 0u32..500 {
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        socket.send(&payload).await.unwrap();
        if seq % 5 == 4 {
            tokio::time::sleep_until(start + Duration::from_millis(u64::from(seq + 1) * 2)).await;
        }
    }
    let offered_for = start.elapsed().as_secs_f64();
    let got = receiver.await.unwrap();
    let received = (got.len() * SIZE) as f64;
    let expected = CAP as f64 * offered_for;
    let s = proxy.stats().client_to_server;
    assert!(
        received > expected * 0.6 && received < expected * 1.4 + CAP as f64 * 0.05,
        "received {received} bytes in {offered_for:.2}s at a cap of {CAP} B/s"
    );
    assert!(s.dropped_rate > 200, "rate drops {}", s.dropped_rate);
    assert_eq!(s.packets_in, 500);
    assert_eq!(s.forwarded + s.dropped_rate, 500);
    assert_eq!(got.len() as u64, s.forwarded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_gets_its_own_upstream_socket() {
    let (echo, log) = echo_server().await;
    let proxy = proxy(echo, Impairment::default(), Impairment::default(), 1).await;
    let a = client(&proxy).await;
    let b = client(&proxy).await;
    let mut buf = [0u8; 16];
    for (socket, tag) in [(&a, b"a"), (&b, b"b"), (&a, b"a")] {
        socket.send(tag).await.unwrap();
        let len = timeout(Duration::from_secs(2), socket.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..len], tag, "each client gets its own replies");
    }
    let sources = log.lock().unwrap().sources.clone();
    assert_eq!(sources.len(), 2, "echo server saw {sources:?}");
    let ports: HashSet<u16> = sources.iter().map(SocketAddr::port).collect();
    assert_eq!(ports.len(), 2);
    let s = proxy.stats();
    assert_eq!((s.clients, s.clients_total), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_expire() {
    let (echo, _log) = echo_server().await;
    let mut config = ProxyConfig::new(echo);
    config.idle_timeout = Duration::from_millis(100);
    let (proxy, driver) = Proxy::bind(config).await.unwrap();
    tokio::spawn(driver);
    let socket = client(&proxy).await;
    let mut buf = [0u8; 16];
    socket.send(b"x").await.unwrap();
    timeout(Duration::from_secs(2), socket.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(proxy.stats().clients, 1);
    let s = stats_when(&proxy, |s| s.clients_expired == 1).await;
    assert_eq!((s.clients, s.clients_expired), (0, 1));
    // A returning client is simply a new one.
    socket.send(b"y").await.unwrap();
    timeout(Duration::from_secs(2), socket.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(proxy.stats().clients_total, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordering_is_counted_and_observed() {
    let (echo, _log) = echo_server().await;
    let reorder = Impairment {
        reorder: 0.2,
        reorder_delay: Duration::from_millis(20),
        ..Default::default()
    };
    let proxy = proxy(echo, reorder, Impairment::default(), 5).await;
    let socket = client(&proxy).await;
    let receiver = {
        let socket = socket.clone();
        tokio::spawn(async move { collect(&socket, Duration::from_secs(10), |g| g.len() >= 500).await })
    };
    send_numbered(&socket, 500, 64).await;
    let got = receiver.await.unwrap();
    assert_eq!(got.len(), 500);
    let s = proxy.stats().client_to_server;
    assert!(
        (50..=150).contains(&s.reordered),
        "reordered {} of 500",
        s.reordered
    );
    let overtaken = got.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(overtaken > 0, "no datagram arrived out of order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impairments_change_while_traffic_flows() {
    let (echo, _log) = echo_server().await;
    let proxy = proxy(echo, Impairment::default(), Impairment::default(), 7).await;
    let socket = client(&proxy).await;

    // Clean: 100 datagrams there and back.
    let receiver = {
        let socket = socket.clone();
        tokio::spawn(async move { collect(&socket, Duration::from_secs(5), |g| g.len() >= 100).await })
    };
    send_numbered(&socket, 100, 100).await;
    assert_eq!(receiver.await.unwrap().len(), 100);

    // Everything lost on the way back from now on: the echo still answers, nothing returns.
    let blackhole: Impairment = "loss=100%".parse().unwrap();
    proxy.set_impairments(Impairment::default(), blackhole.clone());
    assert_eq!(proxy.impairments().1, blackhole);
    tokio::time::sleep(Duration::from_millis(50)).await;
    send_numbered(&socket, 100, 100).await;
    let s = stats_when(&proxy, |s| s.server_to_client.dropped_loss >= 100).await;
    assert_eq!(s.server_to_client.dropped_loss, 100);
    assert_eq!(
        s.server_to_client.forwarded, 100,
        "only the clean phase came back"
    );

    // Lifted again: traffic returns.
    proxy.set_impairments(Impairment::default(), Impairment::default());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let receiver = {
        let socket = socket.clone();
        tokio::spawn(async move { collect(&socket, Duration::from_secs(5), |g| g.len() >= 100).await })
    };
    send_numbered(&socket, 100, 100).await;
    assert_eq!(receiver.await.unwrap().len(), 100);
}
