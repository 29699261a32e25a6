//! UDP tracker datagrams (BEP 15): `Response::decode` and `Request::decode` never panic,
//! keep their bounds, and what they accept survives our own encoding; and a `UdpTracker`
//! client fed the input as the tracker's answers (with the transaction ids it expects
//! patched in, so the fuzzer reaches past the transaction check) never panics and ends
//! every request with exactly one event.
//!
//! Input: `[flags] [cut] [bytes...]`. `flags & 1`: the tracker is reached over IPv6;
//! `flags >> 1`: the peer limit. The bytes are decoded whole, and fed to the client as two
//! datagrams cut at `cut`.

use std::collections::HashSet;
use std::net::SocketAddr;

use tessera_core::{InfoHash, PeerId};
use tessera_core::Rng;
use tessera_core::{Duration, Instant};
use tessera_core::tracker::udp::{
    Request, Response, UdpTracker, UdpTrackerConfig, UdpTrackerEvent,
};
use tessera_core::tracker::{AnnounceEvent, AnnounceParams};

/// The target's body: one input.
pub fn run(data: &[u8]) {
    let [flags, cut, bytes @ ..] = data else {
        return;
    };
    let ipv6 = flags & 1 == 1;
    let max_peers = usize::from(flags >> 1);

    if let Ok(r) = Response::decode(bytes, ipv6, max_peers) {
        if let Response::Announce { answer, .. } = &r {
            assert!(answer.peers.len() <= max_peers);
            let distinct: HashSet<_> = answer.peers.iter().collect();
            assert_eq!(distinct.len(), answer.peers.len());
            assert!(answer
                .peers
                .iter()
                .all(|p| p.port() != 0 && !p.ip().is_unspecified()));
        }
        assert_eq!(Response::decode(&r.encode(ipv6), ipv6, max_peers), Ok(r));
    }
    if let Ok(r) = Request::decode(bytes) {
        assert_eq!(Request::decode(&r.encode()), Ok(r));
    }

    // The client, answered with these bytes.
    let (url, tracker): (&str, SocketAddr) = if ipv6 {
        ("udp://[::1]:6969/announce", "[::1]:6969".parse().expect("an address"))
    } else {
        ("udp://127.0.0.1:6969/announce", "127.0.0.1:6969".parse().expect("an address"))
    };
    let config = UdpTrackerConfig {
        max_peers,
        ..UdpTrackerConfig::default()
    };
    let mut client = UdpTracker::new(url, config, Rng::from_u64(u64::from(*flags))).expect("a udp:// URL");
    let params = AnnounceParams {
        info_hash: InfoHash([1; 20]),
        peer_id: PeerId([2; 20]),
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left: 1,
        event: AnnounceEvent::Started,
        numwant: None,
        key: 3,
        tracker_id: None,
    };
    let mut now = Instant::ZERO;
    let first = client.announce(now, params.clone());
    let second = client.scrape(now, &[InfoHash([1; 20])]);
    let mut ends = 0;
    let drain = |client: &mut UdpTracker, last: &mut Option<u32>, ends: &mut usize| {
        while let Some((to, datagram)) = client.poll_transmit() {
            assert_eq!(to, tracker);
            let request = Request::decode(&datagram).expect("the client sends valid requests");
            *last = Some(request.transaction());
        }
        while let Some(event) = client.poll_event() {
            match event {
                UdpTrackerEvent::Resolve { .. } => panic!("nothing to resolve"),
                UdpTrackerEvent::Announced { request, .. }
                | UdpTrackerEvent::Scraped { request, .. }
                | UdpTrackerEvent::Failed { request, .. } => {
                    assert!(request == first || request == second);
                    *ends += 1;
                }
            }
        }
    };
    let mut last = None;
    drain(&mut client, &mut last, &mut ends);
    let (a, b) = bytes.split_at(usize::from(*cut).min(bytes.len()));
    for part in [a, b] {
        let mut datagram = part.to_vec();
        if let (Some(t), Some(slot)) = (last, datagram.get_mut(4..8)) {
            slot.copy_from_slice(&t.to_be_bytes());
        }
        client.handle_datagram(now, tracker, &datagram);
        drain(&mut client, &mut last, &mut ends);
        now += Duration::from_secs(1);
    }
    // Let time run out: both requests end, once each.
    let mut rounds = 0;
    while let Some(t) = client.poll_timeout() {
        assert!(rounds < 100, "the client never gives up");
        rounds += 1;
        now = now.max(t);
        client.handle_timeout(now);
        drain(&mut client, &mut last, &mut ends);
    }
    assert_eq!(ends, 2);
    assert!(client.is_idle());
}
