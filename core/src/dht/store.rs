//! The peers other nodes announced to us (`announce_peer`), served back in `get_peers`
//! replies.
//!
//! Bounded, since strangers fill it: at most [`StoreLimits::max_hashes`] info hashes (when
//! full, a new one replaces the hash with the fewest peers) and
//! [`StoreLimits::max_peers_per_hash`] peers per hash (one per IP address: a new announce from
//! the same address replaces its entry; when full, a new address replaces the entry closest to
//! expiring). An entry expires [`PEER_TTL`] after its last announce.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::id::InfoHash;
use crate::rng::Rng;
use crate::time::{Duration, Instant};

/// How long an announce is kept (BEP 5 leaves it open; 30 minutes is what clients use).
pub const PEER_TTL: Duration = Duration::from_secs(30 * 60);
/// How often expired entries are swept out.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The bounds of a [`PeerStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most info hashes kept.
    pub max_hashes: usize,
    /// Most peers kept per info hash.
    pub max_peers_per_hash: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_hashes: 2000,
            max_peers_per_hash: 200,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    addr: SocketAddr,
    expires: Instant,
}

/// Announced peers by info hash.
#[derive(Debug, Clone)]
pub struct PeerStore {
    limits: StoreLimits,
    hashes: BTreeMap<InfoHash, Vec<Entry>>,
    peers: usize,
    next_sweep: Instant,
}

impl PeerStore {
    /// An empty store.
    pub fn new(now: Instant, limits: StoreLimits) -> PeerStore {
        PeerStore {
            limits,
            hashes: BTreeMap::new(),
            peers: 0,
            next_sweep: now + SWEEP_INTERVAL,
        }
    }

    /// Its bounds.
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// Info hashes held.
    pub fn hashes(&self) -> usize {
        self.hashes.len()
    }

    /// Peers held, over all info hashes.
    pub fn peers(&self) -> usize {
        self.peers
    }

    /// Peers held for one info hash.
    pub fn peers_of(&self, info_hash: &InfoHash) -> usize {
        self.hashes.get(info_hash).map_or(0, Vec::len)
    }

    /// Whether `addr` is held for `info_hash` (and not expired at `now`).
    pub fn contains(&self, now: Instant, info_hash: &InfoHash, addr: SocketAddr) -> bool {
        self.hashes
            .get(info_hash)
            .is_some_and(|v| v.iter().any(|e| e.addr == addr && e.expires > now))
    }

    /// Records that `addr` downloads `info_hash`.
    pub fn announce(&mut self, now: Instant, info_hash: InfoHash, addr: SocketAddr) {
        if self.limits.max_hashes == 0 || self.limits.max_peers_per_hash == 0 {
            return;
        }
        let expires = now + PEER_TTL;
        if !self.hashes.contains_key(&info_hash) && self.hashes.len() >= self.limits.max_hashes {
            let smallest = self
                .hashes
                .iter()
                .min_by_key(|(_, v)| v.len())
                .map(|(h, _)| *h);
            if let Some(h) = smallest
                && let Some(v) = self.hashes.remove(&h)
            {
                self.peers -= v.len();
            }
        }
        let entries = self.hashes.entry(info_hash).or_default();
        if let Some(e) = entries.iter_mut().find(|e| e.addr.ip() == addr.ip()) {
            e.addr = addr;
            e.expires = expires;
            return;
        }
        if entries.len() >= self.limits.max_peers_per_hash {
            if let Some(oldest) = entries.iter_mut().min_by_key(|e| e.expires) {
                *oldest = Entry { addr, expires };
            }
            return;
        }
        entries.push(Entry { addr, expires });
        self.peers += 1;
    }

    /// Up to `max` live peers of `info_hash` whose address family `accept` takes, chosen at
    /// random when there are more.
    pub fn get(
        &self,
        now: Instant,
        info_hash: &InfoHash,
        max: usize,
        accept: impl Fn(&SocketAddr) -> bool,
        rng: &mut Rng,
    ) -> Vec<SocketAddr> {
        let Some(entries) = self.hashes.get(info_hash) else {
            return Vec::new();
        };
        let mut out: Vec<SocketAddr> = entries
            .iter()
            .filter(|e| e.expires > now && accept(&e.addr))
            .map(|e| e.addr)
            .collect();
        if out.len() > max {
            rng.shuffle(&mut out);
            out.truncate(max);
        }
        out
    }

