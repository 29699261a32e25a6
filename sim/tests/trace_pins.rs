//! Pinned traces: for a few fixed seeds and scenarios, the trace hash, the number of events
//! and the number of inputs delivered to cores are written down here.
//!
//! The trace hash mixes every input handed to a core and every action a core takes (see
//! `report::TraceHash`), so these numbers change exactly when the simulated behaviour
//! changes: the core decides differently, the network or a fault behaves differently, or
//! events run in another order. A refactoring that changes them is not one. A change that
//! is meant to change the behaviour updates the pins in the same commit and says why in its
//! message; a change to how the hash itself is computed says so too (the traces stay the
//! same, the numbers do not).
//!
//! On a mismatch the test prints every scenario's new values, ready to paste.

use tessera_core::Duration;
use tessera_sim::{Adversary, Mode, Scenario, run};

/// A pinned scenario: its name, how to build it, and what it must give.
struct Pin {
    name: &'static str,
    scenario: fn() -> Scenario,
    trace_hash: u64,
    events: u64,
    inputs: u64,
}

/// Honest swarm, virtual payload, rarest first.
fn plain() -> Scenario {
    let mut sc = Scenario::new(1);
    sc.peers = 30;
    sc.size = 4 << 20;
    sc
}

/// A larger one with the sequential picker and no endgame.
fn sequential() -> Scenario {
    let mut sc = Scenario::new(2);
    sc.peers = 50;
    sc.size = 4 << 20;
    sc.strategy = tessera_core::picker::Strategy::Sequential;
    sc.endgame = false;
    sc
}

/// `--faults all --payload real`: churn, resets, partitions, stalls, bandwidth changes,
/// faulty disks and one adversary of each kind. Seed 9: with the core's precise deadlines,
/// seed 8 no longer has a write land in a faulty disk's window.
fn all_faults_real() -> Scenario {
    let mut sc = Scenario::new(9);
    sc.peers = 20;
    sc.size = 2 << 20;
    sc.mode = Mode::Real;
    sc.set_fault_level("all").expect("a fault level");
    sc
}

/// Adversaries on their own: corrupt uploaders, a lying garbage sender, a request flood.
/// Seed 6: with the core's precise deadlines, seed 4's swarm completes before the liar is
/// the only source of a piece twice and before the flood starts.
fn adversaries() -> Scenario {
    let mut sc = Scenario::new(6);
    sc.peers = 20;
    sc.size = 2 << 20;
    sc.adversaries = vec![
        (Adversary::Corrupt, 2),
        (Adversary::Flood, 1),
        (Adversary::LiarGarbage, 1),
    ];
    sc
}

/// Churn with free riders (the unchoke-slot sampling runs).
fn churn_free_riders() -> Scenario {
    let mut sc = Scenario::new(5);
    sc.peers = 25;
    sc.size = 2 << 20;
    sc.free_riders = 3;
    sc.set_fault_level("churn").expect("a fault level");
    sc
}

/// The seeder leaves after two copies, leechers leave on completion, request bounds
/// sampled once a second.
fn seeder_leaves() -> Scenario {
    let mut sc = Scenario::new(6);
    sc.peers = 30;
    sc.size = 2 << 20;
    sc.seeder_leaves_after = Some(2.0);
    sc.leave_on_complete = true;
    sc.check_peers_every_event = false;
    sc.time_limit = Some(Duration::from_secs(120));
    sc
}

const PINS: &[Pin] = &[
    Pin {
        name: "plain",
        scenario: plain,
        trace_hash: 0x86ca_489d_bc49_35a5,
        events: 41_863,
        inputs: 28_363,
    },
    Pin {
        name: "sequential",
        scenario: sequential,
        trace_hash: 0x8f07_c6c7_0ef9_5063,
        events: 110_537,
        inputs: 68_224,
    },
    Pin {
        name: "all_faults_real",
        scenario: all_faults_real,
        trace_hash: 0x83de_6c2a_d518_8375,
        events: 25_576,
        inputs: 15_810,
    },
    Pin {
        name: "adversaries",
        scenario: adversaries,
        trace_hash: 0x9996_362d_b84c_356a,
        events: 19_402,
        inputs: 13_377,
    },
    Pin {
        name: "churn_free_riders",
        scenario: churn_free_riders,
        trace_hash: 0xb1a3_579e_896a_84f5,
        events: 27_205,
        inputs: 18_696,
    },
    Pin {
        name: "seeder_leaves",
        scenario: seeder_leaves,
        trace_hash: 0xc74e_af15_de96_bde5,
        events: 16_849,
        inputs: 9_860,
    },
];

#[test]
fn trace_hashes_are_pinned() {
    let mut mismatches = Vec::new();
    let mut now = String::new();
    for pin in PINS {
        let r = run((pin.scenario)());
        now.push_str(&format!(
            "    {}: trace_hash: 0x{:016x}, events: {}, inputs: {}\n",
            pin.name, r.trace_hash, r.events, r.inputs
        ));
        if (r.trace_hash, r.events, r.inputs) != (pin.trace_hash, pin.events, pin.inputs) {
            mismatches.push(pin.name);
        }
    }
    assert!(
        mismatches.is_empty(),
        "the simulated behaviour changed in {mismatches:?}; the values now:\n{now}"
    );
}

/// The pinned runs are meaningful runs: every honest peer completes where it should, and
/// the faults and adversaries really happened.
#[test]
fn pinned_scenarios_do_what_they_say() {
    let r = run(plain());
    assert!(r.ok(), "{}", r.text());
    let r = run(all_faults_real());
    assert!(r.ok(), "{}", r.text());
    assert_eq!(r.mode, "real");
    assert!(r.disk_errors > 0, "{}", r.text());
    let r = run(adversaries());
    assert!(r.ok(), "{}", r.text());
    assert!(r.closes_of("liar-garbage", "banned") > 0, "{}", r.text());
    assert!(r.closes_of("flood", "too many invalid") > 0, "{}", r.text());
    let r = run(seeder_leaves());
    assert!(r.seeder_left_at.is_some(), "{}", r.text());
}
