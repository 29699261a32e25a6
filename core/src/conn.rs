//! The connection layer beneath the peer wire: how each peer connection's bytes are
//! protected. The peer logic reads and writes a plain BitTorrent stream; below it, a
//! connection may first run the MSE handshake ([`crate::mse`]) and then have RC4 applied
//! to every byte in and out.
//!
//! [`Links`] keeps, per peer connection: the handshake machine while it runs (an
//! [`Initiator`] for one we dialled, a [`Responder`] for one we accepted), the two
//! keystreams once RC4 was selected, what the connection ended up with ([`Encryption`]),
//! and the bytes sent below the peer wire (the MSE handshake, and the BitTorrent handshake
//! carried in its initial payload), which the driver's `Sent` reports count but the peer
//! logic's flow control must not. The session drives the handshakes (`session/handshake.rs`);
//! `Shared::send` encrypts through [`Links::outgoing`].

use std::net::SocketAddr;

use bytes::Bytes;

use crate::id::{ConnId, InfoHash};
use crate::mse::{Encryption, Initiator, Keystream, Policy, Responder};
use crate::vec_map::VecMap;

/// How an outbound connection is dialled, and what was tried before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DialPlan {
    /// What this connection offers: the session's policy, or `Disable` for the plaintext
    /// connection that follows a refused MSE handshake under `Prefer`.
    pub policy: Policy,
    /// This connection is already the one retry of an MSE handshake that failed with a
    /// shared secret beginning with a zero byte.
    pub retried: bool,
}

/// The handshake a connection is in, if any.
#[derive(Debug)]
pub(crate) enum Stage {
    /// Dialled, not yet connected: how to dial it once it is.
    Planned(DialPlan),
    /// Our MSE handshake on a connection we dialled.
    Dialing { mse: Box<Initiator>, plan: DialPlan },
    /// The first bytes of a connection we accepted: MSE or plain BitTorrent.
    Accepting { mse: Box<Responder> },
    /// The handshake is over (or there was none): bytes are the peer wire's.
    Open,
}

/// One peer connection's protection.
#[derive(Debug)]
pub(crate) struct Link {
    pub stage: Stage,
    pub encryption: Encryption,
    /// Encrypts what we send (RC4 selected).
    out: Option<Keystream>,
    /// Decrypts what we receive (RC4 selected).
    inc: Option<Keystream>,
    /// Bytes handed to the driver below the peer wire and not yet reported written.
    overhead: usize,
    /// We dialled it.
    pub outbound: bool,
    /// The peer's address, for logs.
    pub addr: SocketAddr,
    /// Bytes received since the handshake (MSE's or none) was over.
    pub received: u64,
    /// For an accepted MSE connection: the torrent its `req2` named.
    pub skey: Option<InfoHash>,
}

impl Link {
    fn new(stage: Stage, outbound: bool, addr: SocketAddr) -> Link {
        Link {
            stage,
            addr,
            encryption: Encryption::None,
            out: None,
            inc: None,
            overhead: 0,
            outbound,
            received: 0,
            skey: None,
        }
    }
}

/// Every peer connection's [`Link`]. A connection without one (a tracker's, or a peer
/// connection in plain BitTorrent that nobody planned) passes bytes through unchanged.
#[derive(Debug, Default)]
pub(crate) struct Links {
    links: VecMap<ConnId, Link>,
}

impl Links {
    pub fn get(&self, conn: ConnId) -> Option<&Link> {
        self.links.get(&conn)
    }

    pub fn get_mut(&mut self, conn: ConnId) -> Option<&mut Link> {
        self.links.get_mut(&conn)
    }

    /// How the connection's stream is protected (`None` for plain BitTorrent).
    pub fn encryption(&self, conn: ConnId) -> Encryption {
        self.links
            .get(&conn)
            .map_or(Encryption::None, |l| l.encryption)
    }

    /// Notes how an outbound connection not yet connected is to be dialled.
    pub fn plan(&mut self, conn: ConnId, plan: DialPlan, addr: SocketAddr) {
        self.links
            .insert(conn, Link::new(Stage::Planned(plan), true, addr));
    }

    /// The plan noted for `conn`, taken (`None`: the session's default applies).
    pub fn take_plan(&mut self, conn: ConnId) -> Option<DialPlan> {
        match self.links.get(&conn).map(|l| &l.stage) {
            Some(Stage::Planned(plan)) => {
                let plan = *plan;
                self.links.remove(&conn);
                Some(plan)
            }
            _ => None,
        }
    }

    /// An outbound connection starting its MSE handshake.
    pub fn dialing(&mut self, conn: ConnId, mse: Initiator, plan: DialPlan, addr: SocketAddr) {
        let stage = Stage::Dialing {
            mse: Box::new(mse),
            plan,
        };
        self.links.insert(conn, Link::new(stage, true, addr));
    }

    /// An outbound connection in plain BitTorrent (kept to tell a peer that closes on our
    /// plaintext handshake in the logs).
    pub fn plain_outbound(&mut self, conn: ConnId, addr: SocketAddr) {
        self.links.insert(conn, Link::new(Stage::Open, true, addr));
    }

    /// An inbound connection whose first bytes are awaited.
    pub fn accepting(&mut self, conn: ConnId, mse: Responder, addr: SocketAddr) {
        let stage = Stage::Accepting { mse: Box::new(mse) };
        self.links.insert(conn, Link::new(stage, false, addr));
    }

    /// The handshake of `conn` is over: from now on `cipher` (if any) protects the stream.
    pub fn open(
        &mut self,
        conn: ConnId,
        encryption: Encryption,
        cipher: Option<crate::mse::StreamCipher>,
    ) {
        if let Some(link) = self.links.get_mut(&conn) {
            link.stage = Stage::Open;
            link.encryption = encryption;
            if let Some(c) = cipher {
                let (out, inc) = c.split();
                link.out = Some(out);
                link.inc = Some(inc);
            }
        }
    }

    /// Bytes sent below the peer wire: counted so that `Sent` reports can leave them out.
    pub fn add_overhead(&mut self, conn: ConnId, bytes: usize) {
        if let Some(link) = self.links.get_mut(&conn) {
            link.overhead += bytes;
        }
    }

    /// Of `bytes` the driver reports written, those of the peer wire.
    pub fn sent(&mut self, conn: ConnId, bytes: usize) -> usize {
        match self.links.get_mut(&conn) {
            Some(link) => {
                let below = link.overhead.min(bytes);
                link.overhead -= below;
                bytes - below
            }
            None => bytes,
        }
    }

    /// Bytes the peer wire sends: encrypted if RC4 protects the connection (in place when
    /// `data` is the only handle to its buffer).
    pub fn outgoing(&mut self, conn: ConnId, data: Bytes) -> Bytes {
        match self.links.get_mut(&conn).and_then(|l| l.out.as_mut()) {
            Some(out) => out.apply_bytes(data),
            None => data,
        }
    }

    /// Bytes received on an open connection: decrypted if RC4 protects it.
    pub fn incoming(&mut self, conn: ConnId, data: Bytes) -> Bytes {
        match self.links.get_mut(&conn) {
            Some(link) => {
                link.received += data.len() as u64;
                match link.inc.as_mut() {
                    Some(inc) => inc.apply_bytes(data),
                    None => data,
                }
            }
            None => data,
        }
    }

    /// Forgets a connection.
    pub fn remove(&mut self, conn: ConnId) -> Option<Link> {
        self.links.remove(&conn)
    }
}
