//! Announces as a tracker sees them: a recording tracker in the swarm answers with every
//! node's address and an `interval` of one second; the parameters and events each node
//! sends are read back from the wire (the wire checker records them and checks their
//! counters against the payload bytes on the wire).

use std::net::SocketAddr;

use super::harness::*;
use crate::config::{Config, TorrentOptions};
use crate::time::Duration;

#[test]
fn announces_carry_events_and_counters_and_respect_the_interval_floor() {
    let files = [("a.bin", 200_000u64)];
    let data = content(200_000, 3);
    let tracker = SocketAddr::from(([10, 0, 0, 200], 6969));
    let meta = with_tracker(&metainfo("t", &files, 32768, &data), &tracker_url(tracker));
    let mut swarm = Swarm::new();
    swarm.tracker = Some(Tracker {
        addr: tracker,
        body_extra: "8:intervali1e12:min intervali1e".into(),
        log: Vec::new(),
    });
    let seed = swarm.add_seed(Config::default(), &meta, &data);
    let leech = swarm.add(
        Config::default(),
        &meta,
        MemDisk::empty(&meta),
        TorrentOptions {
            have: empty_have(&meta),
            seed: true,
            files: None,
            ..TorrentOptions::default()
        },
    );
    // Peers come from the tracker only.
    assert!(
        swarm.run_until(Duration::from_secs(60), |s| s.complete(leech)),
        "download did not complete"
    );
    assert_eq!(swarm.nodes[leech].disk.concat(), data);
    // Ten more minutes: a tracker saying interval=1 gets one announce a minute at most.
    let start = swarm.now;
    swarm.run_until(Duration::from_secs(600), |_| false);
    let log = &swarm.tracker.as_ref().unwrap().log;
    for node in [seed, leech] {
        let late = log
            .iter()
            .filter(|(n, at)| *n == node && *at > start)
            .count();
        assert!(
            (5..=11).contains(&late),
            "node {node}: {late} announces in 600 s"
        );
    }
    let now = swarm.now;
    for n in &mut swarm.nodes {
        n.session.shutdown(now);
    }
    swarm.run_until(Duration::from_secs(30), |_| false);

    let total = data.len() as u64;
    let announces = swarm.nodes[leech].wire.as_ref().unwrap().announces();
    let events: Vec<&str> = announces
        .iter()
        .filter_map(|a| a.event.as_deref())
        .collect();
    assert_eq!(
        events,
        ["started", "completed", "stopped"],
        "{announces:#?}"
    );
    let first = &announces[0];
    assert_eq!(
        (first.uploaded, first.downloaded, first.left),
        (Some(0), Some(0), Some(total))
    );
    let completed = announces
        .iter()
        .find(|a| a.event.as_deref() == Some("completed"))
        .unwrap();
    assert_eq!(
        (completed.downloaded, completed.left),
        (Some(total), Some(0))
    );
    let last = announces.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("stopped"));
    assert_eq!((last.downloaded, last.left), (Some(total), Some(0)));

    // The seeder: started with nothing left, never completed, stopped with what it sent.
    let announces = swarm.nodes[seed].wire.as_ref().unwrap().announces();
    let events: Vec<&str> = announces
        .iter()
        .filter_map(|a| a.event.as_deref())
        .collect();
    assert_eq!(events, ["started", "stopped"], "{announces:#?}");
    assert_eq!(announces[0].left, Some(0));
    let last = announces.last().unwrap();
    assert_eq!((last.uploaded, last.downloaded), (Some(total), Some(0)));
}
