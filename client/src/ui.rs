//! Progress output, through one [`Board`] per process. On a terminal (stderr): an
//! `indicatif` bar per torrent with percentage, bytes, rates, peers and ETA, plus a total
//! when there are several (coloured unless `NO_COLOR` is set). Otherwise: a plain line on
//! stderr when something changed (another tenth done, the first peer, complete; at most one
//! every two seconds per torrent) and a status line every 10 s, never one per piece. With
//! `--quiet`: nothing but errors. The end-of-run summary goes to stdout.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tessera_core::TorrentStats;

const KIB: f64 = 1024.0;

/// `bytes` in B, KiB, MiB, GiB or TiB: `512 B`, `1.5 KiB`, `700.0 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / KIB;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= KIB;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A rate: `human_size` per second.
pub fn human_rate(bytes_per_sec: f64) -> String {
    let b = if bytes_per_sec.is_finite() && bytes_per_sec > 0.0 {
        bytes_per_sec as u64
    } else {
        0
    };
    format!("{}/s", human_size(b))
}

/// `42s`, `3m05s`, `2h07m`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD hh:mm:ss UTC`.
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// How long a transfer must have run before an ETA is shown: the core's rate is an
/// average over the last 5 s, so before that it counts the seconds spent checking or
/// waiting for the first peer, and the estimate would be absurd (hours for minutes).
pub const ETA_WARMUP: Duration = Duration::from_secs(5);

/// Time to fetch what is missing at `rate`, if there is a rate.
pub fn eta(stats: &TorrentStats) -> Option<Duration> {
    let left = stats.total_len.saturating_sub(stats.bytes_have);
    (stats.download_rate >= 1.0).then(|| Duration::from_secs_f64(left as f64 / stats.download_rate))
}

/// When an ETA means something: only once payload has been arriving for [`ETA_WARMUP`]
/// in this run (not during the check of existing data, not from a rate of zero).
#[derive(Debug, Default, Clone)]
pub struct EtaClock {
    /// Bytes received when the check was over, to tell when the transfer starts.
    baseline: Option<u64>,
    /// When the first payload byte of this run arrived.
    started: Option<Instant>,
}

impl EtaClock {
    /// The ETA to show at `now`, if any.
    pub fn eta(&mut self, now: Instant, stats: &TorrentStats) -> Option<Duration> {
        if stats.checking || stats.complete {
            return None;
        }
        let baseline = *self.baseline.get_or_insert(stats.downloaded);
        if self.started.is_none() && stats.downloaded > baseline {
            self.started = Some(now);
        }
        let started = self.started?;
        if now.saturating_duration_since(started) < ETA_WARMUP {
            return None;
        }
        eta(stats)
    }
}

fn percent(stats: &TorrentStats) -> f64 {
    if stats.total_len == 0 {
        100.0
    } else {
        stats.bytes_have as f64 * 100.0 / stats.total_len as f64
    }
}

fn tenth(stats: &TorrentStats) -> u64 {
    (percent(stats) / 10.0) as u64
}

fn peers(n: usize) -> String {
    format!("{n} peer{}", if n == 1 { "" } else { "s" })
}

/// A torrent's state in words, without its name: what a plain line and the bar's message
/// say (the bar shows the percentage and bytes itself, so `with_amounts` is false there).
pub fn status_text(stats: &TorrentStats, eta: Option<Duration>, with_amounts: bool) -> String {
    if stats.checking {
        return format!("checking existing data, {:.1}% verified", percent(stats));
    }
    if stats.complete {
        return format!(
            "complete, {}, {} up, {} uploaded",
            peers(stats.peers),
            human_rate(stats.upload_rate),
            human_size(stats.uploaded)
        );
    }
    let mut text = if with_amounts {
        format!(
            "{:.1}% ({} of {}), ",
            percent(stats),
            human_size(stats.bytes_have),
            human_size(stats.total_len)
        )
    } else {
        String::new()
    };
    text.push_str(&format!(
        "{} down, {} up, {}",
        human_rate(stats.download_rate),
        human_rate(stats.upload_rate),
        peers(stats.peers)
    ));
    if let Some(eta) = eta {
        text.push_str(&format!(", ETA {}", human_duration(eta)));
    }
    text
}

/// The line printed for a progress update in plain mode.
pub fn plain_line(name: &str, stats: &TorrentStats, eta: Option<Duration>) -> String {
    format!("{name}: {}", status_text(stats, eta, true))
}

