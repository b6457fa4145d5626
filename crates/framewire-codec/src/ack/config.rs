//! Ack-mode settings shared by every driver: windows, caps, keepalive, with named defaults.

use std::time::Duration;

use super::engine::AckState;

/// Default window in messages: how many unacknowledged messages this side lets the peer have
/// in flight, and the most received-but-not-taken messages it buffers.
///
/// Throughput in ack mode is bounded by window / round-trip time, and each window costs a
/// fixed amount on top of the per-message work (a DATA write, an ACK write, a read and a
/// wake-up on each side: 17-20 µs on loopback on the 2-core development machine, where plain
/// mode moves a 64-byte message in about 110 ns). At 64 messages that measured about a
/// quarter of plain mode's messages/s, at 1,024 about 70% (`benches/ack.rs`,
/// `docs/ack-performance.md`). 4,096 keeps a stream of small messages at plain-mode speed
/// while [`DEFAULT_WINDOW_BYTES`] bounds the memory: 4,096 64-byte messages are 256 KiB. The
/// bookkeeping per message (sequence number, length, the payload's handle) is under 64 bytes,
/// so a full window of tiny messages adds at most 256 KiB on top of the byte budget.
pub const DEFAULT_WINDOW: u32 = 4096;

/// Default window in bytes: how many payload bytes this side lets the peer have
/// unacknowledged (1 MiB), and so the most received-but-not-taken bytes it buffers (plus one
/// frame: a message may be sent while less than the window is unacknowledged).
///
/// 1 MiB is about 20 round trips' worth at 1 Gbit/s over a 0.4 ms LAN and enough that a
/// loopback stream is limited by the per-message cost, not the window, while a connection's
/// worst case stays a few MiB: 1 MiB buffered received, 1 MiB kept unacknowledged, one frame
/// of each, whatever the peer does.
pub const DEFAULT_WINDOW_BYTES: u32 = 1024 * 1024;

/// Default cap on the messages this side keeps sent and unacknowledged, whatever the peer
/// grants: the same as [`DEFAULT_WINDOW`], so two peers with default settings use the whole
/// window each grants.
pub const DEFAULT_MAX_UNACKED: u32 = DEFAULT_WINDOW;

/// Default cap on the payload bytes this side keeps sent and unacknowledged (1 MiB), whatever
/// the peer grants: a peer granting `u32::MAX` and never acknowledging costs at most this
/// (plus one frame), not the gigabytes it asks for. Same as [`DEFAULT_WINDOW_BYTES`].
pub const DEFAULT_MAX_UNACKED_BYTES: u32 = DEFAULT_WINDOW_BYTES;

/// Default keepalive interval: after 15 s without receiving anything, a PING is sent. Well
/// below common NAT and load-balancer idle timeouts (60 s to 350 s), so a quiet connection
/// is not dropped by the path; two 13-byte frames per 15 s cost nothing.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);

/// Default peer timeout: after 60 s without receiving anything (keepalive PINGs unanswered),
/// the peer counts as gone and the connection fails with
/// [`AckError::PeerSilent`](super::AckError::PeerSilent). Four keepalive intervals: a
/// peer that is merely slow (a busy server handler answers PINGs only when it polls its
/// connection) gets a minute, a vanished host is noticed within about 75 s instead of never.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// Ack-mode settings for one side of a connection: what it grants the peer, what it keeps
/// whatever the peer grants, and its timers.
///
/// Used by every ack-mode driver ([`AckFramed`](super::AckFramed), the server's connections,
/// the client). Memory per connection is bounded by this side's own settings: at most
/// [`window_bytes`](Self::window_bytes) received and not taken plus
/// [`max_unacked_bytes`](Self::max_unacked_bytes) sent and not acknowledged, plus one frame
/// each, whatever the peer grants or sends (a peer that sends beyond the window is a protocol
/// error).
///
/// ```
/// use std::time::Duration;
/// use framewire_codec::ack::{AckConfig, DEFAULT_WINDOW_BYTES};
///
/// let config = AckConfig::new().window(1).keepalive(Duration::from_secs(5));
/// let state = config.build(1024);
/// assert_eq!(state.local_hello().window, 1); // stop-and-wait
/// assert_eq!(state.local_hello().window_bytes, DEFAULT_WINDOW_BYTES);
/// ```
///
/// # Timeouts and limits
///
/// One rule across framewire's builders: a timeout or limit that can be turned off takes
/// `impl Into<Option<_>>`, so pass the value itself (`Duration::from_secs(5)`, `100`) or
/// `None` for off; one that cannot be off (a connect, close, handshake or grace timeout)
/// takes the plain `Duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckConfig {
    pub(crate) window: u32,
    pub(crate) window_bytes: u32,
    pub(crate) max_unacked: u32,
    pub(crate) max_unacked_bytes: u32,
    pub(crate) ack_threshold: Option<u64>,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) peer_timeout: Option<Duration>,
}

