//! Peers that break the rules: each gets a clear reason and only its own connection closed.
//!
//! A `Script` is one real session (seeding a small torrent from memory) with one inbound
//! connection whose bytes the test writes by hand.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sha1::{Digest, Sha1};

use super::harness::{MemDisk, content, metainfo};
use crate::api::{Action, DiskResult, Event, Input, Output};
use crate::config::{Config, TorrentOptions};
use crate::id::{ConnId, PeerId};
use crate::metainfo::Metainfo;
use crate::session::Session;
use crate::time::{Duration, Instant};
use crate::wire::{BlockRequest, Handshake, Message};

struct Script {
    session: Session,
    meta: Arc<Metainfo>,
    disk: MemDisk,
    now: Instant,
    conn: ConnId,
    /// Bytes the session sent on the scripted connection.
    sent: Vec<u8>,
    closed: bool,
    events: Vec<Event>,
}

const REMOTE: ([u8; 4], u16) = ([10, 9, 9, 9], 5000);

impl Script {
    /// A seeding session with a scripted peer that has sent its handshake.
    fn new(config: Config) -> Script {
        let data = content(200_000, 3);
        let meta = metainfo("t", &[("a", 150_000), ("b", 50_000)], 32768, &data);
        let disk = MemDisk::full(&meta, &data);
        let now = Instant::ZERO;
        let mut session = Session::new(config, now, [9; 32]);
        session
            .add_torrent(
                now,
                meta.clone(),
                TorrentOptions {
                    have: None,
                    seed: true,
                    files: None,
                },
            )
            .expect("a new torrent");
        let conn = session
            .accept(now, SocketAddr::from(REMOTE))
            .expect("accepted");
        let mut s = Script {
            session,
            meta,
            disk,
            now,
            conn,
            sent: Vec::new(),
            closed: false,
            events: Vec::new(),
        };
        s.drain();
        let hs = Handshake {
            reserved: [0; 8],
            info_hash: s.meta.info_hash,
            peer_id: PeerId([7; 20]),
        };
        s.feed(&hs.encode());
        s
    }

    fn drain(&mut self) {
        loop {
            match self.session.poll_output() {
                Output::Timeout(_) => return,
                Output::Event(e) => self.events.push(e),
                Output::Action(a) => self.act(a),
            }
        }
    }

    fn act(&mut self, action: Action) {
        let now = self.now;
        let result = match action {
            Action::Send { conn, data } if conn == self.conn => {
                assert!(!self.closed, "sent on a closed connection");
                self.sent.extend_from_slice(&data);
                self.session.handle_input(Input::Sent {
                    now,
                    conn,
                    bytes: data.len(),
                });
                return;
            }
            Action::Close { conn } if conn == self.conn => {
                self.closed = true;
                return;
            }
            Action::Verify {
                op,
                spans,
                expected,
                ..
            } => {
                let ok = <[u8; 20]>::from(Sha1::digest(self.disk.read(&spans))) == expected;
                (
                    op,
                    if ok {
                        DiskResult::Ok
                    } else {
                        DiskResult::HashMismatch
                    },
                )
            }
            Action::Read { op, spans, .. } => {
                (op, DiskResult::Data(Bytes::from(self.disk.read(&spans))))
            }
            Action::Write { op, .. } => (op, DiskResult::Ok),
            _ => return,
        };
        self.session.handle_input(Input::Disk {
            now,
            op: result.0,
            result: result.1,
        });
    }

    fn feed(&mut self, bytes: &[u8]) {
        let now = self.now;
        self.session.handle_input(Input::Received {
            now,
            conn: self.conn,
            data: Bytes::copy_from_slice(bytes),
        });
        self.drain();
    }

    fn msg(&mut self, m: Message) {
        let mut b = BytesMut::new();
        m.encode(&mut b);
        self.feed(&b);
    }

