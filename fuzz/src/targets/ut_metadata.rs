//! `ut_metadata` messages (BEP 9): `MetadataMessage::decode` never panics, keeps piece data
//! within 16 KiB, and what it accepts survives our own encoding; a `MetadataAssembler` fed
//! the input as a peer's messages never panics and never hands out bytes whose SHA-1 is not
//! the info hash.
//!
//! Input: `[size: u16 BE] [n] [n × u16 BE message lengths] [messages...]`: the peer's
//! `metadata_size` (up to four pieces), then the payloads it sends, cut like the streaming
//! targets' input (see `fuzz/src/lib.rs`). The info dictionary stands for `size` zeros,
//! whose hash is computed once per size.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use sha1::{Digest, Sha1};
use tessera_core::{ConnId, InfoHash};
use tessera_core::metadata::{
    AssemblerConfig, MetadataAssembler, MetadataEvent, MetadataMessage, PIECE_LEN,
};
use tessera_core::{Duration, Instant};
use super::split::{chunks, take_splits};

/// The SHA-1 of `size` zero bytes, remembered per size (hashing on every run would be most
/// of the target's time).
fn zeros_hash(size: u64) -> InfoHash {
    static HASHES: Mutex<BTreeMap<u64, [u8; 20]>> = Mutex::new(BTreeMap::new());
    let mut hashes = HASHES.lock().unwrap_or_else(PoisonError::into_inner);
    InfoHash(*hashes.entry(size).or_insert_with(|| {
        Sha1::digest(vec![0u8; usize::try_from(size).unwrap_or(0)]).into()
    }))
}

/// The target's body: one input.
pub fn run(data: &[u8]) {
    if let Ok(m) = MetadataMessage::decode(&Bytes::copy_from_slice(data)) {
        if let MetadataMessage::Data { data, .. } = &m {
            assert!(data.len() <= PIECE_LEN);
        }
        assert_eq!(MetadataMessage::decode(&m.encode()), Ok(m));
    }

    let Some((size, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let size = u64::from(u16::from_be_bytes(*size));
    let info_hash = zeros_hash(size);
    let mut assembler = MetadataAssembler::new(info_hash, AssemblerConfig::default());
    let peer = ConnId(1);
    let mut now = Instant::ZERO;
    if assembler.add_peer(now, peer, Some(size)).is_err() {
        return;
    }
    let (lens, stream) = take_splits(rest);
    for payload in chunks(stream, &lens) {
        while assembler.poll_transmit().is_some() {}
        if let Ok(message) = MetadataMessage::decode(&Bytes::copy_from_slice(payload))
            && assembler.handle_message(now, peer, &message).is_err() {
                // Dropped: a new connection of the same peer.
                assembler.remove_peer(now, peer);
                let _ = assembler.add_peer(now, peer, Some(size));
            }
        while let Some(event) = assembler.poll_event() {
            if let MetadataEvent::Complete(bytes) = event {
                assert_eq!(Sha1::digest(&bytes)[..], info_hash.0[..]);
                assert_eq!(bytes.len() as u64, size);
            }
        }
        now += Duration::from_secs(7);
        assembler.handle_timeout(now);
        if let Some(t) = assembler.poll_timeout() {
            assert!(t > now);
        }
    }
}
