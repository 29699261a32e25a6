use super::*;
use proptest::prelude::{Just, Strategy, any, prop_assert, prop_assert_eq, prop_oneof, proptest};

const SEED: u64 = 0x5eed;

fn secs(s: u64) -> Instant {
    Instant::from_nanos(s * 1_000_000_000)
}

/// An interested, long-connected peer we are not interested in.
fn peer(conn: u64, download_rate: f64) -> PeerView {
    PeerView {
        conn: ConnId(conn),
        interested: true,
        download_rate,
        downloaded: 0,
        connected_at: Instant::ZERO,
        last_block_at: None,
        am_interested_since: None,
    }
}

fn conns(ids: &[u64]) -> Vec<ConnId> {
    ids.iter().map(|&id| ConnId(id)).collect()
}

/// True when `rng` has been read since `before` was cloned from it.
fn consumed(before: &Rng, rng: &Rng) -> bool {
    before.clone().next_u64() != rng.clone().next_u64()
}

#[test]
fn downloading_unchokes_the_fastest_interested_peers() {
    let mut peers: Vec<PeerView> = (1..=8).map(|i| peer(i, 10.0 * i as f64)).collect();
    // The fastest of all, but not interested: never unchoked.
    peers.push(PeerView {
        interested: false,
        ..peer(9, 1e9)
    });
    let mut choker = Choker::new(ChokerConfig::default(), secs(100));
    let mut rng = Rng::from_u64(SEED);
    let d = choker.round(secs(100), &peers, false, &mut rng);
    assert_eq!(d.regular, conns(&[8, 7, 6, 5]));
    let opt = d.optimistic.expect("an optimistic unchoke");
    assert!(conns(&[1, 2, 3, 4]).contains(&opt), "{opt}");
    assert_eq!(d.len(), 5);
    assert!(!d.is_unchoked(ConnId(9)));
    for slow in conns(&[1, 2, 3, 4]) {
        assert_eq!(d.is_unchoked(slow), slow == opt);
    }
    assert_eq!(choker.optimistic(), Some(opt));
    assert_eq!(choker.next_round(), secs(110));
}

#[test]
fn among_equal_rates_past_reciprocation_wins() {
    let mut choker = Choker::new(ChokerConfig::default(), Instant::ZERO);
    let mut rng = Rng::from_u64(SEED);
    // Nobody sends anything right now; peers 5..=8 gave us data earlier, 1..=4 never did.
    let views: Vec<PeerView> = (1..=8)
        .map(|i| PeerView {
            downloaded: if i > 4 { 1 << 20 } else { 0 },
            ..peer(i, 0.0)
        })
        .collect();
    let d = choker.round(Instant::ZERO, &views, false, &mut rng);
    let mut regular = d.regular.clone();
    regular.sort();
    assert_eq!(regular, (5..=8).map(ConnId).collect::<Vec<_>>());
}

#[test]
fn ties_and_odd_rates_are_ordered_deterministically() {
    let peers = [
        peer(1, f64::NAN),
        peer(2, f64::INFINITY),
        peer(3, -5.0),
        peer(4, 0.0),
        peer(5, -0.0),
        peer(6, 1.0),
        peer(7, f64::NEG_INFINITY),
    ];
    let config = ChokerConfig {
        slots: 5,
        ..ChokerConfig::default()
    };
    let mut choker = Choker::new(config, secs(100));
    let d = choker.round(secs(100), &peers, false, &mut Rng::from_u64(SEED));
    // Infinity first, then the only positive rate, then the zeros by ConnId.
    assert_eq!(d.regular, conns(&[2, 6, 1, 3, 4]));
    // On equal rates the peers already unchoked keep their slots.
    let d = choker.round(
        secs(110),
        &[peer(7, 0.0), peer(1, 0.0), peer(6, 0.0), peer(5, 0.0)],
        false,
        &mut Rng::from_u64(SEED),
    );
    assert_eq!(d.regular, conns(&[1, 6, 5, 7]));
}

