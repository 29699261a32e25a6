//! The driver's drain logic, with a scripted core and a recording network.

use std::collections::VecDeque;

use tessera_core::{CloseReason, OpId, TrackerEvent};

use super::resume_upkeep::SAVE_INTERVAL;
use super::*;
use crate::resume;
use crate::testutil::{TestTorrent, torrent};

/// What a clean stop is given, as with the default configuration.
fn grace() -> Duration {
    Config::default().tracker_timeout + SHUTDOWN_GRACE
}

fn at(secs: u64) -> Instant {
    Instant::from_duration(Duration::from_secs(secs))
}

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
    /// Torrents added, with the peers given for each.
    added: Vec<(TorrentId, Vec<SocketAddr>)>,
    /// Magnet links' torrents resumed with their metadata, with the options given.
    resumed: Vec<(TorrentId, TorrentOptions)>,
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
    fn add_torrent(
        &mut self,
        _now: Instant,
        _meta: Arc<Metainfo>,
        _options: TorrentOptions,
    ) -> Result<TorrentId, Error> {
        let id = TorrentId(self.added.len() as u64 + 1);
        self.added.push((id, Vec::new()));
        Ok(id)
    }
    fn add_peers(&mut self, _now: Instant, torrent: TorrentId, peers: &[SocketAddr]) {
        if let Some((_, p)) = self.added.iter_mut().find(|(id, _)| *id == torrent) {
            p.extend_from_slice(peers);
        }
    }
    fn resume_with_metadata(
        &mut self,
        _now: Instant,
        torrent: TorrentId,
        options: TorrentOptions,
    ) -> Result<(), Error> {
        self.resumed.push((torrent, options));
        Ok(())
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

/// The first torrent's id in a `FakeCore`.
const T: TorrentId = TorrentId(1);

fn no_reaction(_: &Input, _: &mut VecDeque<Output>) {}

/// Resume bookkeeping for `d`'s first torrent `t`, saving to `path`, due in
/// `SAVE_INTERVAL`.
fn resumer<S: Core>(
    d: &Driver<S>,
    t: &TestTorrent,
    path: &std::path::Path,
    unsaved: bool,
) -> ResumeUpkeep {
    ResumeUpkeep::new(
        path.to_owned(),
        d.entries[0].storage.clone(),
        t.meta.info_hash.0,
        true,
        unsaved,
        d.now() + SAVE_INTERVAL,
    )
}

/// Writes `t`'s files under `dir`, as a seeder has them.
fn write_data(t: &TestTorrent, dir: &std::path::Path) {
    for (i, f) in t.meta.info.files.iter().enumerate() {
        let path = f.path.iter().fold(dir.to_path_buf(), |p, c| p.join(c));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t.file(i)).unwrap();
    }
}

fn fake_core(react: fn(&Input, &mut VecDeque<Output>), pieces: usize) -> FakeCore {
    FakeCore {
        outputs: VecDeque::new(),
        inputs: Vec::new(),
        shutdowns: 0,
        deadline: Instant::FAR_FUTURE,
        react,
        have: Bitfield::new(pieces),
        added: Vec::new(),
        resumed: Vec::new(),
    }
}

fn source(dir: &std::path::Path) -> Source {
    Source {
        torrent: crate::torrent::TorrentRef::File("d.torrent".into()),
        dir: dir.to_path_buf(),
        only: vec![],
        recheck: false,
    }
}

/// A driver for a plan of `torrents` (added, with their data written first for a
/// seeder), on a `FakeCore`.
fn driver_of(
    mode: Mode,
    dir: &std::path::Path,
    react: fn(&Input, &mut VecDeque<Output>),
    torrents: &[&TestTorrent],
    stall_timeout: Option<Duration>,
) -> Driver<FakeCore> {
    let plan = Plan {
        peers: vec!["127.0.0.1:6881".parse().unwrap()],
        stall_timeout,
        ..Plan::new(torrents.iter().map(|_| source(dir)).collect(), mode)
    };
    let pool = DiskPool::new(2, Arc::new(|| {})).unwrap();
    let pieces = torrents.first().map_or(0, |t| t.meta.num_pieces() as usize);
    let mut d = Driver::with_session(
        fake_core(react, pieces),
        pool,
        &plan,
        Board::quiet(),
        grace(),
    );
    for (i, t) in torrents.iter().enumerate() {
        if mode == Mode::Seed {
            write_data(t, dir);
        }
        d.add_torrent(i, &plan.sources[i], t.meta.clone()).unwrap();
    }
    d
}

