use super::*;
use proptest::prelude::*;

fn handshake() -> Handshake {
    let mut h = Handshake {
        reserved: [0; 8],
        info_hash: InfoHash([0xab; 20]),
        peer_id: PeerId(*b"-TQ0100-abcdefghijkl"),
    };
    h.set(Handshake::FAST);
    h.set(Handshake::EXTENSION_PROTOCOL);
    h
}

fn encoded(message: &Message) -> Bytes {
    let mut out = BytesMut::new();
    message.encode(&mut out);
    out.freeze()
}

fn frame(len: u32, id: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u32(len);
    out.put_u8(id);
    out.put_slice(payload);
    out.freeze()
}

/// Every message `decoder` can return now; stops at `Ok(None)` or the first error.
fn drain(decoder: &mut Decoder) -> (Vec<Message>, Option<WireError>) {
    let mut messages = Vec::new();
    loop {
        match decoder.next_message() {
            Ok(Some(m)) => messages.push(m),
            Ok(None) => return (messages, None),
            Err(e) => return (messages, Some(e)),
        }
    }
}

type Decoded = (Option<Handshake>, Vec<Message>, Option<WireError>);

/// Decodes a complete stream fed in `chunks`, draining after each feed. Returns the
/// handshake (if `with_handshake`), the messages and the first error.
fn decode_chunks(chunks: impl IntoIterator<Item = Bytes>, with_handshake: bool) -> Decoded {
    let (decoded, leftover) = decode_chunks_leftover(chunks, with_handshake);
    if decoded.2.is_none() {
        assert_eq!(leftover, 0, "stream ended mid-frame");
    }
    decoded
}

/// As `decode_chunks`, for a stream that may end mid-frame: also returns `buffered()` at
/// the end.
fn decode_chunks_leftover(
    chunks: impl IntoIterator<Item = Bytes>,
    with_handshake: bool,
) -> (Decoded, usize) {
    let mut decoder = if with_handshake {
        Decoder::new()
    } else {
        Decoder::after_handshake()
    };
    let mut hs = None;
    let mut messages = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk);
        if with_handshake && hs.is_none() {
            match decoder.handshake() {
                Ok(Some(h)) => hs = Some(h),
                Ok(None) => continue,
                Err(e) => return ((hs, messages, Some(e)), decoder.buffered()),
            }
        }
        let (more, error) = drain(&mut decoder);
        messages.extend(more);
        if error.is_some() {
            return ((hs, messages, error), decoder.buffered());
        }
    }
    ((hs, messages, None), decoder.buffered())
}

/// `stream` cut at `cuts` (positions, any order, out-of-range ones ignored).
fn split_at(stream: &Bytes, cuts: &[usize]) -> Vec<Bytes> {
    let mut cuts: Vec<usize> = cuts.iter().copied().filter(|&c| c < stream.len()).collect();
    cuts.push(0);
    cuts.push(stream.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2).map(|w| stream.slice(w[0]..w[1])).collect()
}

fn one_byte_feeds(stream: &Bytes) -> Vec<Bytes> {
    (0..stream.len()).map(|i| stream.slice(i..i + 1)).collect()
}

fn all_kinds() -> Vec<Message> {
    let request = BlockRequest {
        piece: 7,
        offset: 0x4000,
        len: 0x4000,
    };
    vec![
        Message::KeepAlive,
        Message::Choke,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Have(0x0102_0304),
        Message::Bitfield(Bytes::from_static(&[0xff, 0x80])),
        Message::Bitfield(Bytes::new()),
        Message::Request(request),
        Message::Piece {
            piece: 3,
            offset: 0x8000,
            data: Bytes::from(vec![0x5a; MAX_BLOCK as usize]),
        },
        Message::Piece {
            piece: 1,
            offset: 2,
            data: Bytes::new(),
        },
        Message::Cancel(request),
        Message::Port(6881),
        Message::Suggest(9),
        Message::HaveAll,
        Message::HaveNone,
        Message::Reject(request),
        Message::AllowedFast(u32::MAX),
        Message::Extended {
            id: 0,
            payload: Bytes::from_static(b"d1:md11:ut_metadatai1eee"),
        },
        Message::Extended {
            id: 3,
            payload: Bytes::new(),
        },
        Message::Unknown { id: 42, len: 3 },
        Message::Unknown { id: 255, len: 0 },
    ]
}

