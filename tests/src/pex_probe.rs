//! A scripted peer in plain `std::net` that watches for peer exchange (BEP 11): it dials a
//! seeder, offers the extension protocol (BEP 10) with `ut_metadata` and `ut_pex` in its
//! `m` and a listening port `p`, then reads everything the seeder sends for a while and
//! reports what it saw: whether the seeder's extension handshake offers `ut_pex`, and every
//! `ut_pex` message (decoded: the IPv4 peers added).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::torrent::InfoHash;

/// The extended message id the probe asks `ut_pex` to be sent with.
const OUR_PEX_ID: u8 = 4;
/// Largest message accepted.
const MAX_MESSAGE: usize = 1 << 20;

/// What the probe saw.
#[derive(Debug, Default, Clone)]
pub struct PexReport {
    /// The seeder's extension handshake arrived.
    pub ext_handshake: bool,
    /// It offers `ut_pex` in its `m`.
    pub offers_pex: bool,
    /// It offers `ut_metadata` in its `m`.
    pub offers_metadata: bool,
    /// The peers added by each `ut_pex` message received.
    pub pex_added: Vec<Vec<SocketAddr>>,
}

/// Connects to `seeder` for `info_hash`, claiming to listen on `port`, and watches for
/// `watch`. The connection is closed at the end.
pub fn watch(seeder: SocketAddr, info_hash: InfoHash, port: u16, watch: Duration) -> PexReport {
    let mut s = TcpStream::connect_timeout(&seeder, Duration::from_secs(10)).expect("connect");
    let mut hs = Vec::with_capacity(68);
    hs.push(19);
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
    hs.extend_from_slice(&info_hash.0);
    hs.extend_from_slice(format!("-PX0001-probe{port:07}").as_bytes());
    s.write_all(&hs).expect("handshake");
    let ext = format!("d1:md11:ut_metadatai3e6:ut_pexi{OUR_PEX_ID}ee1:pi{port}ee");
    let mut msg = Vec::new();
    msg.extend_from_slice(&(ext.len() as u32 + 2).to_be_bytes());
    msg.extend_from_slice(&[20, 0]);
    msg.extend_from_slice(ext.as_bytes());
    s.write_all(&msg).expect("extension handshake");

    let mut report = PexReport::default();
    let mut buf = Vec::new();
    let end = Instant::now() + watch;
    let mut handshake_done = false;
    let mut chunk = [0u8; 65536];
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .expect("timeout");
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => break,
        }
        if !handshake_done {
            if buf.len() < 68 {
                continue;
            }
            buf.drain(..68);
            handshake_done = true;
        }
        while buf.len() >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            assert!(len <= MAX_MESSAGE, "a message of {len} bytes");
            if buf.len() < 4 + len {
                break;
            }
            let body: Vec<u8> = buf.drain(..4 + len).skip(4).collect();
            if body.len() >= 2 && body[0] == 20 {
                let payload = &body[2..];
                if body[1] == 0 {
                    report.ext_handshake = true;
                    report.offers_pex = contains(payload, b"6:ut_pexi");
                    report.offers_metadata = contains(payload, b"11:ut_metadatai");
                } else if body[1] == OUR_PEX_ID {
                    report.pex_added.push(added(payload));
                }
            }
        }
    }
    report
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The compact IPv4 peers of a `ut_pex` message's `added` (6 bytes each).
fn added(payload: &[u8]) -> Vec<SocketAddr> {
    let Some(at) = payload.windows(7).position(|w| w == b"5:added") else {
        return Vec::new();
    };
    let rest = &payload[at + 7..];
    let Some(colon) = rest.iter().position(|&b| b == b':') else {
        return Vec::new();
    };
    let Ok(len) = std::str::from_utf8(&rest[..colon])
        .unwrap_or("x")
        .parse::<usize>()
    else {
        return Vec::new();
    };
    let data = &rest[colon + 1..];
    data[..len.min(data.len())]
        .chunks_exact(6)
        .map(|c| SocketAddr::from(([c[0], c[1], c[2], c[3]], u16::from_be_bytes([c[4], c[5]]))))
        .collect()
}
