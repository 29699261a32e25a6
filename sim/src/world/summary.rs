//! The end of a run: who completed and when, liveness judged against the bound, and the
//! tally turned into the [`Report`].

use std::collections::BTreeMap;

use tessera_core::Instant;
use tessera_core::picker::Strategy;

use super::host::{Host, Kind};
use super::population::{Class, Population};
use super::tally::Tally;
use crate::invariants::Violation;
use crate::payload::Mode;
use crate::report::{BothSeeding, ClassTimes, Report};
use crate::scenario::Scenario;

/// How and when the run ended.
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    /// Real seconds the run took.
    pub wall: f64,
    /// Stopped because no piece could be completed any more (data lost).
    pub stuck: bool,
    pub now: Instant,
    /// The liveness bound.
    pub bound: Instant,
    /// When the last fault healed.
    pub healed: Instant,
}

/// Completion by class, and the honest peers that missed the bound.
struct Completion {
    classes: Vec<ClassTimes>,
    /// Honest peers that had to complete, and how many did.
    honest: usize,
    completed: usize,
    /// Peers that completed after the bound or not at all (when it passed or the run is
    /// stuck).
    late: Vec<usize>,
}

fn completion(pop: &Population, end: &Ending) -> Completion {
    let mut classes: BTreeMap<Class, ClassTimes> = BTreeMap::new();
    let mut c = Completion {
        classes: Vec::new(),
        honest: 0,
        completed: 0,
        late: Vec::new(),
    };
    for (i, r) in pop.records.iter().enumerate() {
        let times = classes.entry(r.class).or_insert_with(|| ClassTimes {
            name: r.class.name().into(),
            ..ClassTimes::default()
        });
        times.total += 1;
        times.uploaded += r.uploaded;
        if let (Some(j), Some(d)) = (r.joined_at, r.completed_at) {
            times.times.push((d - j).as_secs_f64());
        }
        if !r.must_complete || r.gone {
            continue;
        }
        c.honest += 1;
        c.completed += usize::from(r.completed_at.is_some());
        let late = match r.completed_at {
            Some(t) => t > end.bound,
            None => end.now >= end.bound || end.stuck,
        };
        if late {
            c.late.push(i);
        }
    }
    c.classes = classes.into_values().collect();
    c
}

/// The liveness violation of peer `rec`, with where it stands.
fn liveness_violation(pop: &Population, hosts: &[Host], rec: usize, end: &Ending) -> Violation {
    let r = &pop.records[rec];
    let state = match r.host.map(|h| &hosts[h].kind) {
        Some(Kind::Node(n)) => n.describe(pop),
        _ => format!("down, {} lives", r.lives),
    };
    Violation {
        at: end.now,
        node: pop.name(rec),
        what: format!(
            "liveness: not complete by the bound ({:.0} s): {state}",
            end.bound.since_epoch().as_secs_f64()
        ),
    }
}

/// The report of a run that ended so. `pop`'s uploads must include the nodes still up.
pub fn report(
    sc: &Scenario,
    pop: &Population,
    hosts: &[Host],
    mut tally: Tally,
    end: Ending,
) -> Report {
    let c = completion(pop, &end);
    // A stuck run lost data: nobody could complete, so nobody is blamed for it.
    let liveness = if end.stuck { 0 } else { c.late.len() as u64 };
    if !end.stuck {
        for &rec in &c.late {
            let v = liveness_violation(pop, hosts, rec, &end);
            tally.inv.list.push(v);
        }
    }
    let pieces_lost = if tally.seeder_left_at.is_some() {
        tally.copies.at_zero
    } else {
        0
    };
    let tracker_announces = match &hosts[0].kind {
        Kind::Tracker(t) => t.announces,
        _ => 0,
    };
    let secs = |t: Instant| t.since_epoch().as_secs_f64();
    Report {
        seed: sc.seed,
        peers: sc.peers,
        mode: match sc.mode {
            Mode::Real => "real".into(),
            Mode::Virtual => "virtual".into(),
        },
        picker: match sc.strategy {
            Strategy::RarestFirst => "rarest".into(),
            Strategy::Sequential => "sequential".into(),
            Strategy::Streaming { window } => format!("streaming({window})"),
        },
        endgame: sc.endgame,
        faults: if sc.faults.any() { "on" } else { "none" }.into(),
        honest: c.honest,
        completed: c.completed,
        playable: ClassTimes {
            name: "playable".into(),
            total: c.honest,
            times: pop
                .records
                .iter()
                .filter(|r| r.must_complete && !r.gone)
                .filter_map(|r| Some((r.playable_at? - r.joined_at?).as_secs_f64()))
                .collect(),
            uploaded: 0,
        },
        sim_seconds: secs(end.now),
        wall_seconds: end.wall,
        events: tally.events,
        inputs: tally.inputs,
        input_kinds: tally.input_kinds,
        trace_hash: tally.trace.0,
        invariant_violations: tally.inv.count,
        liveness_violations: liveness,
        violations: tally.inv.list,
        classes: c.classes,
        liveness_bound: secs(end.bound),
        faults_healed_at: secs(end.healed),
        hash_failures: tally.hash_failures,
        disk_errors: tally.disk_errors,
        tracker_announces,
        dht_datagrams: tally.datagrams,
        magnet_links: tally.magnet_links,
        metadata_seconds: {
            let mut m: Vec<f64> = tally
                .metadata_times
                .iter()
                .map(|d| d.as_secs_f64())
                .collect();
            m.sort_by(f64::total_cmp);
            m
        },
        seeder_left_at: tally.seeder_left_at.map(secs),
        pieces_lost,
        max_pieces_zero_copies: tally.copies.max_zero,
        one_copy_seconds: tally.copies.one_copy_secs,
        stuck: end.stuck,
        adversary_closes: tally
            .adversary_closes
            .into_iter()
            .map(|((a, r), n)| (a.name().to_string(), r, n))
            .collect(),
        both_seeding: BothSeeding {
            seed_dials: tally.seed_dials,
            closes: tally.both_seeding.values().map(|&n| u64::from(n)).sum(),
            dialled: tally.both_seeding_dialled,
            pairs: tally.both_seeding.len() as u64,
            most_per_pair: tally.both_seeding.values().copied().max().unwrap_or(0),
        },
        close_reasons: tally.close_reasons.into_iter().collect(),
        unchoke_slots: tally
            .slots_by_class
            .into_iter()
            .map(|(c, (n, i))| (c.name().to_string(), n, i))
            .collect(),
        adversary_connections: tally
            .adversary_conns
            .into_iter()
            .map(|(a, n)| (a.name().to_string(), n))
            .collect(),
    }
}
