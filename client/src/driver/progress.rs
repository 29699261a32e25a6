//! What the user sees of a run: a progress line per torrent (and a total when there are
//! several), the messages about the check, completion and trackers (each tracker problem
//! once), and the summary at the end, a line per torrent.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tessera_core::{PeerId, TorrentStats, TrackerEvent};

use super::plan::Mode;
use crate::output::printable;
use crate::ui::{Board, Line, human_duration, human_size};

/// One torrent as the user sees it.
#[derive(Debug)]
struct View {
    /// Printable, with the node's label when the run has several nodes.
    name: String,
    /// Where its data is.
    dir: PathBuf,
    line: Line,
    /// Every peer that completed a handshake, for the summary.
    peers_seen: HashSet<SocketAddr>,
    /// The last statistics seen, for the summary.
    last_stats: Option<TorrentStats>,
    /// How long after the start of the run it completed (in this run).
    completed_after: Option<Duration>,
    /// Why it stopped, if it failed.
    failed: Option<String>,
}

/// How a torrent ended, for its summary line.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ending {
    pub stats: TorrentStats,
    pub peers: usize,
    /// How long it took: until it completed, or the whole run.
    pub elapsed: Duration,
    pub failed: Option<String>,
    /// Stopped with Ctrl-C before it was complete.
    pub interrupted: bool,
}

