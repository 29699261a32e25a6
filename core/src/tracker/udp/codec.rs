//! The BEP 15 wire format: requests and answers in both directions, with their decoders.
//!
//! The client in the parent module encodes [`Request`]s and decodes [`Response`]s; a tracker
//! (the simulator's for one) does the other two.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use thiserror::Error;

use crate::id::{InfoHash, PeerId};
use crate::tracker::announce::{AnnounceEvent, AnnounceResponse, MAX_INTERVAL, Peers};

/// The magic number that starts a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// Most info hashes one scrape request carries (BEP 15: "up to about 74").
pub const MAX_SCRAPE: usize = 74;
/// Longest error message kept from an `error` answer, in bytes.
pub const MAX_ERROR_MESSAGE: usize = 1024;

const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_SCRAPE: u32 = 2;
const ACTION_ERROR: u32 = 3;

/// Length of an announce request without BEP 41 options.
const ANNOUNCE_LEN: usize = 98;
/// BEP 41 option types.
const OPTION_END: u8 = 0;
const OPTION_NOP: u8 = 1;
const OPTION_URL_DATA: u8 = 2;

// ---- codec -----------------------------------------------------------------------------

/// Why a datagram is not a well-formed request or answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UdpDecodeError {
    /// Shorter than its kind requires.
    #[error("{what} of {len} bytes is too short (at least {min})")]
    TooShort {
        /// What was being read.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The least it must have.
        min: usize,
    },
    /// An action number BEP 15 does not define (or one that does not go this way).
    #[error("unknown action {0}")]
    UnknownAction(u32),
    /// A connect request without the protocol's magic number.
    #[error("connect request with protocol id {0:#x}, not 0x41727101980")]
    BadProtocolId(u64),
    /// A length that is not a whole number of entries, or a cut-off option.
    #[error("{0}")]
    Malformed(String),
}

/// A request, client to tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Ask for a connection id.
    Connect {
        /// Echoed by the answer.
        transaction: u32,
    },
    /// Announce a torrent.
    Announce(AnnounceRequest),
    /// Ask for the counts of some torrents.
    Scrape(ScrapeRequest),
}

/// The fields of an announce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// From the connect answer.
    pub connection_id: u64,
    /// Echoed by the answer.
    pub transaction: u32,
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// Bytes downloaded (sent as a signed 64-bit number, saturating).
    pub downloaded: u64,
    /// Bytes left to download (saturating like `downloaded`).
    pub left: u64,
    /// Bytes uploaded (saturating like `downloaded`).
    pub uploaded: u64,
    /// `started`, `completed`, `stopped` or none.
    pub event: AnnounceEvent,
    /// An address to announce instead of the datagram's source (0 on the wire when `None`).
    pub ip: Option<Ipv4Addr>,
    /// Our random key.
    pub key: u32,
    /// Peers wanted; `None` is -1 on the wire, the tracker's default. At most `i32::MAX`.
    pub num_want: Option<u32>,
    /// Our listening port.
    pub port: u16,
    /// BEP 41 URL data: the path and query of the tracker URL (empty for none).
    pub url_data: Vec<u8>,
}

/// The fields of a scrape request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeRequest {
    /// From the connect answer.
    pub connection_id: u64,
    /// Echoed by the answer.
    pub transaction: u32,
    /// The torrents, at most [`MAX_SCRAPE`] in a request we send.
    pub info_hashes: Vec<InfoHash>,
}

/// An answer, tracker to client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A connection id.
    Connect {
        /// The request's transaction id.
        transaction: u32,
        /// To put in announce and scrape requests for the next minute.
        connection_id: u64,
    },
    /// The answer to an announce.
    Announce {
        /// The request's transaction id.
        transaction: u32,
        /// Interval, counts and peers.
        answer: UdpAnnounceResponse,
    },
    /// The answer to a scrape: one entry per info hash asked, in the same order.
    Scrape {
        /// The request's transaction id.
        transaction: u32,
        /// The counts.
        files: Vec<ScrapeStats>,
    },
    /// The tracker refused: its message for the user.
    Error {
        /// The request's transaction id.
        transaction: u32,
        /// The message (at most [`MAX_ERROR_MESSAGE`] bytes, trailing NULs removed).
        message: String,
    },
}

