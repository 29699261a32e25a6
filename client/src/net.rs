//! The socket work every runtime does the same way, whatever it waits with: what happened
//! on the network ([`NetEvent`]), the per-connection send queue with its vectored writes
//! ([`SendQueue`]), zero-copy reads ([`ReadBuf`]) and binding the listening sockets
//! ([`bind`]; `Run::bind` in the driver binds every node of a run).
//!
//! Everything here works on non-blocking `std::io` sockets and returns
//! `io::ErrorKind::WouldBlock` when the socket is not ready; the runtime decides how to
//! wait for readiness (mio's `poll`, async-io's `read_with`/`write_with`...).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;

use bytes::{Buf, Bytes};
use tessera_core::{ConnId, Input, Instant};

use crate::cli::DEFAULT_PORTS;
use crate::error::Error;

/// Bytes asked for by one read of a connection.
pub const READ_CHUNK: usize = 64 << 10;
/// Largest UDP datagram a runtime receives.
pub const MAX_DATAGRAM: usize = 65536;

/// A read shorter than this is copied out, and its buffer read into again; a longer one
/// keeps its buffer (see [`ReadBuf`]).
pub const MIN_ZERO_COPY: usize = READ_CHUNK / 4;
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

/// A connection's read buffer: each read goes into the unused capacity of a
/// [`READ_CHUNK`]-sized allocation, which the kernel fills directly (nothing is zeroed
/// first), and becomes [`Bytes`] for the core without a copy.
///
/// A read of at least [`MIN_ZERO_COPY`] bytes hands its whole allocation over (the core's
/// decoder slices blocks out of it) and the next read gets a new one; a shorter read is
/// copied out and its buffer reused. So an allocation the core keeps alive holds at least
/// a quarter of its size in data received: the core's bound on buffered bytes bounds the
/// memory of the buffers too.
#[derive(Debug, Default)]
pub struct ReadBuf {
    /// Empty, with [`READ_CHUNK`] of capacity once the first read happened.
    buf: Vec<u8>,
}

impl ReadBuf {
    pub fn new() -> ReadBuf {
        ReadBuf::default()
    }

