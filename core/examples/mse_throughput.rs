//! What message stream encryption costs: RC4 throughput on the ways the connection layer
//! will call it, and full handshakes (two Diffie-Hellman exponentiations per side) per
//! second. Run by `bench/mse.sh`; prints one line per measurement.
//!
//! Rates are per CPU second of this process (user + system, from `/proc/self/stat`, in the
//! kernel's 1/100 s ticks), so that a machine shared with other work still gives comparable
//! figures; the wall-clock rate is printed next to it.
//!
//! ```sh
//! cargo run --release -p tessera-core --example mse_throughput [-- MIB]
//! ```
// Measuring needs the clock; the clock ban is for the core's library code (core/clippy.toml).
#![allow(clippy::disallowed_types)]

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tessera_core::InfoHash;
use tessera_core::Rng;
use tessera_core::mse::dh::{PrivateKey, PublicKey};
use tessera_core::mse::{Initiator, Policy, Responder, StreamCipher};

fn cipher() -> StreamCipher {
    let mut rng = Rng::from_u64(1);
    let a = PrivateKey::generate(&mut rng);
    let b = PrivateKey::generate(&mut rng);
    let yb = PublicKey::from_bytes(b.public_key().as_bytes()).expect("in range");
    StreamCipher::initiator(&a.shared_secret(&yb), &InfoHash([7; 20]))
}

/// CPU seconds (user + system) this process has used.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are the
    // 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// When a measurement started: wall clock and CPU time.
struct Start(Instant, f64);

fn begin() -> Start {
    Start(Instant::now(), cpu_secs())
}

fn report(what: &str, bytes: usize, start: Start) {
    let wall = start.0.elapsed().as_secs_f64();
    let cpu = (cpu_secs() - start.1).max(0.01);
    let mib = bytes as f64 / (1024.0 * 1024.0);
    println!(
        "{what:<44} {:>5.0} MiB per CPU s ({:.2} CPU s/GiB; wall {:.0} MiB/s)",
        mib / cpu,
        cpu * 1024.0 / mib,
        mib / wall,
    );
}

fn main() {
    let total_mib: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let total = total_mib << 20;

    // In place on a slice, in 16 KiB + 13 chunks (one piece message at a time).
    let mut c = cipher();
    let mut buf = vec![0x5au8; 16 * 1024 + 13];
    let start = begin();
    let mut done = 0;
    while done < total {
        c.encrypt(&mut buf);
        done += buf.len();
    }
    black_box(&buf);
    report("encrypt in place, 16 KiB + 13 byte chunks", done, start);

    // In place on 64 KiB socket reads.
    let mut buf = vec![0xa5u8; 64 * 1024];
    let start = begin();
    let mut done = 0;
    while done < total {
        c.decrypt(&mut buf);
        done += buf.len();
    }
    black_box(&buf);
    report("decrypt in place, 64 KiB chunks", done, start);

    // A uniquely held Bytes (a message just encoded): no copy.
    let start = begin();
    let mut done = 0;
    let mut b = Bytes::from(vec![1u8; 16 * 1024 + 13]);
    while done < total {
        b = c.encrypt_bytes(b);
        done += b.len();
    }
    black_box(&b);
    report("encrypt_bytes, unique 16 KiB + 13 (in place)", done, start);

    // A shared Bytes (a block also held by the read cache): one copy each.
    let shared = Bytes::from(vec![2u8; 16 * 1024 + 13]);
    let start = begin();
    let mut done = 0;
    while done < total {
        let out = c.encrypt_bytes(shared.clone());
        done += out.len();
        black_box(out);
    }
    report("encrypt_bytes, shared 16 KiB + 13 (copied)", done, start);

    // Whole handshakes, both sides in one thread: 2 public values, 2 shared secrets, 4 RC4
    // keyings with 1 KiB discarded each, per handshake.
    let n = 200;
    let mut rng = Rng::from_u64(9);
    let ih = InfoHash([3; 20]);
    let begun = begin();
    for _ in 0..n {
        let mut init = Initiator::new(&mut rng, ih, Policy::Require, Bytes::from_static(&[0; 68]));
        let mut resp = Responder::new(&mut rng, Policy::Require);
        let mut to_resp = BytesMut::new();
        let mut to_init = BytesMut::new();
        let (mut i_done, mut r_done) = (false, false);
        while !(i_done && r_done) {
            while let Some(b) = init.poll_transmit() {
                to_resp.extend_from_slice(&b);
            }
            if !r_done && !to_resp.is_empty() {
                r_done = resp
                    .feed(&to_resp.split(), &[ih])
                    .expect("handshake")
                    .is_some();
            }
            while let Some(b) = resp.poll_transmit() {
                to_init.extend_from_slice(&b);
            }
            if !i_done && !to_init.is_empty() {
                i_done = init.feed(&to_init.split()).expect("handshake").is_some();
            }
        }
    }
    let cpu = (cpu_secs() - begun.1).max(0.01);
    println!(
        "{:<44} {:>5.0} per CPU s ({:.0} µs of CPU per side; wall {:.0} per s)",
        "handshakes (initiator and responder)",
        f64::from(n) / cpu,
        cpu * 1e6 / f64::from(n) / 2.0,
        f64::from(n) / begun.0.elapsed().as_secs_f64(),
    );
}
