use super::*;

const A: ConnId = ConnId(1);
const B: ConnId = ConnId(2);
const C: ConnId = ConnId(3);

/// `pieces` pieces of `blocks` full blocks each; the last piece is `last_len` bytes.
fn layout(pieces: u32, blocks: u32, last_len: u32) -> Layout {
    let piece_len = blocks * BLOCK_LEN;
    let total = u64::from(pieces - 1) * u64::from(piece_len) + u64::from(last_len);
    Layout::new(piece_len, [total]).unwrap()
}

/// `pieces` pieces of `blocks` blocks each, all full.
fn even(pieces: u32, blocks: u32) -> Layout {
    layout(pieces, blocks, blocks * BLOCK_LEN)
}

fn config(random_first: u32, endgame_max_requesters: usize) -> PickerConfig {
    PickerConfig {
        random_first,
        endgame_max_requesters,
        strategy: super::Strategy::RarestFirst,
    }
}

fn bits(len: u32, set: &[u32]) -> Bitfield {
    let mut b = Bitfield::new(len as usize);
    for &i in set {
        b.set(i as usize);
    }
    b
}

/// A picker for a full download of `l`, nothing verified yet.
fn fresh(l: &Layout, cfg: PickerConfig, seed: u64) -> Picker {
    let n = l.num_pieces() as usize;
    Picker::new(
        l,
        &Bitfield::new(n),
        &Bitfield::full(n),
        cfg,
        &mut Rng::from_u64(seed),
    )
}

fn pick(p: &mut Picker, peer: ConnId, has: &Bitfield, max: usize) -> Vec<BlockRef> {
    let mut out = Vec::new();
    p.pick(peer, has, max, &mut Rng::from_u64(99), &mut out);
    out
}

fn blk(piece: u32, block: u32) -> BlockRef {
    BlockRef { piece, block }
}

#[test]
fn rarest_first_picks_least_available() {
    let l = even(5, 1);
    let mut p = fresh(&l, config(0, 2), 1);
    let counts = [5u32, 1, 4, 2, 3];
    for (piece, &c) in counts.iter().enumerate() {
        for _ in 0..c {
            p.add_have(piece as u32);
        }
    }
    assert_eq!(p.availability(1), 1);
    let has = Bitfield::full(5);
    let order: Vec<u32> = (0..5).map(|_| pick(&mut p, A, &has, 1)[0].piece).collect();
    assert_eq!(order, vec![1, 3, 4, 2, 0]);

    // A peer without the rarest piece gets the rarest it has.
    let mut p = fresh(&l, config(0, 2), 1);
    p.add_availability(&Bitfield::full(5));
    p.add_availability(&bits(5, &[0, 1, 3, 4]));
    p.remove_availability(&bits(5, &[0, 1]));
    // Availabilities now 1, 1, 1, 2, 2: rarest among {2, 3} is 2.
    assert_eq!(pick(&mut p, B, &bits(5, &[2, 3]), 1), vec![blk(2, 0)]);
}

/// The order in which a picker with this seed starts 64 equally available pieces.
fn tie_order(seed: u64) -> Vec<u32> {
    let l = even(64, 1);
    let mut p = fresh(&l, config(0, 2), seed);
    let has = Bitfield::full(64);
    p.add_availability(&has);
    (0..64).map(|_| pick(&mut p, A, &has, 1)[0].piece).collect()
}

#[test]
fn ties_broken_by_a_seeded_random_order() {
    let one = tie_order(1);
    assert_eq!(one, tie_order(1), "same seed, same order");
    assert_ne!(one, tie_order(2), "different seed, different order");
    assert_ne!(one, (0..64).collect::<Vec<u32>>(), "not sequential");
    let mut sorted = one.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..64).collect::<Vec<u32>>(), "every piece once");
}

