//! The runtime-independent half of the event loop.
//!
//! A runtime owns sockets and a way to sleep until something happens; the [`Driver`] owns
//! the [`Session`], the disk pool, the storages and the progress output. The runtime:
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
//! Several drivers can share one loop ([`crate::fleet`]: the demo's seeder and
//! downloaders), each with its own sockets.
//!
//! One session runs every torrent of the plan: one listening port, the connection limits
//! shared. Each [`Source`] of the plan becomes a torrent in one place,
//! [`Driver::add_torrent`], which gives it its storage, resume data upkeep and progress
//! line: at the start for a `.torrent` file, and whenever its metainfo arrives for a
//! source that has to fetch it first (a magnet link).
//!
//! `drain` carries out every action through the runtime's [`Net`] (network) or the pool
//! (disk, name resolution) and handles every event. Around it, one concept a file: the
//! run's [`Plan`] (`plan`), sources given as magnet links (`magnet_run`), when and how the
//! run ends (`lifecycle`), resume data upkeep (`resume_upkeep`), why a download reaches
//! nobody (`stall`) and what the user sees (`progress`).

mod lifecycle;
mod magnet_run;
mod plan;
mod progress;
mod resume_upkeep;
mod stall;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tessera_core::{
    Action, Bitfield, Config, ConnId, DiskError, DiskErrorKind, DiskResult, Event, Input, Instant,
    Metainfo, OpId, Output, Session, Target, TorrentId, TorrentOptions, TorrentStats, TrackerEvent,
};

use self::lifecycle::{Lifecycle, Step};
pub use self::plan::{Mode, Plan, Run, Source};
use self::progress::Progress;
use self::resume_upkeep::ResumeUpkeep;
use self::stall::{StallWatch, Verdict};
use crate::cli::SeedGoalArgs;
use crate::error::Error;
use crate::exit::Exit;
use crate::net::NetEvent;
use crate::pool::{Completion, DiskPool, Job, Wake};
use crate::select;
use crate::storage::{self, Storage};
use crate::ui::{Board, human_duration};

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
    /// Adds a torrent (see `Session::add_torrent`).
    fn add_torrent(
        &mut self,
        now: Instant,
        meta: Arc<Metainfo>,
        options: TorrentOptions,
    ) -> Result<TorrentId, Error>;
    /// Peers to dial for a torrent, redialled with back-off.
    fn add_peers(&mut self, now: Instant, torrent: TorrentId, peers: &[SocketAddr]);
    /// The DHT's routing table to keep for the next run, if a DHT runs.
    fn dht_state(&self) -> Option<Vec<u8>> {
        None
    }
    /// One line on the UDP socket's traffic (datagrams by kind, the DHT's counters), for
    /// the log at the end of a run.
    fn udp_summary(&self) -> Option<String> {
        None
    }
    /// A magnet link's torrent has its metadata and storage: download it (see
    /// [`Session::resume_with_metadata`]).
    fn resume_with_metadata(
        &mut self,
        _now: Instant,
        _torrent: TorrentId,
        _options: TorrentOptions,
    ) -> Result<(), Error> {
        Err(Error::other("this core does not fetch metadata"))
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
    fn add_torrent(
        &mut self,
        now: Instant,
        meta: Arc<Metainfo>,
        options: TorrentOptions,
    ) -> Result<TorrentId, Error> {
        Session::add_torrent(self, now, meta, options).map_err(|e| Error::other(e.to_string()))
    }
    fn add_peers(&mut self, now: Instant, torrent: TorrentId, peers: &[SocketAddr]) {
        // Peers the user named are redialled with back-off until they answer (a seeder
        // started a moment later, a peer that restarts).
        Session::add_peers(self, now, torrent, peers, true);
    }
    fn dht_state(&self) -> Option<Vec<u8>> {
        Session::dht_state(self)
    }
    fn udp_summary(&self) -> Option<String> {
        let d = self.datagram_stats();
        let mut line = format!(
            "datagrams received: {} tracker, {} DHT, {} uTP, {} dropped",
            d.tracker, d.dht, d.utp, d.dropped
        );
        if let Some(s) = self.dht_stats() {
            line.push_str(&format!(
                "; DHT: {} nodes, {} queries sent, {} answered, {} timed out, {} queries received",
                s.nodes[0] + s.nodes[1],
                s.queries_sent,
                s.responses_received,
                s.timeouts,
                s.queries_received
            ));
        }
        Some(line)
    }
    fn resume_with_metadata(
        &mut self,
        now: Instant,
        torrent: TorrentId,
        options: TorrentOptions,
    ) -> Result<(), Error> {
        Session::resume_with_metadata(self, now, torrent, options)
            .map_err(|e| Error::other(e.to_string()))
    }
}

