use proptest::prelude::*;

use super::*;

fn at(secs: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(secs)
}

/// Deterministic bytes standing in for an info dictionary.
fn info_bytes(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn hash_of(info: &[u8]) -> InfoHash {
    InfoHash(Sha1::digest(info).into())
}

fn c(n: u64) -> ConnId {
    ConnId(n)
}

fn requests(a: &mut MetadataAssembler) -> Vec<(ConnId, u32)> {
    std::iter::from_fn(|| a.poll_transmit())
        .map(|(conn, m)| match m {
            MetadataMessage::Request { piece } => (conn, piece),
            other => panic!("the assembler only requests: {other:?}"),
        })
        .collect()
}

fn events(a: &mut MetadataAssembler) -> Vec<MetadataEvent> {
    std::iter::from_fn(|| a.poll_event()).collect()
}

fn data(info: &Bytes, piece: u32) -> MetadataMessage {
    serve(Some(info), &MetadataMessage::Request { piece }).unwrap()
}

/// `info` with one byte of `piece` changed.
fn lie(info: &Bytes, piece: u32) -> MetadataMessage {
    let MetadataMessage::Data {
        piece,
        total_size,
        data,
    } = data(info, piece)
    else {
        unreachable!()
    };
    let mut bad = data.to_vec();
    bad[0] ^= 0xff;
    MetadataMessage::Data {
        piece,
        total_size,
        data: bad.into(),
    }
}

// ---- codec ---------------------------------------------------------------------------------

#[test]
fn messages_on_the_wire() {
    let cases: [(MetadataMessage, &[u8]); 4] = [
        (
            MetadataMessage::Request { piece: 0 },
            b"d8:msg_typei0e5:piecei0ee",
        ),
        (
            MetadataMessage::Reject { piece: 7 },
            b"d8:msg_typei2e5:piecei7ee",
        ),
        (
            MetadataMessage::Data {
                piece: 1,
                total_size: 34256,
                data: Bytes::from_static(b"xxxx"),
            },
            b"d8:msg_typei1e5:piecei1e10:total_sizei34256eexxxx",
        ),
        (MetadataMessage::Unknown { msg_type: 9 }, b"d8:msg_typei9ee"),
    ];
    for (message, bytes) in cases {
        assert_eq!(message.encode(), bytes);
        assert_eq!(
            MetadataMessage::decode(&Bytes::from_static(bytes)),
            Ok(message)
        );
    }
}

#[test]
fn data_is_a_slice_of_the_payload() {
    let payload = MetadataMessage::Data {
        piece: 0,
        total_size: 5,
        data: Bytes::from_static(b"hello"),
    }
    .encode();
    let Ok(MetadataMessage::Data { data, .. }) = MetadataMessage::decode(&payload) else {
        panic!()
    };
    assert_eq!(data, b"hello"[..]);
    assert_eq!(data.as_ptr(), payload[payload.len() - 5..].as_ptr());
}

#[test]
fn tolerant_of_extra_keys_strict_about_the_rest() {
    // Extra keys (some clients send total_size in rejects) are ignored.
    assert_eq!(
        MetadataMessage::decode(&Bytes::from_static(
            b"d8:msg_typei2e5:piecei3e10:total_sizei5ee"
        )),
        Ok(MetadataMessage::Reject { piece: 3 })
    );
    let long = [
        &b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee"[..],
        &[0u8; PIECE_LEN + 1],
    ]
    .concat();
    for (bad, why) in [
        (&b""[..], "empty"),
        (b"le", "not a dictionary"),
        (b"d5:piecei0ee", "msg_type"),
        (b"d8:msg_type1:0e", "msg_type"),
        (b"d8:msg_typei0ee", "piece"),
        (b"d8:msg_typei0e5:piecei-1ee", "out of range"),
        (b"d8:msg_typei0e5:piecei4294967296ee", "out of range"),
        (b"d8:msg_typei0e5:piecei0eexx", "after a request"),
        (b"d8:msg_typei2e5:piecei0eex", "after a reject"),
        (b"d8:msg_typei1e5:piecei0eexx", "total_size"),
        (
            b"d8:msg_typei1e5:piecei0e10:total_sizei0eex",
            "total_size 0",
        ),
        (
            b"d8:msg_typei1e5:piecei0e10:total_sizei-3eex",
            "total_size -3",
        ),
        (&long, "more than a piece"),
        (b"d8:msg_typei1e5:piece", "malformed"),
    ] {
        let err = MetadataMessage::decode(&Bytes::copy_from_slice(bad)).unwrap_err();
        assert!(
            err.0.contains(why),
            "{:?}: {err}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn serving_our_metadata() {
    let info = info_bytes(2 * PIECE_LEN + 100, 1);
    assert_eq!(num_pieces(info.len() as u64), 3);
    let MetadataMessage::Data {
        piece,
        total_size,
        data,
    } = serve(Some(&info), &MetadataMessage::Request { piece: 2 }).unwrap()
    else {
        panic!()
    };
    assert_eq!((piece, total_size), (2, info.len() as u64));
    assert_eq!(data, info[2 * PIECE_LEN..]);
    let MetadataMessage::Data { data, .. } = data_of(&info, 0) else {
        panic!()
    };
    assert_eq!(data, info[..PIECE_LEN]);
    for (info, piece) in [(Some(&info), 3), (Some(&info), u32::MAX), (None, 0)] {
        assert_eq!(
            serve(info, &MetadataMessage::Request { piece }),
            Some(MetadataMessage::Reject { piece })
        );
    }
    assert_eq!(
        serve(Some(&info), &MetadataMessage::Reject { piece: 0 }),
        None
    );
    let exact = info_bytes(PIECE_LEN, 2);
    assert_eq!(num_pieces(PIECE_LEN as u64), 1);
    assert_eq!(piece_len(PIECE_LEN as u64, 0), PIECE_LEN);
    assert_eq!(piece_len(PIECE_LEN as u64, 1), 0);
    assert!(matches!(
        serve(Some(&exact), &MetadataMessage::Request { piece: 1 }),
        Some(MetadataMessage::Reject { .. })
    ));
}

fn data_of(info: &Bytes, piece: u32) -> MetadataMessage {
    data(info, piece)
}

// ---- fetching ------------------------------------------------------------------------------

#[test]
fn pieces_from_several_peers_at_once() {
    let info = info_bytes(5 * PIECE_LEN + 1, 3);
    let size = info.len() as u64;
    let mut a = MetadataAssembler::new(hash_of(&info), AssemblerConfig::default());
    a.add_peer(at(0), c(1), Some(size)).unwrap();
    // The first peer gets as many as it may have outstanding.
    assert_eq!(
        requests(&mut a),
        [(c(1), 0), (c(1), 1), (c(1), 2), (c(1), 3)]
    );
    a.add_peer(at(0), c(2), Some(size)).unwrap();
    assert_eq!(requests(&mut a), [(c(2), 4), (c(2), 5)]);
    assert_eq!(a.size(), Some(size));
    assert_eq!(a.progress(), (0, 6));
    for (conn, piece) in [(1, 3), (2, 5), (1, 0), (2, 4), (1, 2)] {
        a.handle_message(at(1), c(conn), &data(&info, piece))
            .unwrap();
    }
    assert!(requests(&mut a).is_empty());
    assert_eq!(a.progress(), (5, 6));
    assert!(events(&mut a).is_empty());
    assert_eq!(a.poll_timeout(), Some(at(30)));
    a.handle_message(at(2), c(1), &data(&info, 1)).unwrap();
    assert_eq!(events(&mut a), [MetadataEvent::Complete(info.clone())]);
    assert!(a.is_complete());
    assert_eq!(a.poll_timeout(), None);
    // After completion everything is ignored.
    a.handle_message(at(3), c(2), &data(&info, 1)).unwrap();
    a.add_peer(at(3), c(3), Some(size)).unwrap();
    assert!(requests(&mut a).is_empty());
    assert!(events(&mut a).is_empty());
}

#[test]
fn rejects_go_to_other_peers_and_the_rejecter_rests() {
    let info = info_bytes(PIECE_LEN + 10, 4);
    let size = info.len() as u64;
    let config = AssemblerConfig {
        requests_per_peer: 1,
        ..AssemblerConfig::default()
    };
    let mut a = MetadataAssembler::new(hash_of(&info), config);
    a.add_peer(at(0), c(1), Some(size)).unwrap();
    a.add_peer(at(0), c(2), Some(size)).unwrap();
    assert_eq!(requests(&mut a), [(c(1), 0), (c(2), 1)]);
    a.handle_message(at(1), c(1), &MetadataMessage::Reject { piece: 0 })
        .unwrap();
    // Peer 2 is busy, peer 1 rests: nothing to ask now.
    assert!(requests(&mut a).is_empty());
    a.handle_message(at(2), c(2), &data(&info, 1)).unwrap();
    assert_eq!(requests(&mut a), [(c(2), 0)]);
    a.handle_message(at(3), c(2), &MetadataMessage::Reject { piece: 0 })
        .unwrap();
    assert!(requests(&mut a).is_empty());
    // Both rest; the first rest ends at 21 s.
    assert_eq!(a.poll_timeout(), Some(at(21)));
    a.handle_timeout(at(20));
    assert!(requests(&mut a).is_empty());
    a.handle_timeout(at(21));
    assert_eq!(requests(&mut a), [(c(1), 0)]);
    // A reject for something never asked is ignored.
    a.handle_message(at(21), c(2), &MetadataMessage::Reject { piece: 1 })
        .unwrap();
    a.handle_message(at(22), c(1), &data(&info, 0)).unwrap();
    assert_eq!(events(&mut a), [MetadataEvent::Complete(info)]);
}

#[test]
fn unanswered_requests_move_on_and_late_answers_count_once() {
    let info = info_bytes(100, 5);
    let size = info.len() as u64;
    let mut a = MetadataAssembler::new(hash_of(&info), AssemblerConfig::default());
    a.add_peer(at(0), c(1), Some(size)).unwrap();
    a.add_peer(at(0), c(2), Some(size)).unwrap();
    assert_eq!(requests(&mut a), [(c(1), 0)]);
    assert_eq!(a.poll_timeout(), Some(at(30)));
    a.handle_timeout(at(29));
    assert!(requests(&mut a).is_empty());
    a.handle_timeout(at(30));
    assert_eq!(requests(&mut a), [(c(2), 0)]);
    // Peer 1 answers late: accepted, and complete.
    a.handle_message(at(31), c(1), &data(&info, 0)).unwrap();
    assert_eq!(events(&mut a), [MetadataEvent::Complete(info.clone())]);
    // Peer 2's answer is a harmless duplicate.
    a.handle_message(at(32), c(2), &data(&info, 0)).unwrap();
    assert!(events(&mut a).is_empty());
}

#[test]
fn refused_sizes() {
    let mut a = MetadataAssembler::new(InfoHash([0; 20]), AssemblerConfig::default());
    assert_eq!(
        a.add_peer(at(0), c(1), Some(MAX_METADATA_SIZE + 1)),
        Err(MetadataPeerError::TooLarge {
            size: MAX_METADATA_SIZE + 1,
            max: MAX_METADATA_SIZE
        })
    );
    assert_eq!(
        a.add_peer(at(0), c(1), None),
        Err(MetadataPeerError::NoSize)
    );
    assert_eq!(
        a.add_peer(at(0), c(1), Some(0)),
        Err(MetadataPeerError::NoSize)
    );
    assert_eq!(a.usable_peers(), 0);
    assert_eq!(a.size(), None);
    assert!(requests(&mut a).is_empty());
    // The largest allowed is fine: 1024 pieces.
    a.add_peer(at(0), c(1), Some(MAX_METADATA_SIZE)).unwrap();
    assert_eq!(a.progress(), (0, 1024));
    assert_eq!(
        a.handle_message(at(0), c(9), &data(&info_bytes(10, 0), 0)),
        Err(MetadataPeerError::UnknownPeer)
    );
}

#[test]
fn protocol_violations_drop_the_peer_and_its_requests_move_on() {
    let info = info_bytes(3 * PIECE_LEN, 6);
    let size = info.len() as u64;
    let config = AssemblerConfig {
        requests_per_peer: 1,
        ..AssemblerConfig::default()
    };
    let short = MetadataMessage::Data {
        piece: 0,
        total_size: size,
        data: Bytes::from_static(b"short"),
    };
    let other_size = MetadataMessage::Data {
        piece: 0,
        total_size: size + 1,
        data: info.slice(..PIECE_LEN),
    };
    let out_of_range = MetadataMessage::Data {
        piece: 3,
        total_size: size,
        data: info.slice(..10),
    };
    let cases = [
        (
            short,
            MetadataPeerError::WrongLength {
                piece: 0,
                len: 5,
                expected: PIECE_LEN,
            },
        ),
        (
            other_size,
            MetadataPeerError::SizeMismatch {
                claimed: size,
                sent: size + 1,
            },
        ),
        (
            out_of_range,
            MetadataPeerError::OutOfRange {
                piece: 3,
                pieces: 3,
            },
        ),
        // Piece 2 was asked of peer 2, not of peer 1: an extra piece.
        (data(&info, 2), MetadataPeerError::Unrequested(2)),
    ];
    for (message, expected) in cases {
        let mut a = MetadataAssembler::new(hash_of(&info), config.clone());
        a.add_peer(at(0), c(1), Some(size)).unwrap();
        a.add_peer(at(0), c(2), Some(size)).unwrap();
        a.add_peer(at(0), c(3), Some(size)).unwrap();
        assert_eq!(requests(&mut a), [(c(1), 0), (c(2), 1), (c(3), 2)]);
        assert_eq!(a.handle_message(at(1), c(1), &message), Err(expected));
        assert_eq!(a.usable_peers(), 2);
        a.handle_message(at(2), c(2), &data(&info, 1)).unwrap();
        // Peer 1's piece went to peer 2.
        assert_eq!(requests(&mut a), [(c(2), 0)]);
        // Peer 1 is forgotten.
        assert_eq!(
            a.handle_message(at(2), c(1), &data(&info, 0)),
            Err(MetadataPeerError::UnknownPeer)
        );
    }

    // The same piece twice from one peer: the second was not asked for.
    let mut a = MetadataAssembler::new(hash_of(&info), config);
    a.add_peer(at(0), c(1), Some(size)).unwrap();
    a.add_peer(at(0), c(2), Some(size)).unwrap();
    requests(&mut a);
    a.handle_message(at(1), c(1), &data(&info, 0)).unwrap();
    assert_eq!(
        a.handle_message(at(1), c(1), &data(&info, 0)),
        Err(MetadataPeerError::Unrequested(0))
    );
}

#[test]
fn a_lone_liar_is_named_and_others_finish() {
    let info = info_bytes(2 * PIECE_LEN, 7);
    let size = info.len() as u64;
    let mut a = MetadataAssembler::new(hash_of(&info), AssemblerConfig::default());
    a.add_peer(at(0), c(1), Some(size)).unwrap();
    assert_eq!(requests(&mut a), [(c(1), 0), (c(1), 1)]);
    a.add_peer(at(0), c(2), Some(size)).unwrap();
    a.handle_message(at(1), c(1), &lie(&info, 0)).unwrap();
    a.handle_message(at(1), c(1), &data(&info, 1)).unwrap();
    assert_eq!(
        events(&mut a),
        [MetadataEvent::HashMismatch {
            contributors: vec![c(1)],
            culprit: Some(c(1))
        }]
    );
    assert_eq!(a.progress(), (0, 2));
    // Peer 1 is never asked again; peer 2 gets everything.
    assert_eq!(requests(&mut a), [(c(2), 0), (c(2), 1)]);
    assert_eq!(
        a.handle_message(at(1), c(1), &data(&info, 0)),
        Err(MetadataPeerError::Excluded)
    );
    a.handle_message(at(2), c(2), &data(&info, 0)).unwrap();
    a.handle_message(at(2), c(2), &data(&info, 1)).unwrap();
    assert_eq!(events(&mut a), [MetadataEvent::Complete(info)]);
}

#[test]
fn a_mismatch_among_several_is_narrowed_down_by_asking_one_peer() {
    let info = info_bytes(4 * PIECE_LEN, 8);
    let size = info.len() as u64;
    let config = AssemblerConfig {
        requests_per_peer: 2,
        ..AssemblerConfig::default()
    };
    let mut a = MetadataAssembler::new(hash_of(&info), config);
    for n in 1..=2 {
        a.add_peer(at(0), c(n), Some(size)).unwrap();
    }
    assert_eq!(
        requests(&mut a),
        [(c(1), 0), (c(1), 1), (c(2), 2), (c(2), 3)]
    );
    // Peer 1 lies about one of its pieces.
    for (n, piece) in [(1, 0), (2, 2), (2, 3)] {
        a.handle_message(at(1), c(n), &data(&info, piece)).unwrap();
    }
    a.handle_message(at(1), c(1), &lie(&info, 1)).unwrap();
    assert_eq!(
        events(&mut a),
        [MetadataEvent::HashMismatch {
            contributors: vec![c(1), c(2)],
            culprit: None
        }]
    );
    // Next: every piece from one peer (the lowest id among the equally suspected), two at
    // a time.
    assert_eq!(requests(&mut a), [(c(1), 0), (c(1), 1)]);
    a.handle_message(at(2), c(1), &data(&info, 0)).unwrap();
    assert_eq!(requests(&mut a), [(c(1), 2)]);
    a.handle_message(at(2), c(1), &lie(&info, 1)).unwrap();
    assert_eq!(requests(&mut a), [(c(1), 3)]);
    a.handle_message(at(2), c(1), &data(&info, 2)).unwrap();
    a.handle_message(at(2), c(1), &data(&info, 3)).unwrap();
    assert_eq!(
        events(&mut a),
        [MetadataEvent::HashMismatch {
            contributors: vec![c(1)],
            culprit: Some(c(1))
        }]
    );
    a.remove_peer(at(3), c(1));
    let asked = requests(&mut a);
    assert_eq!(asked, [(c(2), 0), (c(2), 1)]);
    for piece in 0..4 {
        a.handle_message(at(3), c(2), &data(&info, piece)).unwrap();
        requests(&mut a);
    }
    assert_eq!(events(&mut a), [MetadataEvent::Complete(info)]);
}

#[test]
fn peers_disagreeing_on_the_size_wait_until_the_others_are_gone() {
    let info = info_bytes(PIECE_LEN + 5, 9);
    let size = info.len() as u64;
    let mut a = MetadataAssembler::new(hash_of(&info), AssemblerConfig::default());
    // The first peer claims a wrong size; the honest ones are kept aside.
    a.add_peer(at(0), c(1), Some(size + 100)).unwrap();
    a.add_peer(at(0), c(2), Some(size)).unwrap();
    a.add_peer(at(0), c(3), Some(size)).unwrap();
    assert_eq!(a.size(), Some(size + 100));
    assert_eq!(requests(&mut a), [(c(1), 0), (c(1), 1)]);
    let fake_first = MetadataMessage::Data {
        piece: 0,
        total_size: size + 100,
        data: info.slice(..PIECE_LEN),
    };
    a.handle_message(at(1), c(1), &fake_first).unwrap();
    let fake_last = MetadataMessage::Data {
        piece: 1,
        total_size: size + 100,
        data: info_bytes(105, 0),
    };
    a.handle_message(at(1), c(1), &fake_last).unwrap();
    assert_eq!(
        events(&mut a),
        [MetadataEvent::HashMismatch {
            contributors: vec![c(1)],
            culprit: Some(c(1))
        }]
    );
    // Now the size the others claim, from both of them (a new size, a fresh start).
    assert_eq!(a.size(), Some(size));
    let asked = requests(&mut a);
    assert_eq!(asked, [(c(2), 0), (c(3), 1)]);
    a.handle_message(at(2), c(2), &data(&info, 0)).unwrap();
    a.handle_message(at(2), c(3), &data(&info, 1)).unwrap();
    assert_eq!(events(&mut a), [MetadataEvent::Complete(info.clone())]);

    // The same when the peer with the first size just leaves.
    let mut a = MetadataAssembler::new(hash_of(&info), AssemblerConfig::default());
    a.add_peer(at(0), c(1), Some(size * 3)).unwrap();
    a.add_peer(at(0), c(2), Some(size)).unwrap();
    requests(&mut a);
    a.remove_peer(at(1), c(1));
    assert_eq!(a.size(), Some(size));
    assert_eq!(requests(&mut a), [(c(2), 0), (c(2), 1)]);
    // A handshake update changing a peer's size counts as a new peer.
    a.add_peer(at(1), c(2), Some(size + 1)).unwrap();
    assert_eq!(a.size(), Some(size + 1));
    assert_eq!(requests(&mut a), [(c(2), 0), (c(2), 1)]);
}

#[test]
fn poll_timeout_never_points_to_the_past() {
    let info = info_bytes(3 * PIECE_LEN, 10);
    let size = info.len() as u64;
    let config = AssemblerConfig {
        requests_per_peer: 1,
        ..AssemblerConfig::default()
    };
    let mut a = MetadataAssembler::new(hash_of(&info), config);
    a.add_peer(at(0), c(1), Some(size)).unwrap();
    assert_eq!(requests(&mut a), [(c(1), 0)]);
    a.handle_message(at(0), c(1), &MetadataMessage::Reject { piece: 0 })
        .unwrap();
    assert_eq!(a.poll_timeout(), Some(at(20)));
    a.handle_timeout(at(20));
    assert_eq!(requests(&mut a), [(c(1), 0)]);
    // Busy with one request: the next deadline is that request's, not the old rest.
    assert_eq!(a.poll_timeout(), Some(at(50)));
}

// ---- properties ----------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    Answer(usize),
    Reject(usize),
    Timeout,
    Leave(u8),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => any::<usize>().prop_map(Step::Answer),
        2 => any::<usize>().prop_map(Step::Reject),
        1 => Just(Step::Timeout),
        1 => any::<u8>().prop_map(Step::Leave),
    ]
}

/// Runs an assembler with `honest` honest peers and optionally one liar (peer 0) through
/// `steps`, then answers everything until done. Returns the events.
fn run(
    info: &Bytes,
    honest: u64,
    liar: bool,
    steps: &[Step],
    per_peer: usize,
) -> Result<Vec<MetadataEvent>, TestCaseError> {
    let size = info.len() as u64;
    let config = AssemblerConfig {
        requests_per_peer: per_peer,
        ..AssemblerConfig::default()
    };
    let mut a = MetadataAssembler::new(hash_of(info), config);
    let mut now = at(0);
    let first = if liar { 0 } else { 1 };
    let mut present: Vec<u64> = (first..=honest).collect();
    for &n in &present {
        a.add_peer(now, c(n), Some(size)).unwrap();
    }
    let mut outstanding: Vec<(ConnId, u32)> = Vec::new();
    let mut events = Vec::new();
    let answer = |a: &mut MetadataAssembler, now, (conn, piece): (ConnId, u32)| {
        let message = if conn == c(0) {
            lie(info, piece)
        } else {
            data(info, piece)
        };
        a.handle_message(now, conn, &message)
    };
    let collect = |a: &mut MetadataAssembler,
                   outstanding: &mut Vec<(ConnId, u32)>,
                   events: &mut Vec<MetadataEvent>,
                   present: &mut Vec<u64>,
                   now| {
        outstanding.extend(requests(a));
        while let Some(e) = a.poll_event() {
            if let MetadataEvent::HashMismatch {
                culprit: Some(culprit),
                ..
            } = &e
            {
                // The session drops a certain culprit.
                a.remove_peer(now, *culprit);
                present.retain(|&n| c(n) != *culprit);
                outstanding.retain(|(conn, _)| conn != culprit);
                outstanding.extend(requests(a));
            }
            events.push(e);
        }
    };
    collect(&mut a, &mut outstanding, &mut events, &mut present, now);
    for step in steps {
        match *step {
            Step::Answer(i) if !outstanding.is_empty() => {
                let r = outstanding.remove(i % outstanding.len());
                let result = answer(&mut a, now, r);
                prop_assert!(result.is_ok(), "{:?}: {:?}", r, result);
            }
            Step::Reject(i) if !outstanding.is_empty() => {
                let (conn, piece) = outstanding.remove(i % outstanding.len());
                a.handle_message(now, conn, &MetadataMessage::Reject { piece })
                    .unwrap();
            }
            Step::Timeout => {
                now = a.poll_timeout().unwrap_or(now).max(now);
                a.handle_timeout(now);
            }
            // One honest peer stays.
            Step::Leave(i) if !present.is_empty() => {
                let n = present[usize::from(i) % present.len()];
                let honest_left = present.iter().filter(|&&p| p != 0).count();
                if n == 0 || honest_left > 1 {
                    present.retain(|&p| p != n);
                    a.remove_peer(now, c(n));
                    outstanding.retain(|(conn, _)| *conn != c(n));
                }
            }
            _ => {}
        }
        collect(&mut a, &mut outstanding, &mut events, &mut present, now);
    }
    let mut rounds = 0;
    while !a.is_complete() {
        rounds += 1;
        prop_assert!(rounds < 5000, "no end; events {:?}", events);
        if let Some(r) = outstanding.first().copied() {
            outstanding.remove(0);
            let result = answer(&mut a, now, r);
            prop_assert!(result.is_ok(), "{:?}: {:?}", r, result);
        } else {
            let next = a.poll_timeout();
            prop_assert!(next.is_some(), "stuck with nothing to wait for");
            now = next.unwrap_or(now).max(now);
            a.handle_timeout(now);
        }
        collect(&mut a, &mut outstanding, &mut events, &mut present, now);
    }
    Ok(events)
}

proptest! {
    #[test]
    fn messages_never_panic_and_decode_stably(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(m) = MetadataMessage::decode(&Bytes::from(bytes)) {
            prop_assert_eq!(MetadataMessage::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn messages_round_trip(
        kind in 0u8..4,
        piece in any::<u32>(),
        total_size in 1..=i64::MAX as u64,
        data in proptest::collection::vec(any::<u8>(), 0..=PIECE_LEN),
        msg_type in any::<i64>().prop_filter("unknown", |t| !(0..=2).contains(t)),
    ) {
        let m = match kind {
            0 => MetadataMessage::Request { piece },
            1 => MetadataMessage::Data { piece, total_size, data: data.into() },
            2 => MetadataMessage::Reject { piece },
            _ => MetadataMessage::Unknown { msg_type },
        };
        prop_assert_eq!(MetadataMessage::decode(&m.encode()), Ok(m));
    }

    /// Whatever the order of answers, rejects, time-outs (and so late duplicates) and
    /// departures, the result is the info dictionary, once.
    #[test]
    fn any_order_gives_the_same_info(
        len in 1usize..5 * PIECE_LEN + 100,
        seed in any::<u8>(),
        peers in 1u64..5,
        per_peer in 1usize..4,
        steps in proptest::collection::vec(arb_step(), 0..80),
    ) {
        let info = info_bytes(len, seed);
        let events = run(&info, peers, false, &steps, per_peer)?;
        prop_assert_eq!(events, vec![MetadataEvent::Complete(info)]);
    }

    /// With a peer that corrupts every piece it sends among honest ones: the result is still
    /// the info dictionary, and no honest peer is ever named a culprit.
    #[test]
    fn a_liar_among_honest_peers_is_caught(
        len in 1usize..4 * PIECE_LEN,
        seed in any::<u8>(),
        peers in 1u64..4,
        steps in proptest::collection::vec(arb_step(), 0..60),
    ) {
        let info = info_bytes(len, seed);
        let events = run(&info, peers, true, &steps, 2)?;
        prop_assert_eq!(events.last(), Some(&MetadataEvent::Complete(info)));
        for e in &events[..events.len() - 1] {
            let MetadataEvent::HashMismatch { contributors, culprit } = e else {
                return Err(TestCaseError::fail(format!("{e:?} before the end")));
            };
            prop_assert!(contributors.contains(&c(0)), "a mismatch without the liar");
            prop_assert!(culprit.is_none_or(|p| p == c(0)), "an honest culprit");
        }
    }
}
