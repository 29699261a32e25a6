//! The fuzz targets' bodies ([`targets`], shared with the main workspace's corpus replay
//! test) and helpers for them.
//!
//! Streaming targets read their input as a small header that says where to cut the stream,
//! then the stream itself, so that seed files are the real bytes behind a short prefix:
//!
//! ```text
//! [n: u8] [n × u16 big-endian chunk lengths] [stream ...]
//! ```
//!
//! `n` is taken modulo 32. The stream is fed in chunks of those lengths (cut to what is
//! left; zero-length chunks are fed too, as empty reads), then whatever remains as one last
//! chunk. An input too short for its header is read as a header with fewer lengths.

pub mod targets;

pub use targets::split::{MAX_SPLITS, chunks, take_splits};

/// The header for a stream fed whole (for writing seed files).
pub const NO_SPLITS: [u8; 1] = [0];
