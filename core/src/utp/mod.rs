//! uTP, the uTorrent transport protocol (BEP 29): a reliable, ordered byte stream over UDP
//! with LEDBAT congestion control, as a sans-IO state machine.
//!
//! Most of the BitTorrent swarm prefers uTP to TCP: its delay-based congestion control
//! yields to other traffic on the user's link. A [`UtpSocket`] is every uTP connection that
//! shares one UDP socket. It never touches the socket or the clock: datagrams and time go
//! in, datagrams and stream events come out.
//!
//! # The contract
//!
//! Methods come in the order of quinn-proto: getters, `handle_*` (input), mutators, then
//! `poll_*` (output). After any `handle_*` or mutator, drain [`UtpSocket::poll_transmit`]
//! (send each datagram) and [`UtpSocket::poll_event`], then wait until
//! [`UtpSocket::poll_timeout`] or the next datagram, whichever is first, and call
//! [`UtpSocket::handle_timeout`] when the deadline passes (calling early is harmless).
//!
//! ```text
//! UtpSocket::new(config, rng)
//! connect(now, addr) -> StreamId          ... UtpEvent::Connected, or Closed(ConnectTimedOut)
//! handle_datagram(now, from, bytes) -> bool   false: not uTP (try the DHT, a tracker)
//! write(now, stream, bytes) -> taken      at most send_room(stream); UtpEvent::Sent frees room
//! close(now, stream) / abort(now, stream)
//! handle_timeout(now)
//! poll_transmit(now) -> Transmit          a datagram to send
//! poll_event() -> UtpEvent                Incoming, Connected, Data, Sent, Closed
//! poll_timeout() -> Instant               the next deadline
//! ```
//!
//! Writes are flow-controlled as the core's TCP connections are (`Input::Sent`): a stream
//! buffers at most [`UtpConfig::send_buffer`] bytes not yet put into packets, and
//! [`UtpEvent::Sent`] reports bytes leaving that buffer. What the peer sends arrives as
//! [`UtpEvent::Data`], in order, as soon as it is in order.
//!
//! # The protocol, and where each part lives
//!
//! - [`packet`]: the 20-byte version 1 header and the extension chain (selective ACK).
//! - [`seq`]: 16-bit sequence numbers compared the short way round.
//! - [`rtt`]: RTT, its variance and the retransmission timeout, as the BEP gives them
//!   (`max(rtt + 4 rtt_var, 500 ms)`, 1 s before any sample, doubling on each timeout).
//! - [`ledbat`]: one-way delay from the timestamp fields, the base delay over 13 minutes of
//!   per-minute minima, the 100 ms target, the window.
//! - [`pacing`]: a token bucket that spreads a window's packets over the round trip.
//! - `conn` (private): one connection's state machine — handshake, sending with Nagle-like
//!   coalescing of small writes, acknowledgements (delayed, selective), fast retransmit on
//!   three duplicate or selective ACKs, timeout retransmission, the receive window and
//!   reorder buffer, FIN and RESET.
//! - `socket` (private): many connections on one UDP socket — connection ids, SYN
//!   acceptance into a bounded half-open table (SYN cookies beyond it), routing, timers.
//!
//! # Choices, with the reference implementations they follow
//!
//! - **Connection ids** (BEP 29, libtorrent): the initiator picks a random receive id `r`,
//!   sends its SYN with `r` and every later packet with `r + 1`; the acceptor receives on
//!   `r + 1` and sends with `r`. A connection is known by (peer address, receive id).
//! - **Sequence numbers** start random on both sides (libtorrent, libutp). A `ST_STATE`
//!   carries the next number its sender will use, so the initiator takes the acceptor's
//!   first number as `seq_nr - 1` of its `ST_STATE`.
//! - **Incoming connections** become visible ([`UtpEvent::Incoming`]) only when the
//!   initiator's first packet after the SYN arrives (in BitTorrent, its handshake): until
//!   then the connection is half-open, holds a slot in a table of at most
//!   [`UtpConfig::max_half_open`] and is forgotten after [`UtpConfig::half_open_timeout`].
//!   When the table is full, a SYN is answered statelessly with a SYN cookie (`cookie`):
//!   the `ST_STATE`'s sequence number is a keyed hash of the SYN, and the initiator's first
//!   data packet, which acknowledges it, recreates the connection. Nobody in the table is
//!   ever pushed out, so a SYN flood however fast costs a bounded table and one 20-byte
//!   `ST_STATE` per SYN (no more than the SYN itself), and real peers still get in.
//!   libtorrent instead ignores SYNs once it holds twice its connection limit.
//! - **Unknown connection ids** are dropped without a reply by default, as libtorrent does
//!   ([`UtpConfig::resets_per_second`] enables rate-limited `ST_RESET`s).
//! - **Packet size** ([`mtu`]): a connection starts at
//!   [`UtpConfig::initial_packet_size`] (1,232 bytes, what every IPv6 link carries) and
//!   probes upward to [`UtpConfig::max_packet_size`] (1,472 bytes, 1,452 for IPv6) with
//!   padded data packets, by halving; a lost probe is not congestion, and repeated timeouts
//!   bring the size down again (a black hole). Nothing above the size found is sent but a
//!   probe.
//! - **Retransmission**: a packet is resent when three later packets were selectively
//!   acknowledged or three duplicate `ST_STATE`s acknowledge the one before it (each packet
//!   at most once that way), or when the retransmission timer fires (everything in flight
//!   is then resent as the window allows, starting with the oldest). The timer restarts
//!   whenever new data is acknowledged, so a peer that keeps talking without acknowledging
//!   still times out. A connection whose timer fires more than
//!   [`UtpConfig::max_retransmits`] times in a row without progress is dead
//!   ([`CloseReason::TimedOut`]); a SYN unanswered after [`UtpConfig::syn_retries`]
//!   resends fails with [`CloseReason::ConnectTimedOut`], so the caller can fall back to
//!   TCP.
//! - **Pacing**: data packets leave at twice the window per round trip in slow start and
//!   1.25 times after (Linux TCP's pacing factors), in bursts of at most
//!   [`UtpConfig::max_burst`] datagrams (and 2 ms at that rate). libtorrent and libutp send
//!   whole windows back to back; a receiver that acknowledges once per batch of datagrams
//!   (libtorrent) then gets bursts as large as the batch, and the tail of a burst beyond
//!   its UDP socket buffer (about 90 datagrams by default on Linux) is lost.
//! - **Acknowledgements** go out at once for out-of-order data (with a selective ACK),
//!   duplicates, SYN and FIN; in-order data is acknowledged every second full packet or
//!   after [`UtpConfig::delayed_ack`], and any packet we send carries the acknowledgement.
//! - **Close**: [`UtpSocket::close`] sends what is buffered, then `ST_FIN`, and keeps the
//!   connection until the FIN is acknowledged and the peer's FIN has come (or a while has
//!   passed). A peer's FIN, once everything before it has arrived, is
//!   [`CloseReason::Finished`]; we answer with our own FIN, as libtorrent does.
//!
//! Everything a peer can make us store is bounded: per connection the reorder buffer (by
//! bytes and packets), the packets in flight (by [`UtpConfig::max_window`] and a packet
//! count), the send buffer; per socket the connections and the half-open table.

