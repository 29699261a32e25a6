//! Several drivers on one event loop: the nodes of a [`crate::Run`] (`download` and
//! `seed` are a run of one node; `demo` runs a seeder and downloaders in one process, each
//! with its own session and sockets). What is the same under every event loop lives
//! here: how long to sleep, Ctrl-C for all, and when the run is over.
//!
//! A node whose run is over is finished at once (its resume data saved, its summary
//! printed) and its sockets dropped. Once every node that has a goal of its own (a
//! download) is over, the nodes that only serve others (`seed`) are stopped cleanly;
//! a run of serving nodes alone lasts until Ctrl-C.

use std::time::Duration;

use crate::driver::{Driver, Net};
use crate::exit::Exit;

/// One node: its driver and the runtime's sockets for it.
#[derive(Debug)]
pub struct Node<N> {
    pub driver: Driver,
    pub net: N,
}

/// See the module docs.
#[derive(Debug)]
pub struct Fleet<N> {
    nodes: Vec<Option<Node<N>>>,
    exits: Vec<Option<Exit>>,
    /// Per node: it has a goal of its own (not only serving others).
    goals: Vec<bool>,
    /// The serving nodes were asked to stop.
    servers_stopped: bool,
}

impl<N: Net> Fleet<N> {
    /// The nodes, in the run's order (their indices are the runtime's to use).
    pub fn new(nodes: Vec<Node<N>>) -> Fleet<N> {
        let exits = nodes.iter().map(|_| None).collect();
        let goals = nodes.iter().map(|n| !n.driver.serves_only()).collect();
        Fleet {
            nodes: nodes.into_iter().map(Some).collect(),
            exits,
            goals,
            servers_stopped: false,
        }
    }

    /// Node `i`, while it runs.
    pub fn node(&mut self, i: usize) -> Option<&mut Node<N>> {
        self.nodes.get_mut(i).and_then(Option::as_mut)
    }

    /// The nodes still running, with their indices.
    pub fn live(&mut self) -> impl Iterator<Item = (usize, &mut Node<N>)> {
        self.nodes
            .iter_mut()
            .enumerate()
            .filter_map(|(i, n)| n.as_mut().map(|n| (i, n)))
    }

    /// How long the loop may sleep: the earliest of the nodes' timeouts, or not at all
    /// while a node is over and waits for [`Fleet::settle`].
    pub fn timeout(&self) -> Option<Duration> {
        let live = self.nodes.iter().flatten();
        if live.clone().any(|n| n.driver.finished().is_some()) {
            return Some(Duration::ZERO);
        }
        live.filter_map(|n| n.driver.timeout()).min()
    }

    /// Ctrl-C (or SIGTERM), for every node.
    pub fn interrupt(&mut self) {
        for (_, n) in self.live() {
            n.driver.request_shutdown(&mut n.net);
        }
    }

    /// After a round of the loop: finishes the nodes whose run is over, and stops the
    /// serving nodes once every other node is done.
    pub fn settle(&mut self) {
        for (slot, exit) in self.nodes.iter_mut().zip(&mut self.exits) {
            if slot.as_ref().is_some_and(|n| n.driver.finished().is_some())
                && let Some(node) = slot.take()
            {
                *exit = Some(node.driver.finish());
            }
        }
        let goals: Vec<bool> = self.goals.clone();
        let with_goal = goals.iter().filter(|&&g| g).count();
        let goals_done = self
            .nodes
            .iter()
            .zip(&goals)
            .all(|(n, &goal)| !goal || n.is_none());
        if with_goal > 0 && goals_done && !self.servers_stopped {
            self.servers_stopped = true;
            for (_, n) in self.live() {
                n.driver.stop_serving(&mut n.net);
            }
        }
    }

    /// Every node is over.
    pub fn done(&self) -> bool {
        self.nodes.iter().all(Option::is_none)
    }

    /// How each node's run ended, in order (`Interrupted` for a node still running).
    pub fn exits(mut self) -> Vec<Exit> {
        for (slot, exit) in self.nodes.iter_mut().zip(&mut self.exits) {
            if let Some(node) = slot.take() {
                *exit = Some(node.driver.finish());
            }
        }
        self.exits
            .into_iter()
            .map(|e| e.unwrap_or(Exit::Interrupted))
            .collect()
    }
}