/// The core's configuration for a run of `plan` listening on `listen_port`.
fn session_config(plan: &Plan, listen_port: u16) -> Config {
    let mut config = Config {
        listen_port,
        pex: plan.pex,
        encryption: plan.encryption.policy(),
        transport: plan.transport.policy(),
        fast_extension: true,
        ..Config::default()
    };
    plan.limits.apply(&mut config);
    config
}

/// Slack given to the core's own bound on a clean stop (`tracker_timeout`) before the
/// driver stops waiting for `Event::Stopped`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often the DHT's routing table is saved during a run (a run that is killed keeps
/// the last one).
const DHT_SAVE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// How long the end of a run waits for queued disk jobs (writes of verified pieces) before
/// it saves resume data.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// A source of the plan that has become a torrent of the session.
#[derive(Debug)]
struct Entry {
    /// Its index in the plan's sources (and in the lifecycle, progress and stall watch).
    source: usize,
    id: TorrentId,
    storage: Arc<Storage>,
    /// `download` only.
    resumer: Option<ResumeUpkeep>,
}

/// The session plus everything around it that is not sockets. See the module docs.
pub struct Driver<S: Core = Session> {
    session: S,
    pool: DiskPool,
    mode: Mode,
    /// How many sources the plan has.
    sources: usize,
    /// `label: ` for a node of a run of several, else nothing.
    prefix: String,
    /// The plan's peers, dialled for every torrent.
    peers: Vec<SocketAddr>,
    /// The plan's seeding goals and piece order, for every torrent.
    goals: SeedGoalArgs,
    sequential: bool,
    first_last: bool,
    /// The sources that have become torrents, in the order they did.
    entries: Vec<Entry>,
    by_id: HashMap<TorrentId, usize>,
    /// The core's `Instant::ZERO`.
    epoch: std::time::Instant,
    /// From the last `Output::Timeout`.
    deadline: Instant,
    /// `Target::Host` connections waiting for their name; a `Close` removes them.
    resolving: HashSet<ConnId>,
    completions: Vec<Completion>,
    lifecycle: Lifecycle,
    progress: Progress,
    stall: StallWatch,
    /// Magnet links whose metadata is being fetched, by their torrent in the session.
    fetching: HashMap<TorrentId, magnet_run::Fetch>,
    /// `--save-torrent`: where else to write a magnet link's metadata.
    save_torrent: Option<PathBuf>,
    /// Where the DHT's routing table is saved, every [`DHT_SAVE_INTERVAL`] and at the end
    /// (`None`: no DHT).
    dht_state: Option<std::path::PathBuf>,
    /// When the routing table is saved next.
    next_dht_save: Instant,
}

impl<S: Core> std::fmt::Debug for Driver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("entries", &self.entries)
            .field("deadline", &self.deadline)
            .field("lifecycle", &self.lifecycle)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// Reads every source's torrent (a magnet link's from `DIR/.tessera/` when an earlier
    /// run kept it), starts the disk pool (which calls `wake` after each completion) and
    /// the session, adds the torrents and the `--peer`s, and starts fetching the metadata
    /// of the other magnet links. `listen_port` is the port of the runtime's bound
    /// listener; progress goes to `board`. Call [`Driver::drain`] next.
    pub fn new(plan: &Plan, listen_port: u16, wake: Wake, board: &Board) -> Result<Driver, Error> {
        // Every torrent file is read (and checked against the others) before anything is
        // created on disk, so a mistake in the last argument costs nothing.
        let starts = plan
            .sources
            .iter()
            .map(|source| magnet_run::Start::of(source, plan.mode))
            .collect::<Result<Vec<_>, _>>()?;
        check_distinct(&plan.sources, &starts)?;
        let pool = DiskPool::with_default_threads(wake)
            .map_err(|e| Error::io("starting disk threads", e))?;
        let config = session_config(plan, listen_port);
        let grace = config.tracker_timeout + SHUTDOWN_GRACE;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::other(format!("no randomness from the operating system: {e}")))?;
        let mut session = Session::new(config, Instant::ZERO, seed);
        // One DHT for the session, before any torrent is added so that their handshakes
        // carry the DHT bit; the core starts it with the first public torrent. Its table
        // is kept in the first source's directory.
        let listen = SocketAddr::new(
            plan.listen
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |l| l.ip()),
            listen_port,
        );
        let dht_state = plan.sources.first().and_then(|first| {
            let settings = crate::dht::settings(&plan.dht, listen, &first.dir)?;
            session.enable_dht(Instant::ZERO, settings);
            Some(crate::dht::state_path(&first.dir))
        });
        let mut driver = Driver::with_session(session, pool, plan, board.clone(), grace);
        driver.dht_state = dht_state;
        for (i, start) in starts.into_iter().enumerate() {
            driver.start(i, start)?;
        }
        Ok(driver)
    }
}

