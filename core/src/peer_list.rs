//! The addresses a torrent knows of (from trackers, the command line, incoming peers), and
//! when each may be dialled again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::time::{Duration, Instant};

/// Dial failures after which a non-persistent address is forgotten.
const MAX_FAILURES: u32 = 3;
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Candidate {
    persistent: bool,
    failures: u32,
    next_attempt: Instant,
    /// A connection to this address exists (or is being set up).
    in_use: bool,
    /// Known to have every piece (learnt from its bitfield).
    seed: bool,
    /// Learnt from the DHT only (no tracker, peer, `--peer` or PEX named it too): what a
    /// torrent that turns out to be private forgets (BEP 27).
    from_dht: bool,
}

/// Why an address must never be dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Never {
    /// It is us (the tracker hands every client its own address back).
    Ourselves,
    /// It sent data that failed the hash check too often, or broke the protocol.
    Banned,
}

/// A candidate's place in the dial order: fewest failures, then the earliest next attempt,
/// then the lowest address (the order a scan of all candidates would pick them in).
type Rank = (u32, Instant, SocketAddr);

/// The lowest address, for range searches over [`Rank`]s.
const MIN_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

#[derive(Debug, Default)]
pub(crate) struct PeerList {
    candidates: BTreeMap<SocketAddr, Candidate>,
    /// The candidates not in use, in dial order: `[0]` those not known to be seeds, `[1]`
    /// the seeds. Finding the next address to dial walks a few failure counts instead of
    /// every candidate (a torrent may know a thousand).
    free: [BTreeSet<Rank>; 2],
    /// Persistent candidates (any state).
    persistent: usize,
    never: BTreeMap<SocketAddr, Never>,
    max: usize,
    /// No candidate can be dialled before this (with `quiet_skip_seeds`); reset by every
    /// change. Saves searching at every tick when none is due.
    quiet_until: Instant,
    quiet_skip_seeds: bool,
}

