//! The Fast extension (BEP 6) on what a peer sends: the wire decoder's paths for
//! `suggest_piece`, `have_all`, `have_none`, `reject_request` and `allowed_fast`, the check
//! of each decoded message (`fast::check_message`) against a model, and the allowed-fast set
//! and bounded piece lists on fuzzer-chosen values. Never panics.
//!
//! Input: `[flags] [num_pieces u16] [ip 4] [k u8] [split header] [stream]`. `flags & 1`:
//! the extension was negotiated. `num_pieces` bounds bitfields and piece indices (0 is a
//! torrent of no pieces). The stream is peer wire frames after the handshake; its bytes
//! also drive a `PieceList` (below). `ip` and the first 20 stream bytes (zero-padded) are the
//! address and info hash of an allowed-fast set of `k % 64` pieces.

use std::net::{IpAddr, Ipv4Addr};

use bytes::{Bytes, BytesMut};
use tessera_core::InfoHash;
use tessera_core::fast::{
    FastError, PieceList, allowed_fast_set, check_message, fast_message_name,
};
use tessera_core::wire::{Decoder, Message};
use super::split::{chunks, take_splits};

/// What `check_message` must say, from the BEP: fast messages need the extension, and the
/// pieces they name must exist.
fn model(message: &Message, fast: bool, num_pieces: u32) -> Result<(), FastError> {
    let name = match message {
        Message::Suggest(_) => "suggest_piece",
        Message::HaveAll => "have_all",
        Message::HaveNone => "have_none",
        Message::Reject(_) => "reject_request",
        Message::AllowedFast(_) => "allowed_fast",
        _ => return Ok(()),
    };
    if !fast {
        return Err(FastError::NotNegotiated(name));
    }
    let piece = match message {
        Message::Suggest(p) | Message::AllowedFast(p) => *p,
        Message::Reject(r) => r.piece,
        _ => return Ok(()),
    };
    if piece < num_pieces {
        Ok(())
    } else {
        Err(FastError::PieceOutOfRange {
            message: name,
            piece,
            num_pieces,
        })
    }
}

fn decode_all(num_pieces: u32, pieces: Vec<Bytes>) -> Vec<Message> {
    let mut decoder = Decoder::after_handshake();
    decoder.set_num_pieces(num_pieces);
    let mut out = Vec::new();
    for piece in pieces {
        decoder.feed(piece);
        while let Ok(Some(m)) = decoder.next_message() {
            out.push(m);
        }
    }
    out
}

/// The target's body: one input.
pub fn run(data: &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let fast = head[0] & 1 != 0;
    let num_pieces = u32::from(u16::from_be_bytes([head[1], head[2]]));
    let ip = IpAddr::V4(Ipv4Addr::new(head[3], head[4], head[5], head[6]));
    let k = usize::from(head[7] % 64);
    let (lens, stream) = take_splits(rest);

    // Decoding: the same messages whole or cut; each checked as the model says; each fast
    // message re-encodes to a frame that decodes to itself.
    let shared = Bytes::copy_from_slice(stream);
    let whole = decode_all(num_pieces, vec![shared.clone()]);
    let mut at = 0;
    let cut: Vec<Bytes> = chunks(stream, &lens)
        .into_iter()
        .map(|c| {
            at += c.len();
            shared.slice(at - c.len()..at)
        })
        .collect();
    assert_eq!(decode_all(num_pieces, cut), whole);
    for m in &whole {
        assert_eq!(
            check_message(m, fast, num_pieces),
            model(m, fast, num_pieces),
            "{m:?}"
        );
        if fast_message_name(m).is_some() {
            let mut frame = BytesMut::new();
            m.encode(&mut frame);
            let mut d = Decoder::after_handshake();
            d.feed(frame.freeze());
            assert_eq!(d.next_message(), Ok(Some(m.clone())));
        }
    }

    // The allowed-fast set: min(k, n) distinct pieces in range, the same every time.
    let mut hash = [0u8; 20];
    let n = stream.len().min(20);
    hash[..n].copy_from_slice(&stream[..n]);
    let ih = InfoHash(hash);
    let set = allowed_fast_set(ip, &ih, num_pieces, k);
    assert_eq!(set.len(), k.min(num_pieces as usize));
    assert!(set.iter().all(|&p| p < num_pieces));
    let mut sorted = set.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), set.len());
    assert_eq!(allowed_fast_set(ip, &ih, num_pieces, k), set);

    // A bounded piece list driven by the stream's bytes, against a plain model.
    let capacity = usize::from(head[7] % 8);
    let mut list = PieceList::new(capacity);
    let mut model_list: Vec<u32> = Vec::new();
    for pair in stream.chunks_exact(2) {
        let piece = u32::from(pair[1] % 16);
        match pair[0] % 3 {
            0 => {
                let added = list.insert(piece);
                let fits = model_list.len() < capacity && !model_list.contains(&piece);
                assert_eq!(added, fits);
                if fits {
                    model_list.push(piece);
                }
            }
            1 => {
                list.push_newest(piece);
                if capacity > 0 {
                    model_list.retain(|&p| p != piece);
                    if model_list.len() >= capacity {
                        model_list.remove(0);
                    }
                    model_list.push(piece);
                }
            }
            _ => {
                let had = model_list.contains(&piece);
                model_list.retain(|&p| p != piece);
                assert_eq!(list.remove(piece), had);
            }
        }
        assert!(list.len() <= capacity);
        assert_eq!(list.iter().collect::<Vec<_>>(), model_list);
    }
}
