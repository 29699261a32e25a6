//! Why a download reaches nobody: a torrent that has had no peer for a while gets one line
//! per cause on stderr (a tracker that failed or is unsupported, peers that refused the
//! connection, reset it, or closed it during the handshake...), and `--stall-timeout`
//! gives up on it. A pure state machine on the driver's clock, fed the session's events.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use tessera_core::Instant;

use crate::ui::human_duration;

/// How long a downloading torrent may have no peer before the reasons are printed.
pub(super) const REPORT_AFTER: Duration = Duration::from_secs(30);

/// Distinct "other" close reasons kept per torrent (what a stranger can make us store is
/// bounded).
const MAX_OTHER_REASONS: usize = 8;
/// Example addresses kept per cause.
const EXAMPLES: usize = 2;

/// What [`StallWatch::poll`] found due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Torrent `torrent` has had no peer for `after`: these are the reasons, a line each.
    Report {
        torrent: usize,
        after: Duration,
        causes: Vec<String>,
    },
    /// Torrent `torrent` has had no peer for `--stall-timeout`.
    GiveUp { torrent: usize, after: Duration },
}

/// Why peer connections ended, grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cause {
    Refused,
    Reset,
    TimedOut,
    /// Closed by the remote before its handshake arrived.
    ClosedInHandshake,
    /// Closed by the remote after the handshake.
    Closed,
}

impl Cause {
    /// Sorts a close reason (the session's words) into a cause; `None`: another reason.
    fn of(reason: &str, handshaked: bool) -> Option<Cause> {
        let r = reason.to_ascii_lowercase();
        if r.contains("refused") {
            Some(Cause::Refused)
        } else if r.contains("reset") {
            Some(Cause::Reset)
        } else if r.contains("timed out") {
            Some(Cause::TimedOut)
        } else if r == "closed by remote" || r.contains("end of stream") {
            Some(if handshaked {
                Cause::Closed
            } else {
                Cause::ClosedInHandshake
            })
        } else {
            None
        }
    }

    fn words(self, n: usize) -> String {
        let (one, many) = match self {
            Cause::Refused => (
                "refused the connection (nothing listens at that address)",
                "refused the connection (nothing listens at those addresses)",
            ),
            Cause::Reset => ("reset the connection", "reset the connection"),
            Cause::TimedOut => ("did not answer in time", "did not answer in time"),
            Cause::ClosedInHandshake => (
                "closed the connection during the handshake, which usually means it wants \
                 encryption (see --encryption) or uTP (see --transport)",
                "closed the connection during the handshake, which usually means they want \
                 encryption (see --encryption) or uTP (see --transport)",
            ),
            Cause::Closed => ("closed the connection", "closed the connection"),
        };
        if n == 1 { one } else { many }.to_string()
    }
}

/// Peers kept per cause, to count them once however often they are redialled.
const MAX_ADDRS: usize = 1024;

/// The peers a cause applies to (each once), a few examples and how often it happened.
#[derive(Debug, Clone, Default)]
struct Tally {
    attempts: usize,
    addrs: HashSet<SocketAddr>,
    examples: Vec<SocketAddr>,
}

impl Tally {
    fn add(&mut self, addr: SocketAddr) {
        self.attempts += 1;
        if self.addrs.len() < MAX_ADDRS {
            self.addrs.insert(addr);
        }
        if self.examples.len() < EXAMPLES && !self.examples.contains(&addr) {
            self.examples.push(addr);
        }
    }

    fn peers(&self) -> usize {
        self.addrs.len().max(1)
    }

    fn who(&self) -> String {
        let list: Vec<String> = self.examples.iter().map(ToString::to_string).collect();
        let more = self.peers().saturating_sub(self.examples.len());
        let list = if more > 0 {
            format!("{} and {more} more", list.join(", "))
        } else {
            list.join(", ")
        };
        if self.peers() == 1 {
            format!("1 peer ({list})")
        } else {
            format!("{} peers ({list})", self.peers())
        }
    }

    /// ` (N attempts)` when peers were tried more than once each.
    fn attempts(&self) -> String {
        if self.attempts > self.peers() {
            format!(" ({} attempts)", self.attempts)
        } else {
            String::new()
        }
    }
}

/// One torrent's watch.
#[derive(Debug, Clone, Default)]
struct Watch {
    /// Downloading (not checking, complete or failed): a stall matters.
    watching: bool,
    /// Peers with the handshake done.
    peers: HashSet<SocketAddr>,
    /// Since when it has had no peer, while watching.
    alone_since: Option<Instant>,
    /// The reasons were printed for this stall.
    reported: bool,
    causes: BTreeMap<Cause, Tally>,
    other: BTreeMap<String, Tally>,
    /// The last word of each tracker: a problem, or how many peers it listed.
    trackers: BTreeMap<String, String>,
}

