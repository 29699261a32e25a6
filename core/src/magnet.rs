//! Magnet links (BEP 9), with BEP 53's file selection.
//!
//! `magnet:?xt=urn:btih:<info hash>&dn=<name>&tr=<tracker>&x.pe=<host:port>&so=<files>`
//!
//! - `xt`: the info hash, as 40 hexadecimal digits or 32 base32 characters (either case).
//!   A v2 hash (`urn:btmh:`, BEP 52) alone is refused with a clear error; next to a v1 hash
//!   (a hybrid torrent's link) it is ignored. Two different v1 hashes are an error.
//! - `dn`: a name to show until the metadata arrives (the first one counts).
//! - `tr`: trackers, repeatable (also as `tr.1`, `tr.2`, ...; `xt.1` likewise); duplicates
//!   and empty values are dropped.
//! - `x.pe`: peers to dial, repeatable: `1.2.3.4:6881`, `[2001:db8::1]:6881` or
//!   `host.example:6881`.
//! - `so`: BEP 53 "select only": file indices and inclusive ranges, `so=0,2,4-6` (several
//!   `so` parameters add up).
//!
//! Values are percent-decoded (`+` is a space, as in form encoding and as libtorrent reads
//! it); a malformed escape or bytes that are not UTF-8 are an error naming the parameter.
//! Unknown parameters (`xl`, `ws`, `as`, `kt`, ...) are ignored. Everything is bounded: the
//! link's length, and the number of trackers, peers and selections.
//!
//! [`MagnetLink`]'s `Display` writes the link back, every value percent-encoded, so that
//! parsing what it writes gives the same `MagnetLink`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use data_encoding::BASE32_NOPAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use thiserror::Error;

use crate::api::Target;
use crate::id::InfoHash;

/// Longest magnet link accepted, in bytes.
pub const MAX_LEN: usize = 64 * 1024;
/// Most trackers kept from one link.
pub const MAX_TRACKERS: usize = 200;
/// Most `x.pe` peers accepted in one link.
pub const MAX_PEERS: usize = 200;
/// Most `so` entries (indices or ranges) accepted in one link.
pub const MAX_SELECT: usize = 1000;

/// What a magnet link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagnetLink {
    /// The torrent's (v1) info hash.
    pub info_hash: InfoHash,
    /// `dn`: the name to show until the metadata is there.
    pub name: Option<String>,
    /// `tr`: tracker URLs, in order, without duplicates.
    pub trackers: Vec<String>,
    /// `x.pe`: peers to dial.
    pub peers: Vec<Target>,
    /// `so`: the files to download (indices into the torrent's file list); empty means all.
    pub select: Vec<FileRange>,
}

/// An inclusive range of file indices from `so` (a single index has `first == last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRange {
    /// The first index.
    pub first: u32,
    /// The last index (at least `first`).
    pub last: u32,
}

impl FileRange {
    /// True when `index` is in the range.
    pub fn contains(&self, index: u32) -> bool {
        (self.first..=self.last).contains(&index)
    }
}