/// What an announce answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpAnnounceResponse {
    /// When to announce again (at most [`MAX_INTERVAL`]).
    pub interval: Duration,
    /// Peers that are still downloading.
    pub leechers: u32,
    /// Peers that have everything.
    pub seeders: u32,
    /// Peers in the order given, deduplicated, without port 0 or an unspecified address,
    /// at most the `max_peers` the decoder was given.
    pub peers: Vec<SocketAddr>,
}

impl From<UdpAnnounceResponse> for AnnounceResponse {
    /// The same answer in the HTTP tracker's terms (`complete` = seeders, `incomplete` =
    /// leechers; an interval of zero counts as not given), for the announce schedule.
    fn from(r: UdpAnnounceResponse) -> Self {
        AnnounceResponse {
            interval: Some(r.interval).filter(|i| !i.is_zero()),
            min_interval: None,
            peers: r.peers,
            warning: None,
            tracker_id: None,
            complete: Some(u64::from(r.seeders)),
            incomplete: Some(u64::from(r.leechers)),
        }
    }
}

/// One torrent's counts in a scrape answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrapeStats {
    /// Peers that have everything.
    pub seeders: u32,
    /// Downloads completed.
    pub completed: u32,
    /// Peers that are still downloading.
    pub leechers: u32,
}

/// Reads big-endian numbers from a checked slice.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let end = self.at.checked_add(N)?;
        let chunk = self.bytes.get(self.at..end)?;
        self.at = end;
        <[u8; N]>::try_from(chunk).ok()
    }

    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = self.bytes.get(self.at..).unwrap_or(&[]);
        self.at = self.bytes.len();
        rest
    }
}

pub(super) fn too_short(what: &'static str, len: usize, min: usize) -> UdpDecodeError {
    UdpDecodeError::TooShort { what, len, min }
}

fn event_number(event: AnnounceEvent) -> u32 {
    match event {
        AnnounceEvent::None => 0,
        AnnounceEvent::Completed => 1,
        AnnounceEvent::Started => 2,
        AnnounceEvent::Stopped => 3,
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Request {
    /// The transaction id the answer must echo.
    pub fn transaction(&self) -> u32 {
        match self {
            Request::Connect { transaction } => *transaction,
            Request::Announce(a) => a.transaction,
            Request::Scrape(s) => s.transaction,
        }
    }

    /// The datagram.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ANNOUNCE_LEN);
        match self {
            Request::Connect { transaction } => {
                out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
                out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
                out.extend_from_slice(&transaction.to_be_bytes());
            }
            Request::Announce(a) => {
                out.extend_from_slice(&a.connection_id.to_be_bytes());
                out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
                out.extend_from_slice(&a.transaction.to_be_bytes());
                out.extend_from_slice(&a.info_hash.0);
                out.extend_from_slice(&a.peer_id.0);
                out.extend_from_slice(&saturating_i64(a.downloaded).to_be_bytes());
                out.extend_from_slice(&saturating_i64(a.left).to_be_bytes());
                out.extend_from_slice(&saturating_i64(a.uploaded).to_be_bytes());
                out.extend_from_slice(&event_number(a.event).to_be_bytes());
                let ip = a.ip.map_or(0, u32::from);
                out.extend_from_slice(&ip.to_be_bytes());
                out.extend_from_slice(&a.key.to_be_bytes());
                let num_want = a
                    .num_want
                    .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX));
                out.extend_from_slice(&num_want.to_be_bytes());
                out.extend_from_slice(&a.port.to_be_bytes());
                for chunk in a.url_data.chunks(usize::from(u8::MAX)) {
                    out.push(OPTION_URL_DATA);
                    out.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
                    out.extend_from_slice(chunk);
                }
            }
            Request::Scrape(s) => {
                out.extend_from_slice(&s.connection_id.to_be_bytes());
                out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
                out.extend_from_slice(&s.transaction.to_be_bytes());
                for hash in &s.info_hashes {
                    out.extend_from_slice(&hash.0);
                }
            }
        }
        out
    }

    /// Reads a request (the tracker's side). BEP 41 options after an announce are read:
    /// `URLData` options are concatenated, `NOP` skipped, `EndOfOptions` ends them, and an
    /// unknown option is skipped by its length byte.
    pub fn decode(bytes: &[u8]) -> Result<Request, UdpDecodeError> {
        let mut r = Reader::new(bytes);
        let (Some(connection_id), Some(action), Some(transaction)) = (r.u64(), r.u32(), r.u32())
        else {
            return Err(too_short("a request", bytes.len(), 16));
        };
        match action {
            ACTION_CONNECT => {
                if connection_id != PROTOCOL_ID {
                    return Err(UdpDecodeError::BadProtocolId(connection_id));
                }
                Ok(Request::Connect { transaction })
            }
            ACTION_ANNOUNCE => {
                let short = || too_short("an announce request", bytes.len(), ANNOUNCE_LEN);
                let info_hash = InfoHash(r.take().ok_or_else(short)?);
                let peer_id = PeerId(r.take().ok_or_else(short)?);
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                let downloaded = count(r.i64().ok_or_else(short)?);
                let left = count(r.i64().ok_or_else(short)?);
                let uploaded = count(r.i64().ok_or_else(short)?);
                let event = match r.u32().ok_or_else(short)? {
                    1 => AnnounceEvent::Completed,
                    2 => AnnounceEvent::Started,
                    3 => AnnounceEvent::Stopped,
                    _ => AnnounceEvent::None,
                };
                let ip = Some(Ipv4Addr::from(r.u32().ok_or_else(short)?))
                    .filter(|ip| !ip.is_unspecified());
                let key = r.u32().ok_or_else(short)?;
                let num_want = u32::try_from(r.i32().ok_or_else(short)?).ok();
                let port = r.u16().ok_or_else(short)?;
                let url_data = read_options(r.rest())?;
                Ok(Request::Announce(AnnounceRequest {
                    connection_id,
                    transaction,
                    info_hash,
                    peer_id,
                    downloaded,
                    left,
                    uploaded,
                    event,
                    ip,
                    key,
                    num_want,
                    port,
                    url_data,
                }))
            }
            ACTION_SCRAPE => {
                let hashes = r.rest();
                if !hashes.len().is_multiple_of(20) {
                    return Err(UdpDecodeError::Malformed(format!(
                        "scrape request with {} bytes of info hashes, not a multiple of 20",
                        hashes.len()
                    )));
                }
                let info_hashes = hashes
                    .chunks_exact(20)
                    .filter_map(|h| <[u8; 20]>::try_from(h).ok().map(InfoHash))
                    .collect();
                Ok(Request::Scrape(ScrapeRequest {
                    connection_id,
                    transaction,
                    info_hashes,
                }))
            }
            other => Err(UdpDecodeError::UnknownAction(other)),
        }
    }
}

