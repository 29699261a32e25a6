use super::*;
use crate::rng::Rng;
use proptest::prelude::*;
// The proptest trait, not the picker's `Strategy` enum (both come in through globs).
use proptest::strategy::Strategy;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, BTreeSet};

/// Most requests the harness lets one peer have outstanding (the caller's queue limit).
const QUEUE: usize = 6;

#[derive(Debug, Clone)]
enum Op {
    /// A peer connects; the seed draws its bitfield (empty, full or random).
    Join(u64),
    /// A peer leaves: its requests are released and its pieces become unavailable.
    Leave(usize),
    /// A peer announces a piece (out-of-range pieces included).
    Have(usize, u32),
    /// A peer gets up to this many blocks, within its queue limit.
    Pick(usize, usize),
    /// An outstanding request is answered by its requester.
    Arrive(usize),
    /// A block arrives from anyone (maybe unknown, unrequested or out of range).
    Stray(usize, u32, u32),
    /// An outstanding request times out.
    Release(usize),
    /// A release of anything (maybe never requested).
    ReleaseStray(usize, u32, u32),
    /// A complete piece gets its hash verdict.
    Verdict(usize, bool),
    SetWanted(u32, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<u64>().prop_map(Op::Join),
        1 => any::<usize>().prop_map(Op::Leave),
        2 => (any::<usize>(), 0u32..45).prop_map(|(i, p)| Op::Have(i, p)),
        7 => (any::<usize>(), 0usize..10).prop_map(|(i, m)| Op::Pick(i, m)),
        7 => any::<usize>().prop_map(Op::Arrive),
        1 => (any::<usize>(), 0u32..45, 0u32..6).prop_map(|(i, p, b)| Op::Stray(i, p, b)),
        2 => any::<usize>().prop_map(Op::Release),
        1 => (any::<usize>(), 0u32..45, 0u32..6)
            .prop_map(|(i, p, b)| Op::ReleaseStray(i, p, b)),
        3 => (any::<usize>(), prop::bool::weighted(0.7)).prop_map(|(i, ok)| Op::Verdict(i, ok)),
        1 => (0u32..45, prop::bool::weighted(0.6)).prop_map(|(p, w)| Op::SetWanted(p, w)),
    ]
}

/// A torrent of `pieces` pieces of `blocks` blocks; the last one `last_len` bytes.
fn layout(pieces: u32, blocks: u32, last_len: u32) -> Layout {
    let piece_len = blocks * BLOCK_LEN;
    let total = u64::from(pieces - 1) * u64::from(piece_len) + u64::from(last_len);
    Layout::new(piece_len, [total]).unwrap()
}

fn layout_strategy() -> impl Strategy<Value = Layout> {
    (1u32..=40, 1u32..=4)
        .prop_flat_map(|(pieces, blocks)| (Just(pieces), Just(blocks), 1..=blocks * BLOCK_LEN))
        .prop_map(|(pieces, blocks, last)| layout(pieces, blocks, last))
}

fn config_strategy() -> impl Strategy<Value = PickerConfig> {
    (0u32..5, 0usize..4, any::<bool>()).prop_map(
        |(random_first, endgame_max_requesters, sequential)| PickerConfig {
            random_first,
            endgame_max_requesters,
            strategy: if sequential {
                super::Strategy::Sequential
            } else {
                super::Strategy::RarestFirst
            },
        },
    )
}

/// A random bitfield of `len` bits: empty, full, or about `density` set.
fn random_bits(rng: &mut Rng, len: usize) -> Bitfield {
    match rng.below(4) {
        0 => Bitfield::new(len),
        1 => Bitfield::full(len),
        _ => {
            let density = rng.chance(0.5);
            let mut b = Bitfield::new(len);
            for i in 0..len {
                if rng.chance(if density { 0.8 } else { 0.3 }) {
                    b.set(i);
                }
            }
            b
        }
    }
}

/// The picker under test and a brute-force model of what it should know.
struct Harness {
    layout: Layout,
    n: u32,
    cfg: PickerConfig,
    picker: Picker,
    rng: Rng,
    peers: Vec<(ConnId, Bitfield)>,
    next_id: u64,
    /// Outstanding requests per block, in the order made, with whether each was a
    /// duplicate (made while another peer had the block requested: endgame).
    requests: BTreeMap<BlockRef, Vec<(ConnId, bool)>>,
    received: BTreeSet<BlockRef>,
    have: Vec<bool>,
    wanted: Vec<bool>,
    failed: Vec<bool>,
    /// Pieces with every block received, awaiting a verdict.
    complete: BTreeSet<u32>,
}

