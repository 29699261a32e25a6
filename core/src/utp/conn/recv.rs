//! The receive path: incoming packets, acknowledgements (cumulative and selective) of what
//! we sent, reassembly and delivery of what the peer sent, and the SACK we advertise.

use bytes::Bytes;

use super::{
    AckDue, BOGUS_DELAY_SAMPLE, Conn, DUP_ACK_LIMIT, MAX_FAST_RESENDS, MAX_OUTSTANDING,
    MAX_SACK_BYTES, OutPacket, Outbox, State,
};
use crate::time::Instant;
use crate::utp::packet::{self, Packet, PacketType};
use crate::utp::seq::Seq;
use crate::utp::{CloseReason, UtpEvent};

impl Conn {
    // Input.

    /// A packet for this connection (any type but SYN).
    pub fn handle_packet(&mut self, now: Instant, pkt: &Packet<'_>, out: &mut Outbox) {
        if self.state == State::Done {
            return;
        }
        let h = pkt.header;
        match h.ty {
            PacketType::Syn => {
                // The initiator did not get our acknowledgement: send it again.
                if self.state == State::SynRecv && h.seq_nr == self.ack_nr {
                    self.ack_due = AckDue::By(now);
                    self.flush(now, out);
                }
                return;
            }
            PacketType::Reset => {
                // Only a reset that echoes a sequence number we could have sent counts.
                if h.ack_nr
                    .within(self.acked.minus(MAX_OUTSTANDING as u16), self.seq_nr)
                {
                    self.die(CloseReason::Reset, out);
                }
                return;
            }
            PacketType::Data | PacketType::Fin | PacketType::State => {}
        }
        // An acknowledgement of something we never sent, or far older than anything
        // outstanding, is not from our peer (or hopelessly late): ignore the packet.
        let last_sent = self.seq_nr.minus(1);
        if h.ack_nr.after(last_sent) || h.ack_nr.before(self.acked.minus(MAX_OUTSTANDING as u16)) {
            return;
        }
        match self.state {
            State::SynSent => {
                if h.ack_nr != last_sent {
                    return;
                }
                self.state = State::Connected;
                self.ack_nr = h.seq_nr.minus(1);
                if self.attached {
                    out.events
                        .push_back(UtpEvent::Connected { stream: self.id });
                }
            }
            State::SynRecv => {
                // Only the initiator answering our `ST_STATE` connects: it acknowledges
                // exactly the sequence number before our first (nothing of ours is in
                // flight yet). Anything else within the window check above is a stray
                // packet for the id, such as another connection's acknowledgement.
                if h.ack_nr != last_sent {
                    return;
                }
                self.state = State::Connected;
                self.half_open_deadline = None;
                self.attached = true;
                out.events.push_back(UtpEvent::Incoming {
                    stream: self.id,
                    addr: self.addr,
                });
            }
            State::Connected | State::Done => {}
        }
        // A data packet beyond what we can buffer says nothing we can trust either.
        if matches!(h.ty, PacketType::Data | PacketType::Fin)
            && h.seq_nr.after(self.ack_nr)
            && usize::from(h.seq_nr.since(self.ack_nr)) > self.max_reorder
        {
            return;
        }

        self.note_timestamp(h.timestamp_us, now);
        let delay_sample = (h.timestamp_diff_us != 0 && h.timestamp_diff_us != BOGUS_DELAY_SAMPLE)
            .then(|| self.our_delay.add_sample(h.timestamp_diff_us, now));
        self.peer_wnd = h.wnd_size as usize;
        if self.peer_wnd >= self.mss {
            self.probe_at = None;
            self.probe_allowed = false;
        }

        // Acknowledgements.
        let in_flight_before = self.in_flight;
        let mut acked = Acked::default();
        if h.ack_nr.after(self.acked) {
            let n = h.ack_nr.since(self.acked);
            for _ in 0..n {
                let s = self.acked.next();
                if let Some(Some(p)) = self.outbuf.pop_front() {
                    self.account_acked(s, p, now, &mut acked);
                }
                self.acked = s;
            }
            self.dup_acks = 0;
        } else if h.ack_nr == self.acked && h.ty == PacketType::State && self.live > 0 {
            self.dup_acks += 1;
        }
        if let Some(mask) = pkt.sack {
            self.selective_ack(h.ack_nr, mask, now, &mut acked, out);
        }
        // Selectively acknowledged packets at the front are acknowledged for good.
        while let Some(None) = self.outbuf.front() {
            self.outbuf.pop_front();
            self.acked = self.acked.next();
        }
        if self.fast_resend_from.before(self.acked.next()) {
            self.fast_resend_from = self.acked.next();
        }
        if acked.bytes > 0 || acked.packets > 0 {
            self.rtt.reset_backoff();
            self.timeouts = 0;
            if self.close_deadline.is_some() {
                self.close_deadline = Some(now + self.close_timeout());
            }
            self.rto_deadline = (self.live > 0).then(|| now + self.rtt.rto());
            if self.live == 0 {
                self.idle_since = Some(now);
            }
        } else if self.live > 0
            && self
                .outbuf
                .front()
                .and_then(Option::as_ref)
                .is_some_and(|p| (h.wnd_size as usize) < p.payload.len())
        {
            // The peer is alive and full: what it drops is not a dead connection.
            self.timeouts = 0;
        }
        if self.dup_acks >= DUP_ACK_LIMIT {
            self.dup_acks = 0;
            let s = self.acked.next();
            let resendable = self
                .outbuf
                .front()
                .and_then(Option::as_ref)
                .is_some_and(|p| !p.need_resend);
            if resendable && !s.before(self.fast_resend_from) {
                self.fast_resend_from = s.next();
                self.lost(s, now);
                self.resend_lost(0, now, out);
            }
        }
        if let Some(sample) = delay_sample
            && acked.bytes > 0
            && in_flight_before > 0
        {
            let delay = self.our_delay.current().unwrap_or(sample);
            let delay = u64::from(delay).min(acked.min_rtt_us) as u32;
            self.ledbat.on_ack(acked.bytes, delay, in_flight_before);
        }
        if let Some(fin) = self.fin_seq
            && !self.fin_acked
            && !fin.after(self.acked)
        {
            self.fin_acked = true;
            if !self.got_eof {
                self.linger_deadline = Some(now + self.cfg.linger);
            }
        }

        // Payload.
        match h.ty {
            PacketType::Data => self.receive_data(now, h.seq_nr, pkt.payload, out),
            PacketType::Fin => self.receive_fin(now, h.seq_nr, out),
            _ => {}
        }
        self.flush(now, out);
        self.check_finished();
    }

