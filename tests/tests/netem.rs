//! Proves `banyan-netem` impairs real traffic between two network namespaces, for UDP and the
//! kernel's TCP alike: 20 ms each way shows as a round trip of at least 40 ms, 50 % loss each
//! way loses about three datagrams in four round trips (and the link's counters say so), TCP
//! carries 3 MB intact through 3 % loss, and the namespaces are gone once it is stopped.
//!
//! Needs root, /dev/net/tun and iproute2 (CI runs as root); it fails, rather than skips,
//! without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const NETEM: &str = env!("CARGO_BIN_EXE_banyan-netem");
const ADDR_B: &str = "10.77.0.2";

/// A running `banyan-netem` link; stopped with SIGTERM (so it cleans up) when dropped.
struct Netem {
    child: Child,
    ns_a: String,
    ns_b: String,
    stderr: mpsc::Receiver<String>,
}

impl Netem {
    /// Starts a link named after `tag` with `args`, and waits until it is ready.
    fn start(tag: &str, args: &[&str]) -> Netem {
        let euid = banyan_tests::netem::effective_uid();
        assert_eq!(
            euid,
            Some(0),
            "tests/tests/netem.rs needs root (network namespaces and TUN devices); CI runs as root, \
             run it with sudo locally"
        );
        assert!(
            Path::new("/dev/net/tun").exists(),
            "tests/tests/netem.rs needs /dev/net/tun"
        );
        let ns_a = format!("bnt{}{tag}-a", std::process::id() % 100_000);
        let ns_b = format!("bnt{}{tag}-b", std::process::id() % 100_000);
        let mut child = Command::new(NETEM)
            .args(["--ns-a", &ns_a, "--ns-b", &ns_b, "--replace"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting banyan-netem");
        let stderr = lines(child.stderr.take().unwrap());
        let netem = Netem {
            child,
            ns_a,
            ns_b,
            stderr,
        };
        netem.wait_for("banyan-netem: ready");
        netem
    }

    /// Waits (10 s at most) for a stderr line starting with `prefix`; returns it.
    fn wait_for(&self, prefix: &str) -> String {
        loop {
            match self.stderr.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => panic!("banyan-netem printed no {prefix:?} ({e})"),
            }
        }
    }

    /// Starts the probe server in namespace B and waits until it listens.
    fn serve(&self) -> Server {
        let listen = format!("{ADDR_B}:7000");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns_b, NETEM, "serve", "--listen", &listen])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting banyan-netem serve");
        let stdout = lines(child.stdout.take().unwrap());
        let server = Server(child);
        let first = stdout.recv_timeout(Duration::from_secs(10));
        assert!(
            first.as_deref().is_ok_and(|l| l.starts_with("serving:")),
            "probe server did not start: {first:?}"
        );
        server
    }

    /// Runs `banyan-netem probe ARGS` in namespace A (60 s at most); returns its stdout line.
    fn probe(&self, args: &[&str]) -> String {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.ns_a, "timeout", "60", NETEM, "probe"])
            .args(args)
            .output()
            .expect("running banyan-netem probe");
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
        assert!(
            output.status.success(),
            "probe {args:?} failed ({}): {stdout} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Stops the link with SIGTERM; returns its final counters, per direction
    /// (`a->b`, `b->a`), as `(key, value)` pairs.
    fn stop(mut self) -> [Vec<(String, u64)>; 2] {
        terminate(&self.child);
        let line = self.wait_for("banyan-netem: final");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "banyan-netem exited with {status}");
        for ns in [&self.ns_a, &self.ns_b] {
            assert!(
                !Path::new("/run/netns").join(ns).exists(),
                "namespace {ns} left behind"
            );
        }
        let rest = line.trim_start_matches("banyan-netem: final ");
        let (a_to_b, b_to_a) = rest.split_once(" | ").unwrap();
        [counters(a_to_b, "a->b "), counters(b_to_a, "b->a ")]
    }
}

impl Drop for Netem {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            terminate(&self.child);
            let _ = self.child.wait();
        }
    }
}

