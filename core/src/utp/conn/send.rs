//! The send path: the windows, pacing, packet framing, first transmissions, resends of
//! lost packets, retransmission timeouts and MTU probes.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use super::{
    AckDue, Conn, LOSS_INTERVAL, MAX_OUTSTANDING, MAX_SACK_BYTES, MIN_BURST, OutPacket, Outbox,
    PACING_GRANULARITY, State,
};
use crate::time::Instant;
use crate::utp::packet::{self, HEADER_LEN, Header, PacketType};
use crate::utp::seq::Seq;
use crate::utp::{CloseReason, Transmit, UtpEvent};

impl Conn {
    /// Resends packet `idx`, just found lost, if the pacer lets a packet leave now;
    /// otherwise it waits its turn in `send_resends`, so that losses (a burst of them
    /// acknowledged at once) never make a burst the pacer would not.
    pub(super) fn resend_lost(&mut self, idx: usize, now: Instant, out: &mut Outbox) {
        if self.paced(now) {
            self.transmit(idx, now, out);
            return;
        }
        if let Some(Some(p)) = self.outbuf.get_mut(idx)
            && !p.need_resend
        {
            p.need_resend = true;
            self.in_flight -= p.payload.len();
            self.to_resend += 1;
        }
    }

    /// Full packets are `size` bytes from now on (the path MTU search moved its floor).
    pub(super) fn set_packet_size(&mut self, size: usize) {
        self.mss = size - HEADER_LEN;
        self.ledbat.set_mss(self.mss);
    }

    /// Packet `s` was found lost (and is about to be resent): a path MTU probe's loss
    /// teaches the search; any other's is congestion.
    pub(super) fn lost(&mut self, s: Seq, now: Instant) {
        if self.mtu.probe().is_some_and(|(seq, _)| seq == s) {
            self.mtu.probe_lost();
        } else {
            self.on_loss(s, now);
        }
    }

    /// Packet `s` was lost: halve the window, once per window of packets and at most every
    /// 100 ms.
    fn on_loss(&mut self, s: Seq, now: Instant) {
        if s.after(self.loss_seq) && now >= self.next_loss_cut {
            self.ledbat.on_loss();
            self.loss_seq = self.seq_nr.minus(1);
            self.next_loss_cut = now + LOSS_INTERVAL;
        }
    }

    pub(super) fn on_rto(&mut self, now: Instant, out: &mut Outbox) {
        if self.live == 0 {
            return;
        }
        self.rto_expirations += 1;
        // Only a path MTU probe was outstanding: it was too large, not a sign of
        // congestion or of a dead peer. Resend its payload unpadded.
        if let Some((probe, _)) = self.mtu.probe()
            && self.live == 1
            && let Some(idx) = self.outbuf.iter().position(Option::is_some)
            && self.acked.plus(1 + idx as u16) == probe
        {
            self.mtu.probe_lost();
            self.transmit(idx, now, out);
            if !probe.before(self.fast_resend_from) {
                self.fast_resend_from = probe.next();
            }
            self.rto_deadline = Some(now + self.rtt.rto());
            return;
        }
        self.mtu.probe_abandoned();
        self.timeouts += 1;
        self.rtt.on_timeout();
        let front_is_fin = self
            .outbuf
            .front()
            .and_then(Option::as_ref)
            .is_some_and(|p| p.ty == PacketType::Fin);
        let limit = match self.state {
            State::SynSent => self.cfg.syn_retries,
            _ if front_is_fin => self.cfg.fin_retries,
            _ => self.cfg.max_retransmits,
        };
        if self.timeouts > limit {
            let reason = if self.state == State::SynSent {
                CloseReason::ConnectTimedOut
            } else {
                CloseReason::TimedOut
            };
            self.die(reason, out);
            return;
        }
        // Full packets timing out again and again: perhaps the path no longer carries
        // our datagrams' size (a black hole). Later packets go smaller; the search
        // resumes below the old size. A packet sent before an earlier shrink (larger) or
        // a short one says nothing about the current size.
        let front_is_full = self
            .outbuf
            .iter()
            .flatten()
            .next()
            .is_some_and(|p| p.ty == PacketType::Data && p.payload.len() == self.mss);
        if front_is_full
            && self
                .timeouts
                .is_multiple_of(crate::utp::mtu::BLACK_HOLE_TIMEOUTS)
        {
            let floor = self.mtu.black_hole();
            self.set_packet_size(floor);
        }
        // Everything in flight is presumed lost; start again from one packet.
        for p in self.outbuf.iter_mut().flatten() {
            if !p.need_resend {
                p.need_resend = true;
                self.in_flight -= p.payload.len();
                self.to_resend += 1;
            }
        }
        self.ledbat.on_timeout(false);
        self.loss_seq = self.seq_nr.minus(1);
        self.dup_acks = 0;
        if let Some(idx) = self.outbuf.iter().position(Option::is_some) {
            self.transmit(idx, now, out);
            let s = self.acked.plus(1 + idx as u16);
            if !s.before(self.fast_resend_from) {
                self.fast_resend_from = s.next();
            }
        }
        self.rto_deadline = Some(now + self.rtt.rto());
    }

