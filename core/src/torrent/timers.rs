//! The torrent's deadlines (see [`crate::timer`]): when it next needs the time, and what it
//! does then.
//!
//! Deadlines of single connections (a connect or handshake that takes too long, a silent
//! peer, a message trickling in, a keep-alive owed, requests a peer lets time out) are not
//! timers of their own: the [`TorrentTimer::Sweep`] judges them all, every `config.tick`, and
//! only while the torrent has connections. With peers there is traffic anyway, and one pass
//! over them costs less than keeping a deadline per peer up to date at every message; with
//! none, the torrent wakes only for its trackers and for addresses due to be dialled.

use super::{Phase, State, Torrent, send};
use crate::api::CloseReason;
use crate::shared::Shared;
use crate::time::{Duration, Instant};
use crate::timer::Timer;
use crate::wire::Message;

/// How long an outbound connection may take to be established and to complete the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Send a keep-alive after this long without sending anything.
const KEEPALIVE: Duration = Duration::from_secs(90);
/// Longest a message may take to arrive once it has started (a 16 KiB block at 300 B/s).
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The torrent's named deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TorrentTimer {
    /// The sweep over the torrent's connections, every `config.tick` while it has any:
    /// time-outs of single connections, keep-alives, request time-outs and queue depths,
    /// and dialling more peers.
    Sweep,
    /// The choker's next full round, while some peer holds or wants an upload slot.
    Choke,
    /// The next announce due, or the first tracker request to time out.
    Announce,
    /// When an address may next be dialled, while the torrent has no connection (with
    /// connections, the sweep dials).
    Dial,
}

impl Timer for TorrentTimer {
    const ALL: &'static [Self] = &[
        TorrentTimer::Sweep,
        TorrentTimer::Choke,
        TorrentTimer::Announce,
        TorrentTimer::Dial,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl Torrent {
    /// When the torrent next needs [`Torrent::handle_timeout`], if ever. Up to date after
    /// [`Torrent::update_timers`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs the timers due at `sh.now` (the session re-arms them with
    /// [`Torrent::update_timers`] once the input is done).
    pub fn handle_timeout(&mut self, sh: &mut Shared) {
        self.update_timers(sh);
        let now = sh.now;
        if self.poll_timeout().is_none_or(|at| at > now) {
            return;
        }
        for timer in TorrentTimer::ALL {
            if !self.timers.is_due(*timer, now) {
                continue;
            }
            match timer {
                TorrentTimer::Sweep => {
                    self.timers.set(TorrentTimer::Sweep, now + sh.config.tick);
                    self.sweep(sh);
                }
                TorrentTimer::Choke => self.rechoke(sh, true),
                TorrentTimer::Announce => self.announce_due(sh),
                TorrentTimer::Dial => self.connect_peers(sh),
            }
        }
    }

    /// Re-arms every timer from the torrent's state, after an input changed it. Leaves
    /// none at or before `sh.now` that its handler would not move on.
    pub fn update_timers(&mut self, sh: &mut Shared) {
        let now = sh.now;
        if self.peers.is_empty() {
            self.timers.stop(TorrentTimer::Sweep);
        } else if self.timers.get(TorrentTimer::Sweep).is_none() {
            self.timers.set(TorrentTimer::Sweep, now + sh.config.tick);
        }
        let choke = if self.peers.is_empty() {
            None
        } else {
            self.choke_deadline()
        };
        self.timers.set_or_stop(TorrentTimer::Choke, choke);
        let announce = self.announce_deadline(now);
        self.timers.set_or_stop(TorrentTimer::Announce, announce);
        let dial = self.dial_deadline();
        self.timers.set_or_stop(TorrentTimer::Dial, dial);
    }

    /// When an address may next be dialled while the torrent has no connection.
    fn dial_deadline(&self) -> Option<Instant> {
        if !self.peers.is_empty()
            || self.stopping
            || matches!(self.state, State::Failed | State::Checking)
            || (self.picker.is_complete() && !self.seed_after)
        {
            return None;
        }
        let seeding = self.picker.is_complete();
        let mut at = self.peer_list.next_attempt(seeding)?;
        if seeding && !self.peer_list.has_persistent() {
            at = at.max(self.next_seed_dial);
        }
        // An address due that `connect_peers` held back (a limit, a seed's pace) waits for
        // `dial_retry`, so that the timer never stays due.
        Some(at.max(self.dial_retry))
    }

    /// The `Sweep` timer: closes connections past their deadlines, sends keep-alives,
    /// re-judges requests and queue depths, and dials more peers.
    fn sweep(&mut self, sh: &mut Shared) {
        let now = sh.now;
        let mut to_close = Vec::new();
        for (&conn, peer) in &mut self.peers {
            match peer.phase {
                Phase::Connecting | Phase::Handshaking | Phase::Ourselves => {
                    if now.saturating_duration_since(peer.connected_at) > CONNECT_TIMEOUT {
                        to_close.push((conn, CloseReason::ConnectTimeout, true));
                    }
                    continue;
                }
                Phase::Active => {}
            }
            if now.saturating_duration_since(peer.last_recv) > sh.config.idle_timeout {
                to_close.push((conn, CloseReason::Idle, false));
                continue;
            }
            if peer
                .partial_since
                .is_some_and(|t| now.saturating_duration_since(t) > MESSAGE_TIMEOUT)
            {
                to_close.push((conn, CloseReason::SlowMessage, false));
                continue;
            }
            if now.saturating_duration_since(peer.last_send) > KEEPALIVE {
                send(sh, peer, &Message::KeepAlive);
            }
        }
        for (conn, reason, failed) in to_close {
            self.close_peer(sh, conn, reason, failed);
        }
        self.download_tick(sh);
        self.metadata_tick(sh);
        self.pex_tick(sh);
        self.connect_peers(sh);
    }
}
