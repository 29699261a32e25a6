//! The connection tasks against real loopback sockets, without a session: what the tasks
//! report is exactly what the core would be fed.

use std::io::{Read, Write};
use std::net::{TcpListener as StdListener, TcpStream as StdStream, UdpSocket as StdUdp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant as StdInstant;

use tessera_client::net::READ_CHUNK;
use tessera_client::net::testing::{closed, pattern, received, sent, summary};

use super::*;

const LIMIT: Duration = Duration::from_secs(20);

struct Harness {
    ex: &'static LocalExecutor<'static>,
    net: SmolNet<'static>,
    wakeups: Receiver<Wakeup>,
    /// Events reported, in order.
    seen: Vec<NetEvent>,
    /// Inbound connections, not yet adopted.
    accepted: Vec<(Async<TcpStream>, SocketAddr)>,
}

impl Harness {
    fn new(udp: Option<UdpSocket>) -> Harness {
        // Leaked so that the net can borrow it for the whole test.
        let ex: &'static LocalExecutor<'static> = Box::leak(Box::new(LocalExecutor::new()));
        let (events, wakeups) = channel::bounded(EVENT_QUEUE);
        let udp = udp.map(|u| Rc::new(Async::new(u).unwrap()));
        if let Some(u) = &udp {
            ex.spawn(datagram_loop(u.clone(), events.clone())).detach();
        }
        Harness {
            ex,
            net: SmolNet::new(ex, events, udp),
            wakeups,
            seen: Vec::new(),
            accepted: Vec::new(),
        }
    }

    /// Runs the tasks, collecting what the driver task would see, until `done` holds for
    /// the events seen (at most [`LIMIT`]).
    fn until(&mut self, what: &str, done: impl Fn(&[NetEvent]) -> bool) {
        self.until_with(what, |seen, _| done(seen));
    }

    /// [`Harness::until`], with the inbound connections not yet adopted.
    fn until_with(
        &mut self,
        what: &str,
        done: impl Fn(&[NetEvent], &[(Async<TcpStream>, SocketAddr)]) -> bool,
    ) {
        let Harness {
            ex,
            net,
            wakeups,
            seen,
            accepted,
        } = self;
        let deadline = StdInstant::now() + LIMIT;
        smol::block_on(ex.run(async {
            while !done(seen, accepted) {
                let wakeup = future::or(async { wakeups.recv().await.ok() }, async {
                    Timer::at(deadline).await;
                    None
                })
                .await;
                match wakeup {
                    Some(Wakeup::Net(event)) => {
                        net.forget_if_closed(&event);
                        seen.push(event);
                    }
                    Some(Wakeup::Accepted(stream, addr)) => accepted.push((stream, addr)),
                    Some(Wakeup::Interrupt) => panic!("unexpected interrupt"),
                    None => panic!("timed out waiting for {what}; seen {:?}", summary(seen)),
                }
            }
        }));
    }

    /// Lets the tasks run for `d` without taking any wake-up (a busy driver task).
    fn stall(&self, d: Duration) {
        smol::block_on(self.ex.run(Timer::after(d)));
    }
}

fn received_len(events: &[NetEvent], conn: ConnId) -> usize {
    events
        .iter()
        .map(|e| match e {
            NetEvent::Received(c, d) if *c == conn => d.len(),
            _ => 0,
        })
        .sum()
}

/// Connects `conn` to a fresh listener and returns the peer's end.
fn connected_pair(h: &mut Harness, conn: ConnId) -> StdStream {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    h.net.connect(conn, listener.local_addr().unwrap());
    h.until("the connection", |s| s.contains(&NetEvent::Connected(conn)));
    let (peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    peer
}

#[test]
fn outbound_connection_sends_receives_and_sees_the_close() {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let payload = pattern(3 << 20);
    let expected = payload.clone();
    // The peer: read everything we send, answer, close.
    let peer = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let mut got = vec![0u8; expected.len()];
        s.read_exact(&mut got).unwrap();
        assert!(got == expected, "payload corrupted");
        s.write_all(b"thanks").unwrap();
    });

    let mut h = Harness::new(None);
    let conn = ConnId(1);
    h.net.connect(conn, addr);
    // Queued before the connection is up: sent once it is.
    h.net.send(conn, Bytes::from_static(b""));
    for chunk in payload.chunks(100_000) {
        h.net.send(conn, Bytes::copy_from_slice(chunk));
    }
    h.until("the reply and the close", |s| closed(s, conn).is_some());

    assert_eq!(h.seen[0], NetEvent::Connected(conn));
    assert_eq!(sent(&h.seen, conn), payload.len());
    assert_eq!(received(&h.seen, conn), b"thanks");
    assert_eq!(closed(&h.seen, conn), Some(&None));
    // Closed is last, and the connection is forgotten.
    assert!(matches!(h.seen.last(), Some(NetEvent::Closed(..))));
    assert!(h.net.conns.is_empty());
    peer.join().unwrap();
    // Sending to a connection that is gone is ignored.
    h.net.send(conn, Bytes::from_static(b"late"));
}