impl Watch {
    fn causes(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .trackers
            .iter()
            .map(|(url, word)| format!("tracker {url}: {word}"))
            .collect();
        for (cause, tally) in &self.causes {
            lines.push(format!(
                "{} {}{}",
                tally.who(),
                cause.words(tally.peers()),
                tally.attempts()
            ));
        }
        for (reason, tally) in &self.other {
            lines.push(format!("{}: {reason}{}", tally.who(), tally.attempts()));
        }
        if lines.is_empty() {
            lines.push("no tracker has listed a peer and no --peer was given".into());
        }
        lines
    }

    fn forget_causes(&mut self) {
        self.causes.clear();
        self.other.clear();
    }
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct StallWatch {
    give_up_after: Option<Duration>,
    torrents: Vec<Watch>,
}

impl StallWatch {
    /// A watch over `torrents` torrents that gives up on one after `give_up_after` alone.
    pub(super) fn new(torrents: usize, give_up_after: Option<Duration>) -> StallWatch {
        StallWatch {
            give_up_after,
            torrents: vec![Watch::default(); torrents],
        }
    }

    /// Torrent `i` downloads from `now` on (its check, if any, is over).
    pub(super) fn start(&mut self, i: usize, now: Instant) {
        if let Some(w) = self.torrents.get_mut(i)
            && !w.watching
        {
            w.watching = true;
            if w.peers.is_empty() {
                w.alone_since = Some(now);
            }
        }
    }

    /// Torrent `i` needs no more peers (complete, failed): not watched any more.
    pub(super) fn stop(&mut self, i: usize) {
        if let Some(w) = self.torrents.get_mut(i) {
            w.watching = false;
            w.alone_since = None;
        }
    }

    pub(super) fn peer_connected(&mut self, i: usize, addr: SocketAddr) {
        if let Some(w) = self.torrents.get_mut(i) {
            w.peers.insert(addr);
            w.alone_since = None;
            w.reported = false;
            w.forget_causes();
        }
    }

    pub(super) fn peer_closed(&mut self, i: usize, addr: SocketAddr, reason: &str, now: Instant) {
        let Some(w) = self.torrents.get_mut(i) else {
            return;
        };
        let handshaked = w.peers.remove(&addr);
        if w.watching && w.peers.is_empty() && w.alone_since.is_none() {
            w.alone_since = Some(now);
        }
        match Cause::of(reason, handshaked) {
            Some(cause) => w.causes.entry(cause).or_default().add(addr),
            None => {
                if w.other.len() < MAX_OTHER_REASONS || w.other.contains_key(reason) {
                    w.other.entry(reason.to_string()).or_default().add(addr);
                }
            }
        }
    }

    /// A tracker of torrent `i` answered with `peers` peers.
    pub(super) fn tracker_answered(&mut self, i: usize, url: &str, peers: usize) {
        if let Some(w) = self.torrents.get_mut(i) {
            let word = match peers {
                0 => "listed no peers".to_string(),
                1 => "listed 1 peer".to_string(),
                n => format!("listed {n} peers"),
            };
            w.trackers.insert(url.to_string(), word);
        }
    }

    /// A tracker of torrent `i` failed, refused, or is not supported: `problem`.
    pub(super) fn tracker_problem(&mut self, i: usize, url: &str, problem: &str) {
        if let Some(w) = self.torrents.get_mut(i) {
            w.trackers.insert(url.to_string(), problem.to_string());
        }
    }

    /// What is due at `now`: the reasons for a torrent alone for [`REPORT_AFTER`] (once per
    /// stall), and giving up on one alone for `--stall-timeout`.
    pub(super) fn poll(&mut self, now: Instant) -> Vec<Verdict> {
        let mut due = Vec::new();
        for (i, w) in self.torrents.iter_mut().enumerate() {
            let Some(since) = w.alone_since.filter(|_| w.watching) else {
                continue;
            };
            let after = now.saturating_duration_since(since);
            let give_up = self.give_up_after.filter(|limit| after >= *limit);
            if !w.reported && (after >= REPORT_AFTER || give_up.is_some()) {
                w.reported = true;
                due.push(Verdict::Report {
                    torrent: i,
                    after,
                    causes: w.causes(),
                });
            }
            if let Some(limit) = give_up {
                w.watching = false;
                w.alone_since = None;
                due.push(Verdict::GiveUp {
                    torrent: i,
                    after: limit,
                });
            }
        }
        due
    }

    /// When [`StallWatch::poll`] will next have something to say, if nothing else happens.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.torrents
            .iter()
            .filter(|w| w.watching)
            .filter_map(|w| {
                let since = w.alone_since?;
                let report = (!w.reported).then_some(since + REPORT_AFTER);
                let give_up = self.give_up_after.map(|d| since + d);
                report.into_iter().chain(give_up).min()
            })
            .min()
    }
}

