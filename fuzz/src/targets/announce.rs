//! A tracker's announce response body (`AnnounceResponse::parse`): never panics, and an
//! accepted response keeps its promises: at most `max_peers` peers, no duplicates, no port
//! 0, no unspecified address, intervals positive.

use std::collections::HashSet;

use tessera_core::Duration;
use tessera_core::tracker::AnnounceResponse;

/// The target's body: one input.
pub fn run(data: &[u8]) {
    // The first byte picks the peer limit, so the "keep at most" paths are reached.
    let (max_peers, body) = match data.split_first() {
        Some((&b, rest)) if b < 0x40 => (usize::from(b), rest),
        _ => (200, data),
    };
    let Ok(response) = AnnounceResponse::parse(body, max_peers) else {
        return;
    };
    assert!(
        response.peers.len() <= max_peers,
        "more peers than asked for"
    );
    let distinct: HashSet<_> = response.peers.iter().collect();
    assert_eq!(distinct.len(), response.peers.len(), "duplicate peers");
    for peer in &response.peers {
        assert_ne!(peer.port(), 0, "peer with port 0");
        assert!(
            !peer.ip().is_unspecified(),
            "peer with an unspecified address"
        );
    }
    for interval in [response.interval, response.min_interval]
        .into_iter()
        .flatten()
    {
        assert!(interval > Duration::ZERO);
    }
}
