//! tessera-core's MSE handshake machines against real clients that take only encrypted
//! connections: libtorrent 2.0 with `pe_forced` both ways and RC4 only, transmission with
//! encryption required. Both directions: we dial (Initiator) and we are dialled
//! (Responder). After the handshake the harness speaks the peer wire protocol through the
//! negotiated cipher and fetches blocks, each compared with the data and each piece with its
//! hash; so every byte both ways went through the cipher correctly.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use tessera_core::InfoHash;
use tessera_core::mse::{Encryption, Policy};
use tessera_tests::data::{Compare, FileSpec, compare_trees};
use tessera_tests::libtorrent::{LtEncryption, LtOptions, LtPeer};
use tessera_tests::mse_peer::{Fetched, MsePeer, fetch_pieces, serve_pieces, torrent_bytes};
use tessera_tests::torrent::{self, Torrent};
use tessera_tests::transmission::{TrEncryption, Transmission};
use tessera_tests::{Scratch, serial};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// A small torrent (two files, 3.1 MiB, 256 KiB pieces, one spanning both files, a short
/// last piece) with its data under `seed/`. The announce URL points at a closed loopback
/// port: the peers here find each other directly.
fn small_torrent() -> (Scratch, Torrent, Vec<u8>) {
    let scratch = Scratch::new();
    let files = [
        FileSpec::new("a.bin", 3 * 1024 * 1024 + 12_345),
        FileSpec::new("b.bin", 100_000),
    ];
    let root = scratch.seed_files("mse set", &files);
    let path = scratch.path().join("mse.torrent");
    torrent::mktorrent(
        &root,
        18,
        "http://127.0.0.1:1/announce",
        &path,
        &scratch.logs(),
    );
    let torrent = Torrent::load(&path);
    let data = torrent_bytes(&torrent, &scratch.seed_dir());
    (scratch, torrent, data)
}

/// Handshakes tried before a dial or an accept counts as failed. libtorrent 2.0.8 fails
/// every MSE handshake whose shared secret starts with a zero byte (1 in 256; it hashes
/// the secret in another form than the 96 zero-padded bytes the specification and Tessera
/// use; fixed upstream in 2026): it closes the connection, or, dialling, stalls until its
/// time-out. A client redials with fresh keys; so do these tests. A peer that refuses every
/// handshake still fails all the attempts.
const ATTEMPTS: usize = 3;

/// Dials with `policy`, again on a failed handshake (see [`ATTEMPTS`]).
fn dial(addr: SocketAddr, t: &Torrent, policy: Policy) -> Result<MsePeer, String> {
    let mut errors = Vec::new();
    for _ in 0..ATTEMPTS {
        match MsePeer::dial(addr, core_hash(t), policy, HANDSHAKE_TIMEOUT) {
            Ok(peer) => return Ok(peer),
            Err(e) => errors.push(e),
        }
    }
    Err(errors.join("; "))
}

/// Accepts with `policy`, again on a failed handshake (see [`ATTEMPTS`]; the peer redials
/// after about a second).
fn accept(
    listener: &TcpListener,
    torrents: &[InfoHash],
    policy: Policy,
) -> Result<MsePeer, String> {
    let mut errors = Vec::new();
    for _ in 0..ATTEMPTS {
        match MsePeer::accept(listener, torrents, policy, Duration::from_secs(15)) {
            Ok(peer) => return Ok(peer),
            Err(e) => errors.push(e),
        }
    }
    Err(errors.join("; "))
}

fn core_hash(t: &Torrent) -> InfoHash {
    InfoHash(t.info_hash.0)
}

fn all_pieces(t: &Torrent) -> Vec<u32> {
    (0..t.num_pieces()).collect()
}

/// Checks the peer's BitTorrent handshake, then fetches `pieces`.
fn handshake_and_fetch(peer: &mut MsePeer, t: &Torrent, data: &[u8], pieces: &[u32]) -> Fetched {
    let deadline = Instant::now() + FETCH_TIMEOUT;
    let hs = peer
        .read_handshake(t.num_pieces(), deadline)
        .expect("the peer's BitTorrent handshake");
    assert_eq!(hs.info_hash, core_hash(t));
    let fetched = fetch_pieces(peer, t, data, pieces, deadline).expect("fetching blocks");
    assert_eq!(fetched.pieces_verified, pieces.len());
    fetched
}

