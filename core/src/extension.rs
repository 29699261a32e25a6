//! The extension protocol's handshake (BEP 10): the bencoded dictionary exchanged as
//! extended message 0 between peers that both set reserved bit 20.
//!
//! [`ExtensionHandshake`] carries everything Tessera reads or offers:
//! - `m`, the extension messages the sender understands and the extended message id it wants
//!   each sent with ([`ExtensionIds`]: `ut_metadata` of BEP 9, `ut_pex` of BEP 11);
//! - `metadata_size`, the length of the info dictionary the sender can serve (BEP 9);
//! - `yourip`, the address the sender sees us at (4 or 16 bytes);
//! - `p`, the sender's listening port; `v`, its client name; `reqq`, the number of requests
//!   it accepts queued from one peer. Peers that know `reqq` (libtorrent, transmission,
//!   aria2) keep their pipelines within our queue instead of overflowing it, and we keep
//!   ours within theirs.
//!
//! Which of these our own handshake carries is the session's choice: a field left `None`
//! is simply not sent.
//!
//! Parsing is tolerant: unknown keys (and unknown extensions in `m`) are ignored, as are
//! values of the wrong type or out of range; only a payload that is not a bencoded
//! dictionary is an error. It is bounded: nothing but the fields above is kept, and the
//! client name is cut to [`MAX_CLIENT_LEN`] bytes.
//!
//! [`ExtHandshake`] is the subset the session reads today (`reqq`, `p`, `v`); it encodes to
//! the same bytes as before and goes away once the session uses [`ExtensionHandshake`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bencode::{self, DictBuilder, Value};

/// Extended message id of the handshake.
pub const HANDSHAKE_ID: u8 = 0;

/// Name of the metadata exchange extension (BEP 9) in `m`.
pub const UT_METADATA: &str = "ut_metadata";

/// Name of the peer exchange extension (BEP 11) in `m`.
pub const UT_PEX: &str = "ut_pex";

/// Longest client name (`v`) kept from a peer's handshake, in bytes.
pub const MAX_CLIENT_LEN: usize = 128;

/// The `m` dictionary: for each extension, the extended message id the sender wants it sent
/// with. `Some(0)` means the sender explicitly turned the extension off (BEP 10: a later
/// handshake may disable what an earlier one enabled); `None` means it did not mention it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtensionIds {
    /// Id for `ut_metadata` messages (BEP 9).
    pub ut_metadata: Option<u8>,
    /// Id for `ut_pex` messages (BEP 11).
    pub ut_pex: Option<u8>,
}

impl ExtensionIds {
    /// The id to send `ut_metadata` messages with, when the extension is on.
    pub fn metadata_id(&self) -> Option<u8> {
        self.ut_metadata.filter(|&id| id != 0)
    }

    /// The id to send `ut_pex` messages with, when the extension is on.
    pub fn pex_id(&self) -> Option<u8> {
        self.ut_pex.filter(|&id| id != 0)
    }

    /// Applies a later handshake's `m`: extensions it mentions take its value (0 turns one
    /// off), the others stay as they were.
    pub fn update(&mut self, later: ExtensionIds) {
        if later.ut_metadata.is_some() {
            self.ut_metadata = later.ut_metadata;
        }
        if later.ut_pex.is_some() {
            self.ut_pex = later.ut_pex;
        }
    }
}

/// A BEP 10 extension handshake: what we send (the session fills in what it offers) and
/// what we read from a peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtensionHandshake {
    /// The `m` dictionary (always sent, possibly empty).
    pub extensions: ExtensionIds,
    /// `metadata_size`: length in bytes of the info dictionary the sender can serve over
    /// `ut_metadata`. Positive; the metadata assembler decides what size it accepts.
    pub metadata_size: Option<u64>,
    /// `yourip`: the receiver's address as the sender sees it.
    pub your_ip: Option<IpAddr>,
    /// `p`: the sender's listening port (never 0).
    pub port: Option<u16>,
    /// `v`: the sender's client name and version (at most [`MAX_CLIENT_LEN`] bytes).
    pub client: Option<String>,
    /// `reqq`: requests the sender accepts queued from one peer (never 0).
    pub reqq: Option<u32>,
}