#[test]
fn optimistic_rotates_every_third_round_exactly() {
    // Four fast peers hold the regular slots; six slow ones compete for the optimistic one.
    let peers: Vec<PeerView> = (1..=10)
        .map(|i| peer(i, if i <= 4 { 1000.0 } else { 1.0 }))
        .collect();
    let mut choker = Choker::new(ChokerConfig::default(), secs(100));
    let mut rng = Rng::from_u64(SEED);
    let mut previous = None;
    let mut changes = 0;
    for round in 0..30 {
        let now = secs(100 + 10 * round);
        assert_eq!(choker.next_round(), now);
        let before = rng.clone();
        let d = choker.round(now, &peers, false, &mut rng);
        let rotation = round % 3 == 0;
        assert_eq!(consumed(&before, &rng), rotation, "round {round}");
        assert_eq!(d.regular, conns(&[1, 2, 3, 4]));
        let opt = d.optimistic.expect("an optimistic unchoke");
        assert!(opt.0 > 4, "the optimistic peer {opt} is one of the top 4");
        if !rotation {
            assert_eq!(Some(opt), previous, "round {round}");
        } else if previous.is_some_and(|p| p != opt) {
            changes += 1;
        }
        previous = Some(opt);
    }
    // Nine rotations after the first draw, each picking one of six peers.
    assert!(changes >= 5, "only {changes} changes");
}

#[test]
fn new_peers_are_three_times_as_likely_to_be_optimistic() {
    let mut choker = Choker::new(ChokerConfig::default(), secs(100));
    let mut rng = Rng::from_u64(SEED);
    let mut picks: BTreeMap<ConnId, u32> = BTreeMap::new();
    let rotations = 3000;
    for round in 0..3 * rotations {
        let now = secs(100 + 10 * round);
        let mut peers: Vec<PeerView> = (1..=4).map(|i| peer(i, 1000.0)).collect();
        // Peers 5..=8 are old; peer 9 is always 10 s old.
        peers.extend((5..=8).map(|i| peer(i, 1.0)));
        peers.push(PeerView {
            connected_at: secs(90 + 10 * round),
            ..peer(9, 1.0)
        });
        let d = choker.round(now, &peers, false, &mut rng);
        if round % 3 == 0 {
            *picks
                .entry(d.optimistic.expect("an optimistic unchoke"))
                .or_default() += 1;
        }
    }
    assert_eq!(picks.values().sum::<u32>(), rotations as u32);
    let new = f64::from(picks[&ConnId(9)]);
    for old in 5..=8 {
        let ratio = new / f64::from(picks[&ConnId(old)]);
        assert!(
            (2.4..=3.6).contains(&ratio),
            "new/old#{old} = {ratio} ({picks:?})"
        );
    }
    let old_mean = f64::from((5..=8).map(|i| picks[&ConnId(i)]).sum::<u32>()) / 4.0;
    let ratio = new / old_mean;
    assert!(
        (2.7..=3.3).contains(&ratio),
        "new/old = {ratio} ({picks:?})"
    );
}

#[test]
fn snubbing_peer_loses_its_top_slot() {
    // Peer 1 is the fastest on paper, but its last block came at 10 s; we have been
    // interested in everyone since 0 s and the others delivered just now.
    let views = |now: Instant, am_interested_since: Option<Instant>| {
        let mut peers = vec![PeerView {
            last_block_at: Some(secs(10)),
            am_interested_since,
            ..peer(1, 1e6)
        }];
        peers.extend((2..=5).map(|i| PeerView {
            last_block_at: Some(now),
            am_interested_since: Some(Instant::ZERO),
            ..peer(i, 10.0 * i as f64)
        }));
        peers
    };
    let choker = Choker::new(ChokerConfig::default(), Instant::ZERO);

    // Exactly 60 s of silence is not yet snubbing.
    let at_60 = views(secs(70), Some(Instant::ZERO));
    assert!(!choker.is_snubbed(secs(70), &at_60[0]));
    let d = choker
        .clone()
        .round(secs(70), &at_60, false, &mut Rng::from_u64(SEED));
    assert_eq!(d.regular[0], ConnId(1));

    // More than 60 s is: the slot goes to the others, the optimistic slot may still
    // go to peer 1 (here it is the only candidate).
    let at_61 = views(secs(71), Some(Instant::ZERO));
    assert!(choker.is_snubbed(secs(71), &at_61[0]));
    let d = choker
        .clone()
        .round(secs(71), &at_61, false, &mut Rng::from_u64(SEED));
    assert_eq!(d.regular, conns(&[5, 4, 3, 2]));
    assert_eq!(d.optimistic, Some(ConnId(1)));

    // Not snubbed when we were not interested in it (it had nothing we wanted)...
    let not_interested = views(secs(71), None);
    assert!(!choker.is_snubbed(secs(71), &not_interested[0]));
    let d = choker
        .clone()
        .round(secs(71), &not_interested, false, &mut Rng::from_u64(SEED));
    assert_eq!(d.regular[0], ConnId(1));

    // ... nor when we became interested again less than 60 s ago.
    let lately = views(secs(71), Some(secs(20)));
    assert!(!choker.is_snubbed(secs(71), &lately[0]));
    let d = choker
        .clone()
        .round(secs(71), &lately, false, &mut Rng::from_u64(SEED));
    assert_eq!(d.regular[0], ConnId(1));

    // A peer that never sent a block is timed from when we became interested.
    let never = PeerView {
        last_block_at: None,
        am_interested_since: Some(secs(5)),
        ..peer(1, 0.0)
    };
    assert!(!choker.is_snubbed(secs(65), &never));
    assert!(choker.is_snubbed(secs(66), &never));

    // Seeding ignores snubbing (nobody has anything for us).
    let d = choker
        .clone()
        .round(secs(71), &at_61, true, &mut Rng::from_u64(SEED));
    assert!(d.regular.contains(&ConnId(1)));
}

