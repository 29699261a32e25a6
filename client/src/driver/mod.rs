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
//! (disk, name resolution) and handles every event. Around it, one concept a file: the
//! run's [`Plan`] (`plan`), when and how the run ends (`lifecycle`), resume data upkeep
//! (`resume_upkeep`) and what the user sees (`progress`).

mod lifecycle;
mod magnet_run;
mod plan;
mod progress;
mod resume_upkeep;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tessera_core::{
    Action, Bitfield, Config, ConnId, DiskError, DiskErrorKind, DiskResult, Event, Input, Instant,
    OpId, Output, Session, Target, TorrentId, TorrentOptions, TorrentStats,
};

use self::lifecycle::{Lifecycle, Step};
pub use self::plan::{Mode, Plan};
use self::progress::Progress;
use self::resume_upkeep::ResumeUpkeep;
use crate::error::Error;
use crate::exit::Exit;
use crate::net::NetEvent;
use crate::pool::{Completion, DiskPool, Job, Wake};
use crate::select;
use crate::storage::{self, Storage};
use crate::torrent;

/// The network half of the actions, implemented by each runtime. None of these report
/// back directly: the runtime feeds what follows (`Connected`, `Sent`, `Received`,
/// `Closed`) to the driver as inputs later, from its own loop.
pub trait Net {
    /// Start connecting; answer with `Input::Connected` or `Input::Closed`.
    fn connect(&mut self, conn: ConnId, addr: SocketAddr);
    /// Queue bytes after everything queued before; report each write as `Input::Sent`.
    fn send(&mut self, conn: ConnId, data: Bytes);
    /// Drop the connection and whatever is queued to send. Events about it that are
    /// already on their way may still be fed: the core ignores them.
    fn close(&mut self, conn: ConnId);
    /// Send a UDP datagram (best effort).
    fn send_datagram(&mut self, to: SocketAddr, data: Bytes);
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
    /// A magnet link's torrent has its metadata and storage: download it (see
    /// [`Session::resume_with_metadata`]).
    fn resume_with_metadata(
        &mut self,
        _now: Instant,
        _torrent: TorrentId,
        _options: TorrentOptions,
    ) -> Result<(), String> {
        Err("this core does not fetch metadata".into())
    }
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
    fn resume_with_metadata(
        &mut self,
        now: Instant,
        torrent: TorrentId,
        options: TorrentOptions,
    ) -> Result<(), String> {
        Session::resume_with_metadata(self, now, torrent, options).map_err(|e| e.to_string())
    }
}

/// The core's configuration for a run of `plan` listening on `listen_port`.
fn session_config(plan: &Plan, listen_port: u16) -> Config {
    let mut config = Config {
        listen_port,
        pex: plan.pex,
        ..Config::default()
    };
    plan.limits.apply(&mut config);
    config
}

/// Slack given to the core's own bound on a clean stop (`tracker_timeout`) before the
/// driver stops waiting for `Event::Stopped`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long the end of a run waits for queued disk jobs (writes of verified pieces) before
/// it saves resume data.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// The session plus everything around it that is not sockets. See the module docs.
pub struct Driver<S: Core = Session> {
    session: S,
    pool: DiskPool,
    storages: HashMap<TorrentId, Arc<Storage>>,
    /// The core's `Instant::ZERO`.
    epoch: std::time::Instant,
    torrent: TorrentId,
    /// From the last `Output::Timeout`.
    deadline: Instant,
    /// `Target::Host` connections waiting for their name; a `Close` removes them.
    resolving: HashSet<ConnId>,
    completions: Vec<Completion>,
    lifecycle: Lifecycle,
    progress: Progress,
    /// `download` only.
    resumer: Option<ResumeUpkeep>,
    /// `download MAGNET` while the metadata is being fetched.
    magnet: Option<Box<magnet_run::MagnetRun>>,
}