impl ExtensionHandshake {
    /// The bencoded payload (after the extended message id).
    pub fn encode(&self) -> Vec<u8> {
        let mut m = DictBuilder::new();
        if let Some(id) = self.extensions.ut_metadata {
            m = m.insert(UT_METADATA.as_bytes(), Value::Int(i64::from(id)));
        }
        if let Some(id) = self.extensions.ut_pex {
            m = m.insert(UT_PEX.as_bytes(), Value::Int(i64::from(id)));
        }
        let your_ip = self.your_ip.map(|ip| match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        });
        let mut d = DictBuilder::new().insert(b"m", m.build());
        if let Some(size) = self.metadata_size {
            d = d.insert(
                b"metadata_size",
                Value::Int(i64::try_from(size).unwrap_or(i64::MAX)),
            );
        }
        if let Some(port) = self.port {
            d = d.insert(b"p", Value::Int(i64::from(port)));
        }
        if let Some(reqq) = self.reqq {
            d = d.insert(b"reqq", Value::Int(i64::from(reqq)));
        }
        if let Some(client) = &self.client {
            d = d.insert(b"v", Value::Bytes(client.as_bytes()));
        }
        if let Some(ip) = &your_ip {
            d = d.insert(b"yourip", Value::Bytes(ip));
        }
        bencode::encode(&d.build())
    }

    /// Reads a peer's handshake. Unknown keys are ignored, as are values of the wrong type
    /// or out of range; only a payload that is not a bencoded dictionary is an error.
    pub fn parse(payload: &[u8]) -> Result<ExtensionHandshake, String> {
        let value = bencode::decode(payload).map_err(|e| format!("extension handshake: {e}"))?;
        if value.as_dict().is_none() {
            return Err(format!(
                "extension handshake is a {}, not a dictionary",
                value.kind()
            ));
        }
        let int = |key: &[u8]| value.get(key).and_then(Value::as_int);
        let id = |name: &str| {
            value
                .get(b"m")
                .and_then(|m| m.get(name.as_bytes()))
                .and_then(Value::as_int)
                .and_then(|id| u8::try_from(id).ok())
        };
        Ok(ExtensionHandshake {
            extensions: ExtensionIds {
                ut_metadata: id(UT_METADATA),
                ut_pex: id(UT_PEX),
            },
            metadata_size: int(b"metadata_size")
                .and_then(|s| u64::try_from(s).ok())
                .filter(|&s| s > 0),
            your_ip: value
                .get(b"yourip")
                .and_then(Value::as_bytes)
                .and_then(ip_from_bytes),
            port: int(b"p")
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p > 0),
            client: value.get(b"v").and_then(Value::as_bytes).map(client_name),
            reqq: int(b"reqq")
                .and_then(|q| u32::try_from(q).ok())
                .filter(|&q| q > 0),
        })
    }
}

/// An address from the 4 or 16 bytes of `yourip`.
fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Some(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        None
    }
}