impl Harness {
    fn new(layout: Layout, cfg: PickerConfig, seed: u64) -> Self {
        let n = layout.num_pieces();
        let mut rng = Rng::from_u64(seed);
        let mut have = Bitfield::new(n as usize);
        let mut wanted = Bitfield::full(n as usize);
        for i in 0..n as usize {
            if rng.chance(0.1) {
                have.set(i);
            }
            if rng.chance(0.15) {
                wanted.clear(i);
            }
        }
        let picker = Picker::new(&layout, &have, &wanted, cfg.clone(), &mut rng);
        Harness {
            n,
            cfg,
            picker,
            peers: Vec::new(),
            next_id: 1,
            requests: BTreeMap::new(),
            received: BTreeSet::new(),
            have: (0..n as usize).map(|i| have.get(i)).collect(),
            wanted: (0..n as usize).map(|i| wanted.get(i)).collect(),
            failed: vec![false; n as usize],
            complete: BTreeSet::new(),
            rng,
            layout,
        }
    }

    fn blocks_in(&self, piece: u32) -> u32 {
        self.layout.blocks_in_piece(piece)
    }

    fn outstanding(&self, peer: ConnId) -> usize {
        self.requests
            .values()
            .filter(|rs| rs.iter().any(|&(p, _)| p == peer))
            .count()
    }

    fn all_requests(&self) -> Vec<(BlockRef, ConnId)> {
        self.requests
            .iter()
            .flat_map(|(&b, rs)| rs.iter().map(move |&(p, _)| (b, p)))
            .collect()
    }

    fn forget_request(&mut self, block: BlockRef, peer: ConnId) {
        if let Some(rs) = self.requests.get_mut(&block) {
            rs.retain(|&(p, _)| p != peer);
            if rs.is_empty() {
                self.requests.remove(&block);
            }
        }
    }

    /// The picker dropped everything it knew about `piece`'s blocks.
    fn forget_piece(&mut self, piece: u32) {
        self.requests.retain(|b, _| b.piece != piece);
        self.received.retain(|b| b.piece != piece);
        self.complete.remove(&piece);
    }

    /// A stray peer: a connected one or one the picker never saw.
    fn some_peer(&self, i: usize) -> ConnId {
        if !self.peers.is_empty() && !i.is_multiple_of(3) {
            self.peers[i % self.peers.len()].0
        } else {
            ConnId(10_000 + (i % 5) as u64)
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Join(seed) => {
                let bits = random_bits(&mut Rng::from_u64(seed), self.n as usize);
                let id = ConnId(self.next_id);
                self.next_id += 1;
                self.picker.add_availability(&bits);
                self.peers.push((id, bits));
            }
            Op::Leave(i) => {
                if self.peers.is_empty() {
                    return Ok(());
                }
                let (id, bits) = self.peers.remove(i % self.peers.len());
                for (b, p) in self.all_requests() {
                    if p == id {
                        self.picker.release(b, id);
                        self.forget_request(b, id);
                    }
                }
                self.picker.remove_availability(&bits);
            }
            Op::Have(i, piece) => {
                if piece >= self.n {
                    self.picker.add_have(piece);
                    return Ok(());
                }
                if self.peers.is_empty() {
                    return Ok(());
                }
                let k = i % self.peers.len();
                if self.peers[k].1.set(piece as usize) {
                    self.picker.add_have(piece);
                }
            }
            Op::Pick(i, max) => self.pick(i, max)?,
            Op::Arrive(i) => {
                let all = self.all_requests();
                if !all.is_empty() {
                    let (b, p) = all[i % all.len()];
                    self.deliver(b, p)?;
                }
            }
            Op::Stray(i, piece, block) => {
                let from = self.some_peer(i);
                self.deliver(BlockRef { piece, block }, from)?;
            }
            Op::Release(i) => {
                let all = self.all_requests();
                if !all.is_empty() {
                    let (b, p) = all[i % all.len()];
                    self.picker.release(b, p);
                    self.forget_request(b, p);
                }
            }
            Op::ReleaseStray(i, piece, block) => {
                let peer = self.some_peer(i);
                let b = BlockRef { piece, block };
                self.picker.release(b, peer);
                self.forget_request(b, peer);
            }
            Op::Verdict(i, pass) => {
                if self.complete.is_empty() {
                    return Ok(());
                }
                let piece = *self.complete.iter().nth(i % self.complete.len()).unwrap();
                prop_assert!(self.requests.keys().all(|b| b.piece != piece));
                if pass {
                    self.picker.on_verified(piece);
                    self.have[piece as usize] = true;
                    self.failed[piece as usize] = false;
                } else {
                    self.picker.on_hash_failed(piece);
                    self.failed[piece as usize] = true;
                }
                self.forget_piece(piece);
            }
            Op::SetWanted(piece, wanted) => {
                self.picker.set_wanted(piece, wanted);
                if piece < self.n {
                    if !wanted && self.wanted[piece as usize] {
                        self.forget_piece(piece);
                    }
                    self.wanted[piece as usize] = wanted;
                }
            }
        }
        Ok(())
    }