/// The line that says a torrent has had no peer for `after`.
pub(super) fn headline(name: &str, after: Duration) -> String {
    format!("{name}: no peer for {}:", human_duration(after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Instant {
        Instant::from_duration(Duration::from_secs(secs))
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_torrent_alone_gets_its_reasons_once_per_stall() {
        let mut s = StallWatch::new(2, None);
        s.start(0, at(0));
        assert_eq!(s.next_deadline(), Some(at(30)));
        s.tracker_problem(0, "http://t/announce", "connection refused (os error 111)");
        for port in [1, 2, 3, 1] {
            s.peer_closed(0, addr(port), "Connection refused (os error 111)", at(1));
        }
        s.peer_closed(0, addr(4), "closed by remote", at(2));
        s.peer_closed(0, addr(5), "connection timed out", at(2));
        s.peer_closed(0, addr(6), "Connection reset by peer (os error 104)", at(2));
        s.peer_closed(0, addr(7), "protocol error: bad length", at(2));
        assert!(s.poll(at(29)).is_empty());
        let due = s.poll(at(30));
        assert_eq!(
            due,
            vec![Verdict::Report {
                torrent: 0,
                after: Duration::from_secs(30),
                causes: vec![
                    "tracker http://t/announce: connection refused (os error 111)".into(),
                    "3 peers (127.0.0.1:1, 127.0.0.1:2 and 1 more) refused the connection \
                     (nothing listens at those addresses) (4 attempts)"
                        .into(),
                    "1 peer (127.0.0.1:6) reset the connection".into(),
                    "1 peer (127.0.0.1:5) did not answer in time".into(),
                    "1 peer (127.0.0.1:4) closed the connection during the handshake, which \
                     usually means it wants encryption (see --encryption) or uTP (see \
                     --transport)"
                        .into(),
                    "1 peer (127.0.0.1:7): protocol error: bad length".into(),
                ],
            }]
        );
        // Once per stall: nothing more, and nothing due.
        assert!(s.poll(at(100)).is_empty());
        assert_eq!(s.next_deadline(), None);
        // A peer comes and goes: a new stall, reported again with what happened since.
        s.peer_connected(0, addr(9));
        s.peer_closed(0, addr(9), "closed by remote", at(200));
        assert_eq!(s.next_deadline(), Some(at(230)));
        let due = s.poll(at(230));
        assert!(
            matches!(&due[..], [Verdict::Report { causes, .. }] if causes.len() == 2
                && causes[1] == "1 peer (127.0.0.1:9) closed the connection"),
            "{due:?}"
        );
    }

    #[test]
    fn nothing_known_is_said_plainly_and_unwatched_torrents_say_nothing() {
        let mut s = StallWatch::new(2, None);
        // Torrent 1 checks its data or seeds: not watched.
        s.start(0, at(0));
        let due = s.poll(at(31));
        assert!(
            matches!(&due[..], [Verdict::Report { torrent: 0, causes, .. }]
                if causes == &["no tracker has listed a peer and no --peer was given"]),
            "{due:?}"
        );
        s.start(1, at(0));
        s.tracker_answered(1, "http://t/a", 0);
        s.stop(1);
        assert!(s.poll(at(1000)).is_empty());
    }

    #[test]
    fn the_stall_timeout_gives_up_after_reporting() {
        let mut s = StallWatch::new(1, Some(Duration::from_secs(10)));
        s.start(0, at(5));
        assert_eq!(s.next_deadline(), Some(at(15)));
        let due = s.poll(at(15));
        assert!(
            matches!(due[0], Verdict::Report { torrent: 0, .. }),
            "{due:?}"
        );
        assert_eq!(
            due[1],
            Verdict::GiveUp {
                torrent: 0,
                after: Duration::from_secs(10)
            }
        );
        assert!(s.poll(at(100)).is_empty());
        // A peer in time keeps it going.
        let mut s = StallWatch::new(1, Some(Duration::from_secs(10)));
        s.start(0, at(0));
        s.peer_connected(0, addr(1));
        assert!(s.poll(at(50)).is_empty());
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn other_reasons_are_bounded() {
        let mut s = StallWatch::new(1, None);
        s.start(0, at(0));
        for i in 0..100u16 {
            s.peer_closed(0, addr(i), &format!("odd reason {i}"), at(1));
        }
        let due = s.poll(at(30));
        let Verdict::Report { causes, .. } = &due[0] else {
            panic!("{due:?}")
        };
        assert_eq!(causes.len(), MAX_OTHER_REASONS);
    }
}