#[test]
fn sequential_picks_the_lowest_index_available_piece() {
    let l = even(64, 2);
    let cfg = PickerConfig {
        random_first: 4,
        endgame_max_requesters: 2,
        strategy: Strategy::Sequential,
    };
    let mut p = fresh(&l, cfg, 7);
    // Pieces 0..10 are common, piece 40 is the rarest: sequential ignores rarity and
    // random first alike.
    let most = bits(64, &(0..64).filter(|&i| i != 40).collect::<Vec<_>>());
    p.add_availability(&Bitfield::full(64));
    p.add_availability(&most);
    let has = bits(64, &[3, 5, 40, 63]);
    let mut out = Vec::new();
    p.pick(A, &has, 3, &mut Rng::from_u64(1), &mut out);
    // Both blocks of piece 3 (the lowest it has), then the first of piece 5.
    assert_eq!(
        out,
        vec![
            BlockRef { piece: 3, block: 0 },
            BlockRef { piece: 3, block: 1 },
            BlockRef { piece: 5, block: 0 },
        ]
    );
    // Another peer gets the free block of started piece 5 first, then piece 40.
    let mut out = Vec::new();
    p.pick(B, &bits(64, &[5, 40]), 2, &mut Rng::from_u64(2), &mut out);
    assert_eq!(
        out,
        vec![
            BlockRef { piece: 5, block: 1 },
            BlockRef {
                piece: 40,
                block: 0
            },
        ]
    );
    // Partial pieces first, then the lowest new one; verified pieces are skipped.
    p.on_verified(0);
    let mut out = Vec::new();
    p.pick(C, &Bitfield::full(64), 2, &mut Rng::from_u64(3), &mut out);
    assert_eq!(
        out,
        vec![
            BlockRef {
                piece: 40,
                block: 1
            },
            BlockRef { piece: 1, block: 0 },
        ]
    );
}

#[test]
fn random_first_spreads_first_pieces() {
    let l = even(64, 1);
    let has = Bitfield::full(64);
    let first_piece = |random_first: u32, seed: u64| {
        let mut p = fresh(&l, config(random_first, 2), 7);
        p.add_availability(&has);
        p.add_availability(&bits(64, &(1..64).collect::<Vec<_>>()));
        // Piece 0 is the rarest.
        let mut out = Vec::new();
        p.pick(A, &has, 1, &mut Rng::from_u64(seed), &mut out);
        out[0].piece
    };
    let random: std::collections::BTreeSet<u32> =
        (0..32).map(|seed| first_piece(4, seed)).collect();
    assert!(random.len() >= 10, "random first spreads: {random:?}");
    assert!((0..32).all(|seed| first_piece(0, seed) == 0));

    // Once `random_first` pieces are verified, rarest first takes over.
    let mut p = fresh(&l, config(2, 2), 7);
    p.add_availability(&has);
    p.add_availability(&bits(64, &(1..64).collect::<Vec<_>>()));
    p.on_verified(10);
    assert_eq!(p.have().count_ones(), 1);
    let rarest_again = (0..8).all(|s| {
        let mut q = fresh(&l, config(1, 2), 7);
        q.add_availability(&has);
        q.add_availability(&bits(64, &(1..64).collect::<Vec<_>>()));
        q.on_verified(10);
        let mut out = Vec::new();
        q.pick(A, &has, 1, &mut Rng::from_u64(s), &mut out);
        out[0].piece == 0
    });
    assert!(rarest_again);
    p.on_verified(11);
    assert_eq!(pick(&mut p, A, &has, 1), vec![blk(0, 0)]);
}

#[test]
fn partial_pieces_are_finished_before_new_ones() {
    let l = even(8, 4);
    let mut p = fresh(&l, config(0, 2), 3);
    let has = Bitfield::full(8);
    p.add_availability(&has);
    let a = pick(&mut p, A, &has, 2);
    let first = a[0].piece;
    assert_eq!(a, vec![blk(first, 0), blk(first, 1)]);
    let b = pick(&mut p, B, &has, 2);
    assert_eq!(b, vec![blk(first, 2), blk(first, 3)]);
    assert_eq!(p.partial_pieces(), 1);

    // Two partial pieces with free blocks: the older one first.
    let c = pick(&mut p, C, &has, 1);
    let second = c[0].piece;
    assert_ne!(second, first);
    p.release(blk(first, 1), A);
    let d = pick(&mut p, C, &has, 3);
    assert_eq!(d, vec![blk(first, 1), blk(second, 1), blk(second, 2)]);
    assert_eq!(p.partial_pieces(), 2);
}