fn driver(
    mode: Mode,
    dir: &std::path::Path,
    react: fn(&Input, &mut VecDeque<Output>),
) -> (Driver<FakeCore>, TestTorrent) {
    let t = torrent("d", &[("a", 40_000, false), ("b", 10_000, false)], 16384);
    let d = driver_of(mode, dir, react, &[&t], None);
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
    assert!(d.timeout().is_some_and(|t| t <= grace()));
    push(&mut d, [Output::Event(Event::Stopped)]);
    d.drain(&mut net);
    assert_eq!(d.finished(), Some(Exit::Success));
    assert_eq!(d.progress.peers_seen(0), 1);
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
    d.entries[0].resumer = Some(resumer(&d, &t, &path, false));
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
    d.entries[0].resumer = Some(resumer(&d, &t, &path, true));
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
    assert_eq!(d.progress.tracker_problems.len(), 1);
    push(
        &mut d,
        [tracker(TrackerEvent::Announced {
            peers: 3,
            interval: Duration::from_secs(1800),
        })],
    );
    d.drain(&mut net);
    assert!(d.progress.tracker_problems.is_empty());
}

#[test]
fn several_torrents_share_the_session_and_end_together() {
    let dir = tempfile::tempdir().unwrap();
    let a = torrent("a", &[("x", 40_000, false)], 16384);
    let b = torrent("b", &[("", 20_000, false)], 16384);
    let mut d = driver_of(
        Mode::Download {
            keep_seeding: false,
        },
        dir.path(),
        no_reaction,
        &[&a, &b],
        None,
    );
    // One session: both torrents in it, each with the plan's peers.
    let peer: SocketAddr = "127.0.0.1:6881".parse().unwrap();
    assert_eq!(
        d.session.added,
        vec![(TorrentId(1), vec![peer]), (TorrentId(2), vec![peer])]
    );
    assert_eq!(d.entries.len(), 2);
    assert_ne!(
        d.entries[0].storage.path(0),
        d.entries[1].storage.path(0),
        "each its own storage"
    );
    let mut net = FakeNet::default();
    push(
        &mut d,
        [Output::Event(Event::Complete {
            torrent: TorrentId(2),
        })],
    );
    d.drain(&mut net);
    assert_eq!(d.session.shutdowns, 0, "one torrent is still downloading");
    push(
        &mut d,
        [Output::Event(Event::Complete {
            torrent: TorrentId(1),
        })],
    );
    d.drain(&mut net);
    assert_eq!(d.session.shutdowns, 1);
    push(&mut d, [Output::Event(Event::Stopped)]);
    d.drain(&mut net);
    assert_eq!(d.finish(), Exit::Success);
    // Each saved its own resume data.
    for t in [&a, &b] {
        let path = resume::resume_path(dir.path(), &t.meta.info_hash.to_string());
        assert_eq!(
            resume::ResumeData::load(&path).unwrap().info_hash,
            t.meta.info_hash.0
        );
    }
}

#[test]
fn a_disk_error_fails_one_torrent_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let a = torrent("a", &[("x", 40_000, false)], 16384);
    let b = torrent("b", &[("", 20_000, false)], 16384);
    let mut d = driver_of(
        Mode::Download {
            keep_seeding: false,
        },
        dir.path(),
        no_reaction,
        &[&a, &b],
        None,
    );
    let mut net = FakeNet::default();
    push(
        &mut d,
        [Output::Event(Event::DiskError {
            torrent: TorrentId(1),
            kind: DiskErrorKind::NoSpace,
            message: "writing /x: No space left on device".into(),
        })],
    );
    d.drain(&mut net);
    assert_eq!(d.session.shutdowns, 0);
    push(
        &mut d,
        [Output::Event(Event::Complete {
            torrent: TorrentId(2),
        })],
    );
    d.drain(&mut net);
    assert_eq!(d.session.shutdowns, 1);
    push(&mut d, [Output::Event(Event::Stopped)]);
    d.drain(&mut net);
    assert_eq!(
        d.finish(),
        Exit::Failed("a: disk error: writing /x: No space left on device".into())
    );
}

#[test]
fn a_seeder_without_data_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent("gone", &[("a", 40_000, false)], 16384);
    let plan = Plan::new(vec![source(dir.path())], Mode::Seed);
    let pool = DiskPool::new(1, Arc::new(|| {})).unwrap();
    let mut d = Driver::with_session(
        fake_core(no_reaction, 3),
        pool,
        &plan,
        Board::quiet(),
        grace(),
    );
    let err = d
        .add_torrent(0, &plan.sources[0], t.meta.clone())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "no data to seed for gone: {} does not exist (--data names the directory that \
             holds it, as `download -o` left it)",
            dir.path().join("gone").display()
        )
    );
    // Nothing was created, and the session never heard of it.
    assert!(!dir.path().join("gone").exists());
    assert!(d.session.added.is_empty());
}

