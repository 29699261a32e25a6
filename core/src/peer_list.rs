//! The addresses a torrent knows of (from trackers, the command line, incoming peers), and
//! when each may be dialled again.

use std::collections::BTreeMap;
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
}

/// Why an address must never be dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Never {
    /// It is us (the tracker hands every client its own address back).
    Ourselves,
    /// It sent data that failed the hash check too often, or broke the protocol.
    Banned,
}

#[derive(Debug, Default)]
pub(crate) struct PeerList {
    candidates: BTreeMap<SocketAddr, Candidate>,
    never: BTreeMap<SocketAddr, Never>,
    max: usize,
    /// No candidate can be dialled before this (with `quiet_skip_seeds`); reset by every
    /// change. Saves scanning every candidate at every tick when none is due.
    quiet_until: Instant,
    quiet_skip_seeds: bool,
}

impl PeerList {
    pub fn new(max: usize) -> Self {
        PeerList {
            candidates: BTreeMap::new(),
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

    /// Learns an address. Returns whether it is new and dialable.
    pub fn add(&mut self, now: Instant, addr: SocketAddr, persistent: bool) -> bool {
        self.quiet_until = Instant::ZERO;
        if self.never.contains_key(&addr) || addr.port() == 0 {
            return false;
        }
        if let Some(c) = self.candidates.get_mut(&addr) {
            c.persistent |= persistent;
            return false;
        }
        if self.candidates.len() >= self.max && !persistent {
            return false;
        }
        self.candidates.insert(
            addr,
            Candidate {
                persistent,
                failures: 0,
                next_attempt: now,
                in_use: false,
                seed: false,
            },
        );
        true
    }

    /// An address to dial now, marked in use. Seeds are skipped when `skip_seeds`.
    #[cfg(test)]
    pub fn next_to_dial(&mut self, now: Instant, skip_seeds: bool) -> Option<SocketAddr> {
        self.next_matching(now, skip_seeds, false)
            .map(|(addr, _)| addr)
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
        let eligible = |c: &Candidate| {
            !(c.in_use || (skip_seeds && c.seed) || (persistent_only && !c.persistent))
        };
        let found = self
            .candidates
            .iter_mut()
            .filter(|(_, c)| eligible(c) && c.next_attempt <= now)
            .min_by_key(|(_, c)| (c.failures, c.next_attempt));
        match found {
            Some((addr, c)) => {
                c.in_use = true;
                self.quiet_until = Instant::ZERO;
                Some((*addr, c.persistent))
            }
            None => {
                if !persistent_only {
                    self.quiet_until = self
                        .candidates
                        .values()
                        .filter(|c| eligible(c))
                        .map(|c| c.next_attempt)
                        .min()
                        .unwrap_or(Instant::FAR_FUTURE);
                    self.quiet_skip_seeds = skip_seeds;
                }
                None
            }
        }
    }

    /// True when some address could be dialled at `now` or later.
    pub fn has_dialable(&self, skip_seeds: bool) -> bool {
        self.candidates
            .values()
            .any(|c| !(c.in_use || skip_seeds && c.seed))
    }

    /// A connection was established and the handshake accepted.
    pub fn connected(&mut self, addr: SocketAddr) {
        self.quiet_until = Instant::ZERO;
        if let Some(c) = self.candidates.get_mut(&addr) {
            c.failures = 0;
        }
    }

    pub fn mark_seed(&mut self, addr: SocketAddr) {
        self.quiet_until = Instant::ZERO;
        if let Some(c) = self.candidates.get_mut(&addr) {
            c.seed = true;
        }
    }

    /// The connection to `addr` ended; `failed` when it never got going (refused, reset
    /// during the handshake). Schedules the next attempt with exponential back-off.
    pub fn disconnected(&mut self, now: Instant, addr: SocketAddr, failed: bool) {
        self.quiet_until = Instant::ZERO;
        let Some(c) = self.candidates.get_mut(&addr) else {
            return;
        };
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
    }

    /// The address is us: never dial it.
    pub fn mark_self(&mut self, addr: SocketAddr) {
        self.candidates.remove(&addr);
        self.never.insert(addr, Never::Ourselves);
    }

    /// The address misbehaved: never dial it again.
    pub fn ban(&mut self, addr: SocketAddr) {
        self.candidates.remove(&addr);
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
    fn seeds_skipped_when_asked() {
        let t0 = Instant::ZERO;
        let mut l = PeerList::new(10);
        l.add(t0, addr(5), false);
        l.mark_seed(addr(5));
        assert_eq!(l.next_to_dial(t0, true), None);
        assert_eq!(l.next_to_dial(t0, false), Some(addr(5)));
    }
}
