//! One behaviour at a time, checked on the wire.

use std::time::Duration;

use bytes::Bytes;

use super::exchange;
use super::link::{A, B, LinkModel, Pair, Side};
use crate::rng::Rng;
use crate::time::Instant;
use crate::utp::packet::{self, EXT_SACK, Header, Packet, PacketType};
use crate::utp::seq::Seq;
use crate::utp::{CloseReason, UtpConfig, UtpEvent, UtpSocket};

const MS: Duration = Duration::from_millis(1);

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::from_u64(seed).fill(&mut v);
    v
}

fn pair(link: LinkModel) -> Pair {
    Pair::new(UtpConfig::default(), UtpConfig::default(), link, 7)
}

#[test]
fn handshake_ids_and_sequence_numbers_on_the_wire() {
    let mut p = pair(LinkModel::clean(10 * MS));
    p.a.forced_isn = Some(100);
    p.b.forced_isn = Some(5000);
    let s = p.a.connect(p.now, B).unwrap();
    p.a.write(p.now, s, Bytes::from_static(b"hello")).unwrap();
    // Until the initiator's first packet after the SYN, B reports nothing.
    assert!(p.run_until(15 * MS, |p| p.sent_by(Side::B).count() == 1));
    assert!(p.events_b.is_empty());
    assert!(p.run_until(100 * MS, |p| !p.events_b.is_empty()));
    let wire: Vec<Header> = p.wire.iter().map(|w| w.packet().header).collect();
    // SYN: our receive id, seq = isn, no ack.
    let syn = wire[0];
    assert_eq!(syn.ty, PacketType::Syn);
    let r = syn.conn_id;
    assert_eq!((syn.seq_nr, syn.ack_nr), (Seq(100), Seq(0)));
    assert!(syn.wnd_size > 0, "the SYN advertises our window");
    // B's answer: ST_STATE with the SYN's id, its own first number, acking the SYN.
    let st = wire[1];
    assert_eq!(st.ty, PacketType::State);
    assert_eq!(st.conn_id, r);
    assert_eq!((st.seq_nr, st.ack_nr), (Seq(5000), Seq(100)));
    assert_ne!(
        st.timestamp_diff_us, 0,
        "a delay sample from the SYN's timestamp"
    );
    // Then A's data: id + 1, next number, acking one before B's first.
    let d = wire[2];
    assert_eq!(d.ty, PacketType::Data);
    assert_eq!(d.conn_id, r.wrapping_add(1));
    assert_eq!((d.seq_nr, d.ack_nr), (Seq(101), Seq(4999)));
    assert_eq!(p.wire[2].packet().payload, b"hello");
    assert!(matches!(p.events_a[0], UtpEvent::Connected { stream } if stream == s));
    let sb = match p.events_b[0] {
        UtpEvent::Incoming { stream, addr } => {
            assert_eq!(addr, A);
            stream
        }
        ref e => panic!("{e:?}"),
    };
    assert_eq!(
        p.events_b[1],
        UtpEvent::Data {
            stream: sb,
            data: Bytes::from_static(b"hello")
        }
    );
    // B's first data packet uses its first number and carries A's id.
    p.b.write(p.now, sb, Bytes::from_static(b"world")).unwrap();
    p.flush();
    let back = p.sent_by(Side::B).last().unwrap().packet();
    assert_eq!(back.header.ty, PacketType::Data);
    assert_eq!(back.header.conn_id, r);
    assert_eq!(
        (back.header.seq_nr, back.header.ack_nr),
        (Seq(5000), Seq(101))
    );
}

