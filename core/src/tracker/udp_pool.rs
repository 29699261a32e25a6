//! Every `udp://` tracker of a session: one [`UdpTracker`] client per URL, shared by the
//! torrents that announce to it (so a connection id serves all of them), with each request
//! remembered by its owner (for the session: a torrent and its tracker's index).
//!
//! The pool is a sans-IO machine like the clients it holds: requests and inputs in, then
//! [`UdpTrackerPool::poll`] until `None` (datagrams to send, names to resolve, answers for
//! owners), then [`UdpTrackerPool::poll_timeout`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::AnnounceParams;
use super::udp::{
    UdpAnnounceResponse, UdpRequestId, UdpTracker, UdpTrackerConfig, UdpTrackerError,
    UdpTrackerEvent,
};
use crate::rng::Rng;
use crate::time::Instant;

/// Most distinct tracker URLs with a client at once; a further URL fails its announce.
pub const MAX_UDP_TRACKERS: usize = 1024;

/// What the pool asks of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PoolOutput<K> {
    /// Send a datagram.
    Transmit {
        /// The tracker's address.
        to: SocketAddr,
        /// The request.
        data: Bytes,
    },
    /// Look up the host of the tracker `url`; answer with [`UdpTrackerPool::handle_resolved`].
    Resolve {
        /// The tracker (its URL, as announced to).
        url: String,
        /// The host name.
        host: String,
    },
    /// An announce ended.
    Answered {
        /// Whose announce it was.
        owner: K,
        /// The tracker's URL.
        url: String,
        /// The answer, or why there is none.
        result: Result<UdpAnnounceResponse, UdpTrackerError>,
    },
}

/// The `udp://` trackers of a session, keyed by URL. See the module documentation.
#[derive(Debug)]
pub(crate) struct UdpTrackerPool<K> {
    config: UdpTrackerConfig,
    clients: BTreeMap<String, UdpTracker>,
    owners: BTreeMap<(String, UdpRequestId), K>,
}

impl<K: Copy + Ord> UdpTrackerPool<K> {
    /// An empty pool whose clients get `config`.
    pub fn new(config: UdpTrackerConfig) -> Self {
        UdpTrackerPool {
            config,
            clients: BTreeMap::new(),
            owners: BTreeMap::new(),
        }
    }

    /// True when some request of `owner` is outstanding.
    pub fn is_waiting(&self, owner: impl Fn(&K) -> bool) -> bool {
        self.owners.values().any(owner)
    }

    /// Announces to `url` for `owner`. A client for the URL is made on first use (its
    /// transaction ids drawn from a generator forked off `rng`). `Err`: the URL is not a
    /// usable `udp://` tracker URL (or too many trackers are in use).
    pub fn announce(
        &mut self,
        now: Instant,
        url: &str,
        params: AnnounceParams,
        owner: K,
        rng: &mut Rng,
    ) -> Result<(), String> {
        if !self.clients.contains_key(url) {
            if self.clients.len() >= MAX_UDP_TRACKERS {
                self.clients.retain(|_, c| !c.is_idle());
                if self.clients.len() >= MAX_UDP_TRACKERS {
                    return Err("too many UDP trackers in use".into());
                }
            }
            let client = UdpTracker::new(url, self.config.clone(), rng.fork())?;
            self.clients.insert(url.to_owned(), client);
        }
        let Some(client) = self.clients.get_mut(url) else {
            return Err("no client".into());
        };
        let id = client.announce(now, params);
        self.owners.insert((url.to_owned(), id), owner);
        Ok(())
    }

    /// Forgets every request of the owners `which` selects: no answer will come for them.
    pub fn cancel(&mut self, which: impl Fn(&K) -> bool) {
        let gone: Vec<(String, UdpRequestId)> = self
            .owners
            .iter()
            .filter(|(_, k)| which(k))
            .map(|(key, _)| key.clone())
            .collect();
        for (url, id) in gone {
            self.owners.remove(&(url.clone(), id));
            if let Some(client) = self.clients.get_mut(&url) {
                client.cancel(id);
            }
        }
    }

    /// A datagram that may be a tracker's answer. Returns whether a client took it (it came
    /// from a tracker's address and echoed an outstanding transaction id).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> bool {
        self.clients
            .values_mut()
            .any(|c| c.handle_datagram(now, from, data))
    }

    /// The answer to [`PoolOutput::Resolve`] for the tracker `url`.
    pub fn handle_resolved(
        &mut self,
        now: Instant,
        url: &str,
        result: Result<Vec<IpAddr>, String>,
    ) {
        if let Some(client) = self.clients.get_mut(url) {
            client.handle_resolved(now, result);
        }
    }

    /// Time has passed: retransmissions and give-ups that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for client in self.clients.values_mut() {
            if client.poll_timeout().is_some_and(|t| t <= now) {
                client.handle_timeout(now);
            }
        }
    }

    /// The next thing to do, if any: drain after every request and input.
    pub fn poll(&mut self) -> Option<PoolOutput<K>> {
        for (url, client) in &mut self.clients {
            if let Some((to, data)) = client.poll_transmit() {
                return Some(PoolOutput::Transmit { to, data });
            }
            while let Some(event) = client.poll_event() {
                match event {
                    UdpTrackerEvent::Resolve { host, .. } => {
                        return Some(PoolOutput::Resolve {
                            url: url.clone(),
                            host,
                        });
                    }
                    UdpTrackerEvent::Announced { request, response } => {
                        if let Some(owner) = self.owners.remove(&(url.clone(), request)) {
                            return Some(PoolOutput::Answered {
                                owner,
                                url: url.clone(),
                                result: Ok(response),
                            });
                        }
                    }
                    UdpTrackerEvent::Failed { request, error } => {
                        if let Some(owner) = self.owners.remove(&(url.clone(), request)) {
                            return Some(PoolOutput::Answered {
                                owner,
                                url: url.clone(),
                                result: Err(error),
                            });
                        }
                    }
                    // The session does not scrape.
                    UdpTrackerEvent::Scraped { .. } => {}
                }
            }
        }
        None
    }

    /// When [`UdpTrackerPool::handle_timeout`] must run next, if anything is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.clients
            .values()
            .filter_map(UdpTracker::poll_timeout)
            .min()
    }
}