#[test]
fn peer_that_loses_interest_is_choked_at_the_next_round() {
    let mut peers: Vec<PeerView> = (1..=5).map(|i| peer(i, 10.0 * i as f64)).collect();
    let mut choker = Choker::new(ChokerConfig::default(), secs(100));
    let mut rng = Rng::from_u64(SEED);
    let d = choker.round(secs(100), &peers, false, &mut rng);
    assert_eq!(d.regular, conns(&[5, 4, 3, 2]));
    assert_eq!(d.optimistic, Some(ConnId(1)));

    peers[4].interested = false;
    let d = choker.round(secs(110), &peers, false, &mut rng);
    assert!(!d.is_unchoked(ConnId(5)));
    // The next best takes the freed slot, even though it was the optimistic peer; the
    // optimistic slot stays empty as no interested peer is left for it.
    assert_eq!(d.regular, conns(&[4, 3, 2, 1]));
    assert_eq!(d.optimistic, None);
}

#[test]
fn newly_interested_peer_is_considered_at_a_rerun() {
    let mut peers: Vec<PeerView> = (1..=3).map(|i| peer(i, 10.0 * i as f64)).collect();
    peers.push(PeerView {
        interested: false,
        ..peer(4, 1000.0)
    });
    let mut choker = Choker::new(ChokerConfig::default(), secs(100));
    let mut rng = Rng::from_u64(SEED);
    let d = choker.round(secs(100), &peers, false, &mut rng);
    assert_eq!(d.regular, conns(&[3, 2, 1]));
    assert_eq!(d.optimistic, None);

    peers[3].interested = true;
    let d = choker.rerun(secs(103), &peers, false, &mut rng);
    assert_eq!(d.regular, conns(&[4, 3, 2, 1]));
    assert_eq!(choker.next_round(), secs(110));
}

#[test]
fn seeding_gives_every_interested_peer_a_turn() {
    let slots = 4;
    let interested = 10u64;
    let mut peers: Vec<PeerView> = (1..=interested).map(|i| peer(i, 0.0)).collect();
    peers.push(PeerView {
        interested: false,
        ..peer(99, 0.0)
    });
    let mut choker = Choker::new(ChokerConfig::default(), secs(100));
    let mut rng = Rng::from_u64(SEED);
    let mut turns: BTreeMap<ConnId, u32> = BTreeMap::new();
    let mut first_turn_by: BTreeMap<ConnId, u64> = BTreeMap::new();
    let mut turn_set = BTreeSet::new();
    for round in 0..30u64 {
        let d = choker.round(secs(100 + 10 * round), &peers, true, &mut rng);
        assert_eq!(d.regular.len(), slots);
        assert!(!d.is_unchoked(ConnId(99)));
        assert!(d.optimistic.is_some_and(|o| !d.regular.contains(&o)));
        // A turn lasts 30 s: three rounds with the same regular peers.
        let set: BTreeSet<ConnId> = d.regular.iter().copied().collect();
        if round % 3 == 0 {
            turn_set = set;
        } else {
            assert_eq!(set, turn_set, "round {round}");
        }
        for &conn in &d.regular {
            *turns.entry(conn).or_default() += 1;
            first_turn_by.entry(conn).or_insert(round);
        }
    }
    // Everyone's first turn starts within ceil(10 / 4) = 3 turns, i.e. by round 6.
    assert_eq!(first_turn_by.len(), interested as usize);
    assert!(
        first_turn_by.values().all(|&round| round <= 6),
        "{first_turn_by:?}"
    );
    // 30 rounds x 4 slots shared fairly among 10 peers: 12 rounds each, give or take a turn.
    assert!(turns.values().all(|&n| (9..=15).contains(&n)), "{turns:?}");
}

