//! Many uTP connections sharing one UDP socket: routing by (address, connection id),
//! accepting SYNs into a bounded half-open table (and with SYN cookies once it is full),
//! timers, and the queues the owner drains.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::conn::{Conn, MIN_BURST, Outbox, State};
use super::cookie::Cookies;
use super::packet::{self, Header, Packet, PacketType};
use super::seq::Seq;
use super::{
    MAX_PACKET_SIZE, MIN_PACKET_SIZE, StreamId, StreamStats, Transmit, UtpConfig, UtpError,
    UtpEvent,
};
use crate::rng::Rng;
use crate::time::Instant;

/// Every uTP connection on one UDP socket. See the [module documentation](super) for the
/// contract.
#[derive(Debug)]
pub struct UtpSocket {
    cfg: UtpConfig,
    rng: Rng,
    conns: BTreeMap<StreamId, Conn>,
    /// (peer, the id its packets to us carry) → connection.
    routes: BTreeMap<(SocketAddr, u16), StreamId>,
    /// Each connection's next deadline, earliest first.
    timers: BTreeSet<(Instant, StreamId)>,
    /// The deadline each connection is filed under in `timers`.
    filed: BTreeMap<StreamId, Instant>,
    half_open_count: usize,
    next_id: u64,
    out: Outbox,
    resets_window: Instant,
    resets_sent: u32,
    /// Stateless answers to SYNs while the half-open table is full.
    cookies: Cookies,
    /// Tests: the initial sequence number of the next connection.
    #[cfg(test)]
    pub(crate) forced_isn: Option<u16>,
}

impl UtpSocket {
    /// A socket with no connections. `rng` supplies connection ids and initial sequence
    /// numbers (derive it from the session's seed).
    pub fn new(config: UtpConfig, mut rng: Rng) -> UtpSocket {
        let mut key = [0u8; 16];
        rng.fill(&mut key);
        let mut cfg = config;
        cfg.max_packet_size = cfg.max_packet_size.clamp(MIN_PACKET_SIZE, MAX_PACKET_SIZE);
        cfg.initial_packet_size = cfg
            .initial_packet_size
            .clamp(MIN_PACKET_SIZE, cfg.max_packet_size);
        cfg.max_window = cfg.max_window.max(cfg.max_packet_size);
        cfg.max_burst = cfg.max_burst.max(MIN_BURST);
        UtpSocket {
            cfg,
            rng,
            conns: BTreeMap::new(),
            routes: BTreeMap::new(),
            timers: BTreeSet::new(),
            filed: BTreeMap::new(),
            half_open_count: 0,
            next_id: 0,
            out: Outbox::default(),
            resets_window: Instant::ZERO,
            resets_sent: 0,
            cookies: Cookies::new(key),
            #[cfg(test)]
            forced_isn: None,
        }
    }

    // Getters.

    /// The settings in force (after clamping).
    pub fn config(&self) -> &UtpConfig {
        &self.cfg
    }

    /// Connections held, in any state (half-open and closing ones included).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Accepted connections still waiting for the initiator's first packet.
    pub fn half_open(&self) -> usize {
        self.half_open_count
    }

    /// Bytes [`UtpSocket::write`] would take on `stream` now (0 for an unknown or closing
    /// stream).
    pub fn send_room(&self, stream: StreamId) -> usize {
        self.conns.get(&stream).map_or(0, Conn::send_room)
    }

    /// The peer of an open stream.
    pub fn peer_addr(&self, stream: StreamId) -> Option<SocketAddr> {
        self.conns
            .get(&stream)
            .filter(|c| c.attached())
            .map(|c| c.addr)
    }

    /// Numbers about an open stream.
    pub fn stats(&self, stream: StreamId) -> Option<StreamStats> {
        self.conns
            .get(&stream)
            .filter(|c| c.attached())
            .map(Conn::stats)
    }

    // Input.

