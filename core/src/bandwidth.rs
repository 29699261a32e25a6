//! Session-wide rate limits: a token bucket per direction, and a queue that hands its
//! tokens out fairly.
//!
//! Upload is paced by the blocks we send (a block is paid for when it is taken from a
//! peer's request queue), download by the requests we issue (a request is paid for when it
//! is sent: what we ask for is what arrives). Both count payload bytes only.
//!
//! While tokens last, anyone may spend them. Once they run out, every peer that wanted to
//! spend joins one queue for the whole session (all peers of all torrents); when tokens
//! come back, the session gives each peer in the queue one turn in order (a block to send,
//! or a few requests' worth), and a peer still wanting more goes to the back. So a peer
//! that asks for much does not starve one that asks for little, and a torrent with many
//! peers gets more than one with few only in proportion to its peers.
//!
//! The bucket allows a small debt (one block), so that a turn always makes progress; the
//! long-run rate is exact, since a debt is repaid before anything else is spent.

use std::collections::{BTreeSet, VecDeque};

use crate::id::{ConnId, TorrentId};
use crate::layout::BLOCK_LEN;
use crate::time::{Duration, Instant};

/// Nanoseconds per second: tokens are kept in byte-nanoseconds so that refills lose no
/// fraction of a byte however often they happen.
const NANOS: i128 = 1_000_000_000;
/// Most refills per second the bucket asks for while peers wait (a wake-up each).
const MAX_WAKES_PER_SEC: u64 = 50;

/// A token bucket: `rate` bytes per second, holding at most `capacity` bytes.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: u64,
    /// Tokens, in bytes × 10⁹ (may be negative: a debt).
    tokens: i128,
    /// Most tokens held, in bytes × 10⁹.
    capacity: i128,
    /// Tokens wanted before waiters get turns again, in bytes × 10⁹.
    quantum: i128,
    last: Instant,
}

impl TokenBucket {
    /// A bucket of `rate` bytes per second (at least 1), starting with one quantum.
    pub fn new(rate: u64, now: Instant) -> Self {
        let rate = rate.max(1);
        // Wake at most MAX_WAKES_PER_SEC times a second, and never for less than a block.
        let quantum = (rate / MAX_WAKES_PER_SEC).max(u64::from(BLOCK_LEN));
        // About a fifth of a second's worth may be sent in a burst after a pause.
        let capacity = (rate / 5).max(2 * quantum);
        TokenBucket {
            rate,
            tokens: i128::from(quantum) * NANOS,
            capacity: i128::from(capacity) * NANOS,
            quantum: i128::from(quantum) * NANOS,
            last: now,
        }
    }

