//! Command-line arguments (GUIDE section 4), shared by every runtime binary.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use tessera_core::{MAX_PIECE_LENGTH, MIN_PIECE_LENGTH};

/// Resolving `HOST:PORT` lives with the resolver (the DHT flags use it too).
pub use crate::pool::parse_peer;
use crate::torrent::TorrentRef;

#[derive(Debug, Parser)]
#[command(version, about = "A BitTorrent client", propagate_version = true)]
pub struct Cli {
    /// More log output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides)
    #[arg(short, long, action = ArgAction::Count, global = true, help_heading = "Global options")]
    pub verbose: u8,
    /// No progress output and no warnings; errors only
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download torrents' data, all at once in one session, resuming what DIR holds; exits
    /// 0 once every piece of every torrent is verified on disk, or after a clean stop with
    /// Ctrl-C (the same command resumes)
    Download(DownloadArgs),
    /// Check existing data, then serve it to peers until interrupted
    Seed(SeedArgs),
    /// Show what a .torrent file or a magnet link describes
    Info(InfoArgs),
    /// Hash existing data against a .torrent file; exits 0 only when all of it is complete
    Verify(VerifyArgs),
    /// Make a .torrent file from a file or a directory
    Create(CreateArgs),
    /// See it work, offline: a seeder and a few downloaders in this process share a
    /// made-up payload over loopback, and the copies are checked byte for byte
    Demo(DemoArgs),
    /// Print a completion script for bash, zsh or fish on stdout (bash: `source <(... completions bash)`)
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The .torrent files or magnet links (quote them: `'magnet:?xt=urn:btih:...'`),
    /// downloaded at once in one session (one listening port, the connection limits
    /// shared); a magnet link's metadata is fetched from peers and kept in
    /// DIR/.tessera/<info hash>.torrent
    #[arg(value_name = "TORRENT|MAGNET", required = true, num_args = 1.., value_parser = parse_torrent)]
    pub torrents: Vec<TorrentRef>,
    /// Directory to download into: a single file lands at DIR/<name>, a multi-file torrent
    /// under DIR/<name>/
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub output: PathBuf,
    /// A peer to connect to besides the trackers', for every torrent (repeatable)
    #[arg(long = "peer", value_name = "HOST:PORT", value_parser = parse_peer)]
    pub peers: Vec<SocketAddr>,
    /// Where to accept peers: a port, or ADDR:PORT (port 0: any free port)
    /// [default: 6881, or the first free port after it]
    #[arg(long, value_name = "[ADDR:]PORT", value_parser = parse_listen)]
    pub listen: Option<SocketAddr>,
    /// Give up (exit 1) when no peer has been connected for this long, e.g. `90s`, `5m`;
    /// the reasons are printed well before, in any case
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stall_timeout: Option<Duration>,
    /// Keep seeding after the download completes, until interrupted or a seeding goal
    /// (--seed-ratio, --seed-time) is reached
    #[arg(long)]
    pub seed: bool,
    #[command(flatten)]
    pub goals: SeedGoalArgs,
    /// Download pieces in order, a window of about 8 MiB ahead of the first missing one
    /// (a player can read the file while it downloads); rarer pieces beyond the window
    /// are still fetched first, for the swarm's sake
    #[arg(long)]
    pub sequential: bool,
    /// Fetch the first and last piece of each chosen file before the others (players read
    /// both ends of a file first)
    #[arg(long)]
    pub first_last: bool,
    /// Download only the files this selects (repeatable): a file number as `info` lists
    /// them (`3`) or a range (`3-5`), or a glob on the path inside the torrent, below its
    /// name (`*` and `?` stay within a directory, `**` crosses them, `[a-z]` sets); a
    /// pattern without `/` is matched against file names in any directory (`*.iso`). Other
    /// files are never created; bytes of theirs in shared pieces go to DIR/.tessera/. With
    /// one torrent only
    #[arg(long = "only", value_name = "PATTERN")]
    pub only: Vec<String>,
    /// Hash the data already in DIR instead of trusting the resume data in DIR/.tessera/
    #[arg(long)]
    pub recheck: bool,
    /// Protocol encryption (MSE/PE) with peers
    #[arg(long, value_name = "POLICY", default_value = "prefer")]
    pub encryption: Encryption,
    /// Transport for outgoing peer connections: uTP first with a fall back to TCP
    /// (`both`), or one of them only; incoming connections are accepted over TCP and, but
    /// with `tcp`, over uTP on the listening port
    #[arg(long, value_name = "TRANSPORT", default_value = "both")]
    pub transport: Transport,
    /// With a magnet link (a single torrent): also write the .torrent made of the fetched
    /// metadata here
    #[arg(long, value_name = "FILE")]
    pub save_torrent: Option<PathBuf>,
    /// No peer exchange (BEP 11): learn peers only from trackers and --peer (private
    /// torrents never use it)
    #[arg(long)]
    pub no_pex: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub dht: crate::dht::DhtArgs,
}

