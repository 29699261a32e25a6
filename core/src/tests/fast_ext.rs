//! The Fast extension (BEP 6) on the wire: what a session sends to a peer that has the bit,
//! and what it does with the peer's fast messages, decoded by scripted peers.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::rig::{Remote, Rig, TorrentSpec, handshake};
use crate::api::Event;
use crate::config::Config;
use crate::fast::{ALLOWED_FAST_COUNT, allowed_fast_set};
use crate::id::ConnId;
use crate::mse::Policy;
use crate::time::Duration;
use crate::wire::{BlockRequest, Message};

const BLOCK: u32 = 16 * 1024;

fn config() -> Config {
    Config {
        fast_extension: true,
        encryption: Policy::Disable,
        ..Config::default()
    }
}

fn seeder(config: Config) -> Rig {
    Rig::new(
        config,
        &[TorrentSpec {
            len: 4 << 20,
            piece: 64 * 1024,
            seed: true,
        }],
    )
}

/// A scripted peer at `addr` dials the session for torrent 0 in plaintext.
fn join(rig: &mut Rig, addr: SocketAddr, id: u8, fast: bool) -> (ConnId, Remote) {
    let conn = rig.accept(addr);
    let hs = handshake(rig.metas[0].info_hash, id, fast);
    rig.feed(conn, &hs);
    let mut remote = Remote::new(conn, None, &[]);
    let theirs = remote.handshake(rig);
    assert!(
        theirs.has(crate::wire::Handshake::FAST),
        "the session offers the Fast extension"
    );
    (conn, remote)
}

fn num_pieces(rig: &Rig) -> u32 {
    rig.metas[0].layout().num_pieces()
}

#[test]
fn a_seed_sends_have_all_and_the_allowed_fast_set() {
    let mut rig = seeder(config());
    let addr = SocketAddr::from(([10, 3, 4, 5], 7000));
    let (_, mut remote) = join(&mut rig, addr, 1, true);
    let n = num_pieces(&rig);
    let msgs = remote.messages(&mut rig, n);
    let set = allowed_fast_set(addr.ip(), &rig.metas[0].info_hash, n, ALLOWED_FAST_COUNT);
    assert_eq!(set.len(), 10);
    let mut expected = vec![Message::HaveAll];
    expected.extend(set.iter().map(|&p| Message::AllowedFast(p)));
    assert_eq!(msgs, expected);

    // Without the bit: a bitfield, no fast message.
    let (_, mut plain) = join(&mut rig, SocketAddr::from(([10, 3, 4, 6], 7000)), 2, false);
    let msgs = plain.messages(&mut rig, n);
    assert!(
        matches!(msgs.as_slice(), [Message::Bitfield(_)]),
        "{msgs:?}"
    );
}

#[test]
fn a_leecher_with_nothing_sends_have_none() {
    let mut rig = Rig::new(
        config(),
        &[TorrentSpec {
            len: 300_000,
            piece: 32768,
            seed: false,
        }],
    );
    let (_, mut remote) = join(&mut rig, SocketAddr::from(([10, 3, 4, 5], 7000)), 1, true);
    let n = num_pieces(&rig);
    let msgs = remote.messages(&mut rig, n);
    assert_eq!(msgs.first(), Some(&Message::HaveNone), "{msgs:?}");
    assert!(!msgs.iter().any(|m| matches!(m, Message::AllowedFast(_))));
}

fn requests_for(piece: u32, blocks: u32) -> impl Iterator<Item = BlockRequest> {
    (0..blocks).map(move |b| BlockRequest {
        piece,
        offset: b * BLOCK,
        len: BLOCK,
    })
}