    fn pick(&mut self, i: usize, max: usize) -> Result<(), TestCaseError> {
        if self.peers.is_empty() {
            return Ok(());
        }
        let (id, bits) = self.peers[i % self.peers.len()].clone();
        let max = max.min(QUEUE - self.outstanding(id));
        let mut out = Vec::new();
        self.picker.pick(id, &bits, max, &mut self.rng, &mut out);
        prop_assert!(out.len() <= max, "{} blocks for max {}", out.len(), max);
        let mut duplicated = false;
        for &b in &out {
            let p = b.piece as usize;
            prop_assert!(b.piece < self.n && b.block < self.blocks_in(b.piece));
            prop_assert!(bits.get(p), "{b:?}: peer lacks the piece");
            prop_assert!(self.wanted[p] && !self.have[p], "{b:?}: unwanted or have");
            prop_assert!(!self.received.contains(&b), "{b:?}: already received");
            let rs = self.requests.entry(b).or_default();
            prop_assert!(
                rs.iter().all(|&(q, _)| q != id),
                "{b:?}: already requested by this peer"
            );
            let dup = !rs.is_empty();
            duplicated |= dup;
            rs.push((id, dup));
            if dup {
                prop_assert!(rs.len() <= self.cfg.endgame_max_requesters);
            }
        }
        if duplicated {
            prop_assert!(
                self.picker.in_endgame(),
                "duplicate request outside endgame"
            );
        }
        Ok(())
    }

