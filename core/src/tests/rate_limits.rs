//! Rate limits on the wire: what a session sends under `max_upload_rate` and requests under
//! `max_download_rate`, decoded from its `Send` actions and counted per simulated second.

use std::collections::BTreeMap;

use super::harness::*;
use crate::config::{Config, TorrentOptions};
use crate::id::ConnId;
use crate::time::Duration;
use crate::wire::Message;

/// One torrent of `len` bytes in 32 KiB pieces.
fn torrent(len: usize) -> (std::sync::Arc<crate::Metainfo>, Vec<u8>) {
    let data = content(len, 11);
    (metainfo("r", &[("r.bin", len as u64)], 32768, &data), data)
}

fn leecher(meta: &crate::Metainfo) -> TorrentOptions {
    TorrentOptions {
        have: empty_have(meta),
        ..TorrentOptions::default()
    }
}

/// Payload bytes of `piece` messages per whole second of simulated time, per connection.
fn piece_bytes_per_second(node: &Node) -> BTreeMap<(u64, ConnId), u64> {
    let mut per = BTreeMap::new();
    for (at, conn, m) in decoded_sends(node) {
        if let Message::Piece { data, .. } = m {
            *per.entry((at.as_nanos() / 1_000_000_000, conn))
                .or_default() += data.len() as u64;
        }
    }
    per
}

/// Bytes asked for by `request` messages per whole second of simulated time.
fn requested_bytes_per_second(node: &Node) -> BTreeMap<u64, u64> {
    let mut per = BTreeMap::new();
    for (at, _, m) in decoded_sends(node) {
        if let Message::Request(r) = m {
            *per.entry(at.as_nanos() / 1_000_000_000).or_default() += u64::from(r.len);
        }
    }
    per
}

/// The first second in which any block went out.
fn first_second<V>(per: &BTreeMap<u64, V>) -> u64 {
    per.keys().next().copied().expect("some traffic")
}

fn second_totals(per: &BTreeMap<(u64, ConnId), u64>) -> BTreeMap<u64, u64> {
    let mut totals = BTreeMap::new();
    for ((s, _), b) in per {
        *totals.entry(*s).or_default() += b;
    }
    totals
}

#[test]
fn the_upload_limit_holds_every_second_on_the_wire() {
    const RATE: u64 = 1_000_000;
    let (meta, data) = torrent(16 << 20);
    let mut swarm = Swarm::new();
    let seed = swarm.add(
        Config {
            max_upload_rate: Some(RATE),
            ..Config::default()
        },
        &meta,
        MemDisk::full(&meta, &data),
        seeder(),
    );
    swarm.nodes[seed].record_sends = true;
    let leech = swarm.add(
        Config::default(),
        &meta,
        MemDisk::empty(&meta),
        leecher(&meta),
    );
    let addr = swarm.addr(seed);
    swarm.add_peers(leech, &[addr]);
    // Unlimited, 16 MiB would go in an instant; at 1 MB/s it takes 17 s.
    assert!(!swarm.run_until(Duration::from_secs(13), |s| s.complete(leech)));
    let totals = second_totals(&piece_bytes_per_second(&swarm.nodes[seed]));
    // The ten whole seconds after the one the transfer started in.
    let s0 = first_second(&totals);
    for s in s0 + 1..=s0 + 10 {
        let got = totals.get(&s).copied().unwrap_or(0);
        let lo = RATE * 95 / 100;
        let hi = RATE * 105 / 100;
        assert!(
            (lo..=hi).contains(&got),
            "second {s}: {got} bytes of blocks, limit {RATE}/s: {totals:?}"
        );
    }
    let sum: u64 = (s0 + 1..=s0 + 10)
        .map(|s| totals.get(&s).copied().unwrap_or(0))
        .sum();
    assert!(
        sum.abs_diff(10 * RATE) <= 10 * RATE / 100,
        "10 s sent {sum}, limit {RATE}/s"
    );
    // And it does complete, the data intact.
    assert!(swarm.run_until(Duration::from_secs(10), |s| s.complete(leech)));
    assert_eq!(swarm.nodes[leech].disk.concat(), data);
}

#[test]
fn the_upload_limit_is_shared_fairly_between_peers() {
    const RATE: u64 = 1_000_000;
    let (meta, data) = torrent(16 << 20);
    let mut swarm = Swarm::new();
    let seed = swarm.add(
        Config {
            max_upload_rate: Some(RATE),
            ..Config::default()
        },
        &meta,
        MemDisk::full(&meta, &data),
        seeder(),
    );
    swarm.nodes[seed].record_sends = true;
    let addr = swarm.addr(seed);
    let mut leechers = Vec::new();
    for _ in 0..3 {
        // Leechers that do not upload to each other: only the seed's blocks count.
        let l = swarm.add(
            Config {
                unchoke_slots: 0,
                optimistic_unchoke: false,
                ..Config::default()
            },
            &meta,
            MemDisk::empty(&meta),
            leecher(&meta),
        );
        swarm.add_peers(l, &[addr]);
        leechers.push(l);
    }
    assert!(!swarm.run_until(Duration::from_secs(13), |s| s.complete(leechers[0])));
    let per = piece_bytes_per_second(&swarm.nodes[seed]);
    let s0 = first_second(&second_totals(&per));
    let mut by_conn: BTreeMap<ConnId, u64> = BTreeMap::new();
    for ((s, conn), b) in &per {
        if (s0 + 1..=s0 + 10).contains(s) {
            *by_conn.entry(*conn).or_default() += b;
        }
    }
    assert_eq!(by_conn.len(), 3, "every leecher is served: {by_conn:?}");
    let total: u64 = by_conn.values().sum();
    assert!(
        total.abs_diff(10 * RATE) <= 10 * RATE / 100,
        "10 s sent {total}, limit {RATE}/s"
    );
    for (conn, b) in &by_conn {
        assert!(
            b.abs_diff(total / 3) <= total / 3 / 20,
            "{conn}: {b} of {total}: not a fair share ({by_conn:?})"
        );
    }
}

#[test]
fn the_download_limit_paces_requests_and_what_arrives() {
    const RATE: u64 = 1_000_000;
    let (meta, data) = torrent(16 << 20);
    let mut swarm = Swarm::new();
    let seed = swarm.add_seed(Config::default(), &meta, &data);
    swarm.nodes[seed].record_sends = true;
    let leech = swarm.add(
        Config {
            max_download_rate: Some(RATE),
            ..Config::default()
        },
        &meta,
        MemDisk::empty(&meta),
        leecher(&meta),
    );
    swarm.nodes[leech].record_sends = true;
    let addr = swarm.addr(seed);
    swarm.add_peers(leech, &[addr]);
    assert!(!swarm.run_until(Duration::from_secs(13), |s| s.complete(leech)));
    let asked = requested_bytes_per_second(&swarm.nodes[leech]);
    let got = second_totals(&piece_bytes_per_second(&swarm.nodes[seed]));
    let s0 = first_second(&asked);
    for s in s0 + 1..=s0 + 10 {
        let a = asked.get(&s).copied().unwrap_or(0);
        let g = got.get(&s).copied().unwrap_or(0);
        for (what, n) in [("requested", a), ("received", g)] {
            assert!(
                n.abs_diff(RATE) <= RATE / 20,
                "second {s}: {n} bytes {what}, limit {RATE}/s"
            );
        }
    }
    assert!(swarm.run_until(Duration::from_secs(10), |s| s.complete(leech)));
    assert_eq!(swarm.nodes[leech].disk.concat(), data);
}
