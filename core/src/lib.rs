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
//! [`tracker`], [`layout`] (where blocks lie in files), [`bitfield`], [`mse`] (message
//! stream encryption), [`fast`] (the Fast extension, BEP 6).

pub mod api;
pub mod bencode;
pub mod bitfield;
pub mod choker;
pub mod extension;
pub mod fast;
pub mod id;
pub mod layout;
pub mod metainfo;
pub mod mse;
mod peer;
mod peer_list;
pub mod picker;
mod rate;
pub mod rng;
pub mod session;
#[cfg(test)]
mod tests;
pub mod time;
mod torrent;
pub mod tracker;
pub mod utp;
mod vec_map;
pub mod wire;

pub use api::{
    Action, DiskError, DiskErrorKind, DiskResult, Event, Input, Output, Target, TrackerEvent,
};
pub use bitfield::Bitfield;
pub use id::{ConnId, InfoHash, OpId, PeerId, TorrentId};
pub use layout::{BLOCK_LEN, BlockRef, FileSpan, Layout};
pub use metainfo::Metainfo;
pub use session::{Config, PeerInfo, Session, TorrentOptions, TorrentStats};
pub use time::{Duration, Instant};
