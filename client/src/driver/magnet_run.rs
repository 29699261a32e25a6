//! Sources given as magnet links. If an earlier run kept a link's metadata in
//! `DIR/.tessera/<info hash>.torrent`, it is used and the source joins the run as a
//! `.torrent` does. Otherwise the session fetches the metadata from peers; when
//! `Event::MetadataReceived` comes, the metadata is saved (and written to `--save-torrent`),
//! and the source joins the run through [`Driver::join`]: storage, resume data and progress
//! line as for a `.torrent`, then the session is told to download.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tessera_core::magnet::MagnetLink;
use tessera_core::{InfoHash, Metainfo, TorrentId};

use super::{Core, Driver, Mode, Source};
use crate::error::Error;
use crate::magnet;
use crate::output::printable;
use crate::ui::human_size;

/// What a source starts as, found before anything is created on disk.
#[derive(Debug)]
pub(super) enum Start {
    /// Its metainfo: read from a `.torrent`, or kept by an earlier run of a magnet link.
    Known {
        /// The source, with a magnet link's `so=` files in `only`.
        source: Source,
        meta: Arc<Metainfo>,
        /// The magnet link it came from, if it did.
        link: Option<MagnetLink>,
    },
    /// A magnet link whose metadata has to come from peers.
    Fetch { source: Source, link: MagnetLink },
}

impl Start {
    /// How `source` starts in a run in `mode`.
    pub(super) fn of(source: &Source, mode: Mode) -> Result<Start, Error> {
        let Some(link) = source.torrent.magnet()? else {
            return Ok(Start::Known {
                source: source.clone(),
                meta: source.torrent.load()?,
                link: None,
            });
        };
        let mut source = source.clone();
        source.only.extend(magnet::only_patterns(&link));
        if let Some(meta) = magnet::load_saved(&source.dir, &link) {
            return Ok(Start::Known {
                source,
                meta,
                link: Some(link),
            });
        }
        if mode == Mode::Seed {
            return Err(Error::other(format!(
                "{}: seeding needs the torrent's metadata: give the .torrent file, or run \
                 `download` with the link first (it keeps the metadata in {})",
                source.torrent,
                magnet::saved_path(&source.dir, &link).display()
            )));
        }
        Ok(Start::Fetch { source, link })
    }

    pub(super) fn info_hash(&self) -> InfoHash {
        match self {
            Start::Known { meta, .. } => meta.info_hash,
            Start::Fetch { link, .. } => link.info_hash,
        }
    }

    /// The metainfo, when known.
    pub(super) fn meta(&self) -> Option<&Arc<Metainfo>> {
        match self {
            Start::Known { meta, .. } => Some(meta),
            Start::Fetch { .. } => None,
        }
    }
}

/// A magnet link whose metadata the session is fetching.
#[derive(Debug)]
pub(super) struct Fetch {
    /// Its index in the plan's sources.
    pub(super) index: usize,
    /// The source, with the link's `so=` files in `only`.
    pub(super) source: Source,
    /// The link's name for messages: its `dn=`, else its info hash.
    pub(super) name: String,
    /// When the fetch started.
    pub(super) started: std::time::Instant,
}

impl Driver {
    /// Source `i` joins the run as `start` says: added at once, or its metadata fetched.
    pub(super) fn start(&mut self, i: usize, start: Start) -> Result<(), Error> {
        match start {
            Start::Known {
                source,
                meta,
                link: None,
            } => self.add_torrent(i, &source, meta).map(|_| ()),
            Start::Known {
                source,
                meta,
                link: Some(link),
            } => {
                let saved = magnet::saved_path(&source.dir, &link);
                if let Some(also) = &self.save_torrent {
                    std::fs::copy(&saved, also).map_err(|e| Error::at("writing", also, e))?;
                }
                let (peers, warnings) = magnet::peers(&link);
                for w in &warnings {
                    self.progress.warn(w);
                }
                self.progress
                    .message(&format!("using the metadata saved in {}", saved.display()));
                let id = self.add_torrent(i, &source, meta)?;
                if !peers.is_empty() {
                    let now = self.now();
                    self.session.add_peers(now, id, &peers, true);
                }
                Ok(())
            }
            Start::Fetch { source, link } => self.fetch(i, source, &link),
        }
    }

    /// Adds source `i`'s magnet link to the session, which fetches its metadata.
    fn fetch(&mut self, i: usize, source: Source, link: &MagnetLink) -> Result<(), Error> {
        let now = self.now();
        let (link_peers, warnings) = magnet::peers(link);
        for w in &warnings {
            self.progress.warn(w);
        }
        // The link's peers (names resolved) are given below, persistent like `--peer`.
        let bare = MagnetLink {
            peers: Vec::new(),
            ..link.clone()
        };
        let id = self
            .session
            .add_magnet(now, &bare)
            .map_err(|e| Error::other(e.to_string()))?;
        let mut peers = self.peers.clone();
        for p in link_peers {
            if !peers.contains(&p) {
                peers.push(p);
            }
        }
        if !peers.is_empty() {
            self.session.add_peers(now, id, &peers, true);
        }
        let name = link
            .name
            .as_deref()
            .map_or_else(|| link.info_hash.to_string(), printable);
        self.progress.message(&format!(
            "{}fetching the metadata of {} from peers ({} tracker(s), {} peer(s) given)",
            self.prefix,
            link.info_hash,
            link.trackers.len(),
            peers.len()
        ));
        self.fetching.insert(
            id,
            Fetch {
                index: i,
                source,
                name: format!("{}{name}", self.prefix),
                started: std::time::Instant::now(),
            },
        );
        Ok(())
    }
}

impl<S: Core> Driver<S> {
    /// The session has a magnet link's metadata: save it, and the source joins the run.
    pub(super) fn metadata_received(
        &mut self,
        torrent: TorrentId,
        meta: Arc<Metainfo>,
        file: &Bytes,
    ) {
        let Some(fetch) = self.fetching.remove(&torrent) else {
            return;
        };
        let elapsed = fetch.started.elapsed();
        let hash = meta.info_hash.to_string();
        let dir: &Path = &fetch.source.dir;
        for problem in magnet::save(dir, &hash, file, self.save_torrent.as_deref()) {
            self.progress.warn(&problem);
        }
        self.progress.message(&format!(
            "metadata received from peers in {:.3}s: {}{} ({}, {} file(s))",
            elapsed.as_secs_f64(),
            self.prefix,
            printable(&meta.info.name),
            human_size(meta.total_length()),
            meta.info.files.len()
        ));
        let now = self.now();
        if let Err(e) = self.join(fetch.index, &fetch.source, meta, Some(torrent)) {
            self.fail(fetch.index, format!("{}: {e}", fetch.name), now);
        }
    }

    /// A magnet link's metadata is not usable: its source fails.
    pub(super) fn metadata_failed(&mut self, torrent: TorrentId, reason: &str) {
        let Some(fetch) = self.fetching.remove(&torrent) else {
            return;
        };
        let now = self.now();
        let message = format!(
            "{}: the torrent's metadata is not usable: {reason}",
            fetch.name
        );
        self.fail(fetch.index, message, now);
    }
}