#[test]
fn transfer_both_ways_and_close_cleanly() {
    let mut p = pair(LinkModel::clean(5 * MS));
    let (da, db) = (data(1 << 20, 1), data(700_000, 2));
    let o = exchange(
        &mut p,
        &da,
        &db,
        &[16384, 1, 5000, 70_000],
        60 * Duration::from_secs(1),
    );
    assert!(o.got_b == da, "A→B stream differs");
    assert!(o.got_a == db, "B→A stream differs");
    assert_eq!(o.closed_b, Some(CloseReason::Finished));
    assert_eq!(o.closed_a, None, "A closed it itself");
    assert!(
        o.all_gone,
        "connections left: {} {}",
        p.a.connections(),
        p.b.connections()
    );
    let fins = |side| {
        p.sent_by(side)
            .filter(|w| w.packet().header.ty == PacketType::Fin)
            .count()
    };
    assert_eq!((fins(Side::A), fins(Side::B)), (1, 1));
    // Nothing was resent on a clean link, and no datagram was larger than allowed.
    let resent = |side| {
        let mut seen = std::collections::BTreeSet::new();
        p.sent_by(side)
            .map(|w| w.packet().header)
            .filter(|h| h.ty == PacketType::Data)
            .filter(|h| !seen.insert(h.seq_nr.0))
            .count()
    };
    assert_eq!((resent(Side::A), resent(Side::B)), (0, 0));
    // The link carries 1,472-byte datagrams: one probe found it, and full packets after it
    // are that large.
    assert!(p.wire.iter().all(|w| w.data.len() <= 1472));
    let unpadded = |w: &&super::link::Wire| w.packet().skipped_extensions == 0;
    assert!(
        p.wire.iter().filter(unpadded).any(|w| w.data.len() == 1472),
        "full packets are 1472 bytes"
    );
    assert_eq!(p.a.connections(), 0);
}

#[test]
fn lossy_link_still_delivers_in_order() {
    let link = LinkModel {
        loss: 0.05,
        duplicate: 0.02,
        delay: 20 * MS,
        jitter: 15 * MS,
        ..LinkModel::clean(20 * MS)
    };
    let mut p = pair(link);
    let (da, db) = (data(600_000, 3), data(300_000, 4));
    let o = exchange(&mut p, &da, &db, &[1000, 20_000], Duration::from_secs(300));
    assert!(o.got_b == da && o.got_a == db, "streams differ");
    assert_eq!(o.closed_b, Some(CloseReason::Finished));
    assert!(o.all_gone);
    let resends = p
        .sent_by(Side::A)
        .filter(|w| w.packet().header.ty == PacketType::Data)
        .count()
        - da.len().div_ceil(1380);
    assert!(resends > 0, "5 % loss and nothing resent?");
}

#[test]
fn small_writes_coalesce_while_data_is_in_flight() {
    for nagle in [true, false] {
        let cfg = UtpConfig {
            nagle,
            ..UtpConfig::default()
        };
        let mut p = Pair::new(cfg, UtpConfig::default(), LinkModel::clean(50 * MS), 1);
        let s = p.a.connect(p.now, B).unwrap();
        assert!(p.run_until(Duration::from_secs(1), |p| !p.events_a.is_empty()));
        p.a.write(p.now, s, Bytes::from_static(b"x")).unwrap();
        for _ in 0..100 {
            p.a.write(p.now, s, Bytes::from_static(b"0123456789"))
                .unwrap();
        }
        p.flush();
        let data_sizes = |p: &Pair| -> Vec<usize> {
            p.sent_by(Side::A)
                .map(|w| w.packet())
                .filter(|pk| pk.header.ty == PacketType::Data)
                .map(|pk| pk.payload.len())
                .collect()
        };
        let sizes = data_sizes(&p);
        if nagle {
            // The first byte goes at once; the rest waits for its acknowledgement.
            assert_eq!(sizes, vec![1]);
            assert!(p.run_until(Duration::from_secs(1), |p| p.sent_by(Side::A).count() >= 3));
            let second = p.sent_by(Side::A).nth(2).unwrap().packet();
            assert_eq!(second.header.ty, PacketType::Data);
            assert_eq!(second.payload.len(), 1000);
        } else {
            // Every write is a packet of its own, the first ones at once, the rest paced.
            assert!(sizes.len() > 16, "{sizes:?}");
            assert!(p.run_until(Duration::from_secs(1), |p| data_sizes(p).len() >= 101));
            let sizes = data_sizes(&p);
            assert_eq!(sizes.len(), 101);
            assert!(
                sizes[0] == 1 && sizes[1..].iter().all(|&n| n == 10),
                "{sizes:?}"
            );
        }
    }
}

