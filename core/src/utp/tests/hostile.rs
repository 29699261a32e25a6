//! Bad input: each is dropped or closes only the connection it names; nothing panics and
//! nothing a stranger sends makes us store more than the bounds.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::exchange;
use super::link::{A, B, LinkModel, Pair, Side};
use crate::rng::Rng;
use crate::time::Instant;
use crate::utp::packet::{self, EXT_SACK, Header, Packet, PacketType};
use crate::utp::seq::Seq;
use crate::utp::{StreamId, UtpConfig, UtpEvent, UtpSocket};

const MS: Duration = Duration::from_millis(1);

fn header(ty: PacketType, conn_id: u16, seq: u16, ack: u16) -> Header {
    Header {
        ty,
        conn_id,
        timestamp_us: 12345,
        timestamp_diff_us: 0,
        wnd_size: 1 << 20,
        seq_nr: Seq(seq),
        ack_nr: Seq(ack),
    }
}

/// A connected pair after "hello" went A→B; returns (A's stream, B's stream, the id B
/// receives on, B's last sequence number acked by A... as seen on the wire).
struct Live {
    p: Pair,
    sa: StreamId,
    sb: StreamId,
    /// Headers as B expects from A: conn id and the next sequence number.
    b_recv_id: u16,
    a_next_seq: Seq,
    a_ack: Seq,
}

/// Datagrams of 1,400 bytes, no path MTU search: payloads of exactly 1,380 bytes.
fn fixed() -> UtpConfig {
    UtpConfig {
        max_packet_size: 1400,
        initial_packet_size: 1400,
        ..UtpConfig::default()
    }
}

fn live() -> Live {
    let mut p = Pair::new(fixed(), fixed(), LinkModel::clean(5 * MS), 3);
    let sa = p.a.connect(p.now, B).unwrap();
    p.a.write(p.now, sa, Bytes::from_static(b"hello")).unwrap();
    assert!(p.run_until(Duration::from_secs(1), |p| p.events_b.len() >= 2));
    p.run_until(Duration::from_millis(50), |_| false);
    let UtpEvent::Incoming { stream: sb, .. } = p.events_b[0] else {
        panic!()
    };
    p.events_b.clear();
    p.events_a.clear();
    let last = p.sent_by(Side::A).last().unwrap().packet().header;
    let data = p
        .sent_by(Side::A)
        .filter(|w| w.packet().header.ty == PacketType::Data)
        .last()
        .unwrap()
        .packet()
        .header;
    Live {
        sa,
        sb,
        b_recv_id: data.conn_id,
        a_next_seq: data.seq_nr.next(),
        a_ack: last.ack_nr,
        p,
    }
}

/// The connection still carries data both ways afterwards.
fn still_works(l: &mut Live) {
    let now = l.p.now;
    l.p.a
        .write(now, l.sa, Bytes::from_static(b"after"))
        .unwrap();
    l.p.b.write(now, l.sb, Bytes::from_static(b"back")).unwrap();
    assert!(l.p.run_until(Duration::from_secs(5), |p| {
        p.events_b.contains(&UtpEvent::Data {
            stream: l.sb,
            data: Bytes::from_static(b"after"),
        }) && p.events_a.contains(&UtpEvent::Data {
            stream: l.sa,
            data: Bytes::from_static(b"back"),
        })
    }));
}

#[test]
fn not_utp_is_handed_back() {
    let mut s = UtpSocket::new(UtpConfig::default(), Rng::from_u64(1));
    let now = Instant::from_nanos(1);
    assert!(!s.handle_datagram(
        now,
        A,
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
    ));
    assert!(!s.handle_datagram(
        now,
        A,
        &[
            0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]
    ));
    assert!(!s.handle_datagram(now, A, &[0x41; 10]));
    assert!(!s.handle_datagram(now, A, b""));
    assert_eq!(s.poll_transmit(now), None);
}