/// Refuses sources that are the same torrent, or whose data would land in the same place
/// (as far as it is known before a magnet link's metadata arrives).
fn check_distinct(sources: &[Source], starts: &[magnet_run::Start]) -> Result<(), Error> {
    let mut hashes: HashMap<_, usize> = HashMap::new();
    let mut places: HashMap<PathBuf, usize> = HashMap::new();
    for (i, (source, start)) in sources.iter().zip(starts).enumerate() {
        let hash = start.info_hash();
        if let Some(&j) = hashes.get(&hash) {
            return Err(Error::other(format!(
                "{} and {} are the same torrent (info hash {hash}): give it once",
                sources[j].torrent, source.torrent
            )));
        }
        hashes.insert(hash, i);
        let Some(meta) = start.meta() else {
            continue;
        };
        let place = source.dir.join(&meta.info.name);
        if let Some(&j) = places.get(&place) {
            return Err(Error::other(format!(
                "{} and {} would both put their data at {}: download them into \
                 different directories",
                sources[j].torrent,
                source.torrent,
                place.display()
            )));
        }
        places.insert(place, i);
    }
    Ok(())
}

impl<S: Core> Driver<S> {
    /// A driver around `session`, with no torrent yet, for `plan`; a clean stop is given
    /// `grace`.
    fn with_session(
        session: S,
        pool: DiskPool,
        plan: &Plan,
        board: Board,
        grace: Duration,
    ) -> Driver<S> {
        let n = plan.sources.len();
        let give_up = match plan.mode {
            Mode::Download { .. } => plan.stall_timeout,
            Mode::Seed => None,
        };
        Driver {
            session,
            pool,
            mode: plan.mode,
            sources: n,
            prefix: plan.prefix(),
            peers: plan.peers.clone(),
            goals: plan.goals.clone(),
            sequential: plan.sequential,
            first_last: plan.first_last,
            entries: Vec::new(),
            by_id: HashMap::new(),
            epoch: std::time::Instant::now(),
            deadline: Instant::ZERO,
            resolving: HashSet::new(),
            completions: Vec::new(),
            lifecycle: Lifecycle::new(plan.mode, n, grace),
            progress: Progress::new(board, plan.mode, n, plan.prefix(), plan.goals.describe()),
            stall: StallWatch::new(n, give_up),
            fetching: HashMap::new(),
            save_torrent: plan.save_torrent.clone(),
            dht_state: None,
            next_dht_save: Instant::ZERO + DHT_SAVE_INTERVAL,
        }
    }

    /// Source `i` of the plan has become the torrent `meta`: gives it its storage, resume
    /// data upkeep (`download`) and progress line, and adds it to the session with the
    /// plan's peers. The one place where a torrent joins the run, whenever its metainfo
    /// becomes known.
    pub fn add_torrent(
        &mut self,
        i: usize,
        source: &Source,
        meta: Arc<Metainfo>,
    ) -> Result<TorrentId, Error> {
        self.join(i, source, meta, None)
    }