impl<S: Core> std::fmt::Debug for Driver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
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
        if let Some(link) = crate::magnet::parse_arg(&plan.torrent)? {
            return Driver::for_magnet(plan, link, listen_port, wake);
        }
        let meta = torrent::load(&plan.torrent)?;
        Driver::with_metainfo(plan, meta, listen_port, wake)
    }

    /// [`Driver::new`] for a torrent whose metainfo is at hand.
    fn with_metainfo(
        plan: &Plan,
        meta: Arc<tessera_core::Metainfo>,
        listen_port: u16,
        wake: Wake,
    ) -> Result<Driver, Error> {
        let chosen = select::choose(&meta, &plan.only)?;
        let hash = meta.info_hash.to_string();
        let storage = Arc::new(Storage::with_selection(
            &plan.dir,
            meta.clone(),
            chosen.as_deref(),
            Some(storage::part_path(&plan.dir, &hash)),
        )?);
        let progress = Progress::new(
            plan.quiet,
            plan.mode,
            &meta.info.name,
            meta.total_length(),
            plan.dir.clone(),
        );
        let (have, resumer) = match plan.mode {
            Mode::Download { .. } => {
                let (have, resumer, line) = ResumeUpkeep::start(
                    &meta,
                    &storage,
                    &plan.dir,
                    plan.recheck,
                    progress.name(),
                    Instant::ZERO,
                );
                if let Some(line) = line {
                    progress.message(&line);
                }
                (have, Some(resumer))
            }
            // Hash what is on disk first.
            Mode::Seed => (None, None),
        };
        storage.prepare()?;
        let pool = DiskPool::with_default_threads(wake)
            .map_err(|e| Error::io("starting disk threads", e))?;

        let config = session_config(plan, listen_port);
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
            .add_torrent(Instant::ZERO, meta, options)
            .map_err(|e| Error::other(e.to_string()))?;
        if !plan.peers.is_empty() {
            // Peers the user named are redialled with back-off until they answer (a seeder
            // started a moment later, a peer that restarts).
            session.add_peers(Instant::ZERO, torrent, &plan.peers, true);
        }
        let mut driver = Driver::from_parts(session, pool, progress, torrent, storage, plan, grace);
        driver.epoch = epoch;
        driver.resumer = resumer;
        Ok(driver)
    }
}

