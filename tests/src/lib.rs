//! Harness for Banyan's workspace integration tests.
//!
//! Module map:
//! - [`impair`]: a userspace UDP impairment proxy (seeded delay, jitter, loss, reordering,
//!   duplication and a rate cap, independently per direction), with counters that prove the
//!   impairment happened. Kernel netem is not available where these tests run.
//! - [`media_tools`]: `ffprobe` as the judge of media a test wrote (frames decoded per stream,
//!   from a file or bytes).
//! - `netem` (Linux): a userspace link emulator for TCP and UDP alike: two network namespaces
//!   joined by TUN devices, every IP packet crossing with [`impair`]'s model per direction;
//!   `netem::probe` holds the UDP/TCP probes that check such a link from inside it.
//! - `moq_rs` (feature `moq-rs`): the independent draft-18 implementation `moq-transport`
//!   (cloudflare/moq-rs) on its own QUIC endpoints, as a client of a Banyan server or relay
//!   and as a server for a Banyan client; the other side of banyan-moq's and banyan-relay's
//!   interop tests (`tests/interop.rs` in each).
//! - `mem` (feature `mem`): an in-memory transport pair for `banyan-moq` sessions with
//!   per-direction latency and loss on tokio's clock (run under `tokio::time::pause()`), seeded,
//!   with counters; `mem::handshake` and `mem::session_pair` set up MoQT sessions over it.
//! - `interop` (feature `interop`): the MoQ interop runner's fourteen test cases, run with
//!   Banyan's own MoQT stack against any draft-18 relay and reported as TAP 14; the client side
//!   of `relay/tests/interop_runner.rs` and of the `banyan-interop` binary.
//!
//! The `banyan-impair` binary (`src/bin/banyan-impair.rs`) wraps [`impair`] for manual use;
//! `banyan-netem` (`src/bin/banyan-netem.rs`) wraps `netem` for benchmarks
//! (bench/scripts/transports.sh) and checks;
//! `banyan-interop` (`src/bin/banyan-interop.rs`) wraps `interop` in the runner's client
//! contract.
//! The integration tests themselves live under `tests/`.

pub mod impair;
#[cfg(feature = "interop")]
pub mod interop;
pub mod media_tools;
#[cfg(feature = "mem")]
pub mod mem;
#[cfg(feature = "moq-rs")]
pub mod moq_rs;
#[cfg(target_os = "linux")]
pub mod netem;
