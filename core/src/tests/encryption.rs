//! Protocol encryption on the wire: what a session sends and accepts under each policy,
//! decoded by a scripted peer running the other side of the MSE handshake.

use std::net::SocketAddr;

use super::rig::{PLAIN_PREFIX, Remote, Rig, TorrentSpec, contains, handshake};
use crate::config::Config;
use crate::id::ConnId;
use crate::mse::dh::{KEY_LEN, PrivateKey, PublicKey};
use crate::mse::{self, Encryption, Initiator, Policy, Responder};
use crate::rng::Rng;
use crate::time::Duration;
use crate::wire::{Handshake, Message};

const PEER: ([u8; 4], u16) = ([10, 1, 2, 3], 6881);

fn addr() -> SocketAddr {
    SocketAddr::from(PEER)
}

fn config(policy: Policy) -> Config {
    Config {
        encryption: policy,
        fast_extension: true,
        ..Config::default()
    }
}

fn leecher(policy: Policy) -> Rig {
    Rig::new(
        config(policy),
        &[TorrentSpec {
            len: 300_000,
            piece: 32768,
            seed: false,
        }],
    )
}

/// The scripted peer answers the session's MSE handshake on `conn` as a responder with
/// `policy`; returns its end of the stream and the session's BitTorrent handshake.
fn respond(rig: &mut Rig, conn: ConnId, policy: Policy, seed: u64) -> (Remote, Handshake) {
    let mut rng = Rng::from_u64(seed);
    let mut mse = Responder::new(&mut rng, policy);
    let ih = rig.metas[0].info_hash;
    let mut done = None;
    for _ in 0..4 {
        let bytes = rig.take(conn);
        if let Some(d) = mse.feed(&bytes, &[ih]).expect("a valid MSE handshake") {
            done = Some(d);
        }
        while let Some(b) = mse.poll_transmit() {
            rig.feed(conn, &b);
        }
        if done.is_some() {
            break;
        }
    }
    let done = done.expect("the handshake completes");
    assert_eq!(done.info_hash, Some(ih), "req2 names the torrent");
    let mut remote = Remote::new(conn, done.cipher, &done.leftover);
    let hs = remote.handshake(rig);
    (remote, hs)
}

#[test]
fn require_dials_with_mse_and_rc4_and_never_in_plaintext() {
    let mut rig = leecher(Policy::Require);
    let conn = rig.dial(0, addr());
    let first = rig.out[&conn].clone();
    assert!(first.len() >= KEY_LEN && first.len() <= KEY_LEN + mse::MAX_PAD);
    assert!(!first.starts_with(PLAIN_PREFIX));
    let (mut remote, hs) = respond(&mut rig, conn, Policy::Require, 1);
    assert_eq!(hs.info_hash, rig.metas[0].info_hash);
    assert!(hs.has(Handshake::FAST) && hs.has(Handshake::EXTENSION_PROTOCOL));
    let ours = handshake(rig.metas[0].info_hash, 7, true);
    remote.send_raw(&mut rig, &ours);
    remote.send(&mut rig, Message::HaveAll);
    let n = rig.metas[0].layout().num_pieces();
    let msgs = remote.messages(&mut rig, n);
    assert!(msgs.contains(&Message::HaveNone), "{msgs:?}");
    assert!(msgs.contains(&Message::Interested), "{msgs:?}");
    remote.send(&mut rig, Message::Unchoke);
    let msgs = remote.messages(&mut rig, n);
    assert!(
        msgs.iter().any(|m| matches!(m, Message::Request(_))),
        "requests over RC4: {msgs:?}"
    );
    // On the wire, nothing of it is readable.
    assert!(!contains(&rig.out[&conn], PLAIN_PREFIX));
    let peers = rig.session.peers(rig.torrents[0]);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].encryption, Encryption::Rc4);
    assert!(peers[0].active);
}

#[test]
fn require_gives_up_a_peer_that_refuses_and_never_sends_plaintext() {
    let mut rig = leecher(Policy::Require);
    let conn = rig.dial(0, addr());
    assert!(!rig.take(conn).is_empty());
    rig.remote_close(conn);
    rig.wait(Duration::from_secs(2));
    // No redial to a plaintext connection: whatever is dialled again (the peer list's
    // back-off) starts with MSE again.
    while let Some(again) = rig.next_connect(addr()) {
        rig.connected(again);
        let bytes = rig.take(again);
        assert!(bytes.len() >= KEY_LEN, "MSE first");
        assert!(!contains(&bytes, PLAIN_PREFIX));
        rig.remote_close(again);
    }
    for bytes in rig.out.values() {
        assert!(
            !contains(bytes, PLAIN_PREFIX),
            "a plaintext handshake went out"
        );
    }
}