#[test]
fn a_lost_packet_is_selectively_acked_and_resent_before_the_timer() {
    let mut p = pair(LinkModel::clean(50 * MS));
    p.a.forced_isn = Some(65530);
    // Drop the first transmission of data packet 65535 (the sequence wraps right after).
    let mut dropped = false;
    p.drop = Some(Box::new(move |side, pk| {
        let hit = side == Side::A
            && pk.header.ty == PacketType::Data
            && pk.header.seq_nr == Seq(65535)
            && !dropped;
        dropped |= hit;
        hit
    }));
    let da = data(30 * 1380, 5);
    let o = exchange(&mut p, &da, b"", &[1 << 20], Duration::from_secs(30));
    assert!(o.got_b == da);
    // B acknowledged 65534 with a selective ACK whose first bit is 0 (65536 = seq 0).
    let sack = p
        .sent_by(Side::B)
        .map(|w| w.packet())
        .find(|pk| pk.sack.is_some())
        .expect("a selective ACK");
    assert_eq!(sack.header.ack_nr, Seq(65534));
    let mask = sack.sack.unwrap();
    assert!(mask.len() >= 4 && mask.len() % 4 == 0);
    assert_eq!(mask[0] & 1, 1, "packet 0 (after the gap) arrived");
    assert_eq!(
        p.wire
            .iter()
            .find(|w| w.from == Side::B && w.data.len() > 20)
            .map(|w| w.data[1]),
        Some(EXT_SACK)
    );
    // The resend came about one round trip after the loss, well before the 1 s timer.
    let sends: Vec<(Instant, bool)> = p
        .sent_by(Side::A)
        .filter(|w| {
            w.packet().header.seq_nr == Seq(65535) && w.packet().header.ty == PacketType::Data
        })
        .map(|w| (w.at, w.delivered))
        .collect();
    let delivered: Vec<bool> = sends.iter().map(|s| s.1).collect();
    assert_eq!(delivered, vec![false, true]);
    let gap = sends[1].0 - sends[0].0;
    assert!(gap < 400 * MS, "resent after {gap:?}");
}

#[test]
fn dead_peer_times_out_with_doubling_timeouts() {
    let mut p = pair(LinkModel::clean(10 * MS));
    let s = p.a.connect(p.now, B).unwrap();
    p.a.write(p.now, s, Bytes::from(data(5000, 6))).unwrap();
    assert!(p.run_until(
        Duration::from_secs(1),
        |p| p.a.stats(s).unwrap().bytes_acked == 5000
    ));
    // B vanishes.
    p.drop = Some(Box::new(|_, _| true));
    p.a.write(p.now, s, Bytes::from(data(3000, 7))).unwrap();
    let t0 = p.now;
    assert!(p.run_until(Duration::from_secs(120), |p| {
        p.events_a
            .iter()
            .any(|e| matches!(e, UtpEvent::Closed { .. }))
    }));
    assert!(p.events_a.contains(&UtpEvent::Closed {
        stream: s,
        reason: CloseReason::TimedOut
    }));
    // The oldest packet was resent after each timeout, the gaps doubling from the floor.
    let first = p
        .sent_by(Side::A)
        .filter(|w| w.at >= t0)
        .map(|w| w.packet().header.seq_nr)
        .next()
        .unwrap();
    let times: Vec<Instant> = p
        .sent_by(Side::A)
        .filter(|w| {
            w.at >= t0
                && w.packet().header.seq_nr == first
                && w.packet().header.ty == PacketType::Data
        })
        .map(|w| w.at)
        .collect();
    let cfg = UtpConfig::default();
    assert_eq!(times.len() as u32, 1 + cfg.max_retransmits);
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps[0], cfg.min_rto);
    for w in gaps.windows(2) {
        assert_eq!(w[1], 2 * w[0]);
    }
    assert!(p.now - t0 < Duration::from_secs(20));
    assert!(p.run_until(Duration::from_secs(1), |p| p.a.connections() == 0));
}

