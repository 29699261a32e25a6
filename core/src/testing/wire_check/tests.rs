//! The checker fed hand-made exchanges: each violation is reported, a clean exchange is not.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::api::TorrentStats;
use crate::id::{InfoHash, PeerId};
use crate::time::Instant;

const PIECE: u32 = 32 * 1024;
const BLOCK: u32 = 16 * 1024;
const C: ConnId = ConnId(1);

fn layout() -> Layout {
    Layout::new(PIECE, [4 * u64::from(PIECE)]).expect("layout")
}

fn bits(ones: &[usize]) -> Bitfield {
    let mut b = Bitfield::new(4);
    for &p in ones {
        b.set(p);
    }
    b
}

fn handshake(fast: bool) -> Bytes {
    let mut h = Handshake {
        reserved: [0; 8],
        info_hash: InfoHash([1; 20]),
        peer_id: PeerId([2; 20]),
    };
    if fast {
        h.set(Handshake::FAST);
    }
    Bytes::copy_from_slice(&h.encode())
}

fn enc(msgs: &[Message]) -> Bytes {
    let mut out = BytesMut::new();
    for m in msgs {
        m.encode(&mut out);
    }
    out.freeze()
}

fn block(piece: u32, offset: u32) -> Message {
    Message::Piece {
        piece,
        offset,
        data: Bytes::from(vec![7u8; BLOCK as usize]),
    }
}

fn req(piece: u32, offset: u32) -> BlockRequest {
    BlockRequest {
        piece,
        offset,
        len: BLOCK,
    }
}

/// A session's checker and the driver's side of one connection `C`.
struct Fixture {
    check: WireCheck,
}

impl Fixture {
    /// We have pieces 0 and 1; the peer (connected, handshakes exchanged) has `peer_has`.
    fn new(fast: bool, peer_has: &[usize]) -> Self {
        let mut check = WireCheck::new(layout(), bits(&[0, 1]));
        check.output(&Output::Action(Action::Connect {
            conn: C,
            target: crate::api::Target::Addr(([10, 0, 0, 1], 6881).into()),
        }));
        let mut f = Fixture { check };
        f.send(handshake(fast));
        f.recv(handshake(fast));
        f.recv(enc(&[Message::Bitfield(Bytes::from(
            bits(peer_has).to_bytes(),
        ))]));
        f
    }

    fn send(&mut self, data: Bytes) {
        self.check.input(&Input::Timeout { now: Instant::ZERO });
        self.check
            .output(&Output::Action(Action::Send { conn: C, data }));
    }

    fn send_msgs(&mut self, msgs: &[Message]) {
        self.send(enc(msgs));
    }

    fn recv(&mut self, data: Bytes) {
        self.check.input(&Input::Received {
            now: Instant::ZERO,
            conn: C,
            data,
        });
    }

    fn recv_msgs(&mut self, msgs: &[Message]) {
        self.recv(enc(msgs));
    }

    fn drained(&mut self, up: u64, down: u64) -> Vec<Violation> {
        let stats = TorrentStats {
            uploaded: up,
            downloaded: down,
            ..TorrentStats::default()
        };
        self.check.after_drain(Some(&stats));
        self.check.take_violations()
    }
}

#[test]
fn clean_exchange_reports_nothing() {
    let mut f = Fixture::new(false, &[0, 2, 3]);
    f.send_msgs(&[
        Message::Bitfield(Bytes::from(bits(&[0, 1]).to_bytes())),
        Message::Interested,
    ]);
    assert_eq!(f.drained(0, 0), []);
    f.recv_msgs(&[Message::Unchoke, Message::Interested]);
    f.send_msgs(&[Message::Request(req(2, 0)), Message::Request(req(2, BLOCK))]);
    assert_eq!(f.drained(0, 0), []);
    f.recv_msgs(&[block(2, 0), block(2, BLOCK), Message::Have(1)]);
    let op = OpId(9);
    f.check.output(&Output::Action(Action::Write {
        op,
        torrent: crate::id::TorrentId(0),
        piece: 2,
        offset: 0,
        data: vec![],
        spans: vec![],
        expected: Some([0; 20]),
    }));
    assert_eq!(f.drained(0, 2 * u64::from(BLOCK)), []);
    f.check.input(&Input::Disk {
        now: Instant::ZERO,
        op,
        result: DiskResult::Ok,
    });
    // Piece 3 still wanted from this peer: interest stays.
    f.send_msgs(&[Message::Have(2), Message::Request(req(3, 0))]);
    assert_eq!(f.drained(0, 2 * u64::from(BLOCK)), []);
    // The peer asks; we unchoke and serve blocks of verified pieces.
    f.recv_msgs(&[Message::Request(req(0, 0)), Message::Request(req(2, BLOCK))]);
    f.send_msgs(&[Message::Unchoke, block(0, 0), block(2, BLOCK)]);
    assert_eq!(f.drained(2 * u64::from(BLOCK), 2 * u64::from(BLOCK)), []);
    // Piece 3 arrives and verifies: the peer has nothing more for us.
    f.recv_msgs(&[block(3, 0), block(3, BLOCK)]);
    f.check.output(&Output::Event(Event::PieceVerified {
        torrent: crate::id::TorrentId(0),
        piece: 3,
    }));
    f.send_msgs(&[Message::Have(3), Message::NotInterested]);
    assert_eq!(f.drained(2 * u64::from(BLOCK), 4 * u64::from(BLOCK)), []);
    assert_eq!(f.check.payload_sent(), 2 * u64::from(BLOCK));
    assert_eq!(f.check.payload_received(), 4 * u64::from(BLOCK));
}

