//! The choke algorithm: which interested peers we upload to.
//!
//! This is BitTorrent's tit-for-tat with an optimistic unchoke, as described in Bram
//! Cohen's "Incentives Build Robustness in BitTorrent" and used (with variations) by every
//! mainstream client:
//!
//! * **Rounds.** Every [`ChokerConfig::round`] (10 s) the torrent asks for a decision.
//!   [`ChokerConfig::slots`] (4) *regular* slots go to interested peers:
//!   - while **downloading**, to the peers that upload to us fastest (tit-for-tat), leaving
//!     out peers that are *snubbing* us;
//!   - while **seeding**, round robin: every interested peer gets a *turn* of
//!     [`ChokerConfig::seed_turn`] (30 s), and the peers that have waited longest since
//!     their last turn go first (see [Seeding](#seeding-round-robin) below).
//! * **Optimistic unchoke.** One more slot goes to a peer picked at random among the
//!   interested peers that did not get a regular slot, so that newcomers and peers we have
//!   not tried get a chance to show they upload well. It is re-drawn every
//!   [`ChokerConfig::optimistic_rounds`] rounds (3, i.e. every 30 s) and stays unchoked
//!   until then even though it is not among the best. Peers connected for less than
//!   [`ChokerConfig::new_peer_age`] are [`ChokerConfig::new_peer_weight`] (3) times as
//!   likely to be drawn: they have nothing to offer yet and need a first piece to trade.
//! * **Snubbing.** A peer we have been interested in for more than
//!   [`ChokerConfig::snub_after`] (60 s) without it sending us a block is snubbing us; it
//!   loses any claim to a regular slot while downloading (it can still be drawn as the
//!   optimistic unchoke). See [`Choker::is_snubbed`] for the exact rule.
//! * **Interest.** Only interested peers are ever unchoked. A peer that loses interest is
//!   dropped at the next decision and its slot goes to the next best; a peer that becomes
//!   interested is considered at the next decision. The torrent may ask for an early
//!   decision with [`Choker::rerun`] (e.g. when a slot is free), which makes the same
//!   decision as [`Choker::round`] but leaves the optimistic rotation schedule alone.
//!
//! # Seeding: round robin
//!
//! A seed gets nothing back, so ranking by "what the peer gives us" is meaningless; ranking
//! by "how fast we upload to the peer" (the other classic choice) hands the whole upload to
//! the few peers with the fattest pipes and starves the rest. We prefer spreading the data
//! over as many peers as possible, so they can trade it among themselves, like libtorrent's
//! default seeding choker. Each interested peer gets a turn: a peer that holds a regular
//! slot keeps it for [`ChokerConfig::seed_turn`]; then the slot goes to the peer that has
//! waited longest since its last turn (a peer that never had one first, then the oldest
//! connection, then the lowest [`ConnId`]). With `n` interested peers every peer gets a turn
//! within `ceil(n / slots)` turns. Unlike libtorrent we measure turns in time, not in bytes
//! sent, so the choker needs no upload counters; a peer that is unchoked but asks for
//! nothing simply wastes its own turn.
//!
//! # Purity
//!
//! The choker is a plain value: its inputs are `now`, a slice of [`PeerView`]s, whether we
//! are seeding and the core's [`Rng`]; its output is a [`Decision`]. Its only state is the
//! round counter, the current optimistic peer and, per peer that held a regular slot, when
//! it got the slot and when it last held one (for round robin and to keep the status quo on
//! ties). Given the same inputs and the same seed it makes the same decisions, whatever the
//! order of the slice. It never reads the rng except to draw an optimistic peer.
//!
//! Rates that are NaN, negative or `-0.0` count as zero; `+inf` counts as the fastest.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::id::ConnId;
use crate::rng::Rng;
use crate::time::{Duration, Instant};

/// Tunables of the choker. `ChokerConfig::default()` is the classic algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChokerConfig {
    /// Regular (tit-for-tat or round-robin) upload slots, besides the optimistic one.
    pub slots: usize,
    /// Time between rounds (see [`Choker::next_round`]).
    pub round: Duration,
    /// The optimistic unchoke is re-drawn every this many rounds (0 is taken as 1).
    pub optimistic_rounds: u32,
    /// A peer we have been interested in that sends no block for longer than this is
    /// snubbing us.
    pub snub_after: Duration,
    /// Peers connected for less than this are "new" for the optimistic draw.
    pub new_peer_age: Duration,
    /// How many times as likely a new peer is to be drawn as an older one (0: never).
    pub new_peer_weight: u32,
    /// While seeding, how long a peer keeps a regular slot before it goes to the next peer.
    pub seed_turn: Duration,
}

