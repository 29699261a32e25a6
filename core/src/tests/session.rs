//! Whole-session behaviour on the in-process swarm.

use super::harness::*;
use crate::api::Event;
use crate::config::{Config, TorrentOptions};
use crate::time::Duration;

fn small_torrent() -> (std::sync::Arc<crate::Metainfo>, Vec<u8>) {
    let files = [
        ("a.bin", 100_000u64),
        ("empty", 0),
        ("b c.bin", 300_001),
        ("d.bin", 17),
    ];
    let total: u64 = files.iter().map(|f| f.1).sum();
    let data = content(total as usize, 7);
    (metainfo("t", &files, 32768, &data), data)
}

#[test]
fn leecher_downloads_from_seeder() {
    let (meta, data) = small_torrent();
    let mut swarm = Swarm::new();
    let seed = swarm.add_seed(Config::default(), &meta, &data);
    let leech = swarm.add(
        Config::default(),
        &meta,
        MemDisk::empty(&meta),
        TorrentOptions {
            have: empty_have(&meta),
            seed: false,
            files: None,
            ..TorrentOptions::default()
        },
    );
    let seed_addr = swarm.addr(seed);
    swarm.add_peers(leech, &[seed_addr]);
    assert!(
        swarm.run_until(Duration::from_secs(60), |s| s.complete(leech)),
        "download did not complete"
    );
    assert_eq!(swarm.nodes[leech].disk.concat(), data);
    let stats = swarm.nodes[leech]
        .session
        .stats(swarm.nodes[leech].torrent)
        .unwrap();
    assert_eq!(
        stats.downloaded,
        data.len() as u64,
        "no byte downloaded twice"
    );
    let up = swarm.nodes[seed]
        .session
        .stats(swarm.nodes[seed].torrent)
        .unwrap();
    assert_eq!(up.uploaded, data.len() as u64);
}

#[test]
fn seeder_check_finds_every_piece() {
    let (meta, data) = small_torrent();
    let mut swarm = Swarm::new();
    let seed = swarm.add_seed(Config::default(), &meta, &data);
    assert!(swarm.run_until(Duration::from_secs(5), |s| s.complete(seed)));
    let n = meta.num_pieces();
    assert!(swarm.nodes[seed].events.contains(&Event::Checked {
        torrent: swarm.nodes[seed].torrent,
        have: n,
        total: n
    }));
}

#[test]
fn corrupt_seeder_is_banned_and_download_completes() {
    let (meta, data) = small_torrent();
    let mut swarm = Swarm::new();
    let honest = swarm.add_seed(Config::default(), &meta, &data);
    let liar = swarm.add_seed(Config::default(), &meta, &data);
    swarm.nodes[liar].corrupt = Some(Box::new(|_piece, bytes: &mut Vec<u8>| {
        for b in bytes.iter_mut().step_by(1000) {
            *b ^= 0xff;
        }
    }));
    let leech = swarm.add(
        Config::default(),
        &meta,
        MemDisk::empty(&meta),
        TorrentOptions {
            have: empty_have(&meta),
            seed: false,
            files: None,
            ..TorrentOptions::default()
        },
    );
    let peers = [swarm.addr(liar), swarm.addr(honest)];
    swarm.add_peers(leech, &peers);
    assert!(
        swarm.run_until(Duration::from_secs(120), |s| s.complete(leech)),
        "download did not complete"
    );
    assert_eq!(swarm.nodes[leech].disk.concat(), data);
    let events = &swarm.nodes[leech].events;
    assert!(events.iter().any(|e| matches!(e, Event::HashFailed { .. })));
    let liar_addr = swarm.addr(liar);
    assert!(
        events.iter().any(|e| matches!(e, Event::PeerClosed { addr, reason, .. } if *addr == liar_addr && reason.to_string().contains("banned"))),
        "liar not banned: {:?}",
        events.iter().filter(|e| matches!(e, Event::PeerClosed { .. })).collect::<Vec<_>>()
    );
    let honest_addr = swarm.addr(honest);
    assert!(!events.iter().any(|e| matches!(e, Event::PeerClosed { addr, reason, .. } if *addr == honest_addr && reason.to_string().contains("banned"))));
}

#[test]
fn connection_to_ourselves_is_dropped_and_not_retried() {
    let (meta, data) = small_torrent();
    let mut swarm = Swarm::new();
    let seed = swarm.add_seed(Config::default(), &meta, &data);
    let own = swarm.addr(seed);
    swarm.add_peers(seed, &[own]);
    swarm.run_until(Duration::from_secs(30), |_| false);
    let closes: Vec<_> = swarm.nodes[seed]
        .events
        .iter()
        .filter(|e| matches!(e, Event::PeerClosed { reason, .. } if reason.to_string().contains("ourselves")))
        .collect();
    // Both ends of the one connection see it; no redial after.
    assert_eq!(closes.len(), 2, "{closes:?}");
}

