//! Safety properties checked while the simulation runs, each on the node an event touched
//! (so checking after every event costs O(that node's peers), not O(swarm)):
//!
//! - verified data equals the source: a piece the core reports verified (or found at its
//!   check) holds exactly the valid content on the node's disk;
//! - a node's have-set only grows;
//! - requests in flight stay within bounds: never above `max_queue_depth`, never grown
//!   beyond the peer's current queue depth, and the peer's queued requests to us never above
//!   `max_peer_requests`;
//! - nothing is sent on a connection that is closed (by the core, or reported closed to it)
//!   or not yet connected, and nothing closed twice;
//! - a connection's unsent bytes stay within the core's `max_send_buffer` plus slack;
//! - no honest peer is banned (for someone else's corruption) or closed for any other
//!   misbehaviour (protocol errors, invalid or too many requests, unrequested blocks).
//!
//! Liveness (every honest peer completes within a bound once faults heal) is checked at the
//! end of the run by `world`.

use std::collections::BTreeMap;

use tessera_core::{Bitfield, Config, ConnId, Instant, PeerInfo};

#[derive(Debug, Clone)]
pub struct Violation {
    pub at: Instant,
    /// The node's name (class and index).
    pub node: String,
    pub what: String,
}

/// Violations found so far (the first few kept in full, all counted).
#[derive(Debug, Default)]
pub struct Violations {
    pub list: Vec<Violation>,
    pub count: u64,
}

const KEEP: usize = 50;

impl Violations {
    pub fn report(&mut self, at: Instant, node: String, what: String) {
        self.count += 1;
        if self.list.len() < KEEP {
            self.list.push(Violation { at, node, what });
        }
    }
}

/// Close reasons that blame the peer: an honest peer must never get one.
const MISBEHAVIOUR: &[&str] = &[
    "banned",
    "protocol error",
    "too many invalid requests",
    "requests queued",
    "nobody asked for",
    "bitfield after",
    "have-all after",
    "have for piece",
    "unknown message",
    "not a block we ask for",
];

/// A close reason that says the peer misbehaved.
pub fn blames_peer(reason: &str) -> bool {
    MISBEHAVIOUR.iter().any(|m| reason.contains(m))
}

/// Have-set must only grow. `prev` holds the last seen words.
pub fn have_grows(prev: &mut Vec<u64>, have: &Bitfield) -> Result<(), String> {
    let words = have.words();
    let lost = prev
        .iter()
        .zip(words)
        .position(|(&old, &new)| old & !new != 0);
    let result = match lost {
        Some(i) => Err(format!("have-set shrank (word {i})")),
        None => Ok(()),
    };
    prev.clear();
    prev.extend_from_slice(words);
    result
}

/// The absolute request bounds of every peer of one node (what a sampled check can judge:
/// the queue depth may have shrunk since the requests went out).
pub fn absolute_request_bounds(peers: &[PeerInfo], config: &Config, out: &mut Vec<String>) {
    for p in peers {
        if p.requests_out > config.max_queue_depth {
            out.push(format!(
                "{} requests out to {} (max_queue_depth {})",
                p.requests_out, p.addr, config.max_queue_depth
            ));
        }
        if p.requests_in > config.max_peer_requests {
            out.push(format!(
                "{} requests queued from {} (max_peer_requests {})",
                p.requests_in, p.addr, config.max_peer_requests
            ));
        }
    }
}

/// Request bounds for every peer of one node. `prev` remembers each connection's
/// `requests_out` from the last check.
pub fn request_bounds(
    prev: &mut BTreeMap<ConnId, usize>,
    peers: &[PeerInfo],
    config: &Config,
    out: &mut Vec<String>,
) {
    absolute_request_bounds(peers, config, out);
    let mut next = BTreeMap::new();
    for p in peers {
        let before = prev.get(&p.conn).copied().unwrap_or(0);
        // The depth may shrink below what is in flight; requests must not grow past it.
        if p.requests_out > p.queue_depth.max(before) {
            out.push(format!(
                "{} requests out to {} with queue depth {} (was {before})",
                p.requests_out, p.addr, p.queue_depth
            ));
        }
        next.insert(p.conn, p.requests_out);
    }
    *prev = next;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_have_is_caught() {
        let mut prev = Vec::new();
        let mut b = Bitfield::new(70);
        b.set(3);
        b.set(68);
        assert!(have_grows(&mut prev, &b).is_ok());
        b.set(5);
        assert!(have_grows(&mut prev, &b).is_ok());
        b.clear(68);
        assert!(have_grows(&mut prev, &b).is_err());
    }
}
