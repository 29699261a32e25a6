//! Progress output. On a terminal (stderr): an `indicatif` bar with bytes, rate, peers and
//! ETA. Otherwise: a plain line on stderr when another tenth is done (at most one every
//! two seconds) and a heartbeat every 30 s, never one per piece. With `--quiet`: nothing
//! but errors. The end-of-run summary goes to stdout.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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

/// Time to fetch what is missing at `rate`, if there is a rate.
pub fn eta(stats: &TorrentStats) -> Option<Duration> {
    let left = stats.total_len.saturating_sub(stats.bytes_have);
    (stats.download_rate >= 1.0).then(|| Duration::from_secs_f64(left as f64 / stats.download_rate))
}

/// What the run achieved, for the last line.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub name: String,
    /// Payload bytes received.
    pub downloaded: u64,
    pub uploaded: u64,
    pub elapsed: Duration,
    /// Distinct peers we exchanged a handshake with.
    pub peers: usize,
}

impl Summary {
    /// `<name>: <size> in <secs> s, <MiB/s> MiB/s average, <n> peers, <size> uploaded`
    pub fn line(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.downloaded as f64 / (KIB * KIB) / secs
        } else {
            0.0
        };
        format!(
            "{}: {} in {secs:.1} s, {rate:.2} MiB/s average, {} peer{}, {} uploaded",
            self.name,
            human_size(self.downloaded),
            self.peers,
            if self.peers == 1 { "" } else { "s" },
            human_size(self.uploaded)
        )
    }
}

/// The line printed for a progress update in plain mode.
pub fn plain_line(name: &str, stats: &TorrentStats) -> String {
    let pct = percent(stats);
    if stats.checking {
        return format!("{name}: checking existing data, {pct:.1}% verified");
    }
    let mut line = format!(
        "{name}: {pct:.1}% ({} of {}), {} down, {} up, {} peer{}",
        human_size(stats.bytes_have),
        human_size(stats.total_len),
        human_rate(stats.download_rate),
        human_rate(stats.upload_rate),
        stats.peers,
        if stats.peers == 1 { "" } else { "s" },
    );
    if !stats.complete
        && let Some(eta) = eta(stats)
    {
        line.push_str(&format!(", ETA {}", human_duration(eta)));
    }
    line
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

/// When plain mode prints: a new tenth reached (at most one line per `MIN_GAP`), or
/// `HEARTBEAT` without a line.
#[derive(Debug)]
struct PlainPacer {
    last_line: Option<Instant>,
    last_tenth: Option<u64>,
}

const MIN_GAP: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_secs(30);

impl PlainPacer {
    fn due(&mut self, now: Instant, tenth: u64) -> bool {
        let due = match (self.last_line, self.last_tenth) {
            (Some(at), Some(t)) => {
                let since = now.saturating_duration_since(at);
                (tenth > t && since >= MIN_GAP) || since >= HEARTBEAT
            }
            _ => true,
        };
        if due {
            self.last_line = Some(now);
            self.last_tenth = Some(tenth);
        }
        due
    }
}

#[derive(Debug)]
enum Mode {
    Quiet,
    Plain(PlainPacer),
    Bar(ProgressBar),
}

/// Progress of one torrent's download or seeding.
#[derive(Debug)]
pub struct Ui {
    mode: Mode,
    name: String,
    last_update: Option<Instant>,
}

/// How often the bar is refreshed from the core's statistics.
const BAR_INTERVAL: Duration = Duration::from_millis(200);

impl Ui {
    /// A bar when stderr is a terminal, plain lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool, name: &str, total_len: u64) -> Ui {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar(torrent_bar(name, total_len))
        } else {
            Mode::Plain(PlainPacer {
                last_line: None,
                last_tenth: None,
            })
        };
        Ui {
            mode,
            name: name.to_string(),
            last_update: None,
        }
    }

    /// True when [`Ui::update`] would show something now (so that the caller can skip
    /// gathering statistics otherwise).
    pub fn wants_update(&self, now: Instant) -> bool {
        match self.mode {
            Mode::Quiet => false,
            Mode::Plain(_) | Mode::Bar(_) => self
                .last_update
                .is_none_or(|at| now.saturating_duration_since(at) >= BAR_INTERVAL),
        }
    }

    pub fn update(&mut self, now: Instant, stats: &TorrentStats) {
        self.last_update = Some(now);
        match &mut self.mode {
            Mode::Quiet => {}
            Mode::Plain(pacer) => {
                if pacer.due(now, tenth(stats)) {
                    crate::output::error_line(&plain_line(&self.name, stats));
                }
            }
            Mode::Bar(bar) => {
                bar.set_length(stats.total_len);
                bar.set_position(stats.bytes_have);
                bar.set_message(bar_message(stats));
            }
        }
    }

    /// An informational line (not shown with `--quiet`).
    pub fn message(&self, line: &str) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain(_) => crate::output::error_line(line),
            Mode::Bar(bar) => bar.suspend(|| crate::output::error_line(line)),
        }
    }

    /// `warning: <line>` on stderr (not shown with `--quiet`).
    pub fn warn(&self, line: &str) {
        self.message(&format!("warning: {line}"));
    }

    /// Removes the bar and prints the summary on stdout (unless quiet).
    pub fn finish(&mut self, summary: &Summary) {
        match &self.mode {
            Mode::Quiet => return,
            Mode::Plain(_) => {}
            Mode::Bar(bar) => bar.finish_and_clear(),
        }
        crate::output::line(&summary.line());
    }
}

