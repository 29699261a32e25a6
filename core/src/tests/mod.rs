//! In-process tests of whole sessions: several real `Session`s wired together on a virtual
//! clock, with an in-memory disk, and scripted peers where a test needs a misbehaving one.

mod contract;
mod encryption;
mod fast_ext;
pub(crate) mod harness;
mod hostile;
mod magnet;
mod piece_order;
mod rate_limits;
mod request_timeouts;
mod rig;
mod seed_goals;
mod session;
mod stale_inputs;
mod timers;
mod tracker;
mod utp_session;
mod wire_props;
