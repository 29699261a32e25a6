//! Path MTU discovery on the wire: a link that drops every datagram above a size, as a
//! router that may not fragment does, without telling anyone.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;

use super::link::{B, LinkModel, Pair, Side, Wire};
use crate::rng::Rng;
use crate::utp::mtu::{BLACK_HOLE_TIMEOUTS, DONE, PROBE_ATTEMPTS};
use crate::utp::packet::PacketType;
use crate::utp::{StreamId, UtpConfig, UtpEvent};

const MS: Duration = Duration::from_millis(1);

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::from_u64(seed).fill(&mut v);
    v
}

fn link(mtu: usize) -> LinkModel {
    LinkModel {
        mtu,
        ..LinkModel::clean(10 * MS)
    }
}

/// A connected pair with A's stream and B's.
fn connected(link: LinkModel) -> (Pair, StreamId, StreamId) {
    let mut p = Pair::new(UtpConfig::default(), UtpConfig::default(), link, 11);
    let sa = p.a.connect(p.now, B).unwrap();
    p.a.write(p.now, sa, Bytes::from_static(b"hi")).unwrap();
    assert!(p.run_until(Duration::from_secs(2), |p| {
        p.events_b
            .iter()
            .any(|e| matches!(e, UtpEvent::Incoming { .. }))
    }));
    let sb = match p.events_b[0] {
        UtpEvent::Incoming { stream, .. } => stream,
        ref e => panic!("{e:?}"),
    };
    (p, sa, sb)
}

/// What B has received on `sb`.
fn received(p: &Pair, sb: StreamId) -> Vec<u8> {
    let mut got = Vec::new();
    for e in &p.events_b {
        if let UtpEvent::Data { stream, data } = e
            && *stream == sb
        {
            got.extend_from_slice(data);
        }
    }
    got
}

/// Sends `bytes` from A as the send buffer allows, stepping the link, until B has `total`
/// bytes or `limit` passes; `each` runs after every step.
fn push(
    p: &mut Pair,
    sa: StreamId,
    sb: StreamId,
    bytes: &[u8],
    total: usize,
    limit: Duration,
    mut each: impl FnMut(&mut Pair),
) -> bool {
    let end = p.now + limit;
    let mut written = 0;
    while p.now < end {
        while written < bytes.len() {
            let room = p.a.send_room(sa);
            if room == 0 {
                break;
            }
            let n = room.min(bytes.len() - written).min(50_000);
            let now = p.now;
            let took =
                p.a.write(
                    now,
                    sa,
                    Bytes::copy_from_slice(&bytes[written..written + n]),
                )
                .unwrap();
            written += took;
        }
        if received(p, sb).len() >= total {
            return true;
        }
        if !p.step() {
            return false;
        }
        each(p);
    }
    false
}

fn padded(w: &&Wire) -> bool {
    w.packet().skipped_extensions > 0
}

#[test]
fn the_search_settles_on_the_largest_size_the_path_carries_without_cutting_the_window() {
    let path = 1400;
    let (mut p, sa, sb) = connected(link(path));
    let body = data(3 << 20, 1);
    let mut cwnd = p.a.stats(sa).unwrap().cwnd;
    let mut shrank = false;
    assert!(push(
        &mut p,
        sa,
        sb,
        &body,
        2 + body.len(),
        Duration::from_secs(60),
        |p| {
            let now = p.a.stats(sa).unwrap().cwnd;
            shrank |= now < cwnd;
            cwnd = now;
        }
    ));
    assert!(received(&p, sb)[2..] == body[..], "the stream differs");

    // The probes, in order: the ceiling first (lost, and lost again: a single loss does
    // not move the ceiling), then halving toward the path's size.
    let probes: Vec<(u16, usize, bool)> = p
        .sent_by(Side::A)
        .filter(padded)
        .map(|w| (w.packet().header.seq_nr.0, w.data.len(), w.delivered))
        .collect();
    let mut sizes: Vec<usize> = probes.iter().map(|&(_, len, _)| len).collect();
    sizes.dedup();
    assert_eq!(
        sizes,
        vec![1472, 1352, 1412, 1382, 1397, 1404],
        "{probes:?}"
    );
    for &(_, len, delivered) in &probes {
        assert_eq!(delivered, len <= path, "{len}");
    }
    for lost in [1472, 1412, 1404] {
        let n = probes.iter().filter(|&&(_, len, _)| len == lost).count();
        assert_eq!(n as u32, PROBE_ATTEMPTS, "probes of {lost} bytes");
    }
    let stats = p.a.stats(sa).unwrap();
    assert!(
        (path - DONE..=path).contains(&stats.packet_size),
        "{}",
        stats.packet_size
    );
    // Full packets are the floor's size once it is found; nothing but a probe was ever
    // larger than the path, and nothing but a lost probe was resent, unpadded.
    let full = p
        .sent_by(Side::A)
        .filter(|w| !padded(w) && w.packet().header.ty == PacketType::Data)
        .map(|w| w.data.len())
        .max();
    assert_eq!(full, Some(stats.packet_size));
    let lost_probes: BTreeSet<u16> = probes
        .iter()
        .filter(|&&(_, _, delivered)| !delivered)
        .map(|&(seq, _, _)| seq)
        .collect();
    let mut seen = BTreeSet::new();
    let resent: BTreeSet<u16> = p
        .sent_by(Side::A)
        .map(|w| w.packet().header)
        .filter(|h| h.ty == PacketType::Data && !seen.insert(h.seq_nr.0))
        .map(|h| h.seq_nr.0)
        .collect();
    assert_eq!(resent, lost_probes);
    assert!(
        p.sent_by(Side::A)
            .filter(|w| !padded(w))
            .all(|w| w.data.len() <= path)
    );
    // A lost probe is not congestion: the window never came down.
    assert!(!shrank, "the congestion window was cut");
    assert_eq!(stats.timeouts, 0);
}