#[test]
fn rerun_does_not_advance_the_optimistic_rotation() {
    let peers: Vec<PeerView> = (1..=10)
        .map(|i| peer(i, if i <= 4 { 1000.0 } else { 1.0 }))
        .collect();
    let mut choker = Choker::new(ChokerConfig::default(), secs(100));
    let mut rng = Rng::from_u64(SEED);
    for round in 0..12 {
        let now = secs(100 + 10 * round);
        let before = rng.clone();
        let d = choker.round(now, &peers, false, &mut rng);
        assert_eq!(consumed(&before, &rng), round % 3 == 0, "round {round}");
        // Several early re-runs between rounds: same optimistic, no draw, same schedule.
        for extra in 1..=4 {
            let before = rng.clone();
            let again = choker.rerun(
                now + Duration::from_secs(2 * extra),
                &peers,
                false,
                &mut rng,
            );
            assert!(!consumed(&before, &rng), "rerun drew at round {round}");
            assert_eq!(again, d);
            assert_eq!(choker.next_round(), now + Duration::from_secs(10));
        }
    }
}

#[test]
fn rerun_refills_a_vacant_optimistic_slot() {
    let mut peers: Vec<PeerView> = (1..=6)
        .map(|i| peer(i, if i <= 4 { 1000.0 } else { 1.0 }))
        .collect();
    let mut choker = Choker::new(ChokerConfig::default(), secs(100));
    let mut rng = Rng::from_u64(SEED);
    let d = choker.round(secs(100), &peers, false, &mut rng);
    let opt = d.optimistic.expect("an optimistic unchoke");
    let other = if opt == ConnId(5) {
        ConnId(6)
    } else {
        ConnId(5)
    };

    // The optimistic peer disconnects: the torrent forgets it and re-runs.
    choker.forget(opt);
    assert_eq!(choker.optimistic(), None);
    peers.retain(|p| p.conn != opt);
    let d = choker.rerun(secs(104), &peers, false, &mut rng);
    assert_eq!(d.optimistic, Some(other));
    // The schedule did not move: rounds 1 and 2 keep it, round 3 re-draws.
    for round in 1..3 {
        let before = rng.clone();
        let d = choker.round(secs(100 + 10 * round), &peers, false, &mut rng);
        assert!(!consumed(&before, &rng));
        assert_eq!(d.optimistic, Some(other));
    }
    let before = rng.clone();
    choker.round(secs(130), &peers, false, &mut rng);
    assert!(consumed(&before, &rng));
}

/// A changing swarm: rates, interest and membership vary with the round number.
fn swarm(round: u64) -> Vec<PeerView> {
    (1..=12u64)
        .filter(|i| !(i + round).is_multiple_of(7))
        .map(|i| PeerView {
            conn: ConnId(i),
            interested: !(i * 3 + round).is_multiple_of(5),
            download_rate: ((i * 37 + round * 11) % 17) as f64,
            downloaded: i * 1000,
            connected_at: secs(i * 20),
            last_block_at: Some(secs(round * 10 - (i % 4) * 30)),
            am_interested_since: (i % 3 != 0).then_some(Instant::ZERO),
        })
        .collect()
}

fn run(seeding: bool, reverse: bool) -> Vec<Decision> {
    let mut choker = Choker::new(ChokerConfig::default(), secs(100));
    let mut rng = Rng::from_u64(SEED);
    let mut decisions = Vec::new();
    for round in 10..70 {
        let mut peers = swarm(round);
        if reverse {
            peers.reverse();
        }
        let now = secs(round * 10);
        decisions.push(choker.round(now, &peers, seeding, &mut rng));
        decisions.push(choker.rerun(now + Duration::from_secs(5), &peers, seeding, &mut rng));
    }
    decisions
}

#[test]
fn same_inputs_and_seed_give_same_decisions() {
    for seeding in [false, true] {
        let a = run(seeding, false);
        assert_eq!(a, run(seeding, false));
        // The order of the views does not matter either.
        assert_eq!(a, run(seeding, true));
        assert!(a.iter().any(|d| d.optimistic.is_some()));
    }
}

