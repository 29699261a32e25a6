//! The events of a run: what the queue holds. Host, record and link indices are `u32` and
//! directions `u8` so that an event is 16 bytes: the queue's heap moves events around on
//! every push and pop.

use std::net::SocketAddr;

use bytes::Bytes;
use tessera_core::{DiskResult, Duration, Instant, OpId};

/// Why a dial failed (kept small: every event is copied around the queue's heap).
#[derive(Debug, Clone, Copy)]
pub enum DialError {
    TimedOut,
    CannotResolve,
}

impl DialError {
    /// What the dialler is told (`Input::Closed`'s error).
    pub fn text(self) -> &'static str {
        match self {
            DialError::TimedOut => "connection timed out",
            DialError::CannotResolve => "cannot resolve host names",
        }
    }
}

/// No rejoin after a `Leave`.
pub const NO_REJOIN: u64 = u64::MAX;

/// `Leave`'s rejoin delay as nanoseconds, [`NO_REJOIN`] for none.
pub fn rejoin_nanos(after: Option<Duration>) -> u64 {
    after.map_or(NO_REJOIN, |d| {
        u64::try_from(d.as_nanos()).unwrap_or(NO_REJOIN - 1)
    })
}

#[derive(Debug)]
pub enum Ev {
    // The population.
    Join {
        rec: u32,
    },
    Leave {
        rec: u32,
        /// Nanoseconds until the peer rejoins; [`NO_REJOIN`]: never.
        rejoin: u64,
    },
    // The hosts' applications.
    Timer {
        host: u32,
        epoch: u64,
    },
    DiskDone {
        host: u32,
        done: Box<(OpId, DiskResult)>,
    },
    ScriptTick {
        host: u32,
    },
    /// A UDP datagram (the DHT's) reaches `host`: the sender and the bytes.
    Datagram {
        host: u32,
        datagram: Box<(SocketAddr, Bytes)>,
    },
    // The transport.
    UplinkDone {
        host: u32,
    },
    UplinkKick {
        host: u32,
    },
    Deliver {
        link: u32,
        dir: u8,
    },
    Fin {
        link: u32,
        dir: u8,
    },
    Reset {
        link: u32,
        side: u8,
    },
    ConnectArrive {
        link: u32,
    },
    ConnectReply {
        link: u32,
        ok: bool,
    },
    ConnectFail {
        link: u32,
        error: DialError,
    },
    // The faults.
    Partition {
        until: Instant,
    },
    Heal,
    RandomReset,
    Stall {
        rec: u32,
        until: Instant,
    },
    Bandwidth,
    // The measurements.
    Sample,
}

const _: () = assert!(std::mem::size_of::<Ev>() <= 16);
