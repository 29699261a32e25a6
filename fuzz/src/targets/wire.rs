//! The peer wire `Decoder`: never panics, and gives the same handshake, messages and error
//! whether the stream arrives in one piece or cut at fuzzer-chosen points (draining after
//! every feed, as the session does). Every decoded message re-encodes to a frame that
//! decodes to the same message.
//!
//! Input: `[flags] [num_pieces: u16 BE] [split header, see the crate docs] [stream]`.
//! `flags & 1`: the stream starts with the 68-byte handshake (`Decoder::new`), else it
//! starts at a frame boundary (`Decoder::after_handshake`). `flags & 2`: bound bitfields
//! with `set_num_pieces(num_pieces)` once the handshake is through, as the session does.

use bytes::{Bytes, BytesMut};
use tessera_core::wire::{Decoder, Handshake, Message, WireError};
use super::split::{chunks, take_splits};

/// What a decoder produced over a whole stream.
#[derive(Debug, Default, PartialEq)]
struct Decoded {
    handshake: Option<Handshake>,
    messages: Vec<Message>,
    error: Option<WireError>,
    /// `buffered()` at the end.
    left: usize,
}

struct Run {
    decoder: Decoder,
    out: Decoded,
    with_handshake: bool,
    num_pieces: Option<u32>,
}

impl Run {
    fn new(with_handshake: bool, num_pieces: Option<u32>) -> Self {
        let mut decoder = if with_handshake {
            Decoder::new()
        } else {
            Decoder::after_handshake()
        };
        if !with_handshake && let Some(n) = num_pieces {
            decoder.set_num_pieces(n);
        }
        Run {
            decoder,
            out: Decoded::default(),
            with_handshake,
            num_pieces,
        }
    }

    /// Feeds one chunk and drains everything decodable, as a connection handler would.
    fn feed(&mut self, chunk: Bytes) {
        if self.out.error.is_some() {
            // A failed decoder drops what it is fed and repeats its error.
            self.decoder.feed(chunk);
            let again = self.decoder.next_message();
            assert_eq!(again.err(), self.out.error, "error not sticky");
            assert_eq!(self.decoder.buffered(), 0, "failed decoder buffers");
            return;
        }
        self.decoder.feed(chunk);
        if self.with_handshake && self.out.handshake.is_none() {
            match self.decoder.handshake() {
                Ok(None) => {
                    assert_eq!(
                        self.decoder.next_message(),
                        Err(WireError::HandshakePending)
                    );
                    return;
                }
                Ok(Some(h)) => {
                    self.out.handshake = Some(h);
                    assert_eq!(self.decoder.handshake(), Err(WireError::HandshakeDone));
                    if let Some(n) = self.num_pieces {
                        self.decoder.set_num_pieces(n);
                    }
                }
                Err(e) => {
                    self.out.error = Some(e);
                    return;
                }
            }
        }
        loop {
            match self.decoder.next_message() {
                Ok(Some(m)) => self.out.messages.push(m),
                Ok(None) => break,
                Err(e) => {
                    self.out.error = Some(e);
                    break;
                }
            }
        }
    }

    fn finish(mut self) -> Decoded {
        self.out.left = self.decoder.buffered();
        self.out
    }
}

/// A decoded message, encoded again and decoded by a fresh decoder, is the same message.
fn check_round_trip(message: &Message, num_pieces: Option<u32>) {
    if matches!(message, Message::Unknown { .. }) {
        return; // Its payload was skipped: nothing to re-encode.
    }
    let mut frame = BytesMut::new();
    message.encode(&mut frame);
    let mut d = Decoder::after_handshake();
    if let Some(n) = num_pieces {
        d.set_num_pieces(n);
    }
    d.feed(frame.freeze());
    assert_eq!(d.next_message(), Ok(Some(message.clone())), "round trip");
    assert_eq!(d.buffered(), 0);
}

/// The target's body: one input.
pub fn run(data: &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let with_handshake = head[0] & 1 != 0;
    let num_pieces = (head[0] & 2 != 0).then(|| u32::from(u16::from_be_bytes([head[1], head[2]])));
    let (lens, stream) = take_splits(rest);

    let mut whole = Run::new(with_handshake, num_pieces);
    whole.feed(Bytes::copy_from_slice(stream));
    let whole = whole.finish();

    let mut split = Run::new(with_handshake, num_pieces);
    // One shared buffer, sliced: the zero-copy paths see chunks of one allocation, as they
    // do with a socket's reads.
    let shared = Bytes::copy_from_slice(stream);
    let mut at = 0;
    for chunk in chunks(stream, &lens) {
        split.feed(shared.slice(at..at + chunk.len()));
        at += chunk.len();
    }
    let split = split.finish();

    assert_eq!(whole, split, "results depend on how the stream was cut");
    for m in &whole.messages {
        check_round_trip(m, num_pieces);
    }
}
