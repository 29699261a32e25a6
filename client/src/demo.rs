//! `demo`: a first run that needs nothing. Makes a payload of made-up bytes in a
//! temporary directory, creates its torrent, then runs a seeder and a few downloaders in
//! this process, on loopback, each with its own session, all on the runtime's one event
//! loop: the seeder serves the payload, each downloader dials the seeder and the
//! downloaders before it (so they trade pieces among themselves too). At the end every
//! copy is compared with the payload byte for byte, and the temporary directory removed.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cli::{CreateArgs, DemoArgs, Encryption};
use crate::dht::DhtArgs;
use crate::driver::{Mode, Plan, Run, Source};
use crate::error::Error;
use crate::exit::Exit;
use crate::pool::DiskPool;
use crate::torrent::TorrentRef;
use crate::ui::{Board, human_duration, human_size};

/// The payload's file name.
const PAYLOAD: &str = "tessera-demo.bin";

/// Runs the demo with `run_loop`, the runtime's event loop.
pub fn run(
    args: &DemoArgs,
    board: &Board,
    run_loop: impl FnOnce(&Run) -> Result<Vec<Exit>, Error>,
) -> Result<Exit, Error> {
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("tessera-demo-")
        .tempdir()
        .map_err(|e| Error::io("creating a temporary directory", e))?;
    let root = tmp.path();
    let seed_dir = root.join("seeder");
    std::fs::create_dir_all(&seed_dir).map_err(|e| Error::at("creating", &seed_dir, e))?;
    let payload = seed_dir.join(PAYLOAD);
    board.message(&format!(
        "demo: making {} of made-up data in {}",
        human_size(args.size),
        root.display()
    ));
    make_payload(&payload, args.size)?;
    let torrent = root.join("demo.torrent");
    make_torrent(&payload, &torrent, board.is_quiet())?;

    let downloaders = usize::from(args.downloaders);
    let mut nodes = Vec::with_capacity(downloaders + 1);
    let listen = Some(
        "127.0.0.1:0"
            .parse()
            .map_err(|_| Error::other("bad address"))?,
    );
    let source = |dir: PathBuf| Source {
        torrent: TorrentRef::File(torrent.clone()),
        dir,
        only: Vec::new(),
        recheck: false,
    };
    nodes.push(Plan {
        listen,
        label: Some("seeder".into()),
        encryption: Encryption::Disable,
        dht: offline(),
        ..Plan::new(vec![source(seed_dir.clone())], Mode::Seed)
    });
    let mut outputs = Vec::with_capacity(downloaders);
    for k in 1..=downloaders {
        let out = root.join(format!("downloader-{k}"));
        outputs.push(out.join(PAYLOAD));
        nodes.push(Plan {
            listen,
            label: Some(format!("downloader {k}")),
            // The seeder, and the downloaders started before this one.
            node_peers: (0..k).collect(),
            encryption: Encryption::Disable,
            dht: offline(),
            ..Plan::new(
                vec![source(out)],
                Mode::Download {
                    keep_seeding: false,
                },
            )
        });
    }
    board.message(&format!(
        "demo: a seeder and {downloaders} downloader{} on 127.0.0.1, each its own session, \
         on one event loop",
        if downloaders == 1 { "" } else { "s" }
    ));
    let run = Run {
        nodes,
        board: board.clone(),
    };
    let exits = run_loop(&run)?;
    let failed: Vec<String> = exits
        .iter()
        .zip(&run.nodes)
        .filter(|(e, _)| **e != Exit::Success)
        .map(|(e, plan)| {
            format!(
                "{} {}",
                plan.label.as_deref().unwrap_or("a node"),
                match e {
                    Exit::Failed(m) => format!("failed: {m}"),
                    Exit::Interrupted | Exit::Success => "was interrupted".into(),
                }
            )
        })
        .collect();
    if !failed.is_empty() {
        return Ok(Exit::Failed(format!("demo: {}", failed.join("; "))));
    }
    for (k, copy) in outputs.iter().enumerate() {
        if let Some(at) = first_difference(&payload, copy)? {
            return Ok(Exit::Failed(format!(
                "demo: downloader {}'s copy differs from the payload at byte {at}",
                k + 1
            )));
        }
    }
    board.summary(&format!(
        "demo: {downloaders} cop{} of {} identical to the payload, byte for byte, in {}",
        if downloaders == 1 { "y" } else { "ies" },
        human_size(args.size),
        human_duration(started.elapsed())
    ));
    Ok(Exit::Success)
}

