//! Scripted adversaries: peers that say things the real core never says (lying bitfields,
//! garbage, oversized length prefixes, request floods), speaking the wire protocol with
//! `tessera_core::wire`. (Corrupt uploaders are real sessions with a corrupting disk; see
//! `world`.)

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::Rng as _;
use tessera_core::wire::{BlockRequest, Decoder, Handshake, Message};
use tessera_core::{Bitfield, Duration, InfoHash, Instant, PeerId};

use crate::scenario::Adversary;

/// Something a script wants the network to do.
#[derive(Debug)]
pub enum ScriptOut {
    Send(u64, Bytes),
    Close(u64),
}

#[derive(Debug)]
struct Conn {
    decoder: Decoder,
    handshook: bool,
    since: Instant,
}

#[derive(Debug)]
pub struct Script {
    pub kind: Adversary,
    peer_id: PeerId,
    info_hash: InfoHash,
    num_pieces: u32,
    piece_len: u32,
    conns: BTreeMap<u64, Conn>,
    rng: ChaCha8Rng,
    /// Messages sent that the core never would (for the report).
    pub hostile_messages: u64,
}

/// Requests a flooder sends per timer round.
const FLOOD_BURST: u32 = 300;
/// A flooder waits this long after the handshake (the core forgives requests that race
/// with a choke for 5 s).
const FLOOD_AFTER: Duration = Duration::from_secs(6);

impl Script {
    pub fn new(
        kind: Adversary,
        peer_id: [u8; 20],
        info_hash: InfoHash,
        num_pieces: u32,
        piece_len: u32,
        rng: ChaCha8Rng,
    ) -> Self {
        Script {
            kind,
            peer_id: PeerId(peer_id),
            info_hash,
            num_pieces,
            piece_len,
            conns: BTreeMap::new(),
            rng,
            hostile_messages: 0,
        }
    }

    fn encode(msgs: &[Message]) -> Bytes {
        let mut out = BytesMut::new();
        for m in msgs {
            m.encode(&mut out);
        }
        out.freeze()
    }

    /// A connection is up (either side): send our handshake.
    pub fn on_open(&mut self, now: Instant, conn: u64) -> Vec<ScriptOut> {
        self.conns.insert(
            conn,
            Conn {
                decoder: Decoder::new(),
                handshook: false,
                since: now,
            },
        );
        let hs = Handshake {
            reserved: [0; 8],
            info_hash: self.info_hash,
            peer_id: self.peer_id,
        }
        .encode();
        vec![ScriptOut::Send(conn, Bytes::copy_from_slice(&hs))]
    }

    pub fn on_closed(&mut self, conn: u64) {
        self.conns.remove(&conn);
    }

    fn garbage(&mut self, len: usize) -> Bytes {
        let mut b = vec![0u8; len];
        self.rng.fill_bytes(&mut b);
        Bytes::from(b)
    }

    /// What to say right after the handshakes.
    fn opening(&mut self, conn: u64) -> Vec<ScriptOut> {
        self.hostile_messages += 1;
        let bytes = match self.kind {
            Adversary::LiarGarbage | Adversary::LiarSilent => {
                let all = Bitfield::full(self.num_pieces as usize);
                Self::encode(&[
                    Message::Bitfield(Bytes::from(all.to_bytes())),
                    Message::Unchoke,
                ])
            }
            Adversary::Garbage => self.garbage(512),
            Adversary::Oversized => {
                let mut b = BytesMut::new();
                b.put_u32(0x7fff_fff0);
                b.put_u8(7);
                b.put_slice(&[0u8; 64]);
                b.freeze()
            }
            Adversary::Flood => Self::encode(&[Message::Interested]),
            Adversary::Corrupt => Bytes::new(),
        };
        if bytes.is_empty() {
            return Vec::new();
        }
        vec![ScriptOut::Send(conn, bytes)]
    }

    pub fn on_data(&mut self, conn: u64, data: Bytes) -> Vec<ScriptOut> {
        let mut out = Vec::new();
        let Some(c) = self.conns.get_mut(&conn) else {
            return out;
        };
        c.decoder.feed(data);
        if !c.handshook {
            match c.decoder.handshake() {
                Ok(None) => return out,
                Ok(Some(_)) => {
                    c.handshook = true;
                    c.decoder.set_num_pieces(self.num_pieces);
                    out.extend(self.opening(conn));
                }
                Err(_) => {
                    out.push(ScriptOut::Close(conn));
                    return out;
                }
            }
        }
        let mut requests = Vec::new();
        while let Some(c) = self.conns.get_mut(&conn) {
            match c.decoder.next_message() {
                Ok(Some(Message::Request(r))) => requests.push(r),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    out.push(ScriptOut::Close(conn));
                    return out;
                }
            }
        }
        if self.kind == Adversary::LiarGarbage {
            for r in requests {
                if r.len == 0 || r.len > 16 * 1024 {
                    continue;
                }
                let data = self.garbage(r.len as usize);
                self.hostile_messages += 1;
                out.push(ScriptOut::Send(
                    conn,
                    Self::encode(&[Message::Piece {
                        piece: r.piece,
                        offset: r.offset,
                        data,
                    }]),
                ));
            }
        }
        out
    }

    /// Once a second.
    pub fn on_timer(&mut self, now: Instant) -> Vec<ScriptOut> {
        let mut out = Vec::new();
        let conns: Vec<(u64, bool, Instant)> = self
            .conns
            .iter()
            .map(|(k, c)| (*k, c.handshook, c.since))
            .collect();
        for (conn, handshook, since) in conns {
            if !handshook {
                continue;
            }
            match self.kind {
                Adversary::Garbage => {
                    self.hostile_messages += 1;
                    let g = self.garbage(256);
                    out.push(ScriptOut::Send(conn, g));
                }
                Adversary::Flood if now.saturating_duration_since(since) >= FLOOD_AFTER => {
                    let mut msgs = Vec::with_capacity(FLOOD_BURST as usize);
                    for _ in 0..FLOOD_BURST {
                        let piece = (self.rng.next_u64() % u64::from(self.num_pieces)) as u32;
                        let blocks = (self.piece_len / 16384).max(1);
                        let offset = (self.rng.next_u64() % u64::from(blocks)) as u32 * 16384;
                        msgs.push(Message::Request(BlockRequest {
                            piece,
                            offset,
                            len: 16384,
                        }));
                    }
                    self.hostile_messages += u64::from(FLOOD_BURST);
                    out.push(ScriptOut::Send(conn, Self::encode(&msgs)));
                }
                // Keep-alives keep the connection from idling out.
                Adversary::LiarSilent | Adversary::LiarGarbage | Adversary::Flood
                    if now
                        .saturating_duration_since(since)
                        .as_secs()
                        .is_multiple_of(60) =>
                {
                    out.push(ScriptOut::Send(conn, Self::encode(&[Message::KeepAlive])));
                }
                _ => {}
            }
        }
        out
    }
}