#[test]
fn duplicate_views_count_once() {
    let peers = [peer(1, 5.0), peer(1, 50.0), peer(2, 1.0)];
    let mut choker = Choker::new(
        ChokerConfig {
            slots: 1,
            ..ChokerConfig::default()
        },
        secs(100),
    );
    let d = choker.round(secs(100), &peers, false, &mut Rng::from_u64(SEED));
    assert_eq!(d.regular, conns(&[1]));
    assert_eq!(d.optimistic, Some(ConnId(2)));
    assert_eq!(d.unchoked().collect::<Vec<_>>(), conns(&[1, 2]));
}

fn any_rate() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(0.0),
        any::<f64>(),
        0.0..1e6f64,
    ]
}

fn any_view() -> impl Strategy<Value = PeerView> {
    (
        0u64..16,
        any::<bool>(),
        any_rate(),
        0u64..400,
        proptest::option::of(0u64..400),
        proptest::option::of(0u64..400),
    )
        .prop_map(
            |(conn, interested, download_rate, connected, block, since)| PeerView {
                conn: ConnId(conn),
                interested,
                download_rate,
                downloaded: conn * 7 % 3,
                connected_at: secs(connected),
                last_block_at: block.map(secs),
                am_interested_since: since.map(secs),
            },
        )
}

/// One call: the views, seeding, which method (round, rerun, forget then rerun) and
/// how many seconds pass before it.
fn any_step() -> impl Strategy<Value = (Vec<PeerView>, bool, u8, u64)> {
    (
        proptest::collection::vec(any_view(), 0..14),
        any::<bool>(),
        0u8..4,
        0u64..40,
    )
}

proptest! {
    #[test]
    fn random_views_keep_the_invariants(
        slots in 0usize..6,
        optimistic_rounds in 0u32..4,
        new_peer_weight in 0u32..5,
        seed in any::<u64>(),
        steps in proptest::collection::vec(any_step(), 1..24),
    ) {
        let config = ChokerConfig { slots, optimistic_rounds, new_peer_weight, ..ChokerConfig::default() };
        let mut choker = Choker::new(config.clone(), Instant::ZERO);
        let mut rng = Rng::from_u64(seed);
        // The same calls with only the interested peers' views: the same decisions ...
        let mut shadow = Choker::new(config, Instant::ZERO);
        let mut shadow_rng = Rng::from_u64(seed);
        let mut now = Instant::ZERO;
        for (peers, seeding, op, dt) in steps {
            now += Duration::from_secs(dt);
            // ... and, for a seed, without rates.
            let interested: Vec<PeerView> = unique_by_conn(&peers)
                .into_iter()
                .filter(|p| p.interested)
                .map(|p| PeerView {
                    download_rate: if seeding { 0.0 } else { p.download_rate },
                    downloaded: if seeding { 0 } else { p.downloaded },
                    ..*p
                })
                .collect();
            let d = match op {
                0 | 1 => choker.round(now, &peers, seeding, &mut rng),
                2 => choker.rerun(now, &peers, seeding, &mut rng),
                _ => {
                    if let Some(p) = peers.first() {
                        choker.forget(p.conn);
                    }
                    choker.rerun(now, &peers, seeding, &mut rng)
                }
            };
            let e = match op {
                0 | 1 => shadow.round(now, &interested, seeding, &mut shadow_rng),
                2 => shadow.rerun(now, &interested, seeding, &mut shadow_rng),
                _ => {
                    if let Some(p) = peers.first() {
                        shadow.forget(p.conn);
                    }
                    shadow.rerun(now, &interested, seeding, &mut shadow_rng)
                }
            };
            prop_assert_eq!(&d, &e);
            prop_assert_eq!(rng.next_u64(), shadow_rng.next_u64());
            prop_assert!(d.regular.len() <= slots);
            prop_assert!(d.len() <= slots + 1);
            prop_assert_eq!(choker.optimistic(), d.optimistic);
            let unchoked: Vec<ConnId> = d.unchoked().collect();
            let distinct: BTreeSet<ConnId> = unchoked.iter().copied().collect();
            prop_assert_eq!(distinct.len(), unchoked.len());
            for conn in unchoked {
                let view = peers.iter().find(|p| p.conn == conn);
                prop_assert!(view.is_some(), "{} is not in the input", conn);
                prop_assert!(view.is_some_and(|v| v.interested), "{} is not interested", conn);
            }
            if !seeding {
                for &conn in &d.regular {
                    let view = peers.iter().find(|p| p.conn == conn);
                    prop_assert!(view.is_some_and(|v| !choker.is_snubbed(now, v)));
                }
            }
        }
    }
}