#![warn(missing_docs)]

pub mod ledbat;
pub mod mtu;
pub mod pacing;
pub mod packet;
pub mod rtt;
pub mod seq;

mod conn;
mod cookie;
mod socket;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

pub use packet::is_utp;
pub use socket::UtpSocket;

/// The largest datagram uTP sends here, after path MTU probes showed the path carries it:
/// Ethernet's 1,500 bytes minus the IPv4 (20) and UDP (8) headers.
pub const MAX_PACKET_SIZE: usize = 1472;
/// The same for IPv6 peers (a 40-byte IP header).
pub const MAX_PACKET_SIZE_V6: usize = 1452;
/// The datagram size before any probe: what the smallest IPv6 link (1,280 bytes) carries
/// after the IPv6 and UDP headers.
pub const INITIAL_PACKET_SIZE: usize = 1232;
/// The smallest packet size the BEP has uTP go down to.
pub const MIN_PACKET_SIZE: usize = 150;

/// Settings of a [`UtpSocket`]; `Default` gives the values the BEP and libtorrent use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtpConfig {
    /// Largest datagram, header included: the ceiling of path MTU discovery ([`mtu`];
    /// clamped to 150..=1472, and to 1452 for IPv6 peers). Default 1472.
    pub max_packet_size: usize,
    /// Datagram size before any probe: the floor path MTU discovery starts from (clamped
    /// to 150..=`max_packet_size`; equal to it, there is no probing). Default 1232.
    pub initial_packet_size: usize,
    /// Receive window advertised to the peer: bytes held out of order, at most. Default
    /// 1 MiB.
    pub recv_window: usize,
    /// Bytes a stream buffers before they are put into packets ([`UtpSocket::send_room`]).
    /// Default 1 MiB.
    pub send_buffer: usize,
    /// Most bytes in flight on one connection, whatever the peer advertises. Default 1 MiB.
    pub max_window: usize,
    /// LEDBAT's queueing delay target. Default 100 ms.
    pub target_delay: Duration,
    /// LEDBAT's largest window growth per round trip, in bytes. Default 3000.
    pub gain: u32,
    /// Floor of the retransmission timeout. Default 500 ms (BEP 29).
    pub min_rto: Duration,
    /// SYN resends before a connect fails. Default 2 (three SYNs over 7 s).
    pub syn_retries: u32,
    /// Consecutive retransmission timeouts without progress before a connection is dead.
    /// Default 4 (about 15 s at the minimum timeout).
    pub max_retransmits: u32,
    /// FIN resends before a closing connection is forgotten. Default 2.
    pub fin_retries: u32,
    /// Longest wait before acknowledging in-order data that is not followed by more.
    /// Default 1 ms.
    pub delayed_ack: Duration,
    /// Hold a write smaller than a packet while data is in flight (Nagle). Default on.
    pub nagle: bool,
    /// An idle connection sends an `ST_STATE` this often (keeps NAT mappings). Default
    /// 29 s (libutp).
    pub keepalive: Duration,
    /// How long an accepted connection waits for the initiator's first packet after the
    /// SYN. Default 10 s.
    pub half_open_timeout: Duration,
    /// Most accepted connections waiting for that first packet. Default 64.
    pub max_half_open: usize,
    /// Most connections in all (a SYN beyond it is dropped, `connect` fails). Default 1000.
    pub max_connections: usize,
    /// Accept incoming connections at all. Default true.
    pub accept_incoming: bool,
    /// `ST_RESET`s per second answering packets for unknown connections (0: never, as
    /// libtorrent). Default 0.
    pub resets_per_second: u32,
    /// After our FIN is acknowledged, how long to wait for the peer's. Default 5 s.
    pub linger: Duration,
    /// Spread data packets over the round trip ([`pacing`]). Default on.
    pub pacing: bool,
    /// Most datagrams a connection sends back to back (clamped to at least 4). Default
    /// 16.
    pub max_burst: usize,
}

