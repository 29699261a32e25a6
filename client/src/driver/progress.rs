//! What the user sees of a run: the progress bar (or plain lines), the messages about the
//! check, completion and trackers (each tracker problem once), and the summary at the end.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tessera_core::{PeerId, TorrentStats, TrackerEvent};

use super::plan::Mode;
use crate::output::printable;
use crate::ui::{Summary, Ui};

/// See the module docs.
#[derive(Debug)]
pub(super) struct Progress {
    ui: Ui,
    mode: Mode,
    /// The torrent's name, printable.
    name: String,
    /// Where the data is.
    dir: PathBuf,
    /// Every peer that completed a handshake, for the summary.
    pub(super) peers_seen: HashSet<SocketAddr>,
    /// The last statistics shown, for the summary if the session has none at the end.
    last_stats: Option<TorrentStats>,
    /// The last problem printed per tracker URL, so a failing tracker is reported once.
    pub(super) tracker_problems: HashMap<String, String>,
}

impl Progress {
    /// Output for a run in `mode` of the torrent called `name` (as the metainfo has it),
    /// `total_len` bytes, with its data in `dir`; no progress bar or lines if `quiet`.
    pub(super) fn new(
        quiet: bool,
        mode: Mode,
        name: &str,
        total_len: u64,
        dir: PathBuf,
    ) -> Progress {
        let name = printable(name);
        Progress {
            ui: Ui::new(quiet, &name, total_len),
            mode,
            name,
            dir,
            peers_seen: HashSet::new(),
            last_stats: None,
            tracker_problems: HashMap::new(),
        }
    }

    /// The torrent's name, printable.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn message(&self, line: &str) {
        self.ui.message(line);
    }

    pub(super) fn warn(&self, line: &str) {
        self.ui.warn(line);
    }

    /// The check of the data on disk is over: `have` of `total` pieces passed.
    pub(super) fn checked(&self, have: u32, total: u32) {
        let name = &self.name;
        match self.mode {
            Mode::Download { .. } => {
                self.ui
                    .message(&format!("{name}: {have} of {total} pieces already on disk"));
            }
            Mode::Seed if have == 0 && total > 0 => self.ui.warn(&format!(
                "no data for {name} found under {}: it will be downloaded",
                self.dir.display()
            )),
            Mode::Seed if have < total => self.ui.warn(&format!(
                "{name}: {} of {total} pieces missing or failing the check: not served, \
                 to be downloaded; serving the other {have}",
                total - have
            )),
            Mode::Seed => self.ui.message(&format!(
                "{name}: all {total} pieces verified, seeding (Ctrl-C to stop)"
            )),
        }
    }

    /// Every piece is verified.
    pub(super) fn complete(&self) {
        if self.mode == (Mode::Download { keep_seeding: true }) {
            self.ui.message(&format!(
                "{}: download complete, seeding (Ctrl-C to stop)",
                self.name
            ));
        }
    }

    pub(super) fn peer_connected(&mut self, addr: SocketAddr, id: PeerId) {
        tracing::debug!("peer {addr} connected ({id})");
        self.peers_seen.insert(addr);
    }

    /// What a tracker answered: a problem is printed when it is new for that tracker, and
    /// forgotten once the tracker answers well.
    pub(super) fn tracker(&mut self, url: &str, event: TrackerEvent) {
        let url = printable(url);
        let problem = match event {
            TrackerEvent::Announced { peers, interval } => {
                tracing::info!(
                    "{url}: {peers} peers, next announce in {}s",
                    interval.as_secs()
                );
                self.tracker_problems.remove(&url);
                return;
            }
            TrackerEvent::Warning(m) => format!("tracker {url} warns: {}", printable(&m)),
            TrackerEvent::Failure(m) => format!("tracker {url} refused: {}", printable(&m)),
            TrackerEvent::Error(m) => format!("tracker {url}: {}", printable(&m)),
        };
        if self.tracker_problems.get(&url) != Some(&problem) {
            self.ui.warn(&problem);
            self.tracker_problems.insert(url, problem);
        } else {
            tracing::debug!("{problem}");
        }
    }

    /// Updates the bar or prints a line when one is due; `stats` is asked for only then.
    pub(super) fn refresh(&mut self, stats: impl FnOnce() -> Option<TorrentStats>) {
        let now = std::time::Instant::now();
        if self.ui.wants_update(now)
            && let Some(stats) = stats()
        {
            self.ui.update(now, &stats);
            self.last_stats = Some(stats);
        }
    }

    /// The end of the run, after `elapsed`: the line for a download stopped before it was
    /// complete (`stopped_incomplete`), then the summary, from `stats` (the session's
    /// last, or the last shown).
    pub(super) fn finish(
        &mut self,
        stats: Option<TorrentStats>,
        stopped_incomplete: bool,
        elapsed: Duration,
    ) {
        if let Some(stats) = stats {
            self.last_stats = Some(stats);
        }
        let stats = self.last_stats.clone().unwrap_or_default();
        if stopped_incomplete && matches!(self.mode, Mode::Download { .. }) {
            self.ui.message(&format!(
                "{}: stopped with {} of {} pieces verified; the same command resumes",
                self.name, stats.pieces_have, stats.pieces_total
            ));
        }
        self.ui.finish(&Summary {
            name: self.name.clone(),
            downloaded: stats.downloaded,
            uploaded: stats.uploaded,
            elapsed,
            peers: self.peers_seen.len(),
        });
    }
}