    /// When [`PeerStore::handle_timeout`] next has something to do.
    pub fn next_sweep(&self) -> Instant {
        self.next_sweep
    }

    /// Drops expired entries, at most once per [`SWEEP_INTERVAL`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        let mut dropped = 0;
        self.hashes.retain(|_, v| {
            let before = v.len();
            v.retain(|e| e.expires > now);
            dropped += before - v.len();
            !v.is_empty()
        });
        self.peers -= dropped;
    }

    /// Checks the store's bounds and counters; a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.hashes.len() > self.limits.max_hashes {
            return Err(format!("{} info hashes stored", self.hashes.len()));
        }
        let mut total = 0;
        for (h, v) in &self.hashes {
            if v.len() > self.limits.max_peers_per_hash {
                return Err(format!("{} peers stored for {h}", v.len()));
            }
            for (i, e) in v.iter().enumerate() {
                if v[..i].iter().any(|o| o.addr.ip() == e.addr.ip()) {
                    return Err(format!("{} stored twice for {h}", e.addr.ip()));
                }
            }
            total += v.len();
        }
        if total != self.peers {
            return Err(format!("peer count {} but {total} stored", self.peers));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;

    fn h(b: u8) -> InfoHash {
        InfoHash([b; 20])
    }

    fn addr(i: u32, port: u16) -> SocketAddr {
        SocketAddr::from((i.to_be_bytes(), port))
    }

    #[test]
    fn announces_are_served_per_family_and_expire() {
        let t0 = Instant::ZERO;
        let mut rng = Rng::from_u64(1);
        let mut s = PeerStore::new(t0, StoreLimits::default());
        s.announce(t0, h(1), addr(1, 10));
        s.announce(t0, h(1), "[2001:db8::1]:11".parse().unwrap());
        // The same address again replaces its port.
        s.announce(t0, h(1), addr(1, 12));
        assert_eq!(s.peers(), 2);
        let v4 = s.get(t0, &h(1), 50, SocketAddr::is_ipv4, &mut rng);
        assert_eq!(v4, vec![addr(1, 12)]);
        let v6 = s.get(t0, &h(1), 50, SocketAddr::is_ipv6, &mut rng);
        assert_eq!(v6.len(), 1);
        assert!(s.get(t0, &h(2), 50, |_| true, &mut rng).is_empty());

        let late = t0 + PEER_TTL;
        assert!(s.get(late, &h(1), 50, |_| true, &mut rng).is_empty());
        s.handle_timeout(late);
        assert_eq!((s.hashes(), s.peers()), (0, 0));
        s.check_invariants().unwrap();
    }

    #[test]
    fn bounded_in_hashes_and_peers() {
        let t0 = Instant::ZERO;
        let mut rng = Rng::from_u64(1);
        let limits = StoreLimits {
            max_hashes: 3,
            max_peers_per_hash: 4,
        };
        let mut s = PeerStore::new(t0, limits);
        for i in 0..10 {
            s.announce(t0 + Duration::from_secs(u64::from(i)), h(1), addr(i, 1));
        }
        assert_eq!(s.peers_of(&h(1)), 4);
        // The newest replaced the ones closest to expiring.
        assert!(s.contains(t0, &h(1), addr(9, 1)));
        assert!(!s.contains(t0, &h(1), addr(0, 1)));
        assert_eq!(s.get(t0, &h(1), 2, |_| true, &mut rng).len(), 2);
        for b in 2..6 {
            s.announce(t0, h(b), addr(100, 1));
        }
        assert_eq!(s.hashes(), 3);
        // The big hash survived; small ones were replaced.
        assert_eq!(s.peers_of(&h(1)), 4);
        assert_eq!(s.peers_of(&h(5)), 1);
        s.check_invariants().unwrap();
    }

    proptest! {
        #[test]
        fn bounds_hold_under_any_announces(ops in proptest::collection::vec((0u8..8, 0u32..20, 0u64..4000), 0..300)) {
            let limits = StoreLimits { max_hashes: 4, max_peers_per_hash: 5 };
            let mut s = PeerStore::new(Instant::ZERO, limits);
            let mut now = Instant::ZERO;
            for (hash, ip, dt) in ops {
                now += Duration::from_secs(dt);
                s.handle_timeout(now);
                s.announce(now, h(hash), addr(ip, 7));
                prop_assert!(s.check_invariants().is_ok(), "{:?}", s.check_invariants());
            }
        }
    }
}