#[test]
fn never_picks_a_piece_the_peer_lacks() {
    let l = even(10, 2);
    let mut p = fresh(&l, config(2, 2), 4);
    p.add_availability(&Bitfield::full(10));
    // A starts some piece other peers may lack.
    let a = pick(&mut p, A, &Bitfield::full(10), 1);
    let started = a[0].piece;
    let others: Vec<u32> = (0..10).filter(|&i| i != started).take(2).collect();
    let has = bits(10, &others);
    let got = pick(&mut p, B, &has, 100);
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|b| others.contains(&b.piece)));
    assert!(pick(&mut p, C, &Bitfield::new(10), 100).is_empty());
}

#[test]
fn endgame_starts_only_when_no_block_is_free() {
    let l = even(2, 2);
    let mut p = fresh(&l, config(0, 2), 5);
    let has = Bitfield::full(2);
    assert!(!p.in_endgame());
    assert_eq!(pick(&mut p, A, &has, 3).len(), 3);
    assert!(!p.in_endgame());
    // B takes the last free block, not a duplicate.
    let b = pick(&mut p, B, &has, 1);
    assert_eq!(b.len(), 1);
    assert_eq!(p.requesters(b[0]), &[B]);
    assert!(p.in_endgame());
    // Now B gets A's blocks as duplicates.
    let dup = pick(&mut p, B, &has, 10);
    assert_eq!(dup.len(), 3);
    for d in &dup {
        assert_eq!(p.requesters(*d), &[A, B]);
    }
    // Releasing one duplicate does not free its block; releasing both does.
    p.release(dup[0], A);
    assert!(p.in_endgame());
    p.release(dup[0], B);
    assert!(!p.in_endgame());
    assert_eq!(pick(&mut p, C, &has, 10)[0], dup[0]);
}

#[test]
fn no_endgame_while_a_block_nobody_has_is_free() {
    let l = even(2, 2);
    let mut p = fresh(&l, config(0, 2), 5);
    let has = bits(2, &[0]);
    assert_eq!(pick(&mut p, A, &has, 10).len(), 2);
    assert!(!p.in_endgame());
    assert!(pick(&mut p, B, &has, 10).is_empty());
}

#[test]
fn endgame_gives_fewest_requesters_first_up_to_the_limit() {
    let l = even(2, 2);
    let has = Bitfield::full(2);
    let mut p = fresh(&l, config(0, 2), 6);
    let a = pick(&mut p, A, &has, 4);
    assert_eq!(pick(&mut p, B, &has, 4).len(), 4);
    // Every block has two requesters: the limit.
    assert!(pick(&mut p, C, &has, 4).is_empty());
    let _ = a;

    let mut p = fresh(&l, config(0, 3), 6);
    let a = pick(&mut p, A, &has, 4);
    let b = pick(&mut p, B, &has, 2);
    assert_eq!(b, a[..2]);
    let c = pick(&mut p, C, &has, 4);
    // The two blocks with one requester first, then the others, in order.
    assert_eq!(c, vec![a[2], a[3], a[0], a[1]]);
    assert_eq!(p.requesters(a[0]), &[A, B, C]);
    assert_eq!(pick(&mut p, ConnId(4), &has, 4), a[2..]);
    assert!(pick(&mut p, ConnId(5), &has, 4).is_empty());

    // A limit of 1 means no duplicates at all.
    let mut p = fresh(&l, config(0, 1), 6);
    assert_eq!(pick(&mut p, A, &has, 4).len(), 4);
    assert!(p.in_endgame());
    assert!(pick(&mut p, B, &has, 4).is_empty());
}

#[test]
fn first_copy_wins_and_the_others_are_cancelled() {
    let l = even(1, 2);
    let has = Bitfield::full(1);
    let mut p = fresh(&l, config(0, 3), 8);
    let a = pick(&mut p, A, &has, 2);
    assert_eq!(pick(&mut p, B, &has, 2), a);
    assert_eq!(pick(&mut p, C, &has, 1), a[..1]);
    assert_eq!(
        p.on_block(a[0], B),
        Arrival::New {
            cancel: vec![A, C],
            piece_complete: false
        }
    );
    assert!(p.requesters(a[0]).is_empty());
    assert_eq!(p.on_block(a[0], A), Arrival::Unwanted);
    assert_eq!(
        p.on_block(a[1], A),
        Arrival::New {
            cancel: vec![B],
            piece_complete: true
        }
    );
    assert_eq!(p.partial_pieces(), 1, "complete pieces await their hash");
    p.on_verified(0);
    assert_eq!(p.partial_pieces(), 0);
    assert!(p.is_complete());
    assert_eq!(p.on_block(a[1], C), Arrival::Unwanted);
}

