//! One real socket against a peer scripted packet by packet: the receive window, the
//! zero-window probe, duplicate acknowledgements and the ack-number checks, exactly.

use std::time::Duration;

use bytes::Bytes;

use super::link::B;
use crate::rng::Rng;
use crate::time::Instant;
use crate::utp::packet::{self, Header, Packet, PacketType};
use crate::utp::seq::Seq;
use crate::utp::{StreamId, UtpConfig, UtpEvent, UtpSocket};

/// What the socket sent, decoded.
#[derive(Debug, Clone)]
struct Sent {
    h: Header,
    payload: usize,
}

struct Script {
    sock: UtpSocket,
    now: Instant,
    stream: StreamId,
    /// The id the socket receives on (our packets carry it).
    id: u16,
    /// The socket's first data sequence number.
    first: Seq,
    /// Our next sequence number.
    seq: Seq,
}

impl Script {
    /// Connects a socket with 1,400-byte datagrams (no path MTU search: payloads of
    /// exactly 1,380 bytes) to B and answers its SYN with a window of `wnd`.
    fn start(wnd: u32) -> Script {
        let cfg = UtpConfig {
            max_packet_size: 1400,
            initial_packet_size: 1400,
            ..UtpConfig::default()
        };
        Script::start_with(cfg, wnd)
    }

    /// Connects a socket with `cfg` to B and answers its SYN with a window of `wnd`.
    fn start_with(cfg: UtpConfig, wnd: u32) -> Script {
        let mut sock = UtpSocket::new(cfg, Rng::from_u64(5));
        let now = Instant::from_nanos(1_000_000_000);
        let stream = sock.connect(now, B).unwrap();
        let syn = Packet::decode(&sock.poll_transmit(now).unwrap().data)
            .unwrap()
            .header;
        let mut s = Script {
            sock,
            now,
            stream,
            id: syn.conn_id,
            first: syn.seq_nr.next(),
            seq: Seq(1000),
        };
        s.now += Duration::from_millis(10);
        s.state(syn.seq_nr, wnd);
        assert_eq!(s.sock.poll_event(), Some(UtpEvent::Connected { stream }));
        s
    }

    fn packet(&mut self, ty: PacketType, ack: Seq, wnd: u32, sack: Option<&[u8]>, payload: &[u8]) {
        let h = Header {
            ty,
            conn_id: self.id,
            timestamp_us: packet::micros(self.now),
            timestamp_diff_us: 1000,
            wnd_size: wnd,
            seq_nr: self.seq,
            ack_nr: ack,
        };
        if ty == PacketType::Data {
            self.seq = self.seq.next();
        }
        let now = self.now;
        assert!(
            self.sock
                .handle_datagram(now, B, &packet::encode(&h, sack, payload))
        );
    }

    fn state(&mut self, ack: Seq, wnd: u32) {
        self.packet(PacketType::State, ack, wnd, None, &[]);
    }

    fn sent(&mut self) -> Vec<Sent> {
        let mut v = Vec::new();
        while let Some(t) = self.sock.poll_transmit(self.now) {
            assert_eq!(t.to, B);
            let p = Packet::decode(&t.data).unwrap();
            v.push(Sent {
                h: p.header,
                payload: p.payload.len(),
            });
        }
        v
    }

    fn data_sent(&mut self) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|s| s.h.ty == PacketType::Data)
            .collect()
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        if self.sock.poll_timeout().is_some_and(|t| t <= now) {
            self.sock.handle_timeout(now);
        }
    }

    /// Data packets sent from now until `n` have gone, following the pacer's deadlines
    /// (at most `limit` later).
    fn data_paced(&mut self, n: usize, limit: Duration) -> Vec<Sent> {
        let end = self.now + limit;
        let mut got = self.data_sent();
        while got.len() < n {
            match self.sock.poll_timeout() {
                Some(t) if t <= end => {
                    let now = self.now.max(t);
                    self.now = now;
                    self.sock.handle_timeout(now);
                    got.extend(self.data_sent());
                }
                _ => break,
            }
        }
        got
    }

    fn write(&mut self, n: usize) {
        let now = self.now;
        let took = self
            .sock
            .write(now, self.stream, Bytes::from(vec![9u8; n]))
            .unwrap();
        assert_eq!(took, n);
    }
}

