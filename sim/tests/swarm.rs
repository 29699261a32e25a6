//! Whole-swarm tests: determinism, real payloads, faults and each adversary.
//!
//! Seeds come from `TESSERA_SIM_SEED` when set (so a failure seen elsewhere replays here),
//! else fixed ones. Every assertion message carries the seed.

use tessera_sim::{Adversary, Faults, Mode, Report, Scenario, run};

fn seed(default: u64) -> u64 {
    std::env::var("TESSERA_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn small(seed: u64) -> Scenario {
    let mut sc = Scenario::new(seed);
    sc.peers = 8;
    sc.size = 1 << 20;
    sc.piece_size = 64 << 10;
    // Slow links, so that the download lasts long enough for faults and adversaries.
    sc.up_min = 64.0 * 1024.0;
    sc.up_max = 256.0 * 1024.0;
    sc.seeder_up = 256.0 * 1024.0;
    sc
}

fn assert_ok(r: &Report) {
    assert!(
        r.ok(),
        "seed {} failed (replay: TESSERA_SIM_SEED={}):\n{}",
        r.seed,
        r.seed,
        r.text()
    );
}

#[test]
fn same_seed_same_trace_different_seed_different_trace() {
    let s = seed(11);
    let mut sc = small(s);
    sc.faults = Faults::churn(8);
    let a = run(sc.clone());
    let b = run(sc.clone());
    assert_ok(&a);
    assert_eq!(
        a.trace_hash, b.trace_hash,
        "seed {s}: same seed, different trace"
    );
    assert_eq!(a.events, b.events, "seed {s}");
    assert_eq!(a.sim_seconds, b.sim_seconds, "seed {s}");
    sc.seed = s + 1;
    let c = run(sc);
    assert_ne!(
        a.trace_hash,
        c.trace_hash,
        "seeds {s} and {} gave one trace",
        s + 1
    );
}

#[test]
fn real_payload_swarm_completes_with_correct_data() {
    let mut sc = small(seed(3));
    sc.mode = Mode::Real;
    sc.peers = 6;
    sc.size = 1_000_000; // not a multiple of the piece size: a short last piece
    let r = run(sc);
    assert_ok(&r);
    assert_eq!(r.completed, 6);
    // Every piece every leecher verified was checked against the source on its disk (the
    // invariant), and SHA-1 was real: no piece failed.
    assert_eq!(r.hash_failures, 0, "{}", r.text());
    assert_eq!(r.mode, "real");
}

#[test]
fn churn_and_network_faults_heal_and_everyone_completes() {
    for s in [seed(5), seed(5) + 100] {
        let mut sc = small(s);
        sc.peers = 10;
        sc.faults = Faults {
            churn_leaves: 3,
            churn_joins: 2,
            resets: 6,
            partitions: 2,
            stalls: 2,
            bandwidth_changes: true,
            ..Faults::none()
        };
        sc.fault_window = tessera_core::Duration::from_secs(30);
        let r = run(sc);
        assert_ok(&r);
        assert_eq!(r.completed, 12, "{}", r.text());
    }
}

#[test]
fn disk_errors_restart_the_node_and_it_still_completes() {
    let mut sc = small(seed(8));
    sc.mode = Mode::Real;
    sc.faults = Faults {
        disk_faulty: 3,
        disk_error_rate: 0.2,
        ..Faults::none()
    };
    sc.fault_window = tessera_core::Duration::from_secs(10);
    let r = run(sc);
    assert_ok(&r);
    assert!(
        r.disk_errors > 0,
        "no disk error was injected:\n{}",
        r.text()
    );
}

/// A small swarm with one adversary of `kind`.
fn with_adversary(kind: Adversary, s: u64, count: u32) -> Report {
    let mut sc = small(s);
    sc.peers = 8;
    sc.adversaries = vec![(kind, count)];
    let r = run(sc);
    assert_ok(&r);
    r
}

#[test]
fn corrupt_uploader_is_banned() {
    let r = with_adversary(Adversary::Corrupt, seed(21), 2);
    assert!(r.hash_failures > 0, "{}", r.text());
    assert!(r.closes_of("corrupt", "banned") > 0, "{}", r.text());
}

#[test]
fn liar_sending_garbage_is_banned() {
    let r = with_adversary(Adversary::LiarGarbage, seed(22), 1);
    assert!(r.closes_of("liar-garbage", "banned") > 0, "{}", r.text());
}

#[test]
fn silent_liar_does_not_stop_the_swarm() {
    // It claims everything and never answers: requests time out and go elsewhere.
    let r = with_adversary(Adversary::LiarSilent, seed(23), 2);
    assert!(
        r.adversary_connections
            .iter()
            .any(|(a, n)| a == "liar-silent" && *n > 0),
        "the liar never got a connection:\n{}",
        r.text()
    );
}

#[test]
fn garbage_sender_is_closed() {
    let r = with_adversary(Adversary::Garbage, seed(24), 1);
    assert!(r.closes_of("garbage", "protocol error") > 0, "{}", r.text());
}

#[test]
fn oversized_length_prefix_is_closed() {
    let r = with_adversary(Adversary::Oversized, seed(25), 1);
    assert!(
        r.closes_of("oversized", "protocol error") > 0,
        "{}",
        r.text()
    );
}

#[test]
fn request_flood_is_closed() {
    let r = with_adversary(Adversary::Flood, seed(26), 1);
    let closed = r.closes_of("flood", "requests queued") + r.closes_of("flood", "too many invalid");
    assert!(closed > 0, "{}", r.text());
}

#[test]
fn free_riders_complete_thanks_to_seeds_and_optimistic_unchokes() {
    let mut sc = small(seed(31));
    sc.free_riders = 3;
    let r = run(sc);
    assert_ok(&r);
    assert_eq!(r.class("free-rider").map(|c| c.times.len()), Some(3));
}

#[test]
fn sequential_picker_and_no_endgame_complete() {
    let mut sc = small(seed(41));
    sc.strategy = tessera_core::picker::Strategy::Sequential;
    sc.endgame = false;
    let r = run(sc);
    assert_ok(&r);
}

/// Stopping before the liveness bound fails the run (not everyone completed) without
/// claiming a liveness violation: the bound had not passed.
#[test]
fn a_run_cut_short_fails_without_blaming_liveness() {
    let mut sc = small(seed(51));
    sc.time_limit = Some(tessera_core::Duration::from_secs(2));
    let r = run(sc);
    assert!(!r.ok(), "{}", r.text());
    assert!(r.completed < r.honest, "{}", r.text());
    assert!(r.liveness_bound > 2.0);
    assert_eq!(r.liveness_violations, 0, "{}", r.text());
}

#[test]
fn a_seeder_leaving_too_early_loses_pieces_and_the_run_says_so() {
    let mut sc = small(seed(52));
    sc.seeder_leaves_after = Some(0.5);
    let r = run(sc);
    assert!(r.stuck, "{}", r.text());
    assert!(r.pieces_lost > 0, "{}", r.text());
    assert!(!r.ok());
    assert!(r.seeder_left_at.is_some());
}

/// `--magnet --dht`: leechers start from a magnet link with no tracker; the torrent has
/// none either, so the DHT of the sessions (bootstrapped from the seeder) is the only way
/// to the seeder. Every leecher gets the metadata and completes, with and without churn,
/// no tracker is ever asked, and the run replays to the same trace.
#[test]
fn magnet_links_find_the_seeder_through_the_dht_alone() {
    let s = seed(41);
    for churn in [false, true] {
        let mut sc = small(s);
        sc.magnet = true;
        sc.dht = true;
        if churn {
            sc.faults = Faults::churn(sc.peers);
        }
        let r = run(sc.clone());
        assert_ok(&r);
        assert!(
            r.magnet_links >= sc.peers as usize,
            "seed {s}: {}",
            r.text()
        );
        assert_eq!(
            r.metadata_seconds.len(),
            r.magnet_links,
            "seed {s}: every magnet link got its metadata\n{}",
            r.text()
        );
        assert!(r.dht_datagrams > 0, "seed {s}");
        assert_eq!(r.tracker_announces, 0, "seed {s}: no tracker");
        let again = run(sc);
        assert_eq!(r.trace_hash, again.trace_hash, "seed {s}: same seed");
        eprintln!(
            "magnet + DHT{}: metadata median {:.1} s, max {:.1} s; {} DHT datagrams; done in {:.1} s",
            if churn { " with churn" } else { "" },
            r.metadata_seconds[r.metadata_seconds.len() / 2],
            r.metadata_seconds.last().copied().unwrap_or(0.0),
            r.dht_datagrams,
            r.sim_seconds
        );
    }
}