impl<S: Core> Driver<S> {
    /// A driver around an existing session that has `torrent` added, whose clean stop is
    /// given `grace` (for tests).
    fn from_parts(
        session: S,
        pool: DiskPool,
        progress: Progress,
        torrent: TorrentId,
        storage: Arc<Storage>,
        plan: &Plan,
        grace: Duration,
    ) -> Driver<S> {
        Driver {
            session,
            pool,
            storages: HashMap::from([(torrent, storage)]),
            epoch: std::time::Instant::now(),
            torrent,
            deadline: Instant::ZERO,
            resolving: HashSet::new(),
            completions: Vec::new(),
            lifecycle: Lifecycle::new(plan.mode, grace),
            progress,
            resumer: None,
            magnet: None,
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
    /// Events about a connection the core has closed may still be fed (they were on their
    /// way when [`Net::close`] was called): the core ignores them.
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
        if self.magnet.is_none() {
            let (session, torrent) = (&self.session, self.torrent);
            self.progress.refresh(|| session.stats(torrent));
        }
        self.deadline
    }

    /// How long the runtime may sleep: until the session's deadline, the shutdown backstop
    /// or a resume save that is owed, whichever is first. `None`: no deadline. (The
    /// session wakes the loop only when it has something due, so a save must say when.)
    pub fn timeout(&self) -> Option<Duration> {
        let save = self
            .resumer
            .as_ref()
            .filter(|_| self.lifecycle.finished().is_none())
            .and_then(ResumeUpkeep::next_due)
            .unwrap_or(Instant::FAR_FUTURE);
        let next = self.deadline.min(self.lifecycle.backstop()).min(save);
        (next != Instant::FAR_FUTURE).then(|| next.saturating_duration_since(self.now()))
    }

    /// Feeds `Input::Timeout` when the deadline has passed (and drains), gives up on a
    /// clean stop that takes too long, and starts saving resume data when that is due.
    pub fn handle_timeout(&mut self, net: &mut impl Net) {
        let now = self.now();
        if now >= self.deadline {
            self.session.handle_input(Input::Timeout { now });
            self.drain(net);
        }
        let now = self.now();
        if self.lifecycle.on_time(now) {
            self.progress
                .warn("the trackers did not answer in time; stopping without them");
        }
        if let Some(r) = self.resumer.as_mut()
            && self.lifecycle.finished().is_none()
        {
            let (session, torrent) = (&self.session, self.torrent);
            if let Some(job) = r.due(now, || session.have(torrent)) {
                self.pool.submit(job);
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

    /// A save of resume data finished: a failure is reported (once per distinct message).
    fn saved(&mut self, result: Result<(), String>) {
        if let Some(warning) = self.resumer.as_mut().and_then(|r| r.saved(result)) {
            self.progress.warn(&warning);
        }
    }

    /// Ctrl-C (or SIGTERM): the first asks the session for a clean stop (`stopped`
    /// announces, connections closed), a second one ends the run at once.
    pub fn request_shutdown(&mut self, net: &mut impl Net) {
        let now = self.now();
        match self.lifecycle.on_interrupt(now) {
            Step::Shutdown => {
                self.progress
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
        self.lifecycle.finished().cloned()
    }

    /// Waits for the disk jobs still queued (writes of verified pieces complete), saves
    /// resume data (`download`), prints the summary and returns how the run ended
    /// (`Interrupted` if called early). After a second Ctrl-C nothing is waited for.
    pub fn finish(mut self) -> Exit {
        if !self.lifecycle.quit_now() {
            self.flush_and_save();
        }
        self.progress.finish(
            self.session.stats(self.torrent),
            self.lifecycle.stopped_incomplete(),
            self.epoch.elapsed(),
        );
        self.lifecycle
            .finished()
            .cloned()
            .unwrap_or(Exit::Interrupted)
    }

    /// Lets the pool finish what it was given, feeds the results to the session (so that
    /// pieces whose writes were queued count as verified), then saves resume data.
    fn flush_and_save(&mut self) {
        let mut done = Vec::new();
        if !self.pool.wait_idle(&mut done, FLUSH_TIMEOUT) {
            self.progress.warn(&format!(
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
                    self.take_final_events();
                }
                Completion::Saved { result } => self.saved(result),
                Completion::Hashed { .. } | Completion::Resolved { .. } => {}
            }
        }
        let (session, torrent) = (&self.session, self.torrent);
        if let Some(warning) = self
            .resumer
            .as_mut()
            .and_then(|r| r.save_final(|| session.have(torrent)))
        {
            self.progress.warn(&warning);
        }
    }

    /// Polls the session after a disk result at the end of a run, when only its events
    /// matter (pieces verified, disk errors).
    fn take_final_events(&mut self) {
        loop {
            match self.session.poll_output() {
                Output::Timeout(_) => break,
                Output::Event(Event::PieceVerified { .. }) => {
                    if let Some(r) = self.resumer.as_mut() {
                        r.piece_verified();
                    }
                }
                Output::Event(Event::Complete { .. }) => self.lifecycle.set_complete(),
                // Reported unless the run already ends with a disk error.
                Output::Event(Event::DiskError { message, .. }) if !self.lifecycle.failed() => {
                    self.progress.warn(&format!("disk error: {message}"));
                }
                // Nothing new is started now: actions (a check of a spilled piece, say)
                // are dropped, and their pieces count as in flight.
                Output::Event(_) | Output::Action(_) => {}
            }
        }
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
            } => {
                if let Some(storage) = self.storage_for(op, torrent) {
                    self.pool.submit(Job::Write {
                        op,
                        storage,
                        piece,
                        offset,
                        data,
                        spans,
                        expected,
                    });
                }
            }
            Action::Verify {
                op,
                torrent,
                spans,
                expected,
                ..
            } => {
                if let Some(storage) = self.storage_for(op, torrent) {
                    self.pool.submit(Job::Verify {
                        op,
                        storage,
                        spans,
                        expected,
                    });
                }
            }
            Action::Read {
                op,
                torrent,
                len,
                spans,
                ..
            } => {
                if let Some(storage) = self.storage_for(op, torrent) {
                    self.pool.submit(Job::Read {
                        op,
                        storage,
                        len,
                        spans,
                    });
                }
            }
        }
    }

    /// The storage for disk action `op` of `torrent`. `None` when the driver has none (a
    /// core bug): then `op` is answered with an error at once, so that the core is not
    /// left waiting.
    fn storage_for(&mut self, op: OpId, torrent: TorrentId) -> Option<Arc<Storage>> {
        if let Some(storage) = self.storages.get(&torrent) {
            return Some(storage.clone());
        }
        let now = self.now();
        self.session.handle_input(Input::Disk {
            now,
            op,
            result: DiskResult::Error(DiskError {
                kind: DiskErrorKind::Other,
                message: format!("internal error: no storage for {torrent}"),
            }),
        });
        None
    }

    fn on_event(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::Checked { have, total, .. } => {
                if let Some(r) = self.resumer.as_mut() {
                    r.checked(now);
                }
                self.progress.checked(have, total);
            }
            Event::PieceVerified { piece, .. } => {
                tracing::trace!("piece {piece} verified");
                if let Some(r) = self.resumer.as_mut() {
                    r.piece_verified();
                }
            }
            Event::HashFailed { piece, .. } => {
                tracing::info!("piece {piece} failed its hash check; fetching it again");
            }
            Event::Complete { .. } => {
                if let Some(r) = self.resumer.as_mut() {
                    r.completed(now);
                }
                self.progress.complete();
                if self.lifecycle.on_complete(now) == Step::Shutdown {
                    self.session.shutdown(now);
                }
            }
            Event::Tracker { url, event, .. } => self.progress.tracker(&url, event),
            Event::PeerConnected { addr, id, .. } => self.progress.peer_connected(addr, id),
            Event::PeerClosed { addr, reason, .. } => {
                tracing::debug!("peer {addr} closed: {reason}");
            }
            Event::DiskError { message, .. } => {
                let message = format!("disk error: {message}");
                if self.lifecycle.on_fatal(message.clone(), now) == Step::Shutdown {
                    self.session.shutdown(now);
                } else {
                    self.progress.warn(&message);
                }
            }
            Event::Stopped => self.lifecycle.on_stopped(),
            Event::MetadataReceived {
                torrent,
                meta,
                torrent_file,
            } => self.metadata_received(torrent, meta, &torrent_file),
            Event::MetadataFailed { reason, .. } => {
                let message = format!("the torrent's metadata is not usable: {reason}");
                if self.lifecycle.on_fatal(message, now) == Step::Shutdown {
                    self.session.shutdown(now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