#[test]
fn handshake_round_trip() {
    let h = handshake();
    let bytes = h.encode();
    assert_eq!(bytes[0], 19);
    assert_eq!(&bytes[1..20], PROTOCOL);
    let mut decoder = Decoder::new();
    decoder.feed(Bytes::copy_from_slice(&bytes));
    assert_eq!(decoder.handshake(), Ok(Some(h)));
    assert_eq!(decoder.buffered(), 0);
    assert_eq!(decoder.next_message(), Ok(None));
}

#[test]
fn handshake_reserved_bits() {
    let h = handshake();
    assert!(h.has(Handshake::FAST));
    assert!(h.has(Handshake::EXTENSION_PROTOCOL));
    assert!(!h.has(Handshake::DHT));
    assert_eq!(h.reserved, [0, 0, 0, 0, 0, 0x10, 0, 0x04]);
    assert!(!h.has((8, 0xff)), "out-of-range byte is never set");
}

#[test]
fn handshake_split_byte_by_byte() {
    let h = handshake();
    let mut stream = BytesMut::from(&h.encode()[..]);
    Message::Have(5).encode(&mut stream);
    let (got, messages, error) = decode_chunks(one_byte_feeds(&stream.freeze()), true);
    assert_eq!(
        (got, messages, error),
        (Some(h), vec![Message::Have(5)], None)
    );
}