#[test]
fn prefer_falls_back_to_plaintext_when_the_peer_refuses_mse() {
    let mut rig = leecher(Policy::Prefer);
    let conn = rig.dial(0, addr());
    let first = rig.take(conn);
    assert!(first.len() >= KEY_LEN && !contains(&first, PLAIN_PREFIX));
    // A plaintext-only peer closes on bytes that are not a BitTorrent handshake.
    rig.remote_close(conn);
    let again = rig.next_connect(addr()).expect("redialled at once");
    rig.connected(again);
    let bytes = rig.take(again);
    assert!(
        bytes.starts_with(PLAIN_PREFIX),
        "plaintext handshake on the redial"
    );
    let mut remote = Remote::new(again, None, &bytes);
    let hs = remote.handshake(&mut rig);
    assert_eq!(hs.info_hash, rig.metas[0].info_hash);
    let ours = handshake(rig.metas[0].info_hash, 8, false);
    remote.send_raw(&mut rig, &ours);
    remote.send(&mut rig, Message::Bitfield(vec![0xff, 0xc0].into()));
    let peers = rig.session.peers(rig.torrents[0]);
    assert_eq!(peers.len(), 1);
    assert!(peers[0].active);
    assert_eq!(peers[0].encryption, Encryption::None);
}

#[test]
fn prefer_takes_plaintext_when_the_peer_selects_it() {
    let mut rig = leecher(Policy::Prefer);
    let conn = rig.dial(0, addr());
    // A responder that offers no RC4 selects plaintext from the session's offer.
    let (mut remote, hs) = respond(&mut rig, conn, Policy::Prefer, 2);
    assert_eq!(hs.info_hash, rig.metas[0].info_hash);
    // Prefer selects RC4 when offered: the session's offer included it.
    assert!(remote.cipher.is_some());
    let ours = handshake(rig.metas[0].info_hash, 9, true);
    remote.send_raw(&mut rig, &ours);
    let peers = rig.session.peers(rig.torrents[0]);
    assert_eq!(peers[0].encryption, Encryption::Rc4);
}

#[test]
fn disable_dials_in_plaintext() {
    let mut rig = leecher(Policy::Disable);
    let conn = rig.dial(0, addr());
    let bytes = rig.take(conn);
    assert!(bytes.starts_with(PLAIN_PREFIX));
    assert_eq!(bytes.len(), 68);
}

/// A responder key whose shared secret with the initiator's public value `ya` begins with
/// a zero byte: what libtorrent up to 2.0.x gets wrong.
fn zero_led_key(ya: &[u8]) -> PrivateKey {
    let ya = PublicKey::from_bytes(ya[..KEY_LEN].try_into().unwrap()).unwrap();
    let mut rng = Rng::from_u64(77);
    loop {
        let key = PrivateKey::generate(&mut rng);
        if key.shared_secret(&ya).as_bytes()[0] == 0 {
            return key;
        }
    }
}

#[test]
fn a_failed_handshake_with_a_zero_led_secret_is_redialled_encrypted_once() {
    for policy in [Policy::Prefer, Policy::Require] {
        let mut rig = leecher(policy);
        let conn = rig.dial(0, addr());
        let ya = rig.take(conn);
        let key = zero_led_key(&ya);
        // The peer answers Yb; the session sends req1 (hashing the padded secret), which the
        // peer cannot find, so it closes.
        rig.feed(conn, key.public_key().as_bytes());
        let step3 = rig.take(conn);
        assert!(step3.len() >= 40, "req1, req2^req3, the encrypted offer");
        rig.remote_close(conn);
        let again = rig.next_connect(addr()).expect("redialled at once");
        rig.connected(again);
        let bytes = rig.out[&again].clone();
        assert!(
            bytes.len() >= KEY_LEN && !contains(&bytes, PLAIN_PREFIX),
            "{policy:?}: the redial is encrypted again"
        );
        // This time the secret is fine: the handshake completes.
        let (_remote, hs) = respond(&mut rig, again, Policy::Require, 3);
        assert_eq!(hs.info_hash, rig.metas[0].info_hash);
    }
}

#[test]
fn the_retry_after_a_zero_led_secret_falls_back_per_policy_only_once() {
    // Both the first try and the retry fail: under Prefer the third connection is
    // plaintext, under Require there is none right away.
    for policy in [Policy::Prefer, Policy::Require] {
        let mut rig = leecher(policy);
        let conn = rig.dial(0, addr());
        let ya = rig.take(conn);
        rig.feed(conn, zero_led_key(&ya).public_key().as_bytes());
        rig.remote_close(conn);
        let again = rig.next_connect(addr()).expect("retry");
        rig.connected(again);
        let ya = rig.take(again);
        rig.feed(again, zero_led_key(&ya).public_key().as_bytes());
        rig.remote_close(again);
        match policy {
            Policy::Prefer => {
                let third = rig.next_connect(addr()).expect("plaintext redial");
                rig.connected(third);
                assert!(rig.take(third).starts_with(PLAIN_PREFIX));
            }
            _ => assert!(rig.next_connect(addr()).is_none(), "no third connection"),
        }
    }
}

