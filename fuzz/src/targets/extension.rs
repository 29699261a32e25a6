//! The BEP 10 extension handshake a peer sends (`ExtensionHandshake::parse`): never panics,
//! reads only values in range, and what it reads survives our own encoding.

use tessera_core::extension::{ExtHandshake, ExtensionHandshake, MAX_CLIENT_LEN};

/// The target's body: one input.
pub fn run(data: &[u8]) {
    let Ok(ext) = ExtensionHandshake::parse(data) else {
        assert!(ExtHandshake::parse(data).is_err());
        return;
    };
    assert_ne!(ext.reqq, Some(0));
    assert_ne!(ext.port, Some(0));
    assert_ne!(ext.metadata_size, Some(0));
    assert!(ext.client.as_ref().is_none_or(|c| c.len() <= MAX_CLIENT_LEN));
    assert_eq!(ExtensionHandshake::parse(&ext.encode()), Ok(ext.clone()));
    let subset = ExtHandshake::from(ext);
    assert_eq!(ExtHandshake::parse(data), Ok(subset.clone()));
    assert_eq!(ExtHandshake::parse(&subset.encode()), Ok(subset));
}
