//! A micro-benchmark, not a test: two uTP sockets in one thread hand each other their
//! datagrams directly (no loss, no delay, no system calls) while one streams 256 MiB to
//! the other. It prints MiB/s and the cost per packet: the CPU price of the protocol
//! machinery alone (packets, acknowledgements, windows, timers, copies).
//!
//! ```sh
//! cargo test --release -p tessera-core --test utp_throughput -- --ignored --nocapture
//! ```
//!
//! Time fed to the sockets is the wall clock, so round-trip times and LEDBAT's delay
//! samples are what this loop really takes.

// The benchmark measures wall time; the core itself never reads the clock.
#![allow(clippy::disallowed_types)]

use std::net::SocketAddr;
use std::time::Instant as WallClock;

use bytes::Bytes;
use tessera_core::Instant;
use tessera_core::Rng;
use tessera_core::utp::{UtpConfig, UtpEvent, UtpSocket};

const TOTAL: usize = 256 << 20;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 6881))
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture, in release"]
fn utp_throughput_in_process() {
    for (name, cfg) in [
        (
            "defaults (1232-byte packets, probing up to 1472)",
            UtpConfig::default(),
        ),
        (
            "4 MiB windows",
            UtpConfig {
                recv_window: 4 << 20,
                send_buffer: 4 << 20,
                max_window: 4 << 20,
                ..UtpConfig::default()
            },
        ),
    ] {
        run(name, cfg);
    }
}

fn run(name: &str, cfg: UtpConfig) {
    let (a_addr, b_addr) = (addr(1), addr(2));
    let mut a = UtpSocket::new(cfg, Rng::from_u64(1));
    let mut b = UtpSocket::new(cfg, Rng::from_u64(2));
    let mut block = vec![0u8; 1 << 20];
    Rng::from_u64(3).fill(&mut block);
    let block = Bytes::from(block);

    let wall = WallClock::now();
    let now = || Instant::from_duration(wall.elapsed() + std::time::Duration::from_secs(1));
    let stream = a.connect(now(), b_addr).expect("connect");
    let (mut written, mut received) = (0usize, 0usize);
    let (mut datagrams, mut checksum) = (0u64, 0u64);
    while received < TOTAL {
        let t = now();
        while written < TOTAL {
            let room = a.send_room(stream);
            if room == 0 {
                break;
            }
            let off = written % block.len();
            let n = room.min(block.len() - off).min(TOTAL - written);
            let took = a
                .write(t, stream, block.slice(off..off + n))
                .expect("write");
            written += took;
            if took < n {
                break;
            }
        }
        let mut moved = false;
        while let Some(tx) = a.poll_transmit(t) {
            datagrams += 1;
            moved = true;
            b.handle_datagram(t, a_addr, &tx.data);
        }
        while let Some(tx) = b.poll_transmit(t) {
            datagrams += 1;
            moved = true;
            a.handle_datagram(t, b_addr, &tx.data);
        }
        while let Some(e) = b.poll_event() {
            if let UtpEvent::Data { data, .. } = e {
                received += data.len();
                checksum = checksum.wrapping_add(u64::from(data[0]));
            }
        }
        while a.poll_event().is_some() {}
        if !moved {
            for s in [&mut a, &mut b] {
                if s.poll_timeout().is_some_and(|d| d <= t) {
                    s.handle_timeout(t);
                }
            }
        }
    }
    let secs = wall.elapsed().as_secs_f64();
    let stats = a.stats(stream).expect("stats");
    println!(
        "uTP in-process, {name}: {} MiB in {secs:.2} s = {:.0} MiB/s; {datagrams} datagrams \
         ({:.0} ns each); cwnd {} B, rtt {:?}, {} resends (checksum {checksum})",
        TOTAL >> 20,
        TOTAL as f64 / secs / 1048576.0,
        secs * 1e9 / datagrams as f64,
        stats.cwnd,
        stats.rtt,
        stats.retransmits,
    );
    assert_eq!(received, TOTAL);
}
