//! Magnet links (`MagnetLink::parse`): never panics, keeps its bounds, and a parsed link
//! written back with `Display` parses to the same link.

use tessera_core::magnet::{MAX_PEERS, MAX_SELECT, MAX_TRACKERS, MagnetLink};

/// The target's body: one input.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for candidate in [text.to_string(), format!("magnet:?{text}")] {
        let Ok(link) = MagnetLink::parse(&candidate) else {
            continue;
        };
        assert!(link.trackers.len() <= MAX_TRACKERS);
        assert!(link.peers.len() <= MAX_PEERS);
        assert!(link.select.len() <= MAX_SELECT);
        assert!(link.select.iter().all(|r| r.first <= r.last));
        assert_eq!(MagnetLink::parse(&link.to_string()), Ok(link));
    }
}