#[test]
fn a_seeder_whose_files_hold_other_data_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (mut d, _) = driver(Mode::Seed, dir.path(), no_reaction);
    let mut net = FakeNet::default();
    push(
        &mut d,
        [Output::Event(Event::Checked {
            torrent: T,
            have: 0,
            total: 4,
        })],
    );
    d.drain(&mut net);
    assert_eq!(d.session.shutdowns, 1);
    push(&mut d, [Output::Event(Event::Stopped)]);
    d.drain(&mut net);
    let Some(Exit::Failed(m)) = d.finished() else {
        panic!("{:?}", d.finished())
    };
    assert!(
        m.starts_with("no data to seed: none of the 4 pieces in ")
            && m.ends_with("hold other data)"),
        "{m}"
    );
}

#[test]
fn an_output_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"x").unwrap();
    let t = torrent("d", &[("a", 40_000, false)], 16384);
    let mode = Mode::Download {
        keep_seeding: false,
    };
    let plan = Plan::new(vec![source(&file)], mode);
    let pool = DiskPool::new(1, Arc::new(|| {})).unwrap();
    let mut d = Driver::with_session(
        fake_core(no_reaction, 3),
        pool,
        &plan,
        Board::quiet(),
        grace(),
    );
    let err = d
        .add_torrent(0, &plan.sources[0], t.meta.clone())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "{} is not a directory: -o must name a directory (it is created if missing)",
            file.display()
        )
    );
}

#[test]
fn the_same_torrent_twice_or_two_in_one_place_are_refused() {
    let a = torrent("same", &[("x", 40_000, false)], 16384);
    let mut other = (*torrent("same", &[("y", 1000, false)], 16384).meta).clone();
    other.info_hash = tessera_core::InfoHash([9; 20]);
    let other = Arc::new(other);
    let src = |name: &str, dir: &str| Source {
        torrent: crate::torrent::TorrentRef::parse(name),
        dir: dir.into(),
        only: vec![],
        recheck: false,
    };
    let known = |meta: &Arc<Metainfo>| magnet_run::Start::Known {
        source: src("t.torrent", "out"),
        meta: meta.clone(),
        link: None,
    };
    let err = check_distinct(
        &[src("a.torrent", "out"), src("copy.torrent", "elsewhere")],
        &[known(&a.meta), known(&a.meta)],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("a.torrent and copy.torrent are the same torrent (info hash "),
        "{err}"
    );
    let err = check_distinct(
        &[src("a.torrent", "out"), src("b.torrent", "out")],
        &[known(&a.meta), known(&other)],
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "a.torrent and b.torrent would both put their data at out/same: download them into \
         different directories"
    );
    assert!(
        check_distinct(
            &[src("a.torrent", "out"), src("b.torrent", "out2")],
            &[known(&a.meta), known(&other)]
        )
        .is_ok()
    );
    // A magnet link names its torrent by info hash: the same torrent as a file is refused
    // before its metadata is fetched.
    let uri = format!("magnet:?xt=urn:btih:{}", a.meta.info_hash);
    let link: tessera_core::magnet::MagnetLink = uri.parse().unwrap();
    let err = check_distinct(
        &[src("a.torrent", "out"), src(&uri, "elsewhere")],
        &[
            known(&a.meta),
            magnet_run::Start::Fetch {
                source: src(&uri, "elsewhere"),
                link,
            },
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("are the same torrent"), "{err}");
}

#[test]
fn a_download_alone_too_long_gives_up_with_the_stall_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent("lonely", &[("a", 40_000, false)], 16384);
    let mut d = driver_of(
        Mode::Download {
            keep_seeding: false,
        },
        dir.path(),
        no_reaction,
        &[&t],
        Some(Duration::from_secs(45)),
    );
    let mut net = FakeNet::default();
    push(
        &mut d,
        [Output::Event(Event::PeerClosed {
            torrent: Some(T),
            addr: "127.0.0.1:6881".parse().unwrap(),
            reason: CloseReason::Remote(Some("Connection refused (os error 111)".into())),
        })],
    );
    d.drain(&mut net);
    // The stall is the next thing due, and its deadline wakes the loop.
    assert!(d.timeout().is_some_and(|t| t <= Duration::from_secs(30)));
    d.handle_timeout(&mut net);
    assert_eq!(d.session.shutdowns, 0);
    // 46 s later (on the driver's clock).
    d.epoch -= Duration::from_secs(46);
    d.handle_timeout(&mut net);
    assert_eq!(d.session.shutdowns, 1);
    push(&mut d, [Output::Event(Event::Stopped)]);
    d.drain(&mut net);
    assert_eq!(
        d.finished(),
        Some(Exit::Failed(
            "no peer within 45s (--stall-timeout); the reasons are above".into()
        ))
    );
}

