//! The runtime-independent half of the event loop.
//!
//! A runtime owns sockets and a way to sleep until something happens; the [`Driver`] owns
//! the [`Session`], the disk pool, the storage and the progress output. The runtime:
//!
//! 1. builds a `Driver` (after binding its listener, whose port goes to the core) and
//!    calls [`Driver::drain`] once;
//! 2. sleeps until a socket is ready, the pool's wake-up fires, Ctrl-C arrives, or
//!    [`Driver::timeout`] passes;
//! 3. turns what happened into [`Input`]s for [`Driver::input`] (or [`Driver::accept`]),
//!    then calls [`Driver::disk_completions`] and [`Driver::handle_timeout`], with a
//!    [`Driver::drain`] after every input;
//! 4. stops when [`Driver::finished`] says so, and returns [`Driver::finish`].
//!
//! `drain` carries out every action through the runtime's [`Net`] (network) or the pool
//! (disk, name resolution) and handles every event (progress, warnings, completion).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tessera_core::{
    Action, Bitfield, Config, ConnId, DiskError, DiskErrorKind, DiskResult, Event, Input, Instant,
    Metainfo, Output, Session, Target, TorrentId, TorrentOptions, TorrentStats, TrackerEvent,
};

use crate::cli::{Cli, Command};
use crate::error::Error;
use crate::exit::Exit;
use crate::info::printable;
use crate::pool::{Completion, DiskPool, Job, Wake};
use crate::storage::Storage;
use crate::torrent;
use crate::ui::{Summary, Ui};

/// The network half of the actions, implemented by each runtime. None of these report
/// back directly: the runtime feeds what follows (`Connected`, `Sent`, `Received`,
/// `Closed`) to the driver as inputs later, from its own loop.
pub trait Net {
    /// Start connecting; answer with `Input::Connected` or `Input::Closed`.
    fn connect(&mut self, conn: ConnId, addr: SocketAddr);
    /// Queue bytes after everything queued before; report each write as `Input::Sent`.
    fn send(&mut self, conn: ConnId, data: Bytes);
    /// Drop the connection and whatever is queued; report nothing.
    fn close(&mut self, conn: ConnId);
    /// Send a UDP datagram (best effort).
    fn send_datagram(&mut self, to: SocketAddr, data: Bytes);
}

/// What the session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `download`: done once every piece is verified, unless `keep_seeding` (`--seed`).
    Download { keep_seeding: bool },
    /// `seed`: check the data, then serve it until interrupted.
    Seed,
}

/// A `download` or `seed` command, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub torrent: PathBuf,
    /// Where the data is (or goes).
    pub dir: PathBuf,
    pub peers: Vec<SocketAddr>,
    pub listen: SocketAddr,
    pub mode: Mode,
    pub quiet: bool,
}

impl Plan {
    /// The plan for `download` and `seed`; `None` for the offline commands.
    pub fn from_cli(cli: &Cli) -> Option<Plan> {
        match &cli.command {
            Command::Download(d) => Some(Plan {
                torrent: d.torrent.clone(),
                dir: d.output.clone(),
                peers: d.peers.clone(),
                listen: d.listen,
                mode: Mode::Download {
                    keep_seeding: d.seed,
                },
                quiet: cli.quiet,
            }),
            Command::Seed(s) => Some(Plan {
                torrent: s.torrent.clone(),
                dir: s.data.clone(),
                peers: s.peers.clone(),
                listen: s.listen,
                mode: Mode::Seed,
                quiet: cli.quiet,
            }),
            Command::Info(_) | Command::Verify(_) | Command::Create(_) => None,
        }
    }
}

/// Slack given to the core's own bound on a clean stop (`tracker_timeout`) before the
/// driver stops waiting for `Event::Stopped`.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the driver should do after a change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Nothing,
    /// Start a clean stop (`Session::shutdown`).
    Shutdown,
    /// Stop now without waiting.
    ExitNow,
}

