//! Two uTP sockets in-process on a virtual clock: scenarios, hostile input, properties.

mod hostile;
mod link;
mod mtu;
mod props;
mod scenarios;
mod scripted;

use std::time::Duration;

use bytes::Bytes;

use self::link::{B, Pair};
use crate::utp::{CloseReason, StreamId, UtpEvent};

/// What an exchange of two byte streams came to.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// What A received from B, and B from A.
    pub got_a: Vec<u8>,
    pub got_b: Vec<u8>,
    /// How each side's stream ended, as reported.
    pub closed_a: Option<CloseReason>,
    pub closed_b: Option<CloseReason>,
    pub stream_a: Option<StreamId>,
    pub stream_b: Option<StreamId>,
    /// Both sockets forgot every connection.
    pub all_gone: bool,
    /// Virtual time taken.
    pub elapsed: Duration,
}

/// A connects to B; A sends `data_a` and B `data_b`, each in writes of the sizes in
/// `chunks` (cycled) as send room allows; once A has everything from B and has written
/// all of its own, A closes. Runs until both sockets hold no connection or `limit` passes.
pub(crate) fn exchange(
    pair: &mut Pair,
    data_a: &[u8],
    data_b: &[u8],
    chunks: &[usize],
    limit: Duration,
) -> Outcome {
    assert!(!data_a.is_empty(), "the initiator speaks first");
    let start = pair.now;
    let mut o = Outcome::default();
    let sa = pair.a.connect(pair.now, B).expect("connect");
    o.stream_a = Some(sa);
    let (mut wa, mut wb) = (0usize, 0usize);
    let (mut ca, mut cb) = (0usize, 0usize);
    let mut a_closing = false;
    let end = pair.now + limit;
    let write =
        |sock: &mut crate::utp::UtpSocket, now, s, data: &[u8], w: &mut usize, c: &mut usize| {
            while *w < data.len() {
                let room = sock.send_room(s);
                if room == 0 {
                    break;
                }
                let n = chunks[*c % chunks.len()]
                    .max(1)
                    .min(data.len() - *w)
                    .min(room);
                let took = sock
                    .write(now, s, Bytes::copy_from_slice(&data[*w..*w + n]))
                    .expect("write on an open stream");
                assert_eq!(took, n, "room was {room}");
                *w += n;
                *c += 1;
            }
        };
    loop {
        let now = pair.now;
        if o.closed_a.is_none() && !a_closing {
            write(&mut pair.a, now, sa, data_a, &mut wa, &mut ca);
        }
        if let Some(sb) = o.stream_b
            && o.closed_b.is_none()
        {
            write(&mut pair.b, now, sb, data_b, &mut wb, &mut cb);
        }
        if !a_closing && o.closed_a.is_none() && wa == data_a.len() && o.got_a.len() == data_b.len()
        {
            pair.a.close(now, sa).expect("close an open stream");
            a_closing = true;
        }
        pair.flush();
        for e in std::mem::take(&mut pair.events_a) {
            match e {
                UtpEvent::Connected { stream } => assert_eq!(stream, sa),
                UtpEvent::Data { stream, data } => {
                    assert_eq!(stream, sa);
                    assert!(!data.is_empty());
                    o.got_a.extend_from_slice(&data);
                }
                UtpEvent::Sent { stream, .. } => assert_eq!(stream, sa),
                UtpEvent::Closed { stream, reason } => {
                    assert_eq!(stream, sa);
                    assert!(o.closed_a.is_none(), "closed twice");
                    assert!(!a_closing, "an event after close");
                    o.closed_a = Some(reason);
                }
                UtpEvent::Incoming { .. } => panic!("A accepts nothing"),
            }
        }
        for e in std::mem::take(&mut pair.events_b) {
            match e {
                UtpEvent::Incoming { stream, addr } => {
                    assert_eq!(addr, link::A);
                    assert!(o.stream_b.is_none(), "a second incoming stream");
                    o.stream_b = Some(stream);
                }
                UtpEvent::Data { stream, data } => {
                    assert_eq!(Some(stream), o.stream_b);
                    o.got_b.extend_from_slice(&data);
                }
                UtpEvent::Sent { stream, .. } => assert_eq!(Some(stream), o.stream_b),
                UtpEvent::Closed { stream, reason } => {
                    assert_eq!(Some(stream), o.stream_b);
                    assert!(o.closed_b.is_none(), "closed twice");
                    o.closed_b = Some(reason);
                }
                UtpEvent::Connected { .. } => panic!("B connects nowhere"),
            }
        }
        if pair.a.connections() == 0 && pair.b.connections() == 0 {
            o.all_gone = true;
            break;
        }
        if pair.next_event().is_none_or(|t| t > end) {
            break;
        }
        pair.step();
    }
    o.elapsed = pair.now - start;
    o
}