/// A driver whose plan's second source is a magnet link being fetched (as torrent `id`
/// of the session); the first is `t`, added.
fn driver_fetching(dir: &std::path::Path, t: &TestTorrent, id: TorrentId) -> Driver<FakeCore> {
    let link = crate::torrent::TorrentRef::parse(&format!(
        "magnet:?xt=urn:btih:{}",
        tessera_core::InfoHash([7; 20])
    ));
    let magnet = Source {
        torrent: link,
        ..source(&dir.join("m"))
    };
    let plan = Plan {
        save_torrent: Some(dir.join("copy.torrent")),
        ..Plan::new(
            vec![source(dir), magnet.clone()],
            Mode::Download {
                keep_seeding: false,
            },
        )
    };
    let pool = DiskPool::new(2, Arc::new(|| {})).unwrap();
    let mut d = Driver::with_session(
        fake_core(no_reaction, t.meta.num_pieces() as usize),
        pool,
        &plan,
        Board::quiet(),
        grace(),
    );
    d.add_torrent(0, &plan.sources[0], t.meta.clone()).unwrap();
    d.fetching.insert(
        id,
        magnet_run::Fetch {
            index: 1,
            source: magnet,
            name: "m".into(),
            started: std::time::Instant::now(),
        },
    );
    d
}

#[test]
fn a_magnet_links_torrent_joins_the_run_when_its_metadata_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent("a", &[("a", 40_000, false)], 16384);
    let m = torrent("m", &[("x", 20_000, false), ("y", 5_000, false)], 16384);
    let id = TorrentId(9);
    let mut d = driver_fetching(dir.path(), &t, id);
    let mut net = FakeNet::default();
    // Nothing of it is known yet: the run waits for it.
    push(&mut d, [Output::Event(Event::Complete { torrent: T })]);
    d.drain(&mut net);
    assert_eq!(d.session.shutdowns, 0);
    assert!(d.session.resumed.is_empty());

    let file = Bytes::from_static(b"d4:infod4:name1:mee");
    push(
        &mut d,
        [Output::Event(Event::MetadataReceived {
            torrent: id,
            meta: m.meta.clone(),
            torrent_file: file.clone(),
        })],
    );
    d.drain(&mut net);
    // Saved where the next run finds it, and where --save-torrent said.
    let kept = dir
        .path()
        .join("m")
        .join(".tessera")
        .join(format!("{}.torrent", m.meta.info_hash));
    assert_eq!(std::fs::read(kept).unwrap(), file);
    assert_eq!(
        std::fs::read(dir.path().join("copy.torrent")).unwrap(),
        file
    );
    // The session's torrent is resumed, not added again, with the plan's options.
    assert_eq!(d.session.added.len(), 1);
    assert_eq!(d.session.resumed.len(), 1);
    let (resumed, options) = &d.session.resumed[0];
    assert_eq!(*resumed, id);
    assert!(!options.seed);
    assert_eq!(
        options.have.as_ref().map(Bitfield::len),
        Some(m.meta.num_pieces() as usize)
    );
    assert!(d.fetching.is_empty());
    assert_eq!(d.source_of(id), Some(1));
    assert_eq!(d.progress.name(1), "m");
    assert!(dir.path().join("m").join(".tessera").is_dir());

    // Done once both are.
    push(&mut d, [Output::Event(Event::Complete { torrent: id })]);
    d.drain(&mut net);
    assert_eq!(d.session.shutdowns, 1);
    push(&mut d, [Output::Event(Event::Stopped)]);
    d.drain(&mut net);
    assert_eq!(d.finished(), Some(Exit::Success));
}

#[test]
fn unusable_metadata_fails_only_its_magnet_link() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent("a", &[("a", 40_000, false)], 16384);
    let id = TorrentId(9);
    let mut d = driver_fetching(dir.path(), &t, id);
    let mut net = FakeNet::default();
    push(
        &mut d,
        [Output::Event(Event::MetadataFailed {
            torrent: id,
            reason: "an unsafe path".into(),
        })],
    );
    d.drain(&mut net);
    assert!(d.fetching.is_empty());
    assert!(d.session.resumed.is_empty());
    // The other torrent goes on; the run ends failed once it is done.
    assert_eq!(d.session.shutdowns, 0);
    push(&mut d, [Output::Event(Event::Complete { torrent: T })]);
    d.drain(&mut net);
    assert_eq!(d.session.shutdowns, 1);
    push(&mut d, [Output::Event(Event::Stopped)]);
    d.drain(&mut net);
    let Some(Exit::Failed(m)) = d.finished() else {
        panic!("{:?}", d.finished());
    };
    assert!(
        m.contains("m: the torrent's metadata is not usable: an unsafe path"),
        "{m}"
    );
}
