//! The UDP tracker protocol (BEP 15): the wire codec and a per-tracker client state machine.
//!
//! # The exchange
//!
//! A client first sends a *connect* request and gets a connection id back, which it may use
//! for one minute ([`CONNECTION_ID_LIFETIME`]); with it, it sends *announce* and *scrape*
//! requests. Every request carries a random 32-bit transaction id that the answer must echo;
//! an *error* answer carries a message for the user instead (shown like an HTTP tracker's
//! `failure reason`). A request without an answer is sent again after 15 × 2^n seconds, n
//! counting from 0 up to 8 ([`RETRANSMIT_BASE`], [`MAX_RETRANSMITS`]): nine transmissions
//! in all over about two hours, after which the request has failed. The peers in an announce
//! answer are 6 bytes each (IPv4) when the tracker was reached over IPv4, 18 (IPv6) over
//! IPv6. A `udp://host:port/path?query` URL's path and query travel as BEP 41 `URLData`
//! options after the announce request.
//!
//! # The codec
//!
//! [`Request`] and [`Response`] encode and decode both directions (the client needs request
//! encoding and response decoding; a tracker, the simulator's for one, the other two).
//! Decoders check every length, never panic and never allocate more than the datagram
//! holds; numbers the wire carries as signed are read as Tessera uses them (counts as
//! unsigned, `num_want` -1 as "the tracker's default").
//!
//! # The client
//!
//! [`UdpTracker`] talks to one tracker URL, in the style of quinn-proto: the session calls
//! [`UdpTracker::announce`] / [`UdpTracker::scrape`], feeds every datagram from the tracker's
//! address to [`UdpTracker::handle_datagram`] (which says whether it was an answer to one of
//! its transactions) and calls [`UdpTracker::handle_timeout`] at [`UdpTracker::poll_timeout`];
//! after each call it drains [`UdpTracker::poll_transmit`] (datagrams to send) and
//! [`UdpTracker::poll_event`] (answers, failures, and name look-ups to perform). Several
//! requests (announces of several torrents, scrapes) may be outstanding at once; they share
//! one connection id. Transaction ids come from the [`Rng`] the client is given, so a seeded
//! session replays exactly. An answer counts only if it comes from the address the request
//! went to and echoes an outstanding transaction id; a wrong action or a malformed body for
//! a known transaction fails that request (the tracker is broken, waiting will not help).
//!
//! # Host names
//!
//! The core resolves nothing. When the URL's host is a name, the client asks for it with
//! [`UdpTrackerEvent::Resolve`] and waits (at most [`UdpTrackerConfig::resolve_timeout`]) for
//! [`UdpTracker::handle_resolved`]. The address is kept until a request gives up for lack of
//! an answer; the next request resolves the name again. At the session's level this needs
//! one action and one input, proposed here (not yet in `api.rs`):
//!
//! ```text
//! /// Look up a host name; answer with Input::Resolved carrying the same id.
//! Action::Resolve { id: ResolveId, host: String }
//! /// The addresses of a name asked for by Action::Resolve, in the order the driver prefers
//! /// (those its UDP socket can reach first), or why there are none.
//! Input::Resolved { now: Instant, id: ResolveId, result: Result<Vec<IpAddr>, String> }
//! ```
//!
//! with `ResolveId` a handle like `OpId`. The runtime resolves off its event loop (its
//! worker pool), and the simulator answers from its table of names.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use url::{Host, Position, Url};

use super::announce::AnnounceParams;
use crate::api::Target;
use crate::id::InfoHash;
use crate::rng::Rng;
use crate::time::Instant;

mod codec;

pub use codec::{
    AnnounceRequest, MAX_ERROR_MESSAGE, MAX_SCRAPE, PROTOCOL_ID, Request, Response, ScrapeRequest,
    ScrapeStats, UdpAnnounceResponse, UdpDecodeError,
};

/// How long a connection id may be used after it was received.
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);
/// The first retransmission delay; the n-th retransmission waits `RETRANSMIT_BASE * 2^n`.
pub const RETRANSMIT_BASE: Duration = Duration::from_secs(15);
/// Largest n in `15 × 2^n` (3840 s): a request is sent at most `MAX_RETRANSMITS + 1` times.
pub const MAX_RETRANSMITS: u32 = 8;
/// Longest BEP 41 URL data (path and query) accepted in a tracker URL.
pub const MAX_URL_DATA: usize = 1024;

