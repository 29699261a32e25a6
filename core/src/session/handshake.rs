//! The session's side of the connection layer ([`crate::conn`]): it runs each peer
//! connection's MSE handshake ([`crate::mse`]) before the peer wire sees a byte, applies
//! the policy (`Config::encryption`), and redials when an encrypted handshake fails.
//!
//! - **Outbound**: when a peer connection is up, `Prefer` and `Require` start an
//!   [`Initiator`] whose initial payload is our BitTorrent handshake; `Disable` (and the
//!   plaintext redial below) hands the connection to the torrent as before.
//! - **Inbound**: every accepted connection gets a [`Responder`], which tells plaintext
//!   from MSE by the first bytes and finds the torrent from `req2 xor req3` among all of
//!   the session's torrents; what follows the handshake goes to the pending connection's
//!   BitTorrent handshake as before.
//! - **Redials**: a peer that closes our MSE handshake (or answers it wrongly) is dialled
//!   once more. With MSE again if the shared secret began with a zero byte (the 1 in 256
//!   handshakes peers that do not pad the secret, libtorrent up to 2.0.x among them, fail:
//!   a new connection has new keys); else, under `Prefer`, in plain BitTorrent. Under
//!   `Require` nothing is ever sent in plaintext.
//! - Handshake time-outs are the existing ones: the torrent's connect time-out covers an
//!   outbound connection until its BitTorrent handshake, the session's handshake time-out
//!   an inbound one.

use bytes::Bytes;

use super::Session;
use crate::api::CloseReason;
use crate::conn::{DialPlan, Stage};
use crate::id::ConnId;
use crate::mse::{Done, Encryption, Initiator, MseError, Policy, Responder};
use crate::shared::Route;

impl Session {
    /// Sends what the connection's handshake machine has for the peer.
    fn flush_handshake(&mut self, conn: ConnId) {
        loop {
            let next = match self.sh.links.get_mut(conn).map(|l| &mut l.stage) {
                Some(Stage::Dialing { mse, .. }) => mse.poll_transmit(),
                Some(Stage::Accepting { mse }) => mse.poll_transmit(),
                _ => None,
            };
            match next {
                Some(bytes) => self.sh.send_below(conn, bytes),
                None => return,
            }
        }
    }

    /// An accepted connection: its first bytes decide between MSE and plain BitTorrent.
    pub(super) fn link_accepted(&mut self, conn: ConnId, addr: std::net::SocketAddr) {
        let mse = Responder::new(&mut self.sh.rng, self.sh.config.encryption);
        self.sh.links.accepting(conn, mse, addr);
    }

    /// An outbound connection is up. True when the connection layer took it (an MSE
    /// handshake started); false when the torrent is to send its plain handshake.
    pub(super) fn link_connected(&mut self, conn: ConnId) -> bool {
        let Some(Route::Peer(id)) = self.sh.route(conn) else {
            return false;
        };
        let plan = self.sh.links.take_plan(conn).unwrap_or(DialPlan {
            policy: self.sh.config.encryption,
            retried: false,
        });
        let Some(t) = self.torrents.get_mut(&id) else {
            return false;
        };
        let Some((addr, ours)) = t.dial_handshake(&self.sh, conn) else {
            return false;
        };
        if plan.policy == Policy::Disable {
            self.sh.links.plain_outbound(conn, addr);
            return false;
        }
        let info_hash = t.info_hash();
        let ia = Bytes::copy_from_slice(&ours);
        let mse = Initiator::new(&mut self.sh.rng, info_hash, plan.policy, ia);
        self.sh.links.dialing(conn, mse, plan, addr);
        self.flush_handshake(conn);
        true
    }

    /// Bytes received on `conn`, through its link: `Some(plaintext)` for the peer wire (or
    /// the pending connection's BitTorrent handshake), `None` when the handshake took them.
    pub(super) fn link_received(&mut self, conn: ConnId, data: Bytes) -> Option<Bytes> {
        let Some(link) = self.sh.links.get_mut(conn) else {
            return Some(data);
        };
        match &mut link.stage {
            Stage::Open | Stage::Planned(_) => Some(self.sh.links.incoming(conn, data)),
            Stage::Dialing { mse, .. } => {
                let result = mse.feed(&data);
                self.flush_handshake(conn);
                match result {
                    Ok(None) => {}
                    Ok(Some(done)) => self.dial_done(conn, done),
                    Err(e) => self.dial_failed(conn, e.to_string(), true),
                }
                None
            }
            Stage::Accepting { mse } => {
                let by_req2 = &self.by_req2;
                let result = mse.feed_with(&data, |req2| by_req2.get(req2).copied());
                self.flush_handshake(conn);
                match result {
                    Ok(None) => None,
                    Ok(Some(done)) => {
                        let addr = link_addr(self, conn);
                        let enc = done.encryption;
                        if enc != Encryption::None {
                            tracing::info!(%addr, "inbound peer: {enc} connection");
                        }
                        self.sh.links.open(conn, enc, done.cipher);
                        if let Some(link) = self.sh.links.get_mut(conn) {
                            link.skey = done.info_hash;
                            link.received += done.leftover.len() as u64;
                        }
                        Some(done.leftover)
                    }
                    Err(e) => {
                        let addr = link_addr(self, conn);
                        match e {
                            MseError::PlaintextRefused | MseError::EncryptionRefused => {
                                tracing::info!(%addr, "inbound peer refused: {e}")
                            }
                            _ => tracing::info!(%addr, "inbound encrypted handshake failed: {e}"),
                        }
                        self.pending.remove(&conn);
                        self.sh.close(conn);
                        None
                    }
                }
            }
        }
    }