#[test]
fn initiator_downloads_from_libtorrent_forcing_encryption() {
    let _serial = serial();
    let (scratch, t, data) = small_torrent();
    let opts = LtOptions {
        encryption: LtEncryption::Forced,
        ..LtOptions::default()
    };
    let mut lt = LtPeer::seed(&scratch.logs(), &t.path, &scratch.seed_dir(), &opts);
    // Offering RC4 only, and offering both: libtorrent selects RC4 either way.
    for policy in [Policy::Require, Policy::Prefer] {
        let mut peer = dial(lt.addr(), &t, policy)
            .unwrap_or_else(|e| panic!("{policy:?}: {e}\n{}", lt.proc().tail()));
        assert_eq!(peer.encryption, Encryption::Rc4, "{policy:?}");
        let fetched = handshake_and_fetch(&mut peer, &t, &data, &all_pieces(&t));
        assert!(
            fetched.before_unchoke.iter().any(|m| m == "Bitfield"),
            "{fetched:?}"
        );
    }
}

/// libtorrent with its default settings (encryption enabled, RC4 not preferred) answers an
/// offer of RC4 or plaintext by selecting plaintext: the handshake is obfuscated and the
/// stream after it plaintext. An offer of RC4 alone still gets RC4. Both carry the data.
#[test]
fn initiator_downloads_from_libtorrent_with_default_settings() {
    let _serial = serial();
    let (scratch, t, data) = small_torrent();
    let mut lt = LtPeer::seed(
        &scratch.logs(),
        &t.path,
        &scratch.seed_dir(),
        &LtOptions::default(),
    );
    for (policy, expected) in [
        (Policy::Prefer, Encryption::HandshakeOnly),
        (Policy::Require, Encryption::Rc4),
        (Policy::Disable, Encryption::None),
    ] {
        let mut peer = dial(lt.addr(), &t, policy)
            .unwrap_or_else(|e| panic!("{policy:?}: {e}\n{}", lt.proc().tail()));
        assert_eq!(peer.encryption, expected, "{policy:?}");
        handshake_and_fetch(&mut peer, &t, &data, &all_pieces(&t));
    }
}

#[test]
fn plaintext_gets_nowhere_with_libtorrent_forcing_encryption() {
    let _serial = serial();
    let (scratch, t, _) = small_torrent();
    let opts = LtOptions {
        encryption: LtEncryption::Forced,
        ..LtOptions::default()
    };
    let lt = LtPeer::seed(&scratch.logs(), &t.path, &scratch.seed_dir(), &opts);
    let mut peer = MsePeer::dial(lt.addr(), core_hash(&t), Policy::Disable, HANDSHAKE_TIMEOUT)
        .expect("a plaintext 'handshake' is only our own bytes");
    assert_eq!(peer.encryption, Encryption::None);
    let answer = peer.read_handshake(t.num_pieces(), Instant::now() + HANDSHAKE_TIMEOUT);
    let err = answer.expect_err("libtorrent answered a plaintext handshake");
    assert!(err.contains("closed"), "{err}");
}

#[test]
fn responder_downloads_from_libtorrent_that_dials_it_encrypted() {
    let _serial = serial();
    let (scratch, t, data) = small_torrent();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let opts = LtOptions {
        encryption: LtEncryption::Forced,
        peers: vec![listener.local_addr().expect("local addr")],
        ..LtOptions::default()
    };
    let _lt = LtPeer::seed(&scratch.logs(), &t.path, &scratch.seed_dir(), &opts);
    // The responder finds the torrent among several by req2.
    let torrents = [InfoHash([1; 20]), core_hash(&t), InfoHash([2; 20])];
    let mut peer =
        accept(&listener, &torrents, Policy::Require).expect("libtorrent's encrypted handshake");
    assert_eq!(peer.encryption, Encryption::Rc4);
    assert_eq!(peer.info_hash, Some(core_hash(&t)));
    // libtorrent's BitTorrent handshake came as (or right after) the initial payload; ours
    // goes back through the cipher.
    let deadline = Instant::now() + FETCH_TIMEOUT;
    let hs = peer
        .read_handshake(t.num_pieces(), deadline)
        .expect("libtorrent's BitTorrent handshake");
    assert_eq!(hs.info_hash, core_hash(&t));
    peer.send(&tessera_tests::mse_peer::bt_handshake(core_hash(&t)))
        .expect("sending our handshake");
    let fetched =
        fetch_pieces(&mut peer, &t, &data, &all_pieces(&t), deadline).expect("fetching blocks");
    assert_eq!(fetched.pieces_verified, t.pieces.len());
}

