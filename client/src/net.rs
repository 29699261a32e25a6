//! The socket work every runtime does the same way, whatever it waits with: what happened
//! on the network ([`NetEvent`]), the per-connection send queue with its vectored writes
//! ([`SendQueue`]), zero-copy reads ([`ReadBuf`]) and binding the listening sockets
//! ([`bind`]).
//!
//! Everything here works on non-blocking `std::io` sockets and returns
//! `io::ErrorKind::WouldBlock` when the socket is not ready; the runtime decides how to
//! wait for readiness (mio's `poll`, async-io's `read_with`/`write_with`...).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};

use bytes::{Buf, Bytes, BytesMut};
use tessera_core::{ConnId, Input, Instant};

use crate::error::Error;

/// A connection's read buffer is this big when (re)allocated...
pub const READ_CHUNK: usize = 64 << 10;
/// Largest UDP datagram a runtime receives.
pub const MAX_DATAGRAM: usize = 65536;

/// ...and replaced once less than this is left of it.
pub const MIN_READ: usize = 4 << 10;
/// Buffers handed to one `writev`.
pub const MAX_IOVECS: usize = 64;

/// Something that happened on the network, turned into an [`Input`] when it is fed
/// ([`crate::Driver::feed_event`]).
#[derive(Debug, PartialEq, Eq)]
pub enum NetEvent {
    Connected(ConnId),
    Received(ConnId, Bytes),
    /// Bytes of the connection's [`SendQueue`] the socket took.
    Sent(ConnId, usize),
    Closed(ConnId, Option<String>),
    Datagram(SocketAddr, Bytes),
}

impl NetEvent {
    /// The connection the event is about (`None` for datagrams).
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            NetEvent::Connected(c)
            | NetEvent::Received(c, _)
            | NetEvent::Sent(c, _)
            | NetEvent::Closed(c, _) => Some(*c),
            NetEvent::Datagram(..) => None,
        }
    }

    pub fn into_input(self, now: Instant) -> Input {
        match self {
            NetEvent::Connected(conn) => Input::Connected { now, conn },
            NetEvent::Received(conn, data) => Input::Received { now, conn, data },
            NetEvent::Sent(conn, bytes) => Input::Sent { now, conn, bytes },
            NetEvent::Closed(conn, error) => Input::Closed { now, conn, error },
            NetEvent::Datagram(from, data) => Input::Datagram { now, from, data },
        }
    }
}

/// What the core asked to send on one connection and the socket has not taken yet.
///
/// Its size is bounded by the core (`Config::max_send_buffer` of upload data per
/// connection, counted until the runtime reports it with `Input::Sent`), so a slow socket
/// makes the core stop producing, not this queue grow.
#[derive(Debug, Default)]
pub struct SendQueue {
    bufs: VecDeque<Bytes>,
    len: usize,
}