#[test]
fn refused_connect_is_reported_closed_with_an_error() {
    // A port with nothing listening: bind, note it, close.
    let addr = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut h = Harness::new(None);
    h.net.connect(ConnId(7), addr);
    h.until("the failure", |s| closed(s, ConnId(7)).is_some());
    let err = closed(&h.seen, ConnId(7)).unwrap();
    assert!(
        err.as_deref()
            .is_some_and(|e| e.starts_with(&format!("connecting to {addr}: "))),
        "{err:?}"
    );
    assert!(!h.seen.contains(&NetEvent::Connected(ConnId(7))));
    assert!(h.net.conns.is_empty());
}

#[test]
fn close_by_the_core_cancels_the_task_and_closes_the_socket() {
    let mut h = Harness::new(None);
    let conn = ConnId(5);
    let mut peer = connected_pair(&mut h, conn);
    peer.write_all(b"unread").unwrap();
    // Let the bytes be read into the channel, then close before the driver takes them.
    let deadline = StdInstant::now() + LIMIT;
    while h.wakeups.is_empty() {
        assert!(StdInstant::now() < deadline, "nothing read");
        h.stall(Duration::from_millis(10));
    }
    h.net.close(conn);
    assert!(h.net.conns.is_empty());
    // What was read before the close is still handed out (the core ignores it).
    let Ok(Wakeup::Net(event)) = h.wakeups.try_recv() else {
        panic!("expected the Received");
    };
    assert!(matches!(event, NetEvent::Received(c, _) if c == conn));
    // The task is cancelled and the socket closed: the peer sees the end of the stream.
    h.stall(Duration::from_millis(10));
    let mut buf = [0u8; 8];
    assert_eq!(peer.read(&mut buf).unwrap(), 0, "peer should see EOF");
    assert!(h.wakeups.is_empty(), "a cancelled task reports nothing");
}

#[test]
fn accepted_streams_and_datagrams() {
    let udp = StdUdp::bind("127.0.0.1:0").unwrap();
    let udp_addr = udp.local_addr().unwrap();
    let mut h = Harness::new(Some(udp));

    // An inbound connection, through the accept task, adopted as connected.
    let listener = Async::new(StdListener::bind("127.0.0.1:0").unwrap()).unwrap();
    let listen_addr = listener.get_ref().local_addr().unwrap();
    h.ex.spawn(accept_loop(listener, h.net.events.clone()))
        .detach();
    let mut client = StdStream::connect(listen_addr).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    h.until_with("the accept", |_, accepted| !accepted.is_empty());
    let (stream, from) = h.accepted.pop().unwrap();
    assert_eq!(from, client.local_addr().unwrap());
    let conn = ConnId(9);
    h.net.adopt(conn, stream);
    h.net.send(conn, Bytes::from_static(b"hello "));
    h.net.send(conn, Bytes::from_static(b"world"));
    h.until("the writes", |s| sent(s, conn) == 11);
    let mut buf = [0u8; 11];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello world");
    client.write_all(b"ping").unwrap();
    h.until("the ping", |s| received(s, conn) == b"ping");

    // Datagrams both ways.
    let other = StdUdp::bind("127.0.0.1:0").unwrap();
    other.send_to(b"announce reply", udp_addr).unwrap();
    let from = other.local_addr().unwrap();
    h.until("the datagram", |s| {
        s.contains(&NetEvent::Datagram(
            from,
            Bytes::from_static(b"announce reply"),
        ))
    });
    h.net
        .send_datagram(from, Bytes::from_static(b"connect request"));
    other.set_read_timeout(Some(LIMIT)).unwrap();
    let mut dbuf = [0u8; 64];
    let (n, src) = other.recv_from(&mut dbuf).unwrap();
    assert_eq!(&dbuf[..n], b"connect request");
    assert_eq!(src, udp_addr);

    // The peer goes away: closed with or without an error, but closed.
    drop(client);
    h.until("the close", |s| closed(s, conn).is_some());
}