impl Default for UtpConfig {
    fn default() -> Self {
        UtpConfig {
            max_packet_size: MAX_PACKET_SIZE,
            initial_packet_size: INITIAL_PACKET_SIZE,
            recv_window: 1 << 20,
            send_buffer: 1 << 20,
            max_window: 1 << 20,
            target_delay: Duration::from_millis(100),
            gain: 3000,
            min_rto: Duration::from_millis(500),
            syn_retries: 2,
            max_retransmits: 4,
            fin_retries: 2,
            delayed_ack: Duration::from_millis(1),
            nagle: true,
            keepalive: Duration::from_secs(29),
            half_open_timeout: Duration::from_secs(10),
            max_half_open: 64,
            max_connections: 1000,
            accept_incoming: true,
            resets_per_second: 0,
            linger: Duration::from_secs(5),
            pacing: true,
            max_burst: 16,
        }
    }
}

/// One stream of a [`UtpSocket`]; never reused within a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "utp#{}", self.0)
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: SocketAddr,
    /// The whole UDP payload.
    pub data: Bytes,
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CloseReason {
    /// The peer closed the stream (`ST_FIN`) and everything it sent was delivered.
    #[error("closed by the peer")]
    Finished,
    /// The peer reset the connection (`ST_RESET`), or refused it.
    #[error("reset by the peer")]
    Reset,
    /// No answer to our SYN.
    #[error("no answer to the uTP SYN")]
    ConnectTimedOut,
    /// The peer stopped acknowledging.
    #[error("uTP connection timed out")]
    TimedOut,
}

/// What a [`UtpSocket`] tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UtpEvent {
    /// A peer connected to us (its first packet after the SYN arrived).
    Incoming {
        /// The new stream.
        stream: StreamId,
        /// The peer.
        addr: SocketAddr,
    },
    /// A stream we opened with [`UtpSocket::connect`] is established.
    Connected {
        /// The stream.
        stream: StreamId,
    },
    /// Bytes from the peer, in order.
    Data {
        /// The stream.
        stream: StreamId,
        /// The bytes (never empty).
        data: Bytes,
    },
    /// `bytes` written to the stream left its send buffer (were put into packets): that
    /// much more [`UtpSocket::send_room`].
    Sent {
        /// The stream.
        stream: StreamId,
        /// How many.
        bytes: usize,
    },
    /// The stream is gone; nothing more comes for it. Not sent after
    /// [`UtpSocket::close`] or [`UtpSocket::abort`].
    Closed {
        /// The stream.
        stream: StreamId,
        /// Why.
        reason: CloseReason,
    },
}

/// A call the socket refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UtpError {
    /// The stream is not open (never was, closed, or reported closed).
    #[error("no such uTP stream")]
    UnknownStream,
    /// [`UtpConfig::max_connections`] are open.
    #[error("too many uTP connections")]
    TooManyConnections,
    /// The stream is closing: no more writes.
    #[error("uTP stream is closing")]
    Closing,
}

/// Numbers about one connection, for logs, tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStats {
    /// Congestion window, bytes.
    pub cwnd: usize,
    /// The peer's advertised receive window, bytes.
    pub peer_window: usize,
    /// Payload bytes sent and not yet acknowledged.
    pub in_flight: usize,
    /// Smoothed round-trip time, if measured.
    pub rtt: Option<Duration>,
    /// Current retransmission timeout.
    pub rto: Duration,
    /// The latest queueing delay of our packets, as LEDBAT sees it.
    pub queueing_delay: Option<Duration>,
    /// Packets sent (first transmissions and resends, acknowledgements included).
    pub packets_sent: u64,
    /// Packets resent.
    pub retransmits: u64,
    /// Times the retransmission timer expired.
    pub timeouts: u64,
    /// Datagram size in use (the path MTU search's floor).
    pub packet_size: usize,
    /// Payload bytes acknowledged by the peer.
    pub bytes_acked: u64,
    /// Payload bytes delivered to us in order.
    pub bytes_received: u64,
}