    /// [`Driver::add_torrent`], or with `fetched`, the torrent of a magnet link that the
    /// session already has: it is resumed with its metadata (and keeps its peers).
    fn join(
        &mut self,
        i: usize,
        source: &Source,
        meta: Arc<Metainfo>,
        fetched: Option<TorrentId>,
    ) -> Result<TorrentId, Error> {
        let now = self.now();
        let dir = &source.dir;
        if dir.exists() && !dir.is_dir() {
            return Err(Error::other(format!(
                "{} is not a directory: {} must name a directory (it is created if missing)",
                dir.display(),
                match self.mode {
                    Mode::Download { .. } => "-o",
                    Mode::Seed => "--data",
                }
            )));
        }
        let chosen = select::choose(&meta, &source.only)?;
        let hash = meta.info_hash.to_string();
        let storage = Arc::new(Storage::with_selection(
            dir,
            meta.clone(),
            chosen.as_deref(),
            Some(storage::part_path(dir, &hash)),
        )?);
        let name = self
            .progress
            .add(i, &meta.info.name, meta.total_length(), dir.clone());
        let (have, resumer) = match self.mode {
            Mode::Download { .. } => {
                let (have, resumer, line) =
                    ResumeUpkeep::start(&meta, &storage, dir, source.recheck, &name, now);
                if let Some(line) = line {
                    self.progress.message(&line);
                }
                (have, Some(resumer.tagged(i as u64)))
            }
            Mode::Seed => {
                // A seeder needs data: no file of the torrent where it looks is a mistake
                // (a wrong --data), not a download to start.
                if storage.nothing_on_disk() {
                    let place = dir.join(&meta.info.name);
                    return Err(Error::other(format!(
                        "no data to seed for {name}: {} does not exist (--data names the \
                         directory that holds it, as `download -o` left it)",
                        place.display()
                    )));
                }
                // Hash what is on disk first.
                (None, None)
            }
        };
        storage.prepare()?;
        let options = TorrentOptions {
            have: have.clone(),
            seed: match self.mode {
                Mode::Download { keep_seeding } => keep_seeding,
                Mode::Seed => true,
            },
            files: chosen,
            seed_ratio: self.goals.seed_ratio,
            seed_time: self.goals.seed_time,
            sequential: self.sequential,
            first_last: self.first_last,
        };
        let id = match fetched {
            Some(id) => {
                self.session.resume_with_metadata(now, id, options)?;
                id
            }
            None => {
                let id = self.session.add_torrent(now, meta, options)?;
                if !self.peers.is_empty() {
                    let peers = self.peers.clone();
                    self.session.add_peers(now, id, &peers);
                }
                id
            }
        };
        if have.is_some() && self.mode != Mode::Seed {
            self.stall.start(i, now);
        }
        self.by_id.insert(id, self.entries.len());
        self.entries.push(Entry {
            source: i,
            id,
            storage,
            resumer,
        });
        Ok(id)
    }

    /// The core's idea of now: time since the driver started.
    pub fn now(&self) -> Instant {
        Instant::from_duration(self.epoch.elapsed())
    }

    pub fn session(&self) -> &S {
        &self.session
    }

    /// True for a driver whose run only serves others (`seed`): a run of several nodes
    /// stops it once the others are done.
    pub fn serves_only(&self) -> bool {
        self.mode == Mode::Seed
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
        self.refresh_progress();
        self.deadline
    }

    fn refresh_progress(&mut self) {
        let (session, entries) = (&self.session, &self.entries);
        let ids: HashMap<usize, TorrentId> = entries.iter().map(|e| (e.source, e.id)).collect();
        self.progress.refresh(std::time::Instant::now(), |i| {
            ids.get(&i).and_then(|id| session.stats(*id))
        });
    }

