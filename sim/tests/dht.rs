//! `tessera-sim dht` on small networks: lookups succeed, the same seed replays the same
//! trace, hostile nodes do not break lookups, and BEP 42 is what keeps a Sybil group near one
//! info hash from eclipsing it.

use tessera_core::Duration;
use tessera_sim::dht::{DhtAdversary, DhtScenario, run};

/// 300 nodes joining over two minutes, 60 lookups over two minutes.
fn small(seed: u64) -> DhtScenario {
    let mut sc = DhtScenario::new(seed, 300, 60);
    sc.join_window = Duration::from_secs(120);
    sc.warmup = Duration::from_secs(120);
    sc.lookup_window = Duration::from_secs(120);
    sc
}

#[test]
fn lookups_find_announcers_and_the_same_seed_gives_the_same_trace() {
    let a = run(small(11));
    assert_eq!(a.invariant_violations, 0, "{}", a.text());
    assert_eq!(a.started, 60, "{}", a.text());
    assert!(a.success_rate() >= 0.98, "{}", a.text());
    assert!(a.announces_checked > 0, "{}", a.text());
    let b = run(small(11));
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.succeeded, b.succeeded);
    let c = run(small(12));
    assert_ne!(a.trace_hash, c.trace_hash);
}

#[test]
fn churn_and_hostile_nodes_do_not_stop_lookups() {
    let mut sc = small(13);
    sc.churn = 0.2;
    sc.adversaries = vec![
        (DhtAdversary::Garbage, 10),
        (DhtAdversary::Silent, 10),
        (DhtAdversary::SelfOnly, 10),
        (DhtAdversary::FarAway, 10),
    ];
    let r = run(sc);
    assert_eq!(r.invariant_violations, 0, "{}", r.text());
    assert_eq!(r.left, 60, "{}", r.text());
    assert!(r.success_rate() >= 0.95, "{}", r.text());
}

#[test]
fn bep42_keeps_a_sybil_group_from_eclipsing_its_target() {
    let mut sc = small(14);
    sc.adversaries = vec![(DhtAdversary::Sybil, 16)];
    let guarded = run(sc.clone());
    assert_eq!(guarded.invariant_violations, 0, "{}", guarded.text());
    assert!(guarded.sybil_target_lookups > 0, "{}", guarded.text());
    assert_eq!(
        guarded.sybil_target_found,
        guarded.sybil_target_lookups,
        "{}",
        guarded.text()
    );
    sc.enforce_node_id = false;
    let open = run(sc);
    assert!(
        open.sybil_target_found < open.sybil_target_lookups,
        "without BEP 42 the Sybil group should hide its target\n{}",
        open.text()
    );
}