/// The other direction of the data: libtorrent downloads the whole torrent from the
/// harness, every block encrypted by our cipher, and checks every piece hash.
#[test]
fn libtorrent_downloads_through_our_responder_encrypted() {
    let _serial = serial();
    let (scratch, t, data) = small_torrent();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let out = scratch.new_dir("out");
    let opts = LtOptions {
        encryption: LtEncryption::Forced,
        peers: vec![listener.local_addr().expect("local addr")],
        ..LtOptions::default()
    };
    let mut leech = LtPeer::leech(&scratch.logs(), &t.path, &out, &opts);
    let mut peer = accept(&listener, &[core_hash(&t)], Policy::Require)
        .expect("libtorrent's encrypted handshake");
    assert_eq!(peer.encryption, Encryption::Rc4);
    let t2 = t.clone();
    let server = std::thread::spawn(move || {
        serve_pieces(&mut peer, &t2, &data, true, Instant::now() + FETCH_TIMEOUT)
    });
    leech.wait_done(FETCH_TIMEOUT);
    let served = server
        .join()
        .expect("the serving thread")
        .expect("serving libtorrent");
    assert!(served.closed_by_peer, "{served:?}");
    assert!(
        served.blocks >= t.total_length.div_ceil(16384) as usize,
        "{served:?}"
    );
    compare_trees(&scratch.seed_dir(), &out, Compare::exact());
}

#[test]
fn responder_with_encryption_disabled_refuses_libtorrent() {
    let _serial = serial();
    let (scratch, t, _) = small_torrent();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let opts = LtOptions {
        encryption: LtEncryption::Forced,
        peers: vec![listener.local_addr().expect("local addr")],
        ..LtOptions::default()
    };
    let _lt = LtPeer::seed(&scratch.logs(), &t.path, &scratch.seed_dir(), &opts);
    let err = MsePeer::accept(
        &listener,
        &[core_hash(&t)],
        Policy::Disable,
        HANDSHAKE_TIMEOUT,
    )
    .expect_err("an encrypted handshake accepted with encryption disabled");
    assert!(err.contains("encryption is disabled"), "{err}");
}

#[test]
fn initiator_downloads_from_transmission_requiring_encryption() {
    let _serial = serial();
    let (scratch, t, data) = small_torrent();
    let mut tr = Transmission::seed_with(
        &scratch.path().join("tr-seed"),
        &t.path,
        &scratch.seed_dir(),
        t.info_hash,
        TrEncryption::Require,
    );
    // Plaintext first: transmission drops it.
    let mut plain = MsePeer::dial(
        tr.peer_addr(),
        core_hash(&t),
        Policy::Disable,
        HANDSHAKE_TIMEOUT,
    )
    .expect("a plaintext 'handshake' is only our own bytes");
    let err = plain
        .read_handshake(t.num_pieces(), Instant::now() + HANDSHAKE_TIMEOUT)
        .expect_err("transmission answered a plaintext handshake");
    assert!(err.contains("closed"), "{err}");
    // Encrypted: transmission waits about 10 s before it unchokes; the deadline allows it.
    let mut peer = dial(tr.peer_addr(), &t, Policy::Prefer)
        .unwrap_or_else(|e| panic!("{e}\n{}", tr.proc().tail()));
    assert_eq!(peer.encryption, Encryption::Rc4);
    handshake_and_fetch(&mut peer, &t, &data, &all_pieces(&t));
}

/// transmission (encryption required) downloads the whole torrent from the harness, which
/// dials it (transmission never dials loopback) and serves every block through our cipher.
#[test]
fn transmission_downloads_through_our_initiator_encrypted() {
    let _serial = serial();
    let (scratch, t, data) = small_torrent();
    let out = scratch.new_dir("out");
    let mut leech = Transmission::start_with(
        &scratch.path().join("tr-leech"),
        &out,
        TrEncryption::Require,
    );
    leech.add(&t.path, &out);
    let mut peer = dial(leech.peer_addr(), &t, Policy::Require)
        .unwrap_or_else(|e| panic!("{e}\n{}", leech.proc().tail()));
    assert_eq!(peer.encryption, Encryption::Rc4);
    let closer = peer.closer().expect("socket handle");
    let t2 = t.clone();
    let server = std::thread::spawn(move || {
        serve_pieces(&mut peer, &t2, &data, false, Instant::now() + FETCH_TIMEOUT)
    });
    // transmission waits about 10 s before its first request.
    leech.wait_complete(t.info_hash, FETCH_TIMEOUT);
    let _ = closer.shutdown(std::net::Shutdown::Both);
    let served = server
        .join()
        .expect("the serving thread")
        .expect("serving transmission");
    assert!(
        served.blocks >= t.total_length.div_ceil(16384) as usize,
        "{served:?}"
    );
    compare_trees(&scratch.seed_dir(), &out, Compare::transmission());
}
