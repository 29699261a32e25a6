//! What a run asks for, taken from the command line: a [`Run`] of one or more nodes
//! (sessions driven by one event loop: one for `download` and `seed`, a seeder and
//! downloaders for `demo`), each a [`Plan`] with its list of torrent [`Source`]s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Cli, Command, Encryption, LimitArgs, SeedGoalArgs, Transport};
use crate::dht::DhtArgs;
use crate::error::Error;
use crate::net::{self, Sockets};
use crate::torrent::TorrentRef;
use crate::ui::Board;

/// What the session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `download`: done once every piece is verified, unless `keep_seeding` (`--seed`).
    Download { keep_seeding: bool },
    /// `seed`: check the data, then serve it until interrupted.
    Seed,
}

/// One torrent of a run: what names it and where its data lives. Each source gets its own
/// storage, resume data and progress line once it has become a torrent (see
/// [`crate::Driver`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub torrent: TorrentRef,
    /// The directory its data is in (or goes to): a single file at `dir/<name>`, several
    /// under `dir/<name>/`; its resume data in `dir/.tessera/`.
    pub dir: PathBuf,
    /// `--only` patterns: which files to fetch; empty for all.
    pub only: Vec<String>,
    /// `--recheck`: hash the data on disk instead of trusting resume data.
    pub recheck: bool,
}

/// One session's work: a `download` or `seed` command, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The torrents, in the order given.
    pub sources: Vec<Source>,
    /// Peers to dial for every torrent (redialled with back-off).
    pub peers: Vec<SocketAddr>,
    /// Other nodes of the same run to dial, by index in [`Run::nodes`], once their
    /// listeners are bound (the demo's downloaders dial its seeder).
    pub node_peers: Vec<usize>,
    /// Where to accept peers; `None`: [`crate::cli::DEFAULT_PORT`] or the first free
    /// port after it.
    pub listen: Option<SocketAddr>,
    pub mode: Mode,
    pub limits: LimitArgs,
    /// `--stall-timeout`: give up when no peer has been connected for this long.
    pub stall_timeout: Option<Duration>,
    /// Put before every line this node prints, when a run has several (`seeder`).
    pub label: Option<String>,
    /// `--seed-ratio`, `--seed-time`: when seeding ends by itself.
    pub goals: SeedGoalArgs,
    /// `--sequential`: pieces in order, for a player reading the file as it downloads.
    pub sequential: bool,
    /// `--first-last`: the first and last piece of each chosen file first.
    pub first_last: bool,
    /// `--encryption`.
    pub encryption: Encryption,
    /// `--transport`.
    pub transport: Transport,
    /// `--no-dht`, `--dht-node`.
    pub dht: DhtArgs,
    /// `--save-torrent` (download of a magnet link): where else to write its metadata.
    pub save_torrent: Option<PathBuf>,
    /// Peer exchange on (no `--no-pex`).
    pub pex: bool,
}

impl Plan {
    /// A plan for `sources` in `mode`, with the defaults for everything else.
    pub fn new(sources: Vec<Source>, mode: Mode) -> Plan {
        Plan {
            sources,
            peers: Vec::new(),
            node_peers: Vec::new(),
            listen: None,
            mode,
            limits: LimitArgs::default(),
            stall_timeout: None,
            label: None,
            goals: SeedGoalArgs::default(),
            sequential: false,
            first_last: false,
            encryption: Encryption::Prefer,
            transport: Transport::Both,
            dht: DhtArgs::default(),
            save_torrent: None,
            pex: true,
        }
    }