    fn send_window(&self) -> usize {
        self.ledbat.window().min(self.peer_wnd)
    }

    pub(super) fn header(&self, ty: PacketType, seq_nr: Seq, now: Instant) -> Header {
        Header {
            ty,
            conn_id: if ty == PacketType::Syn {
                self.recv_id
            } else {
                self.send_id
            },
            timestamp_us: packet::micros(now),
            timestamp_diff_us: self.reply_micro,
            wnd_size: self.adv_window(),
            seq_nr,
            ack_nr: if ty == PacketType::Syn {
                Seq(0)
            } else {
                self.ack_nr
            },
        }
    }

    /// Encodes and queues a packet, with a selective ACK if one is due and fits, padded to
    /// `pad_to` bytes (a path MTU probe; 0: no padding).
    fn emit(&mut self, h: Header, payload: &[u8], pad_to: usize, now: Instant, out: &mut Outbox) {
        let room = self.mtu.floor().saturating_sub(HEADER_LEN + payload.len());
        let sack_len = if h.ty == PacketType::Syn {
            0
        } else {
            self.sack_len(room)
        };
        let mask = self.sack_mask(sack_len);
        let sack = (sack_len > 0).then(|| &mask[..sack_len]);
        let data = packet::encode_padded(&h, sack, payload, pad_to);
        self.pacer.spend(data.len());
        out.transmits.push_back(Transmit {
            to: self.addr,
            data,
        });
        self.last_sent = now;
        self.packets_sent += 1;
        if h.ty != PacketType::Syn && h.ty != PacketType::Reset {
            self.ack_due = AckDue::No;
            self.unacked_bytes = 0;
        }
    }

    pub(super) fn push_packet(&mut self, ty: PacketType, payload: Bytes) {
        self.outbuf.push_back(Some(OutPacket {
            ty,
            payload,
            sent_at: Instant::ZERO,
            transmissions: 0,
            need_resend: false,
            probe: false,
        }));
        self.live += 1;
        self.seq_nr = self.seq_nr.next();
    }

    /// Sends (or resends) `outbuf[idx]`.
    pub(super) fn transmit(&mut self, idx: usize, now: Instant, out: &mut Outbox) {
        let seq = self.acked.plus(1 + idx as u16);
        let Some(Some(p)) = self.outbuf.get_mut(idx) else {
            return;
        };
        if p.transmissions == 0 || p.need_resend {
            self.in_flight += p.payload.len();
        }
        if p.need_resend {
            self.to_resend -= 1;
        }
        if p.transmissions > 0 {
            self.retransmits += 1;
        }
        // A probe is padded on its first transmission only: a resend must arrive.
        let pad_to = match self.mtu.probe() {
            Some((s, size)) if p.probe && p.transmissions == 0 && s == seq => size,
            _ => 0,
        };
        p.transmissions += 1;
        p.need_resend = false;
        p.sent_at = now;
        let ty = p.ty;
        let payload = p.payload.clone();
        let h = self.header(ty, seq, now);
        self.emit(h, &payload, pad_to, now, out);
    }

    /// Takes `n` bytes from the front of `unsent` (without copying when they lie in one
    /// buffer).
    fn take_unsent(&mut self, n: usize) -> Bytes {
        self.unsent_len -= n;
        if let Some(front) = self.unsent.front_mut()
            && front.len() >= n
        {
            let b = front.split_to(n);
            if front.is_empty() {
                self.unsent.pop_front();
            }
            return b;
        }
        let mut buf = BytesMut::with_capacity(n);
        while buf.len() < n {
            let Some(front) = self.unsent.front_mut() else {
                break;
            };
            let k = front.len().min(n - buf.len());
            buf.extend_from_slice(&front[..k]);
            front.advance(k);
            if front.is_empty() {
                self.unsent.pop_front();
            }
        }
        buf.freeze()
    }

    /// Sends whatever the windows allow: resends after a timeout, new data, the FIN, and
    /// an acknowledgement if one is due and nothing else carried it.
    pub(super) fn flush(&mut self, now: Instant, out: &mut Outbox) {
        if self.state == State::Connected {
            self.update_pacer(now);
            self.pace_at = None;
            self.send_resends(now, out);
            self.send_new(now, out);
        }
        if let AckDue::By(t) = self.ack_due
            && t <= now
            && self.state != State::SynSent
        {
            let h = self.header(PacketType::State, self.seq_nr, now);
            self.emit(h, &[], 0, now, out);
        }
        if self.live > 0 && self.rto_deadline.is_none() {
            self.rto_deadline = Some(now + self.rtt.rto());
        }
    }