impl SendQueue {
    /// Queues `data` after everything queued before.
    pub fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.len += data.len();
            self.bufs.push_back(data);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Writes queued buffers ([`MAX_IOVECS`] per `writev`) until the queue is empty or the
    /// socket would block, and returns how many bytes the socket took: what to report as
    /// `Sent`. `Ok(0)` only for an empty queue; `WouldBlock` when the socket took nothing.
    /// An error after some bytes were written is returned by the next call (socket errors
    /// persist). A socket that accepts zero bytes is a `WriteZero` error.
    pub fn write_to(&mut self, mut w: impl Write) -> io::Result<usize> {
        let mut written = 0usize;
        while !self.bufs.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut k = 0;
            for (slot, buf) in slices.iter_mut().zip(self.bufs.iter()) {
                *slot = IoSlice::new(buf);
                k += 1;
            }
            let result = match w.write_vectored(&slices[..k]) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the connection accepts no more data",
                )),
                other => other,
            };
            match result {
                Ok(n) => {
                    written += n;
                    self.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if written > 0 => {
                    tracing::trace!("write stopped after {written} bytes: {e}");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Drops the first `n` bytes.
    fn advance(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.bufs.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.bufs.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

/// A connection's read buffer: each read fills part of a [`READ_CHUNK`]-sized allocation,
/// which is split off and frozen into [`Bytes`] for the core without a copy.
#[derive(Debug, Default)]
pub struct ReadBuf {
    /// Initialised bytes to read into.
    buf: BytesMut,
}

impl ReadBuf {
    pub fn new() -> ReadBuf {
        ReadBuf::default()
    }

    /// One read: `Some(data)`, or `None` at the end of the stream. `WouldBlock` when there
    /// is nothing to read; interrupted reads are retried.
    pub fn read_from(&mut self, mut r: impl Read) -> io::Result<Option<Bytes>> {
        if self.buf.len() < MIN_READ {
            // Zeroed once per allocation (calloc); never re-zeroed, since what a read does
            // not fill is never handed out.
            self.buf = BytesMut::zeroed(READ_CHUNK);
        }
        loop {
            match r.read(&mut self.buf) {
                Ok(0) => return Ok(None),
                Ok(n) => return Ok(Some(self.buf.split_to(n).freeze())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Reports how sending a datagram to `to` went (`None`: there is no UDP socket).
/// Datagrams are best effort, like UDP itself (a full buffer drops one); the core retries.
pub fn datagram_sent(to: SocketAddr, sent: Option<io::Result<usize>>) {
    match sent {
        Some(Ok(_)) => {}
        Some(Err(e)) => tracing::debug!("sending a datagram to {to}: {e}"),
        None => tracing::debug!("no UDP socket: datagram to {to} dropped"),
    }
}

/// The sockets of a `download` or `seed`, non-blocking, for the runtime to wrap.
#[derive(Debug)]
pub struct Sockets {
    pub listener: TcpListener,
    /// For UDP trackers: on the listening port when free, else on any port; `None` (with
    /// a warning logged) when no UDP socket could be had.
    pub udp: Option<UdpSocket>,
    /// Where the listener is bound (its port goes to the core).
    pub local: SocketAddr,
}

/// Binds the peer listener at `listen` and a UDP socket beside it.
pub fn bind(listen: SocketAddr) -> Result<Sockets, Error> {
    let listener =
        TcpListener::bind(listen).map_err(|e| Error::io(format!("listening on {listen}"), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("listening", e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("listening", e))?;
    tracing::info!("listening on {local}");
    let udp = UdpSocket::bind(local)
        .or_else(|_| UdpSocket::bind(SocketAddr::new(local.ip(), 0)))
        .and_then(|u| u.set_nonblocking(true).map(|()| u));
    let udp = match udp {
        Ok(u) => Some(u),
        Err(e) => {
            tracing::warn!("no UDP socket ({e}): UDP trackers will not be reachable");
            None
        }
    };
    Ok(Sockets {
        listener,
        udp,
        local,
    })
}

/// What the runtimes' event-loop tests assert on: the [`NetEvent`]s a loop produced.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use tessera_core::ConnId;

    use super::NetEvent;

    /// One line per event, payloads by length.
    pub fn summary(events: &[NetEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                NetEvent::Received(c, d) => format!("Received({c}, {} bytes)", d.len()),
                NetEvent::Datagram(a, d) => format!("Datagram({a}, {} bytes)", d.len()),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// The bytes received on `conn`, in order.
    pub fn received(events: &[NetEvent], conn: ConnId) -> Vec<u8> {
        let mut out = Vec::new();
        for e in events {
            if let NetEvent::Received(c, d) = e
                && *c == conn
            {
                out.extend_from_slice(d);
            }
        }
        out
    }

    /// The bytes reported sent on `conn`.
    pub fn sent(events: &[NetEvent], conn: ConnId) -> usize {
        events
            .iter()
            .map(|e| match e {
                NetEvent::Sent(c, n) if *c == conn => *n,
                _ => 0,
            })
            .sum()
    }

    /// How `conn` closed, if it did.
    pub fn closed(events: &[NetEvent], conn: ConnId) -> Option<&Option<String>> {
        events.iter().find_map(|e| match e {
            NetEvent::Closed(c, err) if *c == conn => Some(err),
            _ => None,
        })
    }

    /// Bytes that differ from one 64 KiB block to the next (quick to make in a debug build).
    pub fn pattern(len: usize) -> Vec<u8> {
        let block: Vec<u8> = (0..65_521).map(|i: usize| (i * 31 + i / 7) as u8).collect();
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let n = block.len().min(len - out.len());
            out.extend_from_slice(&block[..n]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `room` bytes, then would block (or fails).
    struct Limited {
        got: Vec<u8>,
        room: usize,
        then: io::ErrorKind,
        calls: usize,
    }

    impl Write for Limited {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            assert!(bufs.len() <= MAX_IOVECS);
            if self.room == 0 {
                return Err(self.then.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.room - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.room {
                    break;
                }
            }
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn limited(room: usize, then: io::ErrorKind) -> Limited {
        Limited {
            got: Vec::new(),
            room,
            then,
            calls: 0,
        }
    }

    #[test]
    fn advance_drops_whole_and_partial_buffers() {
        let mut q = SendQueue::default();
        for b in [&b"abc"[..], b"", b"de", b"fghij"] {
            q.push(Bytes::from_static(b));
        }
        assert_eq!(q.len(), 10);
        assert_eq!(q.bufs.len(), 3, "empty buffers are not queued");
        q.advance(4);
        assert_eq!(
            q.bufs,
            [Bytes::from_static(b"e"), Bytes::from_static(b"fghij")]
        );
        q.advance(3);
        assert_eq!(q.bufs, [Bytes::from_static(b"hij")]);
        assert_eq!(q.len(), 3);
        q.advance(10);
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn write_to_reports_only_what_the_socket_took() {
        let mut q = SendQueue::default();
        let data: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        // More buffers than one writev takes.
        for chunk in data.chunks(2) {
            q.push(Bytes::copy_from_slice(chunk));
        }
        let mut w = limited(150, io::ErrorKind::WouldBlock);
        assert_eq!(q.write_to(&mut w).unwrap(), 150);
        assert!(w.calls >= 3, "{} writes", w.calls);
        assert_eq!(w.got, data[..150]);
        assert_eq!(q.len(), 50);
        // Full socket: nothing taken, WouldBlock, nothing lost.
        let err = q.write_to(&mut w).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(q.len(), 50);
        w.room = 1000;
        assert_eq!(q.write_to(&mut w).unwrap(), 50);
        assert_eq!(w.got, data);
        assert_eq!(q.write_to(&mut w).unwrap(), 0, "empty queue");
    }

    #[test]
    fn write_errors_come_after_the_bytes_written() {
        let mut q = SendQueue::default();
        q.push(Bytes::from_static(b"0123456789"));
        let mut w = limited(4, io::ErrorKind::BrokenPipe);
        assert_eq!(q.write_to(&mut w).unwrap(), 4);
        assert_eq!(
            q.write_to(&mut w).unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        let mut q = SendQueue::default();
        q.push(Bytes::from_static(b"x"));
        struct Zero;
        impl Write for Zero {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert_eq!(
            q.write_to(Zero).unwrap_err().kind(),
            io::ErrorKind::WriteZero
        );
    }

    #[test]
    fn reads_are_split_off_one_allocation() {
        let data: Vec<u8> = (0..READ_CHUNK * 2 + 7).map(|i| (i * 7) as u8).collect();
        let mut r = &data[..];
        let mut buf = ReadBuf::new();
        let mut got = Vec::new();
        let mut pieces = Vec::new();
        while let Some(b) = buf.read_from(&mut r).unwrap() {
            assert!(b.len() <= READ_CHUNK);
            got.extend_from_slice(&b);
            pieces.push(b);
        }
        assert_eq!(got, data);
        // Small reads share one allocation.
        let mut buf = ReadBuf::new();
        let a = buf.read_from(&b"abc"[..]).unwrap().unwrap();
        let b = buf.read_from(&b"de"[..]).unwrap().unwrap();
        assert_eq!((&a[..], &b[..]), (&b"abc"[..], &b"de"[..]));
        assert_eq!(a.as_ptr().wrapping_add(3), b.as_ptr());
    }

    #[test]
    fn events_become_inputs() {
        let now = Instant::ZERO;
        let c = ConnId(4);
        assert!(matches!(
            NetEvent::Sent(c, 9).into_input(now),
            Input::Sent { conn, bytes: 9, .. } if conn == c
        ));
        assert_eq!(NetEvent::Closed(c, None).conn(), Some(c));
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(NetEvent::Datagram(from, Bytes::new()).conn(), None);
    }

    #[test]
    fn bind_gives_a_listener_and_a_udp_socket_on_its_port() {
        let s = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(s.local.port(), 0);
        let udp = s.udp.expect("a UDP socket");
        assert_eq!(udp.local_addr().unwrap().ip(), s.local.ip());
        // Non-blocking: nothing to accept is WouldBlock, not a hang.
        assert_eq!(
            s.listener.accept().unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let err = bind(s.local).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("listening on {}", s.local)),
            "{err}"
        );
    }
}