    pub(super) fn note_timestamp(&mut self, timestamp_us: u32, now: Instant) {
        if timestamp_us == 0 {
            return;
        }
        let reply = packet::micros(now).wrapping_sub(timestamp_us);
        self.reply_micro = reply;
        let before = self.their_delay.base();
        self.their_delay.add_sample(reply, now);
        if let (Some(before), Some(after)) = (before, self.their_delay.base()) {
            // Their base delay fell: their clock runs slow against ours, which makes ours
            // look as if it grew. Raise our base by as much (up to 10 ms at a time).
            let change = after.wrapping_sub(before) as i32;
            if (-10_000..0).contains(&change) && self.our_delay.base().is_some() {
                self.our_delay.shift(change.unsigned_abs());
            }
        }
    }

    fn account_acked(&mut self, seq: Seq, p: OutPacket, now: Instant, acked: &mut Acked) {
        self.live -= 1;
        if p.probe && self.mtu.probe().is_some_and(|(s, _)| s == seq) {
            if p.transmissions == 1 {
                // The padded first transmission arrived: the path carries that size.
                let floor = self.mtu.probe_acked();
                self.set_packet_size(floor);
            } else {
                self.mtu.probe_lost();
            }
        }
        let len = p.payload.len();
        if p.need_resend {
            self.to_resend -= 1;
        } else {
            self.in_flight -= len;
        }
        let rtt = now.saturating_duration_since(p.sent_at);
        // Karn's rule, and more: a packet a timeout presumed lost says nothing about the
        // round trip either (its acknowledgement may come after a long recovery).
        if p.transmissions == 1 && !p.need_resend {
            self.rtt.sample(rtt);
        }
        acked.min_rtt_us = acked.min_rtt_us.min(rtt.as_micros() as u64);
        acked.bytes += len;
        acked.packets += 1;
        self.bytes_acked += len as u64;
    }

