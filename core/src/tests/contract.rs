//! The contract in `api.rs`, as an embedder relies on it: inputs for what the core no
//! longer knows are ignored, a torrent is added once, close reasons print plain words.

use std::net::SocketAddr;

use bytes::Bytes;

use super::harness::*;
use crate::api::{
    Action, AddTorrentError, BadRequest, CloseReason, DiskResult, Input, Misbehaviour, Output,
};
use crate::config::Config;
use crate::id::{ConnId, OpId};
use crate::session::Session;
use crate::time::{Duration, Instant};
use crate::wire::WireError;

fn drain(s: &mut Session) -> (Vec<Output>, Instant) {
    let mut out = Vec::new();
    loop {
        match s.poll_output() {
            Output::Timeout(t) => return (out, t),
            o => out.push(o),
        }
    }
}

#[test]
fn inputs_for_connections_and_operations_the_core_no_longer_knows_are_ignored() {
    let data = content(100_000, 5);
    let meta = metainfo("t", &[("t", data.len() as u64)], 32768, &data);
    let now = Instant::ZERO + Duration::from_secs(10);
    let mut s = Session::new(Config::default(), now, [3; 32]);
    let t = s
        .add_torrent(
            now,
            meta.clone(),
            crate::TorrentOptions {
                have: empty_have(&meta),
                seed: false,
                files: None,
            },
        )
        .expect("a new torrent");
    drain(&mut s);

    // An inbound connection sends garbage instead of a handshake: the core closes it.
    let conn = s
        .accept(now, SocketAddr::from(([192, 0, 2, 7], 40_000)))
        .expect("accepted");
    s.handle_input(Input::Received {
        now,
        conn,
        data: Bytes::from_static(
            b"GET / HTTP/1.1\r\n\r\n....................................................",
        ),
    });
    let (out, deadline) = drain(&mut s);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Action(Action::Close { conn: c }) if *c == conn)),
        "{out:?}"
    );
    assert!(deadline > now, "nothing is due now");

    // The driver raced the close: everything it still reports about that connection, or
    // about one the session never handed out, or a disk operation it never asked for, is
    // ignored.
    let stats = s.stats(t);
    let never = ConnId(u64::MAX);
    for c in [conn, never] {
        for input in [
            Input::Connected { now, conn: c },
            Input::Received {
                now,
                conn: c,
                data: Bytes::from_static(b"\x00\x00\x00\x01\x02"),
            },
            Input::Sent {
                now,
                conn: c,
                bytes: 1 << 20,
            },
            Input::Closed {
                now,
                conn: c,
                error: Some("connection reset".into()),
            },
        ] {
            s.handle_input(input.clone());
            let (out, again) = drain(&mut s);
            assert!(out.is_empty(), "{input:?} gave {out:?}");
            assert_eq!(again, deadline);
        }
    }
    s.handle_input(Input::Disk {
        now,
        op: OpId(u64::MAX),
        result: DiskResult::Ok,
    });
    let (out, again) = drain(&mut s);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(again, deadline);
    assert_eq!(s.stats(t), stats);
    assert!(s.peers(t).is_empty());
}

#[test]
fn a_torrent_already_in_the_session_is_refused_and_the_first_one_kept() {
    let data = content(50_000, 6);
    let meta = metainfo("t", &[("t", data.len() as u64)], 32768, &data);
    let now = Instant::ZERO;
    let mut s = Session::new(Config::default(), now, [4; 32]);
    let first = s
        .add_torrent(now, meta.clone(), seeder())
        .expect("a new torrent");
    let again = s.add_torrent(now, meta.clone(), seeder());
    assert_eq!(again, Err(AddTorrentError::Duplicate(meta.info_hash)));
    assert!(
        again
            .unwrap_err()
            .to_string()
            .contains(&meta.info_hash.to_string())
    );
    assert!(s.stats(first).is_some());
}

#[test]
fn close_reasons_print_plain_words() {
    let cases = [
        (CloseReason::Remote(None), "closed by remote"),
        (
            CloseReason::Remote(Some("connection reset".into())),
            "connection reset",
        ),
        (CloseReason::ConnectTimeout, "connection timed out"),
        (
            CloseReason::HashFailures(2),
            "banned: 2 pieces from this peer failed the hash check",
        ),
        (
            CloseReason::Misbehaved(Misbehaviour::InvalidRequests(BadRequest::OutsidePiece)),
            "too many invalid requests (last one outside the piece)",
        ),
        (
            CloseReason::Misbehaved(Misbehaviour::HaveOutOfRange {
                piece: 9,
                pieces: 4,
            }),
            "have for piece 9 of 4",
        ),
        (
            CloseReason::Misbehaved(Misbehaviour::Protocol(WireError::BadLength {
                id: 4,
                len: 1,
                expected: 5,
            })),
            "protocol error: ",
        ),
    ];
    for (reason, words) in cases {
        assert!(
            reason.to_string().starts_with(words),
            "{reason:?}: {reason}"
        );
    }
}