    /// One read from `socket`: `Some(data)`, or `None` at the end of the stream.
    /// `WouldBlock` when there is nothing to read; interrupted reads are retried.
    pub fn read_from(&mut self, socket: impl AsFd) -> io::Result<Option<Bytes>> {
        if self.buf.capacity() < READ_CHUNK {
            self.buf = Vec::with_capacity(READ_CHUNK);
        }
        self.buf.clear();
        loop {
            match rustix::io::read(&socket, rustix::buffer::spare_capacity(&mut self.buf)) {
                Ok(0) => return Ok(None),
                Ok(n) if n < MIN_ZERO_COPY => {
                    let data = Bytes::copy_from_slice(&self.buf);
                    self.buf.clear();
                    return Ok(Some(data));
                }
                Ok(_) => return Ok(Some(Bytes::from(std::mem::take(&mut self.buf)))),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
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

/// Binds the peer listener at `listen` and a UDP socket beside it; with no address (no
/// `--listen`), on every IPv4 address at [`DEFAULT_PORT`], or the first free port after
/// it, so that a port forward to it keeps working from one run to the next.
pub fn bind(listen: Option<SocketAddr>) -> Result<Sockets, Error> {
    let listener = match listen {
        Some(addr) => {
            TcpListener::bind(addr).map_err(|e| Error::io(format!("listening on {addr}"), e))?
        }
        None => bind_default()?,
    };
    sockets(listener)
}

/// The first port of [`DEFAULT_PORTS`] that is free, on every IPv4 address.
fn bind_default() -> Result<TcpListener, Error> {
    let mut last = None;
    for port in DEFAULT_PORTS {
        match TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse));
    Err(Error::io(
        format!(
            "listening on ports {}-{} (all taken; choose one with --listen)",
            DEFAULT_PORTS.start(),
            DEFAULT_PORTS.end()
        ),
        e,
    ))
}

/// Socket buffers asked for on the UDP socket, each way. uTP peers send windows of
/// datagrams back to back (libtorrent does not pace); with the kernel's default receive
/// buffer (about 200 KiB on Linux) a burst that arrives while the event loop is busy
/// elsewhere overflows it, and each loss costs the sender a fast retransmit or a
/// retransmission time-out. The kernel caps the size at `net.core.rmem_max` /
/// `wmem_max`.
const UDP_BUFFER: usize = 4 << 20;

fn enlarge_buffers(udp: &UdpSocket) {
    use rustix::net::sockopt;
    if let Err(e) = sockopt::set_socket_recv_buffer_size(udp, UDP_BUFFER) {
        tracing::debug!("UDP receive buffer: {e}");
    }
    if let Err(e) = sockopt::set_socket_send_buffer_size(udp, UDP_BUFFER) {
        tracing::debug!("UDP send buffer: {e}");
    }
    if let Ok(n) = sockopt::socket_recv_buffer_size(udp) {
        tracing::debug!("UDP receive buffer: {n} bytes");
    }
}

fn sockets(listener: TcpListener) -> Result<Sockets, Error> {
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
        Ok(u) => {
            enlarge_buffers(&u);
            Some(u)
        }
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

    /// Reads from `rx` until `len` bytes came, waiting (bounded) while it would block.
    fn read_exactly(
        buf: &mut ReadBuf,
        rx: &std::os::unix::net::UnixStream,
        len: usize,
    ) -> Vec<Bytes> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut reads = Vec::new();
        let mut got = 0;
        while got < len {
            match buf.read_from(rx) {
                Ok(Some(b)) => {
                    got += b.len();
                    reads.push(b);
                }
                Ok(None) => panic!("end of stream after {got} of {len} bytes"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "{got} of {len} bytes");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        reads
    }

    #[test]
    fn long_reads_keep_their_buffer_and_short_ones_are_copied_out() {
        use std::os::unix::net::UnixStream;
        let (mut tx, rx) = UnixStream::pair().unwrap();
        rx.set_nonblocking(true).unwrap();
        let mut buf = ReadBuf::new();
        assert_eq!(
            buf.read_from(&rx).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );

        // A short read is copied out; the buffer stays for the next read.
        tx.write_all(b"abc").unwrap();
        let short = read_exactly(&mut buf, &rx, 3);
        assert_eq!(short, [Bytes::from_static(b"abc")]);
        let kept = buf.buf.as_ptr();
        assert!(buf.buf.capacity() >= READ_CHUNK);
        assert_ne!(short[0].as_ptr(), kept);

        // A long one is handed over without a copy: the bytes are where the kernel put
        // them, in the buffer the short read left.
        let long: Vec<u8> = (0..MIN_ZERO_COPY + 100).map(|i| (i * 7) as u8).collect();
        tx.write_all(&long).unwrap();
        let reads = read_exactly(&mut buf, &rx, long.len());
        assert_eq!(reads.concat(), long);
        assert_eq!(reads[0].as_ptr(), kept, "zero-copy");
        assert!(reads[0].len() >= MIN_ZERO_COPY);

        // Many reads' worth, from another thread: every byte once, in order, no read
        // longer than READ_CHUNK; then the end of the stream.
        let data: Vec<u8> = (0..READ_CHUNK * 5 + 7)
            .map(|i| (i * 31 + i / 7) as u8)
            .collect();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            tx.write_all(&sent).unwrap();
        });
        let reads = read_exactly(&mut buf, &rx, data.len());
        assert!(reads.iter().all(|b| !b.is_empty() && b.len() <= READ_CHUNK));
        assert_eq!(reads.concat(), data);
        writer.join().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            match buf.read_from(&rx) {
                Ok(None) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline);
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                other => panic!("expected the end of the stream, got {other:?}"),
            }
        }
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
        let s = bind(Some("127.0.0.1:0".parse().unwrap())).unwrap();
        assert_ne!(s.local.port(), 0);
        let udp = s.udp.expect("a UDP socket");
        assert_eq!(udp.local_addr().unwrap().ip(), s.local.ip());
        // Non-blocking: nothing to accept is WouldBlock, not a hang.
        assert_eq!(
            s.listener.accept().unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let err = bind(Some(s.local)).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("listening on {}", s.local)),
            "{err}"
        );
    }
}
