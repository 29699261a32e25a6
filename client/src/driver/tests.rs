//! The driver's drain logic, with a scripted core and a recording network.

use std::collections::VecDeque;

use tessera_core::{OpId, TrackerEvent};

use super::resume_upkeep::SAVE_INTERVAL;
use super::*;
use crate::cli::LimitArgs;
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
) -> ResumeUpkeep {
    ResumeUpkeep::new(
        path.to_owned(),
        d.storages[&T].clone(),
        t.meta.info_hash.0,
        true,
        unsaved,
        d.now() + SAVE_INTERVAL,
    )
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
        save_torrent: None,
        pex: true,
    };
    let pool = DiskPool::new(2, Arc::new(|| {})).unwrap();
    let d = Driver::from_parts(
        core,
        pool,
        Progress::new(true, mode, "d", t.meta.total_length(), dir.to_path_buf()),
        T,
        storage,
        &plan,
        grace(),
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
    assert!(d.timeout().is_some_and(|t| t <= grace()));
    push(&mut d, [Output::Event(Event::Stopped)]);
    d.drain(&mut net);
    assert_eq!(d.finished(), Some(Exit::Success));
    assert_eq!(d.progress.peers_seen.len(), 1);
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