    /// The plan for `download` and `seed`; `None` for the other commands.
    pub fn from_cli(cli: &Cli) -> Result<Option<Plan>, Error> {
        let plan = match &cli.command {
            Command::Download(d) => {
                if !d.seed && (d.goals.seed_ratio.is_some() || d.goals.seed_time.is_some()) {
                    return Err(Error::other(
                        "--seed-ratio and --seed-time say when seeding ends: add --seed",
                    ));
                }
                if d.save_torrent.is_some()
                    && (d.torrents.len() > 1
                        || !matches!(d.torrents.first(), Some(TorrentRef::Magnet(_))))
                {
                    return Err(Error::other(
                        "--save-torrent writes the metadata of a magnet link: give a single \
                         magnet link with it",
                    ));
                }
                if d.torrents.len() > 1 && !d.only.is_empty() {
                    return Err(Error::other(
                        "--only chooses files of one torrent: give a single torrent with it",
                    ));
                }
                let sources = d
                    .torrents
                    .iter()
                    .map(|t| Source {
                        torrent: t.clone(),
                        dir: d.output.clone(),
                        only: d.only.clone(),
                        recheck: d.recheck,
                    })
                    .collect();
                Plan {
                    peers: d.peers.clone(),
                    listen: d.listen,
                    limits: d.limits.clone(),
                    stall_timeout: d.stall_timeout,
                    goals: d.goals.clone(),
                    sequential: d.sequential,
                    first_last: d.first_last,
                    encryption: d.encryption,
                    transport: d.transport,
                    dht: d.dht.clone(),
                    save_torrent: d.save_torrent.clone(),
                    pex: !d.no_pex,
                    ..Plan::new(
                        sources,
                        Mode::Download {
                            keep_seeding: d.seed,
                        },
                    )
                }
            }
            Command::Seed(s) => {
                let sources = s
                    .torrents
                    .iter()
                    .map(|t| Source {
                        torrent: t.clone(),
                        dir: s.data.clone(),
                        only: Vec::new(),
                        recheck: false,
                    })
                    .collect();
                Plan {
                    peers: s.peers.clone(),
                    listen: s.listen,
                    limits: s.limits.clone(),
                    goals: s.goals.clone(),
                    encryption: s.encryption,
                    transport: s.transport,
                    dht: s.dht.clone(),
                    pex: !s.no_pex,
                    ..Plan::new(sources, Mode::Seed)
                }
            }
            Command::Info(_)
            | Command::Verify(_)
            | Command::Create(_)
            | Command::Demo(_)
            | Command::Completions(_) => return Ok(None),
        };
        Ok(Some(plan))
    }

    /// How this node's lines start: `label: ` or nothing.
    pub fn prefix(&self) -> String {
        self.label
            .as_deref()
            .map(|l| format!("{l}: "))
            .unwrap_or_default()
    }
}

/// Everything one process runs on one event loop: its nodes, and where they all show
/// their progress.
#[derive(Debug, Clone)]
pub struct Run {
    pub nodes: Vec<Plan>,
    pub board: Board,
}

impl Run {
    /// The sockets of every node, bound in order, with the addresses of the nodes each
    /// one dials ([`Plan::node_peers`]) added to its peers.
    pub fn bind(&self) -> Result<Vec<(Plan, Sockets)>, Error> {
        let mut bound: Vec<(Plan, Sockets)> = Vec::with_capacity(self.nodes.len());
        for plan in &self.nodes {
            let sockets = net::bind(plan.listen)?;
            bound.push((plan.clone(), sockets));
        }
        let addrs: Vec<SocketAddr> = bound.iter().map(|(_, s)| dialable(s.local)).collect();
        for (plan, _) in &mut bound {
            for &node in &plan.node_peers {
                let Some(&addr) = addrs.get(node) else {
                    return Err(Error::other(format!("internal error: no node {node}")));
                };
                plan.peers.push(addr);
            }
        }
        Ok(bound)
    }

    /// A run of one node.
    pub fn single(plan: Plan, board: Board) -> Run {
        Run {
            nodes: vec![plan],
            board,
        }
    }
}

