//! `ut_pex` messages (BEP 11): `PexMessage::decode` never panics, keeps at most the peers
//! asked for, no unusable or duplicate ones, and what it accepts survives our own encoding;
//! `PexPeer::receive` never returns our own address or the sender's.
//!
//! Input: `[max] [payload...]`: the peer limit, then the message.

use std::collections::HashSet;
use std::net::SocketAddr;

use tessera_core::pex::{MAX_RECEIVED, PexMessage, PexPeer};
use tessera_core::Instant;

/// The target's body: one input.
pub fn run(data: &[u8]) {
    let Some((&max, payload)) = data.split_first() else {
        return;
    };
    let max = usize::from(max);
    if let Ok(m) = PexMessage::decode(payload, max) {
        assert!(m.added.len() <= max && m.dropped.len() <= max);
        let distinct: HashSet<_> = m.added.iter().map(|(a, _)| a).collect();
        assert_eq!(distinct.len(), m.added.len());
        assert!(m
            .added
            .iter()
            .all(|(a, _)| a.port() != 0 && !a.ip().is_unspecified()));
        assert_eq!(PexMessage::decode(&m.encode(), max), Ok(m));
    }

    let remote: SocketAddr = "127.0.0.1:6881".parse().expect("an address");
    let us: SocketAddr = "127.0.0.1:7000".parse().expect("an address");
    let mut peer = PexPeer::new(remote);
    if let Ok(Some(m)) = peer.receive(Instant::ZERO, payload, &[us]) {
        assert!(m.added.len() <= MAX_RECEIVED && m.dropped.len() <= MAX_RECEIVED);
        for addr in m.added.iter().map(|(a, _)| a).chain(&m.dropped) {
            assert_ne!(*addr, remote);
            assert_ne!(*addr, us);
        }
    }
}