#[test]
fn hash_failure_resets_the_piece_and_makes_it_single_source() {
    let l = even(1, 4);
    let has = Bitfield::full(1);
    let mut p = fresh(&l, config(0, 2), 9);
    let a = pick(&mut p, A, &has, 4);
    let arrivals: Vec<Arrival> = a.iter().map(|&b| p.on_block(b, A)).collect();
    assert_eq!(
        arrivals[3],
        Arrival::New {
            cancel: vec![],
            piece_complete: true
        }
    );
    assert!(p.in_endgame());
    p.on_hash_failed(0);
    assert_eq!(p.partial_pieces(), 0);
    assert!(!p.in_endgame());
    assert!(!p.have().get(0));

    // B takes the first block, so the rest are B's alone.
    assert_eq!(pick(&mut p, B, &has, 1), vec![blk(0, 0)]);
    assert!(pick(&mut p, A, &has, 4).is_empty());
    assert!(!p.in_endgame());
    assert_eq!(pick(&mut p, B, &has, 2), vec![blk(0, 1), blk(0, 2)]);
    assert_eq!(pick(&mut p, B, &has, 9), vec![blk(0, 3)]);
    // In endgame others may duplicate.
    assert!(p.in_endgame());
    assert_eq!(pick(&mut p, A, &has, 1), vec![blk(0, 0)]);
    for b in 0..4 {
        assert!(matches!(p.on_block(blk(0, b), B), Arrival::New { .. }));
    }
    p.on_verified(0);
    assert!(p.is_complete());
}

#[test]
fn single_source_moves_on_when_the_owner_stops_serving() {
    let l = even(1, 4);
    let has = Bitfield::full(1);
    let mut p = fresh(&l, config(0, 2), 10);
    for b in pick(&mut p, A, &has, 4) {
        p.on_block(b, A);
    }
    p.on_hash_failed(0);

    // The owner's only request is released: the piece is untouched again.
    assert_eq!(pick(&mut p, A, &has, 1), vec![blk(0, 0)]);
    p.release(blk(0, 0), A);
    assert_eq!(p.partial_pieces(), 0);
    assert_eq!(pick(&mut p, B, &has, 2), vec![blk(0, 0), blk(0, 1)]);
    assert!(pick(&mut p, C, &has, 2).is_empty());

    // B's blocks arrive (or time out) and B holds no request: C may take over.
    assert!(matches!(p.on_block(blk(0, 0), B), Arrival::New { .. }));
    p.release(blk(0, 1), B);
    assert_eq!(pick(&mut p, C, &has, 2), vec![blk(0, 1), blk(0, 2)]);
    assert!(pick(&mut p, B, &has, 2).is_empty());
    assert_eq!(pick(&mut p, C, &has, 2), vec![blk(0, 3)]);
}

#[test]
fn release_frees_blocks() {
    let l = even(2, 4);
    let has = Bitfield::full(2);
    let mut p = fresh(&l, config(0, 2), 11);
    let a = pick(&mut p, A, &has, 3);
    let piece = a[0].piece;
    // Unknown requests are ignored.
    p.release(a[0], B);
    p.release(blk(piece, 3), A);
    p.release(blk(piece, 99), A);
    p.release(blk(1 - piece, 0), A);
    assert_eq!(p.requesters(a[0]), &[A]);

    p.release(a[0], A);
    assert!(p.requesters(a[0]).is_empty());
    assert_eq!(pick(&mut p, B, &has, 2), vec![blk(piece, 0), blk(piece, 3)]);
    for b in [0, 3] {
        p.release(blk(piece, b), B);
    }
    for b in &a[1..] {
        p.release(*b, A);
    }
    assert_eq!(p.partial_pieces(), 0);
    assert_eq!(pick(&mut p, C, &has, 8).len(), 8);
}