/// Why a string is not a magnet link Tessera can use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MagnetError {
    /// It does not start with `magnet:?`.
    #[error("not a magnet link (it does not start with \"magnet:?\")")]
    NotMagnet,
    /// Longer than [`MAX_LEN`].
    #[error("the magnet link is {0} bytes long, more than {MAX_LEN}")]
    TooLong(usize),
    /// No `xt=urn:btih:`.
    #[error("the magnet link has no BitTorrent info hash (xt=urn:btih:...)")]
    NoInfoHash,
    /// Only a v2 info hash.
    #[error(
        "the magnet link names a v2 torrent only (xt=urn:btmh:, BEP 52), which is not supported"
    )]
    V2NotSupported,
    /// Two different v1 info hashes.
    #[error("the magnet link names two different info hashes, {0} and {1}")]
    ConflictingHashes(InfoHash, InfoHash),
    /// A `urn:btih:` that is neither 40 hex digits nor 32 base32 characters.
    #[error("bad info hash {hash:?}: {reason}")]
    BadInfoHash {
        /// The hash as written.
        hash: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `%` not followed by two hexadecimal digits.
    #[error("bad percent escape in the {0} parameter")]
    BadEscape(String),
    /// A value that decodes to bytes that are not UTF-8.
    #[error("the {0} parameter is not UTF-8 once percent-decoded")]
    NotUtf8(String),
    /// A parameter that needs a value has none.
    #[error("the {0} parameter has no value")]
    NoValue(String),
    /// An `x.pe` that is not `HOST:PORT`.
    #[error("bad peer x.pe={value:?}: {reason}")]
    BadPeer {
        /// The value as decoded.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `so` that is not a list of indices and ranges.
    #[error("bad file selection so={value:?}: {reason}")]
    BadSelect {
        /// The value as decoded.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// More of something than the bounds allow.
    #[error("the magnet link has more than {max} {what}")]
    TooMany {
        /// What there are too many of.
        what: &'static str,
        /// The bound.
        max: usize,
    },
}

impl MagnetLink {
    /// A link with only an info hash.
    pub fn new(info_hash: InfoHash) -> MagnetLink {
        MagnetLink {
            info_hash,
            name: None,
            trackers: Vec::new(),
            peers: Vec::new(),
            select: Vec::new(),
        }
    }

    /// True when `so` selects the file with this index (or when there is no `so`).
    pub fn selects(&self, file: u32) -> bool {
        self.select.is_empty() || self.select.iter().any(|r| r.contains(file))
    }

    /// Parses a magnet link.
    pub fn parse(link: &str) -> Result<MagnetLink, MagnetError> {
        if link.len() > MAX_LEN {
            return Err(MagnetError::TooLong(link.len()));
        }
        let query = link
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("magnet:?"))
            .and_then(|_| link.get(8..))
            .ok_or(MagnetError::NotMagnet)?;

        let mut info_hash: Option<InfoHash> = None;
        let mut v2 = false;
        let mut link = MagnetLink::new(InfoHash([0; 20]));
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_key, raw_value) = param.split_once('=').unwrap_or((param, ""));
            let key = decode("parameter name", raw_key)?;
            let name = base_key(&key);
            if !matches!(name, "xt" | "dn" | "tr" | "x.pe" | "so") {
                continue;
            }
            let value = decode(&key, raw_value)?;
            match name {
                "xt" => match parse_xt(&value)? {
                    Xt::V1(hash) => match info_hash {
                        Some(known) if known != hash => {
                            return Err(MagnetError::ConflictingHashes(known, hash));
                        }
                        _ => info_hash = Some(hash),
                    },
                    Xt::V2 => v2 = true,
                    Xt::Other => {}
                },
                "dn" => {
                    if link.name.is_none() {
                        link.name = Some(value);
                    }
                }
                "tr" => {
                    if !value.is_empty() && !link.trackers.contains(&value) {
                        if link.trackers.len() == MAX_TRACKERS {
                            return Err(MagnetError::TooMany {
                                what: "trackers",
                                max: MAX_TRACKERS,
                            });
                        }
                        link.trackers.push(value);
                    }
                }
                "x.pe" => {
                    if value.is_empty() {
                        return Err(MagnetError::NoValue(key));
                    }
                    let peer = parse_peer(&value)?;
                    if !link.peers.contains(&peer) {
                        if link.peers.len() == MAX_PEERS {
                            return Err(MagnetError::TooMany {
                                what: "peers",
                                max: MAX_PEERS,
                            });
                        }
                        link.peers.push(peer);
                    }
                }
                _ => parse_select(&value, &mut link.select)?,
            }
        }
        link.info_hash = match info_hash {
            Some(hash) => hash,
            None if v2 => return Err(MagnetError::V2NotSupported),
            None => return Err(MagnetError::NoInfoHash),
        };
        Ok(link)
    }
}

/// `xt.1` is `xt`, `tr.2` is `tr`; other keys as they are.
fn base_key(key: &str) -> &str {
    for base in ["xt", "tr"] {
        if let Some(n) = key.strip_prefix(base).and_then(|k| k.strip_prefix('.'))
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            return base;
        }
    }
    key
}

/// Percent-decodes a value (`+` is a space), strictly: every `%` starts an escape of two
/// hexadecimal digits, and the bytes are UTF-8.
fn decode(param: &str, raw: &str) -> Result<String, MagnetError> {
    let bytes = raw.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        {
            return Err(MagnetError::BadEscape(param.to_owned()));
        }
    }
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| MagnetError::NotUtf8(param.to_owned()))
}

