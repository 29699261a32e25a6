//! Faults: their schedule, drawn from the plan stream when the run is built, and what each
//! does when its time comes (the targets drawn from the run-time stream).

use rand_chacha::ChaCha8Rng;
use tessera_core::{DiskError, DiskErrorKind, DiskResult, Duration, Instant};

use super::draw::{between, chance, index, uniform};
use super::event::{Ev, rejoin_nanos};
use super::population::{Class, Population};
use super::transport::Transport;
use crate::queue::Queue;
use crate::scenario::Scenario;

/// Schedules the scenario's faults (churn joins become new records); when the last of them
/// has healed.
pub fn plan(
    sc: &Scenario,
    pop: &mut Population,
    rng: &mut ChaCha8Rng,
    q: &mut Queue<Ev>,
) -> Instant {
    let f = &sc.faults;
    let window = sc.fault_window;
    let t0 = Instant::ZERO;
    let mut heal = t0;
    let leechers = pop.leechers();
    let pick = |rng: &mut ChaCha8Rng| -> Option<usize> {
        (!leechers.is_empty()).then(|| leechers[index(rng, leechers.len())])
    };
    for _ in 0..f.churn_leaves {
        let Some(rec) = pick(rng) else {
            break;
        };
        let at = t0 + between(rng, Duration::from_secs(5), window);
        let down = between(rng, Duration::from_secs(5), Duration::from_secs(40));
        heal = heal.max(at + down);
        let rejoin = rejoin_nanos(Some(down));
        q.at(
            at,
            Ev::Leave {
                rec: rec as u32,
                rejoin,
            },
        );
    }
    for _ in 0..f.churn_joins {
        let at = t0 + between(rng, Duration::from_secs(5), window);
        heal = heal.max(at);
        pop.add(sc, Class::Leecher, rng, at, q);
    }
    for _ in 0..f.resets {
        let at = t0 + between(rng, Duration::from_secs(2), window);
        heal = heal.max(at);
        q.at(at, Ev::RandomReset);
    }
    for _ in 0..f.stalls {
        let Some(rec) = pick(rng) else {
            break;
        };
        let at = t0 + between(rng, Duration::from_secs(2), window);
        let until = at + between(rng, Duration::from_secs(3), Duration::from_secs(20));
        heal = heal.max(until);
        q.at(
            at,
            Ev::Stall {
                rec: rec as u32,
                until,
            },
        );
    }
    for k in 0..f.partitions {
        // Partitions one after another, each healing before the next.
        let slot = window / f.partitions.max(1);
        let at = t0 + slot * k + between(rng, Duration::ZERO, slot / 2);
        let until = at + between(rng, Duration::from_secs(3), slot / 2);
        heal = heal.max(until);
        q.at(at, Ev::Partition { until });
    }
    for _ in 0..f.disk_faulty {
        let Some(rec) = pick(rng) else {
            break;
        };
        let from = t0 + between(rng, Duration::ZERO, window / 2);
        let until = from + between(rng, Duration::from_secs(5), window / 2);
        heal = heal.max(until);
        pop.records[rec].disk_faulty = Some((from, until));
    }
    if f.bandwidth_changes {
        let mut at = t0 + Duration::from_secs(2);
        while at < t0 + window {
            q.at(at, Ev::Bandwidth);
            at += between(rng, Duration::from_secs(1), Duration::from_secs(4));
        }
        heal = heal.max(t0 + window);
    }
    heal
}

/// A fifth of the hosts (not the tracker, host 0) are cut off until `until`.
pub fn partition(net: &mut Transport, until: Instant, rng: &mut ChaCha8Rng, q: &mut Queue<Ev>) {
    net.partition(until);
    for h in 1..net.hosts() {
        if chance(rng, 0.2) {
            net.cut_off(h);
        }
    }
    q.at(until, Ev::Heal);
}

/// A random open connection is reset (a few tries to find one).
pub fn random_reset(net: &mut Transport, rng: &mut ChaCha8Rng, q: &mut Queue<Ev>) {
    for _ in 0..32 {
        if net.links() == 0 {
            return;
        }
        let l = index(rng, net.links());
        if net.reset_link(l, q) {
            return;
        }
    }
}

/// Peer `rec`, if up, stalls until `until`.
pub fn stall(net: &mut Transport, pop: &Population, rec: usize, until: Instant, q: &mut Queue<Ev>) {
    if let Some(h) = pop.records[rec].host {
        net.stall(h, until, q);
    }
}

/// A random peer's upload rate becomes its own times ¼..4 (within the scenario's range
/// widened four times).
pub fn change_bandwidth(
    net: &mut Transport,
    pop: &Population,
    sc: &Scenario,
    rng: &mut ChaCha8Rng,
) {
    let n = pop.records.len();
    if n == 0 {
        return;
    }
    let rec = index(rng, n);
    let factor = uniform(rng, 0.25f64.ln(), 4f64.ln()).exp();
    let r = &pop.records[rec];
    let up = (r.up * factor).clamp(sc.up_min / 4.0, sc.up_max * 4.0);
    if let Some(h) = r.host {
        net.set_up_rate(h, up);
    }
}

/// Whether a disk operation of peer `rec` at `now` fails (drawn only while its disk is
/// faulty).
pub fn disk_fails(
    pop: &Population,
    rec: usize,
    now: Instant,
    rate: f64,
    rng: &mut ChaCha8Rng,
) -> bool {
    match pop.records[rec].disk_faulty {
        Some((from, until)) if from <= now && now < until => chance(rng, rate),
        _ => false,
    }
}

/// The answer of a failed disk operation.
pub fn disk_error(message: &str) -> DiskResult {
    DiskResult::Error(DiskError {
        kind: DiskErrorKind::Other,
        message: format!("simulated: {message}"),
    })
}