fn seeder(policy: Policy, torrents: usize) -> Rig {
    let specs: Vec<TorrentSpec> = (0..torrents)
        .map(|_| TorrentSpec {
            len: 200_000,
            piece: 32768,
            seed: true,
        })
        .collect();
    Rig::new(config(policy), &specs)
}

/// The scripted peer dials the session with MSE for torrent `t`.
fn initiate(rig: &mut Rig, t: usize, policy: Policy, seed: u64) -> (ConnId, Remote) {
    let conn = rig.accept(addr());
    let ih = rig.metas[t].info_hash;
    let mut rng = Rng::from_u64(seed);
    let ia = handshake(ih, 11, true);
    let mut mse = Initiator::new(&mut rng, ih, policy, ia.to_vec().into());
    let mut done = None;
    for _ in 0..4 {
        while let Some(b) = mse.poll_transmit() {
            rig.feed(conn, &b);
        }
        let bytes = rig.take(conn);
        if let Some(d) = mse.feed(&bytes).expect("a valid MSE answer") {
            done = Some(d);
            break;
        }
    }
    let done = done.expect("the handshake completes");
    (conn, Remote::new(conn, done.cipher, &done.leftover))
}

#[test]
fn inbound_mse_finds_the_torrent_by_req2_among_all() {
    let mut rig = seeder(Policy::Require, 3);
    let (_conn, mut remote) = initiate(&mut rig, 2, Policy::Require, 4);
    assert!(remote.cipher.is_some(), "RC4 selected");
    let hs = remote.handshake(&mut rig);
    assert_eq!(
        hs.info_hash, rig.metas[2].info_hash,
        "the torrent req2 named"
    );
    let n = rig.metas[2].layout().num_pieces();
    let msgs = remote.messages(&mut rig, n);
    assert_eq!(msgs.first(), Some(&Message::HaveAll), "{msgs:?}");
    let peers = rig.session.peers(rig.torrents[2]);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].encryption, Encryption::Rc4);
    assert!(!contains(&rig.out[&remote.conn], PLAIN_PREFIX));
}

#[test]
fn inbound_prefer_accepts_both_and_selects_what_is_offered() {
    // Offered plaintext only: the handshake is obfuscated, the stream is not.
    let mut rig = seeder(Policy::Prefer, 1);
    let conn = rig.accept(addr());
    let ih = rig.metas[0].info_hash;
    let mut rng = Rng::from_u64(5);
    let mut mse = Initiator::new(
        &mut rng,
        ih,
        Policy::Prefer,
        handshake(ih, 12, false).to_vec().into(),
    );
    mse.set_provide(mse::CRYPTO_PLAINTEXT);
    let mut done = None;
    for _ in 0..4 {
        while let Some(b) = mse.poll_transmit() {
            rig.feed(conn, &b);
        }
        if let Some(d) = mse.feed(&rig.take(conn)).unwrap() {
            done = Some(d);
            break;
        }
    }
    let done = done.unwrap();
    assert_eq!(done.encryption, Encryption::HandshakeOnly);
    let mut remote = Remote::new(conn, None, &done.leftover);
    assert_eq!(remote.handshake(&mut rig).info_hash, ih);
    assert_eq!(
        rig.session.peers(rig.torrents[0])[0].encryption,
        Encryption::HandshakeOnly
    );
    // And a plaintext peer is accepted too.
    let plain = rig.accept(SocketAddr::from(([10, 1, 2, 4], 6881)));
    rig.feed(plain, &handshake(ih, 13, false));
    assert!(rig.take(plain).starts_with(PLAIN_PREFIX));
    assert!(!rig.closed.contains(&plain));
}

#[test]
fn require_refuses_inbound_plaintext_and_disable_refuses_inbound_mse() {
    let mut rig = seeder(Policy::Require, 1);
    let ih = rig.metas[0].info_hash;
    let conn = rig.accept(addr());
    rig.feed(conn, &handshake(ih, 14, false));
    assert!(rig.closed.contains(&conn));
    assert!(
        rig.take(conn).is_empty(),
        "nothing sent to a plaintext peer"
    );

    let mut rig = seeder(Policy::Disable, 1);
    let conn = rig.accept(addr());
    let mut rng = Rng::from_u64(6);
    let mut mse = Initiator::new(
        &mut rng,
        ih,
        Policy::Require,
        handshake(ih, 15, false).to_vec().into(),
    );
    rig.feed(conn, &mse.poll_transmit().unwrap());
    assert!(rig.closed.contains(&conn));
    assert!(
        rig.take(conn).is_empty(),
        "no Yb from a session with encryption disabled"
    );
}