#[test]
fn unknown_connections_get_no_answer_or_rate_limited_resets() {
    let now = Instant::from_nanos(1_000_000);
    let stray = packet::encode(&header(PacketType::Data, 999, 7, 3), None, b"junk");
    let mut quiet = UtpSocket::new(UtpConfig::default(), Rng::from_u64(1));
    for _ in 0..100 {
        assert!(quiet.handle_datagram(now, A, &stray));
    }
    assert_eq!(quiet.poll_transmit(now), None);
    assert_eq!(quiet.connections(), 0);

    let cfg = UtpConfig {
        resets_per_second: 3,
        ..UtpConfig::default()
    };
    let mut loud = UtpSocket::new(cfg, Rng::from_u64(1));
    for i in 0..100u64 {
        assert!(loud.handle_datagram(now + MS * i as u32, A, &stray));
    }
    let mut resets = Vec::new();
    while let Some(t) = loud.poll_transmit(now) {
        resets.push(t);
    }
    assert_eq!(resets.len(), 3, "three per second");
    let h = packet::Packet::decode(&resets[0].data).unwrap().header;
    assert_eq!(
        (h.ty, h.conn_id, h.ack_nr),
        (PacketType::Reset, 999, Seq(7))
    );
    // Never a reset for a reset.
    let reset = packet::encode(&header(PacketType::Reset, 5, 1, 1), None, &[]);
    assert!(loud.handle_datagram(now + Duration::from_secs(5), A, &reset));
    assert_eq!(loud.poll_transmit(now), None);
}

#[test]
fn malformed_packets_for_a_live_connection_change_nothing() {
    let mut l = live();
    let id = l.b_recv_id;
    let good = packet::encode(
        &header(PacketType::Data, id, l.a_next_seq.0, l.a_ack.0),
        None,
        b"evil",
    );
    // An extension chain that overruns the datagram.
    let mut overrun = good.to_vec();
    overrun[1] = EXT_SACK;
    overrun[20] = 0;
    overrun[21] = 200;
    // One that goes on too long.
    let mut long = good[..20].to_vec();
    long[1] = 9;
    for _ in 0..40 {
        long.extend_from_slice(&[9, 0]);
    }
    for bad in [&overrun[..], &long[..], &good[..19]] {
        let taken = l.p.inject(Side::B, A, bad);
        assert_eq!(taken, bad.len() >= 20);
    }
    assert!(l.p.events_b.is_empty(), "{:?}", l.p.events_b);
    still_works(&mut l);
}

#[test]
fn out_of_window_sequence_numbers_and_acks_are_dropped() {
    let mut l = live();
    let id = l.b_recv_id;
    // Far beyond anything B can buffer.
    let far = packet::encode(
        &header(PacketType::Data, id, l.a_next_seq.plus(5000).0, l.a_ack.0),
        None,
        b"far",
    );
    // Acknowledging B data it never sent.
    let ack_future = packet::encode(
        &header(PacketType::Data, id, l.a_next_seq.0, l.a_ack.plus(100).0),
        None,
        b"liar",
    );
    // A FIN far ahead.
    let fin = packet::encode(
        &header(PacketType::Fin, id, l.a_next_seq.plus(30000).0, l.a_ack.0),
        None,
        &[],
    );
    for bad in [&far, &ack_future, &fin] {
        assert!(l.p.inject(Side::B, A, bad));
    }
    assert!(l.p.events_b.is_empty(), "{:?}", l.p.events_b);
    still_works(&mut l);
}

