//! Checking existing data: every piece hashed as it is on disk before the torrent starts
//! (for `seed`, and whenever no resume data says what is there).

use super::{Op, State, Torrent};
use crate::api::{Action, DiskResult, Event};
use crate::bitfield::Bitfield;
use crate::picker::Picker;
use crate::shared::Shared;

/// Pieces being hashed at once.
const WINDOW: u32 = 8;

#[derive(Debug)]
pub(super) struct Check {
    next: u32,
    in_flight: u32,
    have: Bitfield,
    wanted: Bitfield,
}

impl Torrent {
    pub(super) fn start_check(&mut self, sh: &mut Shared, wanted: Bitfield) {
        self.state = State::Checking;
        let n = self.layout.num_pieces() as usize;
        self.check = Some(Check {
            next: 0,
            in_flight: 0,
            have: Bitfield::new(n),
            wanted,
        });
        self.issue_checks(sh);
    }

    fn issue_checks(&mut self, sh: &mut Shared) {
        let n = self.layout.num_pieces();
        loop {
            let Some(check) = self.check.as_mut() else {
                return;
            };
            if check.in_flight >= WINDOW || check.next >= n {
                break;
            }
            let piece = check.next;
            check.next += 1;
            check.in_flight += 1;
            let Some(expected) = self.meta.piece_hash(piece) else {
                continue;
            };
            let op = sh.op(self.id);
            self.ops.insert(op, Op::Check { piece });
            let spans = self.layout.spans(piece, 0, self.layout.piece_len(piece));
            sh.action(Action::Verify {
                op,
                torrent: self.id,
                piece,
                spans,
                expected,
            });
        }
        let done = self
            .check
            .as_ref()
            .is_some_and(|c| c.next >= n && c.in_flight == 0);
        if done && let Some(check) = self.check.take() {
            sh.event(Event::Checked {
                torrent: self.id,
                have: check.have.count_ones() as u32,
                total: self.layout.num_pieces(),
            });
            let mut rng = sh.rng.fork();
            self.picker = Picker::new(
                &self.layout,
                &check.have,
                &check.wanted,
                sh.config.picker.clone(),
                &mut rng,
            );
            self.after_check(sh);
        }
    }

    pub(super) fn check_done(&mut self, sh: &mut Shared, piece: u32, result: DiskResult) {
        let Some(check) = self.check.as_mut() else {
            return;
        };
        check.in_flight -= 1;
        match result {
            DiskResult::Ok => {
                check.have.set(piece as usize);
            }
            DiskResult::HashMismatch => {}
            DiskResult::Error(e) => {
                tracing::warn!(piece, "cannot check piece: {}", e.message);
            }
            DiskResult::Data(_) => {}
        }
        self.issue_checks(sh);
    }

    /// The torrent knows what it has: start downloading or seeding.
    pub(super) fn after_check(&mut self, sh: &mut Shared) {
        self.state = State::Downloading;
        if self.picker.is_complete() {
            self.completed(sh);
        }
        self.connect_peers(sh);
    }
}