enum Xt {
    V1(InfoHash),
    V2,
    Other,
}

fn parse_xt(value: &str) -> Result<Xt, MagnetError> {
    let prefix = |p: &str| {
        value
            .get(..p.len())
            .is_some_and(|v| v.eq_ignore_ascii_case(p))
    };
    if prefix("urn:btmh:") {
        return Ok(Xt::V2);
    }
    if !prefix("urn:btih:") {
        return Ok(Xt::Other);
    }
    let hash = &value["urn:btih:".len()..];
    let bad = |reason: &str| MagnetError::BadInfoHash {
        hash: hash.to_owned(),
        reason: reason.to_owned(),
    };
    match hash.len() {
        40 => InfoHash::from_hex(hash)
            .map(Xt::V1)
            .ok_or_else(|| bad("40 characters but not hexadecimal")),
        32 => BASE32_NOPAD
            .decode(hash.to_ascii_uppercase().as_bytes())
            .ok()
            .and_then(|b| <[u8; 20]>::try_from(b).ok())
            .map(|b| Xt::V1(InfoHash(b)))
            .ok_or_else(|| bad("32 characters but not base32")),
        n => Err(bad(&format!(
            "{n} characters, not 40 (hexadecimal) or 32 (base32)"
        ))),
    }
}

/// `1.2.3.4:6881`, `[2001:db8::1]:6881` or `host.example:6881`.
fn parse_peer(value: &str) -> Result<Target, MagnetError> {
    let bad = |reason: &str| MagnetError::BadPeer {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or_else(|| bad("an IPv6 address in brackets must be followed by :PORT"))?;
        let ip = ip
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address in the brackets"))?;
        (HostPart::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = value.rsplit_once(':').ok_or_else(|| bad("not HOST:PORT"))?;
        if host.contains(':') {
            return Err(bad("an IPv6 address must be written in brackets"));
        }
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            (HostPart::Ip(IpAddr::V4(ip)), port)
        } else {
            let valid = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !valid {
                return Err(bad("not an IP address or a host name"));
            }
            (HostPart::Name(host.to_owned()), port)
        }
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0 && port.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
    Ok(match host {
        HostPart::Ip(ip) => Target::Addr(SocketAddr::new(ip, port)),
        HostPart::Name(host) => Target::Host { host, port },
    })
}

enum HostPart {
    Ip(IpAddr),
    Name(String),
}

/// `0,2,4-6`, added to `out`.
fn parse_select(value: &str, out: &mut Vec<FileRange>) -> Result<(), MagnetError> {
    let bad = |reason: String| MagnetError::BadSelect {
        value: value.to_owned(),
        reason,
    };
    let index = |s: &str| -> Result<u32, MagnetError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("{s:?} is not a file index")));
        }
        s.parse::<u32>()
            .map_err(|_| bad(format!("{s} is too large for a file index")))
    };
    for entry in value.split(',') {
        let range = match entry.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (index(first)?, index(last)?);
                if first > last {
                    return Err(bad(format!("the range {first}-{last} is backwards")));
                }
                FileRange { first, last }
            }
            None => {
                let i = index(entry)?;
                FileRange { first: i, last: i }
            }
        };
        if out.len() == MAX_SELECT {
            return Err(MagnetError::TooMany {
                what: "file selections",
                max: MAX_SELECT,
            });
        }
        out.push(range);
    }
    Ok(())
}

