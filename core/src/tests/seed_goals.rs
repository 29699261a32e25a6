//! Seeding goals: a seeder with `seed_ratio` or `seed_time` stops on the session's clock,
//! after the copy in flight is whole, with a `stopped` announce.

use std::sync::Arc;

use bytes::Bytes;

use super::harness::*;
use crate::api::{Action, Event, Input, Output, SeedGoal, Target};
use crate::config::{Config, TorrentOptions};
use crate::metainfo::Metainfo;
use crate::session::Session;
use crate::time::{Duration, Instant};

fn torrent() -> (Arc<Metainfo>, Vec<u8>) {
    let data = content(1 << 20, 3);
    (
        metainfo("g", &[("g.bin", data.len() as u64)], 32768, &data),
        data,
    )
}

fn seeding(ratio: Option<f64>, time: Option<Duration>) -> TorrentOptions {
    TorrentOptions {
        seed_ratio: ratio,
        seed_time: time,
        ..seeder()
    }
}

fn done_event(events: &[Event]) -> Option<(SeedGoal, u64, Duration)> {
    events.iter().find_map(|e| match e {
        Event::SeedingDone {
            goal,
            uploaded,
            seeded_for,
            ..
        } => Some((*goal, *uploaded, *seeded_for)),
        _ => None,
    })
}

#[test]
fn a_ratio_of_one_stops_after_one_whole_copy() {
    let (meta, data) = torrent();
    let mut swarm = Swarm::new();
    let seed = swarm.add(
        Config {
            // Slow enough that the goal is judged while the copy is on its way.
            max_upload_rate: Some(400_000),
            ..Config::default()
        },
        &meta,
        MemDisk::full(&meta, &data),
        seeding(Some(1.0), None),
    );
    let leech = swarm.add(
        Config::default(),
        &meta,
        MemDisk::empty(&meta),
        TorrentOptions {
            have: empty_have(&meta),
            ..TorrentOptions::default()
        },
    );
    let addr = swarm.addr(seed);
    swarm.add_peers(leech, &[addr]);
    assert!(
        swarm.run_until(Duration::from_secs(60), |s| done_event(
            &s.nodes[seed].events
        )
        .is_some()),
        "the goal was never reached"
    );
    let (goal, uploaded, _) = done_event(&swarm.nodes[seed].events).unwrap();
    assert_eq!(goal, SeedGoal::Ratio);
    assert_eq!(uploaded, data.len() as u64, "one copy, not a block more");
    // The leecher had all of it verified before the seeder stopped: the last blocks were
    // let out and read before the connection closed.
    assert!(swarm.complete(leech));
    assert_eq!(swarm.nodes[leech].disk.concat(), data);
    // The seeder has no peer left.
    let t = swarm.nodes[seed].torrent;
    assert!(swarm.nodes[seed].session.peers(t).is_empty());
}

#[test]
fn a_leecher_that_stays_is_closed_once_the_blocks_are_read() {
    let (meta, data) = torrent();
    let mut swarm = Swarm::new();
    // Half a copy: the leecher is still downloading when the goal is reached.
    let seed = swarm.add(
        Config::default(),
        &meta,
        MemDisk::full(&meta, &data),
        seeding(Some(0.5), None),
    );
    let leech = swarm.add(
        Config::default(),
        &meta,
        MemDisk::empty(&meta),
        TorrentOptions {
            have: empty_have(&meta),
            ..TorrentOptions::default()
        },
    );
    let addr = swarm.addr(seed);
    swarm.add_peers(leech, &[addr]);
    assert!(swarm.run_until(Duration::from_secs(60), |s| {
        done_event(&s.nodes[seed].events).is_some()
    }));
    let (goal, uploaded, _) = done_event(&swarm.nodes[seed].events).unwrap();
    assert_eq!(goal, SeedGoal::Ratio);
    assert!(uploaded >= data.len() as u64 / 2, "{uploaded}");
    assert!(!swarm.complete(leech));
    assert!(swarm.nodes[seed].events.iter().any(|e| matches!(
        e,
        Event::PeerClosed {
            reason: crate::CloseReason::SeedingDone,
            ..
        }
    )));
}

#[test]
fn a_seed_time_stops_on_the_clock_with_a_stopped_announce() {
    let (mut meta, data) = torrent();
    Arc::make_mut(&mut meta).trackers = vec![vec!["http://tracker.test/announce".into()]];
    let now = Instant::ZERO;
    let mut s = Session::new(Config::default(), now, [9; 32]);
    let disk = MemDisk::full(&meta, &data);
    let t = s
        .add_torrent(
            now,
            meta.clone(),
            seeding(None, Some(Duration::from_secs(5))),
        )
        .expect("a new torrent");
    let mut events = Vec::new();
    let mut announces: Vec<(Instant, String)> = Vec::new();
    let mut clock = now;
    let mut inputs: Vec<Input> = Vec::new();
    // Run the session for 20 s: the check reads from `disk`, the tracker answers at once.
    for _ in 0..10_000 {
        loop {
            match s.poll_output() {
                Output::Timeout(at) => {
                    if inputs.is_empty() {
                        if at > Instant::ZERO + Duration::from_secs(20) {
                            break;
                        }
                        clock = clock.max(at);
                        inputs.push(Input::Timeout { now: clock });
                    }
                    break;
                }
                Output::Event(e) => events.push(e),
                Output::Action(Action::Verify {
                    op,
                    spans,
                    expected,
                    ..
                }) => {
                    use sha1::{Digest, Sha1};
                    let ok = <[u8; 20]>::from(Sha1::digest(disk.read(&spans))) == expected;
                    inputs.push(Input::Disk {
                        now: clock,
                        op,
                        result: if ok {
                            crate::DiskResult::Ok
                        } else {
                            crate::DiskResult::HashMismatch
                        },
                    });
                }
                Output::Action(Action::Connect { conn, target }) => {
                    assert!(matches!(target, Target::Host { .. }), "{target:?}");
                    inputs.push(Input::Connected { now: clock, conn });
                }
                Output::Action(Action::Send { conn, data }) => {
                    let text = String::from_utf8_lossy(&data).to_string();
                    announces.push((clock, text));
                    let body = b"d8:intervali1800e5:peers0:e";
                    let reply =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    let mut bytes = reply.into_bytes();
                    bytes.extend_from_slice(body);
                    inputs.push(Input::Received {
                        now: clock,
                        conn,
                        data: Bytes::from(bytes),
                    });
                }
                Output::Action(_) => {}
            }
        }
        if inputs.is_empty() {
            break;
        }
        for input in inputs.drain(..) {
            s.handle_input(input);
        }
    }
    let (goal, _, seeded_for) = done_event(&events).expect("the goal was reached");
    assert_eq!(goal, SeedGoal::Time);
    assert_eq!(seeded_for, Duration::from_secs(5));
    let started: Vec<_> = announces
        .iter()
        .filter(|(_, a)| a.contains("event=started"))
        .collect();
    let stopped: Vec<_> = announces
        .iter()
        .filter(|(_, a)| a.contains("event=stopped"))
        .collect();
    assert_eq!(started.len(), 1, "{announces:?}");
    assert_eq!(stopped.len(), 1, "{announces:?}");
    assert_eq!(
        stopped[0].0,
        Instant::ZERO + Duration::from_secs(5),
        "stopped on the clock"
    );
    // Stopped, it does not announce again or wake for anything.
    assert_eq!(announces.len(), 2, "{announces:?}");
    assert!(s.peers(t).is_empty());
}
