//! The mio event loop: sockets, the disk pools' wake-up and Ctrl-C, around the
//! [`Driver`]s of a run (one for `download` and `seed`, a seeder and downloaders for
//! `demo`; [`Fleet`] decides when each is done).
//!
//! Socket readiness becomes [`NetEvent`]s queued in each node's [`MioNet`]; [`pump`] feeds
//! them to its driver one at a time with a drain after each, then writes what the core
//! queued. The loop sleeps in `poll` until a socket, the waker or a signal is ready, or
//! until the earliest driver deadline. Every token says which node it belongs to
//! ([`node_of`]). Reads, writes, events and signals are `tessera-client`'s
//! ([`tessera_client::net`], [`tessera_client::signals`]); this file is the waiting.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mio::event::Event;
use mio::net::{TcpListener, TcpStream, UdpSocket, UnixStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use tessera_client::net::{self as client_net, NetEvent, ReadBuf, SendQueue};
use tessera_client::{Driver, Error, Exit, Fleet, Net, Node, Run, Wake, signals};
use tessera_core::ConnId;

/// Nodes one loop can drive: tokens are `slot * MAX_NODES + node`.
pub const MAX_NODES: usize = 16;
/// Slot 0: each node's listener; slot 1: its UDP socket; slot 2: the shared waker (node
/// 0) and signal pipe (node 1); from slot 3 on: connections.
const WAKER: Token = Token(2 * MAX_NODES);
const SIGNALS: Token = Token(2 * MAX_NODES + 1);
/// Connections get tokens from this slot on.
const FIRST_CONN_SLOT: usize = 3;

fn listener_token(node: usize) -> Token {
    Token(node)
}

fn udp_token(node: usize) -> Token {
    Token(MAX_NODES + node)
}

/// The node a token belongs to.
pub fn node_of(token: Token) -> usize {
    token.0 % MAX_NODES
}

/// Bytes read from one connection per wake-up before the others get a turn.
const READ_BUDGET: usize = 1 << 20;
/// Datagrams read per wake-up before the sockets get a turn.
const UDP_BUDGET: usize = 256;

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    token: Token,
    /// An outbound connect not yet confirmed.
    connecting: bool,
    /// What the core asked to send and the socket has not taken yet.
    queue: SendQueue,
    /// Listed in `MioNet::dirty`.
    dirty: bool,
    read_buf: ReadBuf,
    /// The last read stopped at the budget: listed in `MioNet::more_to_read`.
    pending_read: bool,
    /// The round (wake-up) of the last read.
    read_round: u64,
}

/// The sockets, as the driver's [`Net`].
#[derive(Debug)]
pub struct MioNet {
    registry: Registry,
    /// Which node of the run these sockets serve.
    node: usize,
    conns: HashMap<ConnId, Conn>,
    tokens: HashMap<Token, ConnId>,
    /// The slot of the next connection's token.
    next_slot: usize,
    udp: Option<UdpSocket>,
    udp_buf: Vec<u8>,
    /// Waiting to be fed to the driver, in order.
    events: VecDeque<NetEvent>,
    /// Connections with new data queued since the last flush.
    dirty: Vec<ConnId>,
    /// Connections (and the UDP socket) that hit their read budget: read again before
    /// sleeping, since edge-triggered readiness will not be reported again.
    more_to_read: Vec<ConnId>,
    udp_more: bool,
    /// Counts wake-ups, so that no socket is read twice in one.
    round: u64,
    udp_read_round: u64,
}

impl Net for MioNet {
    fn connect(&mut self, conn: ConnId, addr: SocketAddr) {
        match TcpStream::connect(addr) {
            Ok(stream) => {
                tracing::trace!("{conn}: connecting to {addr}");
                self.adopt(conn, stream, true);
            }
            Err(e) => self.events.push_back(NetEvent::Closed(
                conn,
                Some(format!("connecting to {addr}: {e}")),
            )),
        }
    }

