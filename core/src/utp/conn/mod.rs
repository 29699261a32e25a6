//! One uTP connection's state machine: handshake, sending, acknowledging, retransmitting,
//! closing. The socket routes packets to it and drains what it queues in an [`Outbox`].
//!
//! Send side: bytes written wait in `unsent` until the windows (LEDBAT's and the peer's
//! advertised one) have room; each packet stays in `outbuf` (indexed from the oldest
//! unacknowledged sequence number) until acknowledged, cumulatively or selectively.
//! Receive side: in-order payload is delivered at once; later packets wait in `reorder`
//! (indexed from the next expected sequence number) until the gap before them fills.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::ledbat::{DelayHistory, Ledbat};
use super::mtu::Mtu;
use super::pacing::Pacer;
use super::packet::{self, HEADER_LEN, Header, Packet, PacketType};
use super::rtt::RttEstimator;
use super::seq::Seq;
use super::{
    CloseReason, MAX_PACKET_SIZE_V6, StreamId, StreamStats, Transmit, UtpConfig, UtpError, UtpEvent,
};
use crate::time::Instant;

mod recv;
mod send;

/// Most packets in flight on one connection (libutp: 1024; far below half the sequence
/// space, so sequence comparisons within the window are exact).
pub(crate) const MAX_OUTSTANDING: usize = 2048;
/// Most packets held out of order, whatever the receive window.
const MAX_REORDER: usize = 2048;
/// Longest selective ACK we send: bits for 256 packets past the gap.
const MAX_SACK_BYTES: usize = 32;
/// The window a peer is assumed to have when its SYN advertises none (libtorrent's SYN
/// says 0); its first real packet replaces it.
const DEFAULT_PEER_WINDOW: usize = 64 * 1024;
/// Duplicate acknowledgements (or selective ones past a packet) that mark it lost.
const DUP_ACK_LIMIT: u32 = 3;
/// Packets resent at most per selective ACK.
const MAX_FAST_RESENDS: usize = 4;
/// A loss halves the window at most this often (libtorrent's `cwnd_reduce_timer`).
const LOSS_INTERVAL: Duration = Duration::from_millis(100);
/// A closed connection that still has data or a FIN to get across is dropped after this
/// long without progress (or as long as its retransmission limits allow, if longer): a
/// peer that keeps its window shut cannot hold it forever.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(60);
/// uTorrent once sent this as an unset delay sample (libtorrent ignores it too).
const BOGUS_DELAY_SAMPLE: u32 = i32::MAX as u32;
/// A burst is at most this long at the pacing rate (and at least [`MIN_BURST`] datagrams,
/// at most [`UtpConfig::max_burst`]): drivers' timers are often good to a millisecond only.
const PACING_GRANULARITY: Duration = Duration::from_millis(2);
/// The shortest burst, in datagrams (RFC 9002 lets a paced sender burst its initial
/// window; ours is two packets, and four keep slow start's doubling cheap on long paths).
pub(crate) const MIN_BURST: usize = 4;

/// What connections queue for the socket's owner.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub transmits: VecDeque<Transmit>,
    pub events: VecDeque<UtpEvent>,
}

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// We sent a SYN and wait for its acknowledgement.
    SynSent,
    /// We acknowledged a SYN and wait for the initiator's next packet (half-open).
    SynRecv,
    /// Established (possibly closing: see the FIN fields).
    Connected,
    /// Finished; the socket forgets it.
    Done,
}

/// A packet we sent (or will resend) and the peer has not acknowledged.
#[derive(Debug)]
struct OutPacket {
    ty: PacketType,
    payload: Bytes,
    sent_at: Instant,
    transmissions: u32,
    /// Counted lost by a timeout: not in flight until resent.
    need_resend: bool,
    /// A path MTU probe: its first transmission is padded to the probe's size.
    probe: bool,
}