#[test]
fn interesting_means_a_wanted_missing_piece() {
    let l = even(70, 1);
    let mut wanted = Bitfield::full(70);
    wanted.clear(5);
    let mut p = Picker::new(
        &l,
        &bits(70, &[3]),
        &wanted,
        config(0, 2),
        &mut Rng::from_u64(0),
    );
    assert!(!p.is_interesting(&Bitfield::new(70)));
    assert!(!p.is_interesting(&bits(70, &[3, 5])));
    assert!(p.is_interesting(&bits(70, &[3, 5, 69])));
    p.on_verified(69);
    assert!(!p.is_interesting(&bits(70, &[3, 5, 69])));
    p.set_wanted(5, true);
    assert!(p.is_interesting(&bits(70, &[3, 5, 69])));
    // A wrong-length bitfield never panics.
    assert!(p.is_interesting(&bits(10, &[0])));
    let _ = p.is_interesting(&Bitfield::full(200));
}

#[test]
fn unwanted_pieces_are_never_picked() {
    let l = even(6, 2);
    let has = Bitfield::full(6);
    let mut wanted = Bitfield::full(6);
    wanted.clear(1);
    let mut p = Picker::new(
        &l,
        &Bitfield::new(6),
        &wanted,
        config(0, 2),
        &mut Rng::from_u64(12),
    );
    p.set_wanted(4, false);
    let got = pick(&mut p, A, &has, 100);
    assert_eq!(got.len(), 8);
    assert!(got.iter().all(|b| b.piece != 1 && b.piece != 4));
    assert!(p.in_endgame());
    assert!(
        pick(&mut p, B, &has, 100)
            .iter()
            .all(|b| b.piece != 1 && b.piece != 4)
    );
    assert_eq!(p.on_block(blk(4, 0), A), Arrival::Unwanted);

    // Unwanting a partial piece drops it; in-flight copies become unwanted.
    let started = got[0].piece;
    assert!(matches!(p.on_block(got[0], A), Arrival::New { .. }));
    p.set_wanted(started, false);
    assert!(p.requesters(got[1]).is_empty());
    assert_eq!(p.on_block(got[1], A), Arrival::Unwanted);
    assert_eq!(p.partial_pieces(), 3);
    // Wanted again: from scratch.
    p.set_wanted(started, true);
    assert!(!p.in_endgame());
    assert_eq!(
        pick(&mut p, C, &has, 100),
        vec![blk(started, 0), blk(started, 1)]
    );
}

#[test]
fn complete_when_every_wanted_piece_is_verified() {
    let l = even(3, 1);
    let mut p = Picker::new(
        &l,
        &bits(3, &[0]),
        &bits(3, &[0, 1]),
        config(0, 2),
        &mut Rng::from_u64(0),
    );
    assert!(!p.is_complete());
    p.on_verified(1);
    assert!(p.is_complete());
    assert!(p.in_endgame());
    assert!(pick(&mut p, A, &Bitfield::full(3), 10).is_empty());
    p.set_wanted(2, true);
    assert!(!p.is_complete());
    p.set_wanted(2, false);
    assert!(p.is_complete());
    p.set_wanted(0, false);
    p.set_wanted(0, true);
    assert!(p.is_complete());
    assert!(!fresh(&even(1, 1), config(0, 2), 0).in_endgame());
}

#[test]
fn short_last_piece_has_fewer_blocks() {
    let l = layout(3, 4, BLOCK_LEN + 100);
    let mut p = fresh(&l, config(0, 2), 13);
    let got = pick(&mut p, A, &Bitfield::full(3), 100);
    assert_eq!(got.len(), 4 + 4 + 2);
    assert!(got.contains(&blk(2, 1)));
    assert!(!got.contains(&blk(2, 2)));
    assert_eq!(p.on_block(blk(2, 2), A), Arrival::Unwanted);
    assert!(matches!(
        p.on_block(blk(2, 0), A),
        Arrival::New {
            piece_complete: false,
            ..
        }
    ));
    assert!(matches!(
        p.on_block(blk(2, 1), A),
        Arrival::New {
            piece_complete: true,
            ..
        }
    ));
}