    fn wait(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(500);
            let now = self.now;
            self.session.handle_input(Input::Timeout { now });
            self.drain();
        }
    }

    /// The reason the scripted peer was closed with, if it was.
    fn close_reason(&self) -> Option<String> {
        self.events.iter().find_map(|e| match e {
            Event::PeerClosed { addr, reason, .. } if *addr == SocketAddr::from(REMOTE) => {
                Some(reason.to_string())
            }
            _ => None,
        })
    }

    fn assert_closed_with(&self, needle: &str) {
        assert!(self.closed, "peer not closed; events: {:?}", self.events);
        let reason = self.close_reason().unwrap_or_default();
        assert!(
            reason.contains(needle),
            "reason {reason:?} does not mention {needle:?}"
        );
    }
}

#[test]
fn honest_script_gets_bitfield_and_is_not_closed() {
    let mut s = Script::new(Config::default());
    s.msg(Message::Interested);
    assert!(!s.closed);
    // handshake (68) then a bitfield frame (4 + 1 + 1 byte for 7 pieces).
    assert!(s.sent.len() >= 68 + 6, "{}", s.sent.len());
    assert_eq!(
        s.sent[68 + 4],
        5,
        "first message after the handshake is the bitfield"
    );
}

#[test]
fn oversized_length_prefix() {
    let mut s = Script::new(Config::default());
    s.feed(&[0xff, 0xff, 0xff, 0xff, 7]);
    s.assert_closed_with("a message of 4294967295 bytes exceeds the limit");
}

#[test]
fn unknown_message_id() {
    let mut s = Script::new(Config::default());
    s.feed(&[0, 0, 0, 3, 99, 1, 2]);
    s.assert_closed_with("unknown message id 99");
}

#[test]
fn bitfield_of_the_wrong_length() {
    let mut s = Script::new(Config::default());
    s.msg(Message::Bitfield(Bytes::new()));
    s.assert_closed_with("bitfield is 0 bytes, expected 1 for 7 pieces");
    let mut s = Script::new(Config::default());
    s.msg(Message::Bitfield(Bytes::from_static(&[0xff, 0xff])));
    s.assert_closed_with("a bitfield message of 3 bytes exceeds the limit of 2");
}

#[test]
fn bitfield_with_spare_bits_set() {
    let mut s = Script::new(Config::default());
    s.msg(Message::Bitfield(Bytes::from_static(&[0xff])));
    s.assert_closed_with("spare bits");
}

#[test]
fn have_out_of_range() {
    let mut s = Script::new(Config::default());
    s.msg(Message::Have(7));
    s.assert_closed_with("have for piece 7 of 7");
}

#[test]
fn late_bitfield_adds_to_announced_pieces() {
    // aria2 sends its bitfield after other messages to peers without extensions.
    let mut s = Script::new(Config::default());
    s.msg(Message::Interested);
    s.msg(Message::Have(6));
    s.msg(Message::Bitfield(Bytes::from_static(&[0b1100_0000])));
    assert!(!s.closed, "{:?}", s.close_reason());
    let peers = s.session.peers(crate::id::TorrentId(1));
    assert_eq!(peers.iter().map(|p| p.pieces).collect::<Vec<_>>(), vec![3]);
}

#[test]
fn blocks_nobody_asked_for() {
    let mut s = Script::new(Config::default());
    for _ in 0..200 {
        s.msg(Message::Piece {
            piece: 0,
            offset: 0,
            data: Bytes::from(vec![0; 16384]),
        });
        if s.closed {
            break;
        }
    }
    s.assert_closed_with("nobody asked for");
}

#[test]
fn block_of_the_wrong_size() {
    let mut s = Script::new(Config::default());
    s.msg(Message::Piece {
        piece: 0,
        offset: 0,
        data: Bytes::from(vec![0; 1000]),
    });
    s.assert_closed_with("not a block we ask for");
}

#[test]
fn requests_while_choked_too_long_and_out_of_range() {
    let mut s = Script::new(Config::default());
    // Not interested, so never unchoked: many requests after the grace period are abuse.
    s.wait(Duration::from_secs(6));
    for i in 0..400 {
        s.msg(Message::Request(BlockRequest {
            piece: i % 6,
            offset: 0,
            len: 16384,
        }));
        if s.closed {
            break;
        }
    }
    s.assert_closed_with("more than 300 requests while choked");
    // Requests outside a piece are never a race: twenty are enough.
    let mut s = Script::new(Config::default());
    for _ in 0..30 {
        s.msg(Message::Request(BlockRequest {
            piece: 6,
            offset: 16384,
            len: 16384,
        }));
    }
    s.assert_closed_with("too many invalid requests (last one outside the piece)");
}

