//! The session's one UDP socket: every datagram that arrives is routed by its content and
//! by what is outstanding, and what the UDP sub-machines want sent leaves as
//! [`Action::SendDatagram`](crate::Action::SendDatagram).
//!
//! The three protocols that share the socket are told apart by their first byte:
//!
//! - a **UDP tracker** answer (BEP 15) starts with its action, a big-endian 32-bit number
//!   from 0 to 3, so with a zero byte; it counts only if a tracker client has a request
//!   outstanding at the sender's address with the transaction id it echoes;
//! - a **DHT** message (BEP 5) is a bencoded dictionary: it starts with `d`;
//! - a **uTP** packet (BEP 29) has version 1 in the low nibble of its first byte and its
//!   type (0 to 4) in the high nibble: `0x01`, `0x11`, `0x21`, `0x31` or `0x41`.
//!
//! No first byte is claimed twice. Whatever matches nothing (or a protocol that is off) is
//! counted in [`DatagramStats`] and dropped; nothing a datagram holds can panic the session.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::Session;
use crate::api::Action;
use crate::id::OpId;
use crate::tracker::udp_pool::PoolOutput;

/// Most host-name look-ups awaited at once (the oldest is forgotten beyond).
const MAX_RESOLVING: usize = 256;

/// What a datagram looks like, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Maybe a UDP tracker's answer (it still has to match a transaction).
    Tracker,
    /// A bencoded dictionary: KRPC.
    Dht,
    /// A uTP packet.
    Utp,
    /// None of these.
    Unknown,
}

/// Sorts a datagram by its first byte (see the module documentation).
pub(crate) fn classify(data: &[u8]) -> Kind {
    match data.first() {
        Some(b'd') => Kind::Dht,
        Some(&b) if b & 0x0f == 1 && b >> 4 <= 4 => Kind::Utp,
        // Every answer is at least 8 bytes: action and transaction id.
        Some(0) if data.len() >= 8 => Kind::Tracker,
        _ => Kind::Unknown,
    }
}

/// Datagrams received, by where they went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatagramStats {
    /// Answers taken by a UDP tracker client.
    pub tracker: u64,
    /// Messages handed to the DHT.
    pub dht: u64,
    /// uTP packets: handed to the uTP socket (dropped under `TransportPolicy::Tcp`, which
    /// has none).
    pub utp: u64,
    /// Anything else: unknown content, a tracker answer nobody waits for, a DHT message
    /// while the DHT is off.
    pub dropped: u64,
}

/// The session's UDP bookkeeping: look-ups in flight and the counters.
#[derive(Debug, Default)]
pub(crate) struct Udp {
    /// `Action::Resolve` ids and the tracker URL each one is for.
    resolving: BTreeMap<OpId, String>,
    pub stats: DatagramStats,
}

impl Session {
    /// Datagrams received so far, by where they went.
    pub fn datagram_stats(&self) -> DatagramStats {
        self.udp.stats
    }

    /// `Input::Datagram`: routes it (see the module documentation).
    pub(super) fn on_datagram(&mut self, from: SocketAddr, data: &Bytes) {
        let now = self.sh.now;
        match classify(data) {
            Kind::Tracker if self.sh.udp_trackers.handle_datagram(now, from, data) => {
                self.udp.stats.tracker += 1;
            }
            Kind::Dht if self.dht_datagram(from, data) => self.udp.stats.dht += 1,
            Kind::Utp => {
                // A malformed packet, or one for no connection, is dropped by the socket:
                // nothing else is touched.
                if let Some(utp) = self.sh.transports.socket() {
                    utp.handle_datagram(now, from, data);
                }
                self.udp.stats.utp += 1;
            }
            kind => {
                tracing::trace!(%from, ?kind, len = data.len(), "datagram dropped");
                self.udp.stats.dropped += 1;
            }
        }
    }

    /// `Input::Resolved`: the addresses of a tracker's host.
    pub(super) fn on_resolved(&mut self, op: OpId, result: Result<Vec<IpAddr>, String>) {
        if let Some(url) = self.udp.resolving.remove(&op) {
            let now = self.sh.now;
            self.sh.udp_trackers.handle_resolved(now, &url, result);
        }
    }

    /// Carries out what the UDP tracker clients want: datagrams, look-ups, and answers
    /// handed to their torrents.
    pub(super) fn drain_udp_trackers(&mut self) {
        while let Some(out) = self.sh.udp_trackers.poll() {
            match out {
                PoolOutput::Transmit { to, data } => {
                    self.sh.action(Action::SendDatagram { to, data });
                }
                PoolOutput::Resolve { url, host } => {
                    let op = OpId(self.sh.next_id());
                    if self.udp.resolving.len() >= MAX_RESOLVING {
                        self.udp.resolving.pop_first();
                    }
                    self.udp.resolving.insert(op, url);
                    self.sh.action(Action::Resolve { op, host });
                }
                PoolOutput::Answered {
                    owner: (torrent, tracker),
                    url,
                    result,
                } => {
                    if let Some(t) = self.torrents.get_mut(&torrent) {
                        t.udp_announce_done(&mut self.sh, tracker, &url, result);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