/// Where another socket of this machine reaches a listener bound at `local`: the loopback
/// address for a listener on every address.
fn dialable(local: SocketAddr) -> SocketAddr {
    match local.ip() {
        ip if !ip.is_unspecified() => local,
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, local.port())),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::LOCALHOST, local.port())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Plan>, Error> {
        let cli =
            Cli::try_parse_for("t", std::iter::once("t").chain(args.iter().copied())).unwrap();
        Plan::from_cli(&cli)
    }

    #[test]
    fn plans_from_the_command_line() {
        let plan = parse(&[
            "download",
            "x.torrent",
            "y.torrent",
            "-o",
            "out",
            "--peer",
            "127.0.0.1:1",
            "--seed",
            "--recheck",
        ])
        .unwrap()
        .unwrap();
        let source = |t: &str| Source {
            torrent: TorrentRef::parse(t),
            dir: "out".into(),
            only: vec![],
            recheck: true,
        };
        assert_eq!(
            plan,
            Plan {
                sources: vec![source("x.torrent"), source("y.torrent")],
                peers: vec!["127.0.0.1:1".parse().unwrap()],
                node_peers: vec![],
                listen: None,
                mode: Mode::Download { keep_seeding: true },
                limits: LimitArgs::default(),
                stall_timeout: None,
                label: None,
                goals: SeedGoalArgs::default(),
                sequential: false,
                first_last: false,
                encryption: Encryption::Prefer,
                transport: Transport::Both,
                dht: DhtArgs::default(),
                save_torrent: None,
                pex: true,
            }
        );
        assert_eq!(plan.prefix(), "");

        // Seeding goals and piece order reach the plan; a goal needs --seed.
        let plan = parse(&[
            "download",
            "x.torrent",
            "--seed",
            "--seed-ratio",
            "1.5",
            "--seed-time",
            "2h",
            "--sequential",
            "--first-last",
            "--max-upload-rate",
            "500KiB",
            "--max-download-rate",
            "10M/s",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(plan.goals.seed_ratio, Some(1.5));
        assert_eq!(plan.goals.seed_time, Some(Duration::from_secs(7200)));
        assert!(plan.sequential && plan.first_last);
        assert_eq!(plan.limits.max_upload_rate, Some(500 << 10));
        assert_eq!(plan.limits.max_download_rate, Some(10 << 20));
        let err = parse(&["download", "x.torrent", "--seed-time", "5s"]).unwrap_err();
        assert!(err.to_string().contains("add --seed"), "{err}");
        let plan = parse(&["seed", "x.torrent", "--seed-ratio", "0.5"])
            .unwrap()
            .unwrap();
        assert_eq!(plan.goals.seed_ratio, Some(0.5));

        let plan = parse(&[
            "seed",
            "x.torrent",
            "--data",
            "d",
            "--listen",
            "127.0.0.1:7",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(plan.mode, Mode::Seed);
        assert_eq!(plan.sources.len(), 1);
        assert_eq!(plan.sources[0].dir, PathBuf::from("d"));
        assert_eq!(plan.listen.map(|l| l.port()), Some(7));
        assert!(parse(&["info", "x.torrent"]).unwrap().is_none());

        // --no-pex and --save-torrent reach the plan; --save-torrent takes one magnet link.
        let link = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567";
        let plan = parse(&["download", link, "--save-torrent", "t.torrent", "--no-pex"])
            .unwrap()
            .unwrap();
        assert_eq!(plan.save_torrent, Some(PathBuf::from("t.torrent")));
        assert!(!plan.pex);
        assert_eq!(plan.sources[0].torrent, TorrentRef::Magnet(link.into()));
        let err = parse(&["download", "x.torrent", "--save-torrent", "t"]).unwrap_err();
        assert!(err.to_string().contains("single magnet link"), "{err}");
        let err = parse(&["download", link, "x.torrent", "--save-torrent", "t"]).unwrap_err();
        assert!(err.to_string().contains("single magnet link"), "{err}");
        let plan = parse(&["seed", "x.torrent", "--no-pex"]).unwrap().unwrap();
        assert!(!plan.pex);

        // Encryption and the DHT reach the plan, for `download` and `seed` alike.
        for command in ["download", "seed"] {
            let plan = parse(&[
                command,
                "x.torrent",
                "--encryption",
                "require",
                "--no-dht",
                "--dht-node",
                "127.0.0.1:6881",
            ])
            .unwrap()
            .unwrap();
            assert_eq!(plan.encryption, Encryption::Require, "{command}");
            assert!(plan.dht.no_dht, "{command}");
            assert_eq!(
                plan.dht.dht_nodes,
                vec!["127.0.0.1:6881".parse::<SocketAddr>().unwrap()]
            );
        }
        assert!(parse(&["demo"]).unwrap().is_none());
    }

    #[test]
    fn only_takes_one_torrent() {
        let err = parse(&["download", "a.torrent", "b.torrent", "--only", "*.iso"]).unwrap_err();
        assert!(err.to_string().contains("single torrent"), "{err}");
        let plan = parse(&["download", "a.torrent", "--only", "*.iso"])
            .unwrap()
            .unwrap();
        assert_eq!(plan.sources[0].only, vec!["*.iso"]);
    }
}
