use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::codec::too_short;
use super::*;
use crate::id::PeerId;
use crate::rng::Rng;
use crate::tracker::announce::{AnnounceEvent, AnnounceResponse, MAX_INTERVAL};

fn at(secs: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(secs)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const URL: &str = "udp://127.0.0.1:6969/announce";

fn tracker() -> SocketAddr {
    addr("127.0.0.1:6969")
}

fn params(event: AnnounceEvent) -> AnnounceParams {
    AnnounceParams {
        info_hash: InfoHash([0xab; 20]),
        peer_id: PeerId(*b"-TQ0100-abcdefghijkl"),
        port: 6881,
        uploaded: 10,
        downloaded: 20,
        left: 30,
        event,
        numwant: Some(50),
        key: 0xdead_beef,
        tracker_id: None,
    }
}

fn client(url: &str, seed: u64) -> UdpTracker {
    UdpTracker::new(url, UdpTrackerConfig::default(), Rng::from_u64(seed)).unwrap()
}

/// Every datagram the client wants sent, decoded.
fn sent(c: &mut UdpTracker) -> Vec<(SocketAddr, Request)> {
    std::iter::from_fn(|| c.poll_transmit())
        .map(|(to, bytes)| (to, Request::decode(&bytes).expect("we send valid requests")))
        .collect()
}

fn events(c: &mut UdpTracker) -> Vec<UdpTrackerEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn connect_answer(transaction: u32, connection_id: u64) -> Vec<u8> {
    Response::Connect {
        transaction,
        connection_id,
    }
    .encode(false)
}

fn announce_answer(transaction: u32, peers: &[&str]) -> Vec<u8> {
    Response::Announce {
        transaction,
        answer: UdpAnnounceResponse {
            interval: Duration::from_secs(1800),
            leechers: 3,
            seeders: 4,
            peers: peers.iter().map(|p| addr(p)).collect(),
        },
    }
    .encode(false)
}

/// Connects the client (answering its connect with `id`) and returns the request it sends
/// next.
fn connect(c: &mut UdpTracker, now: Instant, id: u64) -> Vec<(SocketAddr, Request)> {
    let out = sent(c);
    let [(to, Request::Connect { transaction })] = out[..] else {
        panic!("expected one connect, got {out:?}");
    };
    assert_eq!(to, tracker());
    assert!(c.handle_datagram(now, tracker(), &connect_answer(transaction, id)));
    sent(c)
}

fn only_announce(out: &[(SocketAddr, Request)]) -> &AnnounceRequest {
    match out {
        [(_, Request::Announce(a))] => a,
        other => panic!("expected one announce, got {other:?}"),
    }
}

// ---- codec ---------------------------------------------------------------------------------

#[test]
fn connect_request_is_the_magic_number_action_and_transaction() {
    let bytes = Request::Connect {
        transaction: 0x0102_0304,
    }
    .encode();
    assert_eq!(
        bytes,
        [
            0x00, 0x00, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 1, 2, 3, 4
        ]
    );
    assert_eq!(
        Request::decode(&bytes),
        Ok(Request::Connect {
            transaction: 0x0102_0304
        })
    );
    let mut wrong = bytes.clone();
    wrong[0] = 1;
    assert!(matches!(
        Request::decode(&wrong),
        Err(UdpDecodeError::BadProtocolId(_))
    ));
}

fn announce_request(url_data: Vec<u8>) -> AnnounceRequest {
    AnnounceRequest {
        connection_id: 0x1122_3344_5566_7788,
        transaction: 0xa1a2_a3a4,
        info_hash: InfoHash([7; 20]),
        peer_id: PeerId([9; 20]),
        downloaded: 1,
        left: u64::MAX,
        uploaded: 3,
        event: AnnounceEvent::Started,
        ip: None,
        key: 0x0b0c_0d0e,
        num_want: None,
        port: 0x1ae1,
        url_data,
    }
}

#[test]
fn announce_request_layout() {
    let a = announce_request(Vec::new());
    let bytes = Request::Announce(a.clone()).encode();
    assert_eq!(bytes.len(), 98);
    assert_eq!(bytes[..8], 0x1122_3344_5566_7788u64.to_be_bytes());
    assert_eq!(bytes[8..12], [0, 0, 0, 1]);
    assert_eq!(bytes[12..16], [0xa1, 0xa2, 0xa3, 0xa4]);
    assert_eq!(bytes[16..36], [7; 20]);
    assert_eq!(bytes[36..56], [9; 20]);
    assert_eq!(bytes[56..64], 1u64.to_be_bytes());
    // `left` beyond i64 saturates.
    assert_eq!(bytes[64..72], i64::MAX.to_be_bytes());
    assert_eq!(bytes[72..80], 3u64.to_be_bytes());
    assert_eq!(bytes[80..84], [0, 0, 0, 2], "started is 2");
    assert_eq!(bytes[84..88], [0; 4], "default address");
    assert_eq!(bytes[88..92], [0x0b, 0x0c, 0x0d, 0x0e]);
    assert_eq!(bytes[92..96], [0xff; 4], "num_want -1");
    assert_eq!(bytes[96..98], [0x1a, 0xe1]);
    let back = Request::decode(&bytes).unwrap();
    assert_eq!(
        back,
        Request::Announce(AnnounceRequest {
            left: i64::MAX as u64,
            ..a
        })
    );
    for (event, n) in [
        (AnnounceEvent::None, 0),
        (AnnounceEvent::Completed, 1),
        (AnnounceEvent::Stopped, 3),
    ] {
        let bytes = Request::Announce(AnnounceRequest {
            event,
            ..announce_request(Vec::new())
        })
        .encode();
        assert_eq!(bytes[80..84], [0, 0, 0, n]);
    }
    assert!(matches!(
        Request::decode(&bytes[..97]),
        Err(UdpDecodeError::TooShort { min: 98, .. })
    ));
}

#[test]
fn url_data_travels_in_bep41_options() {
    let path: Vec<u8> = (0..300).map(|i| b'a' + (i % 26) as u8).collect();
    let bytes = Request::Announce(announce_request(path.clone())).encode();
    assert_eq!(bytes.len(), 98 + 2 + 255 + 2 + 45);
    assert_eq!(bytes[98..100], [2, 255]);
    assert_eq!(bytes[355..357], [2, 45]);
    let Ok(Request::Announce(back)) = Request::decode(&bytes) else {
        panic!()
    };
    assert_eq!(back.url_data, path);

    // NOP skipped, an unknown option skipped by its length, EndOfOptions ends them.
    let mut with_others = Request::Announce(announce_request(Vec::new())).encode();
    with_others.extend_from_slice(&[
        1, 2, 3, b'/', b'a', b'b', 9, 2, 0, 0, 2, 1, b'c', 0, 2, 1, b'x',
    ]);
    let Ok(Request::Announce(back)) = Request::decode(&with_others) else {
        panic!()
    };
    assert_eq!(back.url_data, b"/abc");
    // A cut-off option is an error.
    let mut cut = Request::Announce(announce_request(Vec::new())).encode();
    cut.extend_from_slice(&[2, 10, b'a']);
    assert!(matches!(
        Request::decode(&cut),
        Err(UdpDecodeError::Malformed(_))
    ));
    cut.truncate(99);
    assert!(matches!(
        Request::decode(&cut),
        Err(UdpDecodeError::Malformed(_))
    ));
}

#[test]
fn scrape_request_layout() {
    let s = ScrapeRequest {
        connection_id: 5,
        transaction: 6,
        info_hashes: vec![InfoHash([1; 20]), InfoHash([2; 20])],
    };
    let bytes = Request::Scrape(s.clone()).encode();
    assert_eq!(bytes.len(), 16 + 40);
    assert_eq!(bytes[8..12], [0, 0, 0, 2]);
    assert_eq!(Request::decode(&bytes), Ok(Request::Scrape(s)));
    assert!(matches!(
        Request::decode(&bytes[..30]),
        Err(UdpDecodeError::Malformed(_))
    ));
    assert_eq!(
        Request::decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0]),
        Err(UdpDecodeError::UnknownAction(7))
    );
}