fn bar_message(stats: &TorrentStats) -> String {
    if stats.checking {
        return "checking existing data".to_string();
    }
    let mut m = format!(
        "{} down, {} up, {} peer{}",
        human_rate(stats.download_rate),
        human_rate(stats.upload_rate),
        stats.peers,
        if stats.peers == 1 { "" } else { "s" }
    );
    if stats.complete {
        m.push_str(", complete");
    } else if let Some(eta) = eta(stats) {
        m.push_str(&format!(", ETA {}", human_duration(eta)));
    }
    m
}

fn torrent_bar(name: &str, total_len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total_len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{prefix:.bold} [{bar:30.cyan/blue}] {binary_bytes}/{binary_total_bytes} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(short_name(name));
    bar
}

fn short_name(name: &str) -> String {
    const MAX: usize = 24;
    if name.chars().count() <= MAX {
        name.to_string()
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
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(pieces), ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} pieces {per_sec}")
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
    fn summary_line() {
        let s = Summary {
            name: "ubuntu.iso".into(),
            downloaded: 100 << 20,
            uploaded: 1536,
            elapsed: Duration::from_secs(8),
            peers: 3,
        };
        assert_eq!(
            s.line(),
            "ubuntu.iso: 100.0 MiB in 8.0 s, 12.50 MiB/s average, 3 peers, 1.5 KiB uploaded"
        );
        let s = Summary {
            elapsed: Duration::ZERO,
            peers: 1,
            ..s
        };
        assert_eq!(
            s.line(),
            "ubuntu.iso: 100.0 MiB in 0.0 s, 0.00 MiB/s average, 1 peer, 1.5 KiB uploaded"
        );
    }

    #[test]
    fn plain_lines_are_paced() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(s);
        let mut p = PlainPacer {
            last_line: None,
            last_tenth: None,
        };
        assert!(p.due(at(0), 0)); // first update
        assert!(!p.due(at(100), 0)); // nothing new
        assert!(!p.due(at(1000), 1)); // new tenth, but too soon
        assert!(p.due(at(2100), 1)); // new tenth, 2 s later
        assert!(!p.due(at(5000), 1));
        assert!(p.due(at(32_200), 1)); // heartbeat
        assert!(p.due(at(34_300), 9));
        assert!(!p.due(at(35_000), 10));
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
            plain_line("x", &s),
            "x: 25.0% (1.0 MiB of 4.0 MiB), 1.0 MiB/s down, 0 B/s up, 2 peers, ETA 3s"
        );
        let c = TorrentStats {
            checking: true,
            ..s
        };
        assert_eq!(
            plain_line("x", &c),
            "x: checking existing data, 25.0% verified"
        );
        assert_eq!(tenth(&TorrentStats::default()), 10);
    }

    #[test]
    fn quiet_shows_nothing() {
        let mut ui = Ui::new(true, "x", 10);
        assert!(!ui.wants_update(Instant::now()));
        ui.update(Instant::now(), &TorrentStats::default());
        ui.finish(&Summary {
            name: "x".into(),
            downloaded: 0,
            uploaded: 0,
            elapsed: Duration::ZERO,
            peers: 0,
        });
        assert_eq!(short_name("abc"), "abc");
        assert_eq!(short_name(&"a".repeat(30)).chars().count(), 24);
    }
}
