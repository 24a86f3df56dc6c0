//! The binding for the `qmux` crate: QMux (draft-ietf-quic-qmux) sessions, i.e. QUIC's streams,
//! flow control and datagrams carried over one WebSocket (see [`websocket`](crate::session::websocket)).
//!
//! `qmux`'s streams are written through `async fn`s that borrow the stream, and learn of a
//! STOP_SENDING from the same `&mut self`; the session's traits want poll-based writes and a
//! `stopped()` that can be awaited while another task writes. So each send stream is driven by
//! a small task that owns the `qmux::SendStream`: the [`QmuxSend`] handle passes it chunks
//! through a bounded channel (the bound is the backpressure: a writer waits while
//! [`SEND_QUEUE`] chunks are queued, besides `qmux`'s own queue and flow control), orders
//! (priority, FIN, reset) through an unbounded one, and learns how the stream ended through a
//! `watch`. Reads need no task: `qmux`'s `read_chunk` waits only on tokio channels, whose
//! receivers keep the reader's waker, so a fresh future per poll loses nothing.
//!
//! Delivery: `qmux` reports a stream finished once its FIN was written to the WebSocket, so
//! [`SendStream::stopped`] resolves `Ok(None)` when everything reached the kernel's TCP send
//! buffer. TCP retransmits what is there; nothing written to it can be taken back, which is
//! also why a reset after FIN abandons nothing (`qmux` ignores it, as RESET_STREAM after a FIN
//! would be pointless once the bytes are on the socket).

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use web_transport_trait::{RecvStream as _, SendStream as _, Session as _, Stats as _};

use super::{BiStream, BoxFuture, Connection, RecvStream, SendStream, TransportError};

/// Chunks a send stream queues for its task before a writer waits.
const SEND_QUEUE: usize = 4;

/// A QMux session as a [`Connection`].
#[derive(Clone)]
pub struct QmuxConnection {
    session: qmux::Session,
    remote: SocketAddr,
    /// Why the session closed, once known: set by `close`, or the first time `closed` or
    /// `close_reason` finds the session closed.
    reason: Arc<OnceLock<TransportError>>,
}

impl fmt::Debug for QmuxConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QmuxConnection")
            .field("remote", &self.remote)
            .field("closed", &self.reason.get())
            .finish()
    }
}

impl QmuxConnection {
    /// Wrap an established session with the peer's address. Dropping every clone closes it.
    pub fn new(session: qmux::Session, remote: SocketAddr) -> Self {
        Self {
            session,
            remote,
            reason: Arc::new(OnceLock::new()),
        }
    }
}

impl Connection for QmuxConnection {
    fn open_bi(&self) -> BoxFuture<'_, Result<BiStream, TransportError>> {
        Box::pin(async move {
            let (send, recv) = self.session.open_bi().await.map_err(session_error)?;
            Ok((
                Box::new(QmuxSend::spawn(send)) as Box<dyn SendStream>,
                Box::new(QmuxRecv(recv)) as Box<dyn RecvStream>,
            ))
        })
    }

    fn open_uni(&self) -> BoxFuture<'_, Result<Box<dyn SendStream>, TransportError>> {
        Box::pin(async move {
            let send = self.session.open_uni().await.map_err(session_error)?;
            Ok(Box::new(QmuxSend::spawn(send)) as Box<dyn SendStream>)
        })
    }

    fn accept_bi(&self) -> BoxFuture<'_, Result<BiStream, TransportError>> {
        Box::pin(async move {
            let (send, recv) = self.session.accept_bi().await.map_err(session_error)?;
            Ok((
                Box::new(QmuxSend::spawn(send)) as Box<dyn SendStream>,
                Box::new(QmuxRecv(recv)) as Box<dyn RecvStream>,
            ))
        })
    }

    fn accept_uni(&self) -> BoxFuture<'_, Result<Box<dyn RecvStream>, TransportError>> {
        Box::pin(async move {
            let recv = self.session.accept_uni().await.map_err(session_error)?;
            Ok(Box::new(QmuxRecv(recv)) as Box<dyn RecvStream>)
        })
    }

    fn send_datagram(&self, datagram: Bytes) -> Result<(), TransportError> {
        self.session.send_datagram(datagram).map_err(session_error)
    }

    fn read_datagram(&self) -> BoxFuture<'_, Result<Bytes, TransportError>> {
        Box::pin(async move { self.session.recv_datagram().await.map_err(session_error) })
    }

    fn close(&self, code: u64, reason: &str) {
        let _ = self.reason.set(TransportError::LocallyClosed);
        self.session.close(code.try_into().unwrap_or(u32::MAX), reason);
    }

    fn closed(&self) -> BoxFuture<'_, TransportError> {
        Box::pin(async move {
            let error = session_error(self.session.closed().await);
            self.reason.get().cloned().unwrap_or(error)
        })
    }

    fn close_reason(&self) -> Option<TransportError> {
        if let Some(reason) = self.reason.get() {
            return Some(reason.clone());
        }
        // `closed` resolves on its first poll once the session has ended, so one poll with a
        // waker that does nothing answers "closed yet?" without waiting.
        let mut closed = pin!(self.session.closed());
        match closed.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(error) => Some(self.reason.get_or_init(|| session_error(error)).clone()),
            Poll::Pending => None,
        }
    }

    fn remote_address(&self) -> SocketAddr {
        self.remote
    }

    fn rtt(&self) -> Duration {
        // QMux measures RTT with QX_PING once a second; before the first answer, assume a
        // short path rather than none.
        self.session.stats().rtt().unwrap_or(Duration::from_millis(10))
    }
}

