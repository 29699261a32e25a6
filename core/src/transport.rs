//! Which transport carries each peer connection: TCP (a socket the driver owns, moved by
//! `Action::Connect`/`Send`/`Close`) or uTP (a stream of the session's [`UtpSocket`] on
//! the shared UDP socket, BEP 29).
//!
//! The peer logic, the wire codec and MSE never see the difference: every connection is a
//! [`ConnId`] whose bytes go out through `Shared::send` and come back as the session's
//! `Connected`/`Received`/`Sent`/`Closed` paths. [`Transports`] is the table beneath:
//! for a uTP connection it holds the stream, and the bytes the stream's send buffer has
//! no room for yet (a queue drained as [`UtpEvent::Sent`] frees room, bounded by
//! [`MAX_QUEUED`]). The session (`session/utp.rs`) feeds the socket its datagrams and
//! time and turns the socket's events into those paths.
//!
//! **Dialling** ([`TransportPolicy`]): under `Utp` every peer is dialled over uTP; under
//! `Both` a peer is dialled over uTP first and, when no uTP connection is up after
//! [`FALLBACK_AFTER`] (or the SYN is refused), the same connection id is dialled over TCP
//! and the peer is remembered as one that does not speak uTP (at most
//! [`MAX_REMEMBERED`] peers, the oldest forgotten first), so the next dial to it is TCP at
//! once. That is what libtorrent does. Incoming uTP connections are accepted under `Utp`
//! and `Both`; incoming TCP ones whatever the policy (the driver's listener decides).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use bytes::Bytes;

use crate::id::ConnId;
use crate::time::{Duration, Instant};
use crate::utp::{CloseReason, StreamId, UtpEvent, UtpSocket};

/// How long a uTP dial has under [`TransportPolicy::Both`] before TCP is tried.
pub const FALLBACK_AFTER: Duration = Duration::from_secs(3);
/// Most peers remembered as not speaking uTP.
pub const MAX_REMEMBERED: usize = 1024;
/// Most bytes one uTP connection queues beyond its stream's send buffer. The peer logic's
/// own flow control (`Config::max_send_buffer`) keeps far below it; a connection that
/// overflows it is closed.
pub const MAX_QUEUED: usize = 16 << 20;

/// Which transports peer connections use (`--transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportPolicy {
    /// TCP only: no uTP socket at all (uTP datagrams are dropped). The core's default
    /// (what an embedder or the simulator gets without asking); the command line's is
    /// `Both`.
    #[default]
    Tcp,
    /// Dial over uTP only; accept uTP (and TCP, from the driver's listener).
    Utp,
    /// Dial over uTP first and fall back to TCP (after [`FALLBACK_AFTER`] without a uTP
    /// connection, or at once when the SYN is refused); accept both.
    Both,
}

/// The transport of one connection ([`crate::PeerInfo::transport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// A TCP connection of the driver's.
    #[default]
    Tcp,
    /// A uTP stream of the session's socket.
    Utp,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "TCP",
            Transport::Utp => "uTP",
        })
    }
}

/// One uTP connection.
#[derive(Debug)]
struct UtpConn {
    stream: StreamId,
    addr: SocketAddr,
    /// Dialled and not yet connected: when to give up on uTP (`None`: never, `Utp` only).
    dialing: Option<Option<Instant>>,
    /// Bytes the stream had no room for, in order.
    queue: VecDeque<Bytes>,
    queued: usize,
    /// Overflowed and reset: sends are dropped until the session has the close.
    dead: bool,
}

/// What became of the uTP side of things, for the session to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TransportEvent {
    /// A peer dialled us over uTP.
    Incoming { stream: StreamId, addr: SocketAddr },
    /// An outbound uTP connection is up.
    Connected(ConnId),
    /// Bytes arrived.
    Received(ConnId, Bytes),
    /// Bytes left the stream's send buffer.
    Sent(ConnId, usize),
    /// The connection is gone (`None`: the peer closed it).
    Closed(ConnId, Option<String>),
    /// uTP did not connect: dial `addr` over TCP under the same id.
    Fallback(ConnId, SocketAddr),
}