#[test]
fn the_peers_window_caps_what_is_in_flight_and_a_zero_window_is_probed() {
    let mut s = Script::start(3000);
    s.write(20_000);
    // 2 × 1380 fit in 3000 bytes, a third does not.
    let d = s.data_sent();
    assert_eq!(
        d.iter()
            .map(|p| (p.h.seq_nr, p.payload))
            .collect::<Vec<_>>(),
        vec![(s.first, 1380), (s.first.next(), 1380)]
    );
    // Both acknowledged, but the window is now zero: nothing goes.
    s.now += Duration::from_millis(10);
    s.state(s.first.next(), 0);
    assert!(s.data_sent().is_empty());
    // Until the probe timer (one timeout) fires: then exactly one packet.
    let probe_at = s.sock.poll_timeout().unwrap();
    assert!(
        probe_at > s.now && probe_at - s.now <= Duration::from_secs(1),
        "{:?}",
        probe_at - s.now
    );
    s.advance(probe_at - s.now - Duration::from_millis(1));
    assert!(s.data_sent().is_empty());
    s.advance(Duration::from_millis(1));
    let probe = s.data_sent();
    assert_eq!(probe.len(), 1);
    assert_eq!(probe[0].h.seq_nr, s.first.plus(2));
    // The window opens: the rest flows, within the congestion window.
    s.now += Duration::from_millis(10);
    s.state(s.first.plus(2), 1 << 20);
    let d = s.data_sent();
    assert!(!d.is_empty());
    assert_eq!(d[0].h.seq_nr, s.first.plus(3));
    let st = s.sock.stats(s.stream).unwrap();
    assert!(st.in_flight <= st.cwnd, "{st:?}");
    assert_eq!(st.peer_window, 1 << 20);
}

#[test]
fn three_duplicate_acks_resend_the_oldest_packet_once() {
    let mut s = Script::start(1 << 20);
    // Grow the window: acknowledge a first burst at once.
    s.write(1380 * 2);
    assert_eq!(s.data_sent().len(), 2);
    s.now += Duration::from_millis(10);
    s.state(s.first.next(), 1 << 20);
    s.write(1380 * 5);
    let burst = s.data_paced(5, Duration::from_millis(5));
    assert!(burst.len() >= 4, "{burst:?}");
    let oldest = burst[0].h.seq_nr;
    s.now += Duration::from_millis(10);
    // Duplicates of the acknowledgement before `oldest`.
    for i in 0..3 {
        s.state(oldest.minus(1), 1 << 20);
        let resent = s.data_sent();
        if i < 2 {
            assert!(resent.is_empty(), "resent after {} duplicates", i + 1);
        } else {
            assert_eq!(resent.len(), 1);
            assert_eq!((resent[0].h.seq_nr, resent[0].payload), (oldest, 1380));
        }
    }
    // More duplicates do not resend it again before the timer.
    for _ in 0..6 {
        s.state(oldest.minus(1), 1 << 20);
    }
    assert!(s.data_sent().is_empty());
    let st = s.sock.stats(s.stream).unwrap();
    assert_eq!(st.retransmits, 1);
    // The loss halved the window (it was at least 7 packets).
    assert!(st.cwnd < 7 * 1380, "{st:?}");
}

#[test]
fn acknowledgements_out_of_range_are_ignored_with_their_packet() {
    let mut s = Script::start(1 << 20);
    s.write(1380);
    assert_eq!(s.data_sent().len(), 1);
    // Data whose acknowledgement is for a packet never sent: dropped whole.
    s.packet(PacketType::Data, s.first.plus(5), 1 << 20, None, b"forged");
    assert_eq!(
        s.sock.poll_event(),
        Some(UtpEvent::Sent {
            stream: s.stream,
            bytes: 1380
        })
    );
    assert_eq!(s.sock.poll_event(), None);
    assert_eq!(s.sock.stats(s.stream).unwrap().in_flight, 1380);
    // The same data with a believable acknowledgement is delivered and acknowledges ours.
    s.seq = s.seq.minus(1);
    s.packet(PacketType::Data, s.first, 1 << 20, None, b"real");
    assert_eq!(
        s.sock.poll_event(),
        Some(UtpEvent::Data {
            stream: s.stream,
            data: Bytes::from_static(b"real")
        })
    );
    assert_eq!(s.sock.stats(s.stream).unwrap().in_flight, 0);
}

/// Steps the socket through its own deadlines for `d` of virtual time, answering nothing;
/// returns the data packets it sent, each with its time.
fn run_for(s: &mut Script, d: Duration) -> Vec<(Instant, Sent)> {
    let end = s.now + d;
    let mut got: Vec<(Instant, Sent)> = s.data_sent().into_iter().map(|p| (s.now, p)).collect();
    while let Some(t) = s.sock.poll_timeout().filter(|&t| t <= end) {
        s.now = s.now.max(t);
        let now = s.now;
        s.sock.handle_timeout(now);
        got.extend(s.data_sent().into_iter().map(|p| (now, p)));
    }
    s.now = end;
    got
}

