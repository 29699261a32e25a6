//! The simulation: hosts (real sessions, scripted adversaries, the tracker) on the
//! transport, driven by the event queue of [`crate::queue`], with the population and
//! faults of the scenario, the invariants checked as events touch nodes, and a report at
//! the end.
//!
//! Determinism: one clock, events ordered by (time, sequence); every random draw comes from
//! ChaCha streams derived from the master seed in a fixed order; every map is a `BTreeMap`.
//!
//! Parts, each depending only on those listed before it: `event` (what the queue holds),
//! `draw` (random draws), `transport` (every host's links and every connection),
//! `population` (the peers and their lives), `faults`, `tally` (what the run observes),
//! `node` (driving a real session), `host` (what runs on a host) and `summary` (the
//! report). This module holds the event loop and the glue between the hosts' applications
//! and the transport.

mod draw;
mod event;
mod faults;
mod host;
mod node;
mod population;
mod summary;
mod tally;
mod transport;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use tessera_core::{ConnId, Duration, Input, Instant};

use self::draw::{index, stream};
use self::event::{Ev, NO_REJOIN};
use self::host::{Host, Kind};
use self::node::{Ctx, Node};
use self::population::{Class, Life, PEER_PORT, Population};
use self::summary::Ending;
use self::tally::Tally;
use self::transport::{Arrival, Notice, SegmentEnd, Transport};
use crate::adversary::{Script, ScriptOut};
use crate::net::Iface;
use crate::payload::Payload;
use crate::queue::Queue;
use crate::report::Report;
use crate::scenario::{Adversary, Scenario};
use crate::tracker::{Reply, Tracker};

const TRACKER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
const TRACKER_PORT: u16 = 6969;
/// How often the copy counts are sampled.
const SAMPLE: Duration = Duration::from_secs(1);

/// The whole simulated world.
#[derive(Debug)]
pub struct World {
    sc: Scenario,
    q: Queue<Ev>,
    /// Network jitter, tracker samples, fault targets at run time.
    rng: ChaCha8Rng,
    payload: Arc<Payload>,
    net: Transport,
    /// What runs on each host (indexed as the transport's hosts).
    hosts: Vec<Host>,
    pop: Population,
    tally: Tally,
    heal_at: Instant,
    bound: Instant,
}

impl World {
    pub fn new(sc: Scenario) -> World {
        let mut master = ChaCha8Rng::seed_from_u64(sc.seed);
        let mut plan = stream(&mut master);
        let rng = stream(&mut master);
        let mut content = stream(&mut master);
        let corrupt = sc
            .adversaries
            .iter()
            .any(|a| a.0 == Adversary::Corrupt && a.1 > 0);
        let mut payload = Payload::new(sc.mode, sc.size, sc.piece_size, corrupt, &mut content);
        if sc.magnet {
            payload = payload.with_info_dictionary();
        }
        let payload = Arc::new(payload);
        let mut net = Transport::new(payload.clone(), sc.seeder_leaves_after.is_some());
        let tracker_iface = Iface::new(100e6, 100e6, Duration::from_millis(1));
        net.add_host(TRACKER_IP, TRACKER_PORT, tracker_iface, 0);
        let tracker = Tracker::new(sc.tracker_interval, sc.tracker_min_interval);
        let hosts = vec![Host {
            kind: Kind::Tracker(Box::new(tracker)),
            rec: None,
        }];
        // The plan, in this order: the peers, the faults, the bound, the first sample.
        let mut q = Queue::default();
        let mut pop = Population::plan(&sc, &mut plan, &mut q);
        let heal_at = faults::plan(&sc, &mut pop, &mut plan, &mut q);
        let bound = pop.liveness_bound(heal_at, payload.size());
        q.at(Instant::ZERO + SAMPLE, Ev::Sample);
        World {
            q,
            rng,
            net,
            hosts,
            pop,
            tally: Tally::new(payload.num_pieces()),
            heal_at,
            bound,
            payload,
            sc,
        }
    }

    /// What driving a node needs, beside the node on `hosts[h]`.
    fn split(&mut self, h: usize) -> Option<(&mut Node, Ctx<'_>)> {
        let Kind::Node(node) = &mut self.hosts[h].kind else {
            return None;
        };
        let cx = Ctx {
            sc: &self.sc,
            payload: &self.payload,
            q: &mut self.q,
            rng: &mut self.rng,
            net: &mut self.net,
            pop: &mut self.pop,
            tally: &mut self.tally,
        };
        Some((node, cx))
    }

    /// Hands one input to host `h`'s session, if it runs one.
    fn feed(&mut self, h: usize, input: Input) {
        if let Some((node, mut cx)) = self.split(h) {
            node.feed(h, input, &mut cx);
        }
    }

