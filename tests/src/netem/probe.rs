//! Small probes that check a link from inside its namespaces (the machines this runs on have no
//! `ping`): a server that echoes UDP datagrams and checks TCP transfers on one port, a UDP
//! probe that measures round trips and loss, and a TCP probe that sends a known byte pattern
//! and learns whether it arrived intact.
//!
//! TCP exchange: the client sends the transfer's length (8 bytes, big-endian) and then that
//! many bytes of [`pattern`]; the server answers with the length it read and the FNV-1a hash
//! of the bytes (8 bytes each, big-endian) and closes.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Largest TCP transfer the server accepts.
pub const MAX_TRANSFER: u64 = 1 << 30;

/// What [`udp`] saw.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpReport {
    /// Datagrams sent.
    pub sent: u64,
    /// Distinct datagrams echoed back.
    pub received: u64,
    /// Round trips of the echoed datagrams, sorted.
    pub rtts: Vec<Duration>,
}

impl UdpReport {
    /// The `q` quantile (0.0..=1.0) of the round trips, if any came back.
    pub fn rtt(&self, q: f64) -> Option<Duration> {
        let last = self.rtts.len().checked_sub(1)?;
        let i = ((last as f64) * q.clamp(0.0, 1.0)).round() as usize;
        self.rtts.get(i).copied()
    }
}

impl std::fmt::Display for UdpReport {
    /// `udp: sent N received N rtt_ms min X p50 X max X`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64() * 1e3));
        write!(
            f,
            "udp: sent {} received {} rtt_ms min {} p50 {} max {}",
            self.sent,
            self.received,
            ms(self.rtt(0.0)),
            ms(self.rtt(0.5)),
            ms(self.rtt(1.0))
        )
    }
}

/// What [`tcp`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpReport {
    /// Bytes sent.
    pub sent: u64,
    /// Bytes the server read.
    pub received: u64,
    /// Whether the server's hash matches the bytes sent.
    pub intact: bool,
    /// From connecting to the server's answer.
    pub elapsed: Duration,
}

impl std::fmt::Display for TcpReport {
    /// `tcp: sent N received N intact true elapsed_ms X`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tcp: sent {} received {} intact {} elapsed_ms {}",
            self.sent,
            self.received,
            self.intact,
            self.elapsed.as_millis()
        )
    }
}

/// Serves both probes on `udp` and `tcp` (bound by the caller) until an error on the UDP
/// socket or the TCP listener; TCP clients are served concurrently, in tasks owned by the
/// returned future.
pub async fn serve(udp: UdpSocket, tcp: TcpListener) -> io::Result<()> {
    let mut buf = vec![0u8; 65_535];
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            r = udp.recv_from(&mut buf) => {
                let (len, from) = r?;
                let datagram = buf.get(..len).unwrap_or_default();
                // A lost echo is the link's business; the probe counts it.
                let _ = udp.send_to(datagram, from).await;
            }
            r = tcp.accept() => {
                let (stream, peer) = r?;
                clients.spawn(async move {
                    if let Err(e) = check_transfer(stream).await {
                        tracing::debug!(%peer, error = %e, "probe: tcp transfer failed");
                    }
                });
            }
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
        }
    }
}

