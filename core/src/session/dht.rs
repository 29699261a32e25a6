//! The session's DHT node (BEP 5): one [`Dht`] for every torrent, started when the first
//! torrent that may use it is added (never for private torrents, BEP 27, so a session with
//! only private torrents sends no DHT datagram at all).
//!
//! Each public torrent gets an announce lookup (`get_peers`, then `announce_peer` with our
//! listen port to the closest nodes that gave a token) at its start and then again every
//! [`LOOKUP_INTERVAL`], or after [`FEW_PEERS_INTERVAL`] while it downloads with few peers;
//! the peers found join its peer list like a tracker's. A lookup that was answered but
//! found no peer while the torrent has none goes again after [`NOBODY_RETRY`], doubling up
//! to [`FEW_PEERS_INTERVAL`] (the swarm may have been announcing just then). A lookup that
//! reached nobody (an empty routing table) is tried again as soon as the table has a node,
//! or after a growing delay. Nodes come from the bootstrap list, from the state saved by an
//! earlier run and from peers' `port` messages.
//!
//! A torrent added from a magnet link looks up peers the same way while it fetches its
//! metadata, with plain `get_peers` lookups (it has nothing to serve yet); once the
//! metadata is in it announces at once, or, if the metadata says it is private, it leaves
//! the DHT and forgets the peers the DHT alone gave it (BEP 27).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;

use super::Session;
use crate::api::Action;
use crate::config::DhtSettings;
use crate::dht::{Dht, DhtEvent, LookupId, Stats};
use crate::id::{InfoHash, TorrentId};
use crate::time::{Duration, Instant};

/// The time between two announce lookups of a torrent.
pub const LOOKUP_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// The time between two lookups while a torrent has fewer than [`FEW_PEERS`] peers.
pub const FEW_PEERS_INTERVAL: Duration = Duration::from_secs(60);
/// Below this many connected peers, a torrent that is not complete looks again after
/// [`FEW_PEERS_INTERVAL`].
pub const FEW_PEERS: usize = 5;
/// The first delay after a lookup that reached nobody; doubles up to [`LOOKUP_INTERVAL`].
const NOBODY_RETRY: Duration = Duration::from_secs(10);
/// How often a torrent that is checking its data looks whether its lookup may start.
const CHECKING_RETRY: Duration = Duration::from_secs(1);

/// A torrent's lookups.
#[derive(Debug)]
struct Search {
    info_hash: InfoHash,
    lookup: Option<LookupId>,
    /// The running lookup announces (`false`: a plain `get_peers` of the metadata phase).
    announcing: bool,
    next_at: Instant,
    /// Lookups in a row that reached nobody.
    unanswered: u32,
    /// Lookups in a row that were answered but found no peer while the torrent had none.
    empty: u32,
}

/// The session's DHT and the lookups of its torrents.
#[derive(Debug, Default)]
pub(crate) struct SessionDht {
    /// From `Session::enable_dht`, until the node starts.
    setup: Option<DhtSettings>,
    node: Option<Dht>,
    searches: BTreeMap<TorrentId, Search>,
    lookups: BTreeMap<LookupId, TorrentId>,
    /// The routing table had a node after the last input.
    had_nodes: bool,
}

impl Session {
    /// Turns the DHT on: it starts with the first torrent that is not private (at once if
    /// there is one), bootstraps from `settings.bootstrap` and `settings.state`, and looks
    /// for peers of every public torrent. Call before adding torrents so that their
    /// handshakes carry the DHT bit; drain [`Session::poll_output`] afterwards.
    pub fn enable_dht(&mut self, now: Instant, settings: DhtSettings) {
        self.sh.now = now.max(self.sh.now);
        if self.dht.setup.is_some() || self.dht.node.is_some() {
            return;
        }
        self.sh.dht = true;
        self.dht.setup = Some(settings);
        let public: Vec<(TorrentId, InfoHash)> = self
            .torrents
            .iter()
            .filter(|(_, t)| t.uses_dht(&self.sh))
            .map(|(id, t)| (*id, t.info_hash()))
            .collect();
        for (id, hash) in public {
            self.dht_add(id, hash);
        }
        self.after_input();
    }