impl PeerList {
    pub fn new(max: usize) -> Self {
        PeerList {
            candidates: BTreeMap::new(),
            free: [BTreeSet::new(), BTreeSet::new()],
            persistent: 0,
            never: BTreeMap::new(),
            max,
            quiet_until: Instant::ZERO,
            quiet_skip_seeds: false,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    fn rank(addr: SocketAddr, c: &Candidate) -> Rank {
        (c.failures, c.next_attempt, addr)
    }

    /// Takes a candidate out of the free index (before changing what it is ranked by).
    fn unindex(free: &mut [BTreeSet<Rank>; 2], addr: SocketAddr, c: &Candidate) {
        if !c.in_use {
            free[usize::from(c.seed)].remove(&Self::rank(addr, c));
        }
    }

    /// Puts a candidate (back) into the free index if it is not in use.
    fn index(free: &mut [BTreeSet<Rank>; 2], addr: SocketAddr, c: &Candidate) {
        if !c.in_use {
            free[usize::from(c.seed)].insert(Self::rank(addr, c));
        }
    }

    /// Forgets a candidate.
    fn remove(&mut self, addr: &SocketAddr) {
        if let Some(c) = self.candidates.remove(addr) {
            Self::unindex(&mut self.free, *addr, &c);
            self.persistent -= usize::from(c.persistent);
        }
    }

    /// Learns an address. Returns whether it is new and dialable.
    pub fn add(&mut self, now: Instant, addr: SocketAddr, persistent: bool) -> bool {
        self.add_from(now, addr, persistent, false)
    }

    /// Learns an address from the DHT (see [`PeerList::forget_dht_peers`]).
    pub fn add_from_dht(&mut self, now: Instant, addr: SocketAddr) -> bool {
        self.add_from(now, addr, false, true)
    }

    fn add_from(&mut self, now: Instant, addr: SocketAddr, persistent: bool, dht: bool) -> bool {
        self.quiet_until = Instant::ZERO;
        if self.never.contains_key(&addr) || addr.port() == 0 {
            return false;
        }
        if let Some(c) = self.candidates.get_mut(&addr) {
            self.persistent += usize::from(persistent && !c.persistent);
            c.persistent |= persistent;
            c.from_dht &= dht;
            return false;
        }
        if self.candidates.len() >= self.max && !persistent {
            return false;
        }
        let c = Candidate {
            persistent,
            failures: 0,
            next_attempt: now,
            in_use: false,
            seed: false,
            from_dht: dht,
        };
        Self::index(&mut self.free, addr, &c);
        self.persistent += usize::from(persistent);
        self.candidates.insert(addr, c);
        true
    }

    /// An address to dial now, marked in use. Seeds are skipped when `skip_seeds`.
    #[cfg(test)]
    pub fn next_to_dial(&mut self, now: Instant, skip_seeds: bool) -> Option<SocketAddr> {
        self.next_matching(now, skip_seeds, false)
            .map(|(addr, _)| addr)
    }

    /// The first rank in `set` (dial order) due by `now`, and the earliest next attempt in
    /// it. O(distinct failure counts · log n).
    fn first_due(set: &BTreeSet<Rank>, now: Instant) -> (Option<Rank>, Option<Instant>) {
        let mut earliest: Option<Instant> = None;
        let mut next = set.first();
        while let Some(&(failures, at, addr)) = next {
            // The first of its failure count: the earliest attempt among them.
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
            if at <= now {
                return (Some((failures, at, addr)), earliest);
            }
            let Some(more) = failures.checked_add(1) else {
                break;
            };
            next = set.range((more, Instant::ZERO, MIN_ADDR)..).next();
        }
        (None, earliest)
    }

    /// Like `next_to_dial`, optionally only among persistent addresses; also says whether
    /// the address is persistent.
    pub fn next_matching(
        &mut self,
        now: Instant,
        skip_seeds: bool,
        persistent_only: bool,
    ) -> Option<(SocketAddr, bool)> {
        if now < self.quiet_until && skip_seeds == self.quiet_skip_seeds && !persistent_only {
            return None;
        }
        let found = if persistent_only {
            if self.persistent == 0 {
                return None;
            }
            let eligible = |c: &Candidate| !(c.in_use || (skip_seeds && c.seed) || !c.persistent);
            self.candidates
                .iter()
                .filter(|(_, c)| eligible(c) && c.next_attempt <= now)
                .min_by_key(|(_, c)| (c.failures, c.next_attempt))
                .map(|(addr, _)| *addr)
        } else {
            let sets = if skip_seeds { 1 } else { 2 };
            let mut best: Option<Rank> = None;
            let mut earliest: Option<Instant> = None;
            for set in &self.free[..sets] {
                let (due, first) = Self::first_due(set, now);
                if let Some(r) = due
                    && best.is_none_or(|b| r < b)
                {
                    best = Some(r);
                }
                if let Some(f) = first {
                    earliest = Some(earliest.map_or(f, |e| e.min(f)));
                }
            }
            if best.is_none() {
                self.quiet_until = earliest.unwrap_or(Instant::FAR_FUTURE);
                self.quiet_skip_seeds = skip_seeds;
            }
            best.map(|(_, _, addr)| addr)
        };
        let addr = found?;
        let c = self.candidates.get_mut(&addr)?;
        Self::unindex(&mut self.free, addr, c);
        c.in_use = true;
        self.quiet_until = Instant::ZERO;
        Some((addr, c.persistent))
    }

    /// The earliest time an address not in use may be dialled (seeds left out when
    /// `skip_seeds`), if any is known. O(distinct failure counts · log n).
    pub fn next_attempt(&self, skip_seeds: bool) -> Option<Instant> {
        let sets = if skip_seeds { 1 } else { 2 };
        self.free[..sets]
            .iter()
            .filter_map(|set| Self::first_due(set, Instant::ZERO).1)
            .min()
    }

    /// True when some address is to be redialled whenever it is not connected.
    pub fn has_persistent(&self) -> bool {
        self.persistent > 0
    }

    /// True when some address could be dialled at `now` or later.
    pub fn has_dialable(&self, skip_seeds: bool) -> bool {
        !self.free[0].is_empty() || (!skip_seeds && !self.free[1].is_empty())
    }

    /// A connection was established and the handshake accepted.
    pub fn connected(&mut self, addr: SocketAddr) {
        self.quiet_until = Instant::ZERO;
        if let Some(c) = self.candidates.get_mut(&addr) {
            Self::unindex(&mut self.free, addr, c);
            c.failures = 0;
            Self::index(&mut self.free, addr, c);
        }
    }

    pub fn mark_seed(&mut self, addr: SocketAddr) {
        self.quiet_until = Instant::ZERO;
        if let Some(c) = self.candidates.get_mut(&addr) {
            Self::unindex(&mut self.free, addr, c);
            c.seed = true;
            Self::index(&mut self.free, addr, c);
        }
    }

    /// The connection to `addr` ended; `failed` when it never got going (refused, reset
    /// during the handshake). Schedules the next attempt with exponential back-off.
    pub fn disconnected(&mut self, now: Instant, addr: SocketAddr, failed: bool) {
        self.quiet_until = Instant::ZERO;
        let Some(c) = self.candidates.get_mut(&addr) else {
            return;
        };
        Self::unindex(&mut self.free, addr, c);
        c.in_use = false;
        if failed {
            c.failures = c.failures.saturating_add(1);
        }
        if !c.persistent && c.failures >= MAX_FAILURES {
            self.candidates.remove(&addr);
            return;
        }
        let shift = c.failures.min(6);
        let delay = (RETRY_MIN * (1u32 << shift)).min(RETRY_MAX);
        c.next_attempt = now + delay;
        Self::index(&mut self.free, addr, c);
    }

    /// Every address not in use may be dialled at once: its connection was closed on purpose
    /// (a torrent that got its metadata hands its addresses to the full torrent).
    pub fn retry_now(&mut self, now: Instant) {
        self.quiet_until = Instant::ZERO;
        let idle: Vec<SocketAddr> = self
            .candidates
            .iter()
            .filter(|(_, c)| !c.in_use)
            .map(|(a, _)| *a)
            .collect();
        for addr in idle {
            if let Some(c) = self.candidates.get_mut(&addr) {
                Self::unindex(&mut self.free, addr, c);
                c.next_attempt = now;
                Self::index(&mut self.free, addr, c);
            }
        }
    }

    /// Forgets the addresses only the DHT named (a torrent from a magnet link whose
    /// metadata says it is private, BEP 27). Returns how many.
    pub fn forget_dht_peers(&mut self) -> usize {
        self.quiet_until = Instant::ZERO;
        let dht: Vec<SocketAddr> = self
            .candidates
            .iter()
            .filter(|(_, c)| c.from_dht)
            .map(|(a, _)| *a)
            .collect();
        for addr in &dht {
            self.remove(addr);
        }
        dht.len()
    }

    /// The address is us: never dial it.
    pub fn mark_self(&mut self, addr: SocketAddr) {
        self.remove(&addr);
        self.never.insert(addr, Never::Ourselves);
    }

    /// The address misbehaved: never dial it again.
    pub fn ban(&mut self, addr: SocketAddr) {
        self.remove(&addr);
        self.never.insert(addr, Never::Banned);
    }

    pub fn is_banned(&self, addr: &SocketAddr) -> bool {
        self.never.get(addr) == Some(&Never::Banned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn dial_once_then_back_off() {
        let t0 = Instant::ZERO;
        let mut l = PeerList::new(10);
        assert!(l.add(t0, addr(1), false));
        assert!(!l.add(t0, addr(1), false));
        assert_eq!(l.next_to_dial(t0, false), Some(addr(1)));
        assert_eq!(l.next_to_dial(t0, false), None);
        l.disconnected(t0, addr(1), true);
        assert_eq!(l.next_to_dial(t0, false), None);
        assert_eq!(
            l.next_to_dial(t0 + Duration::from_secs(2), false),
            Some(addr(1))
        );
        l.disconnected(t0, addr(1), true);
        l.disconnected(t0, addr(1), true);
        assert_eq!(l.len(), 0, "forgotten after {MAX_FAILURES} failures");
    }

    #[test]
    fn persistent_peers_are_kept_and_capped_backoff() {
        let t0 = Instant::ZERO;
        let mut l = PeerList::new(0);
        assert!(l.add(t0, addr(2), true), "persistent peers ignore the cap");
        for _ in 0..20 {
            let _ = l.next_to_dial(t0 + Duration::from_secs(3600), false);
            l.disconnected(t0, addr(2), true);
        }
        assert_eq!(l.next_to_dial(t0 + RETRY_MAX, false), Some(addr(2)));
    }

    #[test]
    fn self_and_banned_never_dialled() {
        let t0 = Instant::ZERO;
        let mut l = PeerList::new(10);
        l.add(t0, addr(3), false);
        l.mark_self(addr(3));
        assert!(!l.add(t0, addr(3), true));
        l.add(t0, addr(4), false);
        l.ban(addr(4));
        assert!(l.is_banned(&addr(4)));
        assert_eq!(l.next_to_dial(t0, false), None);
    }

    #[test]
    fn only_addresses_the_dht_alone_named_are_forgotten() {
        let t0 = Instant::ZERO;
        let mut l = PeerList::new(10);
        assert!(l.add_from_dht(t0, addr(1)));
        assert!(l.add_from_dht(t0, addr(2)));
        // A tracker named 2 as well, and 3 first; the DHT names 3 again.
        assert!(!l.add(t0, addr(2), false));
        assert!(l.add(t0, addr(3), false));
        assert!(!l.add_from_dht(t0, addr(3)));
        assert_eq!(l.forget_dht_peers(), 1);
        assert_eq!(l.len(), 2);
        let mut dialled = vec![];
        while let Some(a) = l.next_to_dial(t0, false) {
            dialled.push(a);
        }
        dialled.sort();
        assert_eq!(dialled, vec![addr(2), addr(3)]);
    }

    /// The plain scan the index replaced: the same choice from the same candidates.
    fn scan(
        l: &PeerList,
        now: Instant,
        skip_seeds: bool,
        persistent_only: bool,
    ) -> Option<SocketAddr> {
        let eligible = |c: &Candidate| {
            !(c.in_use || (skip_seeds && c.seed) || (persistent_only && !c.persistent))
        };
        l.candidates
            .iter()
            .filter(|(_, c)| eligible(c) && c.next_attempt <= now)
            .min_by_key(|(_, c)| (c.failures, c.next_attempt))
            .map(|(addr, _)| *addr)
    }

    proptest::proptest! {
        /// Whatever happens to the candidates, the next address to dial is the one a scan
        /// of every candidate picks, and the index holds exactly the free candidates.
        #[test]
        fn index_picks_what_a_scan_picks(
            ops in proptest::collection::vec((0u8..7, 1u16..12, proptest::bool::ANY, 0u64..5), 1..300)
        ) {
            let mut l = PeerList::new(8);
            let mut now = Instant::ZERO;
            for (op, port, flag, step) in ops {
                now += Duration::from_millis(700 * step);
                let a = addr(port);
                match op {
                    0 => { l.add(now, a, flag && port % 3 == 0); }
                    1 | 2 => {
                        let skip = flag;
                        let persistent_only = op == 2;
                        let quiet = now < l.quiet_until && skip == l.quiet_skip_seeds && !persistent_only;
                        let expect = if quiet { None } else { scan(&l, now, skip, persistent_only) };
                        let got = l.next_matching(now, skip, persistent_only).map(|(a, _)| a);
                        proptest::prop_assert_eq!(got, expect);
                        if got.is_none() && !quiet && !persistent_only {
                            let earliest = l
                                .candidates
                                .values()
                                .filter(|c| !(c.in_use || (skip && c.seed)))
                                .map(|c| c.next_attempt)
                                .min()
                                .unwrap_or(Instant::FAR_FUTURE);
                            proptest::prop_assert_eq!(l.quiet_until, earliest);
                        }
                    }
                    3 => l.disconnected(now, a, flag),
                    4 => l.mark_seed(a),
                    5 => l.connected(a),
                    _ => if flag { l.ban(a) } else { l.mark_self(a) },
                }
                let mut free = [BTreeSet::new(), BTreeSet::new()];
                for (a, c) in &l.candidates {
                    PeerList::index(&mut free, *a, c);
                }
                proptest::prop_assert_eq!(&free, &l.free);
                proptest::prop_assert_eq!(l.persistent, l.candidates.values().filter(|c| c.persistent).count());
            }
        }
    }

    #[test]
    fn seeds_skipped_when_asked() {
        let t0 = Instant::ZERO;
        let mut l = PeerList::new(10);
        l.add(t0, addr(5), false);
        l.mark_seed(addr(5));
        assert_eq!(l.next_to_dial(t0, true), None);
        assert_eq!(l.next_to_dial(t0, false), Some(addr(5)));
    }
}