#[test]
fn a_bogus_selective_ack_acknowledges_only_what_was_sent() {
    let mut l = live();
    // Grow A's window first.
    let now = l.p.now;
    l.p.a
        .write(now, l.sa, Bytes::from(vec![0u8; 200_000]))
        .unwrap();
    let mut got = 0;
    assert!(l.p.run_until(Duration::from_secs(10), |p| {
        for e in p.events_b.drain(..) {
            if let UtpEvent::Data { data, .. } = e {
                got += data.len();
            }
        }
        got == 200_000 && p.a.stats(l.sa).unwrap().in_flight == 0
    }));
    let first =
        l.p.sent_by(Side::A)
            .filter(|w| w.packet().header.ty == PacketType::Data)
            .last()
            .unwrap()
            .packet()
            .header
            .seq_nr
            .next();
    // Five full packets; the first is lost on the way.
    l.p.drop = Some(Box::new(move |side, pk| {
        side == Side::A && pk.header.seq_nr == first && pk.header.ty == PacketType::Data
    }));
    let now = l.p.now;
    l.p.a
        .write(now, l.sa, Bytes::from(vec![1u8; 5 * 1380]))
        .unwrap();
    l.p.flush();
    l.p.drop = None;
    assert_eq!(l.p.a.stats(l.sa).unwrap().in_flight, 5 * 1380);
    // Before B's own acknowledgements arrive, a selective ACK of all ones over 255 bytes:
    // bits for the four packets after the lost one, and for 2,036 never sent.
    let last_b = l.p.sent_by(Side::B).last().unwrap().packet().header;
    let a_id = last_b.conn_id;
    let bogus = packet::encode(
        &header(PacketType::State, a_id, last_b.seq_nr.0, first.minus(1).0),
        Some(&[0xff; 255]),
        &[],
    );
    assert!(l.p.inject(Side::A, B, &bogus));
    // The four were acknowledged, the first is still in flight and, with three after it
    // acknowledged, was resent at once; nothing else changed.
    let st = l.p.a.stats(l.sa).unwrap();
    assert_eq!(st.in_flight, 1380);
    assert_eq!(st.retransmits, 1);
    let resent = l.p.sent_by(Side::A).last().unwrap().packet().header;
    assert_eq!((resent.ty, resent.seq_nr), (PacketType::Data, first));
    // An empty selective ACK changes nothing either.
    let empty = packet::encode(
        &header(PacketType::State, a_id, last_b.seq_nr.0, first.minus(1).0),
        Some(&[]),
        &[],
    );
    assert!(l.p.inject(Side::A, B, &empty));
    assert_eq!(l.p.a.stats(l.sa).unwrap().in_flight, 1380);
    let mut got = 0;
    assert!(l.p.run_until(Duration::from_secs(5), |p| {
        for e in p.events_b.drain(..) {
            if let UtpEvent::Data { data, .. } = e {
                assert!(data.iter().all(|&b| b == 1));
                got += data.len();
            }
        }
        got == 5 * 1380
    }));
    still_works(&mut l);
}

#[test]
fn a_syn_flood_fills_a_bounded_table_and_a_real_peer_still_connects() {
    let cfg = UtpConfig {
        max_half_open: 32,
        ..UtpConfig::default()
    };
    let mut p = Pair::new(UtpConfig::default(), cfg, LinkModel::clean(5 * MS), 9);
    let mut rng = Rng::from_u64(77);
    for i in 0..20_000u32 {
        let from = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32)),
            rng.next_u64() as u16,
        );
        let syn = packet::encode(
            &header(PacketType::Syn, rng.next_u64() as u16, 1, 0),
            None,
            &[],
        );
        let now = p.now + MS * (i / 100);
        assert!(p.b.handle_datagram(now, from, &syn));
        assert!(p.b.half_open() <= 32 && p.b.connections() <= 32);
        // Each SYN is answered once with a 20-byte ST_STATE, no more.
        let answer = p.b.poll_transmit(now).expect("an answer");
        assert_eq!((answer.to, answer.data.len()), (from, 20));
        assert_eq!(p.b.poll_transmit(now), None);
    }
    assert_eq!(p.b.poll_event(), None);
    // A real peer connects afterwards and talks.
    let o = exchange(&mut p, b"hello", b"world", &[100], Duration::from_secs(30));
    assert_eq!(
        (o.got_a.as_slice(), o.got_b.as_slice()),
        (&b"world"[..], &b"hello"[..])
    );
    // The flood's connections expired.
    assert_eq!(p.b.half_open(), 0);
}

