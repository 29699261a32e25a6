//! Path MTU discovery: how large a datagram the path carries, found by probing upward
//! from a size every path carries.
//!
//! A connection starts with datagrams of [`super::UtpConfig::initial_packet_size`] (1,232
//! bytes: what the smallest IPv6 link, 1,280 bytes, carries after the IPv6 and UDP
//! headers; IPv4 paths that carry less are rare) and searches between that *floor* and a
//! *ceiling* ([`super::UtpConfig::max_packet_size`], 1,472 bytes by default: Ethernet's
//! 1,500 minus the IPv4 and UDP headers; 1,452 for IPv6). Now and then one data packet is
//! sent as a probe: first of the ceiling's size (most paths carry a full Ethernet frame,
//! and one probe finds it), then, as libtorrent does, of the size halfway between. An
//! acknowledged probe raises the floor to its size, and every later packet is that large;
//! a lost one lowers the ceiling below it, after [`PROBE_ATTEMPTS`] losses at that size in
//! a row (a loss is more often congestion than size, RFC 8899's `MAX_PROBES`). The search
//! stops once the two are within [`DONE`] bytes. A lost probe is not a congestion signal:
//! the window is not cut for it.
//!
//! Unlike libtorrent, a probe does not carry more payload than other packets: it is a
//! packet of the floor's size padded up with extension headers of a type nobody defines
//! ([`super::packet::EXT_PADDING`]), which receivers skip by their length (libtorrent and
//! libutp both walk the extension chain and ignore types they do not know). A lost probe is
//! therefore resent without its padding, at the floor's size, which the path is known to
//! carry; libtorrent must resend its probe's payload at the probe's size, which may never
//! arrive on a path whose routers drop it. The padding costs a probe's extra bytes once per
//! probe. A receiver that drops packets with unknown extensions makes every probe fail, and
//! the search ends at the floor.
//!
//! Datagrams never exceed the floor unless they are probes, so nothing above 1,400 bytes
//! is sent on a path that has not carried a probe of that size.
//!
//! Paths change, and routers that drop a datagram too large for the next link often say
//! nothing (no ICMP comes back, and a sans-IO core would not see it anyway): a *black
//! hole*. After [`BLACK_HOLE_TIMEOUTS`] retransmission timeouts in a row, each finding a
//! full packet of the floor's size unacknowledged, the floor is no longer trusted ([`Mtu::black_hole`]): it drops to the starting size (or, from there, to
//! [`SAFE_PACKET_SIZE`]), the ceiling to just below the old floor, and the search goes on
//! between them. A timeout alone is not enough, as a burst of loss or a short outage looks
//! the same; libtorrent reacts to repeated timeouts the same way. What a shrink cannot do
//! is cut packets already sent: a sequence number is bound to its payload at the first
//! transmission, and sending the same number with less data would corrupt the stream if
//! the peer had the first copy after all. Those packets are resent as they were and need
//! the path back (or IP fragmentation: IPv4 paths fragment datagrams sent without the
//! don't-fragment bit); everything written after the shrink goes at the new size.

use super::seq::Seq;

/// The search stops when ceiling and floor are this close (bytes).
pub const DONE: usize = 8;
/// Losses of probes of one size in a row before the ceiling comes down below it.
pub const PROBE_ATTEMPTS: u32 = 3;
/// Retransmission timeouts in a row after which the floor is presumed to have become a
/// black hole.
pub const BLACK_HOLE_TIMEOUTS: u32 = 2;
/// The floor after a black hole when it already was at the starting size: IPv4's smallest
/// datagram every host must take (576 bytes) less the IPv4 and UDP headers.
pub const SAFE_PACKET_SIZE: usize = 548;

/// One connection's path MTU search.
#[derive(Debug, Clone)]
pub struct Mtu {
    /// The floor the search started from.
    start: usize,
    floor: usize,
    ceiling: usize,
    /// The probe in flight: its sequence number and datagram size.
    probe: Option<(Seq, usize)>,
    /// Losses in a row of probes of the size [`Mtu::next_probe`] gives.
    failures: u32,
    /// The ceiling itself was found too large: halve from now on.
    halving: bool,
}

impl Mtu {
    /// A search between `floor` and `ceiling` (datagram sizes, headers included);
    /// `floor == ceiling` is a fixed size.
    pub fn new(floor: usize, ceiling: usize) -> Mtu {
        Mtu {
            start: floor.min(ceiling),
            floor: floor.min(ceiling),
            ceiling,
            probe: None,
            failures: 0,
            halving: false,
        }
    }

    /// The largest datagram known to arrive: what every packet but a probe uses.
    pub fn floor(&self) -> usize {
        self.floor
    }

    /// The smallest datagram size known (or assumed) not to arrive, minus one.
    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// The probe in flight, if any.
    pub fn probe(&self) -> Option<(Seq, usize)> {
        self.probe
    }

    /// The size of the next probe, if the search goes on and no probe is in flight.
    pub fn next_probe(&self) -> Option<usize> {
        if self.probe.is_some() || self.ceiling.saturating_sub(self.floor) <= DONE {
            return None;
        }
        if !self.halving {
            return Some(self.ceiling);
        }
        Some(self.floor + (self.ceiling - self.floor).div_ceil(2))
    }

    /// Packet `seq` goes out as a probe of `size` bytes.
    pub fn sent_probe(&mut self, seq: Seq, size: usize) {
        self.probe = Some((seq, size));
    }