    /// A selective ACK: bit `i` of `mask` (least significant bit of each byte first) says
    /// whether `base + 2 + i` arrived; `base + 1` is missing. Acknowledges what arrived and
    /// resends packets with at least three acknowledged packets after them.
    fn selective_ack(
        &mut self,
        base: Seq,
        mask: &[u8],
        now: Instant,
        acked: &mut Acked,
        out: &mut Outbox,
    ) {
        let first = base.plus(2);
        let bits = mask.len() * 8;
        let bit = |i: usize| mask[i / 8] & (1 << (i % 8)) != 0;
        // Only numbers we sent and that are not acknowledged yet mean anything.
        let outstanding = |s: Seq, acked_to: Seq, next: Seq| s.after(acked_to) && s.before(next);
        for i in 0..bits {
            let s = first.plus(i as u16);
            if !s.before(self.seq_nr) {
                break;
            }
            if !bit(i) || !outstanding(s, self.acked, self.seq_nr) {
                continue;
            }
            let idx = usize::from(s.since(self.acked.next()));
            if let Some(p) = self.outbuf.get_mut(idx).and_then(Option::take) {
                self.account_acked(s, p, now, acked);
            }
        }
        // From the top down: a packet still outstanding with three or more acknowledged
        // after it is lost. `base + 1` (index -1) is the first candidate.
        let mut after = 0u32;
        let mut lost: Vec<Seq> = Vec::new();
        for i in (0..=bits).rev() {
            let s = base.plus(1 + i as u16);
            if !s.before(self.seq_nr) || !s.after(self.acked) {
                continue;
            }
            if i > 0 && bit(i - 1) {
                after += 1;
                continue;
            }
            if after >= DUP_ACK_LIMIT && !s.before(self.fast_resend_from) {
                let idx = usize::from(s.since(self.acked.next()));
                if self
                    .outbuf
                    .get(idx)
                    .and_then(Option::as_ref)
                    .is_some_and(|p| !p.need_resend)
                {
                    lost.push(s);
                }
            }
        }
        // Oldest first, a few per acknowledgement.
        for &s in lost.iter().rev().take(MAX_FAST_RESENDS) {
            self.lost(s, now);
            let idx = usize::from(s.since(self.acked.next()));
            self.resend_lost(idx, now, out);
            if s.after(self.fast_resend_from) || s == self.fast_resend_from {
                self.fast_resend_from = s.next();
            }
        }
    }

    fn receive_data(&mut self, now: Instant, seq: Seq, payload: &[u8], out: &mut Outbox) {
        if self.got_eof {
            self.ack_due = AckDue::By(now);
            return;
        }
        if self.eof.is_some_and(|eof| !seq.before(eof)) {
            return;
        }
        let expected = self.ack_nr.next();
        if seq == expected {
            self.reorder.pop_front();
            self.ack_nr = seq;
            self.deliver(Bytes::copy_from_slice(payload), out);
            let mut drained = false;
            while let Some(Some(_)) = self.reorder.front() {
                if let Some(Some(b)) = self.reorder.pop_front() {
                    self.reorder_bytes -= b.len();
                    self.ack_nr = self.ack_nr.next();
                    self.deliver(b, out);
                    drained = true;
                }
            }
            self.unacked_bytes += payload.len();
            if drained || !self.reorder.is_empty() || self.unacked_bytes >= 2 * self.mss {
                self.ack_due = AckDue::By(now);
            } else {
                let by = now + self.cfg.delayed_ack;
                self.ack_due = match self.ack_due {
                    AckDue::By(t) if t < by => AckDue::By(t),
                    _ => AckDue::By(by),
                };
            }
            self.maybe_eof(out);
        } else if seq.after(expected) {
            // Out of order: keep it (within bounds) and tell the peer at once.
            self.ack_due = AckDue::By(now);
            let off = usize::from(seq.since(expected));
            if off >= self.max_reorder {
                return;
            }
            if self.reorder.get(off).is_some_and(Option::is_some) {
                return;
            }
            if self.reorder_bytes + payload.len() > self.cfg.recv_window {
                return;
            }
            if self.reorder.len() <= off {
                self.reorder.resize(off + 1, None);
            }
            self.reorder[off] = Some(Bytes::copy_from_slice(payload));
            self.reorder_bytes += payload.len();
        } else {
            // Already delivered: our acknowledgement was lost.
            self.ack_due = AckDue::By(now);
        }
    }

