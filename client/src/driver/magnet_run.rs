//! `download MAGNET`: the run starts with only the link. If an earlier run kept the
//! metadata in `DIR/.tessera/<info hash>.torrent`, it is used and the run is the same as
//! with a `.torrent`. Otherwise the core fetches the metadata from peers; when
//! `Event::MetadataReceived` comes, the metadata is saved, the storage and resume data are
//! set up as for a `.torrent`, and the core is told to download.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tessera_core::magnet::MagnetLink;
use tessera_core::{Instant, Metainfo, Session, TorrentId, TorrentOptions};

use super::lifecycle::{Lifecycle, Step};
use super::progress::Progress;
use super::resume_upkeep::ResumeUpkeep;
use super::{Core, Driver, Mode, Plan, SHUTDOWN_GRACE, session_config};
use crate::error::Error;
use crate::magnet;
use crate::pool::{DiskPool, Wake};
use crate::select;
use crate::storage::{self, Storage};
use crate::ui::human_size;

/// What a magnet run needs once the metadata is in.
#[derive(Debug)]
pub(super) struct MagnetRun {
    /// The plan, with the link's `so=` in `only`.
    plan: Plan,
    /// When the fetch started.
    started: std::time::Instant,
}

impl Driver {
    /// [`Driver::new`] for a magnet link.
    pub(super) fn for_magnet(
        plan: &Plan,
        link: MagnetLink,
        listen_port: u16,
        wake: Wake,
    ) -> Result<Driver, Error> {
        let mut plan = plan.clone();
        plan.only.extend(magnet::only_patterns(&link));
        let (peers, warnings) = magnet::peers(&link);
        for p in peers {
            if !plan.peers.contains(&p) {
                plan.peers.push(p);
            }
        }
        if let Some(meta) = magnet::load_saved(&plan.dir, &link) {
            let saved = magnet::saved_path(&plan.dir, &link);
            if let Some(also) = &plan.save_torrent {
                std::fs::copy(&saved, also).map_err(|e| Error::at("writing", also, e))?;
            }
            let driver = Driver::with_metainfo(&plan, meta, listen_port, wake)?;
            driver
                .progress
                .message(&format!("using the metadata saved in {}", saved.display()));
            for w in &warnings {
                driver.progress.warn(w);
            }
            return Ok(driver);
        }
        let pool = DiskPool::with_default_threads(wake)
            .map_err(|e| Error::io("starting disk threads", e))?;
        let config = session_config(&plan, listen_port);
        let grace = config.tracker_timeout + SHUTDOWN_GRACE;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::other(format!("no randomness from the operating system: {e}")))?;
        let epoch = std::time::Instant::now();
        let mut session = Session::new(config, Instant::ZERO, seed);
        // The peers (names resolved) are given below, persistent like `--peer`.
        let bare = MagnetLink {
            peers: Vec::new(),
            ..link.clone()
        };
        let torrent = session
            .add_magnet(Instant::ZERO, &bare)
            .map_err(|e| Error::other(e.to_string()))?;
        if !plan.peers.is_empty() {
            session.add_peers(Instant::ZERO, torrent, &plan.peers, true);
        }
        let name = link
            .name
            .clone()
            .unwrap_or_else(|| link.info_hash.to_string());
        let progress = Progress::new(plan.quiet, plan.mode, &name, 0, plan.dir.clone());
        for w in &warnings {
            progress.warn(w);
        }
        progress.message(&format!(
            "fetching the metadata of {} from peers ({} tracker(s), {} peer(s) given)",
            link.info_hash,
            link.trackers.len(),
            plan.peers.len()
        ));
        Ok(Driver {
            session,
            pool,
            storages: Default::default(),
            epoch,
            torrent,
            deadline: Instant::ZERO,
            resolving: Default::default(),
            completions: Vec::new(),
            lifecycle: Lifecycle::new(plan.mode, grace),
            progress,
            resumer: None,
            magnet: Some(Box::new(MagnetRun {
                plan,
                started: std::time::Instant::now(),
            })),
        })
    }
}

impl<S: Core> Driver<S> {
    /// The core has the metadata: save it, make the storage, and start the download.
    pub(super) fn metadata_received(
        &mut self,
        torrent: TorrentId,
        meta: Arc<Metainfo>,
        file: &Bytes,
    ) {
        let Some(run) = self.magnet.take() else {
            return;
        };
        let elapsed = run.started.elapsed();
        let plan = run.plan;
        let hash = meta.info_hash.to_string();
        for problem in magnet::save(&plan.dir, &hash, file, plan.save_torrent.as_deref()) {
            self.progress.warn(&problem);
        }
        let now = self.now();
        if let Err(e) = self.start_download(torrent, &meta, &plan, elapsed)
            && self.lifecycle.on_fatal(e.to_string(), now) == Step::Shutdown
        {
            self.session.shutdown(now);
        }
    }

    fn start_download(
        &mut self,
        torrent: TorrentId,
        meta: &Arc<Metainfo>,
        plan: &Plan,
        elapsed: Duration,
    ) -> Result<(), Error> {
        let chosen = select::choose(meta, &plan.only)?;
        let hash = meta.info_hash.to_string();
        let storage = Arc::new(Storage::with_selection(
            &plan.dir,
            meta.clone(),
            chosen.as_deref(),
            Some(storage::part_path(&plan.dir, &hash)),
        )?);
        let progress = Progress::new(
            plan.quiet,
            plan.mode,
            &meta.info.name,
            meta.total_length(),
            plan.dir.clone(),
        );
        progress.message(&format!(
            "metadata received from peers in {:.3}s: {} ({}, {} file(s))",
            elapsed.as_secs_f64(),
            progress.name(),
            human_size(meta.total_length()),
            meta.info.files.len()
        ));
        let now = self.now();
        let (have, resumer, line) = ResumeUpkeep::start(
            meta,
            &storage,
            &plan.dir,
            plan.recheck,
            progress.name(),
            now,
        );
        if let Some(line) = line {
            progress.message(&line);
        }
        storage.prepare()?;
        self.progress = progress;
        self.storages.insert(torrent, storage);
        self.resumer = Some(resumer);
        let options = TorrentOptions {
            have,
            seed: matches!(plan.mode, Mode::Download { keep_seeding: true }),
            files: chosen,
        };
        self.session
            .resume_with_metadata(now, torrent, options)
            .map_err(Error::other)
    }
}
