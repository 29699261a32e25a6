//! The extension protocol's handshake (BEP 10): the bencoded dictionary exchanged as
//! extended message 0 between peers that both set reserved bit 20.
//!
//! Tessera offers no extension messages yet; it uses the handshake for `reqq`, the number
//! of requests each side may queue with the other. Peers that know it (libtorrent,
//! transmission, aria2) keep their pipelines within our queue instead of overflowing it,
//! and we keep ours within theirs.

use crate::bencode::{self, DictBuilder, Value};

/// Extended message id of the handshake.
pub const HANDSHAKE_ID: u8 = 0;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
/// The fields of a BEP 10 extension handshake that Tessera reads or sends.
pub struct ExtHandshake {
    /// Requests the sender accepts queued from one peer.
    pub reqq: Option<u32>,
    /// The sender's listening port.
    pub port: Option<u16>,
    /// The sender's client name and version.
    pub client: Option<String>,
}

impl ExtHandshake {
    /// The bencoded payload (after the extended message id).
    pub fn encode(&self) -> Vec<u8> {
        let mut d = DictBuilder::new().insert(b"m", Value::Dict(Vec::new()));
        if let Some(port) = self.port {
            d = d.insert(b"p", Value::Int(i64::from(port)));
        }
        if let Some(reqq) = self.reqq {
            d = d.insert(b"reqq", Value::Int(i64::from(reqq)));
        }
        if let Some(client) = &self.client {
            d = d.insert(b"v", Value::Bytes(client.as_bytes()));
        }
        bencode::encode(&d.build())
    }

    /// Reads what we use from a peer's handshake. Unknown keys are ignored, as are values
    /// of the wrong type or out of range; only a payload that is not a bencoded dictionary
    /// is an error.
    pub fn parse(payload: &[u8]) -> Result<ExtHandshake, String> {
        let value = bencode::decode(payload).map_err(|e| format!("extension handshake: {e}"))?;
        if value.as_dict().is_none() {
            return Err(format!(
                "extension handshake is a {}, not a dictionary",
                value.kind()
            ));
        }
        let int = |key: &[u8]| value.get(key).and_then(Value::as_int);
        Ok(ExtHandshake {
            reqq: int(b"reqq")
                .and_then(|q| u32::try_from(q).ok())
                .filter(|&q| q > 0),
            port: int(b"p")
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p > 0),
            client: value
                .get(b"v")
                .and_then(Value::as_bytes)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let h = ExtHandshake {
            reqq: Some(500),
            port: Some(6881),
            client: Some("Tessera 0.1".into()),
        };
        let bytes = h.encode();
        assert_eq!(bytes, b"d1:mde1:pi6881e4:reqqi500e1:v11:Tessera 0.1e");
        assert_eq!(ExtHandshake::parse(&bytes), Ok(h));
    }

    #[test]
    fn reads_other_clients_handshakes() {
        // Shaped like libtorrent's: more keys than we use, extensions listed in `m`.
        let lt = b"d12:complete_agoi-1e1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e12:ut_holepunchi4e11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei1234e4:reqqi500e11:upload_onlyi0e1:v18:libtorrent 2.0.8.0e";
        let h = ExtHandshake::parse(lt).unwrap();
        assert_eq!(h.reqq, Some(500));
        assert_eq!(h.client.as_deref(), Some("libtorrent 2.0.8.0"));
    }

    #[test]
    fn nonsense_values_are_ignored_and_non_dictionaries_rejected() {
        let h = ExtHandshake::parse(b"d1:pi-5e4:reqqi-1e1:vi3ee").unwrap();
        assert_eq!(h, ExtHandshake::default());
        assert!(ExtHandshake::parse(b"li1ee").is_err());
        assert!(ExtHandshake::parse(b"d4:reqq").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ExtHandshake::parse(&bytes);
        }
    }
}