/// How a send stream's task ended, as its handle sees it.
#[derive(Debug, Clone)]
enum Ended {
    /// Still running.
    Open,
    /// Everything, FIN included, was written to the WebSocket.
    Delivered,
    /// The peer sent STOP_SENDING with this code.
    Stopped(u64),
    /// We reset the stream.
    Reset,
    /// The session failed or closed.
    Failed(TransportError),
}

/// Orders for a send stream's task, besides its data.
#[derive(Debug)]
enum Order {
    Priority(i32),
    Finish,
    Reset(u32),
}

type Permit = mpsc::OwnedPermit<Bytes>;
type Reserve = Pin<Box<dyn Future<Output = Result<Permit, mpsc::error::SendError<()>>> + Send + Sync>>;

/// The sending half of a QMux stream: a handle on the task that writes it.
pub struct QmuxSend {
    data: mpsc::Sender<Bytes>,
    orders: mpsc::UnboundedSender<Order>,
    ended: watch::Receiver<Ended>,
    /// A slot in `data` being waited for, kept across polls so the wait keeps its place.
    reserve: Option<Reserve>,
    finished: bool,
}

impl fmt::Debug for QmuxSend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QmuxSend")
            .field("ended", &*self.ended.borrow())
            .field("finished", &self.finished)
            .finish()
    }
}

impl QmuxSend {
    fn spawn(stream: qmux::SendStream) -> Self {
        let (data, data_rx) = mpsc::channel(SEND_QUEUE);
        let (orders, orders_rx) = mpsc::unbounded_channel();
        let (ended_tx, ended) = watch::channel(Ended::Open);
        tokio::spawn(drive(stream, data_rx, orders_rx, ended_tx));
        Self {
            data,
            orders,
            ended,
            reserve: None,
            finished: false,
        }
    }

    /// The error a write or finish gets once the stream's task has ended.
    fn ended_error(&self) -> Option<TransportError> {
        match &*self.ended.borrow() {
            Ended::Open => None,
            Ended::Delivered => Some(TransportError::Other("stream already finished".into())),
            Ended::Stopped(code) => Some(TransportError::Stopped(*code)),
            Ended::Reset => Some(TransportError::Other("stream was reset".into())),
            Ended::Failed(e) => Some(e.clone()),
        }
    }
}

impl SendStream for QmuxSend {
    fn poll_write_chunks(
        &mut self,
        cx: &mut Context<'_>,
        chunks: &mut [Bytes],
    ) -> Poll<Result<usize, TransportError>> {
        if let Some(error) = self.ended_error() {
            return Poll::Ready(Err(error));
        }
        if self.finished {
            return Poll::Ready(Err(TransportError::Other("write after finish".into())));
        }
        let Some(chunk) = chunks.iter_mut().find(|c| !c.is_empty()) else {
            return Poll::Ready(Ok(0));
        };
        let data = &self.data;
        let reserve = self
            .reserve
            .get_or_insert_with(|| Box::pin(data.clone().reserve_owned()));
        match reserve.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.reserve = None;
                match result {
                    Ok(permit) => {
                        let written = chunk.len();
                        permit.send(std::mem::take(chunk));
                        Poll::Ready(Ok(written))
                    }
                    // The task is gone: say why.
                    Err(_) => Poll::Ready(Err(self
                        .ended_error()
                        .unwrap_or_else(|| TransportError::Other("stream closed".into())))),
                }
            }
        }
    }

    fn set_priority(&self, order: i32) {
        let _ = self.orders.send(Order::Priority(order));
    }

    fn finish(&mut self) -> Result<(), TransportError> {
        if let Some(error) = self.ended_error() {
            return Err(error);
        }
        if !self.finished {
            self.finished = true;
            let _ = self.orders.send(Order::Finish);
        }
        Ok(())
    }

    fn reset(&mut self, code: u64) {
        self.reserve = None;
        let _ = self.orders.send(Order::Reset(code.try_into().unwrap_or(0)));
    }

    fn stopped(&self) -> BoxFuture<'_, Result<Option<u64>, TransportError>> {
        let mut ended = self.ended.clone();
        Box::pin(async move {
            let state = ended
                .wait_for(|e| !matches!(e, Ended::Open))
                .await
                .map(|e| e.clone())
                .unwrap_or(Ended::Failed(TransportError::Other("stream task ended".into())));
            match state {
                Ended::Delivered => Ok(None),
                Ended::Stopped(code) => Ok(Some(code)),
                Ended::Reset => Err(TransportError::Other("stream was reset".into())),
                Ended::Failed(e) => Err(e),
                Ended::Open => Err(TransportError::Other("stream task ended".into())),
            }
        })
    }
}