/// The client name as text, cut to at most [`MAX_CLIENT_LEN`] bytes on a character boundary.
fn client_name(v: &[u8]) -> String {
    let mut name = String::from_utf8_lossy(v).into_owned();
    if name.len() > MAX_CLIENT_LEN {
        let mut end = MAX_CLIENT_LEN;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// The part of the handshake the session reads today: `reqq`, `p` and `v`.
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

impl From<ExtHandshake> for ExtensionHandshake {
    fn from(h: ExtHandshake) -> Self {
        ExtensionHandshake {
            reqq: h.reqq,
            port: h.port,
            client: h.client,
            ..ExtensionHandshake::default()
        }
    }
}

impl From<ExtensionHandshake> for ExtHandshake {
    fn from(h: ExtensionHandshake) -> Self {
        ExtHandshake {
            reqq: h.reqq,
            port: h.port,
            client: h.client,
        }
    }
}

impl ExtHandshake {
    /// The bencoded payload (after the extended message id), with an empty `m`.
    pub fn encode(&self) -> Vec<u8> {
        ExtensionHandshake::from(self.clone()).encode()
    }

    /// Reads `reqq`, `p` and `v` from a peer's handshake; see [`ExtensionHandshake::parse`].
    pub fn parse(payload: &[u8]) -> Result<ExtHandshake, String> {
        ExtensionHandshake::parse(payload).map(ExtHandshake::from)
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
    fn full_handshake_encodes_every_field() {
        let h = ExtensionHandshake {
            extensions: ExtensionIds {
                ut_metadata: Some(3),
                ut_pex: Some(1),
            },
            metadata_size: Some(31235),
            your_ip: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))),
            port: Some(6881),
            client: Some("Tessera 0.1".into()),
            reqq: Some(250),
        };
        let bytes = h.encode();
        assert_eq!(
            bytes,
            &b"d1:md11:ut_metadatai3e6:ut_pexi1ee13:metadata_sizei31235e1:pi6881e\
               4:reqqi250e1:v11:Tessera 0.16:yourip4:\x7f\x00\x00\x01e"[..]
        );
        assert_eq!(ExtensionHandshake::parse(&bytes), Ok(h.clone()));

        let v6 = ExtensionHandshake {
            your_ip: Some("2001:db8::1".parse().unwrap()),
            ..h
        };
        assert_eq!(ExtensionHandshake::parse(&v6.encode()), Ok(v6));
        // Nothing set: only the (empty) `m`.
        assert_eq!(ExtensionHandshake::default().encode(), b"d1:mdee");
    }

    #[test]
    fn reads_other_clients_handshakes() {
        // Shaped like libtorrent's: more keys than we use, extensions listed in `m`.
        let lt = b"d12:complete_agoi-1e1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e12:ut_holepunchi4e11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei1234e4:reqqi500e11:upload_onlyi0e1:v18:libtorrent 2.0.8.0e";
        let h = ExtHandshake::parse(lt).unwrap();
        assert_eq!(h.reqq, Some(500));
        assert_eq!(h.client.as_deref(), Some("libtorrent 2.0.8.0"));
        let full = ExtensionHandshake::parse(lt).unwrap();
        assert_eq!(full.extensions.metadata_id(), Some(2));
        assert_eq!(full.extensions.pex_id(), Some(1));
        assert_eq!(full.metadata_size, Some(1234));
        assert_eq!(full.your_ip, None);
    }

    #[test]
    fn nonsense_values_are_ignored_and_non_dictionaries_rejected() {
        let h = ExtHandshake::parse(b"d1:pi-5e4:reqqi-1e1:vi3ee").unwrap();
        assert_eq!(h, ExtHandshake::default());
        assert!(ExtHandshake::parse(b"li1ee").is_err());
        assert!(ExtHandshake::parse(b"d4:reqq").is_err());

        // `m` of the wrong type, ids out of range or of the wrong type, a negative or zero
        // metadata size, a `yourip` of 5 bytes: all ignored.
        for payload in [
            &b"d1:mi1e13:metadata_sizei-1e6:yourip5:abcdee"[..],
            b"d1:md11:ut_metadatai256e6:ut_pex1:xe13:metadata_sizei0ee",
            b"d1:md11:ut_metadatai-1eee",
            b"d1:ml11:ut_metadataee",
        ] {
            let h = ExtensionHandshake::parse(payload).unwrap();
            assert_eq!(h, ExtensionHandshake::default(), "{payload:?}");
        }
    }

    #[test]
    fn zero_id_disables_and_updates_apply() {
        let h = ExtensionHandshake::parse(b"d1:md11:ut_metadatai0e6:ut_pexi5eee").unwrap();
        assert_eq!(h.extensions.ut_metadata, Some(0));
        assert_eq!(h.extensions.metadata_id(), None);
        assert_eq!(h.extensions.pex_id(), Some(5));

        let mut ids = ExtensionIds {
            ut_metadata: Some(2),
            ut_pex: Some(1),
        };
        ids.update(h.extensions);
        assert_eq!(ids.metadata_id(), None);
        assert_eq!(ids.pex_id(), Some(5));
        ids.update(ExtensionIds {
            ut_metadata: Some(9),
            ut_pex: None,
        });
        assert_eq!((ids.metadata_id(), ids.pex_id()), (Some(9), Some(5)));
    }

    #[test]
    fn long_client_names_are_cut_on_a_character_boundary() {
        let name = "é".repeat(200);
        let payload = ExtensionHandshake {
            client: Some(name),
            ..ExtensionHandshake::default()
        }
        .encode();
        let client = ExtensionHandshake::parse(&payload).unwrap().client.unwrap();
        assert_eq!(client.len(), MAX_CLIENT_LEN);
        assert!(client.chars().all(|c| c == 'é'));
    }

    fn arb_handshake() -> impl Strategy<Value = ExtensionHandshake> {
        let ip = prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ];
        (
            (
                proptest::option::of(any::<u8>()),
                proptest::option::of(any::<u8>()),
            ),
            proptest::option::of(1..=i64::MAX as u64),
            proptest::option::of(ip),
            proptest::option::of(1..=u16::MAX),
            proptest::option::of("[ -~]{0,128}"),
            proptest::option::of(1..=u32::MAX),
        )
            .prop_map(|((m, p), metadata_size, your_ip, port, client, reqq)| {
                ExtensionHandshake {
                    extensions: ExtensionIds {
                        ut_metadata: m,
                        ut_pex: p,
                    },
                    metadata_size,
                    your_ip,
                    port,
                    client,
                    reqq,
                }
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(h) = ExtensionHandshake::parse(&bytes) {
                prop_assert_eq!(ExtensionHandshake::parse(&h.encode()), Ok(h));
            }
        }

        #[test]
        fn encoded_handshakes_parse_back(h in arb_handshake()) {
            prop_assert_eq!(ExtensionHandshake::parse(&h.encode()), Ok(h));
        }
    }
}