    fn send(&mut self, conn: ConnId, data: Bytes) {
        if data.is_empty() {
            return;
        }
        // Unknown: closed by the peer, with the `Closed` not yet fed. Nothing to do.
        if let Some(c) = self.conns.get_mut(&conn) {
            c.queue.push(data);
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(conn);
            }
        }
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(mut c) = self.conns.remove(&conn) {
            self.tokens.remove(&c.token);
            let _ = self.registry.deregister(&mut c.stream);
            tracing::trace!("{conn}: closed by the core");
        }
        // Events about it still queued are fed all the same: the core ignores them.
    }

    fn send_datagram(&mut self, to: SocketAddr, data: Bytes) {
        client_net::datagram_sent(to, self.udp.as_ref().map(|u| u.send_to(&data, to)));
    }
}

impl MioNet {
    /// The sockets of node `node`; `udp` is registered already (with [`udp_token`]).
    pub fn new(registry: Registry, node: usize, udp: Option<UdpSocket>) -> MioNet {
        MioNet {
            registry,
            node,
            conns: HashMap::new(),
            tokens: HashMap::new(),
            next_slot: FIRST_CONN_SLOT,
            udp,
            udp_buf: vec![0; client_net::MAX_DATAGRAM],
            events: VecDeque::new(),
            dirty: Vec::new(),
            more_to_read: Vec::new(),
            udp_more: false,
            round: 0,
            udp_read_round: 0,
        }
    }

