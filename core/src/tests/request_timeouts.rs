//! Requests that time out: the peer is marked snubbed and the pieces it did not deliver are
//! avoided with it, decoded from what the session asks on the wire.

use std::net::SocketAddr;

use super::harness::content;
use super::rig::{Remote, Rig, TorrentSpec, handshake};
use crate::api::Event;
use crate::config::Config;
use crate::time::Duration;
use crate::wire::{BlockRequest, Message};

const LEN: usize = 128 * 1024;
const PIECE: u32 = 32 * 1024;

fn requests(msgs: &[Message]) -> Vec<BlockRequest> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Request(r) => Some(*r),
            _ => None,
        })
        .collect()
}

/// A seed (as far as the session can tell) whose requests all time out, then that answers:
/// it is the only source, so the pieces it did not deliver are asked of it again, one
/// request at a time while it is snubbed, and the download completes.
#[test]
fn a_peer_that_timed_out_is_asked_again_when_it_alone_has_what_is_missing() {
    let config = Config::default();
    let timeout = config.request_timeout;
    let mut rig = Rig::new(
        config,
        &[TorrentSpec {
            len: LEN,
            piece: PIECE,
            seed: false,
        }],
    );
    let n = rig.metas[0].layout().num_pieces();
    let conn = rig.accept(SocketAddr::from(([10, 7, 7, 7], 7000)));
    let hs = handshake(rig.metas[0].info_hash, 1, false);
    rig.feed(conn, &hs);
    let mut remote = Remote::new(conn, None, &[]);
    remote.handshake(&mut rig);
    remote.send(&mut rig, Message::Bitfield(vec![0xf0].into()));
    remote.send(&mut rig, Message::Unchoke);
    let first = requests(&remote.messages(&mut rig, n));
    assert_eq!(
        first.len(),
        LEN / (16 * 1024),
        "every block at once: {first:?}"
    );

    // Nothing comes back: every request times out, and every piece is one of those.
    rig.wait(timeout + Duration::from_secs(2));
    let again = requests(&remote.messages(&mut rig, n));
    assert_eq!(
        again.len(),
        1,
        "asked again, one request while snubbed: {again:?}"
    );

    // Served from now on: the download completes from this peer alone.
    let data = content(LEN, 40);
    let mut pending = again;
    for _ in 0..64 {
        let Some(r) = pending.pop() else { break };
        let at = (r.piece * PIECE + r.offset) as usize;
        remote.send(
            &mut rig,
            Message::Piece {
                piece: r.piece,
                offset: r.offset,
                data: data[at..at + r.len as usize].to_vec().into(),
            },
        );
        pending.extend(requests(&remote.messages(&mut rig, n)));
    }
    assert!(
        rig.events
            .iter()
            .any(|e| matches!(e, Event::Complete { .. })),
        "complete once the peer answers"
    );
}

/// Two peers with every piece; the first takes every request and never answers. At the
/// time-out its requests go to the second, and the first, snubbed, is not asked for them
/// again while the second is there to send them.
#[test]
fn timed_out_requests_go_to_another_peer_not_back() {
    let mut config = Config::default();
    // No duplicate requests: the second peer gets blocks only once they are free again.
    config.picker.endgame_max_requesters = 1;
    let timeout = config.request_timeout;
    let mut rig = Rig::new(
        config,
        &[TorrentSpec {
            len: LEN,
            piece: PIECE,
            seed: false,
        }],
    );
    let n = rig.metas[0].layout().num_pieces();
    let join = |rig: &mut Rig, last: u8| {
        let conn = rig.accept(SocketAddr::from(([10, 7, 7, last], 7000)));
        rig.feed(conn, &handshake(rig.metas[0].info_hash, last, false));
        let mut remote = Remote::new(conn, None, &[]);
        remote.handshake(rig);
        remote.send(rig, Message::Bitfield(vec![0xf0].into()));
        remote.send(rig, Message::Unchoke);
        remote
    };
    let mut silent = join(&mut rig, 1);
    let first = requests(&silent.messages(&mut rig, n));
    assert_eq!(first.len(), LEN / (16 * 1024), "{first:?}");
    rig.wait(timeout - Duration::from_secs(2));
    let mut other = join(&mut rig, 2);
    assert!(requests(&other.messages(&mut rig, n)).is_empty());

    rig.wait(Duration::from_secs(5));
    let moved = requests(&other.messages(&mut rig, n));
    let mut moved_blocks: Vec<(u32, u32)> = moved.iter().map(|r| (r.piece, r.offset)).collect();
    let mut first_blocks: Vec<(u32, u32)> = first.iter().map(|r| (r.piece, r.offset)).collect();
    moved_blocks.sort_unstable();
    first_blocks.sort_unstable();
    assert_eq!(
        moved_blocks, first_blocks,
        "every timed-out block asked of the other"
    );
    let again = requests(&silent.messages(&mut rig, n));
    assert!(
        again.is_empty(),
        "not asked of the silent peer again: {again:?}"
    );
}
