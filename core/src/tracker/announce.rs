//! The announce itself: the query string (BEP 3, BEP 23) and the bencoded answer, with
//! compact IPv4 peers (BEP 23), compact IPv6 `peers6` (BEP 7) and the dictionary model.
//!
//! SKELETON: signatures fixed, bodies to be written.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

use crate::id::{InfoHash, PeerId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnnounceEvent {
    /// A regular announce (no `event` parameter).
    None,
    Started,
    Completed,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceParams {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: AnnounceEvent,
    pub numwant: Option<u32>,
    /// Random per-session key so the tracker can recognise us across IP changes.
    pub key: u32,
    /// `tracker id` from an earlier response of this tracker.
    pub tracker_id: Option<Vec<u8>>,
}

/// The full announce URL: `base` plus the query parameters (`compact=1`, binary values
/// percent-encoded byte by byte; `&` when `base` already has a query).
pub fn announce_url(base: &str, params: &AnnounceParams) -> String {
    let _ = (base, params);
    todo!()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    pub interval: Option<Duration>,
    pub min_interval: Option<Duration>,
    /// Peers in the order given, deduplicated, at most the `max_peers` passed to `parse`.
    pub peers: Vec<SocketAddr>,
    pub warning: Option<String>,
    pub tracker_id: Option<Vec<u8>>,
    pub complete: Option<u64>,
    pub incomplete: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnnounceError {
    /// The tracker's `failure reason`.
    #[error("tracker refused: {0}")]
    Failure(String),
    #[error("bad tracker response: {0}")]
    Malformed(String),
}

impl AnnounceResponse {
    /// Parses a response body, keeping at most `max_peers` peers (the rest is ignored, not
    /// an error). Peers with port 0 are dropped.
    pub fn parse(body: &[u8], max_peers: usize) -> Result<AnnounceResponse, AnnounceError> {
        let _ = (body, max_peers);
        todo!()
    }
}