    /// The DHT's routing table, to be given back in [`DhtSettings::state`] next time (our
    /// node id and up to 200 nodes per address family). `None` while no DHT runs.
    pub fn dht_state(&self) -> Option<Vec<u8>> {
        self.dht.node.as_ref().map(Dht::save)
    }

    /// The DHT's counters (`None` while no DHT runs).
    pub fn dht_stats(&self) -> Option<Stats> {
        self.dht.node.as_ref().map(Dht::stats)
    }

    /// A torrent was added: a public one gets lookups (and starts the node).
    pub(super) fn dht_add(&mut self, id: TorrentId, info_hash: InfoHash) {
        let Some(t) = self.torrents.get(&id) else {
            return;
        };
        if !t.uses_dht(&self.sh) {
            return;
        }
        self.dht.searches.insert(
            id,
            Search {
                info_hash,
                lookup: None,
                announcing: false,
                next_at: self.sh.now,
                unanswered: 0,
                empty: 0,
            },
        );
        if self.dht.node.is_none()
            && let Some(settings) = self.dht.setup.take()
        {
            let now = self.sh.now;
            let mut seed = [0u8; 32];
            self.sh.rng.fill(&mut seed);
            let mut node = Dht::new(settings.config, now, seed, None, settings.state.as_deref());
            node.bootstrap(now, &settings.bootstrap);
            self.dht.node = Some(node);
        }
    }

    /// A magnet link's torrent has its metadata and runs as a full torrent: it announces
    /// now (its plain `get_peers` lookup, if one runs, is dropped for an announce one), or,
    /// private, leaves the DHT.
    pub(super) fn dht_resumed(&mut self, id: TorrentId) {
        let uses = self.torrents.get(&id).is_some_and(|t| t.uses_dht(&self.sh));
        let now = self.sh.now;
        if !uses {
            if let Some(search) = self.dht.searches.remove(&id)
                && let Some(lookup) = search.lookup
            {
                self.dht.lookups.remove(&lookup);
                if let Some(node) = self.dht.node.as_mut() {
                    node.cancel(lookup);
                }
            }
            return;
        }
        let Some(search) = self.dht.searches.get_mut(&id) else {
            return;
        };
        if search.announcing {
            return;
        }
        if let Some(lookup) = search.lookup.take() {
            self.dht.lookups.remove(&lookup);
            if let Some(node) = self.dht.node.as_mut() {
                node.cancel(lookup);
            }
        }
        search.next_at = now;
    }

    /// A datagram that starts like KRPC. `false`: no DHT runs.
    pub(super) fn dht_datagram(&mut self, from: SocketAddr, data: &Bytes) -> bool {
        let now = self.sh.now;
        match self.dht.node.as_mut() {
            Some(node) => {
                node.handle_datagram(now, from, data);
                true
            }
            None => false,
        }
    }

    /// Deadlines: the node's own, then the lookups that are due.
    pub(super) fn dht_handle_timeout(&mut self) {
        let now = self.sh.now;
        let Some(node) = self.dht.node.as_mut() else {
            return;
        };
        if node.poll_timeout().is_some_and(|t| t <= now) {
            node.handle_timeout(now);
        }
        if self.stopping.is_some() {
            return;
        }
        let port = self.sh.config.listen_port;
        for (id, search) in &mut self.dht.searches {
            if search.lookup.is_some() || search.next_at > now {
                continue;
            }
            let Some(t) = self.torrents.get(id) else {
                continue;
            };
            if t.stats(now).checking {
                // Not while it hashes its data: look again a little later (a search left
                // due would make the session's deadline `now` until the check ends).
                search.next_at = now + CHECKING_RETRY;
                continue;
            }
            let lookup = if t.fetching_metadata() {
                tracing::debug!(info_hash = %search.info_hash, "DHT get_peers lookup");
                node.get_peers(now, search.info_hash)
            } else {
                tracing::debug!(info_hash = %search.info_hash, "DHT announce lookup");
                node.announce(now, search.info_hash, (port != 0).then_some(port))
            };
            search.announcing = !t.fetching_metadata();
            search.lookup = Some(lookup);
            self.dht.lookups.insert(lookup, *id);
        }
    }

