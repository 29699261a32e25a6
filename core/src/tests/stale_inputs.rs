//! Inputs about connections and disk operations the core does not know (never had, closed
//! itself, or already answered) are ignored: nothing comes out for them, and the deadline
//! stays. Drivers rely on it: events already on their way when the core closed a
//! connection are fed like any others.

use std::net::SocketAddr;

use bytes::Bytes;

use super::harness::{content, metainfo};
use crate::api::{Action, DiskError, DiskErrorKind, DiskResult, Input, Output};
use crate::config::{Config, TorrentOptions};
use crate::id::{ConnId, OpId, PeerId};
use crate::session::Session;
use crate::time::{Duration, Instant};
use crate::wire::Handshake;

/// Everything the session puts out until it waits, and the deadline it waits for.
fn drain(session: &mut Session) -> (Vec<Output>, Instant) {
    let mut out = Vec::new();
    loop {
        match session.poll_output() {
            Output::Timeout(deadline) => return (out, deadline),
            other => out.push(other),
        }
    }
}

fn closes(outputs: &[Output], conn: ConnId) -> bool {
    outputs
        .iter()
        .any(|o| matches!(o, Output::Action(Action::Close { conn: c }) if *c == conn))
}

fn sends_on(outputs: &[Output], conn: ConnId) -> bool {
    outputs
        .iter()
        .any(|o| matches!(o, Output::Action(Action::Send { conn: c, .. }) if *c == conn))
}

#[test]
fn inputs_for_unknown_and_closed_connections_and_operations_are_ignored() {
    let data = content(200_000, 3);
    let meta = metainfo("t", &[("a", 200_000)], 32768, &data);
    let mut session = Session::new(Config::default(), Instant::ZERO, [4; 32]);
    session
        .add_torrent(
            Instant::ZERO,
            meta.clone(),
            TorrentOptions {
                have: None,
                seed: true,
                files: None,
            },
        )
        .expect("a new torrent");
    // The check: every piece verified. The first operation answered is kept.
    let now = Instant::ZERO + Duration::from_millis(10);
    let mut answered = None;
    let mut pending = drain(&mut session).0;
    while !pending.is_empty() {
        for output in std::mem::take(&mut pending) {
            if let Output::Action(Action::Verify { op, .. }) = output {
                answered.get_or_insert(op);
                session.handle_input(Input::Disk {
                    now,
                    op,
                    result: DiskResult::Ok,
                });
                pending.extend(drain(&mut session).0);
            }
        }
    }
    let answered = answered.expect("the check verified pieces");

    let handshake = |id: u8| {
        Bytes::copy_from_slice(
            &Handshake {
                reserved: [0; 8],
                info_hash: meta.info_hash,
                peer_id: PeerId([id; 20]),
            }
            .encode(),
        )
    };
    let received = |conn, data: &Bytes| Input::Received {
        now,
        conn,
        data: data.clone(),
    };
    let peer = |n: u8| SocketAddr::from(([10, 0, 0, n], 6881));

    // A connection closed before its handshake...
    let early = session.accept(now, peer(1)).expect("accepted");
    session.handle_input(received(
        early,
        &Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n"),
    ));
    assert!(closes(&drain(&mut session).0, early));
    // ... and one closed after it, for a message too large.
    let late = session.accept(now, peer(2)).expect("accepted");
    session.handle_input(received(late, &handshake(7)));
    assert!(
        sends_on(&drain(&mut session).0, late),
        "no answer to the handshake"
    );
    session.handle_input(received(
        late,
        &Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]),
    ));
    assert!(closes(&drain(&mut session).0, late));
    let (_, deadline) = drain(&mut session);

    let disk = |op, result| Input::Disk { now, op, result };
    let failed = || {
        DiskResult::Error(DiskError {
            kind: DiskErrorKind::Other,
            message: "writing x: Input/output error".into(),
        })
    };
    // A peer the core has not seen (the one above is banned now).
    let handshake = handshake(8);
    let mut stale = Vec::new();
    for conn in [ConnId(999_999), early, late] {
        stale.extend([
            Input::Connected { now, conn },
            received(conn, &handshake),
            received(conn, &Bytes::from_static(&[0, 0, 0, 1, 2])),
            Input::Sent {
                now,
                conn,
                bytes: 100,
            },
            Input::Closed {
                now,
                conn,
                error: None,
            },
            Input::Closed {
                now,
                conn,
                error: Some("connection reset".into()),
            },
        ]);
    }
    for op in [OpId(999_999), answered] {
        stale.extend([
            disk(op, DiskResult::Ok),
            disk(op, DiskResult::HashMismatch),
            disk(op, DiskResult::Data(Bytes::from_static(b"abc"))),
            disk(op, failed()),
        ]);
    }
    for input in stale {
        let shown = format!("{input:?}");
        session.handle_input(input);
        let (outputs, after) = drain(&mut session);
        assert!(outputs.is_empty(), "{shown} gave {outputs:?}");
        assert_eq!(after, deadline, "{shown} moved the deadline");
    }

    // The same handshake on a connection the core knows is answered: the inputs above
    // were ignored for what they were about, not for what they said.
    let live = session.accept(now, peer(3)).expect("accepted");
    session.handle_input(received(live, &handshake));
    let outputs = drain(&mut session).0;
    assert!(sends_on(&outputs, live), "{outputs:?}");
}
