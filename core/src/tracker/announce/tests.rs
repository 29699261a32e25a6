use super::*;
use proptest::prelude::*;

fn params() -> AnnounceParams {
    let mut hash = [0u8; 20];
    hash[..6].copy_from_slice(&[0x00, 0x20, 0x25, 0x2B, 0xFF, b'a']);
    hash[6..].copy_from_slice(b"Zz09.-_~/?&=#!");
    AnnounceParams {
        info_hash: InfoHash(hash),
        peer_id: PeerId(*b"-TQ0100-abcdef123456"),
        port: 6881,
        uploaded: 10,
        downloaded: 20,
        left: 1234567890123,
        event: AnnounceEvent::Started,
        numwant: Some(50),
        key: 0x00ab_cdef,
        tracker_id: Some(b"t 1".to_vec()),
    }
}

#[test]
fn url_encoding_matches_hand_written_string() {
    assert_eq!(
        announce_url("http://t.example:6969/announce", &params()),
        "http://t.example:6969/announce?\
         info_hash=%00%20%25%2B%FFaZz09.-_~%2F%3F%26%3D%23%21\
         &peer_id=-TQ0100-abcdef123456\
         &port=6881&uploaded=10&downloaded=20&left=1234567890123&compact=1&key=00ABCDEF\
         &numwant=50&event=started&trackerid=t%201"
    );
}

#[test]
fn optional_parameters_and_existing_query() {
    let mut p = params();
    p.event = AnnounceEvent::None;
    p.numwant = None;
    p.tracker_id = None;
    let url = announce_url("http://t/a?passkey=abc#frag", &p);
    assert!(
        url.starts_with("http://t/a?passkey=abc&info_hash=%00"),
        "{url}"
    );
    assert!(url.ends_with("&compact=1&key=00ABCDEF"), "{url}");
    assert!(announce_url("http://t/a?", &p).starts_with("http://t/a?info_hash="));
    assert!(announce_url("http://t/a?x=1&", &p).starts_with("http://t/a?x=1&info_hash="));
    for (event, text) in [
        (AnnounceEvent::Completed, "&event=completed"),
        (AnnounceEvent::Stopped, "&event=stopped"),
    ] {
        p.event = event;
        assert!(announce_url("http://t/a", &p).ends_with(text));
    }
}

fn compact_v4(peers: &[([u8; 4], u16)]) -> Vec<u8> {
    peers
        .iter()
        .flat_map(|(ip, port)| [&ip[..], &port.to_be_bytes()].concat())
        .collect()
}

/// `d...e` with the given already-encoded entries (keys must be sorted).
fn dict(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"d".to_vec();
    for (k, v) in entries {
        out.extend_from_slice(format!("{}:{k}", k.len()).as_bytes());
        out.extend_from_slice(v);
    }
    out.push(b'e');
    out
}