/// Floods `sock` with `n` SYNs from random addresses at `now`, each answered with one
/// 20-byte `ST_STATE`; returns the answers (address, decoded header).
fn flood(sock: &mut UtpSocket, now: Instant, n: u32, seed: u64) -> Vec<(SocketAddr, Header)> {
    let mut rng = Rng::from_u64(seed);
    let mut answers = Vec::new();
    for _ in 0..n {
        let from = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32)),
            rng.next_u64() as u16,
        );
        let syn = packet::encode(
            &header(
                PacketType::Syn,
                rng.next_u64() as u16,
                rng.next_u64() as u16,
                0,
            ),
            None,
            &[],
        );
        assert!(sock.handle_datagram(now, from, &syn));
        let answer = sock.poll_transmit(now).expect("an answer");
        assert_eq!((answer.to, answer.data.len()), (from, 20));
        assert_eq!(sock.poll_transmit(now), None);
        let h = packet::Packet::decode(&answer.data).unwrap().header;
        assert_eq!(h.ty, PacketType::State);
        answers.push((from, h));
    }
    answers
}

#[test]
fn a_syn_flood_does_not_evict_a_peer_mid_handshake() {
    let cfg = UtpConfig {
        max_half_open: 32,
        ..UtpConfig::default()
    };
    // 50 ms each way: the flood arrives between B's answer and A's first data packet.
    let mut p = Pair::new(UtpConfig::default(), cfg, LinkModel::clean(50 * MS), 11);
    let s1 = p.a.connect(p.now, B).unwrap();
    p.a.write(p.now, s1, Bytes::from_static(b"first")).unwrap();
    assert!(p.run_until(Duration::from_secs(1), |p| p.b.half_open() == 1));
    let now = p.now;
    flood(&mut p.b, now, 10_000, 5);
    assert_eq!(p.b.half_open(), 32, "the table is full");
    assert!(p.b.connections() <= 32);
    // A connects again while the table is full: answered with a cookie.
    let s2 = p.a.connect(p.now, B).unwrap();
    p.a.write(p.now, s2, Bytes::from_static(b"second")).unwrap();
    assert!(p.run_until(Duration::from_secs(2), |p| {
        p.events_b
            .iter()
            .filter(|e| matches!(e, UtpEvent::Data { .. }))
            .count()
            == 2
    }));
    // Both connections are B's, with their data, in the order they were made.
    let incoming: Vec<StreamId> = p
        .events_b
        .iter()
        .filter_map(|e| match e {
            UtpEvent::Incoming { stream, addr } if *addr == A => Some(*stream),
            _ => None,
        })
        .collect();
    assert_eq!(incoming.len(), 2, "{:?}", p.events_b);
    for (sb, want) in incoming.iter().zip([&b"first"[..], b"second"]) {
        assert!(p.events_b.contains(&UtpEvent::Data {
            stream: *sb,
            data: Bytes::copy_from_slice(want),
        }));
    }
    // The cookie connection carries data both ways and closes cleanly.
    let now = p.now;
    p.b.write(now, incoming[1], Bytes::from(vec![3u8; 50_000]))
        .unwrap();
    let mut got = 0;
    assert!(p.run_until(Duration::from_secs(5), |p| {
        for e in p.events_a.drain(..) {
            if let UtpEvent::Data { stream, data } = e {
                assert_eq!(stream, s2);
                got += data.len();
            }
        }
        got == 50_000
    }));
    let now = p.now;
    p.a.close(now, s2).unwrap();
    assert!(p.run_until(Duration::from_secs(5), |p| p.events_b.contains(
        &UtpEvent::Closed {
            stream: incoming[1],
            reason: crate::utp::CloseReason::Finished
        }
    )));
    // The flood's entries expire; nothing was evicted to make room.
    assert!(p.run_until(Duration::from_secs(15), |p| p.b.half_open() == 0));
}

