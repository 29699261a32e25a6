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

use tessera_core::{Bitfield, Config, ConnId, Instant, PeerRequests};

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
pub fn absolute_request_bounds(
    peers: impl IntoIterator<Item = PeerRequests>,
    config: &Config,
    out: &mut Vec<String>,
) {
    for p in peers {
        absolute_bounds_of(&p, config, out);
    }
}

fn absolute_bounds_of(p: &PeerRequests, config: &Config, out: &mut Vec<String>) {
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

/// Each connection's `requests_out` at the last check, sorted by connection: what
/// [`request_bounds`] compares against. Two vectors reused from check to check (a check
/// runs after nearly every input, so it allocates nothing).
#[derive(Debug, Default)]
pub struct PrevRequests {
    last: Vec<(ConnId, usize)>,
    next: Vec<(ConnId, usize)>,
}

/// Request bounds for every peer of one node. `prev` remembers each connection's
/// `requests_out` from the last check.
pub fn request_bounds(
    prev: &mut PrevRequests,
    peers: impl IntoIterator<Item = PeerRequests>,
    config: &Config,
    out: &mut Vec<String>,
) {
    let PrevRequests { last, next } = prev;
    next.clear();
    // Both lists are sorted by connection: one walk finds each connection's last count.
    let mut i = 0;
    for p in peers {
        absolute_bounds_of(&p, config, out);
        if last.get(i).is_some_and(|e| e.0 > p.conn) {
            i = 0; // out of order: search again from the start
        }
        while last.get(i).is_some_and(|e| e.0 < p.conn) {
            i += 1;
        }
        let before = match last.get(i) {
            Some(&(c, n)) if c == p.conn => n,
            _ => 0,
        };
        // The depth may shrink below what is in flight; requests must not grow past it.
        if p.requests_out > p.queue_depth.max(before) {
            out.push(format!(
                "{} requests out to {} with queue depth {} (was {before})",
                p.requests_out, p.addr, p.queue_depth
            ));
        }
        next.push((p.conn, p.requests_out));
    }
    // The session lists peers by connection; sorted anyway if it ever did not.
    if !next.is_sorted_by_key(|e| e.0) {
        next.sort_unstable_by_key(|e| e.0);
    }
    std::mem::swap(last, next);
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

    fn info(conn: u64, requests_out: usize, queue_depth: usize) -> PeerRequests {
        PeerRequests {
            conn: ConnId(conn),
            addr: "10.0.0.1:6881".parse().expect("address"),
            requests_out,
            queue_depth,
            requests_in: 0,
        }
    }

    /// Requests may stay above a depth that shrank, but never grow past it; each connection
    /// is judged against its own last count, whichever order the peers come in.
    #[test]
    fn requests_never_grow_past_the_depth() {
        let config = Config::default();
        let mut prev = PrevRequests::default();
        let mut out = Vec::new();
        request_bounds(&mut prev, [info(3, 8, 8), info(7, 2, 4)], &config, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // Depth of 3 shrank to 4 with 8 out: allowed while they do not grow.
        request_bounds(&mut prev, [info(7, 4, 4), info(3, 8, 4)], &config, &mut out);
        assert!(out.is_empty(), "{out:?}");
        request_bounds(&mut prev, [info(3, 9, 4), info(7, 4, 4)], &config, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("9 requests out"), "{out:?}");
        // A new connection starts from zero.
        out.clear();
        request_bounds(&mut prev, [info(9, 5, 4)], &config, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
    }
}
