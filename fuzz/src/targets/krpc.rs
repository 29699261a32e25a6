//! A DHT datagram (`dht::Message::decode`, KRPC of BEP 5 with the BEP 32, 42 and 43 keys):
//! never panics, and an accepted message keeps its bounds and re-encodes to bytes that
//! decode to the same message.

use tessera_core::dht::krpc::{self, Body, Message, Query};

/// The target's body: one input.
pub fn run(data: &[u8]) {
    let Ok(m) = Message::decode(data) else {
        return;
    };
    assert!(m.transaction.len() <= krpc::MAX_TRANSACTION_LEN);
    assert!(m.version.as_ref().is_none_or(|v| v.len() <= krpc::MAX_VERSION_LEN));
    match &m.body {
        Body::Response(r) => {
            assert!(r.nodes.len() <= krpc::MAX_NODES && r.nodes6.len() <= krpc::MAX_NODES);
            assert!(r.nodes.iter().all(|n| n.addr.is_ipv4()));
            assert!(r.nodes6.iter().all(|n| n.addr.is_ipv6()));
            assert!(r.values.len() <= krpc::MAX_VALUES);
            assert!(r.token.as_ref().is_none_or(|t| t.len() <= krpc::MAX_TOKEN_LEN));
        }
        Body::Query(Query::AnnouncePeer {
            port,
            implied_port,
            token,
            ..
        }) => {
            assert!(*port != 0 || *implied_port);
            assert!(token.len() <= krpc::MAX_TOKEN_LEN);
        }
        Body::Query(Query::Unknown { method, .. }) => {
            assert!(method.len() <= krpc::MAX_METHOD_LEN);
        }
        Body::Query(_) => {}
        Body::Error { message, .. } => {
            assert!(message.chars().count() <= krpc::MAX_ERROR_CHARS);
        }
    }
    let bytes = m.encode();
    let again = Message::decode(&bytes).expect("a re-encoded message decodes");
    assert_eq!(again, m);
}