impl Default for ChokerConfig {
    fn default() -> Self {
        ChokerConfig {
            slots: 4,
            round: Duration::from_secs(10),
            optimistic_rounds: 3,
            snub_after: Duration::from_secs(60),
            new_peer_age: Duration::from_secs(60),
            new_peer_weight: 3,
            seed_turn: Duration::from_secs(30),
        }
    }
}

/// What the choker needs to know about one connected peer, rebuilt by the torrent for
/// every decision.
///
/// Pass every peer that has completed the handshake, each once (if a [`ConnId`] appears
/// more than once only its first view counts). Peers that are not interested never affect
/// a decision (only interested peers are unchoked, ranked or drawn), so a caller may leave
/// them out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerView {
    pub conn: ConnId,
    /// The peer is interested in us (wants to download from us).
    pub interested: bool,
    /// Payload bytes per second the peer currently sends us. Ranks peers while downloading
    /// (a seed's decisions never look at it, nor at `downloaded`).
    pub download_rate: f64,
    /// Payload bytes the peer has sent us on this connection in all. Breaks ties between
    /// peers with the same current rate (most often zero): a peer that has reciprocated
    /// before goes ahead of one that never gave anything, so a free rider only gets a
    /// regular slot when nobody who ever uploaded to us wants it.
    pub downloaded: u64,
    /// When the connection was made. Peers younger than [`ChokerConfig::new_peer_age`] are
    /// favoured for the optimistic unchoke; older connections go first in round robin ties.
    pub connected_at: Instant,
    /// When the peer last sent us a block we had asked for; `None` if it never did.
    pub last_block_at: Option<Instant>,
    /// Since when we have been interested in the peer without interruption; `None` when we
    /// are not interested in it. The snub clock only runs while we are interested.
    pub am_interested_since: Option<Instant>,
}

/// The peers to have unchoked after a decision; every other peer should be choked.
///
/// `regular` holds at most [`ChokerConfig::slots`] peers, best first; `optimistic` is never
/// one of them. Every peer in a decision was in the views and interested.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// The tit-for-tat (or, while seeding, round-robin) slots, in order of preference.
    pub regular: Vec<ConnId>,
    /// The optimistic unchoke, if there is any interested peer left for it.
    pub optimistic: Option<ConnId>,
}

impl Decision {
    /// Whether `conn` should be unchoked.
    pub fn is_unchoked(&self, conn: ConnId) -> bool {
        self.optimistic == Some(conn) || self.regular.contains(&conn)
    }

    /// All the peers to have unchoked: the regular ones, then the optimistic one.
    #[cfg(test)]
    pub fn unchoked(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.regular.iter().copied().chain(self.optimistic)
    }

    /// How many peers to have unchoked.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.regular.len() + usize::from(self.optimistic.is_some())
    }
}

/// What the choker remembers about a peer that has held a regular slot.
#[derive(Debug, Clone, Copy, Default)]
struct SlotHistory {
    /// When the peer got the regular slot it holds now; `None` when it holds none.
    since: Option<Instant>,
    /// The last decision at which the peer held a regular slot.
    last: Option<Instant>,
}

/// The choke algorithm for one torrent. See the [module documentation](self).
///
/// Call [`Choker::round`] when `now >= next_round()`, [`Choker::rerun`] for an early
/// re-evaluation, and [`Choker::forget`] when a peer disconnects.
#[derive(Debug, Clone)]
pub struct Choker {
    config: ChokerConfig,
    /// Full rounds made so far.
    rounds: u64,
    next_round: Instant,
    optimistic: Option<ConnId>,
    history: BTreeMap<ConnId, SlotHistory>,
}

impl Choker {
    /// A choker whose first round is due at `now`.
    pub fn new(config: ChokerConfig, now: Instant) -> Self {
        Choker {
            config,
            rounds: 0,
            next_round: now,
            optimistic: None,
            history: BTreeMap::new(),
        }
    }

    /// When the torrent should call [`Choker::round`] next: at creation, then one
    /// [`ChokerConfig::round`] after the last round (however late that round was called).
    pub fn next_round(&self) -> Instant {
        self.next_round
    }

