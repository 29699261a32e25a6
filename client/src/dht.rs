//! The DHT's place on the command line and on disk: `--no-dht` and `--dht-node` (for
//! `download` and `seed`), the settings the session's node starts with, and the routing
//! table kept between runs in `DIR/.tessera/dht.dat` (the bencoded node id and nodes the
//! core gives with `Session::dht_state`; written atomically every few minutes and at the
//! end of a run, read at the start; a missing or damaged file only means a cold start).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Args;
use tessera_core::DhtSettings;
use tessera_core::dht;

use crate::pool::parse_peer;

/// The file the routing table is kept in, under `DIR/.tessera/`.
pub const STATE_FILE: &str = "dht.dat";
/// Largest state file read back (a full one is about 12 KiB).
const MAX_STATE: u64 = 1 << 20;

/// DHT options of `download` and `seed`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(next_help_heading = "DHT")]
pub struct DhtArgs {
    /// Do not use the DHT (BEP 5); private torrents never do
    #[arg(long)]
    pub no_dht: bool,
    /// A DHT node to join the network through (repeatable). None: the node starts from the
    /// table saved in DIR/.tessera/dht.dat and from the nodes peers tell of; no public
    /// router is ever contacted by default
    #[arg(
        long = "dht-node",
        visible_alias = "dht-bootstrap",
        value_name = "HOST:PORT",
        value_parser = parse_peer
    )]
    pub dht_nodes: Vec<SocketAddr>,
}

/// Where the routing table of a run in `dir` is kept.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(crate::storage::DIR_NAME).join(STATE_FILE)
}

/// Whether an address is one a node on the open Internet would refuse (BEP 42 exempts
/// them, and the DHT takes them only when told to).
fn is_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// The settings for the session's node, or `None` with `--no-dht`. A node listening on
/// a loopback or private address, or told of such nodes, takes local addresses and
/// relaxes the one-node-per-address rules (a test network, a LAN); otherwise it follows
/// BEP 42. The saved table is read from `dir`.
pub fn settings(args: &DhtArgs, listen: SocketAddr, dir: &Path) -> Option<DhtSettings> {
    if args.no_dht {
        return None;
    }
    let local = (!listen.ip().is_unspecified() && is_local(listen.ip()))
        || args.dht_nodes.iter().any(|n| is_local(n.ip()));
    let mut config = if local {
        dht::Config::loopback()
    } else {
        dht::Config::default()
    };
    config.ipv6 = listen.is_ipv6();
    config.ipv4 = !listen.is_ipv6() || listen.ip().is_unspecified();
    Some(DhtSettings {
        config,
        bootstrap: args.dht_nodes.clone(),
        state: load(&state_path(dir)),
    })
}

/// The saved table, if there is a readable one.
fn load(path: &Path) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    if file.metadata().ok()?.len() > MAX_STATE {
        return None;
    }
    std::fs::read(path).ok()
}

/// Writes the routing table to `path` atomically (a temporary file renamed over it).
pub fn save(path: &Path, state: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("dat.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(state)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_nodes_make_a_loopback_node_and_no_dht_makes_none() {
        let dir = tempfile::tempdir().unwrap();
        let args = DhtArgs {
            no_dht: false,
            dht_nodes: vec!["127.0.0.1:6881".parse().unwrap()],
        };
        let s = settings(&args, "0.0.0.0:0".parse().unwrap(), dir.path()).unwrap();
        assert!(s.config.allow_local_addresses);
        assert_eq!(s.bootstrap, args.dht_nodes);
        assert_eq!(s.state, None);
        let public = settings(
            &DhtArgs::default(),
            "0.0.0.0:0".parse().unwrap(),
            dir.path(),
        );
        assert!(!public.unwrap().config.allow_local_addresses);
        let off = DhtArgs {
            no_dht: true,
            ..DhtArgs::default()
        };
        assert!(settings(&off, "127.0.0.1:0".parse().unwrap(), dir.path()).is_none());
    }

    #[test]
    fn state_is_saved_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(dir.path());
        save(&path, b"d5:nodes0:e").unwrap();
        let s = settings(
            &DhtArgs::default(),
            "127.0.0.1:1".parse().unwrap(),
            dir.path(),
        );
        assert_eq!(s.unwrap().state.as_deref(), Some(&b"d5:nodes0:e"[..]));
    }
}
