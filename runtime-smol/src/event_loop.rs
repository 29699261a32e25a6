//! The smol event loop: one task owns the [`Driver`]s of a run (one for `download` and
//! `seed`, a seeder and downloaders for `demo`; [`Fleet`] decides when each is done);
//! every connection, each node's listener and UDP socket, and the signal pipe are tasks
//! of their own on the same single-threaded executor, and tell the driver task what
//! happened through one bounded channel of [`Wakeup`]s, each tagged with its node
//! ([`Events`]).
//!
//! The driver task sleeps until that channel, the disk pools' wake-up channel or a
//! [`Timer`] at the earliest driver deadline is ready, feeds each [`NetEvent`] to its
//! node's driver with a drain after it, then collects disk completions and timeouts. A connection task races a reader (each
//! read frozen into `Bytes` and sent as `Received`) against a writer (the core's `Send`s
//! arrive on an unbounded per-connection channel, go into a [`SendQueue`] and are written
//! with `writev`; each write is reported as `Sent`). Reads, writes, events and signals are
//! `tessera-client`'s ([`tessera_client::net`], [`tessera_client::signals`]); this file is
//! the waiting.
//!
//! Back-pressure: the core stops producing upload data for a connection once
//! `Config::max_send_buffer` of it is unreported by `Sent` (its other messages are bounded
//! by its request limits), so the unbounded send channel stays bounded; the event channel
//! is bounded, so while the driver is busy, readers stop reading and TCP slows the peers
//! down; disk results come only from the pool, whose work the core bounds.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use smol::channel::{self, Receiver, Sender};
use smol::{Async, LocalExecutor, Task, Timer, future};
use tessera_client::net::{self as client_net, NetEvent, ReadBuf, SendQueue};
use tessera_client::{Driver, Error, Exit, Fleet, Net, Node, Run, Wake, signals};
use tessera_core::ConnId;

/// Wake-ups waiting for the driver task. While it is full, connection tasks stop reading.
/// 64 reads (up to 4 MiB) per pass of the driver: on loopback, 16 was clearly slower (more,
/// smaller passes) and 256 no faster.
const EVENT_QUEUE: usize = 64;
/// Pause after a failed `accept` (out of descriptors, most likely) before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Where a node's tasks report: the driver task's one channel, each wake-up tagged with
/// the node it is for.
#[derive(Debug, Clone)]
pub struct Events {
    node: usize,
    tx: Sender<(usize, Wakeup)>,
}

impl Events {
    pub fn new(node: usize, tx: Sender<(usize, Wakeup)>) -> Events {
        Events { node, tx }
    }

    /// Waits for room and sends; `Err` once the driver task is gone.
    async fn send(&self, wakeup: Wakeup) -> Result<(), ()> {
        self.tx.send((self.node, wakeup)).await.map_err(|_| ())
    }
}

/// What the other tasks tell the driver task.
#[derive(Debug)]
pub enum Wakeup {
    Net(NetEvent),
    /// A peer connected to the listener.
    Accepted(Async<TcpStream>, SocketAddr),
    /// Ctrl-C or SIGTERM.
    Interrupt,
}

/// A connection's task and the way to its writer.
#[derive(Debug)]
struct Conn {
    /// The core's `Send`s, in order (bounded by the core; see the module docs).
    queue: Sender<Bytes>,
    /// Dropping it cancels the task, which closes the socket.
    _task: Task<()>,
}

/// The connection tasks, as the driver's [`Net`].
#[derive(Debug)]
pub struct SmolNet<'ex> {
    ex: &'ex LocalExecutor<'static>,
    events: Events,
    conns: HashMap<ConnId, Conn>,
    udp: Option<Rc<Async<UdpSocket>>>,
}

impl Net for SmolNet<'_> {
    fn connect(&mut self, conn: ConnId, addr: SocketAddr) {
        tracing::trace!("{conn}: connecting to {addr}");
        let (queue, sends) = channel::unbounded();
        let task = self
            .ex
            .spawn(outbound(conn, addr, sends, self.events.clone()));
        self.conns.insert(conn, Conn { queue, _task: task });
    }

    fn send(&mut self, conn: ConnId, data: Bytes) {
        // Unknown: closed by the peer, with the `Closed` not yet fed. Nothing to do.
        if let Some(c) = self.conns.get(&conn) {
            // Fails only once the task has ended, and then its `Closed` is on the way.
            let _ = c.queue.try_send(data);
        }
    }

    fn close(&mut self, conn: ConnId) {
        // Dropping the task closes the socket; what it already queued is fed all the same
        // (the core ignores it).
        if self.conns.remove(&conn).is_some() {
            tracing::trace!("{conn}: closed by the core");
        }
    }

    fn send_datagram(&mut self, to: SocketAddr, data: Bytes) {
        let sent = self.udp.as_ref().map(|u| u.get_ref().send_to(&data, to));
        client_net::datagram_sent(to, sent);
    }
}