/// `--encryption`: how peer connections are protected (message stream encryption).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Encryption {
    /// Dial encrypted, redial in plaintext when the peer refuses; accept both
    #[default]
    Prefer,
    /// Only RC4-encrypted connections, both ways
    Require,
    /// Only plaintext connections, both ways
    Disable,
}

impl Encryption {
    /// The core's policy.
    pub fn policy(self) -> tessera_core::mse::Policy {
        use tessera_core::mse::Policy;
        match self {
            Encryption::Prefer => Policy::Prefer,
            Encryption::Require => Policy::Require,
            Encryption::Disable => Policy::Disable,
        }
    }
}

/// `--transport`: which transports peer connections use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Transport {
    /// TCP only
    Tcp,
    /// uTP (BEP 29) only for outgoing connections
    Utp,
    /// Dial over uTP first and fall back to TCP when it gets no answer
    #[default]
    Both,
}

impl Transport {
    /// The core's policy.
    pub fn policy(self) -> tessera_core::TransportPolicy {
        use tessera_core::TransportPolicy;
        match self {
            Transport::Tcp => TransportPolicy::Tcp,
            Transport::Utp => TransportPolicy::Utp,
            Transport::Both => TransportPolicy::Both,
        }
    }
}

/// Bounds on connections and memory (the core's `Config`), for `download` and `seed`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Connections to peers for this torrent
    #[arg(long, value_name = "N", default_value = "50", value_parser = parse_count)]
    pub max_peers: usize,
    /// Connections in total: peers, trackers and inbound ones not yet identified
    #[arg(long, value_name = "N", default_value = "200", value_parser = parse_count)]
    pub max_connections: usize,
    /// Bytes of downloaded blocks held in memory before they are written (no new requests
    /// above it; partial pieces are spilled to disk above half of it); at least 64KiB
    #[arg(long, value_name = "BYTES", default_value = "32MiB", value_parser = parse_buffer)]
    pub max_buffered: usize,
    /// Requests a peer may have queued with us (advertised as `reqq`); more are dropped,
    /// and a peer that keeps sending them is disconnected
    #[arg(long, value_name = "N", default_value = "500", value_parser = parse_count)]
    pub max_peer_requests: usize,
    /// Upload bytes queued for one peer's socket and not yet written to it
    #[arg(long, value_name = "BYTES", default_value = "4MiB", value_parser = parse_buffer)]
    pub max_send_buffer: usize,
    /// Peer addresses from trackers remembered for this torrent
    #[arg(long, value_name = "N", default_value = "1000", value_parser = parse_count)]
    pub max_known_peers: usize,
    /// Upload limit for the whole run, shared fairly by all peers and torrents, in bytes
    /// per second: e.g. `500KiB`, `10M`, `2MiB/s` [default: none]
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_upload_rate: Option<u64>,
    /// Download limit for the whole run, like --max-upload-rate [default: none]
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_download_rate: Option<u64>,
}

impl LimitArgs {
    /// Sets the core's bounds from these.
    pub fn apply(&self, config: &mut tessera_core::Config) {
        config.max_peers_per_torrent = self.max_peers;
        config.max_connections = self.max_connections;
        config.max_buffered_bytes = self.max_buffered;
        config.max_peer_requests = self.max_peer_requests;
        config.max_send_buffer = self.max_send_buffer;
        config.max_known_peers = self.max_known_peers;
        config.max_upload_rate = self.max_upload_rate;
        config.max_download_rate = self.max_download_rate;
    }
}