#[test]
fn only_the_right_cookie_opens_a_connection() {
    let cfg = UtpConfig {
        max_half_open: 4,
        ..UtpConfig::default()
    };
    let mut b = UtpSocket::new(cfg, Rng::from_u64(2));
    let now = Instant::from_duration(Duration::from_secs(100));
    let answers = flood(&mut b, now, 200, 9);
    assert_eq!((b.half_open(), b.connections()), (4, 4));
    // The answers past the table are cookies: distinct, and not kept.
    let (from, st) = answers[150];
    let data = |conn_id: u16, seq: Seq, ack: Seq| {
        packet::encode(
            &Header {
                ty: PacketType::Data,
                conn_id,
                timestamp_us: 1,
                timestamp_diff_us: 0,
                wnd_size: 1 << 20,
                seq_nr: seq,
                ack_nr: ack,
            },
            None,
            b"handshake",
        )
    };
    // The SYN's id was st.conn_id and its sequence number st.ack_nr.
    let (id, syn_seq) = (st.conn_id.wrapping_add(1), st.ack_nr);
    let wrong = [
        data(id, syn_seq.next(), st.seq_nr),
        data(id, syn_seq.next(), st.seq_nr.minus(2)),
        data(id.wrapping_add(1), syn_seq.next(), st.seq_nr.minus(1)),
        data(id, syn_seq.plus(2), st.seq_nr.minus(1)),
    ];
    for d in &wrong {
        assert!(b.handle_datagram(now, from, d));
        let other = SocketAddr::new(from.ip(), from.port().wrapping_add(1));
        assert!(b.handle_datagram(now, other, &data(id, syn_seq.next(), st.seq_nr.minus(1))));
    }
    assert_eq!(b.connections(), 4);
    assert_eq!(b.poll_event(), None);
    // Too late: the cookie expired.
    let later = now + Duration::from_secs(61);
    assert!(b.handle_datagram(later, from, &data(id, syn_seq.next(), st.seq_nr.minus(1))));
    assert_eq!(b.poll_event(), None);
    // In time, the right one: a connection, its data, an acknowledgement from the cookie.
    assert!(b.handle_datagram(now, from, &data(id, syn_seq.next(), st.seq_nr.minus(1))));
    let Some(UtpEvent::Incoming { stream, addr }) = b.poll_event() else {
        panic!("no connection")
    };
    assert_eq!(addr, from);
    assert_eq!(
        b.poll_event(),
        Some(UtpEvent::Data {
            stream,
            data: Bytes::from_static(b"handshake")
        })
    );
    assert_eq!(b.connections(), 5);
    b.write(now, stream, Bytes::from_static(b"reply")).unwrap();
    let reply = b.poll_transmit(now).unwrap();
    let h = packet::Packet::decode(&reply.data).unwrap().header;
    assert_eq!(
        (h.ty, h.conn_id, h.seq_nr, h.ack_nr),
        (PacketType::Data, st.conn_id, st.seq_nr, syn_seq.next())
    );
}