/// When the run ends and how: the part of the driver that needs no session.
#[derive(Debug)]
struct Lifecycle {
    mode: Mode,
    complete: bool,
    /// Set once a clean stop has started: the exit to report when it ends.
    stopping: Option<Exit>,
    /// When to give up waiting for `Event::Stopped`.
    backstop: Instant,
    finished: Option<Exit>,
}

impl Lifecycle {
    fn new(mode: Mode) -> Lifecycle {
        Lifecycle {
            mode,
            complete: false,
            stopping: None,
            backstop: Instant::FAR_FUTURE,
            finished: None,
        }
    }

    /// Starts a clean stop that will end with `exit`, unless one is under way.
    fn stop(&mut self, exit: Exit, now: Instant, grace: std::time::Duration) -> Step {
        if self.stopping.is_some() || self.finished.is_some() {
            return Step::Nothing;
        }
        self.stopping = Some(exit);
        self.backstop = now + grace;
        Step::Shutdown
    }

    fn on_complete(&mut self, now: Instant, grace: std::time::Duration) -> Step {
        self.complete = true;
        match self.mode {
            Mode::Download {
                keep_seeding: false,
            } => self.stop(Exit::Success, now, grace),
            _ => Step::Nothing,
        }
    }

    fn on_fatal(&mut self, message: String, now: Instant, grace: std::time::Duration) -> Step {
        self.stop(Exit::Failed(message), now, grace)
    }

    /// Ctrl-C: a clean stop the first time, an immediate one the second.
    fn on_interrupt(&mut self, now: Instant, grace: std::time::Duration) -> Step {
        if self.finished.is_some() {
            return Step::Nothing;
        }
        let exit = if self.complete || self.mode == Mode::Seed {
            Exit::Success
        } else {
            Exit::Interrupted
        };
        match self.stopping.clone() {
            None => self.stop(exit, now, grace),
            Some(reason) => {
                self.finished = Some(reason);
                Step::ExitNow
            }
        }
    }

    fn on_stopped(&mut self) {
        let exit = self.stopping.clone().unwrap_or_else(|| {
            if self.complete {
                Exit::Success
            } else {
                Exit::Failed("the session stopped unexpectedly".into())
            }
        });
        self.finished.get_or_insert(exit);
    }

    /// True (once) when the backstop has passed without `Event::Stopped`.
    fn on_time(&mut self, now: Instant) -> bool {
        if self.finished.is_none() && now >= self.backstop {
            if let Some(exit) = self.stopping.clone() {
                self.finished = Some(exit);
                return true;
            }
        }
        false
    }
}