#[test]
fn decodes_hand_written_answers() {
    let mut connect = vec![0, 0, 0, 0, 0xca, 0xfe, 0xba, 0xbe];
    connect.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
    assert_eq!(
        Response::decode(&connect, false, 50),
        Ok(Response::Connect {
            transaction: 0xcafe_babe,
            connection_id: 0x0102_0304_0506_0708
        })
    );

    let mut announce = vec![0, 0, 0, 1, 0, 0, 0, 9];
    announce.extend_from_slice(&[0, 0, 0x07, 0x08, 0, 0, 0, 2, 0, 0, 0, 5]);
    for peer in [
        [10, 0, 0, 1, 0x1a, 0xe1],
        [10, 0, 0, 2, 0, 0],
        [10, 0, 0, 1, 0x1a, 0xe1],
        [0, 0, 0, 0, 0, 80],
        [192, 168, 0, 1, 0, 80],
    ] {
        announce.extend_from_slice(&peer);
    }
    assert_eq!(
        Response::decode(&announce, false, 50),
        Ok(Response::Announce {
            transaction: 9,
            answer: UdpAnnounceResponse {
                interval: Duration::from_secs(1800),
                leechers: 2,
                seeders: 5,
                // A duplicate, port 0 and an unspecified address dropped.
                peers: vec![addr("10.0.0.1:6881"), addr("192.168.0.1:80")],
            }
        })
    );
    // At most max_peers.
    let Ok(Response::Announce { answer, .. }) = Response::decode(&announce, false, 1) else {
        panic!()
    };
    assert_eq!(answer.peers, vec![addr("10.0.0.1:6881")]);
    // The same bytes over IPv6 are 44 bytes of peers: not a whole number of 18-byte ones.
    assert!(matches!(
        Response::decode(&announce, true, 50),
        Err(UdpDecodeError::Malformed(m)) if m.contains("multiple of 18")
    ));

    let mut announce6 = vec![0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 1];
    announce6.extend_from_slice(&"2001:db8::5".parse::<Ipv6Addr>().unwrap().octets());
    announce6.extend_from_slice(&[0x1a, 0xe1]);
    let Ok(Response::Announce { answer, .. }) = Response::decode(&announce6, true, 50) else {
        panic!()
    };
    assert_eq!(answer.peers, vec![addr("[2001:db8::5]:6881")]);
    assert_eq!(answer.interval, Duration::from_secs(60));

    let mut scrape = vec![0, 0, 0, 2, 0, 0, 0, 3];
    scrape.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
    scrape.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6]);
    assert_eq!(
        Response::decode(&scrape, false, 50),
        Ok(Response::Scrape {
            transaction: 3,
            files: vec![
                ScrapeStats {
                    seeders: 1,
                    completed: 2,
                    leechers: 3
                },
                ScrapeStats {
                    seeders: 4,
                    completed: 5,
                    leechers: 6
                },
            ]
        })
    );
    assert!(matches!(
        Response::decode(&scrape[..19], false, 50),
        Err(UdpDecodeError::Malformed(_))
    ));

    let mut error = vec![0, 0, 0, 3, 0, 0, 0, 4];
    error.extend_from_slice(b"torrent not registered\0");
    assert_eq!(
        Response::decode(&error, false, 50),
        Ok(Response::Error {
            transaction: 4,
            message: "torrent not registered".into()
        })
    );
    let mut long = vec![0, 0, 0, 3, 0, 0, 0, 4];
    long.extend(std::iter::repeat_n(b'x', 5000));
    let Ok(Response::Error { message, .. }) = Response::decode(&long, false, 50) else {
        panic!()
    };
    assert_eq!(message.len(), MAX_ERROR_MESSAGE);

    // Cut where NULs follow (found by the fuzzer): the text reads the same from its own
    // encoding; invalid UTF-8 becomes replacement characters within the bound.
    for tail in [[b'x'; 1020].as_slice(), &[0xff; 1020]] {
        let mut cut = vec![0, 0, 0, 3, 0, 0, 0, 4];
        cut.extend_from_slice(tail);
        cut.extend_from_slice(&[0, 0, 0, 0, b'y', b'z']);
        let Ok(error) = Response::decode(&cut, false, 50) else {
            panic!()
        };
        let Response::Error { message, .. } = &error else {
            panic!()
        };
        assert!(message.len() <= MAX_ERROR_MESSAGE && !message.ends_with('\0'));
        assert_eq!(Response::decode(&error.encode(false), false, 50), Ok(error));
    }
}