    /// Adds the tokens earned since the last refill.
    pub fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos() as i128;
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * i128::from(self.rate)).min(self.capacity);
    }

    /// Whether anything may be spent (no debt left).
    pub fn has_tokens(&self) -> bool {
        self.tokens > 0
    }

    /// Whole blocks the tokens cover, at least one (the debt a turn may run into).
    pub fn blocks(&self) -> usize {
        let per_block = i128::from(BLOCK_LEN) * NANOS;
        usize::try_from(self.tokens.max(0).div_euclid(per_block))
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// Spends `bytes` (possibly into debt).
    pub fn spend(&mut self, bytes: u64) {
        self.tokens -= i128::from(bytes) * NANOS;
    }

    /// When the bucket will hold a quantum again (after the last refill).
    pub fn ready_at(&self) -> Instant {
        let missing = (self.quantum - self.tokens).max(0);
        let nanos = (missing + i128::from(self.rate) - 1) / i128::from(self.rate);
        self.last + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A peer connection waiting for bandwidth.
pub(crate) type Waiter = (TorrentId, ConnId);

/// One direction's limit: the bucket (none: unlimited) and the peers waiting for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Throttle {
    bucket: Option<TokenBucket>,
    waiting: VecDeque<Waiter>,
    queued: BTreeSet<Waiter>,
}

impl Throttle {
    /// A limit of `rate` bytes per second; `None`: unlimited.
    pub fn new(rate: Option<u64>, now: Instant) -> Self {
        Throttle {
            bucket: rate.map(|r| TokenBucket::new(r, now)),
            waiting: VecDeque::new(),
            queued: BTreeSet::new(),
        }
    }

    /// Whether a limit is set.
    pub fn is_limited(&self) -> bool {
        self.bucket.is_some()
    }

    /// Whether a peer may spend now outside a turn: unlimited, or tokens left and nobody
    /// waiting ahead of it.
    pub fn may_spend(&mut self, now: Instant) -> bool {
        match &mut self.bucket {
            None => true,
            Some(b) => {
                b.refill(now);
                self.waiting.is_empty() && b.has_tokens()
            }
        }
    }

    /// Whole blocks the tokens cover (at least one); unlimited: `usize::MAX`.
    pub fn blocks(&self) -> usize {
        self.bucket.as_ref().map_or(usize::MAX, TokenBucket::blocks)
    }

    /// Spends `bytes` of the limit.
    pub fn spend(&mut self, bytes: u64) {
        if let Some(b) = &mut self.bucket {
            b.spend(bytes);
        }
    }

    /// `who` wanted to spend and could not: it joins the back of the queue (once).
    pub fn wait(&mut self, who: Waiter) {
        if self.bucket.is_some() && self.queued.insert(who) {
            self.waiting.push_back(who);
        }
    }

    /// The next peer whose turn it is, if tokens are back and someone waits. The peer
    /// leaves the queue; it calls [`Throttle::wait`] again if it wants more.
    pub fn next_turn(&mut self, now: Instant) -> Option<Waiter> {
        let b = self.bucket.as_mut()?;
        if self.waiting.is_empty() {
            return None;
        }
        b.refill(now);
        if !b.has_tokens() {
            return None;
        }
        let who = self.waiting.pop_front()?;
        self.queued.remove(&who);
        Some(who)
    }

    /// Peers waiting.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// When waiting peers get their next turns, if any wait.
    pub fn deadline(&self) -> Option<Instant> {
        if self.waiting.is_empty() {
            return None;
        }
        self.bucket.as_ref().map(TokenBucket::ready_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn a_bucket_earns_its_rate_and_holds_at_most_its_capacity() {
        let mut b = TokenBucket::new(100_000, at(0));
        // Starts with one quantum (a block, at this rate), nothing more.
        assert_eq!(b.blocks(), 1);
        b.spend(2 * 16384);
        assert!(!b.has_tokens());
        // 163.84 ms earn one block: the debt of one is repaid.
        b.refill(at(163));
        assert!(!b.has_tokens());
        b.refill(at(164));
        assert!(b.has_tokens());
        // A long pause fills it to its capacity only (32 KiB at this rate: two quanta).
        b.refill(at(60_000));
        assert_eq!(b.blocks(), 2);
    }

    #[test]
    fn spending_into_debt_is_repaid_first() {
        let mut b = TokenBucket::new(1_000_000, at(0));
        let start = b.tokens;
        b.spend(1_000_000 + (start / NANOS) as u64);
        // One second of debt: ready only once it is repaid and a quantum earned.
        let ready = b.ready_at();
        assert!(ready >= at(1_000), "{ready:?}");
        assert!(ready <= at(1_021), "{ready:?}");
        b.refill(at(999));
        assert!(!b.has_tokens());
        b.refill(at(1_001));
        assert!(b.has_tokens());
    }

    #[test]
    fn refills_in_small_steps_lose_nothing() {
        let mut a = TokenBucket::new(333_333, at(0));
        let mut b = a.clone();
        a.spend(10_000_000);
        b.spend(10_000_000);
        for ms in 1..=10_000 {
            a.refill(at(ms));
        }
        b.refill(at(10_000));
        assert_eq!(a.tokens, b.tokens);
    }

    #[test]
    fn waiters_get_turns_in_order_once_each() {
        let mut t = Throttle::new(Some(50_000), at(0));
        let p = |n: u64| (TorrentId(1), ConnId(n));
        assert!(t.may_spend(at(0)));
        t.spend(100_000);
        assert!(!t.may_spend(at(0)));
        t.wait(p(1));
        t.wait(p(2));
        t.wait(p(1));
        assert_eq!(t.waiting(), 2);
        assert_eq!(t.next_turn(at(0)), None, "no tokens yet");
        let due = t.deadline().expect("waiters have a deadline");
        assert!(due > at(1_000));
        assert_eq!(t.next_turn(due), Some(p(1)));
        // Someone is still waiting: others may not jump the queue.
        assert!(!t.may_spend(due));
        assert_eq!(t.next_turn(due), Some(p(2)));
        assert_eq!(t.next_turn(due), None);
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn no_limit_never_waits() {
        let mut t = Throttle::new(None, at(0));
        t.spend(u64::MAX / 2);
        assert!(t.may_spend(at(0)));
        t.wait((TorrentId(1), ConnId(1)));
        assert_eq!(t.waiting(), 0);
        assert_eq!(t.deadline(), None);
        assert_eq!(t.blocks(), usize::MAX);
    }
}