#[test]
fn while_choked_only_allowed_fast_pieces_are_served_the_rest_rejected() {
    // No upload slot at all: every peer stays choked.
    let mut rig = seeder(Config {
        unchoke_slots: 0,
        optimistic_unchoke: false,
        ..config()
    });
    let addr = SocketAddr::from(([10, 3, 4, 5], 7000));
    let (_, mut remote) = join(&mut rig, addr, 1, true);
    let n = num_pieces(&rig);
    let set = allowed_fast_set(addr.ip(), &rig.metas[0].info_hash, n, ALLOWED_FAST_COUNT);
    let _ = remote.messages(&mut rig, n);
    remote.send(&mut rig, Message::Interested);
    let allowed = set[0];
    let other = (0..n).find(|p| !set.contains(p)).unwrap();
    for r in requests_for(allowed, 2).chain(requests_for(other, 2)) {
        remote.send(&mut rig, Message::Request(r));
    }
    let msgs = remote.messages(&mut rig, n);
    let served: Vec<(u32, u32)> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::Piece { piece, offset, .. } => Some((*piece, *offset)),
            _ => None,
        })
        .collect();
    let rejected: Vec<BlockRequest> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::Reject(r) => Some(*r),
            _ => None,
        })
        .collect();
    assert!(!msgs.contains(&Message::Unchoke));
    assert_eq!(served, vec![(allowed, 0), (allowed, BLOCK)], "{msgs:?}");
    assert_eq!(rejected, requests_for(other, 2).collect::<Vec<_>>());
}

#[test]
fn a_choke_rejects_the_requests_it_drops() {
    // One slot, no optimistic one: the seed's round robin moves the slot from one peer to
    // the other, and the peer losing it has requests queued (its sends are not reported
    // written, so its send window is full).
    let mut rig = seeder(Config {
        unchoke_slots: 1,
        optimistic_unchoke: false,
        max_send_buffer: 256 * 1024,
        ..config()
    });
    rig.ack_sends = false;
    let n = num_pieces(&rig);
    let mut peers = Vec::new();
    for (i, ip) in [[10, 3, 4, 5], [10, 7, 8, 9]].into_iter().enumerate() {
        let addr = SocketAddr::from((ip, 7000));
        let (_, mut remote) = join(&mut rig, addr, 1 + i as u8, true);
        let set = allowed_fast_set(addr.ip(), &rig.metas[0].info_hash, n, ALLOWED_FAST_COUNT);
        let _ = remote.messages(&mut rig, n);
        peers.push((remote, set, Vec::<BlockRequest>::new(), BTreeSet::new()));
    }
    for (remote, set, asked, _) in &mut peers {
        remote.send(&mut rig, Message::Interested);
        // 32 blocks (512 KiB) of pieces outside its allowed-fast set: more than one send
        // window.
        let pieces: Vec<u32> = (0..n).filter(|p| !set.contains(p)).take(8).collect();
        for p in pieces {
            for r in requests_for(p, 4) {
                remote.send(&mut rig, Message::Request(r));
                asked.push(r);
            }
        }
    }
    let mut choked_after_unchoke = None;
    for _ in 0..300 {
        for (i, (remote, _, asked, served)) in peers.iter_mut().enumerate() {
            let msgs = remote.messages(&mut rig, n);
            let mut unchoked = false;
            for (k, m) in msgs.iter().enumerate() {
                match m {
                    Message::Unchoke => unchoked = true,
                    Message::Piece { piece, offset, .. } => {
                        served.insert((*piece, *offset));
                    }
                    Message::Choke if !served.is_empty() || unchoked => {
                        choked_after_unchoke = Some((i, msgs[k + 1..].to_vec()));
                    }
                    Message::Reject(r) => {
                        assert!(asked.contains(r), "reject of a request never made")
                    }
                    _ => {}
                }
            }
        }
        if choked_after_unchoke.is_some() {
            break;
        }
        rig.wait(Duration::from_secs(1));
    }
    let (i, after) = choked_after_unchoke.expect("the slot moved to the other peer");
    let (_, _, asked, served) = &peers[i];
    let rejected: Vec<BlockRequest> = after
        .iter()
        .filter_map(|m| match m {
            Message::Reject(r) => Some(*r),
            _ => None,
        })
        .collect();
    assert!(!served.is_empty(), "it was served while unchoked");
    assert!(
        !rejected.is_empty(),
        "queued requests are rejected on the choke: {after:?}"
    );
    // Every request is answered: a block or a reject, never both, never neither.
    let mut answered: BTreeSet<(u32, u32)> = served.clone();
    for r in &rejected {
        assert!(
            answered.insert((r.piece, r.offset)),
            "{r:?} served and rejected"
        );
    }
    let asked: BTreeSet<(u32, u32)> = asked.iter().map(|r| (r.piece, r.offset)).collect();
    assert_eq!(answered, asked);
}

