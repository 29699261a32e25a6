//! The simulated HTTP tracker that the nodes' real tracker code announces to.
//!
//! Per connection it gathers the request until the end of its head, parses it with
//! `httparse`, reads the query by hand (percent-decoding the binary `info_hash`), updates
//! the swarm's peer list (address from the connection, port from the query; `stopped`
//! removes) and answers with a bencoded compact peer list, then closes.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::Rng as _;
use tessera_core::bencode::{DictBuilder, Value, encode};

/// What the tracker does with a connection after some bytes arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// The request is not complete yet.
    Wait,
    /// Send this and close.
    Answer(Bytes),
}

#[derive(Debug, Default)]
struct Swarm {
    peers: Vec<SocketAddr>,
    index: BTreeMap<SocketAddr, usize>,
    seeds: BTreeMap<SocketAddr, bool>,
    seed_count: usize,
}

impl Swarm {
    fn insert(&mut self, addr: SocketAddr, seed: bool) {
        if !self.index.contains_key(&addr) {
            self.index.insert(addr, self.peers.len());
            self.peers.push(addr);
        }
        if let Some(was) = self.seeds.insert(addr, seed) {
            self.seed_count -= usize::from(was);
        }
        self.seed_count += usize::from(seed);
    }

    fn remove(&mut self, addr: SocketAddr) {
        if let Some(i) = self.index.remove(&addr) {
            self.peers.swap_remove(i);
            if let Some(moved) = self.peers.get(i) {
                self.index.insert(*moved, i);
            }
        }
        if let Some(was) = self.seeds.remove(&addr) {
            self.seed_count -= usize::from(was);
        }
    }

    fn is_seed(&self, addr: &SocketAddr) -> bool {
        self.seeds.get(addr).copied().unwrap_or(false)
    }

    /// Up to `want` distinct peers other than `me` (and, when `no_seeds`, no seeds), drawn
    /// uniformly. Rejection sampling when the swarm is large, a shuffle otherwise.
    fn sample(
        &self,
        me: SocketAddr,
        want: usize,
        no_seeds: bool,
        rng: &mut ChaCha8Rng,
    ) -> Vec<SocketAddr> {
        let ok = |a: &SocketAddr| *a != me && !(no_seeds && self.is_seed(a));
        let n = self.peers.len();
        if n > 4 * want.max(1) && !no_seeds {
            let mut chosen = std::collections::BTreeSet::new();
            let mut out = Vec::with_capacity(want);
            let mut tries = 0;
            while out.len() < want && tries < 8 * want {
                tries += 1;
                let i = (rng.next_u64() % n as u64) as usize;
                if chosen.insert(i) && ok(&self.peers[i]) {
                    out.push(self.peers[i]);
                }
            }
            return out;
        }
        let mut others: Vec<SocketAddr> = self.peers.iter().copied().filter(ok).collect();
        let take = want.min(others.len());
        for i in 0..take {
            let j = i + (rng.next_u64() % (others.len() - i) as u64) as usize;
            others.swap(i, j);
        }
        others.truncate(take);
        others
    }
}

#[derive(Debug)]
pub struct Tracker {
    pub interval: u32,
    pub min_interval: u32,
    /// A seed's announce gets only leechers back (as XBT and many trackers do): seeds have
    /// nothing to gain from each other.
    pub seeds_get_leechers: bool,
    swarms: BTreeMap<[u8; 20], Swarm>,
    /// Request bytes gathered per connection.
    pending: BTreeMap<u64, Vec<u8>>,
    pub announces: u64,
}

/// `%XX`-decoding of a query value (`+` is a space).
pub fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

fn failure(reason: &str) -> Bytes {
    let body = encode(
        &DictBuilder::new()
            .insert(b"failure reason", Value::Bytes(reason.as_bytes()))
            .build(),
    );
    http(&body)
}

fn http(body: &[u8]) -> Bytes {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    Bytes::from(out)
}

impl Tracker {
    pub fn new(interval: u32, min_interval: u32) -> Self {
        Tracker {
            interval,
            min_interval,
            seeds_get_leechers: true,
            swarms: BTreeMap::new(),
            pending: BTreeMap::new(),
            announces: 0,
        }
    }

    /// Registers a peer directly (scripted peers do not announce over the network).
    pub fn register(&mut self, info_hash: [u8; 20], addr: SocketAddr) {
        self.swarms
            .entry(info_hash)
            .or_default()
            .insert(addr, false);
    }

    /// Peers known for `info_hash`.
    pub fn peer_count(&self, info_hash: &[u8; 20]) -> usize {
        self.swarms.get(info_hash).map_or(0, |s| s.peers.len())
    }

    pub fn closed(&mut self, conn: u64) {
        self.pending.remove(&conn);
    }