#[test]
fn unrequested_blocks_are_accepted_once() {
    let l = even(2, 2);
    let mut p = fresh(&l, config(0, 2), 14);
    assert_eq!(
        p.on_block(blk(1, 1), C),
        Arrival::New {
            cancel: vec![],
            piece_complete: false
        }
    );
    assert_eq!(p.partial_pieces(), 1);
    assert_eq!(p.on_block(blk(1, 1), C), Arrival::Unwanted);
    // The rest of that piece comes first.
    assert_eq!(pick(&mut p, A, &Bitfield::full(2), 1), vec![blk(1, 0)]);
    // A released request may still be answered.
    p.release(blk(1, 0), A);
    assert!(matches!(
        p.on_block(blk(1, 0), A),
        Arrival::New {
            piece_complete: true,
            ..
        }
    ));
}

#[test]
fn nonsense_inputs_are_ignored() {
    let l = even(3, 2);
    let mut p = fresh(&l, config(0, 2), 15);
    p.add_have(3);
    p.add_have(u32::MAX);
    assert_eq!(p.availability(3), 0);
    p.add_availability(&Bitfield::full(200));
    p.remove_availability(&Bitfield::full(200));
    p.remove_availability(&Bitfield::full(200));
    assert_eq!(p.availability(0), 0);
    assert_eq!(p.on_block(blk(3, 0), A), Arrival::Unwanted);
    assert_eq!(p.on_block(blk(u32::MAX, u32::MAX), A), Arrival::Unwanted);
    assert_eq!(p.on_block(blk(0, 2), A), Arrival::Unwanted);
    p.release(blk(u32::MAX, 0), A);
    p.on_verified(3);
    p.on_hash_failed(3);
    p.set_wanted(3, false);
    p.set_wanted(u32::MAX, true);
    assert!(p.requesters(blk(7, 7)).is_empty());
    assert!(pick(&mut p, A, &Bitfield::full(3), 0).is_empty());
    let got = pick(&mut p, A, &Bitfield::full(200), usize::MAX);
    assert_eq!(got.len(), 6);
    assert!(got.iter().all(|b| b.piece < 3));
    // Verdicts for pieces not complete (or already verified) do not break the counts.
    p.on_hash_failed(0);
    p.on_verified(1);
    p.on_verified(1);
    p.on_hash_failed(1);
    assert!(!p.in_endgame());
    let got = pick(&mut p, B, &Bitfield::full(3), 9);
    // Piece 0's two blocks, then (now in endgame) duplicates of A's piece 2.
    assert_eq!(got, vec![blk(0, 0), blk(0, 1), blk(2, 0), blk(2, 1)]);
    assert!(p.in_endgame());

    // An empty torrent.
    let empty = Layout::new(BLOCK_LEN, [0]).unwrap();
    let mut p = fresh(&empty, config(0, 2), 0);
    assert!(p.is_complete());
    assert!(pick(&mut p, A, &Bitfield::new(0), 9).is_empty());
    assert_eq!(p.on_block(blk(0, 0), A), Arrival::Unwanted);
}

fn streaming(window: u32) -> PickerConfig {
    PickerConfig {
        random_first: 4,
        endgame_max_requesters: 2,
        strategy: Strategy::Streaming { window },
    }
}

#[test]
fn streaming_from_one_seeder_is_in_order() {
    let l = even(40, 2);
    let mut p = fresh(&l, streaming(4), 3);
    // One peer with everything: every piece equally rare, so nothing is rarer than the
    // next piece in order, inside the window or beyond it.
    p.add_availability(&Bitfield::full(40));
    let has = Bitfield::full(40);
    let pieces: Vec<u32> = pick(&mut p, A, &has, 40).iter().map(|b| b.piece).collect();
    let expected: Vec<u32> = (0..20).flat_map(|i| [i, i]).collect();
    assert_eq!(pieces, expected, "random first does not apply either");
}