/// When an acknowledgement is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckDue {
    No,
    By(Instant),
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub id: StreamId,
    pub addr: SocketAddr,
    /// Packets to us carry this id.
    pub recv_id: u16,
    /// Packets from us carry this id (except our SYN, which carries `recv_id`).
    pub send_id: u16,
    state: State,
    /// The owner knows this stream: events are reported.
    attached: bool,
    cfg: UtpConfig,
    /// Largest payload of a packet with no extension: the path MTU search's floor less the
    /// header.
    mss: usize,
    /// The path MTU search.
    mtu: Mtu,

    // Send side.
    /// The next sequence number we will use.
    seq_nr: Seq,
    /// Everything up to and including this is acknowledged; `outbuf[0]` is `acked + 1`.
    acked: Seq,
    /// Packets from `acked + 1` up to `seq_nr - 1`; `None` once selectively acknowledged.
    outbuf: VecDeque<Option<OutPacket>>,
    /// `Some` entries in `outbuf`.
    live: usize,
    /// Payload bytes sent and not acknowledged (packets counted lost excluded).
    in_flight: usize,
    /// Packets counted lost by a timeout and not resent yet.
    to_resend: usize,
    unsent: VecDeque<Bytes>,
    unsent_len: usize,
    peer_wnd: usize,
    dup_acks: u32,
    /// Packets from here on may still be fast-resent (each once).
    fast_resend_from: Seq,
    /// A loss of a packet sent at or before this does not cut the window again.
    loss_seq: Seq,
    next_loss_cut: Instant,
    rtt: RttEstimator,
    ledbat: Ledbat,
    /// Our packets' delay to the peer (from its timestamp differences).
    our_delay: DelayHistory,
    /// The peer's packets' delay to us (to follow clock drift).
    their_delay: DelayHistory,
    /// Our clock minus the peer's timestamp on its latest packet; goes in our headers.
    reply_micro: u32,
    /// Consecutive retransmission timeouts without progress.
    timeouts: u32,
    rto_deadline: Option<Instant>,
    /// The peer's window is below a packet with nothing in flight: probe at this time.
    probe_at: Option<Instant>,
    probe_allowed: bool,
    /// When the last packet in flight was acknowledged.
    idle_since: Option<Instant>,
    /// Spreads data packets over the round trip.
    pacer: Pacer,
    /// Data waits for the pacer: send it at this time.
    pace_at: Option<Instant>,
    /// Send a FIN once `unsent` is empty.
    fin_wanted: bool,
    fin_seq: Option<Seq>,
    fin_acked: bool,

    // Receive side.
    /// The last sequence number received in order.
    ack_nr: Seq,
    /// Packets from `ack_nr + 1` on; `reorder[0]`, when present, is always `None`.
    reorder: VecDeque<Option<Bytes>>,
    reorder_bytes: usize,
    max_reorder: usize,
    /// The peer's FIN sequence number.
    eof: Option<Seq>,
    /// Everything up to the peer's FIN has arrived.
    got_eof: bool,
    ack_due: AckDue,
    /// In-order payload bytes not yet acknowledged.
    unacked_bytes: usize,

    // Timers.
    last_sent: Instant,
    half_open_deadline: Option<Instant>,
    linger_deadline: Option<Instant>,
    close_deadline: Option<Instant>,

    // Counters.
    packets_sent: u64,
    retransmits: u64,
    rto_expirations: u64,
    bytes_acked: u64,
    bytes_received: u64,
}

impl Conn {
    fn new(
        id: StreamId,
        addr: SocketAddr,
        recv_id: u16,
        send_id: u16,
        isn: Seq,
        now: Instant,
        cfg: &UtpConfig,
    ) -> Conn {
        let ceiling = if addr.is_ipv6() {
            cfg.max_packet_size.min(MAX_PACKET_SIZE_V6)
        } else {
            cfg.max_packet_size
        };
        let mtu = Mtu::new(cfg.initial_packet_size, ceiling);
        let mss = mtu.floor() - HEADER_LEN;
        Conn {
            id,
            addr,
            recv_id,
            send_id,
            state: State::SynSent,
            attached: false,
            cfg: *cfg,
            mss,
            mtu,
            seq_nr: isn,
            acked: isn.minus(1),
            outbuf: VecDeque::new(),
            live: 0,
            in_flight: 0,
            to_resend: 0,
            unsent: VecDeque::new(),
            unsent_len: 0,
            peer_wnd: DEFAULT_PEER_WINDOW,
            dup_acks: 0,
            fast_resend_from: isn,
            loss_seq: isn.minus(1),
            next_loss_cut: now,
            rtt: RttEstimator::new(cfg.min_rto),
            ledbat: Ledbat::new(mss, 2 * mss, cfg.max_window, cfg.target_delay, cfg.gain),
            our_delay: DelayHistory::new(),
            their_delay: DelayHistory::new(),
            reply_micro: 0,
            timeouts: 0,
            rto_deadline: None,
            probe_at: None,
            probe_allowed: false,
            idle_since: None,
            pacer: Pacer::new(cfg.max_burst * (mss + HEADER_LEN), now),
            pace_at: None,
            fin_wanted: false,
            fin_seq: None,
            fin_acked: false,
            ack_nr: Seq(0),
            reorder: VecDeque::new(),
            reorder_bytes: 0,
            max_reorder: (cfg.recv_window / 1024).clamp(16, MAX_REORDER),
            eof: None,
            got_eof: false,
            ack_due: AckDue::No,
            unacked_bytes: 0,
            last_sent: now,
            half_open_deadline: None,
            linger_deadline: None,
            close_deadline: None,
            packets_sent: 0,
            retransmits: 0,
            rto_expirations: 0,
            bytes_acked: 0,
            bytes_received: 0,
        }
    }

