//! The mio event loop: sockets, the disk pool's wake-up and Ctrl-C, around a [`Driver`].
//!
//! Socket readiness becomes [`NetEvent`]s queued in [`MioNet`]; [`pump`] feeds them to the
//! driver one at a time with a drain after each, then writes what the core queued. The
//! loop sleeps in `poll` until a socket, the waker or a signal is ready, or until the
//! driver's deadline.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream, UdpSocket, UnixStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use tessera_client::{Driver, Error, Exit, Net, Plan, Wake};
use tessera_core::{ConnId, Input, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const SIGNALS: Token = Token(2);
const UDP: Token = Token(3);
/// Connections get tokens from here on.
const FIRST_CONN: usize = 16;

/// A connection's read buffer is this big when (re)allocated...
const READ_CHUNK: usize = 64 << 10;
/// ...and replaced once less than this is left of it.
const MIN_READ: usize = 4 << 10;
/// Bytes read from one connection per wake-up before the others get a turn.
const READ_BUDGET: usize = 1 << 20;
/// Datagrams read per wake-up before the sockets get a turn.
const UDP_BUDGET: usize = 256;
/// Buffers handed to one `writev`.
const MAX_IOVECS: usize = 64;

/// Something that happened on the network, turned into an [`Input`] when it is fed.
#[derive(Debug, PartialEq, Eq)]
pub enum NetEvent {
    Connected(ConnId),
    Received(ConnId, Bytes),
    Sent(ConnId, usize),
    Closed(ConnId, Option<String>),
    Datagram(SocketAddr, Bytes),
}

impl NetEvent {
    fn conn(&self) -> Option<ConnId> {
        match self {
            NetEvent::Connected(c)
            | NetEvent::Received(c, _)
            | NetEvent::Sent(c, _)
            | NetEvent::Closed(c, _) => Some(*c),
            NetEvent::Datagram(..) => None,
        }
    }

    fn into_input(self, now: Instant) -> Input {
        match self {
            NetEvent::Connected(conn) => Input::Connected { now, conn },
            NetEvent::Received(conn, data) => Input::Received { now, conn, data },
            NetEvent::Sent(conn, bytes) => Input::Sent { now, conn, bytes },
            NetEvent::Closed(conn, error) => Input::Closed { now, conn, error },
            NetEvent::Datagram(from, data) => Input::Datagram { now, from, data },
        }
    }
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    token: Token,
    /// An outbound connect not yet confirmed.
    connecting: bool,
    /// What the core asked to send and the socket has not taken yet.
    queue: VecDeque<Bytes>,
    /// Listed in `MioNet::dirty`.
    dirty: bool,
    /// Initialised bytes to read into; what a read fills is split off and frozen.
    read_buf: BytesMut,
    /// The last read stopped at the budget: listed in `MioNet::more_to_read`.
    pending_read: bool,
    /// The round (wake-up) of the last read.
    read_round: u64,
}

/// The sockets, as the driver's [`Net`].
#[derive(Debug)]
pub struct MioNet {
    registry: Registry,
    conns: HashMap<ConnId, Conn>,
    tokens: HashMap<Token, ConnId>,
    next_token: usize,
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
            c.queue.push_back(data);
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
        // The core has forgotten it: nothing more about it may be fed.
        self.events.retain(|e| e.conn() != Some(conn));
    }

    fn send_datagram(&mut self, to: SocketAddr, data: Bytes) {
        match &self.udp {
            Some(udp) => {
                if let Err(e) = udp.send_to(&data, to) {
                    // Datagrams are best effort; the core retries.
                    tracing::debug!("sending a datagram to {to}: {e}");
                }
            }
            None => tracing::debug!("no UDP socket: datagram to {to} dropped"),
        }
    }
}