    /// The current optimistic unchoke.
    #[cfg(test)]
    pub fn optimistic(&self) -> Option<ConnId> {
        self.optimistic
    }

    /// Whether `peer` is snubbing us at `now`: we are interested in it, and neither since we
    /// became interested nor since its last block has it sent us a block for longer than
    /// [`ChokerConfig::snub_after`]. A peer we are not interested in is never snubbing us.
    pub fn is_snubbed(&self, now: Instant, peer: &PeerView) -> bool {
        let Some(since) = peer.am_interested_since else {
            return false;
        };
        let quiet_since = peer.last_block_at.map_or(since, |block| block.max(since));
        now.saturating_duration_since(quiet_since) > self.config.snub_after
    }

    /// A full round: decides who is unchoked, re-drawing the optimistic unchoke if this is
    /// a rotation round (the first round and every [`ChokerConfig::optimistic_rounds`]-th
    /// after it). Schedules the next round one [`ChokerConfig::round`] after `now`.
    pub fn round(
        &mut self,
        now: Instant,
        peers: &[PeerView],
        seeding: bool,
        rng: &mut Rng,
    ) -> Decision {
        let rotate = self
            .rounds
            .is_multiple_of(u64::from(self.config.optimistic_rounds.max(1)));
        self.rounds += 1;
        self.next_round = now + self.config.round;
        self.decide(now, peers, seeding, rng, rotate)
    }

    /// The same decision as [`Choker::round`] but out of schedule: neither the round count
    /// nor [`Choker::next_round`] changes and the optimistic peer is kept (it is only
    /// replaced if it left, lost interest or earned a regular slot).
    pub fn rerun(
        &mut self,
        now: Instant,
        peers: &[PeerView],
        seeding: bool,
        rng: &mut Rng,
    ) -> Decision {
        self.decide(now, peers, seeding, rng, false)
    }

    /// Forgets a peer that disconnected (its turn history, and the optimistic slot if it
    /// held it). Call it when a connection closes: [`ConnId`]s are not reused, so a peer
    /// that is never forgotten only costs a little memory.
    pub fn forget(&mut self, conn: ConnId) {
        self.history.remove(&conn);
        if self.optimistic == Some(conn) {
            self.optimistic = None;
        }
    }

    fn decide(
        &mut self,
        now: Instant,
        peers: &[PeerView],
        seeding: bool,
        rng: &mut Rng,
        rotate: bool,
    ) -> Decision {
        let peers = unique_by_conn(peers);
        let candidates: Vec<&PeerView> = peers
            .iter()
            .copied()
            .filter(|p| p.interested && (seeding || !self.is_snubbed(now, p)))
            .collect();
        let regular: Vec<ConnId> = if seeding {
            self.best_seeding(now, &candidates)
        } else {
            self.best_downloading(&candidates)
        };

        // The optimistic peer keeps its slot between rotations while it is still there,
        // interested and not promoted to a regular slot; otherwise the slot is refilled now
        // (which does not move the rotation schedule).
        let keep = !rotate
            && self.optimistic.is_some_and(|current| {
                !regular.contains(&current)
                    && peers.iter().any(|p| p.conn == current && p.interested)
            });
        if !keep {
            self.optimistic = self.draw_optimistic(now, &peers, &regular, rng);
        }

        self.record(now, &regular);
        Decision {
            regular,
            optimistic: self.optimistic,
        }
    }

    /// Downloading: fastest uploader to us first; on equal rates the peer already holding a
    /// regular slot (no churn for nothing), then the lowest [`ConnId`]. The first
    /// [`ChokerConfig::slots`] candidates in that order.
    fn best_downloading(&self, candidates: &[&PeerView]) -> Vec<ConnId> {
        // The sort keys, looked up once per peer rather than once per comparison.
        let mut keyed: Vec<(f64, u64, bool, ConnId)> = candidates
            .iter()
            .map(|p| {
                (
                    rate(p.download_rate),
                    p.downloaded,
                    self.holds_slot(p.conn),
                    p.conn,
                )
            })
            .collect();
        let order = |a: &(f64, u64, bool, ConnId), b: &(f64, u64, bool, ConnId)| {
            b.0.total_cmp(&a.0)
                .then_with(|| b.1.cmp(&a.1))
                .then_with(|| b.2.cmp(&a.2))
                .then_with(|| a.3.cmp(&b.3))
        };
        best(&mut keyed, self.config.slots, order)
            .iter()
            .map(|k| k.3)
            .collect()
    }