/// The demo's nodes speak plain BitTorrent to each other on loopback and run no DHT:
/// it shows the transfer itself, as the README measures it.
fn offline() -> DhtArgs {
    DhtArgs {
        no_dht: true,
        ..DhtArgs::default()
    }
}

/// Writes `size` bytes of a fast pseudo-random stream (xorshift: nothing repeats within
/// a piece, so every piece hash differs) to `path`.
fn make_payload(path: &Path, size: u64) -> Result<(), Error> {
    let file = File::create(path).map_err(|e| Error::at("creating", path, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        out.write_all(&chunk[..n])
            .map_err(|e| Error::at("writing", path, e))?;
        left -= n as u64;
    }
    out.flush().map_err(|e| Error::at("writing", path, e))
}

/// Creates the torrent of `payload` at `torrent`, as `create` would.
fn make_torrent(payload: &Path, torrent: &Path, quiet: bool) -> Result<(), Error> {
    let args = CreateArgs {
        path: payload.to_path_buf(),
        trackers: Vec::new(),
        piece_size: None,
        output: Some(torrent.to_path_buf()),
        private: false,
        comment: Some("made by the Tessera demo".into()),
        no_date: true,
        force: true,
    };
    let pool = DiskPool::blocking().map_err(|e| Error::io("starting disk threads", e))?;
    let bytes = crate::create::build(&args, &pool, quiet)?.encode();
    std::fs::write(torrent, bytes).map_err(|e| Error::at("writing", torrent, e))
}

/// The offset of the first byte where `b` differs from `a` (`a`'s length if `b` is a
/// prefix of it, or `b`'s if it is longer); `None` if they are the same.
fn first_difference(a: &Path, b: &Path) -> Result<Option<u64>, Error> {
    let mut fa = File::open(a).map_err(|e| Error::at("opening", a, e))?;
    let mut fb = File::open(b).map_err(|e| Error::at("opening", b, e))?;
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|e| Error::at("reading", a, e))?;
        let nb = read_full(&mut fb, &mut bb).map_err(|e| Error::at("reading", b, e))?;
        if let Some(i) = ba[..na.min(nb)]
            .iter()
            .zip(&bb[..na.min(nb)])
            .position(|(x, y)| x != y)
        {
            return Ok(Some(offset + i as u64));
        }
        if na != nb {
            return Ok(Some(offset + na.min(nb) as u64));
        }
        if na == 0 {
            return Ok(None);
        }
        offset += na as u64;
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_made_and_compared() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        make_payload(&a, 3_000_001).unwrap();
        make_payload(&b, 3_000_001).unwrap();
        assert_eq!(std::fs::metadata(&a).unwrap().len(), 3_000_001);
        assert_eq!(first_difference(&a, &b).unwrap(), None);
        let mut bytes = std::fs::read(&b).unwrap();
        bytes[2_500_000] ^= 1;
        std::fs::write(&b, &bytes).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap(), Some(2_500_000));
        bytes.truncate(1000);
        std::fs::write(&b, &bytes).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap(), Some(1000));
        // Not a repeating pattern: the first two pieces of 16 KiB differ.
        let data = std::fs::read(&a).unwrap();
        assert_ne!(data[..16384], data[16384..32768]);
    }

    #[test]
    fn a_demo_that_fails_says_which_node() {
        let board = Board::quiet();
        let args = DemoArgs {
            size: 100_000,
            downloaders: 2,
        };
        let exit = run(&args, &board, |run| {
            assert_eq!(run.nodes.len(), 3);
            assert_eq!(run.nodes[0].mode, Mode::Seed);
            assert_eq!(run.nodes[2].node_peers, vec![0, 1]);
            Ok(vec![
                Exit::Success,
                Exit::Success,
                Exit::Failed("disk error".into()),
            ])
        })
        .unwrap();
        assert_eq!(
            exit,
            Exit::Failed("demo: downloader 2 failed: disk error".into())
        );
    }
}
