//! Announcing to `udp://` trackers (BEP 15): the torrent's side of the session's pool of
//! UDP tracker clients. A tier mixing `http://` and `udp://` trackers is one tier (BEP 12):
//! the announcer picks the tracker, this file only carries the announce over UDP and takes
//! the answer back like an HTTP tracker's.

use super::Torrent;
use crate::api::TrackerEvent;
use crate::shared::Shared;
use crate::time::Duration;
use crate::tracker::udp::{UdpAnnounceResponse, UdpTrackerError};
use crate::tracker::{AnnounceJob, AnnounceParams, AnnounceResponse, TrackerIndex};

/// Shortest interval taken from a UDP tracker's answer: BEP 15 has no `min interval`, and a
/// tracker answering 0 or a few seconds must not make us announce in a loop.
pub(crate) const UDP_MIN_INTERVAL: Duration = Duration::from_secs(60);

impl Torrent {
    /// Sends the announce `job` over UDP; its answer comes back through
    /// [`Torrent::udp_announce_done`].
    pub(super) fn start_udp_announce(
        &mut self,
        sh: &mut Shared,
        job: AnnounceJob,
        params: AnnounceParams,
    ) {
        tracing::debug!(url = %job.url, event = ?job.event, "announcing over UDP");
        let owner = (self.id, job.tracker);
        let now = sh.now;
        if let Err(e) = sh
            .udp_trackers
            .announce(now, &job.url, params, owner, &mut sh.rng)
        {
            self.tracker_failed(sh, job.tracker, &job.url, TrackerEvent::Error(e));
        }
    }

    /// The end of a UDP announce: an answer is taken like an HTTP tracker's (its interval
    /// at least [`UDP_MIN_INTERVAL`]), a BEP 15 `error` is shown like a `failure reason`.
    pub(crate) fn udp_announce_done(
        &mut self,
        sh: &mut Shared,
        tracker: TrackerIndex,
        url: &str,
        result: Result<UdpAnnounceResponse, UdpTrackerError>,
    ) {
        match result {
            Ok(answer) => {
                let mut response = AnnounceResponse::from(answer);
                response.interval = Some(
                    response
                        .interval
                        .unwrap_or(crate::tracker::DEFAULT_INTERVAL)
                        .max(UDP_MIN_INTERVAL),
                );
                self.tracker_answered(sh, tracker, url, response);
            }
            Err(UdpTrackerError::Refused(message)) => {
                self.tracker_failed(sh, tracker, url, TrackerEvent::Failure(message));
            }
            Err(e) => self.tracker_failed(sh, tracker, url, TrackerEvent::Error(e.to_string())),
        }
    }

    /// True while a UDP announce of this torrent is outstanding (`stopped` ones included).
    pub(crate) fn udp_announcing(&self, sh: &Shared) -> bool {
        let id = self.id;
        sh.udp_trackers.is_waiting(|(t, _)| *t == id)
    }

    /// Shutdown: UDP announces in flight are forgotten (the `stopped` ones follow).
    pub(super) fn cancel_udp_announces(&mut self, sh: &mut Shared) {
        let id = self.id;
        sh.udp_trackers.cancel(|(t, _)| *t == id);
    }
}