/// Every uTP connection and the socket they share; empty under [`TransportPolicy::Tcp`].
#[derive(Debug)]
pub(crate) struct Transports {
    policy: TransportPolicy,
    utp: Option<UtpSocket>,
    conns: BTreeMap<ConnId, UtpConn>,
    by_stream: BTreeMap<StreamId, ConnId>,
    /// Fallback deadlines of the uTP dials under `Both`.
    fallbacks: BTreeSet<(Instant, ConnId)>,
    /// Peers that did not answer uTP, oldest first, and the same as a set.
    failed_order: VecDeque<SocketAddr>,
    failed: BTreeSet<SocketAddr>,
    /// Events made here rather than by the socket (a fallback, an overflow), first out.
    events: VecDeque<TransportEvent>,
}

impl Transports {
    /// The table for `policy`; `utp` is the socket (required unless the policy is `Tcp`).
    pub fn new(policy: TransportPolicy, utp: Option<UtpSocket>) -> Transports {
        let utp = if policy == TransportPolicy::Tcp {
            None
        } else {
            utp
        };
        Transports {
            policy,
            utp,
            conns: BTreeMap::new(),
            by_stream: BTreeMap::new(),
            fallbacks: BTreeSet::new(),
            failed_order: VecDeque::new(),
            failed: BTreeSet::new(),
            events: VecDeque::new(),
        }
    }

    /// There is a uTP socket.
    pub fn has_utp(&self) -> bool {
        self.utp.is_some()
    }

    /// The socket, to feed datagrams and drain transmits.
    pub fn socket(&mut self) -> Option<&mut UtpSocket> {
        self.utp.as_mut()
    }

    /// The transport of `conn`.
    pub fn of(&self, conn: ConnId) -> Transport {
        if self.conns.contains_key(&conn) {
            Transport::Utp
        } else {
            Transport::Tcp
        }
    }

    /// Dials `addr` over uTP for `conn` if the policy says so; false: dial it over TCP.
    pub fn dial(&mut self, now: Instant, conn: ConnId, addr: SocketAddr) -> bool {
        let fallback = match self.policy {
            TransportPolicy::Tcp => return false,
            TransportPolicy::Both if self.failed.contains(&addr) => return false,
            TransportPolicy::Both => Some(now + FALLBACK_AFTER),
            TransportPolicy::Utp => None,
        };
        let Some(utp) = self.utp.as_mut() else {
            return false;
        };
        let stream = match utp.connect(now, addr) {
            Ok(s) => s,
            Err(e) if fallback.is_some() => {
                tracing::debug!(%addr, "uTP dial: {e}; dialling over TCP");
                return false;
            }
            Err(e) => {
                self.events
                    .push_back(TransportEvent::Closed(conn, Some(e.to_string())));
                return true;
            }
        };
        tracing::debug!(%addr, %conn, "dialling over uTP");
        if let Some(at) = fallback {
            self.fallbacks.insert((at, conn));
        }
        self.insert(conn, stream, addr, Some(fallback));
        true
    }

    /// An incoming stream the session accepted as `conn`.
    pub fn adopt(&mut self, conn: ConnId, stream: StreamId, addr: SocketAddr) {
        self.insert(conn, stream, addr, None);
    }

    /// Records `conn` as the uTP stream `stream` to `addr`, with nothing queued.
    fn insert(
        &mut self,
        conn: ConnId,
        stream: StreamId,
        addr: SocketAddr,
        dialing: Option<Option<Instant>>,
    ) {
        self.by_stream.insert(stream, conn);
        self.conns.insert(
            conn,
            UtpConn {
                stream,
                addr,
                dialing,
                queue: VecDeque::new(),
                queued: 0,
                dead: false,
            },
        );
    }

    /// An incoming stream the session refused.
    pub fn refuse(&mut self, now: Instant, stream: StreamId) {
        if let Some(utp) = self.utp.as_mut() {
            let _ = utp.abort(now, stream);
        }
    }

