//! The runtime-independent half of the event loop.
//!
//! A runtime owns sockets and a way to sleep until something happens; the [`Driver`] owns
//! the [`Session`], the disk pool, the storage and the progress output. The runtime:
//!
//! 1. builds a `Driver` (after binding its listener with [`crate::net::bind`], whose port
//!    goes to the core) and calls [`Driver::drain`] once;
//! 2. sleeps until a socket is ready, the pool's wake-up fires, Ctrl-C arrives, or
//!    [`Driver::timeout`] passes;
//! 3. turns what happened into [`NetEvent`]s for [`Driver::feed_event`] (input, then
//!    drain), [`Driver::accept`] (register the socket, then drain) or
//!    [`Driver::request_shutdown`], then calls [`Driver::disk_completions`] and
//!    [`Driver::handle_timeout`], which drain themselves;
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

use crate::cli::{Cli, Command, LimitArgs};
use crate::error::Error;
use crate::exit::Exit;
use crate::info::printable;
use crate::net::NetEvent;
use crate::pool::{Completion, DiskPool, Job, Wake};
use crate::resume::{self, Startup};
use crate::select;
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
    /// `--only` patterns (download): which files to fetch; empty for all.
    pub only: Vec<String>,
    /// `--recheck` (download): hash the data on disk instead of trusting resume data.
    pub recheck: bool,
    pub limits: LimitArgs,
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
                only: d.only.clone(),
                recheck: d.recheck,
                limits: d.limits.clone(),
            }),
            Command::Seed(s) => Some(Plan {
                torrent: s.torrent.clone(),
                dir: s.data.clone(),
                peers: s.peers.clone(),
                listen: s.listen,
                mode: Mode::Seed,
                quiet: cli.quiet,
                only: Vec::new(),
                recheck: false,
                limits: s.limits.clone(),
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
    /// The clean stop under way was asked for with Ctrl-C.
    interrupted: bool,
    /// A second Ctrl-C: out at once, without waiting for the disk or saving resume data.
    quit_now: bool,
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
            interrupted: false,
            quit_now: false,
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

    /// Ctrl-C: a clean stop the first time (a success: what was verified is kept and the
    /// same command resumes), an immediate one the second (`Interrupted` if the download
    /// was not complete).
    fn on_interrupt(&mut self, now: Instant, grace: std::time::Duration) -> Step {
        if self.finished.is_some() {
            return Step::Nothing;
        }
        match self.stopping.clone() {
            None => {
                self.interrupted = true;
                self.stop(Exit::Success, now, grace)
            }
            Some(reason) => {
                let unfinished_download =
                    matches!(self.mode, Mode::Download { .. }) && !self.complete;
                self.finished = Some(if self.interrupted && unfinished_download {
                    Exit::Interrupted
                } else {
                    reason
                });
                self.quit_now = true;
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

/// What the driver uses of the core's [`Session`]. A trait only so that tests can drive
/// the driver with a scripted core; runtimes use `Driver` (that is, `Driver<Session>`).
pub trait Core {
    fn handle_input(&mut self, input: Input);
    fn poll_output(&mut self) -> Output;
    fn accept(&mut self, now: Instant, remote: SocketAddr) -> Option<ConnId>;
    fn shutdown(&mut self, now: Instant);
    fn stats(&self, torrent: TorrentId) -> Option<TorrentStats>;
    /// The torrent's verified pieces.
    fn have(&self, torrent: TorrentId) -> Option<Bitfield>;
}

impl Core for Session {
    fn handle_input(&mut self, input: Input) {
        Session::handle_input(self, input);
    }
    fn poll_output(&mut self) -> Output {
        Session::poll_output(self)
    }
    fn accept(&mut self, now: Instant, remote: SocketAddr) -> Option<ConnId> {
        Session::accept(self, now, remote)
    }
    fn shutdown(&mut self, now: Instant) {
        Session::shutdown(self, now);
    }
    fn stats(&self, torrent: TorrentId) -> Option<TorrentStats> {
        Session::stats(self, torrent)
    }
    fn have(&self, torrent: TorrentId) -> Option<Bitfield> {
        Session::have(self, torrent).cloned()
    }
}

/// How often resume data is saved while pieces are being verified.
const SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// How long the end of a run waits for queued disk jobs (writes of verified pieces) before
/// it saves resume data.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Resume data upkeep for a download (see [`crate::resume`]).
#[derive(Debug)]
struct Resumer {
    path: PathBuf,
    storage: Arc<Storage>,
    info_hash: [u8; 20],
    /// The core knows what is on disk (the check, if there was one, is over): only then
    /// does its bitfield mean something.
    known: bool,
    /// Pieces were verified since the last save started.
    unsaved: bool,
    /// A save is running on the pool.
    saving: bool,
    next_save: std::time::Instant,
    /// The last save failure printed, so that a failing disk is reported once.
    last_error: Option<String>,
}

/// The session plus everything around it that is not sockets. See the module docs.
pub struct Driver<S: Core = Session> {
    session: S,
    pool: DiskPool,
    storages: HashMap<TorrentId, Arc<Storage>>,
    ui: Ui,
    /// The core's `Instant::ZERO`.
    epoch: std::time::Instant,
    mode: Mode,
    /// The torrent's name, printable (for messages).
    name: Arc<str>,
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
    /// `download` only.
    resumer: Option<Resumer>,
}

impl<S: Core> std::fmt::Debug for Driver<S> {
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
        let name = printable(&meta.info.name);
        let chosen = select::choose(&meta, &plan.only)?;
        let hash = meta.info_hash.to_string();
        let storage = Arc::new(Storage::with_selection(
            &plan.dir,
            meta.clone(),
            chosen.as_deref(),
            Some(resume::part_path(&plan.dir, &hash)),
        )?);
        let ui = Ui::new(plan.quiet, &name, meta.total_length());
        let n = meta.num_pieces() as usize;
        let (have, resumer) = match plan.mode {
            Mode::Download { .. } => {
                let path = resume::resume_path(&plan.dir, &hash);
                let startup = resume::startup(&meta, &storage, &path, plan.recheck);
                // Resume data that was just read needs no saving until something changes.
                let unsaved = !matches!(startup, Startup::Resume(_));
                let have = match startup {
                    Startup::Fresh => Some(Bitfield::new(n)),
                    Startup::Resume(have) => {
                        ui.message(&format!(
                            "{name}: resuming with {} of {n} pieces verified ({})",
                            have.count_ones(),
                            path.display()
                        ));
                        Some(have)
                    }
                    Startup::Check(reason) => {
                        ui.message(&format!(
                            "{name}: checking the data in {} ({reason})",
                            plan.dir.display()
                        ));
                        None
                    }
                };
                // Saved at once when the core knows what is on disk: the file then exists
                // before the data can fill the disk (see `resume::write_resume`).
                let resumer = Resumer {
                    path,
                    storage: storage.clone(),
                    info_hash: meta.info_hash.0,
                    known: have.is_some(),
                    unsaved,
                    saving: false,
                    next_save: std::time::Instant::now(),
                    last_error: None,
                };
                (have, Some(resumer))
            }
            // Hash what is on disk first.
            Mode::Seed => (None, None),
        };
        storage.prepare()?;
        let pool = DiskPool::with_default_threads(wake)
            .map_err(|e| Error::io("starting disk threads", e))?;

        let mut config = Config {
            listen_port,
            ..Config::default()
        };
        plan.limits.apply(&mut config);
        let grace = config.tracker_timeout + SHUTDOWN_GRACE;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::other(format!("no randomness from the operating system: {e}")))?;
        let epoch = std::time::Instant::now();
        let mut session = Session::new(config, Instant::ZERO, seed);
        let options = TorrentOptions {
            have,
            seed: match plan.mode {
                Mode::Download { keep_seeding } => keep_seeding,
                Mode::Seed => true,
            },
            files: chosen,
        };
        let torrent = session
            .add_torrent(Instant::ZERO, meta.clone(), options)
            .map_err(|e| Error::other(e.to_string()))?;
        if !plan.peers.is_empty() {
            // Peers the user named are redialled with back-off until they answer (a seeder
            // started a moment later, a peer that restarts).
            session.add_peers(Instant::ZERO, torrent, &plan.peers, true);
        }
        let mut driver = Driver::from_parts(session, pool, ui, meta, torrent, storage, plan);
        driver.epoch = epoch;
        driver.grace = grace;
        driver.resumer = resumer;
        Ok(driver)
    }
}

impl<S: Core> Driver<S> {
    /// A driver around an existing session that has `torrent` added (for tests).
    fn from_parts(
        session: S,
        pool: DiskPool,
        ui: Ui,
        meta: Arc<Metainfo>,
        torrent: TorrentId,
        storage: Arc<Storage>,
        plan: &Plan,
    ) -> Driver<S> {
        Driver {
            session,
            pool,
            storages: HashMap::from([(torrent, storage)]),
            ui,
            epoch: std::time::Instant::now(),
            mode: plan.mode,
            name: printable(&meta.info.name).into(),
            dir: plan.dir.clone(),
            torrent,
            deadline: Instant::ZERO,
            resolving: HashSet::new(),
            completions: Vec::new(),
            lifecycle: Lifecycle::new(plan.mode),
            grace: Config::default().tracker_timeout + SHUTDOWN_GRACE,
            peers_seen: HashSet::new(),
            last_stats: None,
            tracker_problems: HashMap::new(),
            resumer: None,
        }
    }

    /// The core's idea of now: time since the driver started.
    pub fn now(&self) -> Instant {
        Instant::from_duration(self.epoch.elapsed())
    }

    pub fn session(&self) -> &S {
        &self.session
    }

    /// Feeds one input to the session. Call [`Driver::drain`] after it (or use
    /// [`Driver::feed`], which does both).
    pub fn input(&mut self, input: Input) {
        self.session.handle_input(input);
    }

    /// [`Driver::input`] followed by [`Driver::drain`].
    pub fn feed(&mut self, input: Input, net: &mut impl Net) -> Instant {
        self.input(input);
        self.drain(net)
    }

    /// A network event, stamped with the current time, fed as its input (then drained).
    /// Events about a connection the core closed must not be fed: the runtime drops them
    /// when [`Net::close`] is called.
    pub fn feed_event(&mut self, event: NetEvent, net: &mut impl Net) -> Instant {
        let now = self.now();
        self.feed(event.into_input(now), net)
    }

    /// A peer connected to the listener. If the core takes it, `adopt` hands the stream to
    /// `net` under the new connection id and the session is drained; otherwise the caller
    /// drops the stream, which closes it. Returns the connection id, if any.
    ///
    /// Refused while the data on disk is being checked: the core would take the peer, send
    /// it no bitfield (nothing is verified yet) and never tell it what the check found, so
    /// a leecher that connected then would wait for pieces forever. Refused, it dials again.
    pub fn accept<N: Net>(
        &mut self,
        remote: SocketAddr,
        net: &mut N,
        adopt: impl FnOnce(&mut N, ConnId),
    ) -> Option<ConnId> {
        let now = self.now();
        let Some(conn) = self.session.accept(now, remote) else {
            tracing::debug!("refused a connection from {remote}");
            return None;
        };
        tracing::trace!("{conn}: accepted from {remote}");
        adopt(net, conn);
        self.drain(net);
        Some(conn)
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

    /// How long the runtime may sleep: until the session's deadline, the shutdown
    /// backstop or a resume save that is owed, whichever is first. `None`: no deadline.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        let next = self.deadline.min(self.lifecycle.backstop);
        let core =
            (next != Instant::FAR_FUTURE).then(|| next.saturating_duration_since(self.now()));
        // The session only wakes the loop when it has something due; a save of verified
        // pieces must not wait for that.
        let save = self
            .resumer
            .as_ref()
            .filter(|r| r.known && r.unsaved && !r.saving && self.lifecycle.finished.is_none())
            .map(|r| {
                r.next_save
                    .saturating_duration_since(std::time::Instant::now())
            });
        match (core, save) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
        self.save_if_due();
    }

    /// Starts saving resume data on the pool when pieces were verified since the last save
    /// and [`SAVE_INTERVAL`] has passed (or at once with `now`).
    fn save_if_due(&mut self) {
        let Some(r) = self.resumer.as_mut() else {
            return;
        };
        if !r.known || !r.unsaved || r.saving || self.lifecycle.finished.is_some() {
            return;
        }
        if std::time::Instant::now() < r.next_save {
            return;
        }
        let Some(have) = self.session.have(self.torrent) else {
            return;
        };
        r.unsaved = false;
        r.saving = true;
        r.next_save = std::time::Instant::now() + SAVE_INTERVAL;
        self.pool.submit(Job::SaveResume {
            storage: r.storage.clone(),
            path: r.path.clone(),
            info_hash: r.info_hash,
            have,
        });
    }

    /// A save finished: a failure is reported (once per distinct message); the data it
    /// would have recorded is still on disk and found by hashing next time.
    fn saved(&mut self, result: Result<(), String>) {
        let Some(r) = self.resumer.as_mut() else {
            return;
        };
        r.saving = false;
        match result {
            Ok(()) => r.last_error = None,
            Err(e) => {
                if r.last_error.as_ref() != Some(&e) {
                    self.ui.warn(&format!("cannot save resume data: {e}"));
                    r.last_error = Some(e);
                }
            }
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
                Completion::Saved { result } => {
                    self.saved(result);
                    continue;
                }
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

    /// Waits for the disk jobs still queued (writes of verified pieces complete), saves
    /// resume data (`download`), prints the summary and returns how the run ended
    /// (`Interrupted` if called early). After a second Ctrl-C nothing is waited for.
    pub fn finish(mut self) -> Exit {
        if !self.lifecycle.quit_now {
            self.flush_and_save();
        }
        if let Some(stats) = self.session.stats(self.torrent) {
            self.last_stats = Some(stats);
        }
        let stats = self.last_stats.clone().unwrap_or_default();
        if self.lifecycle.interrupted && !self.lifecycle.complete && !self.lifecycle.quit_now {
            if let Mode::Download { .. } = self.mode {
                self.ui.message(&format!(
                    "{}: stopped with {} of {} pieces verified; the same command resumes",
                    self.name, stats.pieces_have, stats.pieces_total
                ));
            }
        }
        self.ui.finish(&Summary {
            name: self.name.to_string(),
            downloaded: stats.downloaded,
            uploaded: stats.uploaded,
            elapsed: self.epoch.elapsed(),
            peers: self.peers_seen.len(),
        });
        self.lifecycle.finished.clone().unwrap_or(Exit::Interrupted)
    }

    /// Lets the pool finish what it was given, feeds the results to the session (so that
    /// pieces whose writes were queued count as verified), then saves resume data.
    fn flush_and_save(&mut self) {
        let mut done = Vec::new();
        if !self.pool.wait_idle(&mut done, FLUSH_TIMEOUT) {
            self.ui.warn(&format!(
                "disk jobs still running after {}s; not saving resume data",
                FLUSH_TIMEOUT.as_secs()
            ));
            return;
        }
        for completion in done {
            match completion {
                Completion::Disk { op, result } => {
                    let now = self.now();
                    self.session.handle_input(Input::Disk { now, op, result });
                    // Only the events matter now (pieces verified, disk errors).
                    loop {
                        match self.session.poll_output() {
                            Output::Timeout(_) => break,
                            Output::Event(Event::PieceVerified { .. }) => {
                                if let Some(r) = self.resumer.as_mut() {
                                    r.unsaved = true;
                                }
                            }
                            Output::Event(Event::Complete { .. }) => {
                                self.lifecycle.complete = true;
                            }
                            // Reported unless the run already ends with a disk error.
                            Output::Event(Event::DiskError { message, .. })
                                if !matches!(self.lifecycle.finished, Some(Exit::Failed(_))) =>
                            {
                                self.ui.warn(&format!("disk error: {message}"));
                            }
                            // Nothing new is started now: actions (a check of a spilled
                            // piece, say) are dropped, and their pieces count as in flight.
                            Output::Event(_) | Output::Action(_) => {}
                        }
                    }
                }
                Completion::Saved { result } => self.saved(result),
                Completion::Hashed { .. } | Completion::Resolved { .. } => {}
            }
        }
        let Some(r) = self.resumer.as_ref() else {
            return;
        };
        // Nothing verified since the last save, and that one worked: the file is current.
        if !r.known || (!r.unsaved && r.last_error.is_none()) {
            return;
        }
        let Some(have) = self.session.have(self.torrent) else {
            return;
        };
        let result = resume::save(&r.storage, &r.path, r.info_hash, have);
        self.saved(result);
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
        let name = Arc::clone(&self.name);
        match event {
            Event::Checked { have, total, .. } => {
                if let Some(r) = self.resumer.as_mut() {
                    // What the check found is worth saving at once.
                    r.known = true;
                    r.unsaved = true;
                    r.next_save = std::time::Instant::now();
                    self.ui
                        .message(&format!("{name}: {have} of {total} pieces already on disk"));
                }
                if self.mode == Mode::Seed {
                    if have == 0 && total > 0 {
                        self.ui.warn(&format!(
                            "no data for {name} found under {}: it will be downloaded",
                            self.dir.display()
                        ));
                    } else if have < total {
                        self.ui.warn(&format!(
                            "{name}: {} of {total} pieces missing or failing the check: not served, \
                             to be downloaded; serving the other {have}",
                            total - have
                        ));
                    } else {
                        self.ui.message(&format!(
                            "{name}: all {total} pieces verified, seeding (Ctrl-C to stop)"
                        ));
                    }
                }
            }
            Event::PieceVerified { piece, .. } => {
                tracing::trace!("piece {piece} verified");
                if let Some(r) = self.resumer.as_mut() {
                    r.unsaved = true;
                }
            }
            Event::HashFailed { piece, .. } => {
                tracing::info!("piece {piece} failed its hash check; fetching it again");
            }
            Event::Complete { .. } => {
                if let Some(r) = self.resumer.as_mut() {
                    // Save at once: a later kill (while seeding) keeps the completion.
                    r.next_save = std::time::Instant::now();
                }
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
    fn interrupting_an_incomplete_download_is_a_clean_stop() {
        let mut l = Lifecycle::new(Mode::Download {
            keep_seeding: false,
        });
        assert_eq!(l.on_interrupt(at(1), GRACE), Step::Shutdown);
        assert_eq!(l.finished, None);
        l.on_stopped();
        // What was verified is kept and the same command resumes: exit 0.
        assert_eq!(l.finished, Some(Exit::Success));
        assert!(l.interrupted && !l.quit_now);
        // A second Ctrl-C before the stop is done quits at once, as interrupted.
        let mut l = Lifecycle::new(Mode::Download {
            keep_seeding: false,
        });
        l.on_interrupt(at(1), GRACE);
        assert_eq!(l.on_interrupt(at(2), GRACE), Step::ExitNow);
        assert_eq!(l.finished, Some(Exit::Interrupted));
        assert!(l.quit_now);
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
                only: vec![],
                recheck: false,
                limits: LimitArgs::default(),
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

    // ---- The drain logic, with a scripted core and a recording network. ----

    use std::collections::VecDeque;

    use tessera_core::OpId;

    use crate::testutil::{TestTorrent, torrent};

    /// A core that hands out queued outputs and records its inputs. `react` may queue more
    /// outputs in answer to an input.
    struct FakeCore {
        outputs: VecDeque<Output>,
        inputs: Vec<Input>,
        shutdowns: usize,
        deadline: Instant,
        react: fn(&Input, &mut VecDeque<Output>),
        /// What `have` answers: the pieces whose `Disk` results were fed so far.
        have: Bitfield,
    }

    impl Core for FakeCore {
        fn handle_input(&mut self, input: Input) {
            (self.react)(&input, &mut self.outputs);
            if let Input::Disk {
                op,
                result: DiskResult::Ok,
                ..
            } = &input
            {
                // Tests use the piece as the op id.
                self.have.set(op.0 as usize);
            }
            self.inputs.push(input);
        }
        fn poll_output(&mut self) -> Output {
            self.outputs
                .pop_front()
                .unwrap_or(Output::Timeout(self.deadline))
        }
        fn accept(&mut self, _now: Instant, _remote: SocketAddr) -> Option<ConnId> {
            Some(ConnId(77))
        }
        fn shutdown(&mut self, _now: Instant) {
            self.shutdowns += 1;
        }
        fn stats(&self, _torrent: TorrentId) -> Option<TorrentStats> {
            Some(TorrentStats::default())
        }
        fn have(&self, _torrent: TorrentId) -> Option<Bitfield> {
            Some(self.have.clone())
        }
    }

    #[derive(Default, Debug, PartialEq)]
    struct FakeNet {
        calls: Vec<String>,
    }

    impl Net for FakeNet {
        fn connect(&mut self, conn: ConnId, addr: SocketAddr) {
            self.calls.push(format!("connect {conn} {addr}"));
        }
        fn send(&mut self, conn: ConnId, data: Bytes) {
            self.calls.push(format!("send {conn} {}", data.len()));
        }
        fn close(&mut self, conn: ConnId) {
            self.calls.push(format!("close {conn}"));
        }
        fn send_datagram(&mut self, to: SocketAddr, data: Bytes) {
            self.calls.push(format!("datagram {to} {}", data.len()));
        }
    }

    const T: TorrentId = TorrentId(1);

    fn no_reaction(_: &Input, _: &mut VecDeque<Output>) {}

    /// Resume bookkeeping for `d`'s torrent `t`, saving to `path`, due in `SAVE_INTERVAL`.
    fn resumer<S: Core>(
        d: &Driver<S>,
        t: &TestTorrent,
        path: &std::path::Path,
        unsaved: bool,
    ) -> Resumer {
        Resumer {
            path: path.to_owned(),
            storage: d.storages[&T].clone(),
            info_hash: t.meta.info_hash.0,
            known: true,
            unsaved,
            saving: false,
            next_save: std::time::Instant::now() + SAVE_INTERVAL,
            last_error: None,
        }
    }

    fn driver(
        mode: Mode,
        dir: &std::path::Path,
        react: fn(&Input, &mut VecDeque<Output>),
    ) -> (Driver<FakeCore>, TestTorrent) {
        let t = torrent("d", &[("a", 40_000, false), ("b", 10_000, false)], 16384);
        let storage = Arc::new(Storage::new(dir, t.meta.clone()).unwrap());
        storage.prepare().unwrap();
        let core = FakeCore {
            outputs: VecDeque::new(),
            inputs: Vec::new(),
            shutdowns: 0,
            deadline: Instant::FAR_FUTURE,
            react,
            have: Bitfield::new(t.meta.num_pieces() as usize),
        };
        let plan = Plan {
            torrent: "d.torrent".into(),
            dir: dir.to_path_buf(),
            peers: vec![],
            listen: "127.0.0.1:0".parse().unwrap(),
            mode,
            quiet: true,
            only: vec![],
            recheck: false,
            limits: LimitArgs::default(),
        };
        let pool = DiskPool::new(2, Arc::new(|| {})).unwrap();
        let d = Driver::from_parts(
            core,
            pool,
            Ui::new(true, "d", t.meta.total_length()),
            t.meta.clone(),
            T,
            storage,
            &plan,
        );
        (d, t)
    }

    fn push(d: &mut Driver<FakeCore>, outputs: impl IntoIterator<Item = Output>) {
        d.session.outputs.extend(outputs);
    }

    /// Collects pool completions into the core until `done` holds (bounded).
    fn settle(
        d: &mut Driver<FakeCore>,
        net: &mut FakeNet,
        done: impl Fn(&Driver<FakeCore>, &FakeNet) -> bool,
    ) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !done(d, net) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out: {:?} {:?}",
                d.session.inputs,
                net.calls
            );
            d.disk_completions(net);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn disk_results(d: &Driver<FakeCore>) -> Vec<(OpId, DiskResult)> {
        d.session
            .inputs
            .iter()
            .filter_map(|i| match i {
                Input::Disk { op, result, .. } => Some((*op, result.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn network_actions_go_to_the_net_and_the_deadline_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = driver(Mode::Seed, dir.path(), no_reaction);
        let peer: SocketAddr = "127.0.0.1:6881".parse().unwrap();
        push(
            &mut d,
            [
                Output::Action(Action::Connect {
                    conn: ConnId(1),
                    target: Target::Addr(peer),
                }),
                Output::Action(Action::Send {
                    conn: ConnId(1),
                    data: Bytes::from_static(b"hello"),
                }),
                Output::Action(Action::SendDatagram {
                    to: peer,
                    data: Bytes::from_static(b"xy"),
                }),
                Output::Action(Action::Close { conn: ConnId(1) }),
                Output::Timeout(at(3)),
            ],
        );
        let mut net = FakeNet::default();
        assert_eq!(d.drain(&mut net), at(3));
        assert_eq!(
            net.calls,
            vec![
                "connect ConnId#1 127.0.0.1:6881",
                "send ConnId#1 5",
                "datagram 127.0.0.1:6881 2",
                "close ConnId#1",
            ]
        );
        // A deadline in the past: the timer fires and feeds Timeout.
        assert!(
            d.timeout()
                .is_some_and(|t| t <= Duration::from_secs(3) && t > Duration::from_secs(2))
        );
        d.session.outputs.push_back(Output::Timeout(Instant::ZERO));
        d.drain(&mut net);
        d.handle_timeout(&mut net);
        assert!(matches!(
            d.session.inputs.last(),
            Some(Input::Timeout { .. })
        ));
        assert_eq!(d.timeout(), None); // FakeCore's default deadline: none
        let mut adopted = None;
        let accepted = d.accept("127.0.0.1:9".parse().unwrap(), &mut net, |_, conn| {
            adopted = Some(conn);
        });
        assert_eq!(accepted, Some(ConnId(77)));
        assert_eq!(adopted, Some(ConnId(77)));
    }

    #[test]
    fn disk_actions_run_on_the_pool_and_come_back_as_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, t) = driver(Mode::Seed, dir.path(), no_reaction);
        let l = t.meta.layout();
        push(
            &mut d,
            [
                Output::Action(Action::Write {
                    op: OpId(1),
                    torrent: T,
                    piece: 2,
                    offset: 0,
                    data: vec![Bytes::copy_from_slice(t.piece(2))],
                    spans: l.spans(2, 0, l.piece_len(2)),
                    expected: t.meta.piece_hash(2),
                }),
                Output::Action(Action::Write {
                    op: OpId(2),
                    torrent: TorrentId(99),
                    piece: 0,
                    offset: 0,
                    data: vec![],
                    spans: vec![],
                    expected: None,
                }),
            ],
        );
        let mut net = FakeNet::default();
        d.drain(&mut net);
        settle(&mut d, &mut net, |d, _| disk_results(d).len() == 2);
        let results = disk_results(&d);
        // The unknown torrent is answered at once, before the write completes.
        assert_eq!(results[0].0, OpId(2));
        assert!(matches!(&results[0].1, DiskResult::Error(e) if e.message.contains("no storage")));
        assert_eq!(results[1], (OpId(1), DiskResult::Ok));

        push(
            &mut d,
            [
                Output::Action(Action::Verify {
                    op: OpId(3),
                    torrent: T,
                    piece: 2,
                    spans: l.spans(2, 0, l.piece_len(2)),
                    expected: t.meta.piece_hash(2).unwrap(),
                }),
                Output::Action(Action::Read {
                    op: OpId(4),
                    torrent: T,
                    piece: 2,
                    offset: 100,
                    len: 50,
                    spans: l.spans(2, 100, 50),
                }),
            ],
        );
        d.drain(&mut net);
        settle(&mut d, &mut net, |d, _| disk_results(d).len() == 4);
        let results = disk_results(&d);
        assert!(results.contains(&(OpId(3), DiskResult::Ok)));
        assert!(results.contains(&(
            OpId(4),
            DiskResult::Data(Bytes::copy_from_slice(&t.piece(2)[100..150]))
        )));
        assert!(net.calls.is_empty());
    }

    #[test]
    fn host_names_are_resolved_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = driver(Mode::Seed, dir.path(), no_reaction);
        let host = |conn, host: &str| {
            Output::Action(Action::Connect {
                conn: ConnId(conn),
                target: Target::Host {
                    host: host.into(),
                    port: 8080,
                },
            })
        };
        push(
            &mut d,
            [host(1, "localhost"), host(2, "localhost"), host(3, "")],
        );
        // The core gives up on connection 2 before its name is resolved.
        push(&mut d, [Output::Action(Action::Close { conn: ConnId(2) })]);
        let mut net = FakeNet::default();
        d.drain(&mut net);
        settle(&mut d, &mut net, |d, net| {
            !net.calls.is_empty()
                && d.session
                    .inputs
                    .iter()
                    .any(|i| matches!(i, Input::Closed { .. }))
        });
        // Let connection 2's resolution finish too.
        std::thread::sleep(Duration::from_millis(50));
        d.disk_completions(&mut net);
        assert_eq!(net.calls.len(), 1, "{:?}", net.calls);
        assert!(
            net.calls[0].starts_with("connect ConnId#1 "),
            "{:?}",
            net.calls
        );
        assert!(net.calls[0].ends_with(":8080"));
        let closed: Vec<_> = d
            .session
            .inputs
            .iter()
            .filter_map(|i| match i {
                Input::Closed { conn, error, .. } => Some((*conn, error.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].0, ConnId(3));
        assert!(
            closed[0]
                .1
                .as_deref()
                .is_some_and(|e| e.contains("resolve"))
        );
        assert!(d.resolving.is_empty());
    }

    #[test]
    fn a_download_stops_cleanly_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = driver(
            Mode::Download {
                keep_seeding: false,
            },
            dir.path(),
            no_reaction,
        );
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        push(
            &mut d,
            [
                Output::Event(Event::PeerConnected {
                    torrent: T,
                    addr: peer,
                    id: tessera_core::PeerId([0; 20]),
                }),
                Output::Event(Event::Complete { torrent: T }),
            ],
        );
        let mut net = FakeNet::default();
        d.drain(&mut net);
        assert_eq!(d.session.shutdowns, 1);
        assert_eq!(d.finished(), None);
        // The backstop now bounds the wait.
        assert!(d.timeout().is_some_and(|t| t <= d.grace));
        push(&mut d, [Output::Event(Event::Stopped)]);
        d.drain(&mut net);
        assert_eq!(d.finished(), Some(Exit::Success));
        assert_eq!(d.peers_seen.len(), 1);
        assert_eq!(d.finish(), Exit::Success);
    }

    #[test]
    fn disk_errors_end_the_run_with_their_message() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = driver(Mode::Seed, dir.path(), |input, out| {
            // The core finishes its stop as soon as a timer fires.
            if matches!(input, Input::Timeout { .. }) {
                out.push_back(Output::Event(Event::Stopped));
            }
        });
        push(
            &mut d,
            [Output::Event(Event::DiskError {
                torrent: T,
                kind: DiskErrorKind::NoSpace,
                message: "writing /x: No space left on device".into(),
            })],
        );
        // The core wants a timer right away.
        d.session.deadline = Instant::ZERO;
        let mut net = FakeNet::default();
        d.drain(&mut net);
        assert_eq!(d.session.shutdowns, 1);
        assert_eq!(d.finished(), None);
        d.handle_timeout(&mut net);
        assert_eq!(
            d.finished(),
            Some(Exit::Failed(
                "disk error: writing /x: No space left on device".into()
            ))
        );
    }

    #[test]
    fn ctrl_c_twice_quits_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = driver(
            Mode::Download {
                keep_seeding: false,
            },
            dir.path(),
            no_reaction,
        );
        let mut net = FakeNet::default();
        d.request_shutdown(&mut net);
        assert_eq!(d.session.shutdowns, 1);
        assert_eq!(d.finished(), None);
        d.request_shutdown(&mut net);
        assert_eq!(d.session.shutdowns, 1);
        assert_eq!(d.finished(), Some(Exit::Interrupted));
    }

    #[test]
    fn ctrl_c_waits_for_queued_writes_then_saves_resume_data() {
        let dir = tempfile::tempdir().unwrap();
        // Like the core: a write that succeeded is a verified piece.
        let (mut d, t) = driver(
            Mode::Download {
                keep_seeding: false,
            },
            dir.path(),
            |input, out| {
                if let Input::Disk {
                    op,
                    result: DiskResult::Ok,
                    ..
                } = input
                {
                    out.push_back(Output::Event(Event::PieceVerified {
                        torrent: T,
                        piece: op.0 as u32,
                    }));
                }
            },
        );
        let path = dir.path().join(".tessera/x.resume");
        d.resumer = Some(resumer(&d, &t, &path, false));
        let l = t.meta.layout();
        // Two verified pieces handed to the pool, not yet written when Ctrl-C comes.
        for p in [1u32, 3] {
            push(
                &mut d,
                [Output::Action(Action::Write {
                    op: OpId(u64::from(p)),
                    torrent: T,
                    piece: p,
                    offset: 0,
                    data: vec![Bytes::copy_from_slice(t.piece(p))],
                    spans: l.spans(p, 0, l.piece_len(p)),
                    expected: t.meta.piece_hash(p),
                })],
            );
        }
        let mut net = FakeNet::default();
        d.drain(&mut net);
        d.request_shutdown(&mut net);
        push(&mut d, [Output::Event(Event::Stopped)]);
        d.drain(&mut net);
        assert_eq!(d.finished(), Some(Exit::Success));
        assert_eq!(d.finish(), Exit::Success);
        let saved = resume::ResumeData::load(&path).unwrap();
        let listed: Vec<usize> = saved.have.ones().collect();
        assert_eq!(listed, vec![1, 3]);
        assert_eq!(saved.info_hash, t.meta.info_hash.0);
    }

    #[test]
    fn a_second_ctrl_c_saves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, t) = driver(
            Mode::Download {
                keep_seeding: false,
            },
            dir.path(),
            no_reaction,
        );
        let path = dir.path().join(".tessera/x.resume");
        d.resumer = Some(resumer(&d, &t, &path, true));
        let mut net = FakeNet::default();
        d.request_shutdown(&mut net);
        d.request_shutdown(&mut net);
        assert_eq!(d.finish(), Exit::Interrupted);
        assert!(!path.exists());
    }

    #[test]
    fn tracker_problems_are_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = driver(Mode::Seed, dir.path(), no_reaction);
        let tracker = |event| {
            Output::Event(Event::Tracker {
                torrent: T,
                url: "http://t/announce".into(),
                event,
            })
        };
        let down = || tracker(TrackerEvent::Error("connection refused".into()));
        push(&mut d, [down(), down()]);
        let mut net = FakeNet::default();
        d.drain(&mut net);
        assert_eq!(d.tracker_problems.len(), 1);
        push(
            &mut d,
            [tracker(TrackerEvent::Announced {
                peers: 3,
                interval: Duration::from_secs(1800),
            })],
        );
        d.drain(&mut net);
        assert!(d.tracker_problems.is_empty());
    }
}