impl Default for LimitArgs {
    /// The command line's defaults (the core's `Config::default()`).
    fn default() -> Self {
        let c = tessera_core::Config::default();
        LimitArgs {
            max_peers: c.max_peers_per_torrent,
            max_connections: c.max_connections,
            max_buffered: c.max_buffered_bytes,
            max_peer_requests: c.max_peer_requests,
            max_send_buffer: c.max_send_buffer,
            max_known_peers: c.max_known_peers,
            max_upload_rate: c.max_upload_rate,
            max_download_rate: c.max_download_rate,
        }
    }
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The .torrent files, served at once in one session
    #[arg(value_name = "TORRENT", required = true, num_args = 1.., value_parser = parse_torrent)]
    pub torrents: Vec<TorrentRef>,
    /// Directory holding the data, laid out as `download` leaves it
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub data: PathBuf,
    /// Where to accept peers: a port, or ADDR:PORT (port 0: any free port)
    /// [default: 6881, or the first free port after it]
    #[arg(long, value_name = "[ADDR:]PORT", value_parser = parse_listen)]
    pub listen: Option<SocketAddr>,
    /// A peer to keep connected to, redialled when the connection drops (repeatable)
    #[arg(long = "peer", value_name = "HOST:PORT", value_parser = parse_peer)]
    pub peers: Vec<SocketAddr>,
    /// Protocol encryption (MSE/PE) with peers
    #[arg(long, value_name = "POLICY", default_value = "prefer")]
    pub encryption: Encryption,
    /// Transport for outgoing peer connections: uTP first with a fall back to TCP
    /// (`both`), or one of them only; incoming connections are accepted over TCP and, but
    /// with `tcp`, over uTP on the listening port
    #[arg(long, value_name = "TRANSPORT", default_value = "both")]
    pub transport: Transport,
    /// No peer exchange (BEP 11) (private torrents never use it)
    #[arg(long)]
    pub no_pex: bool,
    #[command(flatten)]
    pub goals: SeedGoalArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub dht: crate::dht::DhtArgs,
}

/// When seeding ends by itself (`seed`, and `download --seed`): whichever goal comes first;
/// each torrent stops with a `stopped` announce, and the run exits 0 once all have.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct SeedGoalArgs {
    /// Stop seeding a torrent once this many times its size has been uploaded in this run
    /// (e.g. 1.0, 2.5)
    #[arg(long, value_name = "R", value_parser = parse_ratio)]
    pub seed_ratio: Option<f64>,
    /// Stop seeding a torrent after seeding this long (from completion, or from the check
    /// for data that was complete), e.g. `30m`, `2h`
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub seed_time: Option<Duration>,
}