fn leecher() -> Rig {
    Rig::new(
        config(),
        &[TorrentSpec {
            len: 320 * 1024,
            piece: 32 * 1024,
            seed: false,
        }],
    )
}

fn requests(msgs: &[Message]) -> Vec<BlockRequest> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Request(r) => Some(*r),
            _ => None,
        })
        .collect()
}

#[test]
fn choked_it_requests_allowed_fast_pieces_only_and_a_reject_goes_elsewhere_at_once() {
    let mut rig = leecher();
    let n = num_pieces(&rig);
    let (_, mut a) = join(&mut rig, SocketAddr::from(([10, 5, 5, 5], 7000)), 1, true);
    a.send(&mut rig, Message::HaveAll);
    let msgs = a.messages(&mut rig, n);
    assert!(msgs.contains(&Message::Interested), "{msgs:?}");
    assert!(requests(&msgs).is_empty(), "choked: no request yet");
    a.send(&mut rig, Message::AllowedFast(3));
    a.send(&mut rig, Message::AllowedFast(7));
    let asked = requests(&a.messages(&mut rig, n));
    let pieces: BTreeSet<u32> = asked.iter().map(|r| r.piece).collect();
    assert_eq!(pieces, BTreeSet::from([3, 7]), "{asked:?}");
    assert_eq!(asked.len(), 4, "both blocks of both pieces");

    // Peer B has piece 3 only and unchokes: its blocks are all asked of A already.
    let (_, mut b) = join(&mut rig, SocketAddr::from(([10, 6, 6, 6], 7000)), 2, true);
    let mut bits = vec![0u8; n.div_ceil(8) as usize];
    bits[0] = 0x10; // piece 3
    b.send(&mut rig, Message::Bitfield(bits.into()));
    b.send(&mut rig, Message::Unchoke);
    let before = requests(&b.messages(&mut rig, n));
    let rejected = asked.iter().copied().find(|r| r.piece == 3).unwrap();
    assert!(!before.contains(&rejected), "{before:?}");
    a.send(&mut rig, Message::Reject(rejected));
    let after = requests(&b.messages(&mut rig, n));
    assert!(
        after.contains(&rejected),
        "re-requested from B at once: {after:?}"
    );
    let again = requests(&a.messages(&mut rig, n));
    assert!(
        !again.contains(&rejected),
        "not asked of A again: {again:?}"
    );
}

#[test]
fn fast_messages_without_the_bit_and_rejects_never_asked_for_close_the_peer() {
    let mut rig = seeder(config());
    let (conn, mut remote) = join(&mut rig, SocketAddr::from(([10, 3, 4, 5], 7000)), 1, false);
    remote.send(&mut rig, Message::HaveAll);
    assert!(rig.closed.contains(&conn));
    let reason = closed_reason(&rig);
    assert!(reason.contains("without the Fast extension"), "{reason}");

    let mut rig = leecher();
    let (conn, mut remote) = join(&mut rig, SocketAddr::from(([10, 3, 4, 5], 7000)), 1, true);
    remote.send(&mut rig, Message::HaveAll);
    remote.send(
        &mut rig,
        Message::Reject(BlockRequest {
            piece: 1,
            offset: 0,
            len: BLOCK,
        }),
    );
    assert!(rig.closed.contains(&conn));
    assert!(closed_reason(&rig).contains("never requested"));
}

fn closed_reason(rig: &Rig) -> String {
    rig.events
        .iter()
        .find_map(|e| match e {
            Event::PeerClosed { reason, .. } => Some(reason.to_string()),
            _ => None,
        })
        .unwrap_or_default()
}
