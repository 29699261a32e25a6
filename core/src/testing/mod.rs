//! Test support for whoever drives a session in a test: the core's own tests, the
//! simulator and the fuzz targets. Built for the crate's tests and behind the `testing`
//! feature; nothing here is used by the protocol itself.

pub mod wire_check;

pub use wire_check::{Violation, WireCheck};