/// The URL data in BEP 41 options.
fn read_options(mut options: &[u8]) -> Result<Vec<u8>, UdpDecodeError> {
    let mut url_data = Vec::new();
    while let Some((&kind, rest)) = options.split_first() {
        match kind {
            OPTION_END => break,
            OPTION_NOP => options = rest,
            _ => {
                let Some((&len, rest)) = rest.split_first() else {
                    return Err(UdpDecodeError::Malformed(format!(
                        "option {kind} without its length"
                    )));
                };
                let Some(data) = rest.get(..usize::from(len)) else {
                    return Err(UdpDecodeError::Malformed(format!(
                        "option {kind} of {len} bytes cut off after {}",
                        rest.len()
                    )));
                };
                if kind == OPTION_URL_DATA {
                    url_data.extend_from_slice(data);
                }
                options = &rest[usize::from(len)..];
            }
        }
    }
    Ok(url_data)
}

impl Response {
    /// The transaction id it echoes.
    pub fn transaction(&self) -> u32 {
        match self {
            Response::Connect { transaction, .. }
            | Response::Announce { transaction, .. }
            | Response::Scrape { transaction, .. }
            | Response::Error { transaction, .. } => *transaction,
        }
    }

    /// The datagram, for a tracker reached over IPv6 when `ipv6` (18-byte peers; IPv4 peers
    /// as IPv4-mapped addresses) or over IPv4 (6-byte peers; IPv6 peers left out).
    pub fn encode(&self, ipv6: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let head = |out: &mut Vec<u8>, action: u32, transaction: u32| {
            out.extend_from_slice(&action.to_be_bytes());
            out.extend_from_slice(&transaction.to_be_bytes());
        };
        match self {
            Response::Connect {
                transaction,
                connection_id,
            } => {
                head(&mut out, ACTION_CONNECT, *transaction);
                out.extend_from_slice(&connection_id.to_be_bytes());
            }
            Response::Announce {
                transaction,
                answer,
            } => {
                head(&mut out, ACTION_ANNOUNCE, *transaction);
                let secs = u32::try_from(answer.interval.as_secs()).unwrap_or(u32::MAX);
                out.extend_from_slice(&secs.to_be_bytes());
                out.extend_from_slice(&answer.leechers.to_be_bytes());
                out.extend_from_slice(&answer.seeders.to_be_bytes());
                for peer in &answer.peers {
                    match (peer.ip(), ipv6) {
                        (IpAddr::V4(ip), false) => out.extend_from_slice(&ip.octets()),
                        (IpAddr::V4(ip), true) => {
                            out.extend_from_slice(&ip.to_ipv6_mapped().octets());
                        }
                        (IpAddr::V6(ip), true) => out.extend_from_slice(&ip.octets()),
                        (IpAddr::V6(_), false) => continue,
                    }
                    out.extend_from_slice(&peer.port().to_be_bytes());
                }
            }
            Response::Scrape { transaction, files } => {
                head(&mut out, ACTION_SCRAPE, *transaction);
                for f in files {
                    out.extend_from_slice(&f.seeders.to_be_bytes());
                    out.extend_from_slice(&f.completed.to_be_bytes());
                    out.extend_from_slice(&f.leechers.to_be_bytes());
                }
            }
            Response::Error {
                transaction,
                message,
            } => {
                head(&mut out, ACTION_ERROR, *transaction);
                out.extend_from_slice(message.as_bytes());
            }
        }
        out
    }

