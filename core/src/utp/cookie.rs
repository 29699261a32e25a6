//! SYN cookies: accepting a connection without holding state for it until the initiator
//! proves it got our answer.
//!
//! Every accepted connection's first sequence number is a cookie: 16 bits of a keyed hash
//! of the peer's address, the SYN's connection id and sequence number, and the current
//! time period. While the half-open table is full (a SYN flood, or a burst of real
//! peers), a SYN gets its `ST_STATE` and the socket keeps nothing. The initiator answers
//! with its first data packet, whose
//! acknowledgement number is that sequence number minus one, whose connection id is the
//! SYN's plus one and whose sequence number is the SYN's plus one: everything needed to
//! recompute the cookie and check it. A match creates the connection as if the SYN had
//! been kept. Nobody already in the table is pushed out, so a flood can no longer evict a
//! real peer between its SYN and its first data packet; and a connection whose half-open
//! time ran out before the initiator's first data packet got through (lost and resent on
//! a bad path) comes back the same way.
//!
//! The cookie is as strong as 16 bits allow: a forger who cannot see our answers (a spoofed
//! address) guesses it once in 32,768 tries (two periods are accepted), and a success
//! costs one connection slot, bounded by [`super::UtpConfig::max_connections`], until the
//! session closes it. The key comes from the socket's seeded random source; SHA-1 is the
//! keyed hash (already a dependency of the core, and only two of its bytes are used).

use std::net::SocketAddr;
use std::time::Duration;

use sha1::{Digest, Sha1};

use super::seq::Seq;
use crate::time::Instant;

/// A cookie's time period: it is accepted in its period and the next, so a cookie lives
/// between 30 and 60 seconds.
pub const PERIOD: Duration = Duration::from_secs(30);

/// The key and the arithmetic of SYN cookies.
#[derive(Debug, Clone)]
pub struct Cookies {
    key: [u8; 16],
    /// When the last cookie was handed out: a data packet for no connection is checked
    /// only while a cookie may still be valid.
    last_issued: Option<Instant>,
}

impl Cookies {
    /// Cookies under `key`.
    pub fn new(key: [u8; 16]) -> Cookies {
        Cookies {
            key,
            last_issued: None,
        }
    }

    fn period(now: Instant) -> u64 {
        now.as_nanos() / PERIOD.as_nanos() as u64
    }

    fn hash(&self, from: SocketAddr, syn_id: u16, syn_seq: Seq, period: u64) -> Seq {
        let ip = match from.ip() {
            std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(a) => a.octets(),
        };
        let digest = Sha1::new()
            .chain_update(self.key)
            .chain_update(ip)
            .chain_update(from.port().to_be_bytes())
            .chain_update(syn_id.to_be_bytes())
            .chain_update(syn_seq.0.to_be_bytes())
            .chain_update(period.to_be_bytes())
            .finalize();
        Seq(u16::from_be_bytes([digest[0], digest[1]]))
    }

    /// The sequence number to answer a SYN (connection id `syn_id`, sequence number
    /// `syn_seq`) from `from` with, now.
    pub fn issue(&mut self, now: Instant, from: SocketAddr, syn_id: u16, syn_seq: Seq) -> Seq {
        self.last_issued = Some(now);
        self.hash(from, syn_id, syn_seq, Self::period(now))
    }

    /// Whether a cookie issued lately may still be valid.
    pub fn issued_lately(&self, now: Instant) -> bool {
        self.last_issued
            .is_some_and(|t| Self::period(now) <= Self::period(t) + 1)
    }

    /// Whether `isn` is a cookie we issued, in this period or the last, for that SYN.
    pub fn check(
        &self,
        now: Instant,
        from: SocketAddr,
        syn_id: u16,
        syn_seq: Seq,
        isn: Seq,
    ) -> bool {
        if !self.issued_lately(now) {
            return false;
        }
        let period = Self::period(now);
        self.hash(from, syn_id, syn_seq, period) == isn
            || (period > 0 && self.hash(from, syn_id, syn_seq, period - 1) == isn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 7], port))
    }

    #[test]
    fn a_cookie_checks_for_its_syn_only_and_expires() {
        let mut c = Cookies::new([7; 16]);
        let t0 = Instant::from_duration(Duration::from_secs(1000));
        assert!(!c.check(t0, addr(1), 5, Seq(9), Seq(0)), "none issued yet");
        let isn = c.issue(t0, addr(1), 5, Seq(9));
        assert_eq!(
            c.issue(t0, addr(1), 5, Seq(9)),
            isn,
            "a resent SYN gets the same"
        );
        assert!(c.check(t0, addr(1), 5, Seq(9), isn));
        // Another peer, id, sequence number or key does not match (bar a 1 in 65,536
        // collision, which these fixed inputs do not hit).
        assert!(!c.check(t0, addr(2), 5, Seq(9), isn));
        assert!(!c.check(t0, addr(1), 6, Seq(9), isn));
        assert!(!c.check(t0, addr(1), 5, Seq(10), isn));
        assert!(!Cookies::new([8; 16]).check(t0, addr(1), 5, Seq(9), isn));
        // Valid into the next period, not beyond.
        assert!(c.check(t0 + PERIOD, addr(1), 5, Seq(9), isn));
        assert!(!c.check(t0 + 2 * PERIOD, addr(1), 5, Seq(9), isn));
    }
}