/// A peer that does not read: `Sent` counts what the socket took, not what was queued.
#[test]
fn sent_reports_only_what_a_slow_socket_took() {
    let mut h = Harness::new(None);
    let conn = ConnId(11);
    let mut peer = connected_pair(&mut h, conn);
    let payload = pattern(64 << 20);
    for chunk in payload.chunks(16 << 10) {
        h.net.send(conn, Bytes::copy_from_slice(chunk));
    }
    // Until the socket is full: no `Sent` for a while.
    let mut last = usize::MAX;
    while sent(&h.seen, conn) != last {
        last = sent(&h.seen, conn);
        h.stall(Duration::from_millis(300));
        while let Ok(Wakeup::Net(e)) = h.wakeups.try_recv() {
            h.seen.push(e);
        }
    }
    assert!(last > 0, "nothing written");
    assert!(
        last < payload.len() / 2,
        "{last} bytes reported sent to a peer that reads nothing"
    );

    // The peer reads: everything is written, and reported, exactly once.
    let reader = thread::spawn(move || {
        let mut got = vec![0u8; 64 << 20];
        peer.read_exact(&mut got).unwrap();
        got
    });
    h.until("every byte sent", |s| sent(s, conn) >= 64 << 20);
    assert_eq!(sent(&h.seen, conn), payload.len());
    assert!(reader.join().unwrap() == payload, "payload corrupted");
}

/// While the driver task takes no events, the connection stops reading and TCP holds the
/// peer back: memory stays bounded by the event queue.
#[test]
fn a_busy_driver_holds_back_the_peers() {
    let mut h = Harness::new(None);
    let conn = ConnId(12);
    let mut peer = connected_pair(&mut h, conn);
    // More than the kernel buffers on both sides can hold.
    let data = pattern(128 << 20);
    let to_send = data.clone();
    let finished = Arc::new(AtomicBool::new(false));
    let done = finished.clone();
    let writer = thread::spawn(move || {
        peer.write_all(&to_send).unwrap();
        done.store(true, Ordering::SeqCst);
        peer
    });
    let deadline = StdInstant::now() + LIMIT;
    while h.wakeups.len() < EVENT_QUEUE {
        assert!(StdInstant::now() < deadline, "the queue never filled up");
        h.stall(Duration::from_millis(50));
    }
    // Long enough for the peer to finish, were anything still reading.
    h.stall(Duration::from_millis(500));
    assert_eq!(h.wakeups.len(), EVENT_QUEUE);
    assert!(
        !finished.load(Ordering::SeqCst),
        "the peer wrote everything while nobody read"
    );
    // Each queued event is one read of at most a chunk.
    let queued: usize = std::iter::from_fn(|| h.wakeups.try_recv().ok())
        .map(|w| match w {
            Wakeup::Net(e) => {
                let n = match &e {
                    NetEvent::Received(_, d) => d.len(),
                    other => panic!("unexpected {other:?}"),
                };
                h.net.forget_if_closed(&e);
                h.seen.push(e);
                n
            }
            other => panic!("unexpected {other:?}"),
        })
        .sum();
    assert!(queued <= EVENT_QUEUE * READ_CHUNK);

    // The driver takes events again: everything arrives, in order.
    h.until("all the data", |s| received_len(s, conn) >= data.len());
    let _peer = writer.join().unwrap();
    assert!(received(&h.seen, conn) == data, "data corrupted");
}
