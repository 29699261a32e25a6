//! What runs on a host: the tracker, a node (a real session), a script, or nothing any
//! more. A peer that restarts comes back on a new host; a dead host keeps its index.

use super::node::Node;
use crate::adversary::Script;
use crate::tracker::Tracker;

#[derive(Debug)]
pub enum Kind {
    Tracker(Box<Tracker>),
    Node(Box<Node>),
    Script(Box<Script>),
    Dead,
}

#[derive(Debug)]
pub struct Host {
    pub kind: Kind,
    /// The peer it runs (none for the tracker).
    pub rec: Option<usize>,
}