/// The summary line of one torrent called `name` in `mode`.
pub(super) fn summary_line(name: &str, mode: Mode, e: &Ending) -> String {
    let s = &e.stats;
    let secs = e.elapsed.as_secs_f64();
    let peers = format!("{} peer{}", e.peers, if e.peers == 1 { "" } else { "s" });
    let pieces = format!(
        "{} of {} pieces ({:.1}%)",
        s.pieces_have,
        s.pieces_total,
        if s.total_len == 0 {
            100.0
        } else {
            s.bytes_have as f64 * 100.0 / s.total_len as f64
        }
    );
    let uploaded = format!("{} uploaded", human_size(s.uploaded));
    if mode == Mode::Seed {
        let mut line = format!(
            "{name}: {uploaded} in {} to {peers}",
            human_duration(e.elapsed)
        );
        if s.total_len > 0 {
            line.push_str(&format!(
                " (ratio {:.2})",
                s.uploaded as f64 / s.total_len as f64
            ));
        }
        if let Some(why) = &e.failed {
            line.push_str(&format!("; failed: {why}"));
        } else if !s.complete {
            line.push_str(&format!("; has {pieces}"));
        }
        if s.downloaded > 0 {
            line.push_str(&format!(", {} downloaded", human_size(s.downloaded)));
        }
        return line;
    }
    let head = if let Some(why) = &e.failed {
        format!("{name}: failed ({why}) with {pieces}, ")
    } else if s.complete && s.downloaded == 0 {
        return format!(
            "{name}: already complete ({}), nothing to fetch, {peers}, {uploaded}",
            human_size(s.total_len)
        );
    } else if !s.complete {
        format!("{name}: incomplete, {pieces}, ")
    } else {
        format!("{name}: ")
    };
    let rate = if secs > 0.0 {
        s.downloaded as f64 / (1024.0 * 1024.0) / secs
    } else {
        0.0
    };
    format!(
        "{head}{} in {secs:.1} s, {rate:.2} MiB/s average, {peers}, {uploaded}",
        human_size(s.downloaded)
    )
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct Progress {
    board: Board,
    mode: Mode,
    /// `label: ` when the run has several nodes, else nothing.
    prefix: String,
    /// One per source of the plan, once it has become a torrent.
    views: Vec<Option<View>>,
    /// The total of all torrents, when there are several.
    total: Option<Line>,
    /// The last problem printed per tracker URL, so a failing tracker is reported once
    /// (whichever torrent it serves).
    pub(super) tracker_problems: HashMap<String, String>,
    /// How seeding ends (the plan's goals), for the "seeding" messages.
    seed_until: String,
    /// Some tracker answered in this run: a clean stop has trackers to tell.
    trackers_answered: bool,
    /// When the lines were last refreshed (wall clock).
    last_refresh: Option<Instant>,
}

/// Runs of more torrents than this show only the total (and each torrent's completion):
/// a bar or a stream of plain lines each would not fit a terminal or a readable log.
const MAX_LINES: usize = 8;

/// The longest the lines go without a refresh, even when nothing happens (the rates decay,
/// plain mode's status line is due): the driver wakes the loop for it.
const IDLE_REFRESH: Duration = Duration::from_secs(1);

impl Progress {
    /// Output for a run in `mode` of `sources` torrents on `board`, its lines starting
    /// with `prefix`.
    pub(super) fn new(
        board: Board,
        mode: Mode,
        sources: usize,
        prefix: String,
        seed_until: String,
    ) -> Progress {
        let total = (sources > 1).then(|| {
            board.line(
                &format!("{prefix}total ({sources} torrents)"),
                0,
                true,
                None,
            )
        });
        Progress {
            board,
            mode,
            prefix,
            views: (0..sources).map(|_| None).collect(),
            total,
            tracker_problems: HashMap::new(),
            seed_until,
            trackers_answered: false,
            last_refresh: None,
        }
    }

    /// Source `i` has become the torrent called `name` (as the metainfo has it), of
    /// `total_len` bytes, with its data in `dir`. Returns its printable name.
    pub(super) fn add(&mut self, i: usize, name: &str, total_len: u64, dir: PathBuf) -> String {
        let name = format!("{}{}", self.prefix, printable(name));
        let single = self.views.len() == 1;
        let line = if self.views.len() > MAX_LINES {
            self.board.hidden_line(&name)
        } else {
            self.board
                .line(&name, total_len, single, self.total.as_ref())
        };
        if let Some(slot) = self.views.get_mut(i) {
            *slot = Some(View {
                name: name.clone(),
                dir,
                line,
                peers_seen: HashSet::new(),
                last_stats: None,
                completed_after: None,
                failed: None,
            });
        }
        name
    }

    fn view(&self, i: usize) -> Option<&View> {
        self.views.get(i).and_then(Option::as_ref)
    }

    fn view_mut(&mut self, i: usize) -> Option<&mut View> {
        self.views.get_mut(i).and_then(Option::as_mut)
    }

    /// Torrent `i`'s printable name (empty before it is added).
    pub(super) fn name(&self, i: usize) -> &str {
        self.view(i).map_or("", |v| v.name.as_str())
    }

    /// How many peers of torrent `i` completed a handshake in this run.
    #[cfg(test)]
    pub(super) fn peers_seen(&self, i: usize) -> usize {
        self.view(i).map_or(0, |v| v.peers_seen.len())
    }

    pub(super) fn message(&self, line: &str) {
        self.board.message(line);
    }

    pub(super) fn warn(&self, line: &str) {
        self.board.warn(line);
    }

    /// Some tracker answered in this run.
    pub(super) fn trackers_answered(&self) -> bool {
        self.trackers_answered
    }

    /// The check of torrent `i`'s data on disk is over: `have` of `total` pieces passed.
    pub(super) fn checked(&self, i: usize, have: u32, total: u32, bytes_have: u64, len: u64) {
        let Some(v) = self.view(i) else {
            return;
        };
        let name = &v.name;
        match self.mode {
            Mode::Download { .. } => {
                self.board
                    .message(&format!("{name}: {have} of {total} pieces already on disk"));
            }
            Mode::Seed if have < total => self.board.warn(&format!(
                "{name}: seeding what is there, {have} of {total} pieces ({} of {}, {:.1}%) \
                 in {}; the other {} are missing or damaged, and fetched from peers if any \
                 has them",
                human_size(bytes_have),
                human_size(len),
                if len == 0 {
                    100.0
                } else {
                    bytes_have as f64 * 100.0 / len as f64
                },
                v.dir.display(),
                total - have
            )),
            Mode::Seed => self.board.message(&format!(
                "{name}: all {total} pieces verified, seeding {}",
                self.seed_until
            )),
        }
    }

    /// Every piece of torrent `i` is verified, `after` the start of the run.
    pub(super) fn complete(&mut self, i: usize, after: Duration) {
        let keep_seeding = self.mode == (Mode::Download { keep_seeding: true });
        let several = self.views.len() > 1;
        let until = self.seed_until.clone();
        let Some(v) = self.view_mut(i) else {
            return;
        };
        if v.completed_after.is_some() {
            return;
        }
        v.completed_after = Some(after);
        if keep_seeding {
            let line = format!("{}: download complete, seeding {until}", v.name);
            self.board.message(&line);
        } else if several {
            let line = format!("{}: complete", v.name);
            self.board.message(&line);
        }
    }

    /// Torrent `i` stopped with an error: `why`.
    pub(super) fn failed(&mut self, i: usize, why: &str) {
        if let Some(v) = self.view_mut(i) {
            v.failed = Some(why.to_string());
        }
    }

    pub(super) fn peer_connected(&mut self, i: usize, addr: SocketAddr, id: PeerId) {
        tracing::debug!("peer {addr} connected ({id})");
        if let Some(v) = self.view_mut(i) {
            v.peers_seen.insert(addr);
        }
    }

    /// What a tracker answered: a problem is printed when it is new for that tracker, and
    /// forgotten once the tracker answers well. Returns the problem, if it is one.
    pub(super) fn tracker(&mut self, url: &str, event: &TrackerEvent) -> Option<String> {
        let url = printable(url);
        let problem = match event {
            TrackerEvent::Announced { peers, interval } => {
                tracing::info!(
                    "{url}: {peers} peers, next announce in {}s",
                    interval.as_secs()
                );
                self.trackers_answered = true;
                self.tracker_problems.remove(&url);
                return None;
            }
            TrackerEvent::Warning(m) => {
                let warning = format!("tracker {url} warns: {}", printable(m));
                self.board.warn(&warning);
                return None;
            }
            TrackerEvent::Failure(m) => format!("refused: {}", printable(m)),
            TrackerEvent::Error(m) => printable(m),
        };
        let line = format!("tracker {url}: {problem}");
        if self.tracker_problems.get(&url) != Some(&line) {
            self.board.warn(&line);
            self.tracker_problems.insert(url, line);
        } else {
            tracing::debug!("{line}");
        }
        Some(problem)
    }

    /// How long until the lines want a refresh although nothing happened (`None` with
    /// `--quiet`).
    pub(super) fn refresh_due_in(&self, now: Instant) -> Option<Duration> {
        if self.board.is_quiet() {
            return None;
        }
        let at = self.last_refresh.map_or(now, |t| t + IDLE_REFRESH);
        Some(at.saturating_duration_since(now))
    }

    /// Updates the lines that are due (`now` on the wall clock); `stats` is asked for a
    /// torrent only then.
    pub(super) fn refresh(&mut self, now: Instant, stats: impl Fn(usize) -> Option<TorrentStats>) {
        self.last_refresh = Some(now);
        let mut sum: Option<TorrentStats> = None;
        let total_due = self.total.as_ref().is_some_and(|t| t.wants_update(now));
        for (i, v) in self.views.iter_mut().enumerate() {
            let Some(v) = v else {
                continue;
            };
            if !v.line.wants_update(now) && !total_due {
                continue;
            }
            let Some(s) = stats(i) else {
                continue;
            };
            if v.line.wants_update(now) {
                v.line.update(now, &s);
            }
            if total_due {
                add_up(
                    sum.get_or_insert_with(|| TorrentStats {
                        complete: true,
                        ..TorrentStats::default()
                    }),
                    &s,
                );
            }
            v.last_stats = Some(s);
        }
        if let (Some(total), Some(sum)) = (self.total.as_mut(), sum) {
            total.update(now, &sum);
        }
    }

    /// The end of the run, after `elapsed`: the line for each torrent stopped before it was
    /// complete (`interrupted`), then the summary, a line per torrent (from `stats`, the
    /// session's last, or the last shown) and a total when there are several.
    pub(super) fn finish(
        &mut self,
        stats: impl Fn(usize) -> Option<TorrentStats>,
        interrupted: bool,
        elapsed: Duration,
    ) {
        let mut endings = Vec::new();
        for (i, v) in self.views.iter_mut().enumerate() {
            let Some(v) = v else {
                continue;
            };
            if let Some(s) = stats(i) {
                v.last_stats = Some(s);
            }
            v.line.finish();
            let stats = v.last_stats.clone().unwrap_or_default();
            endings.push((
                v.name.clone(),
                Ending {
                    peers: v.peers_seen.len(),
                    // A seeder's work is the whole run; a download's ends when it completes.
                    elapsed: match self.mode {
                        Mode::Seed => elapsed,
                        Mode::Download { .. } => v.completed_after.unwrap_or(elapsed),
                    },
                    failed: v.failed.clone(),
                    interrupted: interrupted && !stats.complete && v.failed.is_none(),
                    stats,
                },
            ));
        }
        if let Some(total) = &self.total {
            total.finish();
        }
        if matches!(self.mode, Mode::Download { .. }) {
            for (name, e) in endings.iter().filter(|(_, e)| e.interrupted) {
                self.board.message(&format!(
                    "{name}: stopped with {} of {} pieces verified; the same command resumes",
                    e.stats.pieces_have, e.stats.pieces_total
                ));
            }
        }
        for (name, e) in &endings {
            self.board.summary(&summary_line(name, self.mode, e));
        }
        if endings.len() > 1 {
            self.board
                .summary(&total_line(&self.prefix, self.mode, &endings, elapsed));
        }
    }
}

/// Adds `s` into the total `sum`.
fn add_up(sum: &mut TorrentStats, s: &TorrentStats) {
    sum.pieces_total += s.pieces_total;
    sum.pieces_have += s.pieces_have;
    sum.bytes_have += s.bytes_have;
    sum.total_len += s.total_len;
    sum.downloaded += s.downloaded;
    sum.uploaded += s.uploaded;
    sum.wasted += s.wasted;
    sum.peers += s.peers;
    sum.download_rate += s.download_rate;
    sum.upload_rate += s.upload_rate;
    sum.checking |= s.checking;
    sum.complete &= s.complete;
}

/// The last line of a run of several torrents.
fn total_line(prefix: &str, mode: Mode, endings: &[(String, Ending)], elapsed: Duration) -> String {
    let n = endings.len();
    let complete = endings.iter().filter(|(_, e)| e.stats.complete).count();
    let failed = endings.iter().filter(|(_, e)| e.failed.is_some()).count();
    let downloaded: u64 = endings.iter().map(|(_, e)| e.stats.downloaded).sum();
    let uploaded: u64 = endings.iter().map(|(_, e)| e.stats.uploaded).sum();
    let secs = elapsed.as_secs_f64();
    let mut line = format!("{prefix}total: {n} torrents, {complete} complete");
    if failed > 0 {
        line.push_str(&format!(", {failed} failed"));
    }
    if mode != Mode::Seed || downloaded > 0 {
        let rate = if secs > 0.0 {
            downloaded as f64 / (1024.0 * 1024.0) / secs
        } else {
            0.0
        };
        line.push_str(&format!(
            ", {} in {secs:.1} s, {rate:.2} MiB/s average",
            human_size(downloaded)
        ));
    }
    line.push_str(&format!(", {} uploaded", human_size(uploaded)));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(stats: TorrentStats) -> Ending {
        Ending {
            stats,
            peers: 3,
            elapsed: Duration::from_secs(8),
            failed: None,
            interrupted: false,
        }
    }

    const DOWNLOAD: Mode = Mode::Download {
        keep_seeding: false,
    };

    #[test]
    fn summary_lines_say_what_happened() {
        let done = TorrentStats {
            pieces_total: 400,
            pieces_have: 400,
            bytes_have: 100 << 20,
            total_len: 100 << 20,
            downloaded: 100 << 20,
            uploaded: 1536,
            complete: true,
            ..TorrentStats::default()
        };
        assert_eq!(
            summary_line("ubuntu.iso", DOWNLOAD, &ending(done.clone())),
            "ubuntu.iso: 100.0 MiB in 8.0 s, 12.50 MiB/s average, 3 peers, 1.5 KiB uploaded"
        );
        // Nothing fetched: it was complete before the run.
        let before = TorrentStats {
            downloaded: 0,
            uploaded: 0,
            ..done.clone()
        };
        assert_eq!(
            summary_line(
                "x",
                DOWNLOAD,
                &Ending {
                    peers: 0,
                    ..ending(before)
                }
            ),
            "x: already complete (100.0 MiB), nothing to fetch, 0 peers, 0 B uploaded"
        );
        let half = TorrentStats {
            pieces_have: 200,
            bytes_have: 50 << 20,
            downloaded: 50 << 20,
            complete: false,
            ..done.clone()
        };
        assert_eq!(
            summary_line("x", DOWNLOAD, &ending(half.clone())),
            "x: incomplete, 200 of 400 pieces (50.0%), 50.0 MiB in 8.0 s, 6.25 MiB/s \
             average, 3 peers, 1.5 KiB uploaded"
        );
        let failed = Ending {
            failed: Some("disk error: full".into()),
            ..ending(half)
        };
        assert!(
            summary_line("x", DOWNLOAD, &failed)
                .starts_with("x: failed (disk error: full) with 200 of 400 pieces (50.0%), ")
        );
        // A seeder leads with what it uploaded.
        let seeding = TorrentStats {
            uploaded: 150 << 20,
            downloaded: 0,
            ..done
        };
        assert_eq!(
            summary_line("x", Mode::Seed, &ending(seeding)),
            "x: 150.0 MiB uploaded in 8s to 3 peers (ratio 1.50)"
        );
    }

    #[test]
    fn several_torrents_get_a_total() {
        let mut p = Progress::new(Board::quiet(), DOWNLOAD, 2, String::new(), String::new());
        assert!(p.total.is_some());
        assert_eq!(p.add(1, "b\x1b", 10, "out".into()), "b\\u{1b}");
        assert_eq!(p.name(0), "");
        assert_eq!(p.name(1), "b\\u{1b}");
        p.complete(1, Duration::from_secs(3));
        let v = p.view(1).unwrap();
        assert_eq!(v.completed_after, Some(Duration::from_secs(3)));
        let endings = vec![
            (
                "a".to_string(),
                ending(TorrentStats {
                    downloaded: 1 << 20,
                    complete: true,
                    ..TorrentStats::default()
                }),
            ),
            (
                "b".to_string(),
                Ending {
                    failed: Some("no data".into()),
                    ..ending(TorrentStats::default())
                },
            ),
        ];
        assert_eq!(
            total_line("", DOWNLOAD, &endings, Duration::from_secs(2)),
            "total: 2 torrents, 1 complete, 1 failed, 1.0 MiB in 2.0 s, 0.50 MiB/s \
             average, 0 B uploaded"
        );
    }

    #[test]
    fn many_torrents_show_only_the_total() {
        let mut p = Progress::new(Board::plain(), DOWNLOAD, 20, String::new(), String::new());
        p.add(0, "a", 10, "out".into());
        assert!(
            p.view(0)
                .is_some_and(|v| !v.line.wants_update(Instant::now()))
        );
        assert!(
            p.total
                .as_ref()
                .is_some_and(|t| t.wants_update(Instant::now()))
        );
        let mut p = Progress::new(Board::plain(), DOWNLOAD, 3, String::new(), String::new());
        p.add(0, "a", 10, "out".into());
        assert!(
            p.view(0)
                .is_some_and(|v| v.line.wants_update(Instant::now()))
        );
    }

    #[test]
    fn the_lines_want_a_refresh_every_second_unless_quiet() {
        let now = Instant::now();
        let mut p = Progress::new(Board::plain(), DOWNLOAD, 1, String::new(), String::new());
        assert_eq!(p.refresh_due_in(now), Some(Duration::ZERO));
        p.refresh(now, |_| None);
        assert_eq!(p.refresh_due_in(now), Some(IDLE_REFRESH));
        assert_eq!(
            p.refresh_due_in(now + Duration::from_millis(300)),
            Some(Duration::from_millis(700))
        );
        let q = Progress::new(Board::quiet(), DOWNLOAD, 1, String::new(), String::new());
        assert_eq!(q.refresh_due_in(now), None);
    }

    #[test]
    fn tracker_problems_are_printed_once_and_answers_counted() {
        let mut p = Progress::new(Board::quiet(), Mode::Seed, 1, String::new(), String::new());
        let err = TrackerEvent::Error("connection refused".into());
        assert_eq!(
            p.tracker("http://t/a", &err).as_deref(),
            Some("connection refused")
        );
        assert_eq!(p.tracker_problems.len(), 1);
        assert!(!p.trackers_answered());
        let ok = TrackerEvent::Announced {
            peers: 0,
            interval: Duration::from_secs(60),
        };
        assert_eq!(p.tracker("http://t/a", &ok), None);
        assert!(p.trackers_answered() && p.tracker_problems.is_empty());
    }
}