impl<'ex> SmolNet<'ex> {
    pub fn new(
        ex: &'ex LocalExecutor<'static>,
        events: Events,
        udp: Option<Rc<Async<UdpSocket>>>,
    ) -> SmolNet<'ex> {
        SmolNet {
            ex,
            events,
            conns: HashMap::new(),
            udp,
        }
    }

    /// Takes over an accepted stream.
    pub fn adopt(&mut self, conn: ConnId, stream: Async<TcpStream>) {
        let (queue, sends) = channel::unbounded();
        let task = self
            .ex
            .spawn(connection(conn, stream, sends, self.events.clone()));
        self.conns.insert(conn, Conn { queue, _task: task });
    }

    /// Bookkeeping for an event on its way to the core: a `Closed` means the connection's
    /// task has ended, so the connection is forgotten. Every event is fed, even one about
    /// a connection the core closed meanwhile (the core ignores those).
    pub fn forget_if_closed(&mut self, event: &NetEvent) {
        if let NetEvent::Closed(conn, _) = event {
            self.conns.remove(conn);
        }
    }
}

/// An outbound connection's task: connect, then serve.
async fn outbound(conn: ConnId, addr: SocketAddr, sends: Receiver<Bytes>, events: Events) {
    let stream = match Async::<TcpStream>::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => {
            let error = Some(format!("connecting to {addr}: {e}"));
            let _ = events
                .send(Wakeup::Net(NetEvent::Closed(conn, error)))
                .await;
            return;
        }
    };
    tracing::trace!("{conn}: connected to {addr}");
    if events
        .send(Wakeup::Net(NetEvent::Connected(conn)))
        .await
        .is_ok()
    {
        connection(conn, stream, sends, events).await;
    }
}

/// A connected stream's task: read and write until either ends the connection, then
/// report it closed.
async fn connection(
    conn: ConnId,
    stream: Async<TcpStream>,
    sends: Receiver<Bytes>,
    events: Events,
) {
    // Small protocol messages (requests, haves) should not wait for Nagle.
    let _ = stream.get_ref().set_nodelay(true);
    let error = future::or(
        read_loop(conn, &stream, &events),
        write_loop(conn, &stream, sends, &events),
    )
    .await;
    tracing::trace!(
        "{conn}: closed ({})",
        error.as_deref().unwrap_or("end of stream")
    );
    let _ = events
        .send(Wakeup::Net(NetEvent::Closed(conn, error)))
        .await;
}

/// Reads until the end of the stream (`None`) or an error. Waits while the event channel
/// is full: that is the back-pressure on peers.
async fn read_loop(conn: ConnId, stream: &Async<TcpStream>, events: &Events) -> Option<String> {
    let mut buf = ReadBuf::new();
    loop {
        match stream.read_with(|s| buf.read_from(s)).await {
            Ok(Some(data)) => {
                let event = Wakeup::Net(NetEvent::Received(conn, data));
                if events.send(event).await.is_err() {
                    return None; // the loop is gone
                }
            }
            Ok(None) => return None,
            Err(e) => return Some(e.to_string()),
        }
    }
}

/// Writes what the core queued, reporting each write as `Sent`; returns only on an error.
async fn write_loop(
    conn: ConnId,
    stream: &Async<TcpStream>,
    sends: Receiver<Bytes>,
    events: &Events,
) -> Option<String> {
    let mut queue = SendQueue::default();
    loop {
        if queue.is_empty() {
            match sends.recv().await {
                Ok(data) => queue.push(data),
                // The net dropped the connection; its task is being cancelled.
                Err(_) => return future::pending().await,
            }
        }
        while let Ok(data) = sends.try_recv() {
            queue.push(data);
        }
        match stream.write_with(|s| queue.write_to(s)).await {
            Ok(0) => {} // only empty buffers were queued
            Ok(n) => {
                if events
                    .send(Wakeup::Net(NetEvent::Sent(conn, n)))
                    .await
                    .is_err()
                {
                    return None;
                }
            }
            Err(e) => return Some(e.to_string()),
        }
    }
}

/// Hands every inbound connection to the driver task.
async fn accept_loop(listener: Async<TcpListener>, events: Events) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                if events.send(Wakeup::Accepted(stream, addr)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("accepting a connection: {e}");
                Timer::after(ACCEPT_PAUSE).await;
            }
        }
    }
}