impl Default for AckConfig {
    fn default() -> Self {
        AckConfig {
            window: DEFAULT_WINDOW,
            window_bytes: DEFAULT_WINDOW_BYTES,
            max_unacked: DEFAULT_MAX_UNACKED,
            max_unacked_bytes: DEFAULT_MAX_UNACKED_BYTES,
            ack_threshold: None,
            keepalive: Some(DEFAULT_KEEPALIVE),
            peer_timeout: Some(DEFAULT_PEER_TIMEOUT),
        }
    }
}

impl AckConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The window in messages this side grants the peer (default [`DEFAULT_WINDOW`]; 1 is
    /// stop-and-wait; 0 acts as 1).
    #[must_use = "a builder setter returns the changed builder"]
    pub fn window(mut self, messages: u32) -> Self {
        self.window = messages.max(1);
        self
    }

    /// The window in payload bytes this side grants the peer (default
    /// [`DEFAULT_WINDOW_BYTES`]; 0 acts as 1). The peer may send while fewer bytes are
    /// unacknowledged, so one message larger than this still goes through, alone.
    #[must_use = "a builder setter returns the changed builder"]
    pub fn window_bytes(mut self, bytes: u32) -> Self {
        self.window_bytes = bytes.max(1);
        self
    }

    /// The most messages this side keeps sent and unacknowledged, whatever the peer grants
    /// (default [`DEFAULT_MAX_UNACKED`]; 0 acts as 1).
    #[must_use = "a builder setter returns the changed builder"]
    pub fn max_unacked(mut self, messages: u32) -> Self {
        self.max_unacked = messages.max(1);
        self
    }

    /// The most payload bytes this side keeps sent and unacknowledged, whatever the peer
    /// grants (default [`DEFAULT_MAX_UNACKED_BYTES`]; 0 acts as 1). One message larger than
    /// this is still sent, alone.
    #[must_use = "a builder setter returns the changed builder"]
    pub fn max_unacked_bytes(mut self, bytes: u32) -> Self {
        self.max_unacked_bytes = bytes.max(1);
        self
    }

    /// After how many taken messages an ACK is sent even though more received messages are
    /// still buffered (default: half the window). See [`AckState::set_ack_threshold`].
    #[must_use = "a builder setter returns the changed builder"]
    pub fn ack_threshold(mut self, messages: u64) -> Self {
        self.ack_threshold = Some(messages);
        self
    }

    /// Send a PING after this long without receiving anything (default
    /// [`DEFAULT_KEEPALIVE`]; `None`: never).
    #[must_use = "a builder setter returns the changed builder"]
    pub fn keepalive(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.keepalive = interval.into();
        self
    }

    /// Fail the connection with [`AckError::PeerSilent`](super::AckError::PeerSilent) after
    /// this long without receiving anything (default [`DEFAULT_PEER_TIMEOUT`]; `None`:
    /// never). Detected within one keepalive interval after it expires.
    #[must_use = "a builder setter returns the changed builder"]
    pub fn peer_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.peer_timeout = timeout.into();
        self
    }

    /// The window in messages granted to the peer.
    pub fn get_window(&self) -> u32 {
        self.window
    }

    /// The window in bytes granted to the peer.
    pub fn get_window_bytes(&self) -> u32 {
        self.window_bytes
    }

    /// The cap on messages kept unacknowledged.
    pub fn get_max_unacked(&self) -> u32 {
        self.max_unacked
    }

    /// The cap on bytes kept unacknowledged.
    pub fn get_max_unacked_bytes(&self) -> u32 {
        self.max_unacked_bytes
    }

    /// The keepalive interval.
    pub fn get_keepalive(&self) -> Option<Duration> {
        self.keepalive
    }

    /// The peer timeout.
    pub fn get_peer_timeout(&self) -> Option<Duration> {
        self.peer_timeout
    }

    /// A state machine with these settings, for a side whose codec accepts frames of
    /// `max_frame_len` (announced in its HELLO; values above `u32::MAX` say `u32::MAX`).
    pub fn build(&self, max_frame_len: usize) -> AckState {
        AckState::with_config(*self, max_frame_len)
    }
}