/// The probe server; killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGTERM (not `Child::kill`'s SIGKILL, which would leave the namespaces behind).
fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The lines of `stream`, read on a thread.
fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            eprintln!("  | {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `in 10 fwd 9 loss 1 …` (after `prefix`) as pairs.
fn counters(text: &str, prefix: &str) -> Vec<(String, u64)> {
    let words: Vec<&str> = text.trim_start_matches(prefix).split_whitespace().collect();
    words
        .chunks(2)
        .map(|kv| (kv[0].to_string(), kv[1].parse().unwrap()))
        .collect()
}

fn get(counters: &[(String, u64)], key: &str) -> u64 {
    counters.iter().find(|(k, _)| k == key).unwrap().1
}

/// `key VALUE` in a probe's output line.
fn field<T: std::str::FromStr>(line: &str, key: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| *w == key).unwrap();
    words[i + 1].parse().unwrap()
}

#[test]
fn delay_each_way_shows_in_the_round_trip() {
    let netem = Netem::start("d", &["--delay", "20ms"]);
    let server = netem.serve();
    let line = netem.probe(&[
        "udp",
        &format!("{ADDR_B}:7000"),
        "--count",
        "20",
        "--interval",
        "10ms",
    ]);
    eprintln!("{line}");
    assert_eq!(field::<u64>(&line, "received"), 20, "{line}");
    let min_rtt: f64 = field(&line, "min");
    assert!(
        min_rtt >= 40.0,
        "round trip {min_rtt} ms through 20 ms each way: {line}"
    );
    drop(server);
    let [a_to_b, b_to_a] = netem.stop();
    for d in [&a_to_b, &b_to_a] {
        assert!(get(d, "fwd") >= 20, "{d:?}");
        assert_eq!(get(d, "loss"), 0, "{d:?}");
    }
}

#[test]
fn half_the_udp_datagrams_are_lost_each_way() {
    let netem = Netem::start("l", &["--loss", "0.5", "--seed", "3"]);
    let server = netem.serve();
    let line = netem.probe(&[
        "udp",
        &format!("{ADDR_B}:7000"),
        "--count",
        "400",
        "--interval",
        "1ms",
        "--linger",
        "300ms",
    ]);
    eprintln!("{line}");
    // A round trip survives two 50 % draws: 100 of 400 expected (σ ≈ 8.7); ±40 is 4.6 σ.
    let received: u64 = field(&line, "received");
    assert!(
        (60..=140).contains(&received),
        "{received} of 400 round trips: {line}"
    );
    drop(server);
    let [a_to_b, b_to_a] = netem.stop();
    for d in [&a_to_b, &b_to_a] {
        let (packets, lost) = (get(d, "in"), get(d, "loss"));
        assert!(packets >= 100, "{d:?}");
        // B → A sees only the ≈ 200 survivors (σ of the share ≈ 0.035); 0.35-0.65 is > 4 σ.
        let share = lost as f64 / packets as f64;
        assert!((0.35..=0.65).contains(&share), "{lost} of {packets} lost: {d:?}");
        assert_eq!(get(d, "fwd") + lost, packets, "{d:?}");
    }
}

#[test]
fn tcp_carries_megabytes_intact_through_loss() {
    let netem = Netem::start("t", &["--delay", "20ms", "--loss", "3%", "--seed", "5"]);
    let server = netem.serve();
    let line = netem.probe(&["tcp", &format!("{ADDR_B}:7000"), "--bytes", "3000000"]);
    eprintln!("{line}");
    assert_eq!(field::<u64>(&line, "received"), 3_000_000, "{line}");
    assert_eq!(field::<String>(&line, "intact"), "true", "{line}");
    drop(server);
    let [a_to_b, b_to_a] = netem.stop();
    // The data went A to B: about 2,000 full segments, some of them lost and sent again.
    assert!(get(&a_to_b, "in") >= 2_000, "{a_to_b:?}");
    assert!(
        get(&a_to_b, "loss") > 0 && get(&b_to_a, "loss") > 0,
        "{a_to_b:?} {b_to_a:?}"
    );
}