#[test]
fn three_leechers_share_pieces() {
    let (meta, data) = small_torrent();
    let mut swarm = Swarm::new();
    let seed = swarm.add_seed(Config::default(), &meta, &data);
    let mut leeches = Vec::new();
    for _ in 0..3 {
        leeches.push(swarm.add(
            Config::default(),
            &meta,
            MemDisk::empty(&meta),
            TorrentOptions {
                have: empty_have(&meta),
                seed: true,
                files: None,
                ..TorrentOptions::default()
            },
        ));
    }
    let all: Vec<_> = (0..4).map(|i| swarm.addr(i)).collect();
    for &l in &leeches {
        swarm.add_peers(l, &all);
    }
    assert!(swarm.run_until(Duration::from_secs(120), |s| {
        leeches.iter().all(|&l| s.complete(l))
    }));
    for &l in &leeches {
        assert_eq!(swarm.nodes[l].disk.concat(), data);
    }
    let _ = seed;
}

#[test]
fn file_selection_fetches_its_pieces_and_offers_only_whole_ones() {
    let (meta, data) = small_torrent();
    let mut swarm = Swarm::new();
    let seed = swarm.add_seed(Config::default(), &meta, &data);
    // Only "b c.bin": bytes 100_000..400_001, pieces 3..=12; pieces 3 and 12 also hold
    // bytes of other files.
    let files = Some(vec![false, false, true, false]);
    let leech = swarm.add(
        Config::default(),
        &meta,
        MemDisk::empty(&meta),
        TorrentOptions {
            have: empty_have(&meta),
            seed: true,
            files,
            ..TorrentOptions::default()
        },
    );
    swarm.add_peers(leech, &[swarm.addr(seed)]);
    assert!(swarm.run_until(Duration::from_secs(60), |s| s.complete(leech)));
    let have: Vec<usize> = swarm.nodes[leech]
        .session
        .have(swarm.nodes[leech].torrent)
        .unwrap()
        .ones()
        .collect();
    assert_eq!(have, (3..=12).collect::<Vec<_>>());
    assert_eq!(
        &swarm.nodes[leech].disk.concat()[100_000..400_001],
        &data[100_000..400_001]
    );

    // A newcomer that only knows the leecher sees the eight pieces inside the file.
    let newcomer = swarm.add(
        Config::default(),
        &meta,
        MemDisk::empty(&meta),
        TorrentOptions {
            have: empty_have(&meta),
            seed: false,
            files: None,
            ..TorrentOptions::default()
        },
    );
    swarm.add_peers(newcomer, &[swarm.addr(leech)]);
    let leech_addr = swarm.addr(leech);
    let seen = |s: &Swarm| {
        s.nodes[newcomer]
            .session
            .peers(s.nodes[newcomer].torrent)
            .iter()
            .find(|p| p.addr == leech_addr && p.active)
            .map(|p| p.pieces)
    };
    swarm.run_until(Duration::from_secs(5), |s| seen(s).is_some());
    assert_eq!(seen(&swarm), Some(8));
}

#[test]
fn smart_ban_names_the_peer_whose_block_was_corrupt() {
    // Two seeders serve every piece between them; one flips a byte in the second block of
    // each chunk it reads, so every failed piece has both as sources and no strike count
    // alone could tell them apart (the limit is set out of reach).
    let (meta, data) = small_torrent();
    let config = Config {
        max_hash_failures: 1000,
        ..Config::default()
    };
    let mut swarm = Swarm::new();
    let honest = swarm.add(config.clone(), &meta, MemDisk::full(&meta, &data), seeder());
    let liar = swarm.add(config.clone(), &meta, MemDisk::full(&meta, &data), seeder());
    swarm.nodes[liar].corrupt = Some(Box::new(|_piece, bytes: &mut Vec<u8>| {
        if let Some(b) = bytes.get_mut(16384 + 7) {
            *b ^= 0x55;
        }
    }));
    let leech = swarm.add(
        config,
        &meta,
        MemDisk::empty(&meta),
        TorrentOptions {
            have: empty_have(&meta),
            seed: false,
            files: None,
            ..TorrentOptions::default()
        },
    );
    let peers = [swarm.addr(liar), swarm.addr(honest)];
    swarm.add_peers(leech, &peers);
    assert!(
        swarm.run_until(Duration::from_secs(120), |s| s.complete(leech)),
        "download did not complete"
    );
    assert_eq!(swarm.nodes[leech].disk.concat(), data);
    let events = &swarm.nodes[leech].events;
    assert!(events.iter().any(|e| matches!(e, Event::HashFailed { .. })));
    let liar_addr = swarm.addr(liar);
    let honest_addr = swarm.addr(honest);
    let closes: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::PeerClosed { addr, reason, .. } => Some((*addr, reason.clone())),
            _ => None,
        })
        .collect();
    assert!(
        closes
            .iter()
            .any(|(a, r)| *a == liar_addr && matches!(r, crate::api::CloseReason::CorruptBlock(_))),
        "liar not banned by smart ban: {closes:?}"
    );
    assert!(
        !closes
            .iter()
            .any(|(a, r)| *a == honest_addr && r.to_string().contains("banned")),
        "honest peer banned: {closes:?}"
    );
}