#[test]
fn streaming_is_in_order_but_a_piece_no_other_peer_has_comes_first() {
    let l = even(64, 1);
    let mut p = fresh(&l, streaming(4), 5);
    // Two peers have everything but piece 40, which only one has.
    p.add_availability(&Bitfield::full(64));
    let most = bits(64, &(0..64).filter(|&i| i != 40).collect::<Vec<_>>());
    p.add_availability(&most);
    let has = Bitfield::full(64);
    let first: Vec<u32> = (0..6).map(|_| pick(&mut p, A, &has, 1)[0].piece).collect();
    // Piece 40 only this peer has, and piece 0 the other has too: 40 first (the swarm's
    // need), then the window (0..4) in order, then 4 (beyond the window, none is rarer).
    assert_eq!(first, vec![40, 0, 1, 2, 3, 4]);
    // The head moves with what is verified: the window is 4..8 once 0..4 are in.
    for piece in 0..4 {
        assert_eq!(
            p.on_block(blk(piece, 0), A),
            Arrival::New {
                cancel: vec![],
                piece_complete: true
            }
        );
        p.on_verified(piece);
    }
    let next: Vec<u32> = (0..3).map(|_| pick(&mut p, A, &has, 1)[0].piece).collect();
    assert_eq!(next, vec![5, 6, 7]);
    // A peer with nothing in the window gets the lowest piece it has beyond it when none
    // is rarer.
    assert_eq!(
        pick(&mut p, B, &bits(64, &[30, 20, 50]), 1),
        vec![blk(20, 0)]
    );
}

#[test]
fn urgent_pieces_come_before_any_other_whatever_the_strategy() {
    let l = even(64, 1);
    for cfg in [config(0, 2), streaming(8), config(4, 2)] {
        let mut p = fresh(&l, cfg, 9);
        p.add_availability(&Bitfield::full(64));
        // Piece 30 is the rarest: rarest first would start it first.
        p.add_availability(&bits(64, &(0..64).filter(|&i| i != 30).collect::<Vec<_>>()));
        p.set_urgent([63, 0, 17, 17, 99]);
        let has = Bitfield::full(64);
        let first: Vec<u32> = (0..3).map(|_| pick(&mut p, A, &has, 1)[0].piece).collect();
        assert_eq!(first, vec![0, 17, 63], "{:?}", p.config.strategy);
        // A peer without an urgent piece gets the strategy's choice.
        let lacking = bits(64, &[5, 30]);
        let mut q = fresh(&l, p.config.clone(), 9);
        q.add_availability(&Bitfield::full(64));
        q.add_availability(&bits(64, &(0..64).filter(|&i| i != 30).collect::<Vec<_>>()));
        q.set_urgent([0, 63]);
        let got = pick(&mut q, A, &lacking, 1)[0].piece;
        match q.config.strategy {
            Strategy::Streaming { .. } => {
                assert_eq!(
                    got, 30,
                    "a piece no other peer has, before the next in order"
                )
            }
            _ => assert!(got == 30 || got == 5, "{got}"),
        }
    }
    // Verified urgent pieces are urgent no more.
    let mut p = fresh(&l, config(0, 2), 9);
    p.add_availability(&Bitfield::full(64));
    p.set_urgent([0, 63]);
    assert_eq!(p.urgent_missing, 2);
    p.on_block(blk(63, 0), A);
    p.on_verified(63);
    assert_eq!(p.urgent_missing, 1);
    // Marking a verified piece urgent does nothing.
    p.set_urgent([63]);
    assert_eq!(p.urgent_missing, 1);
}

#[test]
fn a_discarded_block_is_wanted_again_and_the_rest_of_its_piece_kept() {
    let l = even(1, 4);
    let mut p = fresh(&l, config(0, 1), 1);
    let all = bits(1, &[0]);
    let (a, b) = (ConnId(1), ConnId(2));
    assert_eq!(pick(&mut p, a, &all, 2), vec![blk(0, 0), blk(0, 1)]);
    assert_eq!(pick(&mut p, b, &all, 2), vec![blk(0, 2), blk(0, 3)]);
    for (block, from) in [(0, a), (1, a), (2, b)] {
        assert!(matches!(
            p.on_block(blk(0, block), from),
            Arrival::New { .. }
        ));
    }
    // A's blocks are thrown away: free again, and the piece no longer completes without them.
    p.discard(blk(0, 0));
    p.discard(blk(0, 1));
    // Not received (requested from B): ignored.
    p.discard(blk(0, 3));
    assert_eq!(pick(&mut p, b, &all, 4), vec![blk(0, 0), blk(0, 1)]);
    match p.on_block(blk(0, 3), b) {
        Arrival::New { piece_complete, .. } => assert!(!piece_complete),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        p.on_block(blk(0, 0), b),
        Arrival::New {
            piece_complete: false,
            ..
        }
    ));
    assert!(matches!(
        p.on_block(blk(0, 1), b),
        Arrival::New {
            piece_complete: true,
            ..
        }
    ));
}