    /// Bytes arrived on connection `conn` from `remote`.
    pub fn on_data(
        &mut self,
        conn: u64,
        remote: IpAddr,
        data: &[u8],
        rng: &mut ChaCha8Rng,
    ) -> Reply {
        let buf = self.pending.entry(conn).or_default();
        buf.extend_from_slice(data);
        if buf.len() > 16 * 1024 {
            self.pending.remove(&conn);
            return Reply::Answer(failure("request too large"));
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let path = match req.parse(buf) {
            Ok(httparse::Status::Partial) => return Reply::Wait,
            Ok(httparse::Status::Complete(_)) => req.path.unwrap_or("").to_owned(),
            Err(_) => {
                self.pending.remove(&conn);
                return Reply::Answer(failure("bad request"));
            }
        };
        self.pending.remove(&conn);
        self.announces += 1;
        Reply::Answer(self.announce(&path, remote, rng))
    }

    fn announce(&mut self, path: &str, remote: IpAddr, rng: &mut ChaCha8Rng) -> Bytes {
        let Some((route, query)) = path.split_once('?') else {
            return failure("no query");
        };
        if route != "/announce" {
            return failure("not found");
        }
        let mut info_hash = None;
        let mut port = None;
        let mut event = Vec::new();
        let mut numwant = 50usize;
        let mut left = None;
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(v) = percent_decode(v.as_bytes()) else {
                return failure("bad percent-encoding");
            };
            let num = || std::str::from_utf8(&v).ok()?.parse::<u64>().ok();
            match k {
                "info_hash" => info_hash = <[u8; 20]>::try_from(v.as_slice()).ok(),
                "port" => port = num().and_then(|p| u16::try_from(p).ok()),
                "event" => event = v,
                "numwant" => numwant = num().map_or(50, |n| n.min(200) as usize),
                "left" => left = num(),
                _ => {}
            }
        }
        let (Some(info_hash), Some(port)) = (info_hash, port) else {
            return failure("info_hash and port are required");
        };
        let me = SocketAddr::new(remote, port);
        let swarm = self.swarms.entry(info_hash).or_default();
        if event == b"stopped" {
            swarm.remove(me);
            numwant = 0;
        } else if port != 0 {
            swarm.insert(me, left == Some(0));
        }
        let seed = left == Some(0);
        let no_seeds = seed && self.seeds_get_leechers;
        let mut compact = Vec::new();
        for a in swarm.sample(me, numwant, no_seeds, rng) {
            if let IpAddr::V4(ip) = a.ip() {
                compact.extend_from_slice(&ip.octets());
                compact.extend_from_slice(&a.port().to_be_bytes());
            }
        }
        let complete = swarm.seed_count as i64;
        let incomplete = swarm.peers.len() as i64 - complete;
        let body = encode(
            &DictBuilder::new()
                .insert(b"interval", Value::Int(i64::from(self.interval)))
                .insert(b"min interval", Value::Int(i64::from(self.min_interval)))
                .insert(b"complete", Value::Int(complete))
                .insert(b"incomplete", Value::Int(incomplete))
                .insert(b"peers", Value::Bytes(&compact))
                .build(),
        );
        http(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use tessera_core::tracker::{AnnounceEvent, AnnounceParams, AnnounceResponse};
    use tessera_core::{InfoHash, PeerId};

    fn request(ip_hash: [u8; 20], port: u16, event: AnnounceEvent) -> Vec<u8> {
        let params = AnnounceParams {
            info_hash: InfoHash(ip_hash),
            peer_id: PeerId(*b"-TQ0100-abcdefghijkl"),
            port,
            uploaded: 0,
            downloaded: 0,
            left: 5,
            event,
            numwant: Some(200),
            key: 7,
            tracker_id: None,
        };
        let url =
            tessera_core::tracker::announce::announce_url(crate::payload::TRACKER_URL, &params);
        let path = url.split_once("6969").unwrap().1;
        format!("GET {path} HTTP/1.1\r\nHost: 10.0.0.254:6969\r\n\r\n").into_bytes()
    }

    fn body(reply: Reply) -> Vec<u8> {
        let Reply::Answer(b) = reply else {
            panic!("no answer")
        };
        let at = b.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        b[at + 4..].to_vec()
    }

    #[test]
    fn announces_list_peers_and_stopped_removes() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut t = Tracker::new(120, 30);
        // Binary info hash with bytes that need percent-encoding.
        let ih = [
            0u8, 1, 0x25, 0x26, 0xff, b'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x3d,
        ];
        let a: IpAddr = "10.1.0.1".parse().unwrap();
        let b: IpAddr = "10.1.0.2".parse().unwrap();
        let req = request(ih, 6881, AnnounceEvent::Started);
        // In two parts: the first is not a full request.
        assert_eq!(t.on_data(1, a, &req[..10], &mut rng), Reply::Wait);
        let r = AnnounceResponse::parse(&body(t.on_data(1, a, &req[10..], &mut rng)), 100).unwrap();
        assert!(r.peers.is_empty(), "nobody else yet");
        let r = AnnounceResponse::parse(&body(t.on_data(2, b, &req, &mut rng)), 100).unwrap();
        assert_eq!(r.peers, vec![SocketAddr::new(a, 6881)]);
        assert_eq!(r.interval, Some(std::time::Duration::from_secs(120)));
        let stop = request(ih, 6881, AnnounceEvent::Stopped);
        t.on_data(3, a, &stop, &mut rng);
        assert_eq!(t.peer_count(&ih), 1);
        let r = AnnounceResponse::parse(&body(t.on_data(4, b, &req, &mut rng)), 100).unwrap();
        assert!(r.peers.is_empty());
    }
}