#[test]
fn inbound_mse_for_an_unknown_torrent_is_closed() {
    let mut rig = seeder(Policy::Prefer, 1);
    let conn = rig.accept(addr());
    let other = crate::id::InfoHash([0xab; 20]);
    let mut rng = Rng::from_u64(7);
    let mut mse = Initiator::new(
        &mut rng,
        other,
        Policy::Require,
        handshake(other, 16, false).to_vec().into(),
    );
    for _ in 0..3 {
        while let Some(b) = mse.poll_transmit() {
            rig.feed(conn, &b);
        }
        let _ = mse.feed(&rig.take(conn));
    }
    assert!(rig.closed.contains(&conn));
    assert!(rig.session.peers(rig.torrents[0]).is_empty());
}

#[test]
fn a_stalled_inbound_handshake_times_out() {
    let mut rig = seeder(Policy::Prefer, 1);
    let conn = rig.accept(addr());
    rig.feed(conn, &[0x55; 50]);
    assert!(!rig.closed.contains(&conn));
    rig.wait(Duration::from_secs(25));
    assert!(
        rig.closed.contains(&conn),
        "closed by the handshake time-out"
    );
}

#[test]
fn flow_control_leaves_the_handshake_bytes_out() {
    // The Sent reports of the MSE handshake must not count as upload data written.
    let mut rig = seeder(Policy::Require, 1);
    rig.ack_sends = false;
    let (conn, mut remote) = initiate(&mut rig, 0, Policy::Require, 8);
    let _ = remote.handshake(&mut rig);
    let total = rig.out[&conn].len();
    rig.sent(conn, total - 1);
    let peers = rig.session.peers(rig.torrents[0]);
    assert_eq!(
        peers[0].unsent, 1,
        "the handshake's bytes are not the peer wire's"
    );
    rig.sent(conn, 1);
    assert_eq!(rig.session.peers(rig.torrents[0])[0].unsent, 0);
}

/// Two whole sessions in the in-process swarm, one seeding: the download completes with
/// the same data whatever the two policies, over the protection they agree on.
#[test]
fn sessions_transfer_the_same_data_under_every_pair_of_policies() {
    use super::harness::{MemDisk, Swarm, content, metainfo};
    use crate::bitfield::Bitfield;
    use crate::config::TorrentOptions;

    let data = content(700_000, 21);
    let meta = metainfo("t", &[("a", 700_000)], 32768, &data);
    let n = meta.layout().num_pieces() as usize;
    for (seed_policy, leech_policy, expected) in [
        (Policy::Require, Policy::Require, Encryption::Rc4),
        (Policy::Prefer, Policy::Prefer, Encryption::Rc4),
        (Policy::Disable, Policy::Prefer, Encryption::None),
        (Policy::Prefer, Policy::Disable, Encryption::None),
        (Policy::Prefer, Policy::Require, Encryption::Rc4),
    ] {
        let mut swarm = Swarm::new();
        let seed = swarm.add(
            config(seed_policy),
            &meta,
            MemDisk::full(&meta, &data),
            TorrentOptions {
                have: Some(Bitfield::full(n)),
                seed: true,
                files: None,
                ..TorrentOptions::default()
            },
        );
        let leech = swarm.add(
            config(leech_policy),
            &meta,
            MemDisk::empty(&meta),
            TorrentOptions {
                have: Some(Bitfield::new(n)),
                seed: false,
                files: None,
                ..TorrentOptions::default()
            },
        );
        let seed_addr = swarm.addr(seed);
        swarm.add_peers(leech, &[seed_addr]);
        let mut seen = Vec::new();
        let done = swarm.run_until(Duration::from_secs(60), |s| {
            let node = &s.nodes[leech];
            seen.extend(
                node.session
                    .peers(node.torrent)
                    .iter()
                    .filter(|p| p.active)
                    .map(|p| p.encryption),
            );
            s.complete(leech)
        });
        let case = format!("seed {seed_policy:?}, leech {leech_policy:?}");
        assert!(done, "{case}: download did not complete");
        assert_eq!(swarm.nodes[leech].disk.concat(), data, "{case}");
        assert!(!seen.is_empty(), "{case}");
        assert!(seen.iter().all(|e| *e == expected), "{case}: {seen:?}");
    }
}
