//! Piece order on the wire: what a `sequential` and `first_last` leecher asks a seeder for,
//! decoded from its requests, and the order its pieces are verified in.

use super::harness::*;
use crate::api::Event;
use crate::config::{Config, TorrentOptions};
use crate::time::Duration;
use crate::wire::Message;

/// The pieces `node` requested, in the order of their first request.
fn requested_pieces(node: &Node) -> Vec<u32> {
    let mut order = Vec::new();
    for (_, _, m) in decoded_sends(node) {
        if let Message::Request(r) = m
            && !order.contains(&r.piece)
        {
            order.push(r.piece);
        }
    }
    order
}

fn verified_pieces(node: &Node) -> Vec<u32> {
    node.events
        .iter()
        .filter_map(|e| match e {
            Event::PieceVerified { piece, .. } => Some(*piece),
            _ => None,
        })
        .collect()
}

#[test]
fn first_last_then_in_order_from_one_seeder() {
    // Three files over 40 pieces of 32 KiB: [0, 400 000), [400 000, 900 000),
    // [900 000, 1 310 720).
    let files = [("a", 400_000u64), ("b", 500_000), ("c", 410_720)];
    let total: u64 = files.iter().map(|f| f.1).sum();
    let data = content(total as usize, 21);
    let meta = metainfo("o", &files, 32768, &data);
    let mut swarm = Swarm::new();
    let seed = swarm.add_seed(Config::default(), &meta, &data);
    let leech = swarm.add(
        Config::default(),
        &meta,
        MemDisk::empty(&meta),
        TorrentOptions {
            have: empty_have(&meta),
            sequential: true,
            first_last: true,
            ..TorrentOptions::default()
        },
    );
    swarm.nodes[leech].record_sends = true;
    let addr = swarm.addr(seed);
    swarm.add_peers(leech, &[addr]);
    assert!(swarm.run_until(Duration::from_secs(60), |s| s.complete(leech)));
    assert_eq!(swarm.nodes[leech].disk.concat(), data);
    let order = requested_pieces(&swarm.nodes[leech]);
    assert_eq!(order.len(), 40, "every piece requested: {order:?}");
    // File ends: a is pieces 0..=12, b 12..=27, c 27..=39.
    assert_eq!(order[..5], [0, 12, 27, 39, 1], "{order:?}");
    // After the ends, strictly in order.
    let rest: Vec<u32> = order[4..].to_vec();
    let mut sorted = rest.clone();
    sorted.sort_unstable();
    assert_eq!(rest, sorted, "in order after the file ends: {order:?}");
}

#[test]
fn sequential_verifies_a_prefix_of_the_file_first() {
    let data = content(2 << 20, 5);
    let meta = metainfo("s", &[("s.bin", data.len() as u64)], 32768, &data);
    let mut swarm = Swarm::new();
    let seed = swarm.add(
        Config {
            // Slow, so that many requests are in flight at once: order is the picker's.
            max_upload_rate: Some(500_000),
            ..Config::default()
        },
        &meta,
        MemDisk::full(&meta, &data),
        seeder(),
    );
    let leech = swarm.add(
        Config::default(),
        &meta,
        MemDisk::empty(&meta),
        TorrentOptions {
            have: empty_have(&meta),
            sequential: true,
            ..TorrentOptions::default()
        },
    );
    let addr = swarm.addr(seed);
    swarm.add_peers(leech, &[addr]);
    assert!(swarm.run_until(Duration::from_secs(60), |s| s.complete(leech)));
    let verified = verified_pieces(&swarm.nodes[leech]);
    let n = meta.num_pieces();
    assert_eq!(verified.len() as u32, n);
    // At every point in the first half, what is verified is a prefix of the file, give
    // or take the look-ahead window.
    let window = match crate::picker::Strategy::streaming(32768) {
        crate::picker::Strategy::Streaming { window } => window,
        _ => unreachable!(),
    };
    let mut have = vec![false; n as usize];
    for (i, &piece) in verified[..n as usize / 2].iter().enumerate() {
        have[piece as usize] = true;
        let prefix = have.iter().take_while(|&&h| h).count() as u32;
        assert!(
            piece < prefix + window,
            "piece {piece} verified {i}th, the prefix is {prefix} pieces: {verified:?}"
        );
    }
    // And against rarest first, whose order is scattered.
    let mut swarm = Swarm::new();
    let seed = swarm.add_seed(Config::default(), &meta, &data);
    let leech = swarm.add(
        Config::default(),
        &meta,
        MemDisk::empty(&meta),
        TorrentOptions {
            have: empty_have(&meta),
            ..TorrentOptions::default()
        },
    );
    let addr = swarm.addr(seed);
    swarm.add_peers(leech, &[addr]);
    assert!(swarm.run_until(Duration::from_secs(60), |s| s.complete(leech)));
    let rarest = verified_pieces(&swarm.nodes[leech]);
    assert!(
        rarest[..n as usize / 2].iter().any(|&p| p >= n / 2),
        "rarest first is not in order: {rarest:?}"
    );
}