/// Write one stream: its chunks in order, its orders as they come, until it is delivered,
/// stopped, reset or the session fails. A handle dropped without a FIN or reset finishes the
/// stream after what it queued, as quinn's streams do.
async fn drive(
    mut stream: qmux::SendStream,
    mut data: mpsc::Receiver<Bytes>,
    mut orders: mpsc::UnboundedReceiver<Order>,
    ended: watch::Sender<Ended>,
) {
    let mut current: Option<Bytes> = None;
    let mut fin_asked = false;
    let mut fin_sent = false;
    let mut orders_open = true;
    let end = loop {
        if current.is_none() && !fin_sent {
            match data.try_recv() {
                Ok(chunk) => current = Some(chunk),
                Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => fin_asked = true,
            }
        }
        if current.is_none() && fin_asked && !fin_sent {
            if let Err(e) = stream.finish() {
                break ended_by(e);
            }
            fin_sent = true;
        }
        let order = if let Some(chunk) = current.as_mut() {
            tokio::select! {
                biased;
                order = orders.recv(), if orders_open => order,
                written = stream.write_buf(chunk) => {
                    if let Err(e) = written {
                        break ended_by(e);
                    }
                    if chunk.is_empty() {
                        current = None;
                    }
                    continue;
                }
            }
        } else if !fin_sent {
            tokio::select! {
                biased;
                order = orders.recv(), if orders_open => order,
                chunk = data.recv() => {
                    match chunk {
                        Some(chunk) => current = Some(chunk),
                        None => fin_asked = true,
                    }
                    continue;
                }
                closed = stream.closed() => break closed.map_or_else(ended_by, |()| Ended::Delivered),
            }
        } else {
            tokio::select! {
                biased;
                order = orders.recv(), if orders_open => order,
                closed = stream.closed() => break closed.map_or_else(ended_by, |()| Ended::Delivered),
            }
        };
        match order {
            Some(Order::Priority(p)) => stream.set_priority(p),
            Some(Order::Finish) => fin_asked = true,
            Some(Order::Reset(code)) => {
                stream.reset(code);
                break Ended::Reset;
            }
            None => orders_open = false,
        }
    };
    let _ = ended.send(end);
}

fn ended_by(error: qmux::Error) -> Ended {
    match error {
        qmux::Error::StreamStop(code) => Ended::Stopped(code.into_inner()),
        other => Ended::Failed(session_error(other)),
    }
}

/// The receiving half of a QMux stream.
pub struct QmuxRecv(qmux::RecvStream);

impl fmt::Debug for QmuxRecv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QmuxRecv")
    }
}

impl RecvStream for QmuxRecv {
    fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Result<Option<Bytes>, TransportError>> {
        // `read_chunk` waits on tokio mpsc receivers, which keep the waker registered after
        // the future is dropped, and takes nothing unless it resolves.
        match pin!(self.0.read_chunk(max)).poll(cx) {
            Poll::Ready(Ok(chunk)) => Poll::Ready(Ok(chunk)),
            Poll::Ready(Err(qmux::Error::StreamReset(code))) => {
                Poll::Ready(Err(TransportError::Reset(code.into_inner())))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(session_error(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn stop(&mut self, code: u64) {
        self.0.stop(code.try_into().unwrap_or(0));
    }
}

/// A `qmux` error in the session's terms.
fn session_error(error: qmux::Error) -> TransportError {
    match error {
        qmux::Error::ConnectionClosed { code, reason } => TransportError::Closed {
            code: code.into_inner(),
            reason,
        },
        qmux::Error::StreamReset(code) => TransportError::Reset(code.into_inner()),
        qmux::Error::StreamStop(code) => TransportError::Stopped(code.into_inner()),
        other => TransportError::Other(other.to_string()),
    }
}