    /// Seeding: peers in the middle of their turn first (earliest turn first), then the
    /// others by when they last held a slot (never first), oldest connection, [`ConnId`].
    /// The first [`ChokerConfig::slots`] candidates in that order.
    fn best_seeding(&self, now: Instant, candidates: &[&PeerView]) -> Vec<ConnId> {
        type Key = (Option<Instant>, Option<Instant>, Instant, ConnId);
        let mut keyed: Vec<Key> = candidates
            .iter()
            .map(|p| {
                let history = self.history.get(&p.conn);
                let turn = history
                    .and_then(|h| h.since)
                    .filter(|&since| now.saturating_duration_since(since) < self.config.seed_turn);
                (turn, history.and_then(|h| h.last), p.connected_at, p.conn)
            })
            .collect();
        let order = |a: &Key, b: &Key| {
            match (a.0, b.0) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => a.1.cmp(&b.1).then_with(|| a.2.cmp(&b.2)),
            }
            .then_with(|| a.3.cmp(&b.3))
        };
        best(&mut keyed, self.config.slots, order)
            .iter()
            .map(|k| k.3)
            .collect()
    }

    fn holds_slot(&self, conn: ConnId) -> bool {
        self.history.get(&conn).is_some_and(|h| h.since.is_some())
    }

    /// Draws the optimistic peer among the interested peers without a regular slot,
    /// weighting new peers. `peers` is sorted by [`ConnId`], so the draw does not depend on
    /// the order the torrent listed them in.
    fn draw_optimistic(
        &self,
        now: Instant,
        peers: &[&PeerView],
        regular: &[ConnId],
        rng: &mut Rng,
    ) -> Option<ConnId> {
        let weighted: Vec<(ConnId, u64)> = peers
            .iter()
            .filter(|p| p.interested && !regular.contains(&p.conn))
            .map(|p| (p.conn, self.weight(now, p)))
            .filter(|&(_, weight)| weight > 0)
            .collect();
        let total: u64 = weighted.iter().map(|&(_, weight)| weight).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = rng.below(total);
        for (conn, weight) in weighted {
            if ticket < weight {
                return Some(conn);
            }
            ticket -= weight;
        }
        None
    }

    fn weight(&self, now: Instant, peer: &PeerView) -> u64 {
        if now.saturating_duration_since(peer.connected_at) < self.config.new_peer_age {
            u64::from(self.config.new_peer_weight)
        } else {
            1
        }
    }

    /// Remembers who holds a regular slot after a decision at `now`.
    fn record(&mut self, now: Instant, regular: &[ConnId]) {
        for (conn, history) in &mut self.history {
            if !regular.contains(conn) {
                history.since = None;
            }
        }
        for &conn in regular {
            let history = self.history.entry(conn).or_default();
            history.since.get_or_insert(now);
            history.last = Some(now);
        }
    }
}

/// A rate usable as a sort key: NaN, negative and `-0.0` become `0.0`.
fn rate(r: f64) -> f64 {
    if r > 0.0 { r } else { 0.0 }
}

/// The `k` least items of `items` under `order` (a total order), least first; `items` is
/// reordered. O(n + k log k) rather than a full sort.
fn best<T>(items: &mut [T], k: usize, order: impl Fn(&T, &T) -> Ordering) -> &[T] {
    let k = k.min(items.len());
    if k == 0 {
        return &[];
    }
    if k < items.len() {
        items.select_nth_unstable_by(k - 1, &order);
    }
    let head = &mut items[..k];
    head.sort_unstable_by(&order);
    head
}

/// The first view of each [`ConnId`], sorted by [`ConnId`].
fn unique_by_conn(peers: &[PeerView]) -> Vec<&PeerView> {
    // The torrent lists its peers in `ConnId` order, each once.
    if peers.windows(2).all(|w| w[0].conn < w[1].conn) {
        return peers.iter().collect();
    }
    let mut seen = BTreeSet::new();
    let mut unique: Vec<&PeerView> = peers.iter().filter(|p| seen.insert(p.conn)).collect();
    unique.sort_by_key(|p| p.conn);
    unique
}

#[cfg(test)]
mod tests;
