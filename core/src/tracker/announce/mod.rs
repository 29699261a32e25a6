//! The announce itself: the query string (BEP 3, BEP 23) and the bencoded answer, with
//! compact IPv4 peers (BEP 23), compact IPv6 `peers6` (BEP 7) and the dictionary model.
//!
//! Parsing decisions:
//! - A compact `peers` string whose length is not a multiple of 6 (18 for `peers6`) is
//!   `Malformed`: a cut-off entry means the string is not what we think it is.
//! - In the dictionary model, entries that are not dictionaries, whose `ip` is not an IPv4 or
//!   IPv6 literal (host names included) or whose `port` is not in 1..=65535 are skipped.
//! - A missing `peers` is an empty list. Optional scalar fields (`interval`, `complete`, ...)
//!   of the wrong type, or negative, are ignored rather than failing the whole answer.
//! - Intervals are clamped to at most [`MAX_INTERVAL`]; zero counts as not given.
//! - Peers with port 0 or an unspecified address (`0.0.0.0`, `::`) are dropped.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use thiserror::Error;

use crate::bencode::{self, Value};
use crate::id::{InfoHash, PeerId};

/// Longest `interval` or `min interval` taken from a tracker: a day.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
/// The `event` parameter of an announce.
pub enum AnnounceEvent {
    /// A regular announce (no `event` parameter).
    None,
    /// The first announce.
    Started,
    /// The download completed.
    Completed,
    /// The client is leaving.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// What one announce says about us.
pub struct AnnounceParams {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// The port we accept peers on.
    pub port: u16,
    /// Payload bytes sent so far.
    pub uploaded: u64,
    /// Payload bytes received so far.
    pub downloaded: u64,
    /// Bytes still wanted.
    pub left: u64,
    /// The event, if any.
    pub event: AnnounceEvent,
    /// How many peers we ask for.
    pub numwant: Option<u32>,
    /// Random per-session key so the tracker can recognise us across IP changes.
    pub key: u32,
    /// `tracker id` from an earlier response of this tracker.
    pub tracker_id: Option<Vec<u8>>,
}

/// The full announce URL: `base` plus the query parameters (`compact=1`, binary values
/// percent-encoded byte by byte; `&` when `base` already has a query).
///
/// Parameters come in this order: `info_hash`, `peer_id`, `port`, `uploaded`, `downloaded`,
/// `left`, `compact=1`, `key` (8 upper-case hex digits), then `numwant`, `event` and
/// `trackerid` when set. Byte strings are percent-encoded byte by byte with upper-case hex,
/// except the unreserved characters `A-Za-z0-9.-_~`. A fragment in `base` is dropped.
pub fn announce_url(base: &str, params: &AnnounceParams) -> String {
    let base = base.split_once('#').map_or(base, |(before, _)| before);
    let mut url = String::with_capacity(base.len() + 256);
    url.push_str(base);
    if !base.contains('?') {
        url.push('?');
    } else if !(base.ends_with('?') || base.ends_with('&')) {
        url.push('&');
    }
    url.push_str("info_hash=");
    percent_encode(&mut url, &params.info_hash.0);
    url.push_str("&peer_id=");
    percent_encode(&mut url, &params.peer_id.0);
    url.push_str(&format!(
        "&port={}&uploaded={}&downloaded={}&left={}&compact=1&key={:08X}",
        params.port, params.uploaded, params.downloaded, params.left, params.key
    ));
    if let Some(n) = params.numwant {
        url.push_str(&format!("&numwant={n}"));
    }
    let event = match params.event {
        AnnounceEvent::None => None,
        AnnounceEvent::Started => Some("started"),
        AnnounceEvent::Completed => Some("completed"),
        AnnounceEvent::Stopped => Some("stopped"),
    };
    if let Some(event) = event {
        url.push_str("&event=");
        url.push_str(event);
    }
    if let Some(id) = &params.tracker_id {
        url.push_str("&trackerid=");
        percent_encode(&mut url, id);
    }
    url
}

/// Appends `bytes` with everything but `A-Za-z0-9.-_~` as `%XX`.
fn percent_encode(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A tracker's answer to an announce.
pub struct AnnounceResponse {
    /// When to announce next.
    pub interval: Option<Duration>,
    /// The earliest time to announce again.
    pub min_interval: Option<Duration>,
    /// Peers in the order given, deduplicated, at most the `max_peers` passed to `parse`.
    pub peers: Vec<SocketAddr>,
    /// The tracker's `warning message`.
    pub warning: Option<String>,
    /// An id to send back in later announces.
    pub tracker_id: Option<Vec<u8>>,
    /// Seeds the tracker knows of.
    pub complete: Option<u64>,
    /// Leechers the tracker knows of.
    pub incomplete: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
/// Why an announce response is not a list of peers.
pub enum AnnounceError {
    /// The tracker's `failure reason`.
    #[error("tracker refused: {0}")]
    Failure(String),
    /// Not a well-formed announce response.
    #[error("bad tracker response: {0}")]
    Malformed(String),
}

impl AnnounceResponse {
    /// Parses a response body, keeping at most `max_peers` peers (the rest is ignored, not
    /// an error). Peers with port 0 are dropped.
    pub fn parse(body: &[u8], max_peers: usize) -> Result<AnnounceResponse, AnnounceError> {
        let root = bencode::decode(body)
            .map_err(|e| AnnounceError::Malformed(format!("not bencode ({e})")))?;
        if root.as_dict().is_none() {
            return Err(AnnounceError::Malformed(format!(
                "the response is a {}, not a dictionary",
                root.kind()
            )));
        }
        if let Some(reason) = root.get(b"failure reason") {
            let reason = match reason.as_bytes() {
                Some(b) => String::from_utf8_lossy(b).into_owned(),
                None => format!("(failure reason given as a {})", reason.kind()),
            };
            return Err(AnnounceError::Failure(reason));
        }

        let text = |key: &[u8]| {
            root.get(key)
                .and_then(Value::as_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        let count = |key: &[u8]| {
            root.get(key)
                .and_then(Value::as_int)
                .and_then(|i| u64::try_from(i).ok())
        };
        let interval = |key: &[u8]| {
            count(key)
                .filter(|&secs| secs > 0)
                .map(|secs| Duration::from_secs(secs).min(MAX_INTERVAL))
        };

        let mut peers = Peers::new(max_peers);
        match root.get(b"peers") {
            None => {}
            Some(Value::Bytes(compact)) => peers.compact_v4(compact)?,
            Some(Value::List(entries)) => peers.dicts(entries),
            Some(other) => {
                return Err(AnnounceError::Malformed(format!(
                    "peers is a {}, not a string or a list",
                    other.kind()
                )));
            }
        }
        match root.get(b"peers6") {
            None => {}
            Some(Value::Bytes(compact)) => peers.compact_v6(compact)?,
            Some(other) => {
                return Err(AnnounceError::Malformed(format!(
                    "peers6 is a {}, not a string",
                    other.kind()
                )));
            }
        }

        Ok(AnnounceResponse {
            interval: interval(b"interval"),
            min_interval: interval(b"min interval"),
            peers: peers.list,
            warning: text(b"warning message"),
            tracker_id: root
                .get(b"tracker id")
                .and_then(Value::as_bytes)
                .filter(|id| !id.is_empty())
                .map(<[u8]>::to_vec),
            complete: count(b"complete"),
            incomplete: count(b"incomplete"),
        })
    }
}

/// Peers collected from a response: deduplicated, in order, at most `max`. Shared with the
/// UDP tracker's announce answer (`udp.rs`).
pub(super) struct Peers {
    pub(super) list: Vec<SocketAddr>,
    seen: HashSet<SocketAddr>,
    max: usize,
}

impl Peers {
    pub(super) fn new(max: usize) -> Self {
        Peers {
            list: Vec::new(),
            seen: HashSet::new(),
            max,
        }
    }

    fn full(&self) -> bool {
        self.list.len() >= self.max
    }

    /// Adds a peer unless it is unusable or already there.
    fn add(&mut self, ip: IpAddr, port: u16) {
        if port == 0 || ip.is_unspecified() || self.full() {
            return;
        }
        let addr = SocketAddr::new(ip, port);
        if self.seen.insert(addr) {
            self.list.push(addr);
        }
    }

    /// BEP 23: 4 address bytes and 2 port bytes per peer, big-endian.
    pub(super) fn compact_v4(&mut self, compact: &[u8]) -> Result<(), AnnounceError> {
        if !compact.len().is_multiple_of(6) {
            return Err(AnnounceError::Malformed(format!(
                "compact peers are {} bytes, not a multiple of 6",
                compact.len()
            )));
        }
        for entry in compact.chunks_exact(6) {
            if self.full() {
                break;
            }
            let ip = Ipv4Addr::new(entry[0], entry[1], entry[2], entry[3]);
            self.add(IpAddr::V4(ip), u16::from_be_bytes([entry[4], entry[5]]));
        }
        Ok(())
    }

    /// BEP 7: 16 address bytes and 2 port bytes per peer, big-endian.
    pub(super) fn compact_v6(&mut self, compact: &[u8]) -> Result<(), AnnounceError> {
        if !compact.len().is_multiple_of(18) {
            return Err(AnnounceError::Malformed(format!(
                "compact peers6 are {} bytes, not a multiple of 18",
                compact.len()
            )));
        }
        for entry in compact.chunks_exact(18) {
            if self.full() {
                break;
            }
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&entry[..16]);
            let port = u16::from_be_bytes([entry[16], entry[17]]);
            self.add(IpAddr::V6(Ipv6Addr::from(octets)), port);
        }
        Ok(())
    }

    /// BEP 3 dictionary model: `ip` (an address literal) and `port` per peer; unusable
    /// entries are skipped.
    fn dicts(&mut self, entries: &[Value<'_>]) {
        for entry in entries {
            if self.full() {
                break;
            }
            let ip = entry
                .get(b"ip")
                .and_then(Value::as_str)
                .map(|s| s.trim_start_matches('[').trim_end_matches(']'))
                .and_then(|s| s.parse::<IpAddr>().ok());
            let port = entry
                .get(b"port")
                .and_then(Value::as_int)
                .and_then(|p| u16::try_from(p).ok());
            if let (Some(ip), Some(port)) = (ip, port) {
                self.add(ip, port);
            }
        }
    }
}

#[cfg(test)]
mod tests;
