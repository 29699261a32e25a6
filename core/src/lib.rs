//! # tessera-core
//!
//! The BitTorrent protocol as a sans-IO state machine. Bytes, datagrams, timer deadlines
//! and disk results go in as [`Input`]s; what to send, connect, read, write and verify
//! comes out as [`Output`]s. Nothing here touches a socket, a file, the clock, a thread or
//! the operating system's randomness: time is an argument and randomness comes from the
//! seed passed to [`Session::new`].
//!
//! ## Driving a session
//!
//! The driver (an event loop, a simulator, a test) owns every socket, file and timer. It
//! feeds what happened to [`Session::handle_input`], then drains [`Session::poll_output`]
//! until it returns [`Output::Timeout`]: every mutation is followed by a complete drain.
//! Each [`Action`] says how its outcome comes back (a connect as [`Input::Connected`] or
//! [`Input::Closed`], a disk job as [`Input::Disk`], written bytes as [`Input::Sent`]).
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use tessera_core::{
//!     Action, Config, Event, Input, Instant, Metainfo, Output, Session, TorrentOptions,
//! };
//!
//! /// Runs one torrent; `wait` blocks until a socket, a disk job or the deadline has
//! /// something to report, on the driver's clock.
//! fn drive(
//!     torrent_file: &[u8],
//!     seed: [u8; 32],
//!     mut wait: impl FnMut(Instant) -> Input,
//! ) -> Result<(), Box<dyn std::error::Error>> {
//!     let meta = Arc::new(Metainfo::from_bytes(torrent_file)?);
//!     let now = Instant::ZERO; // any epoch: only differences count
//!     let mut session = Session::new(Config::default(), now, seed); // time and randomness are inputs
//!     let _torrent = session.add_torrent(now, meta, TorrentOptions::default())?;
//!     loop {
//!         let deadline = loop {
//!             match session.poll_output() {
//!                 Output::Action(action) => match action {
//!                     Action::Connect { .. } => { /* dial; answer Connected or Closed */ }
//!                     Action::Send { .. } => { /* queue the bytes; report Sent as they go */ }
//!                     Action::Close { .. } => { /* drop the socket */ }
//!                     Action::Write { .. } | Action::Verify { .. } | Action::Read { .. } => {
//!                         /* off the event loop; answer Input::Disk */
//!                     }
//!                     Action::SendDatagram { .. } => { /* one UDP datagram */ }
//!                     Action::Resolve { .. } => {
//!                         /* look the name up off the event loop; answer Input::Resolved */
//!                     }
//!                 },
//!                 Output::Event(Event::Complete { .. }) => println!("complete"),
//!                 Output::Event(_) => { /* progress, trackers, peers, errors */ }
//!                 Output::Timeout(at) => break at, // FAR_FUTURE: nothing is due
//!             }
//!         };
//!         // Bytes arrived, a timer fired, a disk job finished...
//!         let input = wait(deadline);
//!         session.handle_input(input);
//!     }
//! }
//! ```
//!
//! [`api`] is the whole contract: what each input means, how each action is answered, and
//! that inputs for a connection or operation the core no longer knows are ignored.
//!
//! ## Modules
//!
//! Named after the protocol concept a reader of the BEPs would look for: [`bencode`],
//! [`metainfo`] (`.torrent` files), [`wire`] (the peer wire protocol), [`extension`]
//! (BEP 10), [`picker`] (piece picking policy), [`tracker`] (HTTP and UDP), [`magnet`]
//! (magnet links), [`metadata`] (`ut_metadata`, BEP 9), [`pex`] (`ut_pex`, BEP 11), [`mse`]
//! (message stream encryption), [`fast`] (the Fast extension, BEP 6), [`utp`] (uTP, BEP
//! 29), [`layout`] (where blocks lie in files), [`bitfield`]. The session's machinery
//! (torrents, peers, choking, timers, which transport carries a connection) is internal;
//! its knobs are in [`Config`] ([`TransportPolicy`] for TCP and uTP).

#![warn(missing_docs)]

pub mod api;
mod bandwidth;
pub mod bencode;
pub mod bitfield;
mod choker;
mod config;
mod conn;
pub mod dht;
pub mod extension;
pub mod fast;
mod id;
pub mod layout;
pub mod magnet;
pub mod metadata;
pub mod metainfo;
pub mod mse;
mod peer;
mod peer_list;
pub mod pex;
pub mod picker;
mod rate;
mod rng;
mod session;
mod shared;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod time;
mod timer;
mod torrent;
pub mod tracker;
mod transport;
pub mod utp;
mod vec_map;
pub mod wire;

pub use api::{
    Action, AddTorrentError, BadRequest, CloseReason, DiskError, DiskErrorKind, DiskResult, Event,
    Input, Misbehaviour, Output, PeerInfo, PeerRequests, SeedGoal, Target, TorrentStats,
    TrackerEvent,
};
pub use bitfield::Bitfield;
pub use config::{Config, DhtSettings, TorrentOptions};
pub use id::{ConnId, InfoHash, OpId, PeerId, TorrentId};
pub use layout::{BLOCK_LEN, BlockRef, FileSpan, Layout};
pub use metainfo::{MAX_PIECE_LENGTH, MIN_PIECE_LENGTH, Metainfo};
pub use picker::{PickerConfig, Strategy};
pub use rng::Rng;
pub use session::{DatagramStats, Session};
pub use time::{Duration, Instant};
pub use transport::{FALLBACK_AFTER, Transport, TransportPolicy};
