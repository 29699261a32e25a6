//! # tessera-core
//!
//! The BitTorrent protocol as a sans-IO state machine. Bytes, datagrams, timer ticks and
//! disk results go in as [`Input`]s; what to send, connect, read, write and verify comes out
//! as [`Output`]s. Nothing here touches a socket, a file, the clock, a thread or the
//! operating system's randomness: time is an argument and randomness comes from the seed
//! passed to [`Session::new`].
//!
//! Modules are named after the protocol concept a reader of the BEPs would look for:
//! [`bencode`], [`metainfo`], [`wire`] (peer wire protocol), [`picker`] (piece picking),
//! [`tracker`], [`layout`] (where blocks lie in files), [`bitfield`].

pub mod api;
pub mod bencode;
pub mod bitfield;
pub mod choker;
pub mod config;
pub mod extension;
pub mod id;
pub mod layout;
pub mod metainfo;
mod peer;
mod peer_list;
pub mod picker;
mod rate;
pub mod rng;
pub mod session;
mod shared;
#[cfg(test)]
mod tests;
pub mod time;
mod timer;
mod torrent;
pub mod tracker;
mod vec_map;
pub mod wire;

pub use api::{
    Action, AddTorrentError, BadRequest, CloseReason, DiskError, DiskErrorKind, DiskResult, Event,
    Input, Misbehaviour, Output, PeerInfo, Target, TorrentStats, TrackerEvent,
};
pub use bitfield::Bitfield;
pub use config::{Config, TorrentOptions};
pub use id::{ConnId, InfoHash, OpId, PeerId, TorrentId};
pub use layout::{BLOCK_LEN, BlockRef, FileSpan, Layout};
pub use metainfo::{MAX_PIECE_LENGTH, MIN_PIECE_LENGTH, Metainfo};
pub use session::Session;
pub use time::{Duration, Instant};