    /// Opens a connection to `addr`, receiving on `recv_id`: queues the SYN.
    pub fn connect(
        id: StreamId,
        addr: SocketAddr,
        recv_id: u16,
        isn: Seq,
        now: Instant,
        cfg: &UtpConfig,
        out: &mut Outbox,
    ) -> Conn {
        let mut c = Conn::new(id, addr, recv_id, recv_id.wrapping_add(1), isn, now, cfg);
        c.attached = true;
        c.push_packet(PacketType::Syn, Bytes::new());
        c.transmit(0, now, out);
        c.rto_deadline = Some(now + c.rtt.rto());
        c
    }

    /// Accepts the SYN `syn` from `addr`: queues its acknowledgement. The connection is
    /// half-open until the initiator's next packet.
    pub fn accept(
        id: StreamId,
        addr: SocketAddr,
        syn: &Packet<'_>,
        isn: Seq,
        now: Instant,
        cfg: &UtpConfig,
        out: &mut Outbox,
    ) -> Conn {
        let h = &syn.header;
        let mut c = Conn::new(
            id,
            addr,
            h.conn_id.wrapping_add(1),
            h.conn_id,
            isn,
            now,
            cfg,
        );
        c.state = State::SynRecv;
        c.ack_nr = h.seq_nr;
        if h.wnd_size != 0 {
            c.peer_wnd = h.wnd_size as usize;
        }
        c.note_timestamp(h.timestamp_us, now);
        c.half_open_deadline = Some(now + cfg.half_open_timeout);
        c.ack_due = AckDue::By(now);
        c.flush(now, out);
        c
    }

    /// Accepts a SYN whose answer (a SYN cookie) the initiator has just acknowledged: the
    /// connection is half-open until `handle_packet` takes that acknowledging packet,
    /// and nothing is queued.
    pub fn accept_checked(
        id: StreamId,
        addr: SocketAddr,
        syn: &Header,
        isn: Seq,
        now: Instant,
        cfg: &UtpConfig,
    ) -> Conn {
        let mut c = Conn::new(
            id,
            addr,
            syn.conn_id.wrapping_add(1),
            syn.conn_id,
            isn,
            now,
            cfg,
        );
        c.state = State::SynRecv;
        c.ack_nr = syn.seq_nr;
        if syn.wnd_size != 0 {
            c.peer_wnd = syn.wnd_size as usize;
        }
        c.half_open_deadline = Some(now + cfg.half_open_timeout);
        c
    }

    // Getters.

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    pub fn attached(&self) -> bool {
        self.attached
    }

    /// Bytes [`Conn::write`] would take now.
    pub fn send_room(&self) -> usize {
        if !self.attached || self.fin_wanted {
            return 0;
        }
        self.cfg.send_buffer.saturating_sub(self.unsent_len)
    }

    pub fn stats(&self) -> StreamStats {
        StreamStats {
            cwnd: self.ledbat.window(),
            peer_window: self.peer_wnd,
            in_flight: self.in_flight,
            rtt: self.rtt.rtt(),
            rto: self.rtt.rto(),
            queueing_delay: self
                .our_delay
                .current()
                .map(|us| Duration::from_micros(u64::from(us))),
            packets_sent: self.packets_sent,
            retransmits: self.retransmits,
            timeouts: self.rto_expirations,
            packet_size: self.mtu.floor(),
            bytes_acked: self.bytes_acked,
            bytes_received: self.bytes_received,
        }
    }