#[test]
fn short_and_unknown_answers_are_errors() {
    let cases: [(&[u8], UdpDecodeError); 5] = [
        (&[], too_short("an answer", 0, 8)),
        (&[0, 0, 0, 0, 0, 0, 0], too_short("an answer", 7, 8)),
        (
            &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
            too_short("a connect answer", 15, 16),
        ),
        (
            &[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            too_short("an announce answer", 19, 20),
        ),
        (&[0, 0, 0, 4, 0, 0, 0, 1], UdpDecodeError::UnknownAction(4)),
    ];
    for (bytes, expected) in cases {
        assert_eq!(Response::decode(bytes, false, 50), Err(expected));
    }
}

#[test]
fn tracker_urls() {
    let u = UdpTrackerUrl::parse("udp://127.0.0.1:6969").unwrap();
    assert_eq!(u.target, Target::Addr(tracker()));
    assert!(u.url_data.is_empty());
    let u = UdpTrackerUrl::parse("udp://127.0.0.1:6969/").unwrap();
    assert!(u.url_data.is_empty());
    let u = UdpTrackerUrl::parse("udp://[::1]:80/announce?passkey=a%20b").unwrap();
    assert_eq!(u.target, Target::Addr(addr("[::1]:80")));
    assert_eq!(u.url_data, b"/announce?passkey=a%20b");
    let u = UdpTrackerUrl::parse("udp://Tracker.Example.ORG:1337/announce").unwrap();
    assert_eq!(
        u.target,
        Target::Host {
            host: "tracker.example.org".into(),
            port: 1337
        }
    );
    for (bad, why) in [
        ("udp://tracker.example.org/announce", "no port"),
        ("udp://tracker.example.org:0/", "no port"),
        ("http://tracker.example.org:80/", "not udp"),
        ("udp://:80/", "not a valid URL"),
        ("udp:/x", "no port"),
        ("nonsense", "not a valid URL"),
    ] {
        let err = UdpTrackerUrl::parse(bad).unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
    let long = format!("udp://t.example:1/{}", "a".repeat(MAX_URL_DATA));
    assert!(
        UdpTrackerUrl::parse(&long)
            .unwrap_err()
            .contains("more than")
    );
}

// ---- the client ----------------------------------------------------------------------------

#[test]
fn connect_then_announce() {
    let mut c = client(URL, 1);
    assert!(c.is_idle());
    assert_eq!(c.poll_timeout(), None);
    let request = c.announce(at(0), params(AnnounceEvent::Started));
    assert!(!c.is_idle());
    assert_eq!(c.poll_timeout(), Some(at(15)));
    let out = connect(&mut c, at(1), 0x4242);
    let a = only_announce(&out);
    assert_eq!(out[0].0, tracker());
    assert_eq!(a.connection_id, 0x4242);
    assert_eq!(a.info_hash, InfoHash([0xab; 20]));
    assert_eq!(a.peer_id, PeerId(*b"-TQ0100-abcdefghijkl"));
    assert_eq!((a.downloaded, a.left, a.uploaded), (20, 30, 10));
    assert_eq!(a.event, AnnounceEvent::Started);
    assert_eq!((a.key, a.num_want, a.port), (0xdead_beef, Some(50), 6881));
    assert_eq!(a.url_data, b"/announce");
    assert_eq!(c.poll_timeout(), Some(at(16)));
    assert!(events(&mut c).is_empty());

    let answer = announce_answer(a.transaction, &["10.0.0.1:1", "10.0.0.2:2"]);
    assert!(c.handle_datagram(at(2), tracker(), &answer));
    assert_eq!(
        events(&mut c),
        [UdpTrackerEvent::Announced {
            request,
            response: UdpAnnounceResponse {
                interval: Duration::from_secs(1800),
                leechers: 3,
                seeders: 4,
                peers: vec![addr("10.0.0.1:1"), addr("10.0.0.2:2")],
            }
        }]
    );
    assert!(c.is_idle());
    assert_eq!(c.poll_timeout(), None);
    // The same answer again is no longer ours.
    assert!(!c.handle_datagram(at(3), tracker(), &answer));
    assert!(events(&mut c).is_empty());
}

#[test]
fn connection_id_is_used_for_a_minute() {
    let mut c = client(URL, 2);
    c.announce(at(0), params(AnnounceEvent::Started));
    let out = connect(&mut c, at(0), 77);
    let t = only_announce(&out).transaction;
    assert!(c.handle_datagram(at(1), tracker(), &announce_answer(t, &[])));

    // Within the minute: straight to the announce, with the same connection id.
    c.announce(at(59), params(AnnounceEvent::None));
    let out = sent(&mut c);
    let a = only_announce(&out);
    assert_eq!(a.connection_id, 77);
    assert_ne!(a.transaction, t, "a fresh transaction id");
    assert!(c.handle_datagram(at(59), tracker(), &announce_answer(a.transaction, &[])));

    // A minute after it was received: connect again.
    c.announce(at(60), params(AnnounceEvent::None));
    let out = connect(&mut c, at(60), 78);
    assert_eq!(only_announce(&out).connection_id, 78);
}

#[test]
fn retransmits_after_15_times_2_to_the_n_seconds_then_gives_up() {
    let mut c = client(URL, 3);
    let request = c.announce(at(0), params(AnnounceEvent::Started));
    let mut sends = Vec::new();
    let mut transactions = std::collections::HashSet::new();
    let mut now = at(0);
    loop {
        for (_, r) in sent(&mut c) {
            let Request::Connect { transaction } = r else {
                panic!("only connects: nothing answers")
            };
            transactions.insert(transaction);
            sends.push(now.since_epoch().as_secs());
        }
        let events = events(&mut c);
        if !events.is_empty() {
            assert_eq!(
                events,
                [UdpTrackerEvent::Failed {
                    request,
                    error: UdpTrackerError::TimedOut { attempts: 9 }
                }]
            );
            break;
        }
        now = c.poll_timeout().expect("a retransmission is due");
        c.handle_timeout(now);
    }
    assert_eq!(sends, [0, 15, 45, 105, 225, 465, 945, 1905, 3825]);
    assert_eq!(now, at(3825 + 3840));
    assert_eq!(
        transactions.len(),
        1,
        "a retransmission repeats the transaction"
    );
    assert_eq!(c.poll_timeout(), None);
    assert!(c.is_idle());
}

#[test]
fn an_unanswered_announce_is_retransmitted_and_reconnects_once_the_id_expires() {
    let mut c = client(URL, 4);
    let request = c.announce(at(0), params(AnnounceEvent::Started));
    let out = connect(&mut c, at(0), 500);
    let first = only_announce(&out).clone();
    let resend = |c: &mut UdpTracker, secs| {
        assert_eq!(c.poll_timeout(), Some(at(secs)));
        c.handle_timeout(at(secs));
        sent(c)
    };
    // 15 s and 45 s: the connection id (received at 0) is still good.
    for secs in [15, 45] {
        let out = resend(&mut c, secs);
        assert_eq!(only_announce(&out), &first);
    }
    // 105 s: it has expired; connect first (the fourth transmission: 120 s to answer).
    let out = resend(&mut c, 105);
    let [(_, Request::Connect { transaction })] = out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(c.poll_timeout(), Some(at(225)));
    assert!(c.handle_datagram(at(106), tracker(), &connect_answer(transaction, 501)));
    let out = sent(&mut c);
    let again = only_announce(&out);
    assert_eq!(again.connection_id, 501);
    assert_eq!(again.transaction, first.transaction);
    assert_eq!(c.poll_timeout(), Some(at(226)));

    // A late answer to the first transmission still counts.
    assert!(c.handle_datagram(at(107), tracker(), &announce_answer(first.transaction, &[])));
    assert!(matches!(
        &events(&mut c)[..],
        [UdpTrackerEvent::Announced { request: r, .. }] if *r == request
    ));
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn answers_from_elsewhere_or_for_other_transactions_are_not_ours() {
    let mut c = client(URL, 5);
    c.announce(at(0), params(AnnounceEvent::Started));
    let [(_, Request::Connect { transaction })] = sent(&mut c)[..] else {
        panic!()
    };
    let answer = connect_answer(transaction, 1);
    // Another address or port, another transaction, too short to carry one.
    assert!(!c.handle_datagram(at(1), addr("127.0.0.2:6969"), &answer));
    assert!(!c.handle_datagram(at(1), addr("127.0.0.1:6970"), &answer));
    assert!(!c.handle_datagram(
        at(1),
        tracker(),
        &connect_answer(transaction.wrapping_add(1), 1)
    ));
    assert!(!c.handle_datagram(at(1), tracker(), &answer[..7]));
    assert!(sent(&mut c).is_empty());
    assert!(events(&mut c).is_empty());
    assert_eq!(c.poll_timeout(), Some(at(15)));
    // The tracker's address as an IPv4-mapped IPv6 one (a dual-stack socket) is the same.
    let mapped = SocketAddr::new(
        IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped()),
        6969,
    );
    assert!(c.handle_datagram(at(1), mapped, &answer));
    assert_eq!(sent(&mut c).len(), 1);
}

#[test]
fn wrong_action_or_malformed_answer_fails_the_request() {
    let mut c = client(URL, 6);
    let r1 = c.announce(at(0), params(AnnounceEvent::Started));
    let out = connect(&mut c, at(0), 9);
    let t = only_announce(&out).transaction;
    // A connect answer with the announce's transaction id.
    assert!(c.handle_datagram(at(1), tracker(), &connect_answer(t, 5)));
    assert_eq!(
        events(&mut c),
        [UdpTrackerEvent::Failed {
            request: r1,
            error: UdpTrackerError::Malformed("an announce answered with a connect answer".into())
        }]
    );

    let r2 = c.announce(at(2), params(AnnounceEvent::Started));
    let out = sent(&mut c);
    let t = only_announce(&out).transaction;
    let mut cut = announce_answer(t, &["10.0.0.1:1"]);
    cut.pop();
    assert!(c.handle_datagram(at(3), tracker(), &cut));
    let events = events(&mut c);
    assert!(
        matches!(&events[..], [UdpTrackerEvent::Failed { request, error: UdpTrackerError::Malformed(m) }]
            if *request == r2 && m.contains("multiple of 6")),
        "{events:?}"
    );
}

#[test]
fn error_answers_reach_the_user() {
    let mut c = client(URL, 7);
    let r1 = c.announce(at(0), params(AnnounceEvent::Started));
    let out = connect(&mut c, at(0), 9);
    let t = only_announce(&out).transaction;
    let error = Response::Error {
        transaction: t,
        message: "Requested download is not authorized for use with this tracker.".into(),
    }
    .encode(false);
    assert!(c.handle_datagram(at(1), tracker(), &error));
    let got = events(&mut c);
    assert_eq!(
        got,
        [UdpTrackerEvent::Failed {
            request: r1,
            error: UdpTrackerError::Refused(
                "Requested download is not authorized for use with this tracker.".into()
            )
        }]
    );
    let UdpTrackerEvent::Failed { error, .. } = &got[0] else {
        unreachable!()
    };
    assert_eq!(
        error.to_string(),
        "tracker refused: Requested download is not authorized for use with this tracker."
    );

    // An error in answer to the connect fails everything waiting for it.
    let mut c = client(URL, 8);
    let a = c.announce(at(0), params(AnnounceEvent::Started));
    let b = c.scrape(at(0), &[InfoHash([1; 20])]);
    let out = sent(&mut c);
    assert_eq!(out.len(), 1, "one connect for both: {out:?}");
    let Request::Connect { transaction } = out[0].1 else {
        panic!()
    };
    let error = Response::Error {
        transaction,
        message: "go away".into(),
    }
    .encode(false);
    assert!(c.handle_datagram(at(1), tracker(), &error));
    let refused = UdpTrackerError::Refused("go away".into());
    assert_eq!(
        events(&mut c),
        [
            UdpTrackerEvent::Failed {
                request: a,
                error: refused.clone()
            },
            UdpTrackerEvent::Failed {
                request: b,
                error: refused
            }
        ]
    );
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn concurrent_requests_share_one_connection() {
    let mut c = client(URL, 9);
    let a = c.announce(at(0), params(AnnounceEvent::Started));
    let mut other = params(AnnounceEvent::Started);
    other.info_hash = InfoHash([0xcd; 20]);
    let b = c.announce(at(0), other);
    let s = c.scrape(at(0), &[InfoHash([0xab; 20]), InfoHash([0xcd; 20])]);
    let out = connect(&mut c, at(1), 3);
    assert_eq!(out.len(), 3);
    let mut transactions = HashMap::new();
    for (_, r) in &out {
        match r {
            Request::Announce(x) => {
                assert_eq!(x.connection_id, 3);
                transactions.insert(x.info_hash.0[0], x.transaction);
            }
            Request::Scrape(x) => {
                assert_eq!(x.connection_id, 3);
                assert_eq!(x.info_hashes.len(), 2);
                transactions.insert(0, x.transaction);
            }
            Request::Connect { .. } => panic!(),
        }
    }
    assert_eq!(transactions.len(), 3);
    let scrape = Response::Scrape {
        transaction: transactions[&0],
        files: vec![
            ScrapeStats {
                seeders: 1,
                completed: 2,
                leechers: 3,
            },
            ScrapeStats {
                seeders: 4,
                completed: 5,
                leechers: 6,
            },
        ],
    }
    .encode(false);
    // Answered out of order.
    assert!(c.handle_datagram(at(2), tracker(), &scrape));
    assert!(c.handle_datagram(at(2), tracker(), &announce_answer(transactions[&0xcd], &[])));
    assert!(c.handle_datagram(at(2), tracker(), &announce_answer(transactions[&0xab], &[])));
    let events = events(&mut c);
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[0],
        UdpTrackerEvent::Scraped {
            request: s,
            files: vec![
                (
                    InfoHash([0xab; 20]),
                    ScrapeStats {
                        seeders: 1,
                        completed: 2,
                        leechers: 3
                    }
                ),
                (
                    InfoHash([0xcd; 20]),
                    ScrapeStats {
                        seeders: 4,
                        completed: 5,
                        leechers: 6
                    }
                ),
            ]
        }
    );
    assert!(matches!(events[1], UdpTrackerEvent::Announced { request, .. } if request == b));
    assert!(matches!(events[2], UdpTrackerEvent::Announced { request, .. } if request == a));
}

#[test]
fn scrapes_at_most_74_hashes() {
    let mut c = client(URL, 10);
    let hashes: Vec<InfoHash> = (0..100u8).map(|i| InfoHash([i; 20])).collect();
    c.scrape(at(0), &hashes);
    let out = connect(&mut c, at(0), 1);
    let [(_, Request::Scrape(s))] = &out[..] else {
        panic!()
    };
    assert_eq!(s.info_hashes, hashes[..MAX_SCRAPE]);
}

#[test]
fn host_names_are_resolved_through_the_caller() {
    let url = "udp://tracker.example.org:1337/announce";
    let mut c = client(url, 11);
    let r = c.announce(at(0), params(AnnounceEvent::Started));
    assert_eq!(
        events(&mut c),
        [UdpTrackerEvent::Resolve {
            host: "tracker.example.org".into(),
            port: 1337
        }]
    );
    assert!(
        sent(&mut c).is_empty(),
        "nothing sent before the address is known"
    );
    assert_eq!(c.address(), None);
    assert_eq!(c.poll_timeout(), Some(at(60)));
    // Not ours while resolving, whoever sends it.
    assert!(!c.handle_datagram(at(1), addr("10.1.1.1:1337"), &connect_answer(0, 0)));

    c.handle_resolved(
        at(2),
        Ok(vec![
            "10.1.1.1".parse().unwrap(),
            "10.2.2.2".parse().unwrap(),
        ]),
    );
    assert_eq!(c.address(), Some(addr("10.1.1.1:1337")));
    let out = sent(&mut c);
    let [(to, Request::Connect { transaction })] = out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(to, addr("10.1.1.1:1337"));
    assert!(!c.handle_datagram(
        at(3),
        addr("10.2.2.2:1337"),
        &connect_answer(transaction, 1)
    ));
    assert!(c.handle_datagram(
        at(3),
        addr("10.1.1.1:1337"),
        &connect_answer(transaction, 1)
    ));
    let out = sent(&mut c);
    let t = only_announce(&out).transaction;
    assert!(c.handle_datagram(at(4), addr("10.1.1.1:1337"), &announce_answer(t, &[])));
    assert!(
        matches!(&events(&mut c)[..], [UdpTrackerEvent::Announced { request, .. }] if *request == r)
    );

    // The address is kept for the next request.
    c.announce(at(10), params(AnnounceEvent::None));
    assert!(events(&mut c).is_empty());
    assert_eq!(sent(&mut c).len(), 1);
}

#[test]
fn resolution_failures_fail_the_requests() {
    let url = "udp://tracker.example.org:1337";
    let mut c = client(url, 12);
    let r = c.announce(at(0), params(AnnounceEvent::Started));
    events(&mut c);
    c.handle_resolved(at(1), Err("NXDOMAIN".into()));
    assert_eq!(
        events(&mut c),
        [UdpTrackerEvent::Failed {
            request: r,
            error: UdpTrackerError::Unresolved {
                host: "tracker.example.org".into(),
                reason: "NXDOMAIN".into()
            }
        }]
    );
    // A late answer to a look-up nobody waits for is ignored.
    c.handle_resolved(at(2), Ok(vec!["10.0.0.1".parse().unwrap()]));
    assert_eq!(c.address(), None);

    // No addresses, then no answer at all.
    let r = c.announce(at(3), params(AnnounceEvent::Started));
    assert!(matches!(
        &events(&mut c)[..],
        [UdpTrackerEvent::Resolve { .. }]
    ));
    c.handle_resolved(at(4), Ok(Vec::new()));
    assert!(matches!(&events(&mut c)[..],
        [UdpTrackerEvent::Failed { request, error: UdpTrackerError::Unresolved { reason, .. } }]
            if *request == r && reason == "no addresses"));
    let r = c.announce(at(5), params(AnnounceEvent::Started));
    assert!(matches!(
        &events(&mut c)[..],
        [UdpTrackerEvent::Resolve { .. }]
    ));
    c.handle_timeout(at(64));
    assert!(events(&mut c).is_empty());
    c.handle_timeout(at(65));
    assert!(matches!(&events(&mut c)[..],
        [UdpTrackerEvent::Failed { request, error: UdpTrackerError::Unresolved { .. } }] if *request == r));
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_give_up_makes_the_next_request_resolve_the_name_again() {
    let config = UdpTrackerConfig {
        max_retransmits: 1,
        ..UdpTrackerConfig::default()
    };
    let mut c = UdpTracker::new("udp://t.example:1", config, Rng::from_u64(13)).unwrap();
    let r = c.announce(at(0), params(AnnounceEvent::Started));
    events(&mut c);
    c.handle_resolved(at(0), Ok(vec!["10.0.0.1".parse().unwrap()]));
    assert_eq!(sent(&mut c).len(), 1);
    c.handle_timeout(at(15));
    assert_eq!(sent(&mut c).len(), 1);
    c.handle_timeout(at(45));
    assert_eq!(
        events(&mut c),
        [UdpTrackerEvent::Failed {
            request: r,
            error: UdpTrackerError::TimedOut { attempts: 2 }
        }]
    );
    assert_eq!(c.address(), None);
    c.announce(at(50), params(AnnounceEvent::Started));
    assert!(matches!(
        &events(&mut c)[..],
        [UdpTrackerEvent::Resolve { .. }]
    ));
}

#[test]
fn cancelled_requests_are_forgotten() {
    let mut c = client(URL, 14);
    let r = c.announce(at(0), params(AnnounceEvent::Started));
    let [(_, Request::Connect { transaction })] = sent(&mut c)[..] else {
        panic!()
    };
    c.cancel(r);
    assert!(c.is_idle());
    assert_eq!(c.poll_timeout(), None, "the connect is not retransmitted");
    assert!(!c.handle_datagram(at(1), tracker(), &connect_answer(transaction, 1)));

    let r = c.announce(at(2), params(AnnounceEvent::Started));
    let out = connect(&mut c, at(2), 2);
    let t = only_announce(&out).transaction;
    c.cancel(r);
    assert!(!c.handle_datagram(at(3), tracker(), &announce_answer(t, &[])));
    assert!(events(&mut c).is_empty());
}

#[test]
fn an_ipv6_tracker_sends_18_byte_peers() {
    let mut c = client("udp://[::1]:6969", 15);
    let ip6 = addr("[::1]:6969");
    c.announce(at(0), params(AnnounceEvent::Started));
    let [(to, Request::Connect { transaction })] = sent(&mut c)[..] else {
        panic!()
    };
    assert_eq!(to, ip6);
    let connect = Response::Connect {
        transaction,
        connection_id: 1,
    }
    .encode(true);
    assert!(c.handle_datagram(at(0), ip6, &connect));
    let out = sent(&mut c);
    let t = only_announce(&out).transaction;
    let answer = Response::Announce {
        transaction: t,
        answer: UdpAnnounceResponse {
            interval: Duration::from_secs(60),
            leechers: 0,
            seeders: 1,
            peers: vec![addr("[2001:db8::1]:6881"), addr("[::1]:51413")],
        },
    }
    .encode(true);
    assert_eq!(answer.len(), 20 + 2 * 18);
    assert!(c.handle_datagram(at(1), ip6, &answer));
    let got = events(&mut c);
    let [UdpTrackerEvent::Announced { response, .. }] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(
        response.peers,
        [addr("[2001:db8::1]:6881"), addr("[::1]:51413")]
    );
}

#[test]
fn transaction_ids_come_from_the_seed() {
    let run = |seed| {
        let mut c = client(URL, seed);
        c.announce(at(0), params(AnnounceEvent::Started));
        let out = connect(&mut c, at(0), 1);
        out.into_iter().map(|(_, r)| r.encode()).collect::<Vec<_>>()
    };
    assert_eq!(run(20), run(20));
    assert_ne!(run(20), run(21));
}

#[test]
fn converts_to_the_schedules_answer() {
    let r = AnnounceResponse::from(UdpAnnounceResponse {
        interval: Duration::from_secs(900),
        leechers: 2,
        seeders: 3,
        peers: vec![addr("10.0.0.1:1")],
    });
    assert_eq!(r.interval, Some(Duration::from_secs(900)));
    assert_eq!((r.complete, r.incomplete), (Some(3), Some(2)));
    assert_eq!(r.peers, [addr("10.0.0.1:1")]);
    let r = AnnounceResponse::from(UdpAnnounceResponse {
        interval: Duration::ZERO,
        leechers: 0,
        seeders: 0,
        peers: Vec::new(),
    });
    assert_eq!(r.interval, None);
}

// ---- properties ----------------------------------------------------------------------------

fn arb_event() -> impl Strategy<Value = AnnounceEvent> {
    prop_oneof![
        Just(AnnounceEvent::None),
        Just(AnnounceEvent::Started),
        Just(AnnounceEvent::Completed),
        Just(AnnounceEvent::Stopped),
    ]
}

fn arb_request() -> impl Strategy<Value = Request> {
    let count = 0..=i64::MAX as u64;
    let announce = (
        (
            any::<u64>(),
            any::<u32>(),
            any::<[u8; 20]>(),
            any::<[u8; 20]>(),
        ),
        (count.clone(), count.clone(), count, arb_event()),
        (
            proptest::option::of(any::<u32>().prop_filter("not 0", |&n| n != 0)),
            any::<u32>(),
            proptest::option::of(0..=i32::MAX as u32),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..600),
        ),
    )
        .prop_map(
            |(
                (connection_id, transaction, hash, id),
                (downloaded, left, uploaded, event),
                (ip, key, num_want, port, url_data),
            )| {
                Request::Announce(AnnounceRequest {
                    connection_id,
                    transaction,
                    info_hash: InfoHash(hash),
                    peer_id: PeerId(id),
                    downloaded,
                    left,
                    uploaded,
                    event,
                    ip: ip.map(Ipv4Addr::from),
                    key,
                    num_want,
                    port,
                    url_data,
                })
            },
        );
    prop_oneof![
        any::<u32>().prop_map(|transaction| Request::Connect { transaction }),
        announce,
        (
            any::<u64>(),
            any::<u32>(),
            proptest::collection::vec(any::<[u8; 20]>(), 0..80)
        )
            .prop_map(|(connection_id, transaction, hashes)| {
                Request::Scrape(ScrapeRequest {
                    connection_id,
                    transaction,
                    info_hashes: hashes.into_iter().map(InfoHash).collect(),
                })
            }),
    ]
}

/// Answers as a decoder gives them: peers of the family, distinct, usable.
fn arb_response(ipv6: bool) -> impl Strategy<Value = Response> {
    let peer = if ipv6 {
        (any::<[u8; 16]>(), 1..=u16::MAX)
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port))
            .boxed()
    } else {
        (any::<[u8; 4]>(), 1..=u16::MAX)
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port))
            .boxed()
    };
    let peers = proptest::collection::vec(peer, 0..50).prop_map(|mut peers| {
        let mut seen = std::collections::HashSet::new();
        peers.retain(|p| !p.ip().is_unspecified() && seen.insert(*p));
        peers
    });
    prop_oneof![
        (any::<u32>(), any::<u64>()).prop_map(|(transaction, connection_id)| Response::Connect {
            transaction,
            connection_id
        }),
        (
            any::<u32>(),
            0..=MAX_INTERVAL.as_secs(),
            any::<u32>(),
            any::<u32>(),
            peers
        )
            .prop_map(|(transaction, secs, leechers, seeders, peers)| {
                Response::Announce {
                    transaction,
                    answer: UdpAnnounceResponse {
                        interval: Duration::from_secs(secs),
                        leechers,
                        seeders,
                        peers,
                    },
                }
            }),
        (
            any::<u32>(),
            proptest::collection::vec(any::<(u32, u32, u32)>(), 0..80)
        )
            .prop_map(|(transaction, files)| Response::Scrape {
                transaction,
                files: files
                    .into_iter()
                    .map(|(seeders, completed, leechers)| ScrapeStats {
                        seeders,
                        completed,
                        leechers
                    })
                    .collect(),
            }),
        (any::<u32>(), "[ -~]{0,200}").prop_map(|(transaction, message)| Response::Error {
            transaction,
            message
        }),
    ]
}

