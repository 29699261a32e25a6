//! The uTP packet decoder (`utp::packet::Packet::decode`): never panics; what it accepts
//! passes the cheap filter the session uses, and encodes back to the same bytes when its
//! extension chain was at most one selective ACK (to the same packet otherwise).

use tessera_core::utp::packet::Packet;
use tessera_core::utp::is_utp;

/// The target's body: one input.
pub fn run(data: &[u8]) {
    let Ok(p) = Packet::decode(data) else {
        return;
    };
    assert!(is_utp(data));
    let again = p.encode();
    if p.skipped_extensions == 0 {
        assert_eq!(&again[..], data);
    }
    let q = Packet::decode(&again).expect("our own encoding decodes");
    assert_eq!(q.header, p.header);
    assert_eq!(q.sack, p.sack);
    assert_eq!(q.payload, p.payload);
    assert_eq!(q.skipped_extensions, 0);
}