#[test]
fn request_while_choked_is_reported() {
    let mut f = Fixture::new(false, &[2]);
    f.send_msgs(&[Message::Interested, Message::Request(req(2, 0))]);
    assert_eq!(
        f.drained(0, 0),
        [Violation::RequestWhileChoked {
            conn: C,
            req: req(2, 0)
        }]
    );
    // Requests decided between an unchoke and a choke of one input leave after both.
    f.recv_msgs(&[Message::Unchoke, Message::Choke]);
    f.check.output(&Output::Action(Action::Send {
        conn: C,
        data: enc(&[Message::Request(req(2, 0))]),
    }));
    assert_eq!(f.drained(0, 0), []);
    // In a later input, they are a breach.
    f.send_msgs(&[Message::Request(req(2, BLOCK))]);
    assert_eq!(
        f.drained(0, 0),
        [Violation::RequestWhileChoked {
            conn: C,
            req: req(2, BLOCK)
        }]
    );
}

#[test]
fn allowed_fast_request_while_choked_is_fine_only_with_fast() {
    let mut f = Fixture::new(true, &[2, 3]);
    f.recv_msgs(&[Message::AllowedFast(2)]);
    f.send_msgs(&[Message::Interested, Message::Request(req(2, 0))]);
    assert_eq!(f.drained(0, 0), []);
    f.send_msgs(&[Message::Request(req(3, 0))]);
    assert_eq!(
        f.drained(0, 0),
        [Violation::RequestWhileChoked {
            conn: C,
            req: req(3, 0)
        }]
    );

    let mut f = Fixture::new(false, &[2]);
    f.recv_msgs(&[Message::AllowedFast(2)]);
    f.send_msgs(&[Message::Interested, Message::Request(req(2, 0))]);
    assert_eq!(f.drained(0, 0).len(), 1);
}

#[test]
fn bad_requests_are_reported() {
    let mut f = Fixture::new(false, &[0, 2]);
    f.recv_msgs(&[Message::Unchoke]);
    // Not interested yet.
    f.send_msgs(&[Message::Request(req(2, 0))]);
    assert_eq!(
        f.drained(0, 0),
        [
            Violation::RequestNotInterested {
                conn: C,
                req: req(2, 0)
            },
            Violation::MissedInterest { conn: C, piece: 2 },
        ]
    );
    f.send_msgs(&[Message::Interested]);
    // A piece the peer lacks, and one we have.
    f.send_msgs(&[Message::Request(req(3, 0)), Message::Request(req(0, 0))]);
    assert_eq!(
        f.drained(0, 0),
        [
            Violation::RequestPeerLacks {
                conn: C,
                req: req(3, 0)
            },
            Violation::RequestPieceWeHave {
                conn: C,
                req: req(0, 0)
            },
        ]
    );
}

#[test]
fn block_to_choked_peer_is_reported() {
    let mut f = Fixture::new(false, &[]);
    f.recv_msgs(&[Message::Interested, Message::Request(req(0, 0))]);
    f.send_msgs(&[block(0, 0)]);
    assert_eq!(
        f.drained(u64::from(BLOCK), 0),
        [Violation::PieceToChokedPeer {
            conn: C,
            req: req(0, 0)
        }]
    );
}