#[test]
fn a_peer_that_stops_acking_loses_only_its_connection() {
    let mut p = Pair::new(
        UtpConfig::default(),
        UtpConfig::default(),
        LinkModel::clean(5 * MS),
        4,
    );
    let s1 = p.a.connect(p.now, B).unwrap();
    let s2 = p.a.connect(p.now, B).unwrap();
    for s in [s1, s2] {
        p.a.write(p.now, s, Bytes::from_static(b"hi")).unwrap();
    }
    assert!(p.run_until(Duration::from_secs(1), |p| p.events_b.len() >= 4));
    p.run_until(Duration::from_millis(100), |_| false);
    // From now on nothing B sends on the first connection arrives; instead, every 200 ms
    // a packet that acknowledges nothing new does (data with a stale acknowledgement, or a
    // duplicate ST_STATE): the peer talks but does not acknowledge.
    let r1 = p
        .sent_by(Side::A)
        .find(|w| w.packet().header.ty == PacketType::Syn)
        .unwrap()
        .packet()
        .header
        .conn_id;
    p.drop = Some(Box::new(move |side, pk| {
        side == Side::B && pk.header.conn_id == r1
    }));
    let last = p
        .sent_by(Side::B)
        .filter(|w| w.packet().header.conn_id == r1)
        .last()
        .unwrap()
        .packet()
        .header;
    let mut b_seq = last.seq_nr;
    let t0 = p.now;
    let mut next_talk = t0;
    let mut talks = 0u32;
    let mut closed = None;
    for s in [s1, s2] {
        p.a.write(t0, s, Bytes::from(vec![7u8; 200_000])).unwrap();
    }
    while p.now - t0 < Duration::from_secs(60) && closed.is_none() {
        let now = p.now;
        if now >= next_talk {
            next_talk = now + Duration::from_millis(200);
            talks += 1;
            let (ty, payload): (PacketType, &[u8]) = if talks.is_multiple_of(2) {
                (PacketType::Data, b"x")
            } else {
                (PacketType::State, b"")
            };
            let h = header(ty, r1, b_seq.0, last.ack_nr.0);
            if ty == PacketType::Data {
                b_seq = b_seq.next();
            }
            p.inject(Side::A, B, &packet::encode(&h, None, payload));
        }
        p.step();
        closed = p.events_a.iter().find_map(|e| match e {
            UtpEvent::Closed { stream, reason } => Some((*stream, *reason)),
            _ => None,
        });
    }
    assert_eq!(closed, Some((s1, crate::utp::CloseReason::TimedOut)));
    assert!(p.now - t0 < Duration::from_secs(20), "{:?}", p.now - t0);
    let st = p.a.stats(s2).expect("the other connection lives on");
    assert_eq!(st.bytes_acked, 200_002, "{st:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random datagrams, some dressed as packets of the live connection, at random times:
    /// nothing panics, what the sockets hold stays bounded, and what they send is uTP.
    #[test]
    fn random_datagrams_never_break_the_socket(
        junk in proptest::collection::vec(
            (any::<bool>(), 0u8..6, any::<u16>(), any::<u16>(), proptest::collection::vec(any::<u8>(), 0..64), 0u64..2_000),
            1..60),
    ) {
        let mut l = live();
        for (to_b, ty, seq_off, ack_off, tail, wait_ms) in junk {
            let (side, from, id) = if to_b {
                (Side::B, A, l.b_recv_id)
            } else {
                (Side::A, B, l.b_recv_id.wrapping_sub(1))
            };
            let mut bytes = packet::encode(
                &header(PacketType::from_u8(ty.min(4)).unwrap(), id, l.a_next_seq.0.wrapping_add(seq_off % 64), l.a_ack.0.wrapping_add(ack_off % 8)),
                None,
                &[],
            )
            .to_vec();
            if ty == 5 {
                bytes[1] = tail.first().copied().unwrap_or(1);
            }
            bytes.extend_from_slice(&tail);
            l.p.inject(side, from, &bytes);
            l.p.run_until(Duration::from_millis(wait_ms), |_| false);
            // The live connection, and at most one half-open one from a junk SYN.
            prop_assert!(l.p.a.connections() <= 2 && l.p.b.connections() <= 2);
        }
        l.p.run_until(Duration::from_secs(120), |_| false);
        prop_assert!(l.p.a.half_open() == 0 && l.p.b.half_open() == 0);
        prop_assert!(l.p.a.connections() <= 1 && l.p.b.connections() <= 1);
    }
}

/// A half-open connection connects on the initiator's answer to our `ST_STATE` only:
/// a packet for its id that acknowledges anything else (another connection's
/// acknowledgement, a guess near our sequence number) leaves it half-open.
#[test]
fn only_the_exact_acknowledgement_connects_a_half_open_connection() {
    let mut s = UtpSocket::new(UtpConfig::default(), Rng::from_u64(9));
    let now = Instant::from_nanos(1_000_000_000);
    let syn = packet::encode(&header(PacketType::Syn, 700, 40, 0), None, &[]);
    assert!(s.handle_datagram(now, A, &syn));
    let state = Packet::decode(&s.poll_transmit(now).unwrap().data)
        .unwrap()
        .header;
    assert_eq!((state.ty, state.ack_nr), (PacketType::State, Seq(40)));
    let isn = state.seq_nr;
    for back in [2u16, 5, 300, 1000] {
        for ty in [PacketType::State, PacketType::Data] {
            let stray = packet::encode(&header(ty, 701, 41, isn.0.wrapping_sub(back)), None, b"x");
            assert!(s.handle_datagram(now, A, &stray));
            assert_eq!(s.poll_event(), None, "{ty:?} acking {back} before");
            assert_eq!(s.half_open(), 1);
        }
    }
    let first = packet::encode(
        &header(PacketType::Data, 701, 41, isn.minus(1).0),
        None,
        b"x",
    );
    assert!(s.handle_datagram(now, A, &first));
    assert!(matches!(s.poll_event(), Some(UtpEvent::Incoming { .. })));
    assert_eq!(s.half_open(), 0);
}