    /// The pacing rate and burst from the window and the round-trip time: twice the
    /// window per round trip in slow start, 1.25 times after (Linux TCP's factors); a
    /// burst of [`PACING_GRANULARITY`] at that rate, within [`MIN_BURST`] datagrams and
    /// [`UtpConfig::max_burst`](crate::utp::UtpConfig::max_burst). No rate before the first
    /// round-trip sample.
    fn update_pacer(&mut self, now: Instant) {
        let packet = self.mss + HEADER_LEN;
        let most = self.cfg.max_burst * packet;
        let rate = self.rtt.rtt().map(|rtt| {
            let rtt_us = rtt.as_micros().max(1);
            let (num, den) = if self.ledbat.in_slow_start() {
                (2, 1)
            } else {
                (5, 4)
            };
            let r = self.ledbat.window() as u128 * num * 1_000_000 / (den * rtt_us);
            r.min(u128::from(u64::MAX)) as u64
        });
        let burst = rate.map_or(most, |r| {
            let b = u128::from(r) * PACING_GRANULARITY.as_nanos() / 1_000_000_000;
            (b.min(most as u128) as usize)
                .max(MIN_BURST * packet)
                .min(most)
        });
        self.pacer.update(now, rate, burst);
    }

    /// Whether the pacer lets a data packet leave now; if not, when it will.
    fn paced(&mut self, now: Instant) -> bool {
        if !self.cfg.pacing || self.pacer.ready() {
            return true;
        }
        self.pace_at = Some(self.pacer.ready_at(now));
        false
    }

    fn send_resends(&mut self, now: Instant, out: &mut Outbox) {
        if self.to_resend == 0 {
            return;
        }
        for idx in 0..self.outbuf.len() {
            if self.to_resend == 0 {
                break;
            }
            let Some(Some(p)) = self.outbuf.get(idx) else {
                continue;
            };
            if !p.need_resend {
                continue;
            }
            if self.in_flight > 0 && self.in_flight + p.payload.len() > self.send_window() {
                break;
            }
            if !self.paced(now) {
                break;
            }
            self.transmit(idx, now, out);
        }
    }

    fn send_new(&mut self, now: Instant, out: &mut Outbox) {
        if self.to_resend > 0 {
            return;
        }
        if self.live == 0
            && let Some(since) = self.idle_since.take()
            && self.unsent_len > 0
        {
            // Idle for a while: the path may have changed; decay a third per timeout.
            let rto = self.rtt.base_rto().max(Duration::from_millis(1));
            let periods = (now.saturating_duration_since(since).as_nanos() / rto.as_nanos()).min(8);
            for _ in 0..periods {
                self.ledbat.on_timeout(true);
            }
        }
        let mut sent = 0;
        while self.unsent_len > 0 && self.fin_seq.is_none() && self.outbuf.len() < MAX_OUTSTANDING {
            let sack = self.sack_len(MAX_SACK_BYTES + 2);
            let room = self.mss - if sack > 0 { sack + 2 } else { 0 };
            let mut size = self.unsent_len.min(room);
            if self.cfg.nagle && size < room && self.in_flight > 0 && !self.fin_wanted {
                break;
            }
            let window = self.send_window();
            if self.in_flight == 0 && window > 0 && window < size {
                // The peer has room for less than a packet: send what fits.
                size = window;
            }
            if self.in_flight + size > window {
                let probe = self.in_flight == 0 && self.peer_wnd < size;
                if !probe {
                    break;
                }
                if !self.probe_allowed {
                    if self.probe_at.is_none() {
                        self.probe_at = Some(now + self.rtt.rto());
                    }
                    break;
                }
                self.probe_allowed = false;
            }
            if !self.paced(now) {
                break;
            }
            // A full packet with more to come may be a path MTU probe, when the window
            // holds a few packets and nothing awaits a resend (so the probe's fate stands
            // out from congestion losses).
            let probe = self.mtu.next_probe().filter(|_| {
                size == room
                    && self.unsent_len > size
                    && self.to_resend == 0
                    && window >= 3 * (self.mss + HEADER_LEN)
            });
            let payload = self.take_unsent(size);
            if let Some(probe_size) = probe {
                self.mtu.sent_probe(self.seq_nr, probe_size);
            }
            self.push_packet(PacketType::Data, payload);
            if let Some(Some(p)) = self.outbuf.back_mut() {
                p.probe = probe.is_some();
            }
            self.transmit(self.outbuf.len() - 1, now, out);
            sent += size;
        }
        if sent > 0 && self.attached {
            out.events.push_back(UtpEvent::Sent {
                stream: self.id,
                bytes: sent,
            });
        }
        if self.fin_wanted
            && self.unsent_len == 0
            && self.fin_seq.is_none()
            && self.outbuf.len() < MAX_OUTSTANDING
        {
            self.fin_seq = Some(self.seq_nr);
            self.push_packet(PacketType::Fin, Bytes::new());
            self.transmit(self.outbuf.len() - 1, now, out);
        }
    }
}