#[test]
fn allowed_fast_block_to_choked_peer_is_fine() {
    let mut f = Fixture::new(true, &[]);
    f.send_msgs(&[Message::AllowedFast(0)]);
    f.recv_msgs(&[Message::Request(req(0, 0)), Message::Request(req(1, 0))]);
    f.send_msgs(&[block(0, 0), Message::Reject(req(1, 0))]);
    assert_eq!(f.drained(u64::from(BLOCK), 0), []);
    // A rejected request is no longer one.
    f.send_msgs(&[Message::Unchoke, block(1, 0)]);
    assert_eq!(
        f.drained(2 * u64::from(BLOCK), 0),
        [Violation::UnrequestedPiece {
            conn: C,
            req: req(1, 0)
        }]
    );
}

#[test]
fn unrequested_blocks_are_reported() {
    let mut f = Fixture::new(false, &[]);
    f.send_msgs(&[Message::Unchoke]);
    f.recv_msgs(&[Message::Request(req(0, 0))]);
    // Served once: a second copy was not asked for.
    f.send_msgs(&[block(0, 0), block(0, 0)]);
    assert_eq!(
        f.drained(2 * u64::from(BLOCK), 0),
        [Violation::UnrequestedPiece {
            conn: C,
            req: req(0, 0)
        }]
    );
    // A choke discards what the peer asked for before it.
    f.recv_msgs(&[Message::Request(req(1, 0))]);
    f.send_msgs(&[Message::Choke, Message::Unchoke, block(1, 0)]);
    assert_eq!(
        f.drained(3 * u64::from(BLOCK), 0),
        [Violation::UnrequestedPiece {
            conn: C,
            req: req(1, 0)
        }]
    );
}

#[test]
fn block_of_unverified_piece_is_reported() {
    let mut f = Fixture::new(false, &[]);
    f.send_msgs(&[Message::Unchoke]);
    f.recv_msgs(&[Message::Request(req(2, 0))]);
    f.send_msgs(&[block(2, 0)]);
    assert_eq!(
        f.drained(u64::from(BLOCK), 0),
        [Violation::PieceNotVerified {
            conn: C,
            req: req(2, 0)
        }]
    );
}

#[test]
fn have_before_verification_is_reported() {
    let mut f = Fixture::new(false, &[]);
    // A write without a hash (a spill) verifies nothing; a failed check neither.
    f.check.output(&Output::Action(Action::Write {
        op: OpId(5),
        torrent: crate::id::TorrentId(0),
        piece: 2,
        offset: 0,
        data: vec![],
        spans: vec![],
        expected: None,
    }));
    f.check.input(&Input::Disk {
        now: Instant::ZERO,
        op: OpId(5),
        result: DiskResult::Ok,
    });
    f.check.output(&Output::Action(Action::Verify {
        op: OpId(6),
        torrent: crate::id::TorrentId(0),
        piece: 3,
        spans: vec![],
        expected: [0; 20],
    }));
    f.check.input(&Input::Disk {
        now: Instant::ZERO,
        op: OpId(6),
        result: DiskResult::HashMismatch,
    });
    f.send_msgs(&[Message::Have(2), Message::Have(3)]);
    assert_eq!(
        f.drained(0, 0),
        [
            Violation::HaveNotVerified { conn: C, piece: 2 },
            Violation::HaveNotVerified { conn: C, piece: 3 },
        ]
    );
    f.send_msgs(&[Message::Bitfield(Bytes::from(bits(&[0, 3]).to_bytes()))]);
    assert_eq!(
        f.drained(0, 0),
        [Violation::HaveNotVerified { conn: C, piece: 3 }]
    );
    f.send_msgs(&[Message::HaveAll]);
    assert_eq!(
        f.drained(0, 0),
        [Violation::HaveNotVerified { conn: C, piece: 2 }]
    );
}

#[test]
fn inconsistent_interest_is_reported() {
    // Interested in a peer with nothing we lack.
    let mut f = Fixture::new(false, &[0, 1]);
    f.send_msgs(&[Message::Interested]);
    assert_eq!(
        f.drained(0, 0),
        [
            Violation::InterestedInNothing { conn: C },
            Violation::StaleInterest { conn: C },
        ]
    );
    // Not interested in a peer that has what we want.
    let mut f = Fixture::new(false, &[3]);
    assert_eq!(
        f.drained(0, 0),
        [Violation::MissedInterest { conn: C, piece: 3 }]
    );
    // Unless we do not want it, or the torrent is checking or failed.
    f.check.set_wanted(bits(&[0, 1, 2]));
    assert_eq!(f.drained(0, 0), []);
    let mut f = Fixture::new(false, &[3]);
    f.check.after_drain(Some(&TorrentStats {
        checking: true,
        ..TorrentStats::default()
    }));
    assert_eq!(f.check.take_violations(), []);
    f.check.output(&Output::Event(Event::DiskError {
        torrent: crate::id::TorrentId(0),
        kind: crate::api::DiskErrorKind::NoSpace,
        message: String::new(),
    }));
    assert_eq!(f.drained(0, 0), []);
    // Interest that outlives the piece that made it.
    let mut f = Fixture::new(false, &[2]);
    f.send_msgs(&[Message::Interested]);
    assert_eq!(f.drained(0, 0), []);
    f.check.output(&Output::Event(Event::PieceVerified {
        torrent: crate::id::TorrentId(0),
        piece: 2,
    }));
    assert_eq!(f.drained(0, 0), [Violation::StaleInterest { conn: C }]);
}