    /// The probe was acknowledged (its first transmission arrived): the floor rises to
    /// its size. Returns the new floor.
    pub fn probe_acked(&mut self) -> usize {
        if let Some((_, size)) = self.probe.take() {
            self.floor = self.floor.max(size).min(self.ceiling);
            self.failures = 0;
        }
        self.floor
    }

    /// The probe was lost (or its fate cannot be told): after [`PROBE_ATTEMPTS`] losses of
    /// that size in a row, the ceiling comes down below it.
    pub fn probe_lost(&mut self) {
        if let Some((_, size)) = self.probe.take() {
            self.failures += 1;
            if self.failures >= PROBE_ATTEMPTS {
                self.ceiling = size.saturating_sub(1).max(self.floor);
                self.failures = 0;
                self.halving = true;
            }
        }
    }

    /// Retransmission timeouts came [`BLACK_HOLE_TIMEOUTS`] times in a row: the path may
    /// no longer carry the floor. The floor drops to the starting size, or to
    /// [`SAFE_PACKET_SIZE`] if it was there already (never up, never below the smallest
    /// size uTP uses), the ceiling to just below the old floor, and the search goes on
    /// between them by halving. Returns the new floor.
    pub fn black_hole(&mut self) -> usize {
        let old = self.floor;
        let new = if old > self.start {
            self.start
        } else {
            SAFE_PACKET_SIZE.clamp(super::MIN_PACKET_SIZE, old)
        };
        self.probe = None;
        if new < old {
            self.floor = new;
            self.ceiling = old - 1;
            self.failures = 0;
            self.halving = true;
        }
        self.floor
    }

    /// The probe's outcome cannot be known (everything in flight was presumed lost): the
    /// search forgets it without learning anything.
    pub fn probe_abandoned(&mut self) {
        self.probe = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_halves_toward_the_path_mtu() {
        // The path carries 1,400-byte datagrams; search between 1,232 and 1,472.
        let path = 1400;
        let mut m = Mtu::new(1232, 1472);
        let mut sizes = Vec::new();
        let mut seq = Seq(0);
        while let Some(size) = m.next_probe() {
            sizes.push(size);
            seq = seq.next();
            m.sent_probe(seq, size);
            assert_eq!(m.next_probe(), None, "one probe at a time");
            if size <= path {
                m.probe_acked();
            } else {
                // Lost three times in a row before the ceiling gives.
                for _ in 0..PROBE_ATTEMPTS {
                    m.probe_lost();
                    if let Some(again) = m.next_probe().filter(|_| m.ceiling() >= size) {
                        assert_eq!(again, size);
                        m.sent_probe(seq, size);
                    }
                }
            }
            assert!(m.floor() <= path && path <= m.ceiling(), "{m:?}");
            assert!(sizes.len() < 20, "{sizes:?}");
        }
        assert_eq!(sizes, vec![1472, 1352, 1412, 1382, 1397, 1404]);
        assert_eq!((m.floor(), m.ceiling()), (1397, 1403));
    }

    #[test]
    fn a_fixed_size_never_probes_and_an_abandoned_probe_teaches_nothing() {
        assert_eq!(Mtu::new(1400, 1400).next_probe(), None);
        let mut m = Mtu::new(1232, 1472);
        m.sent_probe(Seq(3), 1472);
        m.probe_abandoned();
        assert_eq!(
            (m.floor(), m.ceiling(), m.next_probe()),
            (1232, 1472, Some(1472))
        );
        // A single loss does not move the ceiling; an acknowledgement resets the count.
        m.sent_probe(Seq(4), 1472);
        m.probe_lost();
        m.sent_probe(Seq(5), 1472);
        m.probe_lost();
        m.sent_probe(Seq(6), 1472);
        assert_eq!(m.probe_acked(), 1472);
        assert_eq!(m.next_probe(), None, "found in one probe");
    }

    #[test]
    fn a_black_hole_brings_the_floor_down_and_the_search_resumes_below_it() {
        let mut m = Mtu::new(1232, 1472);
        m.sent_probe(Seq(1), 1472);
        m.probe_acked();
        assert_eq!((m.floor(), m.next_probe()), (1472, None));
        // The path now carries 1,300 bytes: back to the start, searching below 1,472.
        assert_eq!(m.black_hole(), 1232);
        assert_eq!(m.ceiling(), 1471);
        let mut sizes = Vec::new();
        while let Some(size) = m.next_probe() {
            sizes.push(size);
            m.sent_probe(Seq(2), size);
            if size <= 1300 {
                m.probe_acked();
            } else {
                for _ in 0..PROBE_ATTEMPTS {
                    m.sent_probe(Seq(2), size);
                    m.probe_lost();
                }
            }
            assert!(sizes.len() < 20);
        }
        assert_eq!(sizes, vec![1352, 1292, 1322, 1307, 1299]);
        assert!((1300 - DONE..=1300).contains(&m.floor()), "{m:?}");
        // Again, from the start: the safe size; from there, nothing lower.
        m.black_hole();
        assert_eq!((m.floor(), m.black_hole()), (1232, SAFE_PACKET_SIZE));
        assert_eq!(m.black_hole(), SAFE_PACKET_SIZE);
        assert_eq!(m.ceiling(), 1231);
        // A fixed small size stays where it is.
        let mut small = Mtu::new(400, 400);
        assert_eq!((small.black_hole(), small.next_probe()), (400, None));
    }
}