#[test]
fn connect_to_silence_fails_after_three_syns() {
    let mut p = pair(LinkModel::clean(10 * MS));
    p.drop = Some(Box::new(|_, _| true));
    let s = p.a.connect(p.now, B).unwrap();
    let t0 = p.now;
    assert!(p.run_until(Duration::from_secs(60), |p| !p.events_a.is_empty()));
    assert_eq!(
        p.events_a,
        vec![UtpEvent::Closed {
            stream: s,
            reason: CloseReason::ConnectTimedOut
        }]
    );
    let syns: Vec<Duration> = p.sent_by(Side::A).map(|w| w.at - t0).collect();
    assert_eq!(
        syns,
        vec![
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(3)
        ]
    );
    assert_eq!(p.now - t0, Duration::from_secs(7));
    assert_eq!(p.a.connections(), 0);
}

#[test]
fn abort_resets_the_peer() {
    let mut p = pair(LinkModel::clean(10 * MS));
    let s = p.a.connect(p.now, B).unwrap();
    p.a.write(p.now, s, Bytes::from_static(b"hi")).unwrap();
    assert!(p.run_until(Duration::from_secs(1), |p| !p.events_b.is_empty()));
    let UtpEvent::Incoming { stream: sb, .. } = p.events_b[0] else {
        panic!()
    };
    p.b.abort(p.now, sb).unwrap();
    assert_eq!(p.b.connections(), 0);
    assert!(p.run_until(Duration::from_secs(1), |p| matches!(
        p.events_a.last(),
        Some(UtpEvent::Closed { .. })
    )));
    assert_eq!(
        p.events_a.last(),
        Some(&UtpEvent::Closed {
            stream: s,
            reason: CloseReason::Reset
        })
    );
    assert_eq!(p.a.connections(), 0);
    assert_eq!(
        p.b.write(p.now, sb, Bytes::from_static(b"x")),
        Err(crate::utp::UtpError::UnknownStream)
    );
}

#[test]
fn idle_connections_keep_alive_and_half_open_ones_expire() {
    let mut p = pair(LinkModel::clean(10 * MS));
    let s = p.a.connect(p.now, B).unwrap();
    p.a.write(p.now, s, Bytes::from_static(b"hi")).unwrap();
    assert!(p.run_until(Duration::from_secs(1), |p| !p.events_b.is_empty()));
    let before = p.wire.len();
    let t0 = p.now;
    p.run_until(Duration::from_secs(100), |_| false);
    let states: Vec<Duration> = p.wire[before..]
        .iter()
        .filter(|w| w.from == Side::A)
        .map(|w| w.at - t0)
        .collect();
    // One ST_STATE from each side per 29 s of silence (A's first within 29 s of its last
    // packet, which was just before t0).
    assert!((3..=4).contains(&states.len()), "{states:?}");
    assert!(
        p.wire[before..]
            .iter()
            .all(|w| w.packet().header.ty == PacketType::State)
    );
    assert_eq!((p.a.connections(), p.b.connections()), (1, 1));

    // A SYN with nothing after it: gone after the half-open time-out, never reported.
    let mut b = UtpSocket::new(UtpConfig::default(), Rng::from_u64(1));
    let syn = packet::encode(
        &Header {
            ty: PacketType::Syn,
            conn_id: 7,
            timestamp_us: 1,
            timestamp_diff_us: 0,
            wnd_size: 0,
            seq_nr: Seq(1),
            ack_nr: Seq(0),
        },
        None,
        &[],
    );
    let t = Instant::from_nanos(5);
    assert!(b.handle_datagram(t, A, &syn));
    assert_eq!((b.connections(), b.half_open()), (1, 1));
    let ack = b.poll_transmit(t).unwrap();
    let h = Packet::decode(&ack.data).unwrap().header;
    assert_eq!((h.ty, h.conn_id, h.ack_nr), (PacketType::State, 7, Seq(1)));
    assert_eq!(b.poll_timeout(), Some(t + Duration::from_secs(10)));
    b.handle_timeout(t + Duration::from_secs(10));
    assert_eq!((b.connections(), b.half_open()), (0, 0));
    assert_eq!(b.poll_event(), None);
}