/// The session plus everything around it that is not sockets. See the module docs.
pub struct Driver {
    session: Session,
    pool: DiskPool,
    storages: HashMap<TorrentId, Arc<Storage>>,
    ui: Ui,
    /// The core's `Instant::ZERO`.
    epoch: std::time::Instant,
    mode: Mode,
    meta: Arc<Metainfo>,
    dir: PathBuf,
    torrent: TorrentId,
    /// From the last `Output::Timeout`.
    deadline: Instant,
    /// `Target::Host` connections waiting for their name; a `Close` removes them.
    resolving: HashSet<ConnId>,
    completions: Vec<Completion>,
    lifecycle: Lifecycle,
    grace: std::time::Duration,
    peers_seen: HashSet<SocketAddr>,
    last_stats: Option<TorrentStats>,
    /// The last problem printed per tracker URL, so a failing tracker is reported once.
    tracker_problems: HashMap<String, String>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("mode", &self.mode)
            .field("torrent", &self.torrent)
            .field("deadline", &self.deadline)
            .field("lifecycle", &self.lifecycle)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// Loads the torrent, prepares its directory, starts the disk pool (which calls `wake`
    /// after each completion) and the session, and adds the torrent and the `--peer`s.
    /// `listen_port` is the port of the runtime's bound listener. Call [`Driver::drain`]
    /// next.
    pub fn new(plan: &Plan, listen_port: u16, wake: Wake) -> Result<Driver, Error> {
        let meta = torrent::load(&plan.torrent)?;
        let storage = Arc::new(Storage::new(&plan.dir, meta.clone())?);
        storage.prepare()?;
        let pool = DiskPool::with_default_threads(wake)
            .map_err(|e| Error::io("starting disk threads", e))?;

        let config = Config {
            listen_port,
            ..Config::default()
        };
        let grace = config.tracker_timeout + SHUTDOWN_GRACE;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::other(format!("no randomness from the operating system: {e}")))?;
        let epoch = std::time::Instant::now();
        let mut session = Session::new(config, Instant::ZERO, seed);
        let options = match plan.mode {
            // A fresh download: nothing to check, every piece to fetch.
            Mode::Download { keep_seeding } => TorrentOptions {
                have: Some(Bitfield::new(meta.num_pieces() as usize)),
                seed: keep_seeding,
                wanted: None,
            },
            // Hash what is on disk first.
            Mode::Seed => TorrentOptions {
                have: None,
                seed: true,
                wanted: None,
            },
        };
        let torrent = session.add_torrent(Instant::ZERO, meta.clone(), options);
        if !plan.peers.is_empty() {
            session.add_peers(Instant::ZERO, torrent, &plan.peers, plan.mode == Mode::Seed);
        }
        let ui = Ui::new(plan.quiet, &printable(&meta.info.name), meta.total_length());
        Ok(Driver {
            session,
            pool,
            storages: HashMap::from([(torrent, storage)]),
            ui,
            epoch,
            mode: plan.mode,
            meta,
            dir: plan.dir.clone(),
            torrent,
            deadline: Instant::ZERO,
            resolving: HashSet::new(),
            completions: Vec::new(),
            lifecycle: Lifecycle::new(plan.mode),
            grace,
            peers_seen: HashSet::new(),
            last_stats: None,
            tracker_problems: HashMap::new(),
        })
    }

    /// The core's idea of now: time since the driver started.
    pub fn now(&self) -> Instant {
        Instant::from_duration(self.epoch.elapsed())
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Feeds one input to the session. Call [`Driver::drain`] after it.
    pub fn input(&mut self, input: Input) {
        self.session.handle_input(input);
    }

    /// A peer connected to the listener. `None`: close it. Call [`Driver::drain`] after it.
    pub fn accept(&mut self, remote: SocketAddr) -> Option<ConnId> {
        let now = self.now();
        self.session.accept(now, remote)
    }

    /// Runs the session until it has nothing more to do: every action is carried out and
    /// every event handled. Returns the instant at which [`Driver::handle_timeout`] must
    /// run if nothing else happens first.
    pub fn drain(&mut self, net: &mut impl Net) -> Instant {
        loop {
            match self.session.poll_output() {
                Output::Timeout(deadline) => {
                    self.deadline = deadline;
                    break;
                }
                Output::Action(action) => self.execute(action, net),
                Output::Event(event) => self.on_event(event),
            }
        }
        self.refresh_ui();
        self.deadline
    }

    /// How long the runtime may sleep: until the session's deadline or the shutdown
    /// backstop, whichever is first. `None`: no deadline.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        let next = self.deadline.min(self.lifecycle.backstop);
        (next != Instant::FAR_FUTURE).then(|| next.saturating_duration_since(self.now()))
    }

    /// Feeds `Input::Timeout` when the deadline has passed (and drains), and gives up on a
    /// clean stop that takes too long.
    pub fn handle_timeout(&mut self, net: &mut impl Net) {
        let now = self.now();
        if now >= self.deadline {
            self.session.handle_input(Input::Timeout { now });
            self.drain(net);
        }
        if self.lifecycle.on_time(self.now()) {
            self.ui
                .warn("the trackers did not answer in time; stopping without them");
        }
    }

    /// Feeds what the pool has finished to the session (draining after each), and starts
    /// the connections whose host names are resolved.
    pub fn disk_completions(&mut self, net: &mut impl Net) {
        let mut batch = std::mem::take(&mut self.completions);
        self.pool.drain(&mut batch);
        for completion in batch.drain(..) {
            let now = self.now();
            match completion {
                Completion::Disk { op, result } => {
                    self.session.handle_input(Input::Disk { now, op, result });
                }
                Completion::Resolved { conn, result } => {
                    if !self.resolving.remove(&conn) {
                        continue; // closed by the core meanwhile
                    }
                    match result {
                        Ok(addr) => {
                            net.connect(conn, addr);
                            continue;
                        }
                        Err(error) => self.session.handle_input(Input::Closed {
                            now,
                            conn,
                            error: Some(error),
                        }),
                    }
                }
                Completion::Hashed { .. } => continue,
            }
            self.drain(net);
        }
        self.completions = batch;
    }

    /// Ctrl-C (or SIGTERM): the first asks the session for a clean stop (`stopped`
    /// announces, connections closed), a second one ends the run at once.
    pub fn request_shutdown(&mut self, net: &mut impl Net) {
        let now = self.now();
        match self.lifecycle.on_interrupt(now, self.grace) {
            Step::Shutdown => {
                self.ui
                    .message("stopping: telling the trackers (Ctrl-C again to quit at once)");
                self.session.shutdown(now);
                self.drain(net);
            }
            Step::ExitNow => {
                let dropped = self.pool.abandon();
                tracing::debug!("quitting at once; {dropped} disk jobs dropped");
            }
            Step::Nothing => {}
        }
    }

    /// `Some` once the run is over: the download is complete and the session stopped, a
    /// fatal error happened, or Ctrl-C was pressed (twice, or once and the stop is done).
    pub fn finished(&self) -> Option<Exit> {
        self.lifecycle.finished.clone()
    }

    /// Prints the summary and returns how the run ended (`Interrupted` if called early).
    /// Dropping the driver waits for disk jobs already started.
    pub fn finish(mut self) -> Exit {
        if let Some(stats) = self.session.stats(self.torrent) {
            self.last_stats = Some(stats);
        }
        let stats = self.last_stats.clone().unwrap_or_default();
        self.ui.finish(&Summary {
            name: printable(&self.meta.info.name),
            downloaded: stats.downloaded,
            uploaded: stats.uploaded,
            elapsed: self.epoch.elapsed(),
            peers: self.peers_seen.len(),
        });
        self.lifecycle.finished.clone().unwrap_or(Exit::Interrupted)
    }

    fn execute(&mut self, action: Action, net: &mut impl Net) {
        match action {
            Action::Connect { conn, target } => match target {
                Target::Addr(addr) => net.connect(conn, addr),
                Target::Host { host, port } => {
                    self.resolving.insert(conn);
                    self.pool.submit(Job::Resolve { conn, host, port });
                }
            },
            Action::Send { conn, data } => net.send(conn, data),
            Action::Close { conn } => {
                if !self.resolving.remove(&conn) {
                    net.close(conn);
                }
            }
            Action::SendDatagram { to, data } => net.send_datagram(to, data),
            Action::Write {
                op,
                torrent,
                piece,
                offset,
                data,
                spans,
                expected,
            } => match self.storages.get(&torrent) {
                Some(storage) => self.pool.submit(Job::Write {
                    op,
                    storage: storage.clone(),
                    piece,
                    offset,
                    data,
                    spans,
                    expected,
                }),
                None => self.unknown_torrent(op, torrent),
            },
            Action::Verify {
                op,
                torrent,
                spans,
                expected,
                ..
            } => match self.storages.get(&torrent) {
                Some(storage) => self.pool.submit(Job::Verify {
                    op,
                    storage: storage.clone(),
                    spans,
                    expected,
                }),
                None => self.unknown_torrent(op, torrent),
            },
            Action::Read {
                op,
                torrent,
                len,
                spans,
                ..
            } => match self.storages.get(&torrent) {
                Some(storage) => self.pool.submit(Job::Read {
                    op,
                    storage: storage.clone(),
                    len,
                    spans,
                }),
                None => self.unknown_torrent(op, torrent),
            },
        }
    }

    /// A disk action for a torrent the driver has no storage for: a core bug, answered so
    /// that the core is not left waiting.
    fn unknown_torrent(&mut self, op: tessera_core::OpId, torrent: TorrentId) {
        let now = self.now();
        self.session.handle_input(Input::Disk {
            now,
            op,
            result: DiskResult::Error(DiskError {
                kind: DiskErrorKind::Other,
                message: format!("internal error: no storage for {torrent}"),
            }),
        });
    }

    fn on_event(&mut self, event: Event) {
        let now = self.now();
        let name = printable(&self.meta.info.name);
        match event {
            Event::Checked { have, total, .. } => {
                if self.mode == Mode::Seed {
                    if have == 0 && total > 0 {
                        self.ui.warn(&format!(
                            "no data for {name} found under {}: it will be downloaded",
                            self.dir.display()
                        ));
                    } else if have < total {
                        self.ui.warn(&format!(
                            "{name}: only {have} of {total} pieces on disk; the rest will be downloaded"
                        ));
                    } else {
                        self.ui.message(&format!(
                            "{name}: all {total} pieces verified, seeding (Ctrl-C to stop)"
                        ));
                    }
                }
            }
            Event::PieceVerified { piece, .. } => tracing::trace!("piece {piece} verified"),
            Event::HashFailed { piece, .. } => {
                tracing::info!("piece {piece} failed its hash check; fetching it again");
            }
            Event::Complete { .. } => {
                if self.mode == (Mode::Download { keep_seeding: true }) {
                    self.ui.message(&format!(
                        "{name}: download complete, seeding (Ctrl-C to stop)"
                    ));
                }
                if self.lifecycle.on_complete(now, self.grace) == Step::Shutdown {
                    self.session.shutdown(now);
                }
            }
            Event::Tracker { url, event, .. } => self.on_tracker(url, event),
            Event::PeerConnected { addr, id, .. } => {
                tracing::debug!("peer {addr} connected ({id})");
                self.peers_seen.insert(addr);
            }
            Event::PeerClosed { addr, reason, .. } => {
                tracing::debug!("peer {addr} closed: {reason}");
            }
            Event::DiskError { message, .. } => {
                let message = format!("disk error: {message}");
                if self.lifecycle.on_fatal(message.clone(), now, self.grace) == Step::Shutdown {
                    self.session.shutdown(now);
                } else {
                    self.ui.warn(&message);
                }
            }
            Event::Stopped => self.lifecycle.on_stopped(),
        }
    }

    fn on_tracker(&mut self, url: String, event: TrackerEvent) {
        let url = printable(&url);
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

    fn refresh_ui(&mut self) {
        let now = std::time::Instant::now();
        if self.ui.wants_update(now) {
            if let Some(stats) = self.session.stats(self.torrent) {
                self.ui.update(now, &stats);
                self.last_stats = Some(stats);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const GRACE: Duration = Duration::from_secs(35);

    fn at(secs: u64) -> Instant {
        Instant::from_duration(Duration::from_secs(secs))
    }

    #[test]
    fn download_ends_after_complete_and_a_clean_stop() {
        let mut l = Lifecycle::new(Mode::Download {
            keep_seeding: false,
        });
        assert_eq!(l.on_complete(at(10), GRACE), Step::Shutdown);
        assert_eq!(l.backstop, at(45));
        assert_eq!(l.finished, None);
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Success));
    }

    #[test]
    fn a_stop_that_hangs_ends_at_the_backstop() {
        let mut l = Lifecycle::new(Mode::Download {
            keep_seeding: false,
        });
        l.on_complete(at(10), GRACE);
        assert!(!l.on_time(at(44)));
        assert!(l.on_time(at(45)));
        assert_eq!(l.finished, Some(Exit::Success));
        assert!(!l.on_time(at(46)));
    }

    #[test]
    fn keep_seeding_continues_after_complete() {
        let mut l = Lifecycle::new(Mode::Download { keep_seeding: true });
        assert_eq!(l.on_complete(at(1), GRACE), Step::Nothing);
        assert_eq!(l.finished, None);
        // Ctrl-C after completion is a success; a second one quits at once.
        assert_eq!(l.on_interrupt(at(2), GRACE), Step::Shutdown);
        assert_eq!(l.on_interrupt(at(3), GRACE), Step::ExitNow);
        assert_eq!(l.finished, Some(Exit::Success));
        assert_eq!(l.on_interrupt(at(4), GRACE), Step::Nothing);
    }

    #[test]
    fn interrupting_an_incomplete_download_fails() {
        let mut l = Lifecycle::new(Mode::Download {
            keep_seeding: false,
        });
        assert_eq!(l.on_interrupt(at(1), GRACE), Step::Shutdown);
        assert_eq!(l.finished, None);
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Interrupted));
    }

    #[test]
    fn seeding_ends_well_on_interrupt() {
        let mut l = Lifecycle::new(Mode::Seed);
        assert_eq!(l.on_complete(at(1), GRACE), Step::Nothing);
        assert_eq!(l.on_interrupt(at(100), GRACE), Step::Shutdown);
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Success));
        // Even a seeder whose data was incomplete stops with success when asked to.
        let mut l = Lifecycle::new(Mode::Seed);
        l.on_interrupt(at(1), GRACE);
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Success));
    }

    #[test]
    fn disk_errors_are_fatal_and_keep_their_message() {
        let mut l = Lifecycle::new(Mode::Seed);
        assert_eq!(
            l.on_fatal("disk error: full".into(), at(1), GRACE),
            Step::Shutdown
        );
        // A later interrupt while stopping quits at once, still reporting the error.
        assert_eq!(l.on_interrupt(at(2), GRACE), Step::ExitNow);
        assert_eq!(l.finished, Some(Exit::Failed("disk error: full".into())));

        let mut l = Lifecycle::new(Mode::Download {
            keep_seeding: false,
        });
        l.on_fatal("disk error: x".into(), at(1), GRACE);
        // A second fatal error does not restart the stop.
        assert_eq!(
            l.on_fatal("disk error: y".into(), at(2), GRACE),
            Step::Nothing
        );
        l.on_stopped();
        assert_eq!(l.finished, Some(Exit::Failed("disk error: x".into())));
    }

    #[test]
    fn an_unexpected_stop_is_a_failure_unless_complete() {
        let mut l = Lifecycle::new(Mode::Download {
            keep_seeding: false,
        });
        l.on_stopped();
        assert!(matches!(l.finished, Some(Exit::Failed(_))));
    }

    #[test]
    fn plans_from_the_command_line() {
        let cli = Cli::try_parse_for(
            "t",
            [
                "t",
                "download",
                "x.torrent",
                "-o",
                "out",
                "--peer",
                "127.0.0.1:1",
                "--seed",
            ],
        )
        .unwrap();
        assert_eq!(
            Plan::from_cli(&cli),
            Some(Plan {
                torrent: "x.torrent".into(),
                dir: "out".into(),
                peers: vec!["127.0.0.1:1".parse().unwrap()],
                listen: "0.0.0.0:0".parse().unwrap(),
                mode: Mode::Download { keep_seeding: true },
                quiet: false,
            })
        );
        let cli = Cli::try_parse_for(
            "t",
            [
                "t",
                "-q",
                "seed",
                "x.torrent",
                "--data",
                "d",
                "--listen",
                "127.0.0.1:7",
            ],
        )
        .unwrap();
        let plan = Plan::from_cli(&cli).unwrap();
        assert_eq!(plan.mode, Mode::Seed);
        assert_eq!(plan.dir, PathBuf::from("d"));
        assert_eq!(plan.listen.port(), 7);
        assert!(plan.quiet);
        let cli = Cli::try_parse_for("t", ["t", "info", "x.torrent"]).unwrap();
        assert_eq!(Plan::from_cli(&cli), None);
    }
}
