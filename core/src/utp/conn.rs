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

use bytes::{Buf, Bytes, BytesMut};

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

    // Input.

    /// A packet for this connection (any type but SYN).
    pub fn handle_packet(&mut self, now: Instant, pkt: &Packet<'_>, out: &mut Outbox) {
        if self.state == State::Done {
            return;
        }
        let h = pkt.header;
        match h.ty {
            PacketType::Syn => {
                // The initiator did not get our acknowledgement: send it again.
                if self.state == State::SynRecv && h.seq_nr == self.ack_nr {
                    self.ack_due = AckDue::By(now);
                    self.flush(now, out);
                }
                return;
            }
            PacketType::Reset => {
                // Only a reset that echoes a sequence number we could have sent counts.
                if h.ack_nr
                    .within(self.acked.minus(MAX_OUTSTANDING as u16), self.seq_nr)
                {
                    self.die(CloseReason::Reset, out);
                }
                return;
            }
            PacketType::Data | PacketType::Fin | PacketType::State => {}
        }
        // An acknowledgement of something we never sent, or far older than anything
        // outstanding, is not from our peer (or hopelessly late): ignore the packet.
        let last_sent = self.seq_nr.minus(1);
        if h.ack_nr.after(last_sent) || h.ack_nr.before(self.acked.minus(MAX_OUTSTANDING as u16)) {
            return;
        }
        match self.state {
            State::SynSent => {
                if h.ack_nr != last_sent {
                    return;
                }
                self.state = State::Connected;
                self.ack_nr = h.seq_nr.minus(1);
                if self.attached {
                    out.events
                        .push_back(UtpEvent::Connected { stream: self.id });
                }
            }
            State::SynRecv => {
                // Only the initiator answering our `ST_STATE` connects: it acknowledges
                // exactly the sequence number before our first (nothing of ours is in
                // flight yet). Anything else within the window check above is a stray
                // packet for the id, such as another connection's acknowledgement.
                if h.ack_nr != last_sent {
                    return;
                }
                self.state = State::Connected;
                self.half_open_deadline = None;
                self.attached = true;
                out.events.push_back(UtpEvent::Incoming {
                    stream: self.id,
                    addr: self.addr,
                });
            }
            State::Connected | State::Done => {}
        }
        // A data packet beyond what we can buffer says nothing we can trust either.
        if matches!(h.ty, PacketType::Data | PacketType::Fin)
            && h.seq_nr.after(self.ack_nr)
            && usize::from(h.seq_nr.since(self.ack_nr)) > self.max_reorder
        {
            return;
        }

        self.note_timestamp(h.timestamp_us, now);
        let delay_sample = (h.timestamp_diff_us != 0 && h.timestamp_diff_us != BOGUS_DELAY_SAMPLE)
            .then(|| self.our_delay.add_sample(h.timestamp_diff_us, now));
        self.peer_wnd = h.wnd_size as usize;
        if self.peer_wnd >= self.mss {
            self.probe_at = None;
            self.probe_allowed = false;
        }

        // Acknowledgements.
        let in_flight_before = self.in_flight;
        let mut acked = Acked::default();
        if h.ack_nr.after(self.acked) {
            let n = h.ack_nr.since(self.acked);
            for _ in 0..n {
                let s = self.acked.next();
                if let Some(Some(p)) = self.outbuf.pop_front() {
                    self.account_acked(s, p, now, &mut acked);
                }
                self.acked = s;
            }
            self.dup_acks = 0;
        } else if h.ack_nr == self.acked && h.ty == PacketType::State && self.live > 0 {
            self.dup_acks += 1;
        }
        if let Some(mask) = pkt.sack {
            self.selective_ack(h.ack_nr, mask, now, &mut acked, out);
        }
        // Selectively acknowledged packets at the front are acknowledged for good.
        while let Some(None) = self.outbuf.front() {
            self.outbuf.pop_front();
            self.acked = self.acked.next();
        }
        if self.fast_resend_from.before(self.acked.next()) {
            self.fast_resend_from = self.acked.next();
        }
        if acked.bytes > 0 || acked.packets > 0 {
            self.rtt.reset_backoff();
            self.timeouts = 0;
            if self.close_deadline.is_some() {
                self.close_deadline = Some(now + self.close_timeout());
            }
            self.rto_deadline = (self.live > 0).then(|| now + self.rtt.rto());
            if self.live == 0 {
                self.idle_since = Some(now);
            }
        } else if self.live > 0
            && self
                .outbuf
                .front()
                .and_then(Option::as_ref)
                .is_some_and(|p| (h.wnd_size as usize) < p.payload.len())
        {
            // The peer is alive and full: what it drops is not a dead connection.
            self.timeouts = 0;
        }
        if self.dup_acks >= DUP_ACK_LIMIT {
            self.dup_acks = 0;
            let s = self.acked.next();
            let resendable = self
                .outbuf
                .front()
                .and_then(Option::as_ref)
                .is_some_and(|p| !p.need_resend);
            if resendable && !s.before(self.fast_resend_from) {
                self.fast_resend_from = s.next();
                self.lost(s, now);
                self.resend_lost(0, now, out);
            }
        }
        if let Some(sample) = delay_sample
            && acked.bytes > 0
            && in_flight_before > 0
        {
            let delay = self.our_delay.current().unwrap_or(sample);
            let delay = u64::from(delay).min(acked.min_rtt_us) as u32;
            self.ledbat.on_ack(acked.bytes, delay, in_flight_before);
        }
        if let Some(fin) = self.fin_seq
            && !self.fin_acked
            && !fin.after(self.acked)
        {
            self.fin_acked = true;
            if !self.got_eof {
                self.linger_deadline = Some(now + self.cfg.linger);
            }
        }

        // Payload.
        match h.ty {
            PacketType::Data => self.receive_data(now, h.seq_nr, pkt.payload, out),
            PacketType::Fin => self.receive_fin(now, h.seq_nr, out),
            _ => {}
        }
        self.flush(now, out);
        self.check_finished();
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

    // Internals.

    fn note_timestamp(&mut self, timestamp_us: u32, now: Instant) {
        if timestamp_us == 0 {
            return;
        }
        let reply = packet::micros(now).wrapping_sub(timestamp_us);
        self.reply_micro = reply;
        let before = self.their_delay.base();
        self.their_delay.add_sample(reply, now);
        if let (Some(before), Some(after)) = (before, self.their_delay.base()) {
            // Their base delay fell: their clock runs slow against ours, which makes ours
            // look as if it grew. Raise our base by as much (up to 10 ms at a time).
            let change = after.wrapping_sub(before) as i32;
            if (-10_000..0).contains(&change) && self.our_delay.base().is_some() {
                self.our_delay.shift(change.unsigned_abs());
            }
        }
    }

    fn account_acked(&mut self, seq: Seq, p: OutPacket, now: Instant, acked: &mut Acked) {
        self.live -= 1;
        if p.probe && self.mtu.probe().is_some_and(|(s, _)| s == seq) {
            if p.transmissions == 1 {
                // The padded first transmission arrived: the path carries that size.
                let floor = self.mtu.probe_acked();
                self.set_packet_size(floor);
            } else {
                self.mtu.probe_lost();
            }
        }
        let len = p.payload.len();
        if p.need_resend {
            self.to_resend -= 1;
        } else {
            self.in_flight -= len;
        }
        let rtt = now.saturating_duration_since(p.sent_at);
        // Karn's rule, and more: a packet a timeout presumed lost says nothing about the
        // round trip either (its acknowledgement may come after a long recovery).
        if p.transmissions == 1 && !p.need_resend {
            self.rtt.sample(rtt);
        }
        acked.min_rtt_us = acked.min_rtt_us.min(rtt.as_micros() as u64);
        acked.bytes += len;
        acked.packets += 1;
        self.bytes_acked += len as u64;
    }

    /// A selective ACK: bit `i` of `mask` (least significant bit of each byte first) says
    /// whether `base + 2 + i` arrived; `base + 1` is missing. Acknowledges what arrived and
    /// resends packets with at least three acknowledged packets after them.
    fn selective_ack(
        &mut self,
        base: Seq,
        mask: &[u8],
        now: Instant,
        acked: &mut Acked,
        out: &mut Outbox,
    ) {
        let first = base.plus(2);
        let bits = mask.len() * 8;
        let bit = |i: usize| mask[i / 8] & (1 << (i % 8)) != 0;
        // Only numbers we sent and that are not acknowledged yet mean anything.
        let outstanding = |s: Seq, acked_to: Seq, next: Seq| s.after(acked_to) && s.before(next);
        for i in 0..bits {
            let s = first.plus(i as u16);
            if !s.before(self.seq_nr) {
                break;
            }
            if !bit(i) || !outstanding(s, self.acked, self.seq_nr) {
                continue;
            }
            let idx = usize::from(s.since(self.acked.next()));
            if let Some(p) = self.outbuf.get_mut(idx).and_then(Option::take) {
                self.account_acked(s, p, now, acked);
            }
        }
        // From the top down: a packet still outstanding with three or more acknowledged
        // after it is lost. `base + 1` (index -1) is the first candidate.
        let mut after = 0u32;
        let mut lost: Vec<Seq> = Vec::new();
        for i in (0..=bits).rev() {
            let s = base.plus(1 + i as u16);
            if !s.before(self.seq_nr) || !s.after(self.acked) {
                continue;
            }
            if i > 0 && bit(i - 1) {
                after += 1;
                continue;
            }
            if after >= DUP_ACK_LIMIT && !s.before(self.fast_resend_from) {
                let idx = usize::from(s.since(self.acked.next()));
                if self
                    .outbuf
                    .get(idx)
                    .and_then(Option::as_ref)
                    .is_some_and(|p| !p.need_resend)
                {
                    lost.push(s);
                }
            }
        }
        // Oldest first, a few per acknowledgement.
        for &s in lost.iter().rev().take(MAX_FAST_RESENDS) {
            self.lost(s, now);
            let idx = usize::from(s.since(self.acked.next()));
            self.resend_lost(idx, now, out);
            if s.after(self.fast_resend_from) || s == self.fast_resend_from {
                self.fast_resend_from = s.next();
            }
        }
    }

    /// Resends packet `idx`, just found lost, if the pacer lets a packet leave now;
    /// otherwise it waits its turn in `send_resends`, so that losses (a burst of them
    /// acknowledged at once) never make a burst the pacer would not.
    fn resend_lost(&mut self, idx: usize, now: Instant, out: &mut Outbox) {
        if self.paced(now) {
            self.transmit(idx, now, out);
            return;
        }
        if let Some(Some(p)) = self.outbuf.get_mut(idx)
            && !p.need_resend
        {
            p.need_resend = true;
            self.in_flight -= p.payload.len();
            self.to_resend += 1;
        }
    }

    /// Full packets are `size` bytes from now on (the path MTU search moved its floor).
    fn set_packet_size(&mut self, size: usize) {
        self.mss = size - HEADER_LEN;
        self.ledbat.set_mss(self.mss);
    }

    /// Packet `s` was found lost (and is about to be resent): a path MTU probe's loss
    /// teaches the search; any other's is congestion.
    fn lost(&mut self, s: Seq, now: Instant) {
        if self.mtu.probe().is_some_and(|(seq, _)| seq == s) {
            self.mtu.probe_lost();
        } else {
            self.on_loss(s, now);
        }
    }

    /// Packet `s` was lost: halve the window, once per window of packets and at most every
    /// 100 ms.
    fn on_loss(&mut self, s: Seq, now: Instant) {
        if s.after(self.loss_seq) && now >= self.next_loss_cut {
            self.ledbat.on_loss();
            self.loss_seq = self.seq_nr.minus(1);
            self.next_loss_cut = now + LOSS_INTERVAL;
        }
    }

    fn on_rto(&mut self, now: Instant, out: &mut Outbox) {
        if self.live == 0 {
            return;
        }
        self.rto_expirations += 1;
        // Only a path MTU probe was outstanding: it was too large, not a sign of
        // congestion or of a dead peer. Resend its payload unpadded.
        if let Some((probe, _)) = self.mtu.probe()
            && self.live == 1
            && let Some(idx) = self.outbuf.iter().position(Option::is_some)
            && self.acked.plus(1 + idx as u16) == probe
        {
            self.mtu.probe_lost();
            self.transmit(idx, now, out);
            if !probe.before(self.fast_resend_from) {
                self.fast_resend_from = probe.next();
            }
            self.rto_deadline = Some(now + self.rtt.rto());
            return;
        }
        self.mtu.probe_abandoned();
        self.timeouts += 1;
        self.rtt.on_timeout();
        let front_is_fin = self
            .outbuf
            .front()
            .and_then(Option::as_ref)
            .is_some_and(|p| p.ty == PacketType::Fin);
        let limit = match self.state {
            State::SynSent => self.cfg.syn_retries,
            _ if front_is_fin => self.cfg.fin_retries,
            _ => self.cfg.max_retransmits,
        };
        if self.timeouts > limit {
            let reason = if self.state == State::SynSent {
                CloseReason::ConnectTimedOut
            } else {
                CloseReason::TimedOut
            };
            self.die(reason, out);
            return;
        }
        // Full packets timing out again and again: perhaps the path no longer carries
        // our datagrams' size (a black hole). Later packets go smaller; the search
        // resumes below the old size. A packet sent before an earlier shrink (larger) or
        // a short one says nothing about the current size.
        let front_is_full = self
            .outbuf
            .iter()
            .flatten()
            .next()
            .is_some_and(|p| p.ty == PacketType::Data && p.payload.len() == self.mss);
        if front_is_full
            && self
                .timeouts
                .is_multiple_of(super::mtu::BLACK_HOLE_TIMEOUTS)
        {
            let floor = self.mtu.black_hole();
            self.set_packet_size(floor);
        }
        // Everything in flight is presumed lost; start again from one packet.
        for p in self.outbuf.iter_mut().flatten() {
            if !p.need_resend {
                p.need_resend = true;
                self.in_flight -= p.payload.len();
                self.to_resend += 1;
            }
        }
        self.ledbat.on_timeout(false);
        self.loss_seq = self.seq_nr.minus(1);
        self.dup_acks = 0;
        if let Some(idx) = self.outbuf.iter().position(Option::is_some) {
            self.transmit(idx, now, out);
            let s = self.acked.plus(1 + idx as u16);
            if !s.before(self.fast_resend_from) {
                self.fast_resend_from = s.next();
            }
        }
        self.rto_deadline = Some(now + self.rtt.rto());
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

    fn receive_data(&mut self, now: Instant, seq: Seq, payload: &[u8], out: &mut Outbox) {
        if self.got_eof {
            self.ack_due = AckDue::By(now);
            return;
        }
        if self.eof.is_some_and(|eof| !seq.before(eof)) {
            return;
        }
        let expected = self.ack_nr.next();
        if seq == expected {
            self.reorder.pop_front();
            self.ack_nr = seq;
            self.deliver(Bytes::copy_from_slice(payload), out);
            let mut drained = false;
            while let Some(Some(_)) = self.reorder.front() {
                if let Some(Some(b)) = self.reorder.pop_front() {
                    self.reorder_bytes -= b.len();
                    self.ack_nr = self.ack_nr.next();
                    self.deliver(b, out);
                    drained = true;
                }
            }
            self.unacked_bytes += payload.len();
            if drained || !self.reorder.is_empty() || self.unacked_bytes >= 2 * self.mss {
                self.ack_due = AckDue::By(now);
            } else {
                let by = now + self.cfg.delayed_ack;
                self.ack_due = match self.ack_due {
                    AckDue::By(t) if t < by => AckDue::By(t),
                    _ => AckDue::By(by),
                };
            }
            self.maybe_eof(out);
        } else if seq.after(expected) {
            // Out of order: keep it (within bounds) and tell the peer at once.
            self.ack_due = AckDue::By(now);
            let off = usize::from(seq.since(expected));
            if off >= self.max_reorder {
                return;
            }
            if self.reorder.get(off).is_some_and(Option::is_some) {
                return;
            }
            if self.reorder_bytes + payload.len() > self.cfg.recv_window {
                return;
            }
            if self.reorder.len() <= off {
                self.reorder.resize(off + 1, None);
            }
            self.reorder[off] = Some(Bytes::copy_from_slice(payload));
            self.reorder_bytes += payload.len();
        } else {
            // Already delivered: our acknowledgement was lost.
            self.ack_due = AckDue::By(now);
        }
    }

    fn receive_fin(&mut self, now: Instant, seq: Seq, out: &mut Outbox) {
        self.ack_due = AckDue::By(now);
        if self.eof.is_some() || !seq.after(self.ack_nr) {
            return;
        }
        // Nothing comes after a FIN: drop anything held beyond it.
        let off = usize::from(seq.since(self.ack_nr.next()));
        while self.reorder.len() > off {
            if let Some(Some(b)) = self.reorder.pop_back() {
                self.reorder_bytes -= b.len();
            }
        }
        self.eof = Some(seq);
        self.maybe_eof(out);
    }

    /// Everything up to the peer's FIN arrived: the stream is finished for the owner, and
    /// we answer with our own FIN.
    fn maybe_eof(&mut self, out: &mut Outbox) {
        if self.got_eof || self.eof != Some(self.ack_nr.next()) {
            return;
        }
        self.ack_nr = self.ack_nr.next();
        self.got_eof = true;
        self.reorder.clear();
        self.reorder_bytes = 0;
        if self.attached {
            out.events.push_back(UtpEvent::Closed {
                stream: self.id,
                reason: CloseReason::Finished,
            });
            self.attached = false;
        }
        if !self.fin_wanted {
            self.unsent.clear();
            self.unsent_len = 0;
            self.fin_wanted = true;
        }
    }

    fn deliver(&mut self, data: Bytes, out: &mut Outbox) {
        self.bytes_received += data.len() as u64;
        if self.attached && !data.is_empty() {
            out.events.push_back(UtpEvent::Data {
                stream: self.id,
                data,
            });
        }
    }

    fn check_finished(&mut self) {
        if self.fin_acked && self.got_eof {
            self.state = State::Done;
        }
    }

    fn send_window(&self) -> usize {
        self.ledbat.window().min(self.peer_wnd)
    }

    /// Our receive window: what we can still hold out of order.
    fn adv_window(&self) -> u32 {
        self.cfg
            .recv_window
            .saturating_sub(self.reorder_bytes)
            .min(u32::MAX as usize) as u32
    }

    /// Bytes of selective ACK we would send now, given `room` bytes for it (its two
    /// header bytes included); 0 for none.
    fn sack_len(&self, room: usize) -> usize {
        if self.reorder.len() <= 1 || room < 6 {
            return 0;
        }
        let bits = self.reorder.len() - 1;
        let want = bits
            .div_ceil(8)
            .next_multiple_of(4)
            .clamp(4, MAX_SACK_BYTES);
        want.min((room - 2) / 4 * 4)
    }

    /// The selective ACK bitmask of `len` bytes: bit `i` is `ack_nr + 2 + i`.
    fn sack_mask(&self, len: usize) -> [u8; MAX_SACK_BYTES] {
        let mut mask = [0u8; MAX_SACK_BYTES];
        for (i, slot) in self.reorder.iter().skip(1).take(len * 8).enumerate() {
            if slot.is_some() {
                mask[i / 8] |= 1 << (i % 8);
            }
        }
        mask
    }

    fn header(&self, ty: PacketType, seq_nr: Seq, now: Instant) -> Header {
        Header {
            ty,
            conn_id: if ty == PacketType::Syn {
                self.recv_id
            } else {
                self.send_id
            },
            timestamp_us: packet::micros(now),
            timestamp_diff_us: self.reply_micro,
            wnd_size: self.adv_window(),
            seq_nr,
            ack_nr: if ty == PacketType::Syn {
                Seq(0)
            } else {
                self.ack_nr
            },
        }
    }

    /// Encodes and queues a packet, with a selective ACK if one is due and fits, padded to
    /// `pad_to` bytes (a path MTU probe; 0: no padding).
    fn emit(&mut self, h: Header, payload: &[u8], pad_to: usize, now: Instant, out: &mut Outbox) {
        let room = self.mtu.floor().saturating_sub(HEADER_LEN + payload.len());
        let sack_len = if h.ty == PacketType::Syn {
            0
        } else {
            self.sack_len(room)
        };
        let mask = self.sack_mask(sack_len);
        let sack = (sack_len > 0).then(|| &mask[..sack_len]);
        let data = packet::encode_padded(&h, sack, payload, pad_to);
        self.pacer.spend(data.len());
        out.transmits.push_back(Transmit {
            to: self.addr,
            data,
        });
        self.last_sent = now;
        self.packets_sent += 1;
        if h.ty != PacketType::Syn && h.ty != PacketType::Reset {
            self.ack_due = AckDue::No;
            self.unacked_bytes = 0;
        }
    }

    fn push_packet(&mut self, ty: PacketType, payload: Bytes) {
        self.outbuf.push_back(Some(OutPacket {
            ty,
            payload,
            sent_at: Instant::ZERO,
            transmissions: 0,
            need_resend: false,
            probe: false,
        }));
        self.live += 1;
        self.seq_nr = self.seq_nr.next();
    }

    /// Sends (or resends) `outbuf[idx]`.
    fn transmit(&mut self, idx: usize, now: Instant, out: &mut Outbox) {
        let seq = self.acked.plus(1 + idx as u16);
        let Some(Some(p)) = self.outbuf.get_mut(idx) else {
            return;
        };
        if p.transmissions == 0 || p.need_resend {
            self.in_flight += p.payload.len();
        }
        if p.need_resend {
            self.to_resend -= 1;
        }
        if p.transmissions > 0 {
            self.retransmits += 1;
        }
        // A probe is padded on its first transmission only: a resend must arrive.
        let pad_to = match self.mtu.probe() {
            Some((s, size)) if p.probe && p.transmissions == 0 && s == seq => size,
            _ => 0,
        };
        p.transmissions += 1;
        p.need_resend = false;
        p.sent_at = now;
        let ty = p.ty;
        let payload = p.payload.clone();
        let h = self.header(ty, seq, now);
        self.emit(h, &payload, pad_to, now, out);
    }

    /// Takes `n` bytes from the front of `unsent` (without copying when they lie in one
    /// buffer).
    fn take_unsent(&mut self, n: usize) -> Bytes {
        self.unsent_len -= n;
        if let Some(front) = self.unsent.front_mut()
            && front.len() >= n
        {
            let b = front.split_to(n);
            if front.is_empty() {
                self.unsent.pop_front();
            }
            return b;
        }
        let mut buf = BytesMut::with_capacity(n);
        while buf.len() < n {
            let Some(front) = self.unsent.front_mut() else {
                break;
            };
            let k = front.len().min(n - buf.len());
            buf.extend_from_slice(&front[..k]);
            front.advance(k);
            if front.is_empty() {
                self.unsent.pop_front();
            }
        }
        buf.freeze()
    }

    /// Sends whatever the windows allow: resends after a timeout, new data, the FIN, and
    /// an acknowledgement if one is due and nothing else carried it.
    fn flush(&mut self, now: Instant, out: &mut Outbox) {
        if self.state == State::Connected {
            self.update_pacer(now);
            self.pace_at = None;
            self.send_resends(now, out);
            self.send_new(now, out);
        }
        if let AckDue::By(t) = self.ack_due
            && t <= now
            && self.state != State::SynSent
        {
            let h = self.header(PacketType::State, self.seq_nr, now);
            self.emit(h, &[], 0, now, out);
        }
        if self.live > 0 && self.rto_deadline.is_none() {
            self.rto_deadline = Some(now + self.rtt.rto());
        }
    }

    /// The pacing rate and burst from the window and the round-trip time: twice the
    /// window per round trip in slow start, 1.25 times after (Linux TCP's factors); a
    /// burst of [`PACING_GRANULARITY`] at that rate, within [`MIN_BURST`] datagrams and
    /// [`UtpConfig::max_burst`]. No rate before the first round-trip sample.
    fn update_pacer(&mut self, now: Instant) {
        let packet = self.mss + HEADER_LEN;
        let most = self.cfg.max_burst * packet;
        let rate = self.rtt.rtt().map(|rtt| {
            let rtt_us = rtt.as_micros().max(1);
            let (num, den) = if self.ledbat.in_slow_start() {
                (2, 1)
            } else {
                (5, 4)
            };
            let r = self.ledbat.window() as u128 * num * 1_000_000 / (den * rtt_us);
            r.min(u128::from(u64::MAX)) as u64
        });
        let burst = rate.map_or(most, |r| {
            let b = u128::from(r) * PACING_GRANULARITY.as_nanos() / 1_000_000_000;
            (b.min(most as u128) as usize)
                .max(MIN_BURST * packet)
                .min(most)
        });
        self.pacer.update(now, rate, burst);
    }

    /// Whether the pacer lets a data packet leave now; if not, when it will.
    fn paced(&mut self, now: Instant) -> bool {
        if !self.cfg.pacing || self.pacer.ready() {
            return true;
        }
        self.pace_at = Some(self.pacer.ready_at(now));
        false
    }

    fn send_resends(&mut self, now: Instant, out: &mut Outbox) {
        if self.to_resend == 0 {
            return;
        }
        for idx in 0..self.outbuf.len() {
            if self.to_resend == 0 {
                break;
            }
            let Some(Some(p)) = self.outbuf.get(idx) else {
                continue;
            };
            if !p.need_resend {
                continue;
            }
            if self.in_flight > 0 && self.in_flight + p.payload.len() > self.send_window() {
                break;
            }
            if !self.paced(now) {
                break;
            }
            self.transmit(idx, now, out);
        }
    }

    fn send_new(&mut self, now: Instant, out: &mut Outbox) {
        if self.to_resend > 0 {
            return;
        }
        if self.live == 0
            && let Some(since) = self.idle_since.take()
            && self.unsent_len > 0
        {
            // Idle for a while: the path may have changed; decay a third per timeout.
            let rto = self.rtt.base_rto().max(Duration::from_millis(1));
            let periods = (now.saturating_duration_since(since).as_nanos() / rto.as_nanos()).min(8);
            for _ in 0..periods {
                self.ledbat.on_timeout(true);
            }
        }
        let mut sent = 0;
        while self.unsent_len > 0 && self.fin_seq.is_none() && self.outbuf.len() < MAX_OUTSTANDING {
            let sack = self.sack_len(MAX_SACK_BYTES + 2);
            let room = self.mss - if sack > 0 { sack + 2 } else { 0 };
            let mut size = self.unsent_len.min(room);
            if self.cfg.nagle && size < room && self.in_flight > 0 && !self.fin_wanted {
                break;
            }
            let window = self.send_window();
            if self.in_flight == 0 && window > 0 && window < size {
                // The peer has room for less than a packet: send what fits.
                size = window;
            }
            if self.in_flight + size > window {
                let probe = self.in_flight == 0 && self.peer_wnd < size;
                if !probe {
                    break;
                }
                if !self.probe_allowed {
                    if self.probe_at.is_none() {
                        self.probe_at = Some(now + self.rtt.rto());
                    }
                    break;
                }
                self.probe_allowed = false;
            }
            if !self.paced(now) {
                break;
            }
            // A full packet with more to come may be a path MTU probe, when the window
            // holds a few packets and nothing awaits a resend (so the probe's fate stands
            // out from congestion losses).
            let probe = self.mtu.next_probe().filter(|_| {
                size == room
                    && self.unsent_len > size
                    && self.to_resend == 0
                    && window >= 3 * (self.mss + HEADER_LEN)
            });
            let payload = self.take_unsent(size);
            if let Some(probe_size) = probe {
                self.mtu.sent_probe(self.seq_nr, probe_size);
            }
            self.push_packet(PacketType::Data, payload);
            if let Some(Some(p)) = self.outbuf.back_mut() {
                p.probe = probe.is_some();
            }
            self.transmit(self.outbuf.len() - 1, now, out);
            sent += size;
        }
        if sent > 0 && self.attached {
            out.events.push_back(UtpEvent::Sent {
                stream: self.id,
                bytes: sent,
            });
        }
        if self.fin_wanted
            && self.unsent_len == 0
            && self.fin_seq.is_none()
            && self.outbuf.len() < MAX_OUTSTANDING
        {
            self.fin_seq = Some(self.seq_nr);
            self.push_packet(PacketType::Fin, Bytes::new());
            self.transmit(self.outbuf.len() - 1, now, out);
        }
    }
}

/// What one incoming packet acknowledged.
#[derive(Debug)]
struct Acked {
    bytes: usize,
    packets: usize,
    min_rtt_us: u64,
}

impl Default for Acked {
    fn default() -> Self {
        Acked {
            bytes: 0,
            packets: 0,
            min_rtt_us: u64::MAX,
        }
    }
}