// ---- tracker URLs ------------------------------------------------------------------------

/// A parsed `udp://host:port[/path][?query]` tracker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpTrackerUrl {
    /// The tracker's address, or its host name and port.
    pub target: Target,
    /// The path and query, sent as BEP 41 URL data (empty when the URL has neither, or
    /// only `/`).
    pub url_data: Vec<u8>,
}

impl UdpTrackerUrl {
    /// Parses `url`; the error is a human-readable reason. The port is required (UDP
    /// trackers have no default one).
    pub fn parse(url: &str) -> Result<UdpTrackerUrl, String> {
        let parsed = Url::parse(url).map_err(|e| format!("not a valid URL ({e})"))?;
        if parsed.scheme() != "udp" {
            return Err(format!("scheme {}:// is not udp://", parsed.scheme()));
        }
        let port = parsed
            .port()
            .filter(|&p| p != 0)
            .ok_or_else(|| "the URL has no port".to_owned())?;
        let target = match parsed.host() {
            Some(Host::Ipv4(ip)) => Target::Addr(SocketAddr::new(IpAddr::V4(ip), port)),
            Some(Host::Ipv6(ip)) => Target::Addr(SocketAddr::new(IpAddr::V6(ip), port)),
            // Hosts of URLs with a scheme the `url` crate does not know stay text.
            Some(Host::Domain(name)) if !name.is_empty() => match name.parse::<IpAddr>() {
                Ok(ip) => Target::Addr(SocketAddr::new(ip, port)),
                Err(_) => Target::Host {
                    host: name.to_ascii_lowercase(),
                    port,
                },
            },
            _ => return Err("the URL has no host".to_owned()),
        };
        let path = &parsed[Position::BeforePath..Position::AfterQuery];
        let url_data = if path.is_empty() || path == "/" {
            Vec::new()
        } else {
            path.as_bytes().to_vec()
        };
        if url_data.len() > MAX_URL_DATA {
            return Err(format!(
                "the path and query are {} bytes, more than {MAX_URL_DATA}",
                url_data.len()
            ));
        }
        Ok(UdpTrackerUrl { target, url_data })
    }
}

// ---- the client ----------------------------------------------------------------------------

/// Limits of a [`UdpTracker`]; the defaults are BEP 15's.
#[derive(Debug, Clone)]
pub struct UdpTrackerConfig {
    /// Largest n in the `15 × 2^n` s retransmission delay; a request that got no answer
    /// after `max_retransmits + 1` transmissions has failed. BEP 15: 8 (about two hours in
    /// all). A session that wants to move on to a tier's next tracker sooner can lower it,
    /// or cancel the request at its own deadline.
    pub max_retransmits: u32,
    /// Most peers kept from one announce answer.
    pub max_peers: usize,
    /// How long to wait for [`UdpTracker::handle_resolved`] after asking for a name.
    pub resolve_timeout: Duration,
}

impl Default for UdpTrackerConfig {
    fn default() -> Self {
        UdpTrackerConfig {
            max_retransmits: MAX_RETRANSMITS,
            max_peers: 1000,
            resolve_timeout: Duration::from_secs(60),
        }
    }
}

/// A request made with [`UdpTracker::announce`] or [`UdpTracker::scrape`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UdpRequestId(pub u64);

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UdpTrackerError {
    /// The tracker's `error` answer: its message is for the user, like an HTTP tracker's
    /// `failure reason`.
    #[error("tracker refused: {0}")]
    Refused(String),
    /// No answer after every transmission.
    #[error("no answer from the tracker after {attempts} attempts")]
    TimedOut {
        /// Transmissions made (of the connect or the request itself).
        attempts: u32,
    },
    /// An answer to our transaction that is not what was asked for, or not well-formed.
    #[error("bad tracker answer: {0}")]
    Malformed(String),
    /// The tracker's host name could not be resolved.
    #[error("cannot resolve {host}: {reason}")]
    Unresolved {
        /// The name.
        host: String,
        /// Why.
        reason: String,
    },
}