    /// Takes over a connected (accepted) or connecting stream.
    pub fn adopt(&mut self, conn: ConnId, mut stream: TcpStream, connecting: bool) {
        let token = Token(self.next_slot * MAX_NODES + self.node);
        self.next_slot += 1;
        if let Err(e) =
            self.registry
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            self.events.push_back(NetEvent::Closed(
                conn,
                Some(format!("registering socket: {e}")),
            ));
            return;
        }
        // Small protocol messages (requests, haves) should not wait for Nagle.
        let _ = stream.set_nodelay(true);
        self.tokens.insert(token, conn);
        self.conns.insert(
            conn,
            Conn {
                stream,
                token,
                connecting,
                queue: SendQueue::default(),
                dirty: false,
                read_buf: ReadBuf::new(),
                pending_read: false,
                read_round: 0,
            },
        );
    }

    /// Handles readiness of a connection or the UDP socket; false for other tokens.
    pub fn handle_event(&mut self, event: &Event) -> bool {
        if event.token() == udp_token(self.node) {
            self.read_datagrams();
            return true;
        }
        let Some(&id) = self.tokens.get(&event.token()) else {
            return false;
        };
        if self.conns.get(&id).is_some_and(|c| c.connecting) {
            self.check_connected(id);
        }
        if self.conns.get(&id).is_none_or(|c| c.connecting) {
            return true;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read(id);
        }
        if event.is_writable() {
            self.flush(id);
        }
        true
    }

    /// Next event to feed to the driver.
    pub fn next_event(&mut self) -> Option<NetEvent> {
        self.events.pop_front()
    }

    /// True when a read stopped at its budget: poll without sleeping.
    pub fn has_more_to_read(&self) -> bool {
        !self.more_to_read.is_empty() || self.udp_more
    }

    /// Starts a wake-up: call after each `poll`, before [`MioNet::handle_event`].
    pub fn begin_round(&mut self) {
        self.round += 1;
    }

    /// Reads again from the sockets that hit their budget in an earlier wake-up (those
    /// read in this one wait for the next).
    pub fn resume_reads(&mut self) {
        for id in std::mem::take(&mut self.more_to_read) {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if !c.pending_read {
                continue;
            }
            if c.read_round == self.round {
                self.more_to_read.push(id);
            } else {
                c.pending_read = false;
                self.read(id);
            }
        }
        if self.udp_more && self.udp_read_round != self.round {
            self.udp_more = false;
            self.read_datagrams();
        }
    }

    /// Writes whatever the core queued since the last flush.
    pub fn flush_dirty(&mut self) {
        for id in std::mem::take(&mut self.dirty) {
            if let Some(c) = self.conns.get_mut(&id) {
                c.dirty = false;
            }
            self.flush(id);
        }
    }

    /// A non-blocking connect ended (or a spurious wake-up): find out how.
    fn check_connected(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match c.stream.take_error() {
            Ok(Some(e)) | Err(e) => return self.remove(id, Some(e.to_string())),
            Ok(None) => {}
        }
        match c.stream.peer_addr() {
            Ok(addr) => {
                tracing::trace!("{id}: connected to {addr}");
                c.connecting = false;
                self.events.push_back(NetEvent::Connected(id));
                // Anything queued before the connection was up goes now.
                self.flush(id);
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => self.remove(id, Some(e.to_string())),
        }
    }

    /// Reads until the socket would block, the budget is spent, or the connection ends.
    fn read(&mut self, id: ConnId) {
        let mut total = 0usize;
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            c.read_round = self.round;
            if total >= READ_BUDGET {
                if !c.pending_read {
                    c.pending_read = true;
                    self.more_to_read.push(id);
                }
                return;
            }
            match c.read_buf.read_from(&mut c.stream) {
                Ok(None) => return self.remove(id, None),
                Ok(Some(data)) => {
                    total += data.len();
                    self.events.push_back(NetEvent::Received(id, data));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.pending_read = false;
                    return;
                }
                Err(e) => return self.remove(id, Some(e.to_string())),
            }
        }
    }

    /// Writes queued buffers until the socket would block, and reports what it took as
    /// one `Sent`.
    fn flush(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.connecting {
            return;
        }
        // `write_to` writes until the queue is empty or the socket is full; an error after
        // a partial write shows on the next call (the socket reports it again as an event).
        let (sent, error) = match c.queue.write_to(&mut c.stream) {
            Ok(n) => (n, None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => (0, None),
            Err(e) => (0, Some(e.to_string())),
        };
        if sent > 0 {
            self.events.push_back(NetEvent::Sent(id, sent));
        }
        if let Some(e) = error {
            self.remove(id, Some(e));
        }
    }

    /// The connection broke or the peer closed it: forget it and tell the core.
    fn remove(&mut self, id: ConnId, error: Option<String>) {
        if let Some(mut c) = self.conns.remove(&id) {
            self.tokens.remove(&c.token);
            let _ = self.registry.deregister(&mut c.stream);
            tracing::trace!(
                "{id}: closed ({})",
                error.as_deref().unwrap_or("end of stream")
            );
            self.events.push_back(NetEvent::Closed(id, error));
        }
    }

    fn read_datagrams(&mut self) {
        let Some(udp) = &self.udp else {
            return;
        };
        self.udp_read_round = self.round;
        for _ in 0..UDP_BUDGET {
            match udp.recv_from(&mut self.udp_buf) {
                Ok((n, from)) => self.events.push_back(NetEvent::Datagram(
                    from,
                    Bytes::copy_from_slice(&self.udp_buf[..n]),
                )),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.udp_more = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // ICMP errors from earlier sends surface here; the socket is fine.
                    tracing::debug!("receiving a datagram: {e}");
                }
            }
        }
        self.udp_more = true;
    }
}

/// Feeds every pending network event to the driver (a drain after each), then writes what
/// the core queued, until neither produces anything more.
pub fn pump(driver: &mut Driver, net: &mut MioNet) {
    loop {
        while let Some(event) = net.next_event() {
            driver.feed_event(event, net);
        }
        net.flush_dirty();
        if net.events.is_empty() {
            return;
        }
    }
}