#[test]
fn bad_pstrlen_rejected_at_first_byte() {
    let mut decoder = Decoder::new();
    assert_eq!(decoder.handshake(), Ok(None));
    decoder.feed(Bytes::from_static(&[18]));
    assert_eq!(decoder.handshake(), Err(WireError::BadHandshake));
    // Sticky, and later bytes are dropped.
    decoder.feed(Bytes::from_static(b"BitTorrent protocol"));
    assert_eq!(decoder.handshake(), Err(WireError::BadHandshake));
    assert_eq!(decoder.next_message(), Err(WireError::BadHandshake));
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn wrong_protocol_string_rejected_early() {
    let mut decoder = Decoder::new();
    decoder.feed(Bytes::from_static(b"\x13BitTorrent"));
    assert_eq!(decoder.handshake(), Ok(None), "a correct prefix waits");
    decoder.feed(Bytes::from_static(b" Protocol"));
    assert_eq!(decoder.handshake(), Err(WireError::BadHandshake));

    let mut decoder = Decoder::new();
    decoder.feed(Bytes::from_static(b"GET / HTTP/1.1\r\n"));
    assert_eq!(decoder.handshake(), Err(WireError::BadHandshake));
}

#[test]
fn stage_usage_errors_change_nothing() {
    let mut decoder = Decoder::new();
    decoder.feed(Bytes::copy_from_slice(&handshake().encode()));
    assert_eq!(decoder.next_message(), Err(WireError::HandshakePending));
    assert_eq!(decoder.buffered(), HANDSHAKE_LEN);
    assert_eq!(decoder.handshake(), Ok(Some(handshake())));
    assert_eq!(decoder.handshake(), Err(WireError::HandshakeDone));
    decoder.feed(encoded(&Message::Choke));
    assert_eq!(decoder.next_message(), Ok(Some(Message::Choke)));

    let mut decoder = Decoder::after_handshake();
    assert_eq!(decoder.handshake(), Err(WireError::HandshakeDone));
    assert_eq!(decoder.next_message(), Ok(None));
}

#[test]
fn every_message_round_trips() {
    for message in all_kinds() {
        let bytes = encoded(&message);
        let mut decoder = Decoder::after_handshake();
        decoder.feed(bytes.clone());
        assert_eq!(decoder.next_message(), Ok(Some(message.clone())));
        assert_eq!(decoder.next_message(), Ok(None));
        assert_eq!(decoder.buffered(), 0);
        // And split in two everywhere.
        for cut in 1..bytes.len().min(40) {
            let chunks = split_at(&bytes, &[cut]);
            let (_, messages, error) = decode_chunks(chunks, false);
            assert_eq!(
                (messages, error),
                (vec![message.clone()], None),
                "cut {cut}"
            );
        }
    }
}

#[test]
fn encodings_follow_the_spec() {
    let request = BlockRequest {
        piece: 1,
        offset: 2,
        len: 3,
    };
    let cases: Vec<(Message, &[u8])> = vec![
        (Message::KeepAlive, &[0, 0, 0, 0]),
        (Message::Choke, &[0, 0, 0, 1, 0]),
        (Message::NotInterested, &[0, 0, 0, 1, 3]),
        (Message::Have(258), &[0, 0, 0, 5, 4, 0, 0, 1, 2]),
        (
            Message::Bitfield(Bytes::from_static(&[0xf0])),
            &[0, 0, 0, 2, 5, 0xf0],
        ),
        (
            Message::Request(request),
            &[0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3],
        ),
        (
            Message::Piece {
                piece: 1,
                offset: 2,
                data: Bytes::from_static(b"xy"),
            },
            &[0, 0, 0, 11, 7, 0, 0, 0, 1, 0, 0, 0, 2, b'x', b'y'],
        ),
        (Message::Port(0x1ae1), &[0, 0, 0, 3, 9, 0x1a, 0xe1]),
        (Message::HaveAll, &[0, 0, 0, 1, 14]),
        (
            Message::Reject(request),
            &[0, 0, 0, 13, 16, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3],
        ),
        (
            Message::Extended {
                id: 2,
                payload: Bytes::from_static(b"de"),
            },
            &[0, 0, 0, 4, 20, 2, b'd', b'e'],
        ),
        (Message::Unknown { id: 30, len: 2 }, &[0, 0, 0, 3, 30, 0, 0]),
    ];
    for (message, bytes) in cases {
        assert_eq!(&encoded(&message)[..], bytes, "{message:?}");
    }
}

#[test]
fn piece_header_matches_encode() {
    let data = Bytes::from(vec![1u8; 100]);
    let mut split = BytesMut::new();
    encode_piece_header(4, 16384, 100, &mut split);
    assert_eq!(split.len(), 13);
    split.extend_from_slice(&data);
    let whole = encoded(&Message::Piece {
        piece: 4,
        offset: 16384,
        data,
    });
    assert_eq!(split.freeze(), whole);
}

#[test]
fn keep_alive() {
    let mut decoder = Decoder::after_handshake();
    decoder.feed(Bytes::from_static(&[0, 0]));
    assert_eq!(decoder.next_message(), Ok(None));
    decoder.feed(Bytes::from_static(&[0, 0, 0, 0, 0, 0]));
    assert_eq!(decoder.next_message(), Ok(Some(Message::KeepAlive)));
    assert_eq!(decoder.next_message(), Ok(Some(Message::KeepAlive)));
    assert_eq!(decoder.next_message(), Ok(None));
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn four_gib_length_prefix_rejected_without_buffering() {
    // The global cap rejects it from the length alone.
    let mut decoder = Decoder::after_handshake();
    decoder.feed(Bytes::from_static(&[0xff, 0xff, 0xff]));
    assert_eq!(decoder.next_message(), Ok(None));
    decoder.feed(Bytes::from_static(&[0xff]));
    let error = WireError::TooLong {
        id: None,
        len: u32::MAX,
        max: MAX_FRAME,
    };
    assert_eq!(decoder.next_message(), Err(error.clone()));
    assert!(decoder.buffered() <= HEADER_LEN);
    decoder.feed(Bytes::from(vec![0; 1 << 16]));
    assert_eq!(decoder.next_message(), Err(error));
    assert_eq!(decoder.buffered(), 0);

    // A length within the global cap but above a piece's bound: decided on the id byte.
    let mut decoder = Decoder::after_handshake();
    decoder.feed(frame(MAX_FRAME, PIECE, &[]));
    assert_eq!(
        decoder.next_message(),
        Err(WireError::TooLong {
            id: Some(PIECE),
            len: MAX_FRAME,
            max: MAX_BLOCK + 9
        })
    );
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn fixed_size_messages_need_their_exact_length() {
    let cases = [
        (6, HAVE, 5),
        (4, HAVE, 5),
        (2, CHOKE, 1),
        (2, HAVE_NONE, 1),
        (12, REQUEST, 13),
        (14, CANCEL, 13),
        (1, REJECT, 13),
        (2, PORT, 3),
        (5, ALLOWED_FAST, 5),
        (6, SUGGEST, 5),
    ];
    for (len, id, expected) in cases {
        let mut decoder = Decoder::after_handshake();
        // Only the header: the length is judged before any payload is in.
        decoder.feed(frame(len, id, &[]));
        let result = decoder.next_message();
        if len == expected {
            assert_eq!(result, Ok(None));
        } else {
            assert_eq!(result, Err(WireError::BadLength { id, len, expected }));
        }
    }
}

#[test]
fn piece_longer_than_a_block_rejected() {
    let mut decoder = Decoder::after_handshake();
    decoder.feed(frame(9 + MAX_BLOCK, PIECE, &[]));
    assert_eq!(decoder.next_message(), Ok(None), "a full block is fine");

    let mut decoder = Decoder::after_handshake();
    decoder.feed(frame(10 + MAX_BLOCK, PIECE, &[]));
    assert_eq!(
        decoder.next_message(),
        Err(WireError::TooLong {
            id: Some(PIECE),
            len: 10 + MAX_BLOCK,
            max: 9 + MAX_BLOCK
        })
    );
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn messages_too_short_for_their_fields_rejected() {
    for (len, id, min) in [(8, PIECE, 9), (1, PIECE, 9), (1, EXTENDED, 2)] {
        let mut decoder = Decoder::after_handshake();
        decoder.feed(frame(len, id, &[0; 8]));
        assert_eq!(
            decoder.next_message(),
            Err(WireError::TooShort { id, len, min })
        );
    }
}

#[test]
fn bitfield_bounded_by_torrent() {
    // Before `set_num_pieces`: up to the largest torrent.
    let mut decoder = Decoder::after_handshake();
    decoder.feed(frame(1 + MAX_PIECES / 8, BITFIELD, &[]));
    assert_eq!(decoder.next_message(), Ok(None));
    let mut decoder = Decoder::after_handshake();
    decoder.feed(frame(2 + MAX_PIECES / 8, BITFIELD, &[]));
    assert!(matches!(
        decoder.next_message(),
        Err(WireError::TooLong {
            id: Some(BITFIELD),
            ..
        })
    ));

    // After: 100 pieces fit in 13 bytes.
    let mut decoder = Decoder::after_handshake();
    decoder.set_num_pieces(100);
    decoder.feed(frame(14, BITFIELD, &[0xff; 13]));
    assert_eq!(
        decoder.next_message(),
        Ok(Some(Message::Bitfield(Bytes::from(vec![0xff; 13]))))
    );
    decoder.feed(frame(15, BITFIELD, &[]));
    assert_eq!(
        decoder.next_message(),
        Err(WireError::TooLong {
            id: Some(BITFIELD),
            len: 15,
            max: 14
        })
    );
}

#[test]
fn extended_and_unknown_bounds() {
    let mut decoder = Decoder::after_handshake();
    decoder.feed(frame(2 + MAX_EXTENDED, EXTENDED, &[]));
    assert!(matches!(
        decoder.next_message(),
        Err(WireError::TooLong { .. })
    ));
    let mut decoder = Decoder::after_handshake();
    decoder.feed(frame(1 + MAX_EXTENDED, EXTENDED, &[]));
    assert_eq!(decoder.next_message(), Ok(None));

    let mut decoder = Decoder::after_handshake();
    decoder.feed(frame(2 + MAX_UNKNOWN, 99, &[]));
    assert_eq!(
        decoder.next_message(),
        Err(WireError::TooLong {
            id: Some(99),
            len: 2 + MAX_UNKNOWN,
            max: 1 + MAX_UNKNOWN
        })
    );
}

#[test]
fn unknown_id_skipped_across_feeds() {
    let payload = vec![0xee; MAX_UNKNOWN as usize];
    let mut stream = BytesMut::new();
    stream.extend_from_slice(&frame(1 + MAX_UNKNOWN, 99, &payload));
    Message::Have(1).encode(&mut stream);
    let stream = stream.freeze();

    let mut decoder = Decoder::after_handshake();
    let mut fed = 0;
    for chunk in stream.chunks(1000) {
        decoder.feed(Bytes::copy_from_slice(chunk));
        fed += chunk.len();
        if fed < HEADER_LEN + payload.len() {
            assert_eq!(decoder.next_message(), Ok(None));
            assert_eq!(decoder.buffered(), fed, "fed but not yet returned");
            // Nothing of the payload is kept.
            assert!(
                decoder.partial.capacity() < 64,
                "{}",
                decoder.partial.capacity()
            );
        }
    }
    assert_eq!(
        decoder.next_message(),
        Ok(Some(Message::Unknown {
            id: 99,
            len: MAX_UNKNOWN
        }))
    );
    assert_eq!(decoder.next_message(), Ok(Some(Message::Have(1))));
    assert_eq!(decoder.next_message(), Ok(None));
    assert_eq!(decoder.buffered(), 0);
}

/// Whether `inner` lies within `outer`'s memory.
fn points_into(inner: &Bytes, outer: &Bytes) -> bool {
    let start = outer.as_ptr() as usize;
    let end = start + outer.len();
    let p = inner.as_ptr() as usize;
    !inner.is_empty() && p >= start && p + inner.len() <= end
}

#[test]
fn zero_copy_payloads_within_one_chunk() {
    let mut stream = BytesMut::from(&handshake().encode()[..]);
    Message::Bitfield(Bytes::from_static(&[0xff; 4])).encode(&mut stream);
    Message::Piece {
        piece: 1,
        offset: 0,
        data: Bytes::from(vec![7; MAX_BLOCK as usize]),
    }
    .encode(&mut stream);
    Message::Extended {
        id: 1,
        payload: Bytes::from_static(b"d1:ai1ee"),
    }
    .encode(&mut stream);
    let chunk = stream.freeze();

    let mut decoder = Decoder::new();
    decoder.feed(chunk.clone());
    assert_eq!(decoder.handshake(), Ok(Some(handshake())));
    let (messages, error) = drain(&mut decoder);
    assert_eq!((messages.len(), error), (3, None));
    for message in &messages {
        let payload = match message {
            Message::Bitfield(b) => b,
            Message::Piece { data, .. } => data,
            Message::Extended { payload, .. } => payload,
            other => panic!("unexpected {other:?}"),
        };
        assert!(points_into(payload, &chunk), "{message:?} was copied");
    }
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn straddling_piece_is_copied_once_into_one_buffer() {
    let data = Bytes::from((0..MAX_BLOCK).map(|i| i as u8).collect::<Vec<_>>());
    let message = Message::Piece {
        piece: 2,
        offset: 0,
        data: data.clone(),
    };
    let stream = encoded(&message);
    let chunks = split_at(&stream, &[3, 100, 9000]);
    let mut decoder = Decoder::after_handshake();
    for (i, chunk) in chunks.iter().enumerate() {
        decoder.feed(chunk.clone());
        let got = decoder.next_message();
        if i + 1 < chunks.len() {
            assert_eq!(got, Ok(None));
        } else {
            assert_eq!(got, Ok(Some(message.clone())));
        }
    }
}

#[test]
fn one_byte_feeds_of_a_block() {
    let message = Message::Piece {
        piece: 2,
        offset: 0,
        data: Bytes::from(vec![3; MAX_BLOCK as usize]),
    };
    let stream = encoded(&message);
    let mut decoder = Decoder::after_handshake();
    for (i, chunk) in one_byte_feeds(&stream).into_iter().enumerate() {
        decoder.feed(chunk);
        let got = decoder.next_message();
        if i + 1 < stream.len() {
            assert_eq!(got, Ok(None));
            assert_eq!(decoder.buffered(), i + 1);
            // Past the header, each byte moved into the frame buffer as it came.
            assert_eq!(decoder.chunks.is_empty(), i + 1 >= HEADER_LEN);
        } else {
            assert_eq!(got, Ok(Some(message.clone())));
        }
    }
    assert_eq!(decoder.buffered(), 0);
}

fn arb_request() -> impl Strategy<Value = BlockRequest> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(piece, offset, len)| BlockRequest {
        piece,
        offset,
        len,
    })
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 0..=max),
    ]
    .prop_map(Bytes::from)
}

fn arb_message() -> impl Strategy<Value = Message> {
    let unknown_id = any::<u8>().prop_filter("unknown id", |id| !is_known(*id));
    prop_oneof![
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        Just(Message::HaveAll),
        Just(Message::HaveNone),
        any::<u32>().prop_map(Message::Have),
        any::<u32>().prop_map(Message::Suggest),
        any::<u32>().prop_map(Message::AllowedFast),
        any::<u16>().prop_map(Message::Port),
        arb_request().prop_map(Message::Request),
        arb_request().prop_map(Message::Cancel),
        arb_request().prop_map(Message::Reject),
        arb_bytes(1024).prop_map(Message::Bitfield),
        (any::<u32>(), any::<u32>(), arb_bytes(MAX_BLOCK as usize)).prop_map(
            |(piece, offset, data)| Message::Piece {
                piece,
                offset,
                data
            }
        ),
        (any::<u8>(), arb_bytes(2048)).prop_map(|(id, payload)| Message::Extended { id, payload }),
        (unknown_id, 0..300u32).prop_map(|(id, len)| Message::Unknown { id, len }),
    ]
}

/// Feeds `data` cut at `cuts` to `decoder`, driving it as a session would; must not panic.
fn drive(mut decoder: Decoder, data: &Bytes, cuts: &[usize]) {
    let mut in_handshake = true;
    for chunk in split_at(data, cuts) {
        decoder.feed(chunk);
        if in_handshake {
            match decoder.handshake() {
                Ok(Some(_)) | Err(WireError::HandshakeDone) => in_handshake = false,
                Ok(None) => continue,
                Err(_) => return,
            }
        }
        let (_, error) = drain(&mut decoder);
        if error.is_some() {
            assert_eq!(decoder.buffered(), 0);
            return;
        }
        assert!(decoder.buffered() <= data.len());
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(0..2048usize, 0..16),
        num_pieces in proptest::option::of(any::<u32>()),
    ) {
        let data = Bytes::from(data);
        let mut decoder = Decoder::after_handshake();
        if let Some(n) = num_pieces {
            decoder.set_num_pieces(n);
        }
        drive(decoder, &data, &cuts);
        drive(Decoder::new(), &data, &cuts);
        let mut with_handshake = BytesMut::from(&handshake().encode()[..]);
        with_handshake.extend_from_slice(&data);
        drive(Decoder::new(), &with_handshake.freeze(), &cuts);
    }

    #[test]
    fn arbitrary_frames_never_panic(
        frames in proptest::collection::vec(
            (any::<u32>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)),
            0..16,
        ),
        cuts in proptest::collection::vec(0..1024usize, 0..16),
    ) {
        // Plausible headers with arbitrary lengths and ids get further than random bytes.
        let mut data = BytesMut::new();
        for (len, id, payload) in frames {
            data.extend_from_slice(&frame(len % 64, id, &payload));
        }
        let data = data.freeze();
        drive(Decoder::after_handshake(), &data, &cuts);
        // Errors, too, do not depend on how the stream was cut.
        let whole = decode_chunks_leftover([data.clone()], false);
        prop_assert_eq!(&decode_chunks_leftover(split_at(&data, &cuts), false), &whole);
        prop_assert_eq!(&decode_chunks_leftover(one_byte_feeds(&data), false), &whole);
    }

    #[test]
    fn any_split_decodes_the_same(
        messages in proptest::collection::vec(arb_message(), 0..24),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let h = handshake();
        let mut stream = BytesMut::from(&h.encode()[..]);
        for m in &messages {
            m.encode(&mut stream);
        }
        let stream = stream.freeze();
        let expected = (Some(h), messages.clone(), None);

        let whole = decode_chunks([stream.clone()], true);
        prop_assert_eq!(&whole, &expected);
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len())).collect();
        prop_assert_eq!(&decode_chunks(split_at(&stream, &cuts), true), &expected);
        prop_assert_eq!(&decode_chunks(one_byte_feeds(&stream), true), &expected);

        // Feeding everything before draining gives the same too.
        let mut decoder = Decoder::new();
        for chunk in split_at(&stream, &cuts) {
            decoder.feed(chunk);
        }
        prop_assert_eq!(decoder.handshake(), Ok(Some(h)));
        prop_assert_eq!(drain(&mut decoder), (messages, None));

        // Re-encoding what was decoded reproduces the stream.
        let mut again = BytesMut::from(&whole.0.unwrap_or(h).encode()[..]);
        for m in &whole.1 {
            m.encode(&mut again);
        }
        prop_assert_eq!(again.freeze(), stream);
    }
}
