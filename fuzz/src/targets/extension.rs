//! The BEP 10 extension handshake a peer sends (`ExtHandshake::parse`): never panics, reads
//! only values in range, and what it reads survives our own encoding.

use tessera_core::extension::ExtHandshake;

/// The target's body: one input.
pub fn run(data: &[u8]) {
    let Ok(ext) = ExtHandshake::parse(data) else {
        return;
    };
    assert_ne!(ext.reqq, Some(0));
    assert_ne!(ext.port, Some(0));
    assert_eq!(ExtHandshake::parse(&ext.encode()), Ok(ext));
}
