//! What a run observes as it goes, for the report: the trace hash, counts, invariant
//! violations, the swarm's copy counts, and why connections were closed.

use std::collections::BTreeMap;

use tessera_core::{Duration, Input, Instant};

use super::population::Class;
use crate::invariants::Violations;
use crate::report::TraceHash;
use crate::scenario::Adversary;

/// How many copies of each piece the honest peers that are up hold.
#[derive(Debug)]
pub struct Copies {
    counts: Vec<u32>,
    /// Pieces with no copy.
    pub at_zero: u32,
    /// Pieces with one copy.
    pub at_one: u32,
    /// The most pieces at zero copies seen once the seeder left.
    pub max_zero: u32,
    /// Seconds (sampled) with some piece at one copy once the seeder left.
    pub one_copy_secs: f64,
}

impl Copies {
    pub fn new(pieces: u32) -> Copies {
        Copies {
            counts: vec![0; pieces as usize],
            at_zero: pieces,
            at_one: 0,
            max_zero: 0,
            one_copy_secs: 0.0,
        }
    }

    /// One more copy of piece `p`.
    pub fn add(&mut self, p: usize) {
        let before = self.counts[p];
        self.counts[p] = before + 1;
        self.moved(before, before + 1);
    }

    /// One copy of piece `p` fewer.
    pub fn remove(&mut self, p: usize) {
        let before = self.counts[p];
        self.counts[p] = before.saturating_sub(1);
        self.moved(before, self.counts[p]);
    }

    fn moved(&mut self, before: u32, after: u32) {
        for (v, d) in [(before, -1i64), (after, 1)] {
            match v {
                0 => self.at_zero = (i64::from(self.at_zero) + d) as u32,
                1 => self.at_one = (i64::from(self.at_one) + d) as u32,
                _ => {}
            }
        }
    }

    /// Remembers the pieces at zero copies now if they are the most so far.
    pub fn note_zero(&mut self) {
        self.max_zero = self.max_zero.max(self.at_zero);
    }

    /// A sample, `every` after the last, once the seeder has left.
    pub fn sample(&mut self, every: Duration) {
        self.note_zero();
        if self.at_one > 0 {
            self.one_copy_secs += every.as_secs_f64();
        }
    }
}

/// The run's observations.
#[derive(Debug)]
pub struct Tally {
    pub trace: TraceHash,
    pub events: u64,
    pub inputs: u64,
    pub input_kinds: [u64; 8],
    pub inv: Violations,
    pub copies: Copies,
    pub hash_failures: u64,
    pub disk_errors: u64,
    pub seeder_left_at: Option<Instant>,
    pub adversary_closes: BTreeMap<(Adversary, String), u32>,
    pub adversary_conns: BTreeMap<Adversary, u32>,
    /// Why honest nodes closed connections (to anyone), by reason.
    pub close_reasons: BTreeMap<String, u64>,
    /// Sampled each second when free riders exist: leechers' unchoke slots held by peers of
    /// each class, and how many of those peers were interested.
    pub slots_by_class: BTreeMap<Class, (u64, u64)>,
    /// "Both seeding" closes by honest nodes: per pair of peers (lower record first), how
    /// many; and how many of all such closes were of a connection the closer had dialled.
    pub both_seeding: BTreeMap<(u32, u32), u32>,
    pub both_seeding_dialled: u64,
    /// Dials by nodes that had completed (seeds).
    pub seed_dials: u64,
    /// DHT datagrams sent between nodes.
    pub datagrams: u64,
    /// Torrents started from a magnet link.
    pub magnet_links: usize,
    /// For each magnet link's torrent, the time from its peer's join to its metadata.
    pub metadata_times: Vec<Duration>,
}

/// An input's kind as the trace and the report count it (the action codes, 11..=17, are
/// the session's).
pub const SENT: u64 = 4;

/// A close reason without its numbers (so that reasons group).
fn short_reason(reason: &str) -> String {
    reason
        .split(|c: char| c.is_ascii_digit() || c == '(' || c == ':')
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

impl Tally {
    pub fn new(pieces: u32) -> Tally {
        Tally {
            trace: TraceHash::default(),
            events: 0,
            inputs: 0,
            input_kinds: [0; 8],
            inv: Violations::default(),
            copies: Copies::new(pieces),
            hash_failures: 0,
            disk_errors: 0,
            seeder_left_at: None,
            adversary_closes: BTreeMap::new(),
            adversary_conns: BTreeMap::new(),
            close_reasons: BTreeMap::new(),
            slots_by_class: BTreeMap::new(),
            both_seeding: BTreeMap::new(),
            both_seeding_dialled: 0,
            seed_dials: 0,
            datagrams: 0,
            magnet_links: 0,
            metadata_times: Vec::new(),
        }
    }

    /// An input handed to host `h`'s session: mixed into the trace and counted; its kind.
    pub fn input(&mut self, h: usize, input: &Input) -> u64 {
        let (kind, len, conn) = match input {
            Input::Timeout { .. } => (1, 0, 0),
            Input::Connected { conn, .. } => (2, 0, conn.0),
            Input::Received { conn, data, .. } => (3, data.len(), conn.0),
            Input::Sent { conn, bytes, .. } => (SENT, *bytes, conn.0),
            Input::Closed { conn, .. } => (5, 0, conn.0),
            Input::Disk { op, .. } => (6, 0, op.0),
            Input::Datagram { data, .. } => (7, data.len(), 0),
            Input::Resolved { op, .. } => (8, 0, op.0),
        };
        self.trace.mix(kind);
        self.trace.mix(h as u64);
        self.trace.mix(input.now().as_nanos());
        self.trace.mix(len as u64);
        self.trace.mix(conn);
        self.inputs += 1;
        self.input_kinds[kind as usize] += 1;
        kind
    }

    /// Something other than a session's input that shapes the run, on host `h`.
    pub fn step(&mut self, code: u64, h: usize) {
        self.trace.mix(code);
        self.trace.mix(h as u64);
    }

    /// An honest node (peer `rec`) closed a connection to peer `other` of class `class`
    /// for `reason`; `dialled`: the connection was its own dial.
    pub fn honest_closed(
        &mut self,
        (rec, other): (usize, usize),
        class: Class,
        reason: &str,
        dialled: bool,
    ) {
        if reason == "both seeding" {
            let pair = (rec.min(other) as u32, rec.max(other) as u32);
            *self.both_seeding.entry(pair).or_default() += 1;
            self.both_seeding_dialled += u64::from(dialled);
        }
        let other = class;
        *self.close_reasons.entry(short_reason(reason)).or_default() += 1;
        if let Class::Adversary(a) = other {
            *self
                .adversary_closes
                .entry((a, short_reason(reason)))
                .or_default() += 1;
        }
    }
}