fn string(bytes: &[u8]) -> Vec<u8> {
    [format!("{}:", bytes.len()).as_bytes(), bytes].concat()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn compact_peers_and_fields() {
    let peers = compact_v4(&[([10, 0, 0, 1], 6881), ([192, 168, 1, 2], 51413)]);
    let body = dict(&[
        ("complete", b"i5e"),
        ("incomplete", b"i7e"),
        ("interval", b"i1800e"),
        ("peers", &string(&peers)),
        ("tracker id", b"3:abc"),
    ]);
    let r = AnnounceResponse::parse(&body, 50).unwrap();
    assert_eq!(
        r,
        AnnounceResponse {
            interval: Some(Duration::from_secs(1800)),
            min_interval: None,
            peers: vec![addr("10.0.0.1:6881"), addr("192.168.1.2:51413")],
            warning: None,
            tracker_id: Some(b"abc".to_vec()),
            complete: Some(5),
            incomplete: Some(7),
        }
    );
}

#[test]
fn dictionary_peers_skip_garbage() {
    let peer = |ip: &str, port: &[u8]| dict(&[("ip", &string(ip.as_bytes())), ("port", port)]);
    let with_id = dict(&[
        ("ip", &string(b"10.0.0.1")),
        ("peer id", &string(&[b'a'; 20])),
        ("port", b"i1000e"),
    ]);
    let entries = [
        with_id,
        peer("2001:db8::1", b"i2000e"),
        peer("[2001:db8::2]", b"i3000e"),
        peer("tracker.example", b"i4000e"),
        peer("10.0.0.2", b"i70000e"),
        peer("10.0.0.3", b"4:5000"),
        peer("10.0.0.5", b"i-1e"),
        dict(&[("port", b"i6000e")]),
        b"i42e".to_vec(),
        peer("10.0.0.4", b"i7000e"),
    ];
    let body = dict(&[("peers", &[&b"l"[..], &entries.concat(), b"e"].concat())]);
    let r = AnnounceResponse::parse(&body, 50).unwrap();
    assert_eq!(
        r.peers,
        vec![
            addr("10.0.0.1:1000"),
            addr("[2001:db8::1]:2000"),
            addr("[2001:db8::2]:3000"),
            addr("10.0.0.4:7000"),
        ]
    );
}

#[test]
fn peers6_after_peers() {
    let mut v6 = Vec::new();
    v6.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    v6.extend_from_slice(&6881u16.to_be_bytes());
    v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    v6.extend_from_slice(&80u16.to_be_bytes());
    let v4 = compact_v4(&[([1, 2, 3, 4], 5)]);
    let body = dict(&[("peers", &string(&v4)), ("peers6", &string(&v6))]);
    let r = AnnounceResponse::parse(&body, 50).unwrap();
    assert_eq!(
        r.peers,
        vec![
            addr("1.2.3.4:5"),
            addr("[2001:db8::7]:6881"),
            addr("[::1]:80")
        ]
    );
    // peers6 alone, without peers.
    let r = AnnounceResponse::parse(&dict(&[("peers6", &string(&v6))]), 1).unwrap();
    assert_eq!(r.peers, vec![addr("[2001:db8::7]:6881")]);
}

#[test]
fn failure_reason_wins() {
    let body = dict(&[
        ("failure reason", b"17:torrent not found"),
        ("peers", b"0:"),
    ]);
    assert_eq!(
        AnnounceResponse::parse(&body, 50),
        Err(AnnounceError::Failure("torrent not found".into()))
    );
    let body = dict(&[("failure reason", b"i3e")]);
    assert!(matches!(
        AnnounceResponse::parse(&body, 50),
        Err(AnnounceError::Failure(_))
    ));
}

#[test]
fn warning_and_min_interval() {
    let body = dict(&[
        ("interval", b"i900e"),
        ("min interval", b"i300e"),
        ("peers", b"0:"),
        ("warning message", b"10:slow down!"),
    ]);
    let r = AnnounceResponse::parse(&body, 50).unwrap();
    assert_eq!(r.warning.as_deref(), Some("slow down!"));
    assert_eq!(r.interval, Some(Duration::from_secs(900)));
    assert_eq!(r.min_interval, Some(Duration::from_secs(300)));
    assert!(r.peers.is_empty());
}

#[test]
fn absurd_intervals_clamped_or_ignored() {
    let body = dict(&[
        ("complete", b"i-1e"),
        ("interval", b"i9999999999e"),
        ("min interval", b"i-5e"),
    ]);
    let r = AnnounceResponse::parse(&body, 50).unwrap();
    assert_eq!(r.interval, Some(MAX_INTERVAL));
    assert_eq!(r.min_interval, None);
    assert_eq!(r.complete, None);
    let r = AnnounceResponse::parse(&dict(&[("interval", b"i0e")]), 50).unwrap();
    assert_eq!(r.interval, None);
    let r = AnnounceResponse::parse(&dict(&[("interval", b"4:1800")]), 50).unwrap();
    assert_eq!(r.interval, None);
}

#[test]
fn duplicates_port_zero_and_unspecified_dropped() {
    let peers = compact_v4(&[
        ([10, 0, 0, 1], 1),
        ([10, 0, 0, 2], 0),
        ([10, 0, 0, 1], 1),
        ([0, 0, 0, 0], 5),
        ([10, 0, 0, 1], 2),
    ]);
    let r = AnnounceResponse::parse(&dict(&[("peers", &string(&peers))]), 50).unwrap();
    assert_eq!(r.peers, vec![addr("10.0.0.1:1"), addr("10.0.0.1:2")]);
}

#[test]
fn thousands_of_peers_truncated_to_max() {
    let many: Vec<([u8; 4], u16)> = (0..5000u32)
        .map(|i| {
            let b = i.to_be_bytes();
            ([10, b[1], b[2], b[3]], 6881)
        })
        .collect();
    let body = dict(&[("peers", &string(&compact_v4(&many)))]);
    let r = AnnounceResponse::parse(&body, 200).unwrap();
    assert_eq!(r.peers.len(), 200);
    assert_eq!(r.peers[0], addr("10.0.0.0:6881"));
    assert_eq!(r.peers[199], addr("10.0.0.199:6881"));

    let mut list = b"d5:peersl".to_vec();
    for i in 0..5000 {
        let ip = format!("10.1.{}.{}", i / 256, i % 256);
        list.extend_from_slice(format!("d2:ip{}:{ip}4:porti1ee", ip.len()).as_bytes());
    }
    list.extend_from_slice(b"ee");
    let r = AnnounceResponse::parse(&list, 30).unwrap();
    assert_eq!(r.peers.len(), 30);
    assert_eq!(r.peers[29], addr("10.1.0.29:1"));
    assert!(AnnounceResponse::parse(&list, 0).unwrap().peers.is_empty());
}

#[test]
fn malformed_responses() {
    let cases: [(&[u8], &str); 8] = [
        (b"", "not bencode"),
        (b"d5:peers", "not bencode"),
        (b"le", "list, not a dictionary"),
        (b"i1e", "integer, not a dictionary"),
        (b"d5:peersi1ee", "peers is a integer"),
        (b"d5:peersdee", "peers is a dictionary"),
        (b"d5:peers7:abcdefge", "not a multiple of 6"),
        (b"d6:peers66:abcdefe", "not a multiple of 18"),
    ];
    for (body, needle) in cases {
        match AnnounceResponse::parse(body, 50) {
            Err(AnnounceError::Malformed(msg)) => assert!(msg.contains(needle), "{msg}"),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(body)),
        }
    }
    assert!(matches!(
        AnnounceResponse::parse(b"d6:peers6le", 50),
        Err(AnnounceError::Malformed(_))
    ));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), max in 0usize..8) {
        if let Ok(r) = AnnounceResponse::parse(&bytes, max) {
            prop_assert!(r.peers.len() <= max);
        }
    }

    #[test]
    fn arbitrary_compact_peers_never_panic(peers in prop::collection::vec(any::<u8>(), 0..300), max in 0usize..64) {
        let body = dict(&[("peers", &string(&peers)), ("peers6", &string(&peers))]);
        match AnnounceResponse::parse(&body, max) {
            Ok(r) => {
                prop_assert!(peers.len() % 18 == 0);
                prop_assert!(r.peers.len() <= max);
                let unique: HashSet<_> = r.peers.iter().collect();
                prop_assert_eq!(unique.len(), r.peers.len());
                prop_assert!(r.peers.iter().all(|p| p.port() != 0));
            }
            Err(e) => prop_assert!(matches!(e, AnnounceError::Malformed(_))),
        }
    }
}