    fn deliver(&mut self, b: BlockRef, from: ConnId) -> Result<(), TestCaseError> {
        let valid = b.piece < self.n
            && self.wanted[b.piece as usize]
            && !self.have[b.piece as usize]
            && b.block < self.blocks_in(b.piece)
            && !self.received.contains(&b);
        let got = self.picker.on_block(b, from);
        if !valid {
            prop_assert_eq!(got, Arrival::Unwanted);
            return Ok(());
        }
        let mut expected: Vec<ConnId> = self
            .requests
            .remove(&b)
            .unwrap_or_default()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|&p| p != from)
            .collect();
        self.received.insert(b);
        let complete = (0..self.blocks_in(b.piece)).all(|k| {
            self.received.contains(&BlockRef {
                piece: b.piece,
                block: k,
            })
        });
        if complete {
            self.complete.insert(b.piece);
        }
        let Arrival::New {
            mut cancel,
            piece_complete,
        } = got
        else {
            return Err(TestCaseError::fail(format!("{b:?} from {from:?} unwanted")));
        };
        cancel.sort();
        expected.sort();
        prop_assert_eq!(cancel, expected);
        prop_assert_eq!(piece_complete, complete);
        Ok(())
    }

    /// Every invariant, by brute force.
    fn check(&self) -> Result<(), TestCaseError> {
        let p = &self.picker;
        let mut free = 0u64;
        let mut partial = 0usize;
        for piece in 0..self.n {
            let i = piece as usize;
            let avail = self.peers.iter().filter(|(_, b)| b.get(i)).count() as u32;
            prop_assert_eq!(p.availability(piece), avail, "availability of {}", piece);
            prop_assert_eq!(p.have().get(i), self.have[i]);
            let live = self.wanted[i] && !self.have[i];
            let mut touched = false;
            for k in 0..self.blocks_in(piece) + 1 {
                let b = BlockRef { piece, block: k };
                let mut model: Vec<ConnId> = self
                    .requests
                    .get(&b)
                    .map(|rs| rs.iter().map(|&(q, _)| q).collect())
                    .unwrap_or_default();
                let mut real = p.requesters(b).to_vec();
                model.sort();
                real.sort();
                prop_assert_eq!(&real, &model, "requesters of {:?}", b);
                if k == self.blocks_in(piece) {
                    prop_assert!(model.is_empty());
                    continue;
                }
                prop_assert!(model.len() <= self.cfg.endgame_max_requesters.max(1));
                let received = self.received.contains(&b);
                if !model.is_empty() {
                    prop_assert!(live && !received, "request for {:?}", b);
                    for q in &model {
                        let has = self.peers.iter().any(|(id, bits)| id == q && bits.get(i));
                        prop_assert!(has, "{:?} requested from {:?} lacking it", b, q);
                    }
                }
                touched |= received || !model.is_empty();
                if live && !received && model.is_empty() {
                    free += 1;
                }
            }
            partial += usize::from(touched);
            if self.failed[i] && live {
                // Single source: at most one peer holds requests made outside endgame.
                let sources: BTreeSet<ConnId> = self
                    .requests
                    .iter()
                    .filter(|(b, _)| b.piece == piece)
                    .flat_map(|(_, rs)| rs.iter().filter(|&&(_, dup)| !dup).map(|&(q, _)| q))
                    .collect();
                prop_assert!(sources.len() <= 1, "piece {} from {:?}", piece, sources);
            }
        }
        prop_assert_eq!(p.availability(self.n), 0);
        // The rarity tree: leaves as the state says, inner nodes the least below.
        for piece in 0..self.n {
            let leaf = p.rarity.node[p.rarity.leaves + p.priority[piece as usize] as usize];
            prop_assert_eq!(leaf, p.rarity_leaf(piece));
        }
        for i in 1..p.rarity.leaves {
            let below = p.rarity.node[2 * i].min(p.rarity.node[2 * i + 1]);
            prop_assert_eq!(p.rarity.node[i], below);
        }
        // The rarest piece each peer could start, by brute force.
        for (_, bits) in &self.peers {
            let brute = (0..self.n)
                .filter(|&q| {
                    let i = q as usize;
                    let touched = self
                        .received
                        .iter()
                        .chain(self.requests.keys())
                        .any(|b| b.piece == q);
                    bits.get(i) && self.wanted[i] && !self.have[i] && !touched
                })
                .min_by_key(|&q| (p.availability(q), p.priority[q as usize]));
            let by_tree = p
                .rarity
                .find(|r| bits.get(p.by_priority[r] as usize), usize::MAX);
            prop_assert_eq!(by_tree, Ok(brute.map(|q| p.priority[q as usize] as usize)));
            prop_assert_eq!(p.rarest_by_scan(bits), brute);
        }
        prop_assert_eq!(p.in_endgame(), free == 0, "free blocks: {}", free);
        prop_assert_eq!(p.partial_pieces(), partial);
        let complete = (0..self.n as usize).all(|i| !self.wanted[i] || self.have[i]);
        prop_assert_eq!(p.is_complete(), complete);
        for (id, bits) in &self.peers {
            prop_assert!(self.outstanding(*id) <= QUEUE);
            let interesting =
                (0..self.n as usize).any(|i| bits.get(i) && self.wanted[i] && !self.have[i]);
            prop_assert_eq!(p.is_interesting(bits), interesting);
        }
        Ok(())
    }
}

proptest! {
    #[test]
    fn picker_matches_the_model(
        layout in layout_strategy(),
        cfg in config_strategy(),
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..250),
    ) {
        let mut h = Harness::new(layout, cfg, seed);
        h.check()?;
        for op in &ops {
            h.step(op)?;
            h.check()?;
        }
    }
}