/// What a [`UdpTracker`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpTrackerEvent {
    /// Look up `host`; answer with [`UdpTracker::handle_resolved`]. Nothing is sent until
    /// then.
    Resolve {
        /// The host name from the URL.
        host: String,
        /// The URL's port (the answer's addresses get it).
        port: u16,
    },
    /// An announce was answered.
    Announced {
        /// Which one.
        request: UdpRequestId,
        /// The answer.
        response: UdpAnnounceResponse,
    },
    /// A scrape was answered: the counts per info hash asked (fewer if the tracker gave
    /// fewer).
    Scraped {
        /// Which one.
        request: UdpRequestId,
        /// The counts.
        files: Vec<(InfoHash, ScrapeStats)>,
    },
    /// A request failed; it is forgotten.
    Failed {
        /// Which one.
        request: UdpRequestId,
        /// Why.
        error: UdpTrackerError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Unresolved,
    Resolving { deadline: Instant },
    Resolved(SocketAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Connection {
    None,
    Connecting {
        transaction: u32,
        /// n of the current transmission (0 for the first).
        attempt: u32,
        deadline: Instant,
    },
    Connected {
        id: u64,
        expires: Instant,
    },
}

#[derive(Debug, Clone)]
enum Kind {
    Announce(AnnounceParams),
    Scrape(Vec<InfoHash>),
}

#[derive(Debug, Clone)]
struct Pending {
    id: UdpRequestId,
    kind: Kind,
    /// Set once first sent; kept across retransmissions so that a late answer counts.
    transaction: Option<u32>,
    /// n of the last transmission.
    attempt: u32,
    /// When the answer to the last transmission is overdue; `None` while waiting for a
    /// connection id (or an address) before the next transmission.
    deadline: Option<Instant>,
}

/// The client side of one UDP tracker URL (see the module documentation for the contract).
///
/// Method order, as in quinn-proto: getters, `handle_*` (inputs), requests, `poll_*`
/// (outputs). After every input or request, drain `poll_transmit` and `poll_event`, then
/// arm a timer at `poll_timeout`.
#[derive(Debug)]
pub struct UdpTracker {
    url: UdpTrackerUrl,
    config: UdpTrackerConfig,
    rng: Rng,
    address: Address,
    connection: Connection,
    requests: Vec<Pending>,
    next_request: u64,
    transmits: VecDeque<(SocketAddr, Bytes)>,
    events: VecDeque<UdpTrackerEvent>,
}

/// `RETRANSMIT_BASE * 2^n`, n at most [`MAX_RETRANSMITS`].
fn retransmit_delay(attempt: u32) -> Duration {
    RETRANSMIT_BASE * (1u32 << attempt.min(MAX_RETRANSMITS))
}

/// The address as the socket reports it, IPv4-mapped IPv6 addresses as IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl UdpTracker {
    /// A client for `url` (a `udp://` tracker URL), drawing transaction ids from `rng`.
    pub fn new(url: &str, config: UdpTrackerConfig, rng: Rng) -> Result<UdpTracker, String> {
        Ok(Self::with_url(UdpTrackerUrl::parse(url)?, config, rng))
    }

    /// A client for an already parsed URL.
    pub fn with_url(url: UdpTrackerUrl, config: UdpTrackerConfig, rng: Rng) -> UdpTracker {
        UdpTracker {
            url,
            config,
            rng,
            address: Address::Unresolved,
            connection: Connection::None,
            requests: Vec::new(),
            next_request: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ---- getters

    /// The tracker's URL as parsed.
    pub fn url(&self) -> &UdpTrackerUrl {
        &self.url
    }

    /// The address datagrams go to, once known.
    pub fn address(&self) -> Option<SocketAddr> {
        match self.address {
            Address::Resolved(addr) => Some(addr),
            _ => None,
        }
    }

    /// True when no request is outstanding.
    pub fn is_idle(&self) -> bool {
        self.requests.is_empty()
    }

    // ---- inputs

    /// A datagram from `from`. Returns whether it was an answer to one of this client's
    /// transactions (from the tracker's address, echoing an outstanding transaction id);
    /// anything else is left alone for the caller to route elsewhere.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> bool {
        let Address::Resolved(addr) = self.address else {
            return false;
        };
        if canonical(from) != canonical(addr) {
            return false;
        }
        let Some(transaction) = data.get(4..8).and_then(|t| <[u8; 4]>::try_from(t).ok()) else {
            return false;
        };
        let transaction = u32::from_be_bytes(transaction);
        let ipv6 = canonical(addr).is_ipv6();
        let decoded = Response::decode(data, ipv6, self.config.max_peers);

        if matches!(self.connection, Connection::Connecting { transaction: t, .. } if t == transaction)
        {
            self.connection = Connection::None;
            match decoded {
                Ok(Response::Connect { connection_id, .. }) => {
                    self.connection = Connection::Connected {
                        id: connection_id,
                        expires: now + CONNECTION_ID_LIFETIME,
                    };
                }
                Ok(Response::Error { message, .. }) => {
                    self.fail_waiting(&UdpTrackerError::Refused(message));
                }
                Ok(other) => self.fail_waiting(&UdpTrackerError::Malformed(format!(
                    "a connect request answered with {}",
                    describe(&other)
                ))),
                Err(e) => self.fail_waiting(&UdpTrackerError::Malformed(e.to_string())),
            }
            self.drive(now);
            return true;
        }

        let Some(i) = self
            .requests
            .iter()
            .position(|r| r.transaction == Some(transaction))
        else {
            return false;
        };
        let request = self.requests.remove(i);
        let event = match (request.kind, decoded) {
            (Kind::Announce(_), Ok(Response::Announce { answer, .. })) => {
                UdpTrackerEvent::Announced {
                    request: request.id,
                    response: answer,
                }
            }
            (Kind::Scrape(hashes), Ok(Response::Scrape { files, .. })) => {
                UdpTrackerEvent::Scraped {
                    request: request.id,
                    files: hashes.into_iter().zip(files).collect(),
                }
            }
            (_, Ok(Response::Error { message, .. })) => UdpTrackerEvent::Failed {
                request: request.id,
                error: UdpTrackerError::Refused(message),
            },
            (kind, Ok(other)) => UdpTrackerEvent::Failed {
                request: request.id,
                error: UdpTrackerError::Malformed(format!(
                    "{} answered with {}",
                    match kind {
                        Kind::Announce(_) => "an announce",
                        Kind::Scrape(_) => "a scrape",
                    },
                    describe(&other)
                )),
            },
            (_, Err(e)) => UdpTrackerEvent::Failed {
                request: request.id,
                error: UdpTrackerError::Malformed(e.to_string()),
            },
        };
        self.events.push_back(event);
        self.drive(now);
        true
    }

    /// The answer to [`UdpTrackerEvent::Resolve`]: the host's addresses, the preferred
    /// first (the first is used, with the URL's port), or why there are none. Ignored when
    /// no look-up is pending.
    pub fn handle_resolved(&mut self, now: Instant, result: Result<Vec<IpAddr>, String>) {
        if !matches!(self.address, Address::Resolving { .. }) {
            return;
        }
        let Target::Host { host, port } = &self.url.target else {
            return;
        };
        match result.map(|ips| ips.first().copied()) {
            Ok(Some(ip)) => {
                self.address = Address::Resolved(SocketAddr::new(ip, *port));
                self.drive(now);
            }
            Ok(None) => {
                let error = UdpTrackerError::Unresolved {
                    host: host.clone(),
                    reason: "no addresses".to_owned(),
                };
                self.address = Address::Unresolved;
                self.fail_all(&error);
            }
            Err(reason) => {
                let error = UdpTrackerError::Unresolved {
                    host: host.clone(),
                    reason,
                };
                self.address = Address::Unresolved;
                self.fail_all(&error);
            }
        }
    }

    /// Time has passed: retransmits what is overdue and fails what has waited too long.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Address::Resolving { deadline } = self.address
            && deadline <= now
        {
            self.address = Address::Unresolved;
            if let Target::Host { host, .. } = &self.url.target {
                let error = UdpTrackerError::Unresolved {
                    host: host.clone(),
                    reason: format!(
                        "no answer within {} s",
                        self.config.resolve_timeout.as_secs()
                    ),
                };
                self.fail_all(&error);
            }
        }

        if let Connection::Connecting {
            transaction,
            attempt,
            deadline,
        } = self.connection
            && deadline <= now
        {
            if attempt >= self.config.max_retransmits {
                self.connection = Connection::None;
                self.fail_waiting(&UdpTrackerError::TimedOut {
                    attempts: attempt + 1,
                });
                self.forget_name();
            } else if let Address::Resolved(addr) = self.address {
                let attempt = attempt + 1;
                self.connection = Connection::Connecting {
                    transaction,
                    attempt,
                    deadline: now + retransmit_delay(attempt),
                };
                let bytes = Request::Connect { transaction }.encode();
                self.transmits.push_back((addr, Bytes::from(bytes)));
            }
        }

        let mut failed = Vec::new();
        for request in &mut self.requests {
            if request.deadline.is_none_or(|d| d > now) {
                continue;
            }
            if request.attempt >= self.config.max_retransmits {
                failed.push((request.id, request.attempt + 1));
                continue;
            }
            request.attempt += 1;
            // Sent again by `drive`, after a new connect when the id has expired.
            request.deadline = None;
        }
        if !failed.is_empty() {
            self.requests
                .retain(|r| !failed.iter().any(|(id, _)| *id == r.id));
            for (request, attempts) in failed {
                self.events.push_back(UdpTrackerEvent::Failed {
                    request,
                    error: UdpTrackerError::TimedOut { attempts },
                });
            }
            self.forget_name();
        }
        self.drive(now);
    }

    // ---- requests

    /// Announces with `params` (its `tracker_id` has no place in BEP 15 and is not sent).
    pub fn announce(&mut self, now: Instant, params: AnnounceParams) -> UdpRequestId {
        self.add(now, Kind::Announce(params))
    }

    /// Asks for the counts of up to [`MAX_SCRAPE`] torrents (further hashes are not asked:
    /// the answer lists the ones that were).
    pub fn scrape(&mut self, now: Instant, info_hashes: &[InfoHash]) -> UdpRequestId {
        let hashes = info_hashes[..info_hashes.len().min(MAX_SCRAPE)].to_vec();
        self.add(now, Kind::Scrape(hashes))
    }

    /// Forgets a request: no event will come for it, and a late answer is not ours.
    pub fn cancel(&mut self, request: UdpRequestId) {
        self.requests.retain(|r| r.id != request);
        if self.requests.is_empty() && matches!(self.connection, Connection::Connecting { .. }) {
            self.connection = Connection::None;
        }
    }

    // ---- outputs

    /// A datagram to send: the address and the bytes.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.transmits.pop_front()
    }

    /// Something to report.
    pub fn poll_event(&mut self) -> Option<UdpTrackerEvent> {
        self.events.pop_front()
    }

    /// When [`UdpTracker::handle_timeout`] must be called next, if anything is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let resolving = match self.address {
            Address::Resolving { deadline } => Some(deadline),
            _ => None,
        };
        let connecting = match self.connection {
            Connection::Connecting { deadline, .. } => Some(deadline),
            _ => None,
        };
        self.requests
            .iter()
            .filter_map(|r| r.deadline)
            .chain(resolving)
            .chain(connecting)
            .min()
    }

    // ---- internals

    fn add(&mut self, now: Instant, kind: Kind) -> UdpRequestId {
        let id = UdpRequestId(self.next_request);
        self.next_request += 1;
        self.requests.push(Pending {
            id,
            kind,
            transaction: None,
            attempt: 0,
            deadline: None,
        });
        self.drive(now);
        id
    }

    /// The connection id, while it may be used.
    fn connection_id(&self, now: Instant) -> Option<u64> {
        match self.connection {
            Connection::Connected { id, expires } if now < expires => Some(id),
            _ => None,
        }
    }

    /// A transaction id no outstanding transaction uses.
    fn new_transaction(&mut self) -> u32 {
        loop {
            let t = self.rng.next_u64() as u32;
            let connecting = matches!(self.connection, Connection::Connecting { transaction, .. } if transaction == t);
            if !connecting && !self.requests.iter().any(|r| r.transaction == Some(t)) {
                return t;
            }
        }
    }

    /// Moves every waiting request on: resolve the name, connect, or send.
    fn drive(&mut self, now: Instant) {
        if !self.requests.iter().any(|r| r.deadline.is_none()) {
            return;
        }
        let addr = match (&self.address, &self.url.target) {
            (Address::Resolved(addr), _) => *addr,
            (Address::Resolving { .. }, _) => return,
            (Address::Unresolved, Target::Addr(addr)) => {
                self.address = Address::Resolved(*addr);
                *addr
            }
            (Address::Unresolved, Target::Host { host, port }) => {
                self.events.push_back(UdpTrackerEvent::Resolve {
                    host: host.clone(),
                    port: *port,
                });
                self.address = Address::Resolving {
                    deadline: now + self.config.resolve_timeout,
                };
                return;
            }
        };
        let Some(connection_id) = self.connection_id(now) else {
            if !matches!(self.connection, Connection::Connecting { .. }) {
                // The connect carries on the retransmission count of the request that
                // needs it, so that a request's transmissions follow one schedule.
                let attempt = self
                    .requests
                    .iter()
                    .filter(|r| r.deadline.is_none())
                    .map(|r| r.attempt)
                    .max()
                    .unwrap_or(0);
                let transaction = self.new_transaction();
                self.connection = Connection::Connecting {
                    transaction,
                    attempt,
                    deadline: now + retransmit_delay(attempt),
                };
                let bytes = Request::Connect { transaction }.encode();
                self.transmits.push_back((addr, Bytes::from(bytes)));
            }
            return;
        };
        for i in 0..self.requests.len() {
            if self.requests[i].deadline.is_some() {
                continue;
            }
            let transaction = match self.requests[i].transaction {
                Some(t) => t,
                None => {
                    let t = self.new_transaction();
                    self.requests[i].transaction = Some(t);
                    t
                }
            };
            let request = &mut self.requests[i];
            request.deadline = Some(now + retransmit_delay(request.attempt));
            let wire = match &request.kind {
                Kind::Announce(p) => Request::Announce(AnnounceRequest {
                    connection_id,
                    transaction,
                    info_hash: p.info_hash,
                    peer_id: p.peer_id,
                    downloaded: p.downloaded,
                    left: p.left,
                    uploaded: p.uploaded,
                    event: p.event,
                    ip: None,
                    key: p.key,
                    num_want: p.numwant,
                    port: p.port,
                    url_data: self.url.url_data.clone(),
                }),
                Kind::Scrape(hashes) => Request::Scrape(ScrapeRequest {
                    connection_id,
                    transaction,
                    info_hashes: hashes.clone(),
                }),
            };
            self.transmits.push_back((addr, Bytes::from(wire.encode())));
        }
    }

    /// Fails the requests waiting for the connect.
    fn fail_waiting(&mut self, error: &UdpTrackerError) {
        let (waiting, sent): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.requests)
            .into_iter()
            .partition(|r| r.deadline.is_none());
        self.requests = sent;
        for r in waiting {
            self.events.push_back(UdpTrackerEvent::Failed {
                request: r.id,
                error: error.clone(),
            });
        }
    }

    /// Fails every request.
    fn fail_all(&mut self, error: &UdpTrackerError) {
        self.connection = Connection::None;
        for r in std::mem::take(&mut self.requests) {
            self.events.push_back(UdpTrackerEvent::Failed {
                request: r.id,
                error: error.clone(),
            });
        }
    }

    /// After a give-up, a host name is resolved again for the next request (unless answers
    /// to other requests are still expected at the old address).
    fn forget_name(&mut self) {
        if matches!(self.url.target, Target::Host { .. })
            && matches!(self.address, Address::Resolved(_))
            && !self.requests.iter().any(|r| r.deadline.is_some())
        {
            self.address = Address::Unresolved;
            self.connection = Connection::None;
        }
    }
}

/// What kind of answer this is, for error messages.
fn describe(response: &Response) -> &'static str {
    match response {
        Response::Connect { .. } => "a connect answer",
        Response::Announce { .. } => "an announce answer",
        Response::Scrape { .. } => "a scrape answer",
        Response::Error { .. } => "an error",
    }
}

#[cfg(test)]
mod tests;