impl SeedGoalArgs {
    /// How seeding ends, for the user: `until a ratio of 1.5 or 2h of seeding, whichever
    /// comes first`, or `(Ctrl-C to stop)` with no goal.
    pub fn describe(&self) -> String {
        let ratio = self.seed_ratio.map(|r| format!("a ratio of {r}"));
        let time = self
            .seed_time
            .map(|d| format!("{} of seeding", crate::ui::human_duration(d)));
        match (ratio, time) {
            (Some(r), Some(t)) => format!("until {r} or {t}, whichever comes first"),
            (Some(goal), None) | (None, Some(goal)) => format!("until {goal} (or Ctrl-C)"),
            (None, None) => "(Ctrl-C to stop)".to_string(),
        }
    }
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The .torrent file, or a magnet link (shown as it is, nothing fetched)
    #[arg(value_name = "TORRENT|MAGNET", value_parser = parse_torrent)]
    pub torrent: TorrentRef,
    /// Print one JSON object (for scripts) instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The .torrent file
    #[arg(value_name = "TORRENT", value_parser = parse_torrent)]
    pub torrent: TorrentRef,
    /// Directory holding the data, laid out as `download` leaves it
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub data: PathBuf,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A file, or a directory to include recursively (symbolic links are skipped)
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Tracker announce URL; each one given is its own tier, in order (repeatable)
    #[arg(long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// Piece length: a power of two from 16KiB to 256MiB, suffixes K/KiB, M/MiB allowed
    /// [default: about 1000 to 2000 pieces, at most 16MiB]
    #[arg(long, value_name = "BYTES", value_parser = parse_piece_size)]
    pub piece_size: Option<u32>,
    /// Where to write the torrent [default: <name>.torrent]
    #[arg(short, long, value_name = "OUT.torrent")]
    pub output: Option<PathBuf>,
    /// Mark the torrent private (BEP 27: trackers only, no DHT or peer exchange)
    #[arg(long)]
    pub private: bool,
    /// A comment stored in the torrent
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Leave out the creation date, so the same input gives the same bytes
    #[arg(long)]
    pub no_date: bool,
    /// Overwrite the output file if it exists
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Size of the payload made up for the demo
    #[arg(long, value_name = "BYTES", default_value = "256MiB", value_parser = parse_demo_size)]
    pub size: u64,
    /// How many downloaders fetch it at once
    #[arg(long, value_name = "N", default_value = "3", value_parser = clap::value_parser!(u8).range(1..=8))]
    pub downloaders: u8,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

impl Cli {
    /// Parses the process's arguments, exiting with clap's message (code 2) on a usage
    /// error. `name` is the program's name in `--version` output.
    pub fn parse_for(name: &'static str) -> Cli {
        match Cli::try_parse_for(name, std::env::args_os()) {
            Ok(cli) => cli,
            Err(e) => exit_usage(name, &e),
        }
    }

    /// Parses `args` (the first is the program name).
    pub fn try_parse_for<I, T>(name: &'static str, args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Cli::command().name(name).try_get_matches_from(args)?;
        Cli::from_arg_matches(&matches)
    }
}

/// Help and version go to stdout as clap renders them (exit 0); a usage error is one line
/// on stderr, `error: ...` plus where to look, and exit code 2.
fn exit_usage(name: &str, e: &clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let rendered = e.to_string();
    let before_usage = rendered.split("Usage:").next().unwrap_or_default();
    let line: Vec<&str> = before_usage
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    crate::output::error_line(&format!("{} (see `{name} --help`)", line.join(" ")));
    std::process::exit(2);
}

/// A torrent argument: a `.torrent` file's path, or a magnet link.
pub fn parse_torrent(s: &str) -> Result<TorrentRef, String> {
    if s.is_empty() {
        return Err("expected the path of a .torrent file".into());
    }
    Ok(TorrentRef::parse(s))
}

/// The port a listener takes when `--listen` is not given, if it is free; else the next
/// free one up to [`DEFAULT_PORTS`]'s end.
pub const DEFAULT_PORT: u16 = 6881;
/// The ports tried, in order, when `--listen` is not given.
pub const DEFAULT_PORTS: std::ops::RangeInclusive<u16> = DEFAULT_PORT..=6999;

/// `--listen`: `ADDR:PORT`, or a bare port on every IPv4 address.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| format!("expected a port (6881) or ADDR:PORT (127.0.0.1:6881), got {s:?}"))
}

/// A duration: a number with `s`, `m`, `h` or `d` (`90s`, `5m`, `2h`, `1h30m`); a bare
/// number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let bad = || format!("expected a duration like 90s, 5m or 2h, got {s:?}");
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let split = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (digits, tail) = rest.split_at(split);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit.trim() {
            "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{s:?} is too long"))?;
        rest = next;
    }
    Ok(Duration::from_secs(total))
}

/// The demo's payload size: [`parse_size`], from 1 byte to 64 GiB.
pub fn parse_demo_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("the demo needs at least one byte".into()),
        n if n > 64 << 30 => Err(format!("at most 64GiB, got {n} bytes")),
        n => Ok(n),
    }
}