/// Downloads everything from `peers` (whose bitfields together cover every piece),
/// with random picks, arrivals, time-outs, chokes and failed hashes; fails on a stall.
fn download(
    layout: &Layout,
    cfg: PickerConfig,
    peers: &[Bitfield],
    seed: u64,
) -> Result<(), TestCaseError> {
    let n = layout.num_pieces() as usize;
    let mut rng = Rng::from_u64(seed);
    let mut p = Picker::new(layout, &Bitfield::new(n), &Bitfield::full(n), cfg, &mut rng);
    let ids: Vec<ConnId> = (0..peers.len() as u64).map(|i| ConnId(i + 1)).collect();
    for bits in peers {
        p.add_availability(bits);
    }
    let mut outstanding: Vec<(BlockRef, ConnId)> = Vec::new();
    let mut steps = 0;
    while !p.is_complete() {
        steps += 1;
        prop_assert!(steps < 50_000, "no progress");
        let k = rng.index(peers.len());
        let queued = outstanding.iter().filter(|&&(_, q)| q == ids[k]).count();
        let action = if outstanding.is_empty() {
            0
        } else {
            rng.below(12)
        };
        match action {
            0..=3 => {
                let max = rng.index(QUEUE - queued + 1);
                let mut out = Vec::new();
                p.pick(ids[k], &peers[k], max, &mut rng, &mut out);
                outstanding.extend(out.into_iter().map(|b| (b, ids[k])));
                if outstanding.is_empty() {
                    // Nothing in flight: some peer must be given something.
                    for (id, bits) in ids.iter().zip(peers) {
                        let mut out = Vec::new();
                        p.pick(*id, bits, QUEUE, &mut rng, &mut out);
                        outstanding.extend(out.into_iter().map(|b| (b, *id)));
                    }
                    prop_assert!(!outstanding.is_empty(), "stalled");
                }
            }
            4..=9 => {
                let (b, from) = outstanding.swap_remove(rng.index(outstanding.len()));
                if let Arrival::New {
                    cancel,
                    piece_complete,
                } = p.on_block(b, from)
                {
                    outstanding.retain(|&(ob, q)| ob != b || !cancel.contains(&q));
                    if piece_complete {
                        if rng.chance(0.2) {
                            p.on_hash_failed(b.piece);
                        } else {
                            p.on_verified(b.piece);
                        }
                    }
                }
            }
            10 => {
                // A time-out.
                let (b, q) = outstanding.swap_remove(rng.index(outstanding.len()));
                p.release(b, q);
            }
            _ => {
                // A choke: every request of one peer released.
                for &(b, q) in outstanding.iter().filter(|&&(_, q)| q == ids[k]) {
                    p.release(b, q);
                }
                outstanding.retain(|&(_, q)| q != ids[k]);
            }
        }
    }
    prop_assert!(p.have().all());
    prop_assert_eq!(p.partial_pieces(), 0);
    Ok(())
}

proptest! {
    #[test]
    fn rarity_tree_agrees_with_a_scan(
        pieces in 1u32..3000,
        seed in any::<u64>(),
        budget in prop_oneof![Just(0usize), 1usize..200, Just(usize::MAX)],
    ) {
        let l = layout(pieces, 1, BLOCK_LEN);
        let n = pieces as usize;
        let mut rng = Rng::from_u64(seed);
        let mut wanted = Bitfield::new(n);
        for i in 0..n {
            if rng.chance(0.9) {
                wanted.set(i);
            }
        }
        let cfg = PickerConfig {
            random_first: 0,
            ..PickerConfig::default()
        };
        let mut p = Picker::new(&l, &Bitfield::new(n), &wanted, cfg, &mut rng);
        let mut peers = Vec::new();
        for _ in 0..rng.index(6) + 1 {
            let bits = random_bits(&mut rng, n);
            p.add_availability(&bits);
            peers.push(bits);
        }
        for _ in 0..rng.index(50) {
            p.add_have(rng.below(u64::from(pieces)) as u32);
        }
        for _ in 0..rng.index(30) {
            let piece = rng.below(u64::from(pieces)) as u32;
            match rng.below(3) {
                0 => p.on_verified(piece),
                1 => {
                    let _ = p.on_block(BlockRef { piece, block: 0 }, ConnId(9));
                }
                _ => p.set_wanted(piece, rng.chance(0.5)),
            }
        }
        if rng.chance(0.5) {
            let gone = peers.swap_remove(0);
            p.remove_availability(&gone);
        }
        let asker = random_bits(&mut rng, n);
        peers.push(asker);
        for bits in &peers {
            let scan = p.rarest_by_scan(bits);
            match p.rarity.find(|r| bits.get(p.by_priority[r] as usize), budget) {
                Ok(rank) => prop_assert_eq!(rank.map(|r| p.by_priority[r]), scan),
                Err(()) => prop_assert!(budget < usize::MAX),
            }
            let mut rng = Rng::from_u64(0);
            prop_assert_eq!(p.choose_new_piece(bits, &mut rng), scan);
        }
    }

    #[test]
    fn a_single_seeder_completes_the_download(
        layout in layout_strategy(),
        cfg in config_strategy(),
        seed in any::<u64>(),
    ) {
        let n = layout.num_pieces() as usize;
        download(&layout, cfg, &[Bitfield::full(n)], seed)?;
    }

    #[test]
    fn several_partial_seeders_complete_the_download(
        layout in layout_strategy(),
        cfg in config_strategy(),
        seed in any::<u64>(),
        peers in 2usize..5,
    ) {
        let n = layout.num_pieces() as usize;
        let mut rng = Rng::from_u64(seed ^ 0x5eed);
        let mut bits: Vec<Bitfield> = (0..peers).map(|_| Bitfield::new(n)).collect();
        for i in 0..n {
            // Every piece somewhere, some in several places.
            bits[rng.index(peers)].set(i);
            bits[rng.index(peers)].set(i);
        }
        download(&layout, cfg, &bits, seed)?;
    }
}
