//! uTP as a peer transport (BEP 29): the session's [`UtpSocket`](crate::utp::UtpSocket)
//! shares the UDP socket with the DHT and the UDP trackers (`session/udp.rs` hands it the
//! datagrams that look like uTP), and its streams are peer connections like the driver's
//! TCP ones (the table is [`crate::transport`]).
//!
//! Each event of the socket stands for the input a TCP connection would have brought, and
//! goes down the same path: an incoming stream is [`Session::accept`]ed, then
//! `Connected`, `Received`, `Sent` and `Closed` are dispatched as if the driver had fed
//! them; a uTP dial that gets no answer becomes an `Action::Connect` over TCP under the
//! same connection id. So MSE, the wire codec and the torrents never learn the transport.
//! Datagrams the socket wants sent leave as `Action::SendDatagram` at the end of every
//! input.

use super::Session;
use crate::api::{Action, Input, Target};
use crate::transport::TransportEvent;

/// Most rounds of uTP events per input: each round dispatches what the socket had, and
/// the work that caused may make more (bytes written free room, which is reported...).
/// The bound is a guard: events left over wait for the next input, which the socket's
/// own deadline brings.
const MAX_ROUNDS: usize = 10_000;

impl Session {
    /// Dispatches the socket's events until it has none, then sends its datagrams.
    pub(super) fn utp_rounds(&mut self) {
        for _ in 0..MAX_ROUNDS {
            if !self.utp_events() {
                break;
            }
            self.settle();
        }
        let now = self.sh.now;
        while let Some(t) = self
            .sh
            .transports
            .socket()
            .and_then(|utp| utp.poll_transmit(now))
        {
            self.sh.action(Action::SendDatagram {
                to: t.to,
                data: t.data,
            });
        }
    }

    /// Dispatches the socket's pending events; false when there were none.
    fn utp_events(&mut self) -> bool {
        let now = self.sh.now;
        let mut any = false;
        while let Some(event) = self.sh.transports.poll_event(now) {
            any = true;
            match event {
                TransportEvent::Incoming { stream, addr } => match self.accept(now, addr) {
                    Some(conn) => {
                        tracing::info!(%addr, "inbound peer: uTP connection");
                        self.sh.transports.adopt(conn, stream, addr);
                    }
                    None => self.sh.transports.refuse(now, stream),
                },
                TransportEvent::Connected(conn) => self.dispatch(Input::Connected { now, conn }),
                TransportEvent::Received(conn, data) => {
                    self.dispatch(Input::Received { now, conn, data })
                }
                TransportEvent::Sent(conn, bytes) => {
                    self.dispatch(Input::Sent { now, conn, bytes })
                }
                TransportEvent::Closed(conn, error) => {
                    self.dispatch(Input::Closed { now, conn, error })
                }
                TransportEvent::Fallback(conn, addr) => {
                    if self.sh.route(conn).is_some() {
                        self.sh.action(Action::Connect {
                            conn,
                            target: Target::Addr(addr),
                        });
                    }
                }
            }
        }
        any
    }
}