/// Hands every datagram to the driver task.
async fn datagram_loop(udp: Rc<Async<UdpSocket>>, events: Events) {
    let mut buf = vec![0u8; client_net::MAX_DATAGRAM];
    loop {
        match udp.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let data = Bytes::copy_from_slice(&buf[..n]);
                if events
                    .send(Wakeup::Net(NetEvent::Datagram(from, data)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // ICMP errors from earlier sends surface here; the socket is fine. Let the
            // other tasks run before trying again, in case it is not.
            Err(e) => {
                tracing::debug!("receiving a datagram: {e}");
                future::yield_now().await;
            }
        }
    }
}

/// Turns each signal into a [`Wakeup::Interrupt`]. Ends only if the pipe breaks
/// (signal-hook keeps the other end for good).
async fn signal_loop(pipe: Async<UnixStream>, events: Events) {
    while let Ok(n @ 1..) = pipe.read_with(|p| signals::take(p)).await {
        for _ in 0..n {
            if events.send(Wakeup::Interrupt).await.is_err() {
                return;
            }
        }
    }
}

/// Hands one wake-up to the driver of its node (which drains after it).
fn dispatch(fleet: &mut Fleet<SmolNet<'_>>, node: usize, wakeup: Wakeup) {
    match wakeup {
        Wakeup::Interrupt => fleet.interrupt(),
        Wakeup::Net(event) => {
            if let Some(n) = fleet.node(node) {
                n.net.forget_if_closed(&event);
                n.driver.feed_event(event, &mut n.net);
            }
        }
        Wakeup::Accepted(stream, addr) => {
            if let Some(n) = fleet.node(node) {
                n.driver
                    .accept(addr, &mut n.net, |net, conn| net.adopt(conn, stream));
            }
        }
    }
}

/// Runs every node of `run` to the end, on one executor.
pub fn run(run: &Run) -> Result<Vec<Exit>, Error> {
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(drive(&ex, run)))
}

async fn drive(ex: &LocalExecutor<'static>, run: &Run) -> Result<Vec<Exit>, Error> {
    let ctrl_c = |e| Error::io("handling Ctrl-C", e);
    let signals = Async::new(signals::pipe().map_err(ctrl_c)?).map_err(ctrl_c)?;
    let (disk_done, disk_wakeups) = channel::bounded(1);
    let wake: Wake = Arc::new(move || {
        // Full: a wake-up is pending already. Closed: the loop is gone.
        let _ = disk_done.try_send(());
    });
    let (events, wakeups) = channel::bounded(EVENT_QUEUE);
    // Kept until the end: dropping a task cancels it.
    let mut tasks = vec![ex.spawn(signal_loop(signals, Events::new(0, events.clone())))];
    let mut nodes = Vec::with_capacity(run.nodes.len());
    for (i, (plan, sockets)) in run.bind()?.into_iter().enumerate() {
        let listener = Async::new(sockets.listener).map_err(|e| Error::io("listening", e))?;
        let udp = match sockets.udp {
            Some(u) => Some(Rc::new(
                Async::new(u).map_err(|e| Error::io("registering the UDP socket", e))?,
            )),
            None => None,
        };
        let driver = Driver::new(&plan, sockets.local.port(), wake.clone(), &run.board)?;
        let node_events = Events::new(i, events.clone());
        tasks.push(ex.spawn(accept_loop(listener, node_events.clone())));
        if let Some(udp) = &udp {
            tasks.push(ex.spawn(datagram_loop(udp.clone(), node_events.clone())));
        }
        let net = SmolNet::new(ex, node_events, udp);
        nodes.push(Node { driver, net });
    }
    drop(events);
    let mut fleet = Fleet::new(nodes);

    for (_, n) in fleet.live() {
        n.driver.drain(&mut n.net);
    }
    fleet.settle();
    while !fleet.done() {
        // Sleep until a task reports something, a pool finishes a job or the deadline.
        let timer = fleet.timeout().map_or_else(Timer::never, Timer::after);
        let net_event = async { wakeups.recv().await.ok() };
        let disk = async {
            let _ = disk_wakeups.recv().await;
            None
        };
        let deadline = async {
            timer.await;
            None
        };
        let first = future::or(net_event, future::or(disk, deadline)).await;
        if let Some((node, wakeup)) = first {
            dispatch(&mut fleet, node, wakeup);
            // And whatever else is queued, without waiting: at most EVENT_QUEUE, since the
            // other tasks cannot run meanwhile.
            while let Ok((node, wakeup)) = wakeups.try_recv() {
                dispatch(&mut fleet, node, wakeup);
            }
        }
        for (_, n) in fleet.live() {
            n.driver.disk_completions(&mut n.net);
            n.driver.handle_timeout(&mut n.net);
        }
        fleet.settle();
    }
    drop(tasks);
    Ok(fleet.exits())
}

#[cfg(test)]
mod tests;