#[test]
fn undecodable_bytes_are_reported() {
    let mut f = Fixture::new(false, &[]);
    // A have of 4 bytes plus a stray one: length 6.
    f.send(Bytes::from_static(&[0, 0, 0, 6, 4, 0, 0, 0, 1, 0]));
    let v = f.drained(0, 0);
    assert!(
        matches!(v[..], [Violation::Undecodable { conn: C, .. }]),
        "{v:?}"
    );
}

#[test]
fn counters_that_disagree_with_the_wire_are_reported() {
    let mut f = Fixture::new(false, &[2]);
    f.send_msgs(&[Message::Interested]);
    f.recv_msgs(&[Message::Unchoke]);
    f.send_msgs(&[Message::Request(req(2, 0))]);
    f.recv_msgs(&[block(2, 0)]);
    assert_eq!(
        f.drained(0, u64::from(BLOCK) + 1),
        [Violation::StatsDownloaded {
            stats: u64::from(BLOCK) + 1,
            low: u64::from(BLOCK),
            high: u64::from(BLOCK)
        }]
    );
    f.send_msgs(&[Message::Unchoke]);
    f.recv_msgs(&[Message::Request(req(0, 0))]);
    f.send_msgs(&[block(0, 0)]);
    assert_eq!(
        f.drained(0, u64::from(BLOCK)),
        [Violation::StatsUploaded {
            stats: 0,
            wire: u64::from(BLOCK)
        }]
    );
}

#[test]
fn a_peer_closed_while_read_makes_its_bytes_uncertain() {
    let mut f = Fixture::new(false, &[2]);
    f.send_msgs(&[Message::Interested]);
    f.recv_msgs(&[Message::Unchoke]);
    f.send_msgs(&[Message::Request(req(2, 0)), Message::Request(req(2, BLOCK))]);
    assert_eq!(f.drained(0, 0), []);
    // Two blocks and garbage in one read: the session may have stopped after the first.
    let mut bytes = BytesMut::from(&enc(&[block(2, 0), block(2, BLOCK)])[..]);
    bytes.extend_from_slice(&[0, 0, 0, 1, 99]);
    f.recv(bytes.freeze());
    f.check.output(&Output::Action(Action::Close { conn: C }));
    assert_eq!(f.drained(0, u64::from(BLOCK)), []);
    assert_eq!(f.check.payload_received(), 0);
}

#[test]
fn announce_counters_are_checked() {
    let mut f = Fixture::new(false, &[]);
    f.send_msgs(&[Message::Unchoke]);
    f.recv_msgs(&[Message::Request(req(0, 0))]);
    f.send_msgs(&[block(0, 0)]);
    let t = ConnId(2);
    f.check.output(&Output::Action(Action::Connect {
        conn: t,
        target: crate::api::Target::Addr(([10, 0, 0, 9], 80).into()),
    }));
    let get = |up: u64| {
        Bytes::from(format!(
            "GET /announce?info_hash=%01&uploaded={up}&downloaded=0&left=65536&event=started HTTP/1.1\r\nHost: t\r\n\r\n"
        ))
    };
    f.check.output(&Output::Action(Action::Send {
        conn: t,
        data: get(u64::from(BLOCK)),
    }));
    assert_eq!(f.drained(u64::from(BLOCK), 0), []);
    assert_eq!(
        f.check.announces(),
        [Announce {
            conn: t,
            event: Some("started".into()),
            uploaded: Some(u64::from(BLOCK)),
            downloaded: Some(0),
            left: Some(65536),
        }]
    );
    let t2 = ConnId(3);
    f.check.output(&Output::Action(Action::Connect {
        conn: t2,
        target: crate::api::Target::Addr(([10, 0, 0, 9], 80).into()),
    }));
    f.check.output(&Output::Action(Action::Send {
        conn: t2,
        data: get(1),
    }));
    assert!(matches!(
        f.drained(u64::from(BLOCK), 0)[..],
        [Violation::AnnounceCounters { uploaded: 1, .. }]
    ));
}
