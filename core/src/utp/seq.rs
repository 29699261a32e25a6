//! Sequence and acknowledgement numbers: 16-bit counters that wrap around.
//!
//! uTP numbers packets, not bytes (BEP 29, "seq_nr"), with 16 bits, so a long connection
//! wraps many times. Two numbers are compared by the shorter way round the circle: `a`
//! comes before `b` when walking up from `a` reaches `b` in fewer steps than walking down
//! (libtorrent's and libutp's `compare_less_wrap`). Numbers exactly half the circle apart
//! are unordered: neither comes before the other. Every window uTP keeps (packets in
//! flight, the reorder buffer) is far smaller than half the circle, so within a window the
//! order is total.

use std::fmt;
use std::ops::{Add, Sub};

/// A 16-bit packet sequence (or acknowledgement) number with wrap-around arithmetic.
#[derive(Copy, Clone, Default, PartialEq, Eq, Hash)]
pub struct Seq(pub u16);

impl Seq {
    /// The number `n` steps after this one, wrapping.
    #[inline]
    pub const fn plus(self, n: u16) -> Seq {
        Seq(self.0.wrapping_add(n))
    }

    /// The number `n` steps before this one, wrapping.
    #[inline]
    pub const fn minus(self, n: u16) -> Seq {
        Seq(self.0.wrapping_sub(n))
    }

    /// The next number.
    #[inline]
    pub const fn next(self) -> Seq {
        self.plus(1)
    }

    /// Steps from `earlier` up to `self`, wrapping (0 when equal; a number "before"
    /// `earlier` gives a large distance).
    #[inline]
    pub const fn since(self, earlier: Seq) -> u16 {
        self.0.wrapping_sub(earlier.0)
    }

    /// True when `self` comes strictly before `other` the short way round.
    #[inline]
    pub const fn before(self, other: Seq) -> bool {
        (other.0.wrapping_sub(self.0) as i16) > 0
    }

    /// True when `self` comes strictly after `other` the short way round.
    #[inline]
    pub const fn after(self, other: Seq) -> bool {
        other.before(self)
    }

    /// True when `self` lies in the inclusive range `first..=last` walking up from `first`
    /// (a range that wraps is fine; `last` before `first` is the whole range from `first`
    /// round to `last`).
    #[inline]
    pub const fn within(self, first: Seq, last: Seq) -> bool {
        self.since(first) <= last.since(first)
    }
}

impl Add<u16> for Seq {
    type Output = Seq;
    fn add(self, n: u16) -> Seq {
        self.plus(n)
    }
}

impl Sub<Seq> for Seq {
    type Output = u16;
    /// Wrapping distance, as [`Seq::since`].
    fn sub(self, earlier: Seq) -> u16 {
        self.since(earlier)
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps_at_the_top() {
        assert_eq!(Seq(65535).next(), Seq(0));
        assert_eq!(Seq(0).minus(1), Seq(65535));
        assert_eq!(Seq(3).since(Seq(65534)), 5);
        assert!(Seq(65534).before(Seq(3)));
        assert!(Seq(3).after(Seq(65534)));
        assert!(!Seq(3).before(Seq(65534)));
        assert!(Seq(65535).within(Seq(65530), Seq(4)));
        assert!(Seq(2).within(Seq(65530), Seq(4)));
        assert!(!Seq(5).within(Seq(65530), Seq(4)));
        assert!(!Seq(65529).within(Seq(65530), Seq(4)));
    }

    #[test]
    fn half_the_circle_is_unordered() {
        let a = Seq(10);
        let b = a.plus(0x8000);
        assert!(!a.before(b));
        assert!(!b.before(a));
        assert!(a.before(a.plus(0x7fff)));
        assert!(!a.plus(0x7fff).before(a));
    }

    #[test]
    fn equal_is_neither_before_nor_after() {
        for x in [0u16, 1, 32767, 32768, 65535] {
            assert!(!Seq(x).before(Seq(x)));
            assert!(!Seq(x).after(Seq(x)));
            assert!(Seq(x).within(Seq(x), Seq(x)));
        }
    }

    proptest! {
        /// Near the top of the range, the order of numbers a few steps apart is the
        /// order of the steps, whatever the wrap.
        #[test]
        fn order_follows_steps_across_the_wrap(start in 65000u16.., a in 0u16..2000, b in 0u16..2000) {
            let s = Seq(start);
            let (x, y) = (s.plus(a), s.plus(b));
            prop_assert_eq!(x.before(y), a < b);
            prop_assert_eq!(x.after(y), a > b);
            prop_assert_eq!(y.since(x), b.wrapping_sub(a));
            prop_assert_eq!(x.within(s, s.plus(a.max(b))), true);
            prop_assert_eq!((x + 1) - x, 1);
        }

        /// `before` is antisymmetric and agrees with the signed distance.
        #[test]
        fn before_is_antisymmetric(a: u16, b: u16) {
            let (x, y) = (Seq(a), Seq(b));
            prop_assert!(!(x.before(y) && y.before(x)));
            let d = b.wrapping_sub(a);
            prop_assert_eq!(x.before(y), d != 0 && d < 0x8000);
            prop_assert_eq!(x.plus(d), y);
            prop_assert_eq!(y.minus(d), x);
        }
    }
}