    /// How long the runtime may sleep: until the session's deadline, the shutdown
    /// backstop, a resume save that is owed, or the next thing the driver itself has to
    /// do (a stall to explain, a progress line), whichever is first. `None`: no deadline.
    /// (The session wakes the loop only when it has something due, so a save must say
    /// when.)
    pub fn timeout(&self) -> Option<Duration> {
        let mut next = self.deadline.min(self.lifecycle.backstop());
        if self.lifecycle.finished().is_none() {
            for save in self
                .entries
                .iter()
                .filter_map(|e| e.resumer.as_ref())
                .filter_map(ResumeUpkeep::next_due)
            {
                next = next.min(save);
            }
        }
        if self.dht_state.is_some() {
            next = next.min(self.next_dht_save);
        }
        if !self.lifecycle.stopping()
            && let Some(stall) = self.stall.next_deadline()
        {
            next = next.min(stall);
        }
        let now = self.now();
        let session = (next != Instant::FAR_FUTURE).then(|| next.saturating_duration_since(now));
        let progress = self
            .progress
            .refresh_due_in(std::time::Instant::now())
            .filter(|_| self.lifecycle.finished().is_none());
        match (session, progress) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Feeds `Input::Timeout` when the deadline has passed (and drains), gives up on a
    /// clean stop that takes too long, explains stalls, and starts saving resume data
    /// when that is due.
    pub fn handle_timeout(&mut self, net: &mut impl Net) {
        let now = self.now();
        if now >= self.deadline {
            self.session.handle_input(Input::Timeout { now });
            self.drain(net);
        }
        let now = self.now();
        if self.dht_state.is_some() && now >= self.next_dht_save {
            self.next_dht_save = now + DHT_SAVE_INTERVAL;
            self.save_dht();
        }
        if self.lifecycle.on_time(now) {
            self.progress
                .warn("the trackers did not answer in time; stopping without them");
        }
        if !self.lifecycle.stopping() {
            for verdict in self.stall.poll(now) {
                self.on_stall(verdict, now);
            }
        }
        if self.lifecycle.finished().is_none() {
            let session = &self.session;
            for e in &mut self.entries {
                if let Some(r) = e.resumer.as_mut()
                    && let Some(job) = r.due(now, || session.have(e.id))
                {
                    self.pool.submit(job);
                }
            }
        }
        self.refresh_progress();
    }

    /// A torrent has had no peer for a while: the reasons, or giving up on it.
    fn on_stall(&mut self, verdict: Verdict, now: Instant) {
        match verdict {
            Verdict::Report {
                torrent,
                after,
                causes,
            } => {
                let head = stall::headline(self.progress.name(torrent), after);
                self.progress.warn(&head);
                for cause in causes {
                    self.progress.message(&format!("  {cause}"));
                }
            }
            Verdict::GiveUp { torrent, after } => {
                let message = format!(
                    "{}no peer within {} (--stall-timeout); the reasons are above",
                    self.name_for_error(torrent),
                    human_duration(after)
                );
                self.fail(torrent, message, now);
            }
        }
    }

    /// `name: ` for an error about torrent `i` when the run has several, else nothing
    /// (the one-line error needs no name then).
    fn name_for_error(&self, i: usize) -> String {
        if self.sources > 1 {
            format!("{}: ", self.progress.name(i))
        } else {
            String::new()
        }
    }

    /// Torrent `i` stops with `message`: the run goes on with the others, or stops if
    /// there are none.
    fn fail(&mut self, i: usize, message: String, now: Instant) {
        self.stall.stop(i);
        self.progress.failed(i, &message);
        match self.lifecycle.on_failed(i, message.clone(), now) {
            Step::Shutdown => {
                // The run ends with this error: the exit line says it.
                if self.sources > 1 {
                    self.progress.warn(&message);
                }
                self.session.shutdown(now);
            }
            _ => self.progress.warn(&format!("{message}; the others go on")),
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
                Completion::Addresses { op, result } => {
                    self.session
                        .handle_input(Input::Resolved { now, op, result });
                }
                Completion::Hashed { .. } => continue,
                Completion::Saved { tag, result } => {
                    self.saved(tag, result);
                    continue;
                }
            }
            self.drain(net);
        }
        self.completions = batch;
    }

    /// A save of resume data tagged `tag` finished: a failure is reported (once per
    /// distinct message).
    fn saved(&mut self, tag: u64, result: Result<(), String>) {
        let warning = self
            .entries
            .iter_mut()
            .filter_map(|e| e.resumer.as_mut())
            .find(|r| r.tag() == tag)
            .and_then(|r| r.saved(result));
        if let Some(warning) = warning {
            self.progress.warn(&warning);
        }
    }

    /// Ctrl-C (or SIGTERM): the first asks the session for a clean stop (`stopped`
    /// announces, connections closed), a second one ends the run at once.
    pub fn request_shutdown(&mut self, net: &mut impl Net) {
        let line = if self.progress.trackers_answered() {
            "stopping: telling the trackers (Ctrl-C again to quit at once)"
        } else {
            "stopping (Ctrl-C again to quit at once)"
        };
        self.interrupt(Some(line), net);
    }