/// Sends `count` datagrams of `size` bytes to `to`, one every `interval`, and waits up to
/// `linger` after the last for echoes.
pub async fn udp(
    to: SocketAddr,
    count: u64,
    size: usize,
    interval: Duration,
    linger: Duration,
) -> io::Result<UdpReport> {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or(to)
    } else {
        "[::]:0".parse().unwrap_or(to)
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(to).await?;
    let size = size.max(8);
    let mut sent_at: Vec<Option<Instant>> = Vec::new();
    let mut rtts = Vec::new();
    let mut payload = vec![0u8; size];
    let mut buf = vec![0u8; 65_535];
    let mut tick = tokio::time::interval(interval);
    let mut deadline = None;
    loop {
        let sending = (sent_at.len() as u64) < count;
        tokio::select! {
            _ = tick.tick(), if sending => {
                let seq = sent_at.len() as u64;
                if let Some(head) = payload.get_mut(..8) {
                    head.copy_from_slice(&seq.to_be_bytes());
                }
                sent_at.push(Some(Instant::now()));
                // A send error (no route yet, a full buffer) counts as a lost datagram.
                let _ = socket.send(&payload).await;
                if sent_at.len() as u64 == count {
                    deadline = Some(Instant::now() + linger);
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => break,
            r = socket.recv(&mut buf) => {
                let Ok(len) = r else { continue };
                let Some(head) = buf.get(..len.min(8)).and_then(|h| <[u8; 8]>::try_from(h).ok()) else {
                    continue;
                };
                let seq = u64::from_be_bytes(head);
                let slot = usize::try_from(seq).ok().and_then(|i| sent_at.get_mut(i));
                if let Some(slot) = slot {
                    if let Some(at) = slot.take() {
                        rtts.push(at.elapsed());
                    }
                }
            }
        }
    }
    rtts.sort();
    Ok(UdpReport {
        sent: sent_at.len() as u64,
        received: rtts.len() as u64,
        rtts,
    })
}

/// Sends `bytes` bytes of [`pattern`] to a [`serve`] at `to` and checks the answer.
pub async fn tcp(to: SocketAddr, bytes: u64) -> io::Result<TcpReport> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(to).await?;
    stream.write_all(&bytes.to_be_bytes()).await?;
    let mut hash = Fnv::default();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    while offset < bytes {
        let n = usize::try_from((bytes - offset).min(chunk.len() as u64)).unwrap_or(chunk.len());
        let part = chunk.get_mut(..n).unwrap_or_default();
        pattern(offset, part);
        hash.write(part);
        stream.write_all(part).await?;
        offset += n as u64;
    }
    stream.flush().await?;
    let received = stream.read_u64().await?;
    let theirs = stream.read_u64().await?;
    Ok(TcpReport {
        sent: bytes,
        received,
        intact: received == bytes && theirs == hash.finish(),
        elapsed: start.elapsed(),
    })
}

/// Fills `out` with the transfer pattern's bytes from `offset` on: a byte sequence whose
/// period (251, a prime) does not divide any segment size, so a segment dropped, repeated or
/// misplaced changes the hash.
pub fn pattern(offset: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = ((offset + i as u64) % 251) as u8;
    }
}

/// Reads one transfer and answers with its length and hash.
async fn check_transfer(mut stream: TcpStream) -> io::Result<()> {
    let len = stream.read_u64().await?;
    if len > MAX_TRANSFER {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "transfer too large"));
    }
    let mut hash = Fnv::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = stream.read(buf.get_mut(..want).unwrap_or_default()).await?;
        if n == 0 {
            break;
        }
        hash.write(buf.get(..n).unwrap_or_default());
        left -= n as u64;
    }
    stream.write_u64(len - left).await?;
    stream.write_u64(hash.finish()).await?;
    stream.shutdown().await
}

/// 64-bit FNV-1a: enough to tell an intact transfer from a damaged one (not a defence against
/// anyone).
#[derive(Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probes_over_loopback() {
        let udp_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp_socket.local_addr().unwrap();
        let listener = TcpListener::bind(addr).await.unwrap();
        tokio::spawn(serve(udp_socket, listener));

        let report = udp(
            addr,
            20,
            100,
            Duration::from_millis(1),
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        assert_eq!((report.sent, report.received), (20, 20), "{report}");
        assert!(report.rtt(1.0).unwrap() < Duration::from_millis(500));

        let report = tcp(addr, 300_001).await.unwrap();
        assert_eq!(report.received, 300_001);
        assert!(report.intact, "{report}");
    }

    #[test]
    fn hash_sees_a_misplaced_segment() {
        let mut whole = vec![0u8; 3000];
        pattern(0, &mut whole);
        let mut a = Fnv::default();
        a.write(&whole);
        let mut b = Fnv::default();
        b.write(&whole[1448..2896]);
        b.write(&whole[..1448]);
        b.write(&whole[2896..]);
        assert_ne!(a.finish(), b.finish());
    }
}