/// Everything but the unreserved characters `A-Za-z0-9-._~` is percent-encoded.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl fmt::Display for MagnetLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "magnet:?xt=urn:btih:{}", self.info_hash)?;
        if let Some(name) = &self.name {
            write!(f, "&dn={}", utf8_percent_encode(name, VALUE))?;
        }
        for tracker in &self.trackers {
            write!(f, "&tr={}", utf8_percent_encode(tracker, VALUE))?;
        }
        for peer in &self.peers {
            let peer = match peer {
                Target::Addr(addr) => addr.to_string(),
                Target::Host { host, port } => format!("{host}:{port}"),
            };
            write!(f, "&x.pe={}", utf8_percent_encode(&peer, VALUE))?;
        }
        for (i, range) in self.select.iter().enumerate() {
            f.write_str(if i == 0 { "&so=" } else { "," })?;
            if range.first == range.last {
                write!(f, "{}", range.first)?;
            } else {
                write!(f, "{}-{}", range.first, range.last)?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for MagnetLink {
    type Err = MagnetError;
    fn from_str(s: &str) -> Result<MagnetLink, MagnetError> {
        MagnetLink::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    fn hash() -> InfoHash {
        InfoHash::from_hex(HEX).unwrap()
    }

    #[test]
    fn a_full_link() {
        let link = MagnetLink::parse(
            "magnet:?xt=urn:btih:C12FE1C06BBA254A9DC9F519B335AA7C1367A88A\
             &dn=Some+Name%20%C3%A9&tr=udp%3A%2F%2Ftracker.example%3A6969%2Fannounce\
             &tr=http://t.example/announce?a=1&x.pe=10.0.0.1:6881&x.pe=%5B::1%5D:51413\
             &x.pe=peer.example:80&so=0,2,4-6&xl=1234&ws=http%3A%2F%2Fweb",
        )
        .unwrap();
        assert_eq!(
            link,
            MagnetLink {
                info_hash: hash(),
                name: Some("Some Name é".into()),
                trackers: vec![
                    "udp://tracker.example:6969/announce".into(),
                    "http://t.example/announce?a=1".into()
                ],
                peers: vec![
                    Target::Addr("10.0.0.1:6881".parse().unwrap()),
                    Target::Addr("[::1]:51413".parse().unwrap()),
                    Target::Host {
                        host: "peer.example".into(),
                        port: 80
                    },
                ],
                select: vec![
                    FileRange { first: 0, last: 0 },
                    FileRange { first: 2, last: 2 },
                    FileRange { first: 4, last: 6 },
                ],
            }
        );
        assert!(link.selects(0) && link.selects(5) && link.selects(6));
        assert!(!link.selects(1) && !link.selects(7));
        assert_eq!(
            link.to_string(),
            format!(
                "magnet:?xt=urn:btih:{HEX}&dn=Some%20Name%20%C3%A9\
                 &tr=udp%3A%2F%2Ftracker.example%3A6969%2Fannounce\
                 &tr=http%3A%2F%2Ft.example%2Fannounce%3Fa%3D1\
                 &x.pe=10.0.0.1%3A6881&x.pe=%5B%3A%3A1%5D%3A51413&x.pe=peer.example%3A80\
                 &so=0,2,4-6"
            )
        );
        assert_eq!(MagnetLink::parse(&link.to_string()), Ok(link));
    }

    #[test]
    fn base32_and_hex_hashes_agree() {
        let b32 = BASE32_NOPAD.encode(&hash().0);
        assert_eq!(b32.len(), 32);
        for xt in [b32.clone(), b32.to_ascii_lowercase(), HEX.into()] {
            let link = MagnetLink::parse(&format!("magnet:?xt=urn:btih:{xt}")).unwrap();
            assert_eq!(link, MagnetLink::new(hash()));
        }
        // The same hash twice (as `xt.1`, `xt.2`) is fine.
        let twice = format!("MAGNET:?xt.1=URN:BTIH:{b32}&xt.2=urn:btih:{HEX}");
        assert_eq!(MagnetLink::parse(&twice).unwrap().info_hash, hash());
        assert!(MagnetLink::new(hash()).selects(12345));
    }

    #[test]
    fn hybrid_links_use_the_v1_hash_and_v2_only_is_refused() {
        let btmh = "1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e";
        let hybrid = format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:{btmh}&dn=x");
        assert_eq!(MagnetLink::parse(&hybrid).unwrap().info_hash, hash());
        let v2 = format!("magnet:?xt=urn:btmh:{btmh}&dn=x");
        let err = MagnetLink::parse(&v2).unwrap_err();
        assert_eq!(err, MagnetError::V2NotSupported);
        assert!(err.to_string().contains("v2"), "{err}");
        assert!(err.to_string().contains("not supported"), "{err}");
    }

    #[test]
    fn each_bad_form_has_its_error() {
        let other = "0123456789012345678901234567890123456789";
        let cases: Vec<(String, MagnetError)> = vec![
            ("http://example.com/".into(), MagnetError::NotMagnet),
            ("magnet:".into(), MagnetError::NotMagnet),
            ("magnet:xt=urn:btih:".into(), MagnetError::NotMagnet),
            ("magnet:?dn=x".into(), MagnetError::NoInfoHash),
            ("magnet:?xt=urn:sha1:ABC".into(), MagnetError::NoInfoHash),
            (
                format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{other}"),
                MagnetError::ConflictingHashes(hash(), InfoHash::from_hex(other).unwrap()),
            ),
            (
                "magnet:?xt=urn:btih:abc".into(),
                MagnetError::BadInfoHash {
                    hash: "abc".into(),
                    reason: "3 characters, not 40 (hexadecimal) or 32 (base32)".into(),
                },
            ),
            (
                format!("magnet:?xt=urn:btih:{}", "g".repeat(40)),
                MagnetError::BadInfoHash {
                    hash: "g".repeat(40),
                    reason: "40 characters but not hexadecimal".into(),
                },
            ),
            (
                format!("magnet:?xt=urn:btih:{}", "1".repeat(32)),
                MagnetError::BadInfoHash {
                    hash: "1".repeat(32),
                    reason: "32 characters but not base32".into(),
                },
            ),
            (
                format!("magnet:?xt=urn:btih:{HEX}&dn=a%2"),
                MagnetError::BadEscape("dn".into()),
            ),
            (
                format!("magnet:?xt=urn:btih:{HEX}&tr=%zz"),
                MagnetError::BadEscape("tr".into()),
            ),
            (
                format!("magnet:?xt=urn:btih:{HEX}&dn=%FF%FE"),
                MagnetError::NotUtf8("dn".into()),
            ),
            (
                format!("magnet:?xt=urn:btih:{HEX}&x.pe"),
                MagnetError::NoValue("x.pe".into()),
            ),
        ];
        for (link, expected) in cases {
            assert_eq!(MagnetLink::parse(&link), Err(expected), "{link}");
        }

        for (pe, reason) in [
            ("10.0.0.1", "not HOST:PORT"),
            ("10.0.0.1:0", "port"),
            ("10.0.0.1:65536", "port"),
            ("10.0.0.1:+80", "port"),
            ("::1:80", "brackets"),
            ("[::1]80", "followed by :PORT"),
            ("[nope]:80", "IPv6"),
            (":80", "host name"),
            ("a b:80", "host name"),
        ] {
            let link = format!(
                "magnet:?xt=urn:btih:{HEX}&x.pe={}",
                utf8_percent_encode(pe, VALUE)
            );
            match MagnetLink::parse(&link) {
                Err(MagnetError::BadPeer { value, reason: r }) => {
                    assert_eq!(value, pe);
                    assert!(r.contains(reason), "{pe}: {r}");
                }
                other => panic!("{pe}: {other:?}"),
            }
        }

        for (so, reason) in [
            ("", "not a file index"),
            ("1,,2", "not a file index"),
            ("x", "not a file index"),
            ("-3", "not a file index"),
            ("1-", "not a file index"),
            ("5-2", "backwards"),
            ("4294967296", "too large"),
        ] {
            let link = format!("magnet:?xt=urn:btih:{HEX}&so={so}");
            match MagnetLink::parse(&link) {
                Err(MagnetError::BadSelect { value, reason: r }) => {
                    assert_eq!(value, so);
                    assert!(r.contains(reason), "{so}: {r}");
                }
                other => panic!("{so}: {other:?}"),
            }
        }
    }

    #[test]
    fn bounded() {
        let long = format!("magnet:?xt=urn:btih:{HEX}&dn={}", "a".repeat(MAX_LEN));
        assert_eq!(
            MagnetLink::parse(&long),
            Err(MagnetError::TooLong(long.len()))
        );
        let trackers: String = (0..=MAX_TRACKERS)
            .map(|i| format!("&tr=http://t{i}/"))
            .collect();
        assert_eq!(
            MagnetLink::parse(&format!("magnet:?xt=urn:btih:{HEX}{trackers}")),
            Err(MagnetError::TooMany {
                what: "trackers",
                max: MAX_TRACKERS
            })
        );
        let peers: String = (0..=MAX_PEERS)
            .map(|i| format!("&x.pe=10.0.{}.{}:1", i / 256, i % 256))
            .collect();
        assert!(matches!(
            MagnetLink::parse(&format!("magnet:?xt=urn:btih:{HEX}{peers}")),
            Err(MagnetError::TooMany { what: "peers", .. })
        ));
        let so: Vec<String> = (0..=MAX_SELECT).map(|i| i.to_string()).collect();
        assert!(matches!(
            MagnetLink::parse(&format!("magnet:?xt=urn:btih:{HEX}&so={}", so.join(","))),
            Err(MagnetError::TooMany {
                what: "file selections",
                ..
            })
        ));
    }

    #[test]
    fn duplicates_empties_and_unknowns() {
        let link = MagnetLink::parse(&format!(
            "magnet:?&&xt=urn:btih:{HEX}&tr=&tr=http://a/&tr.1=http://a/&tr.2=http://b/\
             &dn=first&dn=second&x.pe=1.2.3.4:5&x.pe=1.2.3.4:5&so=1&so=3-4&kt=a+b&x.foo\
             &xt.x=urn:btih:nonsense"
        ))
        .unwrap();
        assert_eq!(link.trackers, ["http://a/", "http://b/"]);
        assert_eq!(link.name.as_deref(), Some("first"));
        assert_eq!(link.peers.len(), 1);
        assert_eq!(
            link.select,
            [
                FileRange { first: 1, last: 1 },
                FileRange { first: 3, last: 4 }
            ]
        );
        let parsed: MagnetLink = link.to_string().parse().unwrap();
        assert_eq!(parsed, link);
    }

    fn arb_target() -> impl Strategy<Value = Target> {
        prop_oneof![
            (any::<[u8; 4]>(), 1..=u16::MAX)
                .prop_map(|(ip, port)| Target::Addr(SocketAddr::from((ip, port)))),
            (any::<[u8; 16]>(), 1..=u16::MAX)
                .prop_map(|(ip, port)| Target::Addr(SocketAddr::new(IpAddr::from(ip), port))),
            ("[a-z0-9][a-z0-9.-]{0,20}", 1..=u16::MAX)
                .prop_filter("not an IPv4 literal", |(h, _)| h
                    .parse::<Ipv4Addr>()
                    .is_err())
                .prop_map(|(host, port)| Target::Host { host, port }),
        ]
    }

    fn arb_link() -> impl Strategy<Value = MagnetLink> {
        (
            any::<[u8; 20]>(),
            proptest::option::of(any::<String>()),
            proptest::collection::vec(".{1,40}", 0..5),
            proptest::collection::vec(arb_target(), 0..5),
            proptest::collection::vec((any::<u32>(), 0u32..100), 0..6),
        )
            .prop_map(|(hash, name, trackers, peers, select)| {
                let mut link = MagnetLink::new(InfoHash(hash));
                link.name = name;
                for t in trackers {
                    if !link.trackers.contains(&t) {
                        link.trackers.push(t);
                    }
                }
                for p in peers {
                    if !link.peers.contains(&p) {
                        link.peers.push(p);
                    }
                }
                link.select = select
                    .into_iter()
                    .map(|(first, len)| FileRange {
                        first,
                        last: first.saturating_add(len),
                    })
                    .collect();
                link
            })
    }

    proptest! {
        #[test]
        fn links_round_trip(link in arb_link()) {
            let text = link.to_string();
            prop_assert_eq!(MagnetLink::parse(&text), Ok(link), "{}", text);
        }

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = MagnetLink::parse(&text);
            let with_prefix = format!("magnet:?{text}");
            if let Ok(link) = MagnetLink::parse(&with_prefix) {
                prop_assert_eq!(MagnetLink::parse(&link.to_string()), Ok(link));
            }
        }

        #[test]
        fn link_shaped_text_never_panics_and_round_trips(
            parts in proptest::collection::vec(
                (prop_oneof![Just("xt"), Just("dn"), Just("tr"), Just("x.pe"), Just("so"), Just("tr.1"), Just("zz")],
                 "[a-zA-Z0-9:%./+,\\[\\]-]{0,45}"),
                0..8),
        ) {
            let mut text = format!("magnet:?xt=urn:btih:{HEX}");
            for (k, v) in &parts {
                text.push('&');
                text.push_str(k);
                text.push('=');
                text.push_str(v);
            }
            if let Ok(link) = MagnetLink::parse(&text) {
                prop_assert_eq!(MagnetLink::parse(&link.to_string()), Ok(link));
            }
        }
    }
}