    /// Our MSE handshake is done: the torrent's BitTorrent handshake went out in it.
    fn dial_done(&mut self, conn: ConnId, done: Done) {
        let addr = link_addr(self, conn);
        let enc = done.encryption;
        tracing::info!(%addr, "outbound peer: {enc} connection");
        self.sh.links.open(conn, enc, done.cipher);
        if let Some(link) = self.sh.links.get_mut(conn) {
            link.received += done.leftover.len() as u64;
        }
        let leftover = done.leftover;
        self.with_torrent(conn, |t, sh| {
            t.handshake_sent(sh, conn);
            if !leftover.is_empty() {
                t.on_data(sh, conn, leftover);
            }
        });
    }

    /// Our MSE handshake on `conn` failed (`ours`: we found the error and close the
    /// connection; else the peer closed it): redial once, or give the peer up.
    fn dial_failed(&mut self, conn: ConnId, why: String, ours: bool) {
        let Some(Route::Peer(id)) = self.sh.route(conn) else {
            self.sh.links.remove(conn);
            return;
        };
        let Some(link) = self.sh.links.remove(conn) else {
            return;
        };
        let Stage::Dialing { mse, plan } = link.stage else {
            return;
        };
        let addr = link.addr;
        let next = if mse.secret_began_with_zero() && !plan.retried {
            tracing::info!(
                %addr,
                "encrypted handshake failed ({why}) with a shared secret beginning with a zero byte \
                 (a peer that does not pad it fails so): dialling again with new keys"
            );
            Some(DialPlan {
                policy: plan.policy,
                retried: true,
            })
        } else if plan.policy == Policy::Prefer {
            tracing::info!(%addr, "encrypted handshake failed ({why}): dialling again in plaintext");
            Some(DialPlan {
                policy: Policy::Disable,
                retried: plan.retried,
            })
        } else {
            tracing::info!(%addr, "encrypted handshake failed ({why}); encryption is required, giving up the peer");
            None
        };
        if ours {
            self.sh.close(conn);
        } else {
            self.sh.forget(conn);
        }
        let Some(t) = self.torrents.get_mut(&id) else {
            return;
        };
        match next.and_then(|plan| t.redial(&mut self.sh, conn).map(|new| (new, plan))) {
            Some((new, plan)) => self.sh.links.plan(new, plan, addr),
            None => t.peer_gone(
                &mut self.sh,
                conn,
                CloseReason::Encryption(format!("encrypted handshake failed: {why}")),
            ),
        }
    }

    /// The driver reported `conn` closed. True when the connection layer dealt with it
    /// (an MSE handshake of ours cut short); false to route the close as before.
    pub(super) fn link_closed(&mut self, conn: ConnId, error: Option<&str>) -> bool {
        let Some(link) = self.sh.links.get(conn) else {
            return false;
        };
        match &link.stage {
            Stage::Dialing { .. } => {
                let why = error.map_or("closed by the peer".to_string(), |e| e.to_string());
                self.dial_failed(conn, why, false);
                true
            }
            Stage::Open if link.outbound && link.received == 0 => {
                let hint = if self.sh.config.encryption == Policy::Disable {
                    " (it may require encryption, which is disabled here)"
                } else {
                    ""
                };
                tracing::info!(addr = %link.addr, "peer closed the connection without answering our plaintext handshake{hint}");
                false
            }
            _ => false,
        }
    }

    /// For an inbound MSE connection, whether the BitTorrent handshake names the torrent
    /// its `req2` asked for (always true for plain BitTorrent).
    pub(super) fn link_names(&self, conn: ConnId, info_hash: &crate::id::InfoHash) -> bool {
        self.sh
            .links
            .get(conn)
            .and_then(|l| l.skey)
            .is_none_or(|skey| skey == *info_hash)
    }
}

fn link_addr(session: &Session, conn: ConnId) -> std::net::SocketAddr {
    session
        .sh
        .links
        .get(conn)
        .map_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0)), |l| l.addr)
}