/// Steps of a run of the client against a tracker that answers (or not) at random.
#[derive(Debug, Clone)]
enum Step {
    Announce,
    Scrape(u8),
    Cancel(u8),
    /// Answer the n-th outstanding transmission with this kind of answer.
    Answer(u8, u8, Vec<u8>),
    /// Bytes from the tracker's address.
    Garbage(Vec<u8>),
    Wait(u16),
    Timeout,
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Announce),
        any::<u8>().prop_map(Step::Scrape),
        any::<u8>().prop_map(Step::Cancel),
        (
            any::<u8>(),
            0u8..6,
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(i, k, b)| Step::Answer(i, k, b)),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Step::Garbage),
        any::<u16>().prop_map(Step::Wait),
        Just(Step::Timeout),
    ]
}

enum StepKind {
    Timeout,
    Other,
}

proptest! {
    #[test]
    fn answers_never_panic_and_decode_stably(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ipv6 in any::<bool>(),
        max in 0usize..60,
    ) {
        if let Ok(r) = Response::decode(&bytes, ipv6, max) {
            if let Response::Announce { answer, .. } = &r {
                prop_assert!(answer.peers.len() <= max);
            }
            prop_assert_eq!(Response::decode(&r.encode(ipv6), ipv6, max), Ok(r));
        }
    }

    #[test]
    fn requests_never_panic_and_decode_stably(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(r) = Request::decode(&bytes) {
            prop_assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn requests_round_trip(r in arb_request()) {
        prop_assert_eq!(Request::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn answers_round_trip(r in any::<bool>().prop_flat_map(|v6| arb_response(v6).prop_map(move |r| (v6, r)))) {
        let (family, r) = r;
        prop_assert_eq!(Response::decode(&r.encode(family), family, usize::MAX), Ok(r));
    }

    /// Whatever the tracker (or anyone at its address) sends and whenever, the client does
    /// not panic, keeps its deadlines in the future, sends only well-formed requests, and
    /// every request ends with exactly one event once time runs out.
    #[test]
    fn client_survives_anything(steps in proptest::collection::vec(arb_step(), 0..60), seed in any::<u64>()) {
        let mut c = client(URL, seed);
        let mut now = at(0);
        let mut requests = Vec::new();
        let mut cancelled = std::collections::HashSet::new();
        let mut ended: HashMap<UdpRequestId, usize> = HashMap::new();
        let mut in_flight: Vec<Request> = Vec::new();
        let drain = |c: &mut UdpTracker, in_flight: &mut Vec<Request>, ended: &mut HashMap<UdpRequestId, usize>| -> Result<(), TestCaseError> {
            while let Some((to, bytes)) = c.poll_transmit() {
                prop_assert_eq!(to, tracker());
                let r = Request::decode(&bytes);
                prop_assert!(r.is_ok(), "{:?}", r);
                in_flight.push(r.unwrap());
            }
            while let Some(e) = c.poll_event() {
                match e {
                    UdpTrackerEvent::Announced { request, .. }
                    | UdpTrackerEvent::Scraped { request, .. }
                    | UdpTrackerEvent::Failed { request, .. } => {
                        *ended.entry(request).or_default() += 1;
                    }
                    UdpTrackerEvent::Resolve { .. } => prop_assert!(false, "no name to resolve"),
                }
            }
            Ok(())
        };
        for step in steps {
            let step_kind = if matches!(step, Step::Timeout) { StepKind::Timeout } else { StepKind::Other };
            match step {
                Step::Announce => requests.push(c.announce(now, params(AnnounceEvent::None))),
                Step::Scrape(n) => requests.push(c.scrape(now, &vec![InfoHash([n; 20]); usize::from(n % 3) + 1])),
                Step::Cancel(i) => {
                    if !requests.is_empty() {
                        let r = requests[usize::from(i) % requests.len()];
                        if !ended.contains_key(&r) {
                            cancelled.insert(r);
                        }
                        c.cancel(r);
                    }
                }
                Step::Answer(i, kind, tail) => {
                    if !in_flight.is_empty() {
                        let t = in_flight[usize::from(i) % in_flight.len()].transaction();
                        let mut bytes = match kind {
                            0 => connect_answer(t, u64::from(i)),
                            1 => announce_answer(t, &["10.0.0.1:1"]),
                            2 => Response::Scrape { transaction: t, files: vec![ScrapeStats::default(); 2] }.encode(false),
                            3 => Response::Error { transaction: t, message: "no".into() }.encode(false),
                            _ => [&[0, 0, 0, kind][..], &t.to_be_bytes()].concat(),
                        };
                        bytes.extend_from_slice(&tail[..tail.len() % 7]);
                        c.handle_datagram(now, tracker(), &bytes);
                    }
                }
                Step::Garbage(bytes) => {
                    c.handle_datagram(now, tracker(), &bytes);
                }
                Step::Wait(ms) => now += Duration::from_millis(u64::from(ms) * 50),
                Step::Timeout => {
                    if let Some(t) = c.poll_timeout() {
                        now = now.max(t);
                    }
                    c.handle_timeout(now);
                }
            }
            drain(&mut c, &mut in_flight, &mut ended)?;
            if matches!(step_kind, StepKind::Timeout) {
                let next = c.poll_timeout();
                prop_assert!(next.is_none_or(|t| t > now), "deadline {:?} at {:?}", next, now);
            }
        }
        // Let time run out: every request ends.
        let mut rounds = 0;
        while let Some(t) = c.poll_timeout() {
            now = now.max(t);
            c.handle_timeout(now);
            drain(&mut c, &mut in_flight, &mut ended)?;
            rounds += 1;
            prop_assert!(rounds < 1000, "no end");
        }
        prop_assert!(c.is_idle());
        for r in &requests {
            let n = ended.get(r).copied().unwrap_or(0);
            if cancelled.contains(r) {
                prop_assert!(n <= 1);
            } else {
                prop_assert_eq!(n, 1, "request {:?}", r);
            }
        }
    }
}