    /// The earliest time [`Conn::handle_timeout`] has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        if self.state == State::Done {
            return None;
        }
        let keepalive =
            (self.state == State::Connected).then(|| self.last_sent + self.cfg.keepalive);
        let ack = match self.ack_due {
            AckDue::By(t) => Some(t),
            AckDue::No => None,
        };
        [
            self.rto_deadline,
            self.probe_at,
            self.pace_at,
            ack,
            keepalive,
            self.half_open_deadline,
            self.linger_deadline,
            self.close_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Timers: retransmission, delayed acknowledgement, keep-alive, half-open and closing
    /// deadlines.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outbox) {
        if self.state == State::Done {
            return;
        }
        let passed = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if passed(self.close_deadline) || passed(self.linger_deadline) {
            self.state = State::Done;
            return;
        }
        if passed(self.half_open_deadline) {
            // Half-open: nobody knows this stream yet.
            self.state = State::Done;
            return;
        }
        if passed(self.rto_deadline) {
            self.rto_deadline = None;
            self.on_rto(now, out);
            if self.state == State::Done {
                return;
            }
        }
        if passed(self.probe_at) {
            self.probe_at = None;
            self.probe_allowed = true;
        }
        if passed(self.pace_at) {
            self.pace_at = None;
        }
        if self.state == State::Connected && self.last_sent + self.cfg.keepalive <= now {
            self.ack_due = AckDue::By(now);
        }
        self.flush(now, out);
        self.check_finished();
    }

    // Mutators.

    /// Queues up to [`Conn::send_room`] bytes of `data`; returns how many were taken.
    pub fn write(
        &mut self,
        now: Instant,
        mut data: Bytes,
        out: &mut Outbox,
    ) -> Result<usize, UtpError> {
        if !self.attached {
            return Err(UtpError::UnknownStream);
        }
        if self.fin_wanted {
            return Err(UtpError::Closing);
        }
        let take = data.len().min(self.send_room());
        if take == 0 {
            return Ok(0);
        }
        data.truncate(take);
        self.unsent.push_back(data);
        self.unsent_len += take;
        self.flush(now, out);
        Ok(take)
    }

    /// The owner is done with the stream: send what is buffered, then a FIN.
    pub fn close(&mut self, now: Instant, out: &mut Outbox) {
        self.attached = false;
        match self.state {
            State::SynRecv => self.state = State::Done,
            // Still connecting: what was written goes out once connected, then the FIN.
            State::SynSent | State::Connected => {
                self.fin_wanted = true;
                self.close_deadline = Some(now + self.close_timeout());
                self.flush(now, out);
                self.check_finished();
            }
            State::Done => {}
        }
    }

    /// Drops the connection at once, telling the peer with `ST_RESET`.
    pub fn abort(&mut self, now: Instant, out: &mut Outbox) {
        self.attached = false;
        if matches!(self.state, State::Connected | State::SynRecv) {
            let h = self.header(PacketType::Reset, self.seq_nr, now);
            out.transmits.push_back(Transmit {
                to: self.addr,
                data: packet::encode(&h, None, &[]),
            });
        }
        self.state = State::Done;
    }

    /// How long a closed connection may go without progress: [`CLOSE_TIMEOUT`], or longer
    /// when the retransmission limits allow more (the timeouts, doubling from the current
    /// one, that `max_retransmits` or `fin_retries` permit), so that a lossy path loses
    /// nothing on close that it would not lose open.
    fn close_timeout(&self) -> Duration {
        let mut budget = Duration::ZERO;
        let mut rto = self.rtt.base_rto();
        for _ in 0..=self.cfg.max_retransmits.max(self.cfg.fin_retries).min(32) {
            budget += rto;
            rto = (rto * 2).min(super::rtt::MAX_RTO);
        }
        budget.max(CLOSE_TIMEOUT)
    }

    fn die(&mut self, reason: CloseReason, out: &mut Outbox) {
        if self.attached {
            out.events.push_back(UtpEvent::Closed {
                stream: self.id,
                reason,
            });
        }
        self.attached = false;
        self.state = State::Done;
    }

    fn check_finished(&mut self) {
        if self.fin_acked && self.got_eof {
            self.state = State::Done;
        }
    }
}