#[test]
fn pacing_spreads_each_window_over_the_round_trip() {
    let mut s = Script::start(1 << 20);
    let rtt = Duration::from_millis(20);
    let max_burst = UtpConfig::default().max_burst;
    let mut rounds: Vec<usize> = Vec::new();
    for _ in 0..9 {
        let room = s.sock.send_room(s.stream);
        if room > 0 {
            s.write(room);
        }
        let start = s.now;
        let sent = run_for(&mut s, rtt);
        let Some(last) = sent.last() else {
            panic!("nothing sent in a round")
        };
        // Never more than max_burst data packets at one instant...
        let at_once = max_at_once(&sent);
        assert!(at_once <= max_burst, "{at_once} packets at once");
        // ... and a window of several bursts is spread over the round trip, not sent at
        // its start: the last packet leaves at least a quarter of the round trip later.
        if sent.len() > 2 * max_burst {
            assert!(
                last.0 - start >= rtt / 4,
                "{} packets within {:?}",
                sent.len(),
                last.0 - start
            );
        }
        rounds.push(sent.len());
        // The peer acknowledges the round, one round trip after it started.
        let acked = last.1.h.seq_nr;
        s.state(acked, 1 << 20);
    }
    // Pacing does not hold the window back: slow start still doubles it every round until
    // the round trip is full.
    for w in rounds.windows(2).take(5) {
        assert!(w[1] >= w[0] * 3 / 2, "rounds: {rounds:?}");
    }
    assert!(
        rounds.iter().any(|&n| n > 4 * max_burst),
        "rounds: {rounds:?}"
    );
    let st = s.sock.stats(s.stream).unwrap();
    assert_eq!(st.retransmits, 0, "{st:?}");
    assert_eq!(st.bytes_acked, rounds.iter().sum::<usize>() as u64 * 1380);
}

fn max_at_once(sent: &[(Instant, Sent)]) -> usize {
    let mut best = 0;
    let mut run = 0;
    for (i, (t, _)) in sent.iter().enumerate() {
        run = if i > 0 && sent[i - 1].0 == *t {
            run + 1
        } else {
            1
        };
        best = best.max(run);
    }
    best
}

#[test]
fn resends_after_many_losses_at_once_are_paced_too() {
    let mut s = Script::start(1 << 20);
    let rtt = Duration::from_millis(20);
    let max_burst = UtpConfig::default().max_burst;
    // Slow start until a round carries well over four bursts.
    let mut sent = Vec::new();
    for _ in 0..8 {
        let room = s.sock.send_room(s.stream);
        if room > 0 {
            s.write(room);
        }
        sent = run_for(&mut s, rtt);
        if sent.len() > 6 * max_burst {
            break;
        }
        s.state(sent.last().unwrap().1.h.seq_nr, 1 << 20);
    }
    assert!(
        sent.len() > 6 * max_burst,
        "{} packets in the round",
        sent.len()
    );
    // The whole last round is outstanding. The peer got every other packet: each of 30
    // acknowledgements, read at one instant, selectively acknowledges them all, so every
    // hole has three or more acknowledged packets above it.
    let first = sent[0].1.h.seq_nr;
    let n = sent.len();
    let mut mask = vec![0u8; (n / 8 + 1).next_multiple_of(4)];
    for i in (1..n - 1).step_by(2) {
        // Bit k stands for ack + 2 + k; the ack is `first - 1`, so packet `first + i` is
        // bit i - 1.
        mask[(i - 1) / 8] |= 1 << ((i - 1) % 8);
    }
    let holes: Vec<u16> = (2..n - 1)
        .step_by(2)
        .map(|i| first.plus(i as u16).0)
        .collect();
    let _ = s.data_sent();
    for _ in 0..30 {
        s.packet(PacketType::State, first.minus(1), 1 << 20, Some(&mask), &[]);
    }
    let at_once = s.data_sent();
    assert!(
        at_once.len() <= max_burst,
        "{} packets resent at one instant",
        at_once.len()
    );
    assert!(!at_once.is_empty(), "nothing resent at once");
    // Every hole the acknowledgements revealed is resent within the round trip anyway.
    let later = run_for(&mut s, rtt);
    let resent: std::collections::BTreeSet<u16> = at_once
        .iter()
        .chain(later.iter().map(|(_, p)| p))
        .map(|p| p.h.seq_nr.0)
        .collect();
    let found = holes.iter().filter(|h| resent.contains(h)).count();
    assert!(
        found >= holes.len() - 3,
        "{found} of {} holes resent",
        holes.len()
    );
}