impl MioNet {
    pub fn new(registry: Registry, udp: Option<UdpSocket>) -> MioNet {
        MioNet {
            registry,
            conns: HashMap::new(),
            tokens: HashMap::new(),
            next_token: FIRST_CONN,
            udp,
            udp_buf: vec![0; 65536],
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
        let token = Token(self.next_token);
        self.next_token += 1;
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
                queue: VecDeque::new(),
                dirty: false,
                read_buf: BytesMut::new(),
                pending_read: false,
                read_round: 0,
            },
        );
    }

    /// Handles readiness of a connection or the UDP socket; false for other tokens.
    pub fn handle_event(&mut self, event: &Event) -> bool {
        if event.token() == UDP {
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
            if c.read_buf.len() < MIN_READ {
                // Zeroed once per allocation (calloc); never re-zeroed, since what a read
                // does not fill is never handed out.
                c.read_buf = BytesMut::zeroed(READ_CHUNK);
            }
            match c.stream.read(&mut c.read_buf) {
                Ok(0) => return self.remove(id, None),
                Ok(n) => {
                    total += n;
                    let data = c.read_buf.split_to(n).freeze();
                    self.events.push_back(NetEvent::Received(id, data));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.pending_read = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.remove(id, Some(e.to_string())),
            }
        }
    }

    /// Writes queued buffers (several per `writev`) until the socket would block, and
    /// reports what it took as one `Sent`.
    fn flush(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.connecting {
            return;
        }
        let mut sent = 0usize;
        let mut error = None;
        while !c.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut k = 0;
            for (slot, buf) in slices.iter_mut().zip(c.queue.iter()) {
                *slot = IoSlice::new(buf);
                k += 1;
            }
            match c.stream.write_vectored(&slices[..k]) {
                Ok(0) => {
                    error = Some("the connection accepts no more data".to_string());
                    break;
                }
                Ok(n) => {
                    sent += n;
                    advance(&mut c.queue, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
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

/// Drops the first `n` bytes of the queue.
fn advance(queue: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = queue.front_mut() else {
            return;
        };
        if front.len() <= n {
            n -= front.len();
            queue.pop_front();
        } else {
            front.advance(n);
            n = 0;
        }
    }
}

/// Feeds every pending network event to the driver (a drain after each), then writes what
/// the core queued, until neither produces anything more.
pub fn pump(driver: &mut Driver, net: &mut MioNet) {
    loop {
        while let Some(event) = net.next_event() {
            let now = driver.now();
            driver.feed(event.into_input(now), net);
        }
        net.flush_dirty();
        if net.events.is_empty() {
            return;
        }
    }
}

/// SIGINT and SIGTERM through a socket pair the loop polls (signal-hook's self-pipe).
struct Signals {
    read: UnixStream,
}

impl Signals {
    fn new(registry: &Registry) -> io::Result<Signals> {
        let (read, write) = std::os::unix::net::UnixStream::pair()?;
        read.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGINT, write.try_clone()?)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGTERM, write)?;
        let mut read = UnixStream::from_std(read);
        registry.register(&mut read, SIGNALS, Interest::READABLE)?;
        Ok(Signals { read })
    }

    /// How many signals arrived since the last call (one byte each).
    fn take(&mut self) -> usize {
        let mut buf = [0u8; 16];
        let mut n = 0;
        loop {
            match self.read.read(&mut buf) {
                Ok(0) => return n,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return n,
            }
        }
    }
}

/// Accepts every pending connection, handing each to the core (or dropping it).
fn accept_all(listener: &TcpListener, driver: &mut Driver, net: &mut MioNet) {
    loop {
        match listener.accept() {
            Ok((stream, addr)) => match driver.accept(addr) {
                Some(conn) => {
                    tracing::trace!("{conn}: accepted from {addr}");
                    net.adopt(conn, stream, false);
                    driver.drain(net);
                }
                None => tracing::debug!("refused a connection from {addr}"),
            },
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

/// A UDP socket for trackers: on the listening port when free, else on any port.
fn bind_udp(ip: std::net::IpAddr, port: u16) -> Option<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, port))
        .or_else(|_| UdpSocket::bind(SocketAddr::new(ip, 0)));
    match socket {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("no UDP socket ({e}): UDP trackers will not be reachable");
            None
        }
    }
}

/// Runs `download` or `seed` to the end.
pub fn run(plan: &Plan) -> Result<Exit, Error> {
    let mut poll = Poll::new().map_err(|e| Error::io("creating the event loop", e))?;
    let mut signals = Signals::new(poll.registry()).map_err(|e| Error::io("handling Ctrl-C", e))?;
    let std_listener = std::net::TcpListener::bind(plan.listen)
        .map_err(|e| Error::io(format!("listening on {}", plan.listen), e))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("listening", e))?;
    let local = std_listener
        .local_addr()
        .map_err(|e| Error::io("listening", e))?;
    tracing::info!("listening on {local}");
    let mut listener = TcpListener::from_std(std_listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|e| Error::io("listening", e))?;
    let mut udp = bind_udp(local.ip(), local.port());
    if let Some(u) = &mut udp {
        poll.registry()
            .register(u, UDP, Interest::READABLE)
            .map_err(|e| Error::io("registering the UDP socket", e))?;
    }

    let waker =
        Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| Error::io("creating a waker", e))?);
    let wake: Wake = Arc::new(move || {
        // Fails only if the loop is gone.
        let _ = waker.wake();
    });
    let mut driver = Driver::new(plan, local.port(), wake)?;
    let registry = poll
        .registry()
        .try_clone()
        .map_err(|e| Error::io("creating the event loop", e))?;
    let mut net = MioNet::new(registry, udp);
    let mut events = Events::with_capacity(1024);

    driver.drain(&mut net);
    pump(&mut driver, &mut net);
    while driver.finished().is_none() {
        let timeout = if net.has_more_to_read() {
            Some(Duration::ZERO)
        } else {
            driver.timeout()
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("waiting for events", e));
        }
        net.begin_round();
        for event in events.iter() {
            match event.token() {
                LISTENER => accept_all(&listener, &mut driver, &mut net),
                // Completions are collected below on every round.
                WAKER => {}
                SIGNALS => {
                    for _ in 0..signals.take() {
                        driver.request_shutdown(&mut net);
                    }
                }
                _ => {
                    net.handle_event(event);
                }
            }
        }
        net.resume_reads();
        pump(&mut driver, &mut net);
        driver.disk_completions(&mut net);
        driver.handle_timeout(&mut net);
        pump(&mut driver, &mut net);
    }
    Ok(driver.finish())
}

#[cfg(test)]
mod tests;
