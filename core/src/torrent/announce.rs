//! Announcing to trackers over HTTP: the session's side of the `tracker` module. Each
//! announce is its own connection (`Connection: close`), its bytes built and parsed here.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::{State, Torrent};
use crate::api::{Event, Target, TrackerEvent};
use crate::id::ConnId;
use crate::shared::{Route, Shared};
use crate::time::Instant;
use crate::timer::earliest;
use crate::tracker::announce::announce_url;
use crate::tracker::http::{self, HttpError, HttpResponse, ResponseParser};
use crate::tracker::{
    AnnounceError, AnnounceEvent, AnnounceJob, AnnounceParams, AnnounceResponse, TrackerIndex,
    TrackerProtocol, protocol_of,
};

/// Largest tracker response body accepted.
const MAX_RESPONSE: usize = 2 << 20;
/// Peers asked for per announce.
const NUMWANT: u32 = 200;
/// Below this many connections, ask trackers for more peers as early as they allow.
const FEW_PEERS: usize = 5;

#[derive(Debug)]
pub(super) struct Request {
    tracker: TrackerIndex,
    url: String,
    request: Bytes,
    pub parser: ResponseParser,
    deadline: Instant,
}

impl Torrent {
    /// The `Announce` timer: tracker requests past their deadline fail, and the announces
    /// that are due start.
    pub(super) fn announce_due(&mut self, sh: &mut Shared) {
        let now = sh.now;
        let expired: Vec<ConnId> = self
            .trackers
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(c, _)| *c)
            .collect();
        for conn in expired {
            sh.close(conn);
            if let Some(req) = self.trackers.remove(&conn) {
                self.announce_failed(sh, &req, TrackerEvent::Error("timed out".into()));
            }
        }
        if self.stopping || self.state == State::Checking {
            return;
        }
        while let Some(job) = self.announcer.poll(now) {
            self.start_announce(sh, job);
        }
    }

    /// When the `Announce` timer must fire: the next announce due, or the first tracker
    /// request to time out. Asks the trackers for peers early when few are connected and
    /// none is left to dial.
    pub(super) fn announce_deadline(&mut self, now: Instant) -> Option<Instant> {
        let request = self.trackers.values().map(|r| r.deadline).min();
        if self.stopping || self.state == State::Checking {
            return request;
        }
        if self.peers.len() < FEW_PEERS && !self.peer_list.has_dialable(self.picker.is_complete()) {
            self.announcer.want_peers(now);
        }
        let next = Some(self.announcer.next_deadline()).filter(|&at| at != Instant::FAR_FUTURE);
        earliest(request, next)
    }

    pub(super) fn start_announce(&mut self, sh: &mut Shared, job: AnnounceJob) {
        let params = AnnounceParams {
            info_hash: self.meta.info_hash,
            peer_id: sh.peer_id,
            port: sh.config.listen_port,
            uploaded: self.uploaded,
            downloaded: self.downloaded,
            left: self.left(),
            event: job.event,
            numwant: Some(if job.event == AnnounceEvent::Stopped {
                0
            } else {
                NUMWANT
            }),
            key: sh.key,
            tracker_id: None,
        };
        if matches!(protocol_of(&job.url), Ok(TrackerProtocol::Udp)) {
            self.start_udp_announce(sh, job, params);
            return;
        }
        let url = announce_url(&job.url, &params);
        let request = match http::get(&url, &sh.config.user_agent) {
            Ok(r) => r,
            Err(e) => {
                sh.event(Event::Tracker {
                    torrent: self.id,
                    url: job.url.clone(),
                    event: TrackerEvent::Error(e.to_string()),
                });
                self.announcer.on_failure(sh.now, job.tracker, &mut sh.rng);
                return;
            }
        };
        let target = match request.host.parse::<IpAddr>() {
            Ok(ip) => Target::Addr(SocketAddr::new(ip, request.port)),
            Err(_) => Target::Host {
                host: request.host.clone(),
                port: request.port,
            },
        };
        tracing::debug!(url = %job.url, event = ?job.event, "announcing");
        let conn = sh.connect(Route::Tracker(self.id), target);
        let deadline = sh.now + sh.config.tracker_timeout;
        let parser = ResponseParser::new(MAX_RESPONSE);
        self.trackers.insert(
            conn,
            Request {
                tracker: job.tracker,
                url: job.url,
                request: request.bytes,
                parser,
                deadline,
            },
        );
    }

    pub(super) fn tracker_connected(&mut self, sh: &mut Shared, conn: ConnId) {
        if let Some(req) = self.trackers.get(&conn) {
            sh.send(conn, req.request.clone());
        }
    }

    /// After bytes were fed to the response parser.
    pub(super) fn tracker_progress(
        &mut self,
        sh: &mut Shared,
        conn: ConnId,
        result: Result<Option<HttpResponse>, HttpError>,
    ) {
        match result {
            Ok(None) => {}
            Ok(Some(response)) => {
                sh.close(conn);
                if let Some(req) = self.trackers.remove(&conn) {
                    self.announce_answered(sh, &req, response);
                }
            }
            Err(e) => {
                sh.close(conn);
                if let Some(req) = self.trackers.remove(&conn) {
                    self.announce_failed(sh, &req, TrackerEvent::Error(e.to_string()));
                }
            }
        }
    }

    pub(super) fn tracker_closed(&mut self, sh: &mut Shared, conn: ConnId, reason: String) {
        let Some(mut req) = self.trackers.remove(&conn) else {
            return;
        };
        match req.parser.finish() {
            Ok(response) => self.announce_answered(sh, &req, response),
            Err(HttpError::Truncated) => {
                self.announce_failed(sh, &req, TrackerEvent::Error(reason))
            }
            Err(e) => self.announce_failed(sh, &req, TrackerEvent::Error(e.to_string())),
        }
    }

    fn announce_answered(&mut self, sh: &mut Shared, req: &Request, response: HttpResponse) {
        if response.status != 200 {
            let msg = format!("HTTP {} {}", response.status, response.reason);
            self.announce_failed(sh, req, TrackerEvent::Error(msg));
            return;
        }
        match AnnounceResponse::parse(&response.body, sh.config.max_known_peers) {
            Ok(r) => self.tracker_answered(sh, req.tracker, &req.url, r),
            Err(AnnounceError::Failure(msg)) => {
                self.announce_failed(sh, req, TrackerEvent::Failure(msg))
            }
            Err(e @ AnnounceError::Malformed(_)) => {
                self.announce_failed(sh, req, TrackerEvent::Error(e.to_string()))
            }
        }
    }

    /// A tracker (HTTP or UDP) answered: the schedule moves on, its peers are added.
    pub(super) fn tracker_answered(
        &mut self,
        sh: &mut Shared,
        tracker: TrackerIndex,
        url: &str,
        r: AnnounceResponse,
    ) {
        self.announcer.on_success(sh.now, tracker, &r);
        if let Some(w) = &r.warning {
            sh.event(Event::Tracker {
                torrent: self.id,
                url: url.to_owned(),
                event: TrackerEvent::Warning(w.clone()),
            });
        }
        let interval = r.interval.unwrap_or(crate::tracker::DEFAULT_INTERVAL);
        sh.event(Event::Tracker {
            torrent: self.id,
            url: url.to_owned(),
            event: TrackerEvent::Announced {
                peers: r.peers.len(),
                interval,
            },
        });
        if !self.stopping {
            for addr in r.peers {
                self.peer_list.add(sh.now, addr, false);
            }
            self.connect_peers(sh);
        }
    }

    fn announce_failed(&mut self, sh: &mut Shared, req: &Request, event: TrackerEvent) {
        self.tracker_failed(sh, req.tracker, &req.url, event);
    }

    /// An announce to `tracker` (HTTP or UDP) failed: the tier moves on, the user is told.
    pub(super) fn tracker_failed(
        &mut self,
        sh: &mut Shared,
        tracker: TrackerIndex,
        url: &str,
        event: TrackerEvent,
    ) {
        tracing::debug!(url = %url, ?event, "announce failed");
        self.announcer.on_failure(sh.now, tracker, &mut sh.rng);
        sh.event(Event::Tracker {
            torrent: self.id,
            url: url.to_owned(),
            event,
        });
    }
}
