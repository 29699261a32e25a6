//! What a `download` or `seed` command asks for, taken from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::cli::{Cli, Command, LimitArgs};

/// What the session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `download`: done once every piece is verified, unless `keep_seeding` (`--seed`).
    Download { keep_seeding: bool },
    /// `seed`: check the data, then serve it until interrupted.
    Seed,
}

/// A `download` or `seed` command, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub torrent: PathBuf,
    /// Where the data is (or goes).
    pub dir: PathBuf,
    pub peers: Vec<SocketAddr>,
    pub listen: SocketAddr,
    pub mode: Mode,
    pub quiet: bool,
    /// `--only` patterns (download): which files to fetch; empty for all.
    pub only: Vec<String>,
    /// `--recheck` (download): hash the data on disk instead of trusting resume data.
    pub recheck: bool,
    pub limits: LimitArgs,
    /// `--save-torrent` (download of a magnet link): where else to write its metadata.
    pub save_torrent: Option<std::path::PathBuf>,
    /// Peer exchange on (no `--no-pex`).
    pub pex: bool,
}

impl Plan {
    /// The plan for `download` and `seed`; `None` for the offline commands.
    pub fn from_cli(cli: &Cli) -> Option<Plan> {
        match &cli.command {
            Command::Download(d) => Some(Plan {
                torrent: d.torrent.clone(),
                dir: d.output.clone(),
                peers: d.peers.clone(),
                listen: d.listen,
                mode: Mode::Download {
                    keep_seeding: d.seed,
                },
                quiet: cli.quiet,
                only: d.only.clone(),
                recheck: d.recheck,
                limits: d.limits.clone(),
                save_torrent: d.save_torrent.clone(),
                pex: !d.no_pex,
            }),
            Command::Seed(s) => Some(Plan {
                torrent: s.torrent.clone(),
                dir: s.data.clone(),
                peers: s.peers.clone(),
                listen: s.listen,
                mode: Mode::Seed,
                quiet: cli.quiet,
                only: Vec::new(),
                recheck: false,
                limits: s.limits.clone(),
                save_torrent: None,
                pex: !s.no_pex,
            }),
            Command::Info(_) | Command::Verify(_) | Command::Create(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_from_the_command_line() {
        let cli = Cli::try_parse_for(
            "t",
            [
                "t",
                "download",
                "x.torrent",
                "-o",
                "out",
                "--peer",
                "127.0.0.1:1",
                "--seed",
            ],
        )
        .unwrap();
        assert_eq!(
            Plan::from_cli(&cli),
            Some(Plan {
                torrent: "x.torrent".into(),
                dir: "out".into(),
                peers: vec!["127.0.0.1:1".parse().unwrap()],
                listen: "0.0.0.0:0".parse().unwrap(),
                mode: Mode::Download { keep_seeding: true },
                quiet: false,
                only: vec![],
                recheck: false,
                limits: LimitArgs::default(),
                save_torrent: None,
                pex: true,
            })
        );
        let cli = Cli::try_parse_for(
            "t",
            [
                "t",
                "-q",
                "seed",
                "x.torrent",
                "--data",
                "d",
                "--listen",
                "127.0.0.1:7",
            ],
        )
        .unwrap();
        let plan = Plan::from_cli(&cli).unwrap();
        assert_eq!(plan.mode, Mode::Seed);
        assert_eq!(plan.dir, PathBuf::from("d"));
        assert_eq!(plan.listen.port(), 7);
        assert!(plan.quiet);
        let cli = Cli::try_parse_for("t", ["t", "info", "x.torrent"]).unwrap();
        assert_eq!(Plan::from_cli(&cli), None);
    }
}