/// Accepts every pending connection, handing each to the core (or dropping it).
fn accept_all(driver: &mut Driver, sockets: &mut Sockets) {
    loop {
        match sockets.listener.accept() {
            Ok((stream, addr)) => {
                driver.accept(addr, &mut sockets.net, |net, conn| {
                    net.adopt(conn, stream, false);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of descriptors, most likely: try again on the next connection.
                tracing::warn!("accepting a connection: {e}");
                return;
            }
        }
    }
}

/// A node's listener, besides its [`MioNet`].
#[derive(Debug)]
pub struct Sockets {
    pub net: MioNet,
    listener: TcpListener,
}

impl Net for Sockets {
    fn connect(&mut self, conn: ConnId, addr: SocketAddr) {
        self.net.connect(conn, addr);
    }
    fn send(&mut self, conn: ConnId, data: Bytes) {
        self.net.send(conn, data);
    }
    fn close(&mut self, conn: ConnId) {
        self.net.close(conn);
    }
    fn send_datagram(&mut self, to: SocketAddr, data: Bytes) {
        self.net.send_datagram(to, data);
    }
}

/// Runs every node of `run` to the end, on one `Poll`.
pub fn run(run: &Run) -> Result<Vec<Exit>, Error> {
    if run.nodes.len() > MAX_NODES {
        return Err(Error::other(format!(
            "internal error: at most {MAX_NODES} nodes on one loop"
        )));
    }
    let mut poll = Poll::new().map_err(|e| Error::io("creating the event loop", e))?;
    let registry = poll
        .registry()
        .try_clone()
        .map_err(|e| Error::io("creating the event loop", e))?;
    let ctrl_c = |e| Error::io("handling Ctrl-C", e);
    let mut signals = UnixStream::from_std(signals::pipe().map_err(ctrl_c)?);
    registry
        .register(&mut signals, SIGNALS, Interest::READABLE)
        .map_err(ctrl_c)?;
    let waker =
        Arc::new(Waker::new(&registry, WAKER).map_err(|e| Error::io("creating a waker", e))?);
    let wake: Wake = Arc::new(move || {
        // Fails only if the loop is gone.
        let _ = waker.wake();
    });

    let mut nodes = Vec::with_capacity(run.nodes.len());
    for (i, (plan, sockets)) in run.bind()?.into_iter().enumerate() {
        let mut listener = TcpListener::from_std(sockets.listener);
        registry
            .register(&mut listener, listener_token(i), Interest::READABLE)
            .map_err(|e| Error::io("listening", e))?;
        let mut udp = sockets.udp.map(UdpSocket::from_std);
        if let Some(u) = &mut udp {
            registry
                .register(u, udp_token(i), Interest::READABLE)
                .map_err(|e| Error::io("registering the UDP socket", e))?;
        }
        let registry = registry
            .try_clone()
            .map_err(|e| Error::io("creating the event loop", e))?;
        let driver = Driver::new(&plan, sockets.local.port(), wake.clone(), &run.board)?;
        let net = Sockets {
            net: MioNet::new(registry, i, udp),
            listener,
        };
        nodes.push(Node { driver, net });
    }
    let mut fleet = Fleet::new(nodes);
    let mut events = Events::with_capacity(1024);

    for (_, n) in fleet.live() {
        n.driver.drain(&mut n.net);
        pump(&mut n.driver, &mut n.net.net);
    }
    fleet.settle();
    while !fleet.done() {
        let more = fleet.live().any(|(_, n)| n.net.net.has_more_to_read());
        let timeout = if more {
            Some(Duration::ZERO)
        } else {
            fleet.timeout()
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("waiting for events", e));
        }
        for (_, n) in fleet.live() {
            n.net.net.begin_round();
        }
        for event in events.iter() {
            match event.token() {
                // Completions are collected below on every round.
                WAKER => {}
                SIGNALS => {
                    for _ in 0..signals::take(&signals).unwrap_or(0) {
                        fleet.interrupt();
                    }
                }
                token => {
                    let Some(n) = fleet.node(node_of(token)) else {
                        continue; // a node that has finished
                    };
                    if token == listener_token(node_of(token)) {
                        accept_all(&mut n.driver, &mut n.net);
                    } else {
                        n.net.net.handle_event(event);
                    }
                }
            }
        }
        for (_, n) in fleet.live() {
            n.net.net.resume_reads();
            pump(&mut n.driver, &mut n.net.net);
            n.driver.disk_completions(&mut n.net);
            n.driver.handle_timeout(&mut n.net);
            pump(&mut n.driver, &mut n.net.net);
        }
        fleet.settle();
    }
    Ok(fleet.exits())
}

#[cfg(test)]
mod tests;