/// When plain mode prints a line: at the first update; when something worth a line
/// happened (another tenth done, the first peer or the last one gone, the check over,
/// complete), at most one per [`MIN_GAP`]; and, for a line with a heartbeat, every
/// [`HEARTBEAT`] whatever happened.
#[derive(Debug, Clone)]
struct PlainPacer {
    heartbeat: bool,
    last_line: Option<Instant>,
    last: Option<Shown>,
}

/// What the last plain line showed, as far as pacing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shown {
    tenth: u64,
    any_peer: bool,
    checking: bool,
    complete: bool,
}

impl Shown {
    fn of(stats: &TorrentStats) -> Shown {
        Shown {
            tenth: tenth(stats),
            any_peer: stats.peers > 0,
            checking: stats.checking,
            complete: stats.complete,
        }
    }
}

/// Shortest time between two plain lines of one torrent, unless the heartbeat is due.
const MIN_GAP: Duration = Duration::from_secs(2);
/// A plain status line at least this often (a single torrent, or the total).
pub const HEARTBEAT: Duration = Duration::from_secs(10);

impl PlainPacer {
    fn new(heartbeat: bool) -> PlainPacer {
        PlainPacer {
            heartbeat,
            last_line: None,
            last: None,
        }
    }

    fn due(&mut self, now: Instant, stats: &TorrentStats) -> bool {
        let shown = Shown::of(stats);
        let due = match (self.last_line, self.last) {
            (Some(at), Some(last)) => {
                let since = now.saturating_duration_since(at);
                let news = shown.tenth > last.tenth
                    || shown.any_peer != last.any_peer
                    || shown.checking != last.checking
                    || shown.complete != last.complete;
                (news && since >= MIN_GAP) || (self.heartbeat && since >= HEARTBEAT)
            }
            _ => true,
        };
        if due {
            self.last_line = Some(now);
            self.last = Some(shown);
        }
        due
    }
}

/// Where a process's progress and messages go: bars on a terminal (one per torrent and a
/// total, through one `indicatif::MultiProgress` shared by everything the process runs),
/// plain lines otherwise, nothing but errors with `--quiet`. Cheap to clone; clones share
/// the bars.
#[derive(Debug, Clone)]
pub struct Board {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Quiet,
    Plain,
    Bars { multi: MultiProgress, colour: bool },
}

impl Board {
    /// Bars when stderr is a terminal, plain lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool) -> Board {
        if quiet {
            Board::quiet()
        } else if std::io::stderr().is_terminal() {
            Board {
                kind: Kind::Bars {
                    multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                    colour: crate::output::colour_on_stderr(),
                },
            }
        } else {
            Board::plain()
        }
    }

    /// Nothing but errors.
    pub fn quiet() -> Board {
        Board { kind: Kind::Quiet }
    }

    /// Plain lines on stderr, as when it is not a terminal.
    pub fn plain() -> Board {
        Board { kind: Kind::Plain }
    }

    /// True with `--quiet`.
    pub fn is_quiet(&self) -> bool {
        matches!(self.kind, Kind::Quiet)
    }

    /// A progress line for a torrent called `name` of `total_len` bytes, below the others
    /// (or just above `below`, the total). `heartbeat`: in plain mode, print it every
    /// [`HEARTBEAT`] even when nothing changed.
    pub fn line(&self, name: &str, total_len: u64, heartbeat: bool, above: Option<&Line>) -> Line {
        let view = match &self.kind {
            Kind::Quiet => View::Hidden,
            Kind::Plain => View::Plain(PlainPacer::new(heartbeat)),
            Kind::Bars { multi, colour } => {
                let bar = torrent_bar(name, total_len, *colour);
                let bar = match above.map(|l| &l.view) {
                    Some(View::Bar(other)) => multi.insert_before(other, bar),
                    _ => multi.add(bar),
                };
                View::Bar(bar)
            }
        };
        Line {
            name: name.to_string(),
            view,
            eta: EtaClock::default(),
            last_update: None,
        }
    }

    /// A line that shows nothing (a torrent among too many to show each).
    pub fn hidden_line(&self, name: &str) -> Line {
        Line {
            name: name.to_string(),
            view: View::Hidden,
            eta: EtaClock::default(),
            last_update: None,
        }
    }

    /// An informational line on stderr (not shown with `--quiet`).
    pub fn message(&self, line: &str) {
        match &self.kind {
            Kind::Quiet => {}
            Kind::Plain => crate::output::error_line(line),
            Kind::Bars { multi, .. } => multi.suspend(|| crate::output::error_line(line)),
        }
    }

    /// `warning: <line>` on stderr (not shown with `--quiet`).
    pub fn warn(&self, line: &str) {
        self.message(&format!("warning: {line}"));
    }

    /// A line of the end-of-run summary, on stdout (not shown with `--quiet`).
    pub fn summary(&self, line: &str) {
        match &self.kind {
            Kind::Quiet => {}
            Kind::Plain => crate::output::line(line),
            Kind::Bars { multi, .. } => multi.suspend(|| crate::output::line(line)),
        }
    }
}