    /// Sends `data` on `conn` if it is a uTP connection; else gives it back for TCP.
    pub fn send(&mut self, now: Instant, conn: ConnId, data: Bytes) -> Option<Bytes> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Some(data);
        };
        if data.is_empty() || c.dead {
            return None;
        }
        c.queued += data.len();
        c.queue.push_back(data);
        if c.queued > MAX_QUEUED {
            // The connection stays in the table (as a uTP one that swallows sends) until
            // the session has handled the close.
            tracing::info!(addr = %c.addr, "uTP send queue overflow: closing the connection");
            c.dead = true;
            c.queue.clear();
            c.queued = 0;
            let stream = c.stream;
            self.by_stream.remove(&stream);
            if let Some(Some(at)) = c.dialing.take() {
                self.fallbacks.remove(&(at, conn));
            }
            if let Some(utp) = self.utp.as_mut() {
                let _ = utp.abort(now, stream);
            }
            self.events.push_back(TransportEvent::Closed(
                conn,
                Some("uTP send queue overflow".into()),
            ));
            return None;
        }
        self.drain(now, conn);
        None
    }

    /// Writes what the stream of `conn` has room for from its queue.
    fn drain(&mut self, now: Instant, conn: ConnId) {
        let (Some(c), Some(utp)) = (self.conns.get_mut(&conn), self.utp.as_mut()) else {
            return;
        };
        while let Some(front) = c.queue.pop_front() {
            let room = utp.send_room(c.stream);
            if room == 0 {
                c.queue.push_front(front);
                return;
            }
            let len = front.len();
            let taken = match utp.write(now, c.stream, front.clone()) {
                Ok(n) => n.min(len),
                // The stream is gone or closing: its close is on its way.
                Err(_) => len,
            };
            c.queued -= taken;
            if taken < len {
                c.queue.push_front(front.slice(taken..));
                return;
            }
        }
    }

    /// Closes `conn` if it is a uTP connection (what was written still goes out, then
    /// `ST_FIN`; the queue is dropped, as `Action::Close` drops a TCP socket's). False: a
    /// TCP connection.
    pub fn close(&mut self, now: Instant, conn: ConnId) -> bool {
        self.drop_conn(now, conn, false)
    }

    /// Forgets `conn`, which the session learnt is closed (resets the stream if it is
    /// somehow still open).
    pub fn forget(&mut self, now: Instant, conn: ConnId) {
        self.drop_conn(now, conn, true);
    }

    fn drop_conn(&mut self, now: Instant, conn: ConnId, abort: bool) -> bool {
        let Some(c) = self.conns.remove(&conn) else {
            return false;
        };
        self.by_stream.remove(&c.stream);
        if let Some(Some(at)) = c.dialing {
            self.fallbacks.remove(&(at, conn));
        }
        if let Some(utp) = self.utp.as_mut() {
            let result = if abort || c.dialing.is_some() {
                utp.abort(now, c.stream)
            } else {
                utp.close(now, c.stream)
            };
            // `UnknownStream`: it is gone already (its close was reported).
            let _ = result;
        }
        true
    }

    /// Runs the socket's timers and the fallback deadlines due by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(utp) = self.utp.as_mut() {
            utp.handle_timeout(now);
        }
        while let Some(&(at, conn)) = self.fallbacks.first() {
            if at > now {
                break;
            }
            self.fallbacks.pop_first();
            if let Some(c) = self.conns.get(&conn) {
                let addr = c.addr;
                tracing::info!(%addr, "no uTP answer in {} s: dialling over TCP", FALLBACK_AFTER.as_secs());
                self.fall_back(now, conn, addr);
            }
        }
    }

    /// Gives up uTP for the dial `conn` to `addr`: TCP under the same id.
    fn fall_back(&mut self, now: Instant, conn: ConnId, addr: SocketAddr) {
        self.drop_conn(now, conn, true);
        self.remember_failed(addr);
        self.events.push_back(TransportEvent::Fallback(conn, addr));
    }

    fn remember_failed(&mut self, addr: SocketAddr) {
        if !self.failed.insert(addr) {
            return;
        }
        self.failed_order.push_back(addr);
        if self.failed_order.len() > MAX_REMEMBERED
            && let Some(old) = self.failed_order.pop_front()
        {
            self.failed.remove(&old);
        }
    }

    /// The next deadline: the socket's or a fallback's.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let socket = self.utp.as_ref().and_then(UtpSocket::poll_timeout);
        let fallback = self.fallbacks.first().map(|&(at, _)| at);
        crate::timer::earliest(socket, fallback)
    }

    /// The next thing for the session to carry out: this table's own events first, then
    /// the socket's, translated to connection ids.
    pub fn poll_event(&mut self, now: Instant) -> Option<TransportEvent> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        // Events for streams no connection holds any more are skipped; the bound is a
        // guard (each turn takes one event off a finite queue).
        for _ in 0..1_000_000 {
            let event = self.utp.as_mut()?.poll_event()?;
            if let Some(e) = self.translate(now, event) {
                return Some(e);
            }
        }
        None
    }

    fn translate(&mut self, now: Instant, event: UtpEvent) -> Option<TransportEvent> {
        match event {
            UtpEvent::Incoming { stream, addr } => Some(TransportEvent::Incoming { stream, addr }),
            UtpEvent::Connected { stream } => {
                let conn = *self.by_stream.get(&stream)?;
                let c = self.conns.get_mut(&conn)?;
                if let Some(Some(at)) = c.dialing.take() {
                    self.fallbacks.remove(&(at, conn));
                }
                tracing::info!(addr = %c.addr, "outbound peer: uTP connection");
                self.drain(now, conn);
                Some(TransportEvent::Connected(conn))
            }
            UtpEvent::Data { stream, data } => {
                let conn = *self.by_stream.get(&stream)?;
                Some(TransportEvent::Received(conn, data))
            }
            UtpEvent::Sent { stream, bytes } => {
                let conn = *self.by_stream.get(&stream)?;
                self.drain(now, conn);
                Some(TransportEvent::Sent(conn, bytes))
            }
            UtpEvent::Closed { stream, reason } => {
                let conn = self.by_stream.remove(&stream)?;
                let c = self.conns.remove(&conn)?;
                if let Some(at) = c.dialing {
                    if let Some(at) = at {
                        self.fallbacks.remove(&(at, conn));
                    }
                    if self.policy == TransportPolicy::Both
                        && matches!(reason, CloseReason::ConnectTimedOut | CloseReason::Reset)
                    {
                        tracing::info!(addr = %c.addr, "uTP dial failed ({reason}): dialling over TCP");
                        self.remember_failed(c.addr);
                        return Some(TransportEvent::Fallback(conn, c.addr));
                    }
                }
                let error = match reason {
                    CloseReason::Finished => None,
                    r => Some(r.to_string()),
                };
                Some(TransportEvent::Closed(conn, error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::utp::UtpConfig;

    fn table(policy: TransportPolicy) -> Transports {
        let utp = UtpSocket::new(UtpConfig::default(), Rng::from_u64(1));
        Transports::new(policy, Some(utp))
    }

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from((i.to_be_bytes(), 6881))
    }

    #[test]
    fn tcp_policy_has_no_socket_and_dials_nothing() {
        let mut t = table(TransportPolicy::Tcp);
        assert!(!t.has_utp());
        assert!(!t.dial(Instant::ZERO, ConnId(1), addr(1)));
        let data = Bytes::from_static(b"x");
        assert_eq!(t.send(Instant::ZERO, ConnId(1), data.clone()), Some(data));
        assert!(!t.close(Instant::ZERO, ConnId(1)));
    }

    #[test]
    fn a_send_queue_overflow_closes_only_that_connection_and_swallows_later_sends() {
        let mut t = table(TransportPolicy::Utp);
        let now = Instant::ZERO;
        assert!(t.dial(now, ConnId(1), addr(1)));
        assert!(t.dial(now, ConnId(2), addr(2)));
        let chunk = Bytes::from(vec![7u8; 1 << 20]);
        for _ in 0..(MAX_QUEUED >> 20) + 2 {
            assert_eq!(t.send(now, ConnId(1), chunk.clone()), None);
        }
        let mut closed = Vec::new();
        while let Some(e) = t.poll_event(now) {
            if let TransportEvent::Closed(c, why) = e {
                closed.push((c, why));
            }
        }
        assert_eq!(
            closed,
            [(ConnId(1), Some("uTP send queue overflow".to_string()))]
        );
        assert_eq!(t.send(now, ConnId(1), chunk.clone()), None, "swallowed");
        assert_eq!(t.of(ConnId(1)), Transport::Utp);
        assert_eq!(
            t.of(ConnId(2)),
            Transport::Utp,
            "the other one is untouched"
        );
        t.forget(now, ConnId(1));
        assert_eq!(t.of(ConnId(1)), Transport::Tcp);
    }

    #[test]
    fn peers_that_failed_are_remembered_up_to_the_bound() {
        let mut t = table(TransportPolicy::Both);
        let mut now = Instant::ZERO;
        for i in 0..=MAX_REMEMBERED as u32 {
            assert!(t.dial(now, ConnId(u64::from(i)), addr(i)), "uTP first");
            now += FALLBACK_AFTER;
            t.handle_timeout(now);
            let mut fell_back = false;
            while let Some(e) = t.poll_event(now) {
                fell_back |= e == TransportEvent::Fallback(ConnId(u64::from(i)), addr(i));
            }
            assert!(fell_back, "peer {i}");
        }
        // The newest are remembered (TCP at once); the oldest was forgotten (uTP again).
        let last = MAX_REMEMBERED as u32;
        assert!(!t.dial(now, ConnId(10_000), addr(last)));
        assert!(t.dial(now, ConnId(10_001), addr(0)));
    }
}