    /// Carries out what the node wants: datagrams, peers for torrents, the next lookups;
    /// and hands it the nodes peers told us of.
    pub(super) fn drain_dht(&mut self) {
        let now = self.sh.now;
        let learned = std::mem::take(&mut self.sh.dht_nodes);
        let Some(node) = self.dht.node.as_mut() else {
            return;
        };
        for addr in learned {
            node.add_node(now, addr);
        }
        while let Some((to, data)) = node.poll_transmit() {
            self.sh.action(Action::SendDatagram { to, data });
        }
        let mut events = Vec::new();
        while let Some(event) = node.poll_event() {
            events.push(event);
        }
        for event in events {
            match event {
                DhtEvent::Peers { lookup, peers, .. } => {
                    let Some(id) = self.dht.lookups.get(&lookup) else {
                        continue;
                    };
                    if self.stopping.is_some() {
                        continue;
                    }
                    if let Some(t) = self.torrents.get_mut(id) {
                        tracing::debug!(peers = peers.len(), "peers from the DHT");
                        t.add_dht_peers(&mut self.sh, &peers);
                    }
                }
                DhtEvent::LookupDone(done) => {
                    let Some(id) = self.dht.lookups.remove(&done.lookup) else {
                        continue;
                    };
                    let (few, alone) = self.torrents.get(&id).map_or((false, false), |t| {
                        let stats = t.stats(now);
                        let wants = !stats.complete;
                        (stats.peers < FEW_PEERS && wants, stats.peers == 0 && wants)
                    });
                    if let Some(s) = self.dht.searches.get_mut(&id) {
                        s.lookup = None;
                        let wait = if done.responses == 0 {
                            s.unanswered = s.unanswered.saturating_add(1);
                            (NOBODY_RETRY * (1 << s.unanswered.min(7) >> 1)).min(LOOKUP_INTERVAL)
                        } else if done.peers == 0 && alone {
                            // The network answered but knows no peer yet (the swarm may be
                            // announcing just now): look again soon, then less often.
                            s.unanswered = 0;
                            s.empty = s.empty.saturating_add(1);
                            (NOBODY_RETRY * (1 << s.empty.min(7) >> 1)).min(FEW_PEERS_INTERVAL)
                        } else {
                            s.unanswered = 0;
                            s.empty = 0;
                            if few {
                                FEW_PEERS_INTERVAL
                            } else {
                                LOOKUP_INTERVAL
                            }
                        };
                        s.next_at = now + wait;
                    }
                }
                DhtEvent::Bootstrapped { nodes } => {
                    tracing::debug!(nodes, "DHT bootstrapped");
                    self.dht_wake_searches();
                }
                DhtEvent::ExternalAddress { ip, .. } => {
                    tracing::debug!(%ip, "DHT: our external address");
                }
            }
        }
        // Lookups that reached nobody go again once the table has a node.
        if !self.dht.had_nodes
            && let Some(node) = &self.dht.node
        {
            let stats = node.stats();
            if stats.nodes.iter().sum::<usize>() > 0 {
                self.dht.had_nodes = true;
                self.dht_wake_searches();
            }
        }
    }

    /// Lookups that reached nobody are due now.
    fn dht_wake_searches(&mut self) {
        let now = self.sh.now;
        for s in self.dht.searches.values_mut() {
            if s.lookup.is_none() && s.unanswered > 0 {
                s.next_at = s.next_at.min(now);
            }
        }
    }

    /// When the DHT next needs the time.
    pub(super) fn dht_poll_timeout(&self) -> Option<Instant> {
        let node = self.dht.node.as_ref()?;
        let searches = self
            .dht
            .searches
            .values()
            .filter(|s| s.lookup.is_none())
            .map(|s| s.next_at)
            .min()
            .filter(|_| self.stopping.is_none());
        [node.poll_timeout(), searches].into_iter().flatten().min()
    }
}