#[derive(Debug)]
enum View {
    Hidden,
    Plain(PlainPacer),
    Bar(ProgressBar),
}

/// One torrent's progress (or the total's): a bar, or plain lines when due.
#[derive(Debug)]
pub struct Line {
    name: String,
    view: View,
    eta: EtaClock,
    last_update: Option<Instant>,
}

/// How often a line is refreshed from the core's statistics.
const BAR_INTERVAL: Duration = Duration::from_millis(200);

impl Line {
    /// True when [`Line::update`] would show something now (so that the caller can skip
    /// gathering statistics otherwise).
    pub fn wants_update(&self, now: Instant) -> bool {
        match self.view {
            View::Hidden => false,
            View::Plain(_) | View::Bar(_) => self
                .last_update
                .is_none_or(|at| now.saturating_duration_since(at) >= BAR_INTERVAL),
        }
    }

    /// Shows `stats`: the bar is redrawn, a plain line printed if one is due.
    pub fn update(&mut self, now: Instant, stats: &TorrentStats) {
        self.last_update = Some(now);
        let eta = self.eta.eta(now, stats);
        match &mut self.view {
            View::Hidden => {}
            View::Plain(pacer) => {
                if pacer.due(now, stats) {
                    crate::output::error_line(&plain_line(&self.name, stats, eta));
                }
            }
            View::Bar(bar) => {
                bar.set_length(stats.total_len);
                bar.set_position(stats.bytes_have);
                bar.set_message(status_text(stats, eta, false));
            }
        }
    }

    /// Removes the bar (the summary replaces it).
    pub fn finish(&self) {
        if let View::Bar(bar) = &self.view {
            bar.finish_and_clear();
        }
    }
}

