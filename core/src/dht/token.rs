//! Announce tokens (BEP 5): a `get_peers` reply carries a token that the querier must send
//! back in `announce_peer`, proving it receives datagrams at the address it announces from.
//!
//! A token is the first [`TOKEN_LEN`] bytes of SHA-1(secret ‖ querier's IP). The secret
//! changes every [`ROTATION`]; a token made with the current or the previous secret is
//! accepted, so a token stays valid between one and two rotations (5 to 10 minutes). Nothing
//! is stored per querier.

use std::net::IpAddr;

use sha1::{Digest, Sha1};

use super::node_id::canonical;
use crate::rng::Rng;
use crate::time::{Duration, Instant};

/// Length of the tokens we give out.
pub const TOKEN_LEN: usize = 8;
/// How often the secret changes.
pub const ROTATION: Duration = Duration::from_secs(5 * 60);

/// The current and previous secrets.
#[derive(Debug, Clone)]
pub struct Tokens {
    current: [u8; 16],
    previous: [u8; 16],
    /// When `current` is replaced.
    next_rotation: Instant,
}

impl Tokens {
    /// Fresh secrets, the first rotation [`ROTATION`] after `now`.
    pub fn new(now: Instant, rng: &mut Rng) -> Tokens {
        let mut current = [0u8; 16];
        let mut previous = [0u8; 16];
        rng.fill(&mut current);
        rng.fill(&mut previous);
        Tokens {
            current,
            previous,
            next_rotation: now + ROTATION,
        }
    }

    /// When [`Tokens::handle_timeout`] next has something to do.
    pub fn next_rotation(&self) -> Instant {
        self.next_rotation
    }

    /// Rotates the secret when its time has come.
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut Rng) {
        if now < self.next_rotation {
            return;
        }
        // A long pause (a laptop asleep) invalidates both secrets at once.
        if now >= self.next_rotation + ROTATION {
            rng.fill(&mut self.previous);
        } else {
            self.previous = self.current;
        }
        rng.fill(&mut self.current);
        self.next_rotation = now + ROTATION;
    }

    /// The token for a querier at `ip`.
    pub fn make(&self, ip: IpAddr) -> [u8; TOKEN_LEN] {
        compute(&self.current, ip)
    }

    /// Whether `token` was given to a querier at `ip` within the last one or two rotations.
    pub fn is_valid(&self, ip: IpAddr, token: &[u8]) -> bool {
        token == compute(&self.current, ip) || token == compute(&self.previous, ip)
    }
}

fn compute(secret: &[u8; 16], ip: IpAddr) -> [u8; TOKEN_LEN] {
    let mut h = Sha1::new();
    h.update(secret);
    match canonical(ip) {
        IpAddr::V4(v4) => h.update(v4.octets()),
        IpAddr::V6(v6) => h.update(v6.octets()),
    }
    let digest = h.finalize();
    let mut out = [0u8; TOKEN_LEN];
    out.copy_from_slice(&digest[..TOKEN_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_live_one_to_two_rotations_and_are_bound_to_the_address() {
        let mut rng = Rng::from_u64(1);
        let t0 = Instant::ZERO;
        let mut tokens = Tokens::new(t0, &mut rng);
        let a: IpAddr = "1.2.3.4".parse().unwrap();
        let b: IpAddr = "1.2.3.5".parse().unwrap();
        let tok = tokens.make(a);
        assert!(tokens.is_valid(a, &tok));
        assert!(!tokens.is_valid(b, &tok));
        assert!(!tokens.is_valid(a, &tok[..4]));
        // A mapped address is the same querier.
        assert!(tokens.is_valid("::ffff:1.2.3.4".parse().unwrap(), &tok));

        // Nothing happens before the rotation.
        tokens.handle_timeout(t0 + Duration::from_secs(299), &mut rng);
        assert_eq!(tokens.make(a), tok);
        // After one rotation the old token is still good, after two it is not.
        let t1 = tokens.next_rotation();
        tokens.handle_timeout(t1, &mut rng);
        assert_ne!(tokens.make(a), tok);
        assert!(tokens.is_valid(a, &tok));
        let t2 = tokens.next_rotation();
        assert_eq!(t2, t1 + ROTATION);
        tokens.handle_timeout(t2, &mut rng);
        assert!(!tokens.is_valid(a, &tok));
    }

    #[test]
    fn a_long_pause_forgets_both_secrets() {
        let mut rng = Rng::from_u64(2);
        let mut tokens = Tokens::new(Instant::ZERO, &mut rng);
        let a: IpAddr = "9.9.9.9".parse().unwrap();
        let tok = tokens.make(a);
        tokens.handle_timeout(Instant::ZERO + ROTATION * 3, &mut rng);
        assert!(!tokens.is_valid(a, &tok));
    }
}