    /// Reads an answer from a tracker reached over IPv6 when `ipv6`, keeping at most
    /// `max_peers` peers of an announce answer.
    pub fn decode(bytes: &[u8], ipv6: bool, max_peers: usize) -> Result<Response, UdpDecodeError> {
        let mut r = Reader::new(bytes);
        let (Some(action), Some(transaction)) = (r.u32(), r.u32()) else {
            return Err(too_short("an answer", bytes.len(), 8));
        };
        match action {
            ACTION_CONNECT => {
                let connection_id = r
                    .u64()
                    .ok_or_else(|| too_short("a connect answer", bytes.len(), 16))?;
                Ok(Response::Connect {
                    transaction,
                    connection_id,
                })
            }
            ACTION_ANNOUNCE => {
                let short = || too_short("an announce answer", bytes.len(), 20);
                let interval = r.u32().ok_or_else(short)?;
                let leechers = r.u32().ok_or_else(short)?;
                let seeders = r.u32().ok_or_else(short)?;
                let compact = r.rest();
                let mut peers = Peers::new(max_peers);
                let parsed = if ipv6 {
                    peers.compact_v6(compact)
                } else {
                    peers.compact_v4(compact)
                };
                parsed.map_err(|_| {
                    UdpDecodeError::Malformed(format!(
                        "{} bytes of peers, not a multiple of {}",
                        compact.len(),
                        if ipv6 { 18 } else { 6 }
                    ))
                })?;
                Ok(Response::Announce {
                    transaction,
                    answer: UdpAnnounceResponse {
                        interval: Duration::from_secs(u64::from(interval)).min(MAX_INTERVAL),
                        leechers,
                        seeders,
                        peers: peers.list,
                    },
                })
            }
            ACTION_SCRAPE => {
                let counts = r.rest();
                if !counts.len().is_multiple_of(12) {
                    return Err(UdpDecodeError::Malformed(format!(
                        "scrape answer with {} bytes of counts, not a multiple of 12",
                        counts.len()
                    )));
                }
                let files = counts
                    .chunks_exact(12)
                    .map(|c| {
                        let mut r = Reader::new(c);
                        ScrapeStats {
                            seeders: r.u32().unwrap_or(0),
                            completed: r.u32().unwrap_or(0),
                            leechers: r.u32().unwrap_or(0),
                        }
                    })
                    .collect();
                Ok(Response::Scrape { transaction, files })
            }
            ACTION_ERROR => Ok(Response::Error {
                transaction,
                message: error_message(r.rest()),
            }),
            other => Err(UdpDecodeError::UnknownAction(other)),
        }
    }
}

/// An error answer's text: lossy UTF-8, at most [`MAX_ERROR_MESSAGE`] bytes (cut on a
/// character boundary), trailing NULs removed (after the cut, so that the text is the same
/// when read again from its own encoding).
fn error_message(bytes: &[u8]) -> String {
    let mut message =
        String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_ERROR_MESSAGE)]).into_owned();
    // Replacement characters can make the text longer than the bytes it came from.
    while message.len() > MAX_ERROR_MESSAGE {
        message.pop();
    }
    let end = message.trim_end_matches('\0').len();
    message.truncate(end);
    message
}