    // ---- the loop ---------------------------------------------------------------------

    pub fn run(mut self) -> Report {
        let started = std::time::Instant::now();
        let limit = match self.sc.time_limit {
            Some(l) => Instant::ZERO + l,
            None => self.bound,
        };
        let mut stuck = false;
        let mut done = false;
        while let Some(ev) = self.q.pop(limit) {
            self.tally.events += 1;
            self.handle(ev);
            if self.pop.remaining == 0 && self.pop.pending_joins == 0 {
                done = true;
                break;
            }
            if self.is_stuck() {
                stuck = true;
                break;
            }
        }
        let wall = started.elapsed().as_secs_f64();
        // Out of events before the limit, or at it: the limit counts as reached.
        let now = if done || stuck { self.q.now() } else { limit };
        for host in &self.hosts {
            if let (Kind::Node(node), Some(rec)) = (&host.kind, host.rec) {
                self.pop.records[rec].uploaded += node.uploaded();
            }
        }
        let end = Ending {
            wall,
            stuck,
            now,
            bound: self.bound,
            healed: self.heal_at,
        };
        summary::report(&self.sc, &self.pop, &self.hosts, self.tally, end)
    }

    /// No seeder is left, nobody is joining, and some piece has no copy: nothing can finish.
    fn is_stuck(&self) -> bool {
        self.tally.copies.at_zero > 0
            && self.tally.seeder_left_at.is_some()
            && self.pop.pending_joins == 0
            && self.q.now() > self.heal_at
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Join { rec } => {
                self.pop.pending_joins -= 1;
                self.join(rec as usize);
            }
            Ev::Leave { rec, rejoin } => self.leave(rec, rejoin),
            Ev::Timer { host, epoch } => {
                let h = host as usize;
                if let Some((node, mut cx)) = self.split(h) {
                    node.on_timer(h, epoch, &mut cx);
                }
            }
            Ev::DiskDone { host, done } => {
                let (op, result) = *done;
                let now = self.q.now();
                self.feed(host as usize, Input::Disk { now, op, result });
            }
            Ev::ScriptTick { host } => self.script_tick(host as usize),
            Ev::Datagram { host, datagram } => {
                let (from, data) = *datagram;
                let now = self.q.now();
                self.feed(host as usize, Input::Datagram { now, from, data });
            }
            Ev::UplinkDone { host } => self.uplink_done(host as usize),
            Ev::UplinkKick { host } => {
                self.net
                    .uplink_kick(host as usize, &mut self.q, &mut self.rng);
            }
            Ev::Deliver { link, dir } => self.deliver(link as usize, usize::from(dir)),
            Ev::Fin { link, dir } => {
                let notice = self.net.fin(link as usize, usize::from(dir));
                self.notify(notice);
            }
            Ev::Reset { link, side } => {
                let notice = self.net.reset(link as usize, usize::from(side));
                self.notify(notice);
            }
            Ev::ConnectArrive { link } => self.connect_arrive(link as usize),
            Ev::ConnectReply { link, ok } => {
                let notice = self.net.connect_reply(link as usize, ok);
                self.notify(notice);
            }
            Ev::ConnectFail { link, error } => {
                let notice = self.net.connect_failed(link as usize, error);
                self.notify(notice);
            }
            Ev::Partition { until } => {
                faults::partition(&mut self.net, until, &mut self.rng, &mut self.q);
            }
            Ev::Heal => self.net.heal(),
            Ev::RandomReset => faults::random_reset(&mut self.net, &mut self.rng, &mut self.q),
            Ev::Stall { rec, until } => {
                faults::stall(&mut self.net, &self.pop, rec as usize, until, &mut self.q);
            }
            Ev::Bandwidth => {
                faults::change_bandwidth(&mut self.net, &self.pop, &self.sc, &mut self.rng);
            }
            Ev::Sample => self.sample(),
        }
    }

    // ---- lives ------------------------------------------------------------------------

    fn join(&mut self, rec: usize) {
        let now = self.q.now();
        let h = self.net.hosts();
        let Some(life) = self.pop.begin_life(rec, now, h) else {
            return;
        };
        self.net
            .add_host(life.ip, PEER_PORT, self.pop.iface(rec), 49152);
        match life.class {
            Class::Adversary(kind) if life.class.scripted() => {
                self.hosts.push(Host {
                    kind: Kind::Dead,
                    rec: Some(rec),
                });
                self.start_script(h, kind, &life);
            }
            _ => {
                let bootstrap = if self.sc.dht {
                    self.pop.seeder_nodes()
                } else {
                    Vec::new()
                };
                let node = Node::new(&self.sc, &self.payload, now, rec, life, &bootstrap);
                self.tally.magnet_links += usize::from(node.is_magnet());
                self.hosts.push(Host {
                    kind: Kind::Node(Box::new(node)),
                    rec: Some(rec),
                });
                if let Some((node, mut cx)) = self.split(h) {
                    node.started(h, &mut cx);
                }
            }
        }
    }

    /// A scripted adversary starts on host `h`: it registers with the tracker (the first
    /// time) and dials a few of the honest peers already there.
    fn start_script(&mut self, h: usize, kind: Adversary, life: &Life) {
        let now = self.q.now();
        let seed = life.seed;
        let script = Script::new(
            kind,
            seed[..20].try_into().expect("20 bytes"),
            self.payload.meta.info_hash,
            self.payload.num_pieces(),
            self.sc.piece_size,
            ChaCha8Rng::from_seed(seed),
        );
        self.hosts[h].kind = Kind::Script(Box::new(script));
        if life.first
            && let Kind::Tracker(t) = &mut self.hosts[0].kind
        {
            let addr = SocketAddr::new(IpAddr::V4(life.ip), PEER_PORT);
            t.register(self.payload.meta.info_hash.0, addr);
        }
        let targets = self.pop.honest_up();
        for _ in 0..targets.len().min(8) {
            let t = targets[index(&mut self.rng, targets.len())];
            let local = self.net.new_local(h);
            self.net.dial(h, local, t, &mut self.q);
        }
        self.q.at(
            now + Duration::from_secs(1),
            Ev::ScriptTick { host: h as u32 },
        );
    }

    fn leave(&mut self, rec: u32, rejoin: u64) {
        if let Some(h) = self.pop.records[rec as usize].host {
            self.kill(h);
        }
        if rejoin != NO_REJOIN {
            self.pop.pending_joins += 1;
            let at = self.q.now() + Duration::from_nanos(rejoin);
            self.q.at(at, Ev::Join { rec });
        }
    }

    /// The host dies: its connections reset on the other side, its data kept on disk.
    fn kill(&mut self, h: usize) {
        self.net.kill(h, &mut self.q);
        let kind = std::mem::replace(&mut self.hosts[h].kind, Kind::Dead);
        let Some(rec) = self.hosts[h].rec else {
            return;
        };
        let kept = match kind {
            Kind::Node(node) => Some(node.stop(&mut self.tally.copies)),
            _ => None,
        };
        self.pop.end_life(rec, kept);
    }

    // ---- the applications and the transport -------------------------------------------

    /// Tells the application a notice is for.
    fn notify(&mut self, notice: Option<Notice>) {
        let now = self.q.now();
        match notice {
            None => {}
            Some(Notice::Connected { host, local }) => match &mut self.hosts[host].kind {
                Kind::Node(_) => {
                    let conn = ConnId(local);
                    self.feed(host, Input::Connected { now, conn });
                }
                Kind::Script(s) => {
                    let outs = s.on_open(now, local);
                    self.script_outs(host, outs);
                }
                Kind::Tracker(_) | Kind::Dead => {}
            },
            Some(Notice::Closed { host, local, error }) => match &mut self.hosts[host].kind {
                Kind::Node(_) => {
                    let conn = ConnId(local);
                    let error = error.map(str::to_string);
                    self.feed(host, Input::Closed { now, conn, error });
                }
                Kind::Script(s) => s.on_closed(local),
                Kind::Tracker(t) => t.closed(local),
                Kind::Dead => {}
            },
        }
    }

    /// A dial reaches its target: its application accepts it or refuses.
    fn connect_arrive(&mut self, l: usize) {
        let now = self.q.now();
        let Some(incoming) = self.net.incoming(l, &mut self.q) else {
            return;
        };
        let to = incoming.to;
        let local = match &mut self.hosts[to].kind {
            Kind::Node(n) => n.accept(now, incoming.remote),
            Kind::Script(_) | Kind::Tracker(_) => Some(self.net.new_local(to)),
            Kind::Dead => None,
        };
        self.tally.step(21, to);
        self.net.accepted(l, local, &mut self.q);
        let Some(local) = local else {
            return;
        };
        match &mut self.hosts[to].kind {
            Kind::Node(_) => {
                if let Some((node, mut cx)) = self.split(to) {
                    node.accepted(to, &mut cx);
                }
            }
            Kind::Script(s) => {
                let outs = s.on_open(now, local);
                self.script_outs(to, outs);
            }
            Kind::Tracker(_) | Kind::Dead => {}
        }
    }

    /// A segment of direction `dir` of link `l` arrives (unless it must wait), then the
    /// sender's close or window room follows.
    fn deliver(&mut self, l: usize, dir: usize) {
        let Some(arrival) = self.net.arrive(l, dir, &mut self.q) else {
            return;
        };
        self.receive(l, 1 - dir, arrival);
        let notice = self.net.delivered(l, dir, &mut self.q, &mut self.rng);
        self.notify(notice);
    }

    /// Bytes arrive at end `r` of link `l`: its application takes them.
    fn receive(&mut self, l: usize, r: usize, arrival: Arrival) {
        let now = self.q.now();
        let Arrival {
            dst,
            local,
            remote,
            data,
        } = arrival;
        let Some(mut buffers) = data else {
            return;
        };
        match &mut self.hosts[dst].kind {
            Kind::Node(_) => {
                for data in buffers.drain(..) {
                    if !self.net.is_open(l, r) {
                        break;
                    }
                    let conn = ConnId(local);
                    self.feed(dst, Input::Received { now, conn, data });
                }
            }
            Kind::Script(s) => {
                let mut outs = Vec::new();
                for data in buffers.drain(..) {
                    outs.extend(s.on_data(local, data));
                }
                self.tally.trace.mix(22);
                self.script_outs(dst, outs);
            }
            Kind::Tracker(t) => {
                let mut reply = Reply::Wait;
                for data in buffers.drain(..) {
                    reply = t.on_data(local, remote, &data, &mut self.rng);
                }
                self.tally.trace.mix(23);
                if let Reply::Answer(bytes) = reply {
                    let _ = self.net.send(dst, local, bytes, &mut self.q, &mut self.rng);
                    self.net.close(dst, local, &mut self.q);
                }
            }
            Kind::Dead => {}
        }
        self.net.recycle(buffers);
    }

    /// The segment on host `h`'s uplink has left: the sender hears how much was sent, and
    /// the seeder that leaves after so many copies may leave now.
    fn uplink_done(&mut self, h: usize) {
        let now = self.q.now();
        let SegmentEnd::Free(sent) = self.net.uplink_done(h) else {
            return;
        };
        if let Some(sent) = sent {
            let conn = ConnId(sent.local);
            let bytes = sent.bytes;
            self.feed(h, Input::Sent { now, conn, bytes });
        }
        if let (Some(copies), Some(rec)) = (self.sc.seeder_leaves_after, self.hosts[h].rec)
            && self.pop.records[rec].class == Class::Seeder
            && self.net.sent_bytes(h) as f64 >= copies * self.payload.size() as f64
            && self.tally.seeder_left_at.is_none()
        {
            self.tally.seeder_left_at = Some(now);
            self.pop.records[rec].gone = true;
            self.kill(h);
            self.tally.copies.note_zero();
            return;
        }
        self.net.kick(h, &mut self.q, &mut self.rng);
    }

    fn script_tick(&mut self, h: usize) {
        let now = self.q.now();
        let outs = match &mut self.hosts[h].kind {
            Kind::Script(s) => s.on_timer(now),
            _ => return,
        };
        self.script_outs(h, outs);
        self.q.at(
            now + Duration::from_secs(1),
            Ev::ScriptTick { host: h as u32 },
        );
    }

    fn script_outs(&mut self, h: usize, outs: Vec<ScriptOut>) {
        for o in outs {
            match o {
                ScriptOut::Send(local, data) => {
                    // A script may write after the close reached it: dropped.
                    let _ = self.net.send(h, local, data, &mut self.q, &mut self.rng);
                }
                ScriptOut::Close(local) => {
                    if let Kind::Script(s) = &mut self.hosts[h].kind {
                        s.on_closed(local);
                    }
                    self.net.close(h, local, &mut self.q);
                }
            }
        }
    }

    // ---- measuring --------------------------------------------------------------------

    fn sample(&mut self) {
        let now = self.q.now();
        if self.tally.seeder_left_at.is_some() {
            self.tally.copies.sample(SAMPLE);
        }
        if self.sc.free_riders > 0 {
            self.sample_slots();
        }
        if !self.sc.check_peers_every_event {
            for h in 0..self.hosts.len() {
                if let Some((node, mut cx)) = self.split(h) {
                    node.sampled_check(&mut cx);
                }
            }
        }
        self.q.at(now + SAMPLE, Ev::Sample);
    }

    /// Counts who holds the leechers' unchoke slots (the tit-for-tat experiment).
    fn sample_slots(&mut self) {
        for host in &self.hosts {
            let Kind::Node(node) = &host.kind else {
                continue;
            };
            if self.pop.records[node.rec].class != Class::Leecher {
                continue;
            }
            for (addr, interested) in node.unchoked() {
                let Some(other) = self.pop.at(addr.ip()) else {
                    continue;
                };
                let class = self.pop.records[other].class;
                let e = self.tally.slots_by_class.entry(class).or_default();
                e.0 += 1;
                e.1 += u64::from(interested);
            }
        }
    }
}