#[test]
fn oversized_requests() {
    let mut s = Script::new(Config::default());
    s.msg(Message::Interested);
    s.wait(Duration::from_secs(1));
    for _ in 0..30 {
        s.msg(Message::Request(BlockRequest {
            piece: 0,
            offset: 0,
            len: 1 << 20,
        }));
    }
    s.assert_closed_with("longer than 16 KiB");
}

#[test]
fn request_flood_is_cut_off_and_memory_stays_bounded() {
    let config = Config {
        max_peer_requests: 100,
        ..Config::default()
    };
    let mut s = Script::new(config);
    s.msg(Message::Interested);
    s.wait(Duration::from_secs(1));
    // Never read what we send: the core stops producing at max_send_buffer and queues
    // requests, until the queue bound is hit.
    let mut frames = BytesMut::new();
    for i in 0..100_000u32 {
        Message::Request(BlockRequest {
            piece: i % 6,
            offset: 0,
            len: 16384,
        })
        .encode(&mut frames);
    }
    let before = s.sent.len();
    s.feed(&frames);
    s.assert_closed_with("request flood: 401 requests beyond the 100 it may queue");
    assert!(
        s.sent.len() - before < 5 << 20,
        "sent {} bytes to a flooder",
        s.sent.len() - before
    );
}

#[test]
fn trickling_one_byte_a_second() {
    let mut s = Script::new(Config::default());
    let mut frame = BytesMut::new();
    Message::Piece {
        piece: 0,
        offset: 0,
        data: Bytes::from(vec![0; 16384]),
    }
    .encode(&mut frame);
    for b in frame.iter().take(90) {
        s.feed(&[*b]);
        s.wait(Duration::from_secs(1));
        if s.closed {
            break;
        }
    }
    s.assert_closed_with("trickling");
}

#[test]
fn garbage_instead_of_a_handshake() {
    let data = content(200_000, 3);
    let meta = metainfo("t", &[("a", 200_000)], 32768, &data);
    let now = Instant::ZERO;
    let mut session = Session::new(Config::default(), now, [1; 32]);
    session
        .add_torrent(
            now,
            meta,
            TorrentOptions {
                have: None,
                seed: true,
                files: None,
            },
        )
        .expect("a new torrent");
    let conn = session
        .accept(now, SocketAddr::from(REMOTE))
        .expect("accepted");
    session.handle_input(Input::Received {
        now,
        conn,
        data: Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n"),
    });
    let mut closed = false;
    while let Output::Action(_) | Output::Event(_) = {
        let o = session.poll_output();
        if let Output::Action(Action::Close { conn: c }) = &o {
            closed |= *c == conn;
        }
        o
    } {}
    assert!(closed);
}

#[test]
fn inbound_peer_during_the_check_is_turned_away() {
    let data = content(200_000, 3);
    let meta = metainfo("t", &[("a", 200_000)], 32768, &data);
    let now = Instant::ZERO;
    let mut session = Session::new(Config::default(), now, [2; 32]);
    session
        .add_torrent(
            now,
            meta.clone(),
            TorrentOptions {
                have: None,
                seed: true,
                files: None,
            },
        )
        .expect("a new torrent");
    // The check's Verify actions are left unanswered: the torrent is still checking.
    while let Output::Action(_) | Output::Event(_) = session.poll_output() {}
    let conn = session
        .accept(now, SocketAddr::from(REMOTE))
        .expect("accepted");
    let hs = Handshake {
        reserved: [0; 8],
        info_hash: meta.info_hash,
        peer_id: PeerId([7; 20]),
    };
    session.handle_input(Input::Received {
        now,
        conn,
        data: Bytes::copy_from_slice(&hs.encode()),
    });
    let mut closed = false;
    loop {
        match session.poll_output() {
            Output::Action(Action::Close { conn: c }) => closed |= c == conn,
            Output::Action(Action::Send { conn: c, .. }) => {
                assert_ne!(c, conn, "nothing is sent while checking")
            }
            Output::Timeout(_) => break,
            _ => {}
        }
    }
    assert!(closed, "a peer that arrives during the check is closed");
}
