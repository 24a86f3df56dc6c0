//! A quinn runtime for a server endpoint that reads its UDP socket on a thread of its own.
//!
//! Why: quinn runs one endpoint driver per socket, which reads every datagram for every
//! connection, and one connection driver per connection, which packetizes and sends. On the
//! caller's runtime they all share one run queue, and quinn's endpoint driver gives the CPU
//! back after 50 µs of reading. A relay whose CPU cannot keep up with its fan-out then reads
//! its socket once per pass over every busy connection (tens to hundreds of milliseconds with
//! hundreds of viewers): the socket's receive buffer overflows and drops what arrives, the
//! publisher's media among it, and the publisher's congestion controller reads the drops as
//! congestion. Media then enters the relay late or never, and every viewer falls behind
//! together (docs/performance.md, "Overload").
//!
//! With [`UdpThreadRuntime`], the endpoint driver runs on one dedicated thread that does
//! nothing else, so the socket is read however much the connections cost. Connection drivers,
//! timers and everything else stay on the caller's runtime. The thread ends when the endpoint
//! driver does (the endpoint and all its connections are gone) or when the caller's runtime
//! shuts down.
//!
//! **Pacing.** A thread woken for every datagram would cost two context switches per datagram
//! on a relay that shares its core with it (a quarter of the core at 2 Gbit/s of fan-out,
//! measured). So while datagrams keep coming the thread reads everything waiting, sleeps
//! [`PAUSE`], and reads again, without asking the kernel to wake it in between; only when a
//! read after a pause finds nothing does it wait for the socket again. At most `PAUSE` is added
//! to a datagram's arrival under load; nothing when datagrams come sparsely.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use quinn::{AsyncTimer, AsyncUdpSocket, Runtime, TokioRuntime, UdpPoller};
use tokio::io::Interest;
use tokio::sync::oneshot;

/// How long the thread lets datagrams gather between reads while they keep coming.
const PAUSE: Duration = Duration::from_millis(1);

/// How many times in a row the endpoint driver is polled while it says it has more to do.
const MAX_POLLS: usize = 64;

/// A future quinn spawns.
type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// quinn's runtime with the endpoint driver on a dedicated thread; see the module docs.
pub(crate) struct UdpThreadRuntime {
    /// The caller's runtime: connection drivers, timers, and the socket's writability.
    main: tokio::runtime::Handle,
    /// The thread's runtime: the socket's readability.
    udp: tokio::runtime::Handle,
    /// Hands the endpoint driver to the thread, until it has.
    driver: Mutex<Option<oneshot::Sender<Driver>>>,
    /// Reads that returned datagrams (the thread's pacing watches it).
    received: Arc<AtomicU64>,
}

impl UdpThreadRuntime {
    /// A runtime for one endpoint, from within the caller's tokio runtime, and its thread
    /// (named `name`), which waits for the endpoint driver and runs it to its end.
    pub fn new(name: &str) -> std::io::Result<Arc<Self>> {
        let main = tokio::runtime::Handle::try_current()
            .map_err(|_| std::io::Error::other("no async runtime found (run inside tokio)"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let udp = runtime.handle().clone();
        let received = Arc::new(AtomicU64::new(0));
        let (driver, driven) = oneshot::channel::<Driver>();
        // The caller's runtime going away (its tasks dropped, connection drivers among them)
        // ends the thread too: quinn's endpoint driver would otherwise wait forever for
        // connections whose drivers can no longer tell it they are gone.
        let (alive, main_gone) = oneshot::channel::<()>();
        main.spawn(async move {
            let _alive = alive;
            std::future::pending::<()>().await;
        });
        let counted = received.clone();
        std::thread::Builder::new().name(name.into()).spawn(move || {
            runtime.block_on(async move {
                // No driver: the endpoint was never built.
                let Ok(driver) = driven.await else { return };
                Paced::new(driver, counted, main_gone).await;
            });
        })?;
        Ok(Arc::new(Self {
            main,
            udp,
            driver: Mutex::new(Some(driver)),
            received,
        }))
    }
}

impl std::fmt::Debug for UdpThreadRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpThreadRuntime").finish_non_exhaustive()
    }
}

impl Runtime for UdpThreadRuntime {
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>> {
        let _main = self.main.enter();
        TokioRuntime.new_timer(at)
    }