    fn receive_fin(&mut self, now: Instant, seq: Seq, out: &mut Outbox) {
        self.ack_due = AckDue::By(now);
        if self.eof.is_some() || !seq.after(self.ack_nr) {
            return;
        }
        // Nothing comes after a FIN: drop anything held beyond it.
        let off = usize::from(seq.since(self.ack_nr.next()));
        while self.reorder.len() > off {
            if let Some(Some(b)) = self.reorder.pop_back() {
                self.reorder_bytes -= b.len();
            }
        }
        self.eof = Some(seq);
        self.maybe_eof(out);
    }

    /// Everything up to the peer's FIN arrived: the stream is finished for the owner, and
    /// we answer with our own FIN.
    fn maybe_eof(&mut self, out: &mut Outbox) {
        if self.got_eof || self.eof != Some(self.ack_nr.next()) {
            return;
        }
        self.ack_nr = self.ack_nr.next();
        self.got_eof = true;
        self.reorder.clear();
        self.reorder_bytes = 0;
        if self.attached {
            out.events.push_back(UtpEvent::Closed {
                stream: self.id,
                reason: CloseReason::Finished,
            });
            self.attached = false;
        }
        if !self.fin_wanted {
            self.unsent.clear();
            self.unsent_len = 0;
            self.fin_wanted = true;
        }
    }

    fn deliver(&mut self, data: Bytes, out: &mut Outbox) {
        self.bytes_received += data.len() as u64;
        if self.attached && !data.is_empty() {
            out.events.push_back(UtpEvent::Data {
                stream: self.id,
                data,
            });
        }
    }

    /// Our receive window: what we can still hold out of order.
    pub(super) fn adv_window(&self) -> u32 {
        self.cfg
            .recv_window
            .saturating_sub(self.reorder_bytes)
            .min(u32::MAX as usize) as u32
    }

    /// Bytes of selective ACK we would send now, given `room` bytes for it (its two
    /// header bytes included); 0 for none.
    pub(super) fn sack_len(&self, room: usize) -> usize {
        if self.reorder.len() <= 1 || room < 6 {
            return 0;
        }
        let bits = self.reorder.len() - 1;
        let want = bits
            .div_ceil(8)
            .next_multiple_of(4)
            .clamp(4, MAX_SACK_BYTES);
        want.min((room - 2) / 4 * 4)
    }

    /// The selective ACK bitmask of `len` bytes: bit `i` is `ack_nr + 2 + i`.
    pub(super) fn sack_mask(&self, len: usize) -> [u8; MAX_SACK_BYTES] {
        let mut mask = [0u8; MAX_SACK_BYTES];
        for (i, slot) in self.reorder.iter().skip(1).take(len * 8).enumerate() {
            if slot.is_some() {
                mask[i / 8] |= 1 << (i % 8);
            }
        }
        mask
    }
}

/// What one incoming packet acknowledged.
#[derive(Debug)]
struct Acked {
    bytes: usize,
    packets: usize,
    min_rtt_us: u64,
}

impl Default for Acked {
    fn default() -> Self {
        Acked {
            bytes: 0,
            packets: 0,
            min_rtt_us: u64::MAX,
        }
    }
}
