//! Deadlines: the session asks to be woken exactly when something is due, and never on a
//! fixed beat when nothing is.

use std::net::SocketAddr;
use std::sync::Arc;

use super::harness::*;
use crate::api::{Action, CloseReason, Event, Input, Output, Target, TrackerEvent};
use crate::bitfield::Bitfield;
use crate::config::{Config, TorrentOptions};
use crate::id::ConnId;
use crate::metainfo::Metainfo;
use crate::session::Session;
use crate::time::{Duration, Instant};

fn torrent(trackers: &[&str]) -> Arc<Metainfo> {
    let data = content(100_000, 3);
    let meta = metainfo("t", &[("t", data.len() as u64)], 32768, &data);
    let mut meta = Arc::unwrap_or_clone(meta);
    meta.trackers = trackers.iter().map(|t| vec![t.to_string()]).collect();
    Arc::new(meta)
}

fn at(secs: f64) -> Instant {
    Instant::ZERO + Duration::from_secs_f64(1000.0 + secs)
}

/// Drains the session: its actions and events, and the deadline it ends with.
fn drain(s: &mut Session) -> (Vec<Action>, Vec<Event>, Instant) {
    let (mut actions, mut events) = (Vec::new(), Vec::new());
    loop {
        match s.poll_output() {
            Output::Action(a) => actions.push(a),
            Output::Event(e) => events.push(e),
            Output::Timeout(t) => return (actions, events, t),
        }
    }
}

fn timeout(s: &mut Session, now: Instant) -> (Vec<Action>, Vec<Event>, Instant) {
    s.handle_input(Input::Timeout { now });
    drain(s)
}

fn options(meta: &Metainfo, complete: bool) -> TorrentOptions {
    let n = meta.num_pieces() as usize;
    TorrentOptions {
        have: Some(if complete {
            Bitfield::full(n)
        } else {
            Bitfield::new(n)
        }),
        seed: true,
        files: None,
    }
}

#[test]
fn an_idle_seeder_without_peers_or_trackers_never_wakes() {
    let meta = torrent(&[]);
    let mut s = Session::new(Config::default(), at(0.0), [1; 32]);
    s.add_torrent(at(0.0), meta.clone(), options(&meta, true))
        .expect("a new torrent");
    let (actions, _, deadline) = drain(&mut s);
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(deadline, Instant::FAR_FUTURE);
    // Woken anyway (a driver may call early): still nothing to do, nothing to wait for.
    let (actions, _, deadline) = timeout(&mut s, at(3600.0));
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(deadline, Instant::FAR_FUTURE);
}

#[test]
fn a_tracker_request_times_out_at_its_deadline_and_not_before() {
    let meta = torrent(&["http://127.0.0.1:6969/announce"]);
    let config = Config::default();
    let limit = config.tracker_timeout;
    let mut s = Session::new(config, at(0.0), [1; 32]);
    s.add_torrent(at(0.0), meta.clone(), options(&meta, true))
        .expect("a new torrent");
    let (actions, _, deadline) = drain(&mut s);
    let conn = match actions.as_slice() {
        [Action::Connect { conn, target }] => {
            assert_eq!(
                *target,
                Target::Addr(SocketAddr::from(([127, 0, 0, 1], 6969)))
            );
            *conn
        }
        other => panic!("expected one tracker connect, got {other:?}"),
    };
    assert_eq!(
        deadline,
        at(0.0) + limit,
        "woken only for the tracker's time-out"
    );

    let early = at(0.0) + (limit - Duration::from_millis(1));
    let (actions, events, again) = timeout(&mut s, early);
    assert!(
        actions.is_empty() && events.is_empty(),
        "{actions:?} {events:?}"
    );
    assert_eq!(again, deadline);

    let (actions, events, next) = timeout(&mut s, deadline);
    assert!(
        matches!(actions.as_slice(), [Action::Close { conn: c }] if *c == conn),
        "{actions:?}"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Tracker { event: TrackerEvent::Error(m), .. } if m == "timed out"
    )));
    // The retry is the next (and only) deadline: after the first back-off, within its jitter.
    let retry = next.saturating_duration_since(deadline);
    assert!(
        retry >= crate::tracker::RETRY_MIN && retry <= crate::tracker::RETRY_MIN * 2,
        "{retry:?}"
    );
}

#[test]
fn connections_are_swept_each_tick_and_a_failed_dial_waits_for_its_back_off() {
    let meta = torrent(&[]);
    let config = Config::default();
    let tick = config.tick;
    let mut s = Session::new(config, at(0.0), [1; 32]);
    let t = s
        .add_torrent(at(0.0), meta.clone(), options(&meta, false))
        .expect("a new torrent");
    let (_, _, deadline) = drain(&mut s);
    assert_eq!(
        deadline,
        Instant::FAR_FUTURE,
        "no peer, no tracker: nothing due"
    );

    let addr = SocketAddr::from(([192, 0, 2, 1], 6881));
    s.add_peers(at(0.0), t, &[addr], false);
    let (actions, _, deadline) = drain(&mut s);
    assert!(
        matches!(actions.as_slice(), [Action::Connect { target: Target::Addr(a), .. }] if *a == addr)
    );
    assert_eq!(deadline, at(0.0) + tick, "a connection is swept every tick");

    // The dial never completes: the sweep that sees it past 15 s closes it.
    let mut now = deadline;
    let closed_at = loop {
        let (actions, events, next) = timeout(&mut s, now);
        if events.iter().any(|e| {
            matches!(
                e,
                Event::PeerClosed {
                    reason: CloseReason::ConnectTimeout,
                    ..
                }
            )
        }) {
            assert!(
                matches!(actions.as_slice(), [Action::Close { .. }]),
                "{actions:?}"
            );
            // No connection left: the next deadline is the address's back-off (2 s after
            // one failure), not the next sweep.
            assert_eq!(next, now + Duration::from_secs(2));
            break now;
        }
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(next, now + tick);
        now = next;
    };
    assert!(closed_at > at(15.0) && closed_at <= at(15.0) + tick);

    let (actions, _, _) = timeout(&mut s, closed_at + Duration::from_secs(2));
    assert!(
        matches!(actions.as_slice(), [Action::Connect { .. }]),
        "redialled: {actions:?}"
    );
}

#[test]
fn an_inbound_connection_without_a_handshake_is_closed_at_its_deadline() {
    let meta = torrent(&[]);
    let mut s = Session::new(Config::default(), at(0.0), [1; 32]);
    s.add_torrent(at(0.0), meta.clone(), options(&meta, true))
        .expect("a new torrent");
    drain(&mut s);
    let conn: ConnId = s
        .accept(at(1.0), SocketAddr::from(([192, 0, 2, 9], 50_000)))
        .expect("accepted");
    let (_, _, deadline) = drain(&mut s);
    assert_eq!(deadline, at(21.0));
    let (actions, _, deadline) = timeout(&mut s, at(21.0));
    assert!(
        matches!(actions.as_slice(), [Action::Close { conn: c }] if *c == conn),
        "{actions:?}"
    );
    assert_eq!(deadline, Instant::FAR_FUTURE);
}