    fn spawn(&self, future: Driver) {
        // The first spawn is the endpoint driver (quinn spawns it while building the
        // endpoint, after wrapping the socket); every later one is a connection driver.
        // If the thread is gone (it cannot be, short of a panic), the driver runs here.
        let future = match self.driver.lock().map(|mut d| d.take()).unwrap_or(None) {
            Some(driver) => match driver.send(future) {
                Ok(()) => return,
                Err(future) => future,
            },
            None => future,
        };
        self.main.spawn(future);
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> std::io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Arc::new(SplitSocket::new(
            socket,
            &self.udp,
            &self.main,
            self.received.clone(),
        )?))
    }

    fn now(&self) -> Instant {
        TokioRuntime.now()
    }
}

/// The endpoint driver, paced (see the module docs), until it ends or the caller's runtime
/// does (`main_gone`), which it checks between pauses too: while peers keep sending, the driver
/// may never wait on the socket.
struct Paced {
    driver: Driver,
    received: Arc<AtomicU64>,
    main_gone: oneshot::Receiver<()>,
}

impl Paced {
    fn new(driver: Driver, received: Arc<AtomicU64>, main_gone: oneshot::Receiver<()>) -> Self {
        Self {
            driver,
            received,
            main_gone,
        }
    }
}

impl Future for Paced {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            if Pin::new(&mut this.main_gone).poll(cx).is_ready() {
                return Poll::Ready(());
            }
            let before = this.received.load(Ordering::Relaxed);
            for _ in 0..MAX_POLLS {
                let wake = Arc::new(SelfWake {
                    woken: AtomicBool::new(false),
                    waker: cx.waker().clone(),
                });
                let waker = Waker::from(wake.clone());
                if this
                    .driver
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_ready()
                {
                    return Poll::Ready(());
                }
                if !wake.woken.load(Ordering::Relaxed) {
                    break;
                }
                // The driver stopped on its time bound with more to read: go on.
            }
            if this.received.load(Ordering::Relaxed) == before {
                // Nothing came since the last read: wait for the socket (the driver has
                // registered for its readiness).
                return Poll::Pending;
            }
            // This thread runs nothing else: blocking it is the point.
            std::thread::sleep(PAUSE);
        }
    }
}

/// A waker that notes it was woken and passes the wake on.
struct SelfWake {
    woken: AtomicBool,
    waker: Waker,
}

impl Wake for SelfWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Relaxed);
        self.waker.wake_by_ref();
    }
}

/// The endpoint's socket, registered twice (a duplicate descriptor): read on the thread's
/// runtime, written from the caller's, where the connection drivers run and where they wait
/// when the send buffer is full.
#[derive(Debug)]
struct SplitSocket {
    recv: tokio::net::UdpSocket,
    send: tokio::net::UdpSocket,
    state: UdpSocketState,
    received: Arc<AtomicU64>,
}

impl SplitSocket {
    fn new(
        socket: std::net::UdpSocket,
        udp: &tokio::runtime::Handle,
        main: &tokio::runtime::Handle,
        received: Arc<AtomicU64>,
    ) -> std::io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        socket.set_nonblocking(true)?;
        let send = socket.try_clone()?;
        let recv = {
            let _udp = udp.enter();
            tokio::net::UdpSocket::from_std(socket)?
        };
        let send = {
            let _main = main.enter();
            tokio::net::UdpSocket::from_std(send)?
        };
        Ok(Self {
            recv,
            send,
            state,
            received,
        })
    }
}

impl AsyncUdpSocket for SplitSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable(self))
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> std::io::Result<()> {
        self.send.try_io(Interest::WRITABLE, || {
            self.state.send((&self.send).into(), transmit)
        })
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [std::io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<std::io::Result<usize>> {
        // Read first: after a pause the datagrams are there, but the runtime has not been
        // told (the thread slept instead of waiting on the socket).
        let received = match self.state.recv((&self.recv).into(), bufs, meta) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => loop {
                ready!(self.recv.poll_recv_ready(cx))?;
                // A would-block clears the readiness and waits for the next datagram.
                if let Ok(received) = self.recv.try_io(Interest::READABLE, || {
                    self.state.recv((&self.recv).into(), bufs, meta)
                }) {
                    break received;
                }
            },
            Err(e) => return Poll::Ready(Err(e)),
            Ok(received) => received,
        };
        self.received.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Ok(received))
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.recv.local_addr()
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }
}

/// Waits until the socket can take a datagram again (after a send would have blocked).
#[derive(Debug)]
struct Writable(Arc<SplitSocket>);

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.0.send.poll_send_ready(cx)
    }
}