    /// A clean stop of a node that only serves others, once they are done (the demo's
    /// seeder): as Ctrl-C, without a word.
    pub fn stop_serving(&mut self, net: &mut impl Net) {
        self.interrupt(None, net);
    }

    fn interrupt(&mut self, line: Option<&str>, net: &mut impl Net) {
        let now = self.now();
        match self.lifecycle.on_interrupt(now) {
            Step::Shutdown => {
                if let Some(line) = line {
                    self.progress.message(&format!("{}{line}", self.prefix));
                }
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

    /// `Some` once the run is over: every download is complete (or failed) and the
    /// session stopped, or Ctrl-C was pressed (twice, or once and the stop is done).
    pub fn finished(&self) -> Option<Exit> {
        self.lifecycle.finished().cloned()
    }

    /// Waits for the disk jobs still queued (writes of verified pieces complete), saves
    /// resume data (`download`), prints the summary and returns how the run ended
    /// (`Interrupted` if called early). After a second Ctrl-C nothing is waited for.
    pub fn finish(mut self) -> Exit {
        if !self.lifecycle.quit_now() {
            self.flush_and_save();
            self.save_dht();
        }
        let (session, entries) = (&self.session, &self.entries);
        let ids: HashMap<usize, TorrentId> = entries.iter().map(|e| (e.source, e.id)).collect();
        self.progress.finish(
            |i| ids.get(&i).and_then(|id| session.stats(*id)),
            self.lifecycle.interrupted(),
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
                Completion::Saved { tag, result } => self.saved(tag, result),
                Completion::Hashed { .. }
                | Completion::Resolved { .. }
                | Completion::Addresses { .. } => {}
            }
        }
        let session = &self.session;
        let mut warnings = Vec::new();
        for e in &mut self.entries {
            if let Some(warning) = e
                .resumer
                .as_mut()
                .and_then(|r| r.save_final(|| session.have(e.id)))
            {
                warnings.push(warning);
            }
        }
        for warning in warnings {
            self.progress.warn(&warning);
        }
    }

    /// Keeps the DHT's routing table for the next run (a failure costs only a warm start).
    fn save_dht(&mut self) {
        if let Some(line) = self.session.udp_summary() {
            tracing::info!("{line}");
        }
        let Some(path) = &self.dht_state else {
            return;
        };
        if let Some(state) = self.session.dht_state()
            && let Err(e) = crate::dht::save(path, &state)
        {
            tracing::info!("could not save the DHT's nodes to {}: {e}", path.display());
        }
    }

    /// Polls the session after a disk result at the end of a run, when only its events
    /// matter (pieces verified, disk errors).
    fn take_final_events(&mut self) {
        loop {
            match self.session.poll_output() {
                Output::Timeout(_) => break,
                Output::Event(Event::PieceVerified { torrent, .. }) => {
                    if let Some(r) = self.entry_mut(torrent).and_then(|e| e.resumer.as_mut()) {
                        r.piece_verified();
                    }
                }
                Output::Event(Event::Complete { torrent }) => {
                    if let Some(i) = self.source_of(torrent) {
                        self.lifecycle.set_complete(i);
                    }
                }
                // Reported unless the run already ends with an error.
                Output::Event(Event::DiskError { message, .. }) if !self.lifecycle.failed() => {
                    self.progress.warn(&format!("disk error: {message}"));
                }
                // Nothing new is started now: actions (a check of a spilled piece, say)
                // are dropped, and their pieces count as in flight.
                Output::Event(_) | Output::Action(_) => {}
            }
        }
    }

    fn entry_mut(&mut self, torrent: TorrentId) -> Option<&mut Entry> {
        let k = *self.by_id.get(&torrent)?;
        self.entries.get_mut(k)
    }

    /// The plan's index of `torrent`'s source.
    fn source_of(&self, torrent: TorrentId) -> Option<usize> {
        let k = *self.by_id.get(&torrent)?;
        self.entries.get(k).map(|e| e.source)
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
            Action::Resolve { op, host } => self.pool.submit(Job::Addresses { op, host }),
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
        if let Some(e) = self.by_id.get(&torrent).and_then(|&k| self.entries.get(k)) {
            return Some(e.storage.clone());
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
            Event::Checked {
                torrent,
                have,
                total,
            } => {
                if let Some(r) = self.entry_mut(torrent).and_then(|e| e.resumer.as_mut()) {
                    r.checked(now);
                }
                let Some(i) = self.source_of(torrent) else {
                    return;
                };
                let stats = self.session.stats(torrent).unwrap_or_default();
                if self.mode == Mode::Seed && have == 0 && total > 0 {
                    let message = format!(
                        "{}no data to seed: none of the {total} pieces in {} passed the \
                         check (the files there hold other data)",
                        self.name_for_error(i).trim_end_matches(' '),
                        self.entries
                            .iter()
                            .find(|e| e.id == torrent)
                            .and_then(|e| e.storage.path(0))
                            .map_or_else(String::new, |p| p.display().to_string())
                    );
                    self.fail(i, message, now);
                    return;
                }
                self.progress
                    .checked(i, have, total, stats.bytes_have, stats.total_len);
                if self.mode != Mode::Seed && have < total {
                    self.stall.start(i, now);
                }
            }
            Event::PieceVerified { torrent, piece } => {
                tracing::trace!("piece {piece} verified");
                if let Some(r) = self.entry_mut(torrent).and_then(|e| e.resumer.as_mut()) {
                    r.piece_verified();
                }
            }
            Event::HashFailed { piece, .. } => {
                tracing::info!("piece {piece} failed its hash check; fetching it again");
            }
            Event::Complete { torrent } => {
                if let Some(r) = self.entry_mut(torrent).and_then(|e| e.resumer.as_mut()) {
                    r.completed(now);
                }
                let Some(i) = self.source_of(torrent) else {
                    return;
                };
                self.stall.stop(i);
                self.progress.complete(i, self.epoch.elapsed());
                if self.lifecycle.on_complete(i, now) == Step::Shutdown {
                    self.session.shutdown(now);
                }
            }
            Event::Tracker {
                torrent,
                url,
                event,
            } => {
                let problem = self.progress.tracker(&url, &event);
                if let Some(i) = self.source_of(torrent) {
                    match (&event, problem) {
                        (TrackerEvent::Announced { peers, .. }, _) => {
                            self.stall.tracker_answered(i, &url, *peers);
                        }
                        (_, Some(problem)) => self.stall.tracker_problem(i, &url, &problem),
                        (_, None) => {}
                    }
                }
            }
            Event::PeerConnected { torrent, addr, id } => {
                if let Some(i) = self.source_of(torrent) {
                    self.progress.peer_connected(i, addr, id);
                    self.stall.peer_connected(i, addr);
                }
            }
            Event::PeerClosed {
                torrent,
                addr,
                reason,
            } => {
                tracing::debug!("peer {addr} closed: {reason}");
                if let Some(i) = torrent.and_then(|t| self.source_of(t)) {
                    self.stall.peer_closed(i, addr, &reason.to_string(), now);
                }
            }
            Event::DiskError {
                torrent, message, ..
            } => {
                let Some(i) = self.source_of(torrent) else {
                    return;
                };
                let message = format!("{}disk error: {message}", self.name_for_error(i));
                self.fail(i, message, now);
            }
            Event::SeedingDone {
                torrent,
                goal,
                uploaded,
                seeded_for,
            } => {
                let Some(i) = self.source_of(torrent) else {
                    return;
                };
                self.progress.message(&format!(
                    "{}: {goal}: {} uploaded in {} of seeding; stopped",
                    self.progress.name(i),
                    crate::ui::human_size(uploaded),
                    crate::ui::human_duration(seeded_for),
                ));
                if self.lifecycle.on_seeding_done(i, now) == Step::Shutdown {
                    self.session.shutdown(now);
                }
            }
            Event::Stopped => self.lifecycle.on_stopped(),
            Event::MetadataReceived {
                torrent,
                meta,
                torrent_file,
            } => self.metadata_received(torrent, meta, &torrent_file),
            Event::MetadataFailed { torrent, reason } => self.metadata_failed(torrent, &reason),
        }
    }
}

#[cfg(test)]
mod tests;
