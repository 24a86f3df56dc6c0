use std::time::Duration;

use crate::message::MAX_MESSAGE_SIZE;

/// Limits and timeouts for one MoQT session. Every limit protects the endpoint from a peer
/// that sends too much: exceeding one closes the session or refuses the request with the
/// spec's error code, never a panic or unbounded memory.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The largest control message accepted, in bytes (the spec's ceiling is 65535).
    pub max_message_size: usize,
    /// The largest object payload accepted on a stream, in bytes. Checked against the object
    /// header before any of the payload is buffered.
    pub max_object_size: usize,
    /// How long the peer has to send SETUP before the session is closed.
    pub setup_timeout: Duration,
    /// How long the peer has to send the first message on a request stream, and to answer
    /// our requests.
    pub request_timeout: Duration,
    /// How long a peer may take to send a data stream's header.
    pub data_header_timeout: Duration,
    /// Incoming requests waiting for the application to accept them; beyond this the
    /// session stops reading new request streams (QUIC flow control pushes back).
    pub max_queued_requests: usize,
    /// Data streams and datagrams whose Track Alias is not known yet (they may arrive before
    /// SUBSCRIBE_OK); beyond this they are stopped.
    pub max_orphan_streams: usize,
    /// How long a data stream may wait for its Track Alias to be known.
    pub orphan_timeout: Duration,
    /// The MOQT_IMPLEMENTATION setup option we send, if any.
    pub implementation: Option<String>,
    /// The HOP_ID setup option we send (relays only): declares our Hop ID and support for the
    /// HOP_PATH parameter (see [`crate::message::hop_path`]).
    pub hop_id: Option<u64>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_message_size: MAX_MESSAGE_SIZE,
            max_object_size: 8 * 1024 * 1024,
            setup_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            data_header_timeout: Duration::from_secs(10),
            max_queued_requests: 256,
            max_orphan_streams: 64,
            orphan_timeout: Duration::from_secs(2),
            implementation: Some(format!("banyan-moq/{}", env!("CARGO_PKG_VERSION"))),
            hop_id: None,
        }
    }
}

/// QUIC transport settings shared by the server and client endpoints.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Concurrent request streams (bidirectional) the peer may open: each request in
    /// draft-18 is a stream, so this is the per-session request limit.
    pub max_concurrent_requests: u32,
    /// Concurrent data streams (unidirectional) the peer may open, at most: a QUIC connection
    /// grants 64 (or this, if lower) at first and doubles that, up to this, while more than
    /// half is in use, because quinn keeps state for every stream it allows (see the
    /// transport binding's `DataStreamLimit`).
    pub max_concurrent_data_streams: u32,
    /// Close the connection after this long without any packet.
    pub idle_timeout: Duration,
    /// Send a keep-alive after this long without sending.
    pub keep_alive: Duration,
    /// Bytes a single stream may have in flight towards us.
    pub stream_receive_window: u32,
    /// Bytes all streams together may have in flight towards us.
    pub connection_receive_window: u32,
    /// Bytes we may have unacknowledged towards the peer across all streams.
    pub send_window: u64,
    /// Bytes of received datagrams buffered before the oldest are dropped.
    pub datagram_receive_buffer: usize,
    /// Ask the peer (through the QUIC ACK frequency extension, when it supports it) to
    /// acknowledge within this long instead of the default 25 ms, so a lost packet is detected
    /// and resent sooner: live media has no later data to hide a late retransmission behind.
    /// `None` leaves the peer's default.
    pub max_ack_delay: Option<Duration>,
    /// The smallest congestion window, in bytes (`None`: plain CUBIC, down to two packets).
    /// Random loss then does not throttle a live stream below this much data per round trip;
    /// see the `congestion` module for the reasoning.
    pub min_congestion_window: Option<u64>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 1024,
            max_concurrent_data_streams: 4096,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(4),
            stream_receive_window: 4 * 1024 * 1024,
            connection_receive_window: 32 * 1024 * 1024,
            send_window: 32 * 1024 * 1024,
            datagram_receive_buffer: 1024 * 1024,
            max_ack_delay: Some(Duration::from_millis(5)),
            // 32 packets: 1.5 Mbit/s at a 200 ms round trip, 7.5 Mbit/s at 40 ms.
            min_congestion_window: Some(32 * 1200),
        }
    }
}

impl TransportConfig {
    /// The equivalent quinn transport configuration.
    pub fn to_quinn(&self) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        t.max_concurrent_bidi_streams(self.max_concurrent_requests.into());
        t.max_concurrent_uni_streams(
            super::transport::DataStreamLimit::start(self.max_concurrent_data_streams).into(),
        );
        // Durations beyond QUIC's idle-timeout range fall back to quinn's default.
        if let Ok(idle) = quinn::IdleTimeout::try_from(self.idle_timeout) {
            t.max_idle_timeout(Some(idle));
        }
        t.keep_alive_interval(Some(self.keep_alive));
        t.stream_receive_window(self.stream_receive_window.into());
        t.receive_window(self.connection_receive_window.into());
        t.send_window(self.send_window);
        t.datagram_receive_buffer_size(Some(self.datagram_receive_buffer));
        if let Some(floor) = self.min_congestion_window {
            t.congestion_controller_factory(std::sync::Arc::new(super::congestion::FlooredCubic {
                cubic: std::sync::Arc::new(quinn::congestion::CubicConfig::default()),
                floor,
            }));
        }
        if let Some(delay) = self.max_ack_delay {
            let mut ack = quinn::AckFrequencyConfig::default();
            ack.max_ack_delay(Some(delay));
            t.ack_frequency_config(Some(ack));
        }
        t
    }
}