/// A byte count with an optional binary suffix: `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`,
/// `G`/`GB`/`GiB` (case-insensitive; all multiples of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a number of bytes like 262144 or 256KiB, got {s:?}"))?;
    let unit: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size suffix {other:?} (use KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A rate in bytes per second: [`parse_size`], with `/s` or `ps` allowed after the unit
/// (`10MiB/s`, `500K`, `1MBps`); at least 1KiB.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let bare = if lower.ends_with("/s") || lower.ends_with("ps") {
        &t[..t.len() - 2]
    } else {
        t
    };
    let n = parse_size(bare).map_err(|_| {
        format!("expected a rate in bytes per second like 500KiB, 10M or 2MiB/s, got {s:?}")
    })?;
    if n < 1024 {
        return Err(format!(
            "a rate must be at least 1KiB/s, got {n} bytes per second"
        ));
    }
    Ok(n)
}

/// A seeding ratio: a finite number, at least 0.
pub fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("expected a ratio like 1.0 or 2.5, got {s:?}")),
    }
}

/// A count of at least 1.
pub fn parse_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("expected a number, got {s:?}")),
    }
}

/// A buffer size: [`parse_size`], at least 64KiB (four blocks).
pub fn parse_buffer(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    if n < 64 << 10 {
        return Err(format!("must be at least 64KiB, got {n} bytes"));
    }
    usize::try_from(n).map_err(|_| format!("{s:?} is too large"))
}