    /// Takes a datagram from `from`. Returns false when it is not uTP at all (the caller
    /// may try the DHT or a tracker); true when it was handled as uTP, whether or not it
    /// was valid or belonged to a connection.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> bool {
        if !packet::is_utp(datagram) {
            return false;
        }
        let Ok(pkt) = Packet::decode(datagram) else {
            return true;
        };
        let h = pkt.header;
        if h.ty == PacketType::Syn {
            self.handle_syn(now, from, &pkt);
            return true;
        }
        if let Some(&id) = self.routes.get(&(from, h.conn_id)) {
            self.with_conn(id, |c, out| c.handle_packet(now, &pkt, out));
            return true;
        }
        if h.ty == PacketType::Data && self.accept_cookie(now, from, &pkt) {
            return true;
        }
        if h.ty == PacketType::Reset {
            // A reset may carry the id we send with rather than the one we receive on
            // (libutp answers with the id it was sent).
            let found = self
                .routes
                .range((from, 0)..=(from, u16::MAX))
                .map(|(_, &id)| id)
                .find(|id| self.conns.get(id).is_some_and(|c| c.send_id == h.conn_id));
            if let Some(id) = found {
                self.with_conn(id, |c, out| c.handle_packet(now, &pkt, out));
            }
            return true;
        }
        self.maybe_reset(now, from, &h);
        true
    }

    /// Runs the timers that are due (calling early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.filed.remove(&id);
            due.push(id);
        }
        for id in due {
            self.with_conn(id, |c, out| c.handle_timeout(now, out));
        }
    }

    // Mutators.

    /// Opens a stream to `addr`. [`UtpEvent::Connected`] follows, or
    /// [`UtpEvent::Closed`] with [`super::CloseReason::ConnectTimedOut`] or
    /// [`super::CloseReason::Reset`]. Writes before that are buffered.
    pub fn connect(&mut self, now: Instant, addr: SocketAddr) -> Result<StreamId, UtpError> {
        if self.conns.len() >= self.cfg.max_connections {
            return Err(UtpError::TooManyConnections);
        }
        // A free receive id for this peer (64 tries cannot all collide unless the peer
        // holds tens of thousands of our connections, which max_connections forbids).
        let mut recv_id = None;
        for _ in 0..64 {
            let r = self.rng.next_u64() as u16;
            if !self.routes.contains_key(&(addr, r)) {
                recv_id = Some(r);
                break;
            }
        }
        let recv_id = recv_id.ok_or(UtpError::TooManyConnections)?;
        let isn = self.isn();
        let id = self.new_id();
        let conn = Conn::connect(id, addr, recv_id, isn, now, &self.cfg, &mut self.out);
        self.routes.insert((addr, recv_id), id);
        self.conns.insert(id, conn);
        self.settle(id, false);
        Ok(id)
    }

    /// Queues bytes on `stream`: takes at most [`UtpSocket::send_room`] of them and
    /// returns how many it took (the caller keeps the rest for after [`UtpEvent::Sent`]).
    pub fn write(
        &mut self,
        now: Instant,
        stream: StreamId,
        data: Bytes,
    ) -> Result<usize, UtpError> {
        self.attached(stream)?;
        let mut result = Ok(0);
        self.with_conn(stream, |c, out| result = c.write(now, data, out));
        result
    }

    /// Closes `stream` cleanly: what was written is still delivered, then `ST_FIN`. No
    /// more events come for it.
    pub fn close(&mut self, now: Instant, stream: StreamId) -> Result<(), UtpError> {
        self.attached(stream)?;
        self.with_conn(stream, |c, out| c.close(now, out));
        Ok(())
    }

    /// Drops `stream` at once and tells the peer with `ST_RESET`; unsent data is lost. No
    /// more events come for it.
    pub fn abort(&mut self, now: Instant, stream: StreamId) -> Result<(), UtpError> {
        self.attached(stream)?;
        self.with_conn(stream, |c, out| c.abort(now, out));
        Ok(())
    }

    // Output.

    /// The next datagram to send.
    pub fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<UtpEvent> {
        self.out.events.pop_front()
    }

    /// When [`UtpSocket::handle_timeout`] is next needed (None: no connection has a
    /// timer).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }

    // Internals.

    /// The first sequence number for a connection the SYN `syn` from `from` opens: its
    /// cookie.
    fn cookie_isn(&mut self, now: Instant, from: SocketAddr, syn: &Header) -> Seq {
        let cookie = self.cookies.issue(now, from, syn.conn_id, syn.seq_nr);
        #[cfg(test)]
        if let Some(isn) = self.forced_isn {
            return Seq(isn);
        }
        cookie
    }

    fn cookie_valid(
        &self,
        now: Instant,
        from: SocketAddr,
        syn_id: u16,
        syn_seq: Seq,
        isn: Seq,
    ) -> bool {
        #[cfg(test)]
        if let Some(forced) = self.forced_isn {
            // Tests that choose the first sequence number choose the cookie too.
            return isn == Seq(forced) && self.cookies.issued_lately(now);
        }
        self.cookies.check(now, from, syn_id, syn_seq, isn)
    }

    fn isn(&mut self) -> Seq {
        let random = self.rng.next_u64() as u16;
        #[cfg(test)]
        if let Some(isn) = self.forced_isn {
            return Seq(isn);
        }
        Seq(random)
    }

    fn new_id(&mut self) -> StreamId {
        let id = StreamId(self.next_id);
        self.next_id += 1;
        id
    }

    fn attached(&self, stream: StreamId) -> Result<(), UtpError> {
        match self.conns.get(&stream) {
            Some(c) if c.attached() => Ok(()),
            _ => Err(UtpError::UnknownStream),
        }
    }

    /// Runs `f` on a connection, then files its new deadline or forgets it.
    fn with_conn(&mut self, id: StreamId, f: impl FnOnce(&mut Conn, &mut Outbox)) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let was_half_open = c.state() == State::SynRecv;
        f(c, &mut self.out);
        self.settle(id, was_half_open);
    }

    fn settle(&mut self, id: StreamId, was_half_open: bool) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let half_open = c.state() == State::SynRecv;
        if was_half_open && !half_open {
            self.half_open_count -= 1;
        }
        let deadline = if c.is_done() { None } else { c.deadline() };
        let key = (c.addr, c.recv_id);
        let done = c.is_done();
        if let Some(old) = self.filed.get(&id).copied()
            && Some(old) != deadline
        {
            self.timers.remove(&(old, id));
            self.filed.remove(&id);
        }
        if let Some(at) = deadline
            && !self.filed.contains_key(&id)
        {
            self.timers.insert((at, id));
            self.filed.insert(id, at);
        }
        if done {
            self.conns.remove(&id);
            if self.routes.get(&key) == Some(&id) {
                self.routes.remove(&key);
            }
        }
    }

    fn handle_syn(&mut self, now: Instant, from: SocketAddr, syn: &Packet<'_>) {
        let h = syn.header;
        let recv_id = h.conn_id.wrapping_add(1);
        if let Some(&id) = self.routes.get(&(from, recv_id)) {
            // A resent SYN for a connection we accepted; anything else is an id clash
            // and the SYN is ignored (BEP 29).
            if self.conns.get(&id).is_some_and(|c| c.send_id == h.conn_id) {
                self.with_conn(id, |c, out| c.handle_packet(now, syn, out));
            }
            return;
        }
        if !self.cfg.accept_incoming || self.conns.len() >= self.cfg.max_connections {
            return;
        }
        if self.half_open_count >= self.cfg.max_half_open {
            // Full: answer without keeping anything; the initiator's next packet brings
            // the cookie back (see `cookie`). Nobody in the table is pushed out.
            self.answer_with_cookie(now, from, &h);
            return;
        }
        // The cookie is our first sequence number even when the SYN is kept: should the
        // half-open connection expire before the initiator's first data packet (lost
        // and resent a few times), that packet still brings the connection back.
        let isn = self.cookie_isn(now, from, &h);
        let id = self.new_id();
        let conn = Conn::accept(id, from, syn, isn, now, &self.cfg, &mut self.out);
        self.routes.insert((from, recv_id), id);
        self.conns.insert(id, conn);
        self.half_open_count += 1;
        self.settle(id, false);
    }

    /// Acknowledges a SYN statelessly: an `ST_STATE` like the one a half-open connection
    /// sends, whose sequence number is a cookie.
    fn answer_with_cookie(&mut self, now: Instant, from: SocketAddr, syn: &Header) {
        let isn = self.cookie_isn(now, from, syn);
        let ts = packet::micros(now);
        let state = Header {
            ty: PacketType::State,
            conn_id: syn.conn_id,
            timestamp_us: ts,
            timestamp_diff_us: if syn.timestamp_us == 0 {
                0
            } else {
                ts.wrapping_sub(syn.timestamp_us)
            },
            wnd_size: self.cfg.recv_window.min(u32::MAX as usize) as u32,
            seq_nr: isn,
            ack_nr: syn.seq_nr,
        };
        self.out.transmits.push_back(Transmit {
            to: from,
            data: packet::encode(&state, None, &[]),
        });
    }

    /// A data packet for no connection: if it carries a cookie we issued (its
    /// acknowledgement number is the cookie minus one), the connection its SYN asked for
    /// is created and takes the packet. Returns whether it did.
    fn accept_cookie(&mut self, now: Instant, from: SocketAddr, pkt: &Packet<'_>) -> bool {
        let h = pkt.header;
        let syn_id = h.conn_id.wrapping_sub(1);
        let syn_seq = h.seq_nr.minus(1);
        let isn = h.ack_nr.next();
        if !self.cfg.accept_incoming
            || self.conns.len() >= self.cfg.max_connections
            || !self.cookie_valid(now, from, syn_id, syn_seq, isn)
        {
            return false;
        }
        let syn = Header {
            ty: PacketType::Syn,
            conn_id: syn_id,
            timestamp_us: 0,
            timestamp_diff_us: 0,
            wnd_size: h.wnd_size,
            seq_nr: syn_seq,
            ack_nr: Seq(0),
        };
        let id = self.new_id();
        let conn = Conn::accept_checked(id, from, &syn, isn, now, &self.cfg);
        self.routes.insert((from, h.conn_id), id);
        self.conns.insert(id, conn);
        self.half_open_count += 1;
        self.with_conn(id, |c, out| c.handle_packet(now, pkt, out));
        true
    }

    /// Answers a packet for no connection with `ST_RESET`, within the configured rate.
    fn maybe_reset(&mut self, now: Instant, from: SocketAddr, h: &Header) {
        if self.cfg.resets_per_second == 0 {
            return;
        }
        if now.saturating_duration_since(self.resets_window) >= Duration::from_secs(1) {
            self.resets_window = now;
            self.resets_sent = 0;
        }
        if self.resets_sent >= self.cfg.resets_per_second {
            return;
        }
        self.resets_sent += 1;
        let reset = Header {
            ty: PacketType::Reset,
            conn_id: h.conn_id,
            timestamp_us: packet::micros(now),
            timestamp_diff_us: 0,
            wnd_size: 0,
            seq_nr: Seq(self.rng.next_u64() as u16),
            ack_nr: h.seq_nr,
        };
        self.out.transmits.push_back(Transmit {
            to: from,
            data: packet::encode(&reset, None, &[]),
        });
    }
}