#[test]
fn ledbat_keeps_the_bottleneck_queue_near_the_target() {
    // 400 KB/s bottleneck, 10 ms each way: without delay control the queue would grow
    // without bound (the receiver's window is 1 MiB, 2.5 s of queue).
    let link = LinkModel {
        rate: Some(400_000),
        ..LinkModel::clean(10 * MS)
    };
    let mut p = pair(link);
    let da = data(8_000_000, 8);
    let s = p.a.connect(p.now, B).unwrap();
    let mut written = 0;
    let mut received = 0usize;
    let mut samples = Vec::new();
    let t0 = p.now;
    let mut next_sample = t0 + Duration::from_secs(5);
    while received < da.len() && p.now - t0 < Duration::from_secs(60) {
        let room = p.a.send_room(s);
        if room > 0 && written < da.len() {
            let n = room.min(da.len() - written);
            p.a.write(p.now, s, Bytes::copy_from_slice(&da[written..written + n]))
                .unwrap();
            written += n;
        }
        p.step();
        for e in p.events_b.drain(..) {
            if let UtpEvent::Data { data, .. } = e {
                received += data.len();
            }
        }
        p.events_a.clear();
        if p.now >= next_sample {
            samples.push((p.last_queue[0], p.a.stats(s).unwrap()));
            next_sample += Duration::from_millis(250);
        }
    }
    let secs = (p.now - t0).as_secs_f64();
    let rate = received as f64 / secs;
    let queue: Vec<f64> = samples
        .iter()
        .map(|(q, _)| q.as_secs_f64() * 1000.0)
        .collect();
    let mean = queue.iter().sum::<f64>() / queue.len() as f64;
    let max = queue.iter().copied().fold(0.0, f64::max);
    assert_eq!(received, da.len());
    // The link stays busy (goodput over 85 % of the rate, headers included in the rate)...
    assert!(rate > 0.85 * 400_000.0 * 1380.0 / 1400.0, "{rate:.0} B/s");
    // ... while the queue stays near the 100 ms target.
    assert!(
        (60.0..=140.0).contains(&mean),
        "mean queueing delay {mean:.1} ms; {queue:?}"
    );
    assert!(max < 250.0, "max queueing delay {max:.1} ms");
    let seen = samples.last().unwrap().1.queueing_delay.unwrap();
    assert!(seen > 40 * MS && seen < 200 * MS, "LEDBAT saw {seen:?}");
}

#[test]
fn closing_while_connecting_still_delivers_then_finishes_silently() {
    let mut p = pair(LinkModel::clean(10 * MS));
    let s = p.a.connect(p.now, B).unwrap();
    p.a.write(p.now, s, Bytes::from_static(b"last words"))
        .unwrap();
    p.a.close(p.now, s).unwrap();
    assert!(
        p.run_until(Duration::from_secs(10), |p| p.a.connections() == 0
            && p.b.connections() == 0)
    );
    assert!(p.events_a.is_empty(), "{:?}", p.events_a);
    let UtpEvent::Incoming { stream: sb, .. } = p.events_b[0] else {
        panic!("{:?}", p.events_b)
    };
    assert_eq!(
        &p.events_b[1..],
        &[
            UtpEvent::Data {
                stream: sb,
                data: Bytes::from_static(b"last words")
            },
            UtpEvent::Closed {
                stream: sb,
                reason: CloseReason::Finished
            }
        ]
    );
}
