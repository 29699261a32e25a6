//! The virtual clock and the event queue: events ordered by (time, sequence number), the
//! sequence number breaking ties in the order events were scheduled. Nothing here reads a
//! real clock.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tessera_core::Instant;

struct Entry<E> {
    /// `(time in nanoseconds << 64) | sequence`: the order as one integer comparison.
    key: u128,
    event: E,
}

impl<E> Entry<E> {
    fn new(at: Instant, seq: u64, event: E) -> Self {
        Entry {
            key: (u128::from(at.as_nanos()) << 64) | u128::from(seq),
            event,
        }
    }

    fn at(&self) -> Instant {
        Instant::from_nanos((self.key >> 64) as u64)
    }

    fn seq(&self) -> u64 {
        self.key as u64
    }
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest event must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key)
    }
}

/// One clock and the events scheduled on it.
pub struct Queue<E> {
    now: Instant,
    seq: u64,
    /// The sequence number of the event popped last.
    current: u64,
    heap: BinaryHeap<Entry<E>>,
}

impl<E> std::fmt::Debug for Queue<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("now", &self.now)
            .field("pending", &self.heap.len())
            .finish()
    }
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            now: Instant::ZERO,
            seq: 0,
            current: 0,
            heap: BinaryHeap::new(),
        }
    }
}

impl<E> Queue<E> {
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Schedules `event` at `at` (never before now: the past is clamped to now).
    pub fn at(&mut self, at: Instant, event: E) {
        self.seq += 1;
        self.heap
            .push(Entry::new(at.max(self.now), self.seq, event));
    }

    /// Takes the next sequence number without scheduling anything: an event that may or
    /// may not be needed later can then be scheduled with [`Queue::at_reserved`] and take
    /// exactly the place in the order it would have had if scheduled now.
    pub fn reserve(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Schedules `event` at `at` with a sequence number from [`Queue::reserve`] (once).
    pub fn at_reserved(&mut self, at: Instant, seq: u64, event: E) {
        self.heap.push(Entry::new(at.max(self.now), seq, event));
    }

    /// Where the event being handled (the last one popped) stands in the order.
    pub fn position(&self) -> (Instant, u64) {
        (self.now, self.current)
    }

    /// The next event, advancing the clock to it; `None` when nothing is left or the next
    /// event lies after `limit` (the clock then stays put).
    pub fn pop(&mut self, limit: Instant) -> Option<E> {
        if self.heap.peek()?.at() > limit {
            return None;
        }
        let e = self.heap.pop()?;
        self.now = e.at();
        self.current = e.seq();
        Some(e.event)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_then_sequence_order() {
        let mut q = Queue::default();
        q.at(Instant::from_nanos(5), "b");
        q.at(Instant::from_nanos(1), "a");
        q.at(Instant::from_nanos(5), "c");
        q.at(Instant::from_nanos(9), "late");
        let limit = Instant::from_nanos(6);
        assert_eq!(q.pop(limit), Some("a"));
        assert_eq!(q.pop(limit), Some("b"));
        assert_eq!(q.pop(limit), Some("c"));
        assert_eq!(q.now(), Instant::from_nanos(5));
        assert_eq!(q.pop(limit), None);
        // The past is clamped to now.
        q.at(Instant::ZERO, "now");
        assert_eq!(q.pop(limit), Some("now"));
        assert_eq!(q.now(), Instant::from_nanos(5));
    }

    #[test]
    fn a_reserved_place_keeps_its_order() {
        let mut q = Queue::default();
        let t = Instant::from_nanos(7);
        q.at(t, "first");
        let seq = q.reserve();
        q.at(t, "third");
        // Scheduled last, but in the place reserved before "third".
        q.at_reserved(t, seq, "second");
        let far = Instant::FAR_FUTURE;
        assert_eq!(q.pop(far), Some("first"));
        assert!(q.position() < (t, seq));
        assert_eq!(q.pop(far), Some("second"));
        assert_eq!(q.position(), (t, seq));
        assert_eq!(q.pop(far), Some("third"));
    }
}