/// A piece length: [`parse_size`], then a power of two within the limits torrents allow.
pub fn parse_piece_size(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    // The limits are the metainfo's: a torrent made with any other would be refused.
    let limits = u64::from(MIN_PIECE_LENGTH)..=u64::from(MAX_PIECE_LENGTH);
    if !n.is_power_of_two() || !limits.contains(&n) {
        return Err(format!(
            "piece size must be a power of two from {}KiB to {}MiB, got {n} bytes",
            MIN_PIECE_LENGTH >> 10,
            MAX_PIECE_LENGTH >> 20
        ));
    }
    u32::try_from(n).map_err(|_| format!("{n} does not fit a piece length"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::torrent::TorrentRef;

    #[test]
    fn seeding_goals_are_described_for_the_user() {
        let goals = |seed_ratio, seed_time| SeedGoalArgs {
            seed_ratio,
            seed_time,
        };
        assert_eq!(goals(None, None).describe(), "(Ctrl-C to stop)");
        assert_eq!(
            goals(Some(1.5), None).describe(),
            "until a ratio of 1.5 (or Ctrl-C)"
        );
        assert_eq!(
            goals(None, Some(Duration::from_secs(1800))).describe(),
            "until 30m00s of seeding (or Ctrl-C)"
        );
        assert_eq!(
            goals(Some(2.0), Some(Duration::from_secs(7200))).describe(),
            "until a ratio of 2 or 2h00m of seeding, whichever comes first"
        );
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_for(
            "tessera-test",
            std::iter::once("tessera-test").chain(args.iter().copied()),
        )
    }

    #[test]
    fn download_defaults_and_flags() {
        let cli = parse(&["download", "a.torrent"]).unwrap();
        let Command::Download(d) = cli.command else {
            panic!("not download: {:?}", cli.command)
        };
        assert_eq!(d.torrents, vec![TorrentRef::File("a.torrent".into())]);
        assert_eq!(d.output, PathBuf::from("."));
        assert!(d.peers.is_empty());
        assert_eq!(d.listen, None);
        assert_eq!(d.stall_timeout, None);
        assert!(!d.seed);
        assert_eq!(cli.verbose, 0);
        assert!(!cli.quiet);

        let cli = parse(&[
            "-vv",
            "download",
            "a.torrent",
            "-o",
            "out",
            "--peer",
            "127.0.0.1:6881",
            "--peer",
            "[::1]:7000",
            "--listen",
            "127.0.0.1:5000",
            "--seed",
            "--quiet",
        ])
        .unwrap();
        let Command::Download(d) = cli.command else {
            panic!("not download")
        };
        assert_eq!(d.output, PathBuf::from("out"));
        assert_eq!(
            d.peers,
            vec![
                "127.0.0.1:6881".parse::<SocketAddr>().unwrap(),
                "[::1]:7000".parse().unwrap()
            ]
        );
        assert_eq!(
            d.listen,
            Some("127.0.0.1:5000".parse::<SocketAddr>().unwrap())
        );
        assert!(d.seed);
        assert_eq!(cli.verbose, 2);
        assert!(cli.quiet);
    }

    #[test]
    fn seed_info_verify() {
        let cli = parse(&[
            "seed",
            "a.torrent",
            "--data",
            "d",
            "--peer",
            "localhost:6881",
        ])
        .unwrap();
        let Command::Seed(s) = cli.command else {
            panic!("not seed")
        };
        assert_eq!(s.data, PathBuf::from("d"));
        assert_eq!(s.peers.len(), 1);
        assert!(s.peers[0].ip().is_loopback());
        assert_eq!(s.peers[0].port(), 6881);
        assert_eq!(s.listen, None);

        let cli = parse(&["info", "x.torrent"]).unwrap();
        assert!(
            matches!(cli.command, Command::Info(ref i) if i.torrent == TorrentRef::File("x.torrent".into()) && !i.json)
        );
        let cli = parse(&["info", "--json", "magnet:?xt=urn:btih:00"]).unwrap();
        assert!(
            matches!(cli.command, Command::Info(ref i) if matches!(i.torrent, TorrentRef::Magnet(_)) && i.json)
        );

        let cli = parse(&["verify", "x.torrent"]).unwrap();
        assert!(matches!(cli.command, Command::Verify(ref v) if v.data == Path::new(".")));
        let cli = parse(&["-vvv", "verify", "x.torrent", "--data", "/srv"]).unwrap();
        assert!(matches!(cli.command, Command::Verify(ref v) if v.data == Path::new("/srv")));
        assert_eq!(cli.verbose, 3);
    }

    #[test]
    fn create_with_piece_size_suffixes() {
        let cli = parse(&[
            "create",
            "dir",
            "--tracker",
            "http://a/announce",
            "--tracker",
            "udp://b:80",
            "--piece-size",
            "256KiB",
            "-o",
            "out.torrent",
            "--private",
        ])
        .unwrap();
        let Command::Create(c) = cli.command else {
            panic!("not create")
        };
        assert_eq!(c.path, PathBuf::from("dir"));
        assert_eq!(c.trackers, vec!["http://a/announce", "udp://b:80"]);
        assert_eq!(c.piece_size, Some(256 * 1024));
        assert_eq!(c.output, Some(PathBuf::from("out.torrent")));
        assert!(c.private);
        assert!(!c.no_date && !c.force && c.comment.is_none());

        let cli = parse(&["create", "f"]).unwrap();
        assert!(
            matches!(cli.command, Command::Create(ref c) if c.piece_size.is_none() && c.output.is_none() && !c.private)
        );

        for (text, n) in [
            ("1MiB", 1 << 20),
            ("16k", 16 << 10),
            ("32768", 32768),
            ("4 MB", 4 << 20),
        ] {
            assert_eq!(parse_piece_size(text), Ok(n), "{text}");
        }
        for bad in ["100KiB", "8KiB", "512MiB", "1.5MiB", "256XB", "", "KiB"] {
            assert!(parse_piece_size(bad).is_err(), "{bad} accepted");
        }
        let err = parse(&["create", "f", "--piece-size", "100KiB"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn limits_default_to_the_core_config_and_map_onto_it() {
        let cli = parse(&["download", "a.torrent"]).unwrap();
        let Command::Download(d) = cli.command else {
            panic!("not download")
        };
        assert_eq!(d.limits, LimitArgs::default());
        assert!(d.only.is_empty() && !d.recheck);
        let cli = parse(&[
            "seed",
            "a.torrent",
            "--max-peers",
            "3",
            "--max-connections",
            "9",
            "--max-buffered",
            "1MiB",
            "--max-peer-requests",
            "20",
            "--max-send-buffer",
            "64KiB",
            "--max-known-peers",
            "7",
        ])
        .unwrap();
        let Command::Seed(s) = cli.command else {
            panic!("not seed")
        };
        let mut config = tessera_core::Config::default();
        s.limits.apply(&mut config);
        assert_eq!(config.max_peers_per_torrent, 3);
        assert_eq!(config.max_connections, 9);
        assert_eq!(config.max_buffered_bytes, 1 << 20);
        assert_eq!(config.max_peer_requests, 20);
        assert_eq!(config.max_send_buffer, 64 << 10);
        assert_eq!(config.max_known_peers, 7);
        for bad in [
            ["--max-peers", "0"],
            ["--max-buffered", "1000"],
            ["--max-known-peers", "x"],
        ] {
            let err = parse(&["download", "a.torrent", bad[0], bad[1]]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
        let cli = parse(&[
            "download",
            "a.torrent",
            "--only",
            "*.bin",
            "--only",
            "3",
            "--recheck",
        ])
        .unwrap();
        let Command::Download(d) = cli.command else {
            panic!("not download")
        };
        assert_eq!(d.only, vec!["*.bin", "3"]);
        assert!(d.recheck);
    }

    #[test]
    fn rates_and_ratios() {
        assert_eq!(parse_rate("500KiB"), Ok(500 << 10));
        assert_eq!(parse_rate("10M"), Ok(10 << 20));
        assert_eq!(parse_rate("2MiB/s"), Ok(2 << 20));
        assert_eq!(parse_rate("1MBps"), Ok(1 << 20));
        assert_eq!(parse_rate("65536"), Ok(65536));
        for bad in ["", "fast", "10", "10X", "/s"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_ratio("1.0"), Ok(1.0));
        assert_eq!(parse_ratio("0"), Ok(0.0));
        for bad in ["-1", "NaN", "inf", "x"] {
            assert!(parse_ratio(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn several_torrents_a_bare_port_and_a_stall_timeout() {
        let cli = parse(&[
            "download",
            "a.torrent",
            "b.torrent",
            "magnet:?xt=urn:btih:00",
            "--listen",
            "7000",
            "--stall-timeout",
            "2m",
        ])
        .unwrap();
        let Command::Download(d) = cli.command else {
            panic!("not download")
        };
        assert_eq!(d.torrents.len(), 3);
        assert_eq!(d.torrents[1], TorrentRef::File("b.torrent".into()));
        assert_eq!(d.listen, Some("0.0.0.0:7000".parse().unwrap()));
        assert_eq!(d.stall_timeout, Some(Duration::from_secs(120)));
        let cli = parse(&["seed", "a.torrent", "b.torrent", "--listen", "[::1]:9"]).unwrap();
        let Command::Seed(s) = cli.command else {
            panic!("not seed")
        };
        assert_eq!(s.torrents.len(), 2);
        assert_eq!(s.listen, Some("[::1]:9".parse().unwrap()));
        for bad in ["70000", "nowhere", "1.2.3.4", ""] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
        assert!(
            parse_listen("x")
                .unwrap_err()
                .contains("a port (6881) or ADDR:PORT")
        );
    }

    #[test]
    fn durations() {
        for (text, secs) in [
            ("90", 90),
            ("90s", 90),
            ("5m", 300),
            ("2h", 7200),
            ("1h30m", 5400),
            ("1d", 86_400),
            (" 10 s ", 10),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in ["", "m", "5x", "1.5h", "-3s", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn demo_and_completions() {
        let cli = parse(&["demo"]).unwrap();
        assert!(
            matches!(cli.command, Command::Demo(ref d) if d.size == 256 << 20 && d.downloaders == 3)
        );
        let cli = parse(&["demo", "--size", "4MiB", "--downloaders", "1"]).unwrap();
        assert!(matches!(cli.command, Command::Demo(ref d) if d.size == 4 << 20));
        for bad in [
            ["--size", "0"],
            ["--downloaders", "0"],
            ["--downloaders", "9"],
        ] {
            assert_eq!(
                parse(&["demo", bad[0], bad[1]]).unwrap_err().exit_code(),
                2,
                "{bad:?}"
            );
        }
        for shell in ["bash", "zsh", "fish"] {
            assert!(parse(&["completions", shell]).is_ok(), "{shell}");
        }
        assert_eq!(parse(&["completions", "cmd"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn encryption_defaults_to_prefer_and_maps_onto_the_core_policy() {
        use tessera_core::mse::Policy;
        let cli = parse(&["download", "a.torrent"]).unwrap();
        let Command::Download(d) = cli.command else {
            panic!("not download")
        };
        assert_eq!(d.encryption, Encryption::Prefer);
        assert_eq!(d.encryption.policy(), Policy::Prefer);
        for (arg, policy) in [("require", Policy::Require), ("disable", Policy::Disable)] {
            let cli = parse(&["seed", "a.torrent", "--encryption", arg]).unwrap();
            let Command::Seed(s) = cli.command else {
                panic!("not seed")
            };
            assert_eq!(s.encryption.policy(), policy);
        }
        assert!(parse(&["download", "a.torrent", "--encryption", "rc4"]).is_err());
    }

    #[test]
    fn transport_defaults_to_both_and_maps_onto_the_core_policy() {
        use tessera_core::TransportPolicy;
        for cmd in ["download", "seed"] {
            let cli = parse(&[cmd, "a.torrent"]).unwrap();
            let t = match cli.command {
                Command::Download(d) => d.transport,
                Command::Seed(s) => s.transport,
                _ => panic!("not {cmd}"),
            };
            assert_eq!(t.policy(), TransportPolicy::Both, "{cmd}");
            for (arg, policy) in [
                ("tcp", TransportPolicy::Tcp),
                ("utp", TransportPolicy::Utp),
                ("both", TransportPolicy::Both),
            ] {
                let cli = parse(&[cmd, "a.torrent", "--transport", arg]).unwrap();
                let t = match cli.command {
                    Command::Download(d) => d.transport,
                    Command::Seed(s) => s.transport,
                    _ => panic!("not {cmd}"),
                };
                assert_eq!(t.policy(), policy, "{cmd} --transport {arg}");
            }
            assert!(parse(&[cmd, "a.torrent", "--transport", "quic"]).is_err());
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("3g"), Ok(3 << 30));
        assert_eq!(parse_size("7B"), Ok(7));
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn peers_are_resolved_or_refused() {
        assert_eq!(
            parse_peer("10.0.0.1:1"),
            Ok("10.0.0.1:1".parse::<SocketAddr>().unwrap())
        );
        let local = parse_peer("localhost:6881").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 6881);
        assert!(parse_peer("localhost").unwrap_err().contains("HOST:PORT"));
        assert!(parse_peer("localhost:http").unwrap_err().contains("port"));
        assert!(parse_peer(":80").is_err());
        let err = parse(&["download", "a.torrent", "--peer", "nope"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("HOST:PORT"), "{err}");
    }

    #[test]
    fn usage_errors() {
        assert_eq!(parse(&[]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["download"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["fly", "x"]).unwrap_err().exit_code(), 2);
        assert_eq!(
            parse(&["download", "a", "--listen", "nowhere"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }
}

/// The argument parsers against any text: an error, never a panic; and what they accept
/// means what it says.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_text_is_a_value_or_an_error(s in "\\PC{0,24}|[0-9]{0,22}[a-zA-Z/ ]{0,5}") {
            let _ = parse_listen(&s);
            let _ = parse_duration(&s);
            let _ = parse_demo_size(&s);
            let _ = parse_size(&s);
            let _ = parse_rate(&s);
            let _ = parse_ratio(&s);
            let _ = parse_count(&s);
            let _ = parse_buffer(&s);
            let _ = parse_piece_size(&s);
        }

        #[test]
        fn durations_add_their_parts(h in 0u64..10_000, m in 0u64..60, sec in 0u64..60) {
            let total = Duration::from_secs(h * 3600 + m * 60 + sec);
            prop_assert_eq!(parse_duration(&format!("{h}h{m}m{sec}s")), Ok(total));
            prop_assert_eq!(parse_duration(&total.as_secs().to_string()), Ok(total));
        }

        #[test]
        fn sizes_scale_by_their_suffix(
            n in 0u64..1 << 30,
            (suffix, shift) in prop::sample::select(vec![
                ("", 0u32), ("B", 0), ("k", 10), ("KiB", 10), ("MB", 20), ("mib", 20), ("G", 30),
            ]),
        ) {
            prop_assert_eq!(parse_size(&format!("{n}{suffix}")), Ok(n << shift));
            let rate = parse_rate(&format!("{n}{suffix}/s"));
            if n << shift >= 1024 {
                prop_assert_eq!(rate, Ok(n << shift));
            } else {
                prop_assert!(rate.is_err());
            }
        }
    }
}