fn torrent_bar(name: &str, total_len: u64, colour: bool) -> ProgressBar {
    let bar = ProgressBar::hidden();
    bar.set_length(total_len);
    let template = if colour {
        "{prefix:.bold} [{bar:24.cyan/blue}] {percent:>3}% {binary_bytes}/{binary_total_bytes} {msg}"
    } else {
        "{prefix} [{bar:24}] {percent:>3}% {binary_bytes}/{binary_total_bytes} {msg}"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(short_name(name));
    bar
}

/// `name` cut or padded to the width of the bars' first column.
fn short_name(name: &str) -> String {
    const MAX: usize = 30;
    let n = name.chars().count();
    if n <= MAX {
        format!("{name}{}", " ".repeat(MAX - n))
    } else {
        let mut s: String = name.chars().take(MAX - 1).collect();
        s.push('…');
        s
    }
}

/// A count of pieces for `verify` and `create`: a bar on a terminal, nothing otherwise.
#[derive(Debug)]
pub struct PieceProgress {
    bar: Option<ProgressBar>,
}

impl PieceProgress {
    pub fn new(quiet: bool, label: &str, pieces: u64) -> PieceProgress {
        let colour = crate::output::colour_on_stderr();
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(pieces), ProgressDrawTarget::stderr());
            let template = if colour {
                "{prefix} [{bar:30.cyan/blue}] {percent:>3}% {pos}/{len} pieces {per_sec}"
            } else {
                "{prefix} [{bar:30}] {percent:>3}% {pos}/{len} pieces {per_sec}"
            };
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar
        });
        PieceProgress { bar }
    }

    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(format_utc(4_102_444_800), "2100-01-01 00:00:00 UTC");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(256 << 10), "256.0 KiB");
        assert_eq!(human_size(1 << 20), "1.0 MiB");
        assert_eq!(human_size((700 << 20) + (512 << 10)), "700.5 MiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
        assert_eq!(human_size(5 << 40), "5.0 TiB");
        assert_eq!(human_size(5000 << 40), "5000.0 TiB");
        assert_eq!(human_rate(2.5 * 1024.0 * 1024.0), "2.5 MiB/s");
        assert_eq!(human_rate(f64::NAN), "0 B/s");
        assert_eq!(human_rate(-3.0), "0 B/s");
    }

    #[test]
    fn durations_and_eta() {
        assert_eq!(human_duration(Duration::from_secs(42)), "42s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(human_duration(Duration::from_secs(7620)), "2h07m");
        let mut s = TorrentStats {
            total_len: 10 << 20,
            bytes_have: 4 << 20,
            download_rate: f64::from(1u32 << 20),
            ..TorrentStats::default()
        };
        assert_eq!(eta(&s), Some(Duration::from_secs(6)));
        s.download_rate = 0.0;
        assert_eq!(eta(&s), None);
    }

    #[test]
    fn no_eta_until_the_transfer_has_run_a_while() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut clock = EtaClock::default();
        // A resume check: no ETA, whatever the numbers.
        let checking = TorrentStats {
            total_len: 1 << 30,
            bytes_have: 1 << 29,
            checking: true,
            ..TorrentStats::default()
        };
        assert_eq!(clock.eta(at(0), &checking), None);
        // The check is over; the first bytes arrive at 1 s, at a rate the 5 s window still
        // averages with nothing: the ETA would say hours. None yet.
        let mut s = TorrentStats {
            checking: false,
            downloaded: 0,
            download_rate: 1000.0,
            ..checking
        };
        assert_eq!(clock.eta(at(500), &s), None);
        s.downloaded = 16384;
        assert_eq!(clock.eta(at(1000), &s), None);
        s.downloaded = 50 << 20;
        s.download_rate = f64::from(10u32 << 20);
        assert_eq!(clock.eta(at(5999), &s), None);
        // Five seconds of transfer: the rate means something.
        assert_eq!(clock.eta(at(6000), &s), Some(Duration::from_secs_f64(51.2)));
        s.complete = true;
        assert_eq!(clock.eta(at(7000), &s), None);
    }

    #[test]
    fn plain_lines_are_paced() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let stats = |pct: u64, peers: usize| TorrentStats {
            total_len: 100,
            bytes_have: pct,
            peers,
            ..TorrentStats::default()
        };
        let mut p = PlainPacer::new(true);
        assert!(p.due(at(0), &stats(0, 0))); // first update
        assert!(!p.due(at(100), &stats(0, 0))); // nothing new
        assert!(!p.due(at(1000), &stats(10, 0))); // new tenth, but too soon
        assert!(p.due(at(2100), &stats(10, 0))); // new tenth, 2 s later
        assert!(!p.due(at(3000), &stats(12, 0)));
        assert!(p.due(at(4200), &stats(12, 1))); // the first peer
        assert!(!p.due(at(9000), &stats(12, 1)));
        assert!(p.due(at(14_200), &stats(12, 1))); // heartbeat, 10 s
        assert!(p.due(at(16_300), &stats(90, 1)));
        assert!(!p.due(at(17_000), &stats(100, 1)));
        // Without a heartbeat (one of several torrents): only news.
        let mut p = PlainPacer::new(false);
        assert!(p.due(at(0), &stats(0, 1)));
        assert!(!p.due(at(60_000), &stats(5, 1)));
        assert!(p.due(at(60_000), &stats(0, 0)));
    }

    #[test]
    fn plain_line_content() {
        let s = TorrentStats {
            total_len: 4 << 20,
            bytes_have: 1 << 20,
            download_rate: f64::from(1u32 << 20),
            peers: 2,
            ..TorrentStats::default()
        };
        assert_eq!(
            plain_line("x", &s, eta(&s)),
            "x: 25.0% (1.0 MiB of 4.0 MiB), 1.0 MiB/s down, 0 B/s up, 2 peers, ETA 3s"
        );
        assert_eq!(
            status_text(&s, None, false),
            "1.0 MiB/s down, 0 B/s up, 2 peers"
        );
        let c = TorrentStats {
            checking: true,
            ..s.clone()
        };
        assert_eq!(
            plain_line("x", &c, None),
            "x: checking existing data, 25.0% verified"
        );
        // A seeder's line says what it serves, not "0 peers" of a finished download.
        let seeding = TorrentStats {
            complete: true,
            bytes_have: 4 << 20,
            uploaded: 3 << 20,
            upload_rate: f64::from(1u32 << 19),
            peers: 1,
            ..s
        };
        assert_eq!(
            plain_line("x", &seeding, None),
            "x: complete, 1 peer, 512.0 KiB/s up, 3.0 MiB uploaded"
        );
        assert_eq!(tenth(&TorrentStats::default()), 10);
    }

    #[test]
    fn quiet_shows_nothing() {
        let board = Board::quiet();
        assert!(board.is_quiet());
        let mut line = board.line("x", 10, true, None);
        assert!(!line.wants_update(Instant::now()));
        line.update(Instant::now(), &TorrentStats::default());
        line.finish();
        assert_eq!(short_name("abc").len(), 30);
        assert!(short_name("abc").starts_with("abc "));
        assert_eq!(short_name(&"a".repeat(40)).chars().count(), 30);
        assert!(short_name(&"a".repeat(40)).ends_with('…'));
    }
}