#[test]
fn an_ordinary_loss_does_cut_the_window() {
    // The same transfer with one ordinary data packet lost: the check above has teeth.
    let (mut p, sa, sb) = connected(link(1472));
    let mut dropped = false;
    p.drop = Some(Box::new(move |side, pkt| {
        let drop = !dropped
            && side == Side::A
            && pkt.header.ty == PacketType::Data
            && pkt.skipped_extensions == 0
            && pkt.payload.len() > 1000
            && pkt.header.seq_nr.0 % 50 == 0;
        dropped |= drop;
        drop
    }));
    let body = data(3 << 20, 2);
    let mut cwnd = p.a.stats(sa).unwrap().cwnd;
    let mut shrank = false;
    assert!(push(
        &mut p,
        sa,
        sb,
        &body,
        2 + body.len(),
        Duration::from_secs(60),
        |p| {
            let now = p.a.stats(sa).unwrap().cwnd;
            shrank |= now < cwnd;
            cwnd = now;
        }
    ));
    assert!(received(&p, sb)[2..] == body[..]);
    assert!(shrank, "a lost data packet halves the window");
}

#[test]
fn a_black_hole_shrinks_the_packets_after_repeated_timeouts() {
    let (mut p, sa, sb) = connected(link(1472));
    let first = data(1 << 20, 3);
    assert!(push(
        &mut p,
        sa,
        sb,
        &first,
        2 + first.len(),
        Duration::from_secs(30),
        |_| {}
    ));
    assert!(
        p.run_until(Duration::from_secs(2), |p| p.a.stats(sa).unwrap().in_flight
            == 0)
    );
    assert_eq!(p.a.stats(sa).unwrap().packet_size, 1472);

    // The route changes: 1,300 bytes at most, and nobody says so.
    p.link.mtu = 1300;
    let before = p.wire.len();
    let second = data(1 << 20, 4);
    let total = 2 + first.len() + second.len();
    let mut shrunk_after = None;
    let mut until = None;
    push(
        &mut p,
        sa,
        sb,
        &second,
        total,
        Duration::from_secs(20),
        |p| {
            let s =
                p.a.stats(sa)
                    .expect("the connection lives through the black hole");
            if shrunk_after.is_none() && s.packet_size < 1472 {
                shrunk_after = Some((s.timeouts, s.packet_size));
                until = Some(p.now + Duration::from_secs(2));
            }
            // Two more seconds of black hole, then the path comes back.
            if until.is_some_and(|t| p.now >= t) {
                p.link.mtu = 1472;
            }
        },
    );
    // Not after one timeout (a burst of loss looks the same), but after two in a row.
    assert_eq!(
        shrunk_after,
        Some((u64::from(BLACK_HOLE_TIMEOUTS), 1232)),
        "{:?}",
        p.a.stats(sa)
    );
    // Packets already sent keep their size (their payload is bound to their sequence
    // number); the path comes back and they get through, and everything written after
    // the shrink went smaller.
    assert_eq!(p.link.mtu, 1472, "the path came back");
    let old: BTreeSet<u16> = p.wire[..before]
        .iter()
        .filter(|w| w.from == Side::A)
        .map(|w| w.packet().header.seq_nr.0)
        .collect();
    let big_before_shrink: BTreeSet<u16> = p.wire[before..]
        .iter()
        .filter(|w| w.from == Side::A && w.data.len() == 1472 && !padded(w))
        .map(|w| w.packet().header.seq_nr.0)
        .collect();
    assert!(push(
        &mut p,
        sa,
        sb,
        &[],
        total,
        Duration::from_secs(120),
        |_| {}
    ));
    assert!(received(&p, sb)[2 + first.len()..] == second[..]);
    let big_later: BTreeSet<u16> = p.wire[before..]
        .iter()
        .filter(|w| w.from == Side::A && w.data.len() >= 1472 && !padded(w))
        .map(|w| w.packet().header.seq_nr.0)
        .filter(|s| !old.contains(s))
        .collect();
    assert!(
        big_later.is_subset(&big_before_shrink),
        "full-size packets first sent after the shrink: {:?}",
        big_later.difference(&big_before_shrink).collect::<Vec<_>>()
    );
    let s = p.a.stats(sa).unwrap_or_else(|| panic!("{:?}", p.events_a));
    assert!(
        s.packet_size < 1472 && s.packet_size >= 1472 - 1 - DONE,
        "{s:?}"
    );
}
