//! The DHT's saved routing table (`dht::SavedState::decode`, the `dht.dat` the client keeps
//! between runs): never panics, keeps at most `MAX_SAVED_NODES` nodes of the right address
//! family in each list, and what it reads survives its own encoding.

use tessera_core::dht::{MAX_SAVED_NODES, SavedState};

/// The target's body: one input.
pub fn run(data: &[u8]) {
    let Some(state) = SavedState::decode(data) else {
        return;
    };
    assert!(state.nodes.len() <= MAX_SAVED_NODES);
    assert!(state.nodes6.len() <= MAX_SAVED_NODES);
    assert!(state.nodes.iter().all(|n| n.addr.is_ipv4()));
    assert!(state.nodes6.iter().all(|n| n.addr.is_ipv6()));
    assert_eq!(SavedState::decode(&state.encode()), Some(state));
}
