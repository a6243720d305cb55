"""The media state of one peer connection: demultiplexing its RTP and RTCP, and the reports it sends.

A connection is its transport's listener. Inbound RTP goes to the producer that claims its SSRC;
inbound RTCP is split packet by packet (feedback about what we send goes to consumers, reports about
what we receive to producers). Periodically (`tick`) it sends transport-wide feedback and NACKs to
publishers and sender reports to subscribers.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from sfu import rtcp
from sfu.consumer import Consumer
from sfu.downlink import DownlinkAdapter
from sfu.params import HeaderExtension
from sfu.producer import KeyframeMethod, Producer, RecvStream
from sfu.rtp import ExtIds, RtpError, RtpPacket, parse_rtp
from sfu.stats import DropReason, MediaStats
from sfu.twcc import TwccRecorder, TwccSender

if TYPE_CHECKING:
    from adaptation.types import PacketResult
    from sfu.transport import WebRtcTransport

# draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3.1: libwebrtc and mediasoup send every 100 ms.
TWCC_FEEDBACK_INTERVAL = 0.1
# RFC 3550 section 6.2 leaves the interval to us; 1 s keeps RTT and loss figures fresh for small sessions.
REPORT_INTERVAL = 1.0
NACK_INTERVAL = 0.02
DEFAULT_RTT = 0.1
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 to 1970 (RFC 5905 section 6)
_NO_RESULTS: list[PacketResult] = []  # shared and never mutated: most timer passes bring no feedback


def ntp_timestamp(wallclock: float) -> int:
    """64-bit NTP timestamp for a Unix time (RFC 3550 section 4)."""
    seconds = wallclock + NTP_EPOCH_OFFSET
    return (int(seconds) << 32) | int((seconds % 1.0) * (1 << 32))


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp, as LSR carries it (RFC 3550 section 6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


class Connection:
    """One participant connection's producers and consumers, as its transport's listener."""

    def __init__(
        self,
        *,
        stats: MediaStats,
        rng: random.Random,
        wallclock_offset: float,
        on_closed: Callable[[str], None],
        send_clock: Callable[[], float] | None = None,
    ) -> None:
        self.transport: WebRtcTransport | None = None
        # Send times for transport-wide feedback must be when a packet really leaves: the forwarding path's
        # `now` is the ingress packet's kernel arrival time, and the event loop's varying lag between the
        # two would read as queueing delay on the subscriber's path (and as a slow probe). None: use `now`.
        self._send_clock = send_clock
        self._stats = stats
        self._wallclock_offset = wallclock_offset  # monotonic `now` + offset = Unix time
        self._on_closed = on_closed
        self.rtcp_ssrc = rng.randrange(1, 0x100000000)
        self.producers: dict[str, Producer] = {}
        self._by_mid: dict[str, Producer] = {}
        self._by_pt: dict[int, Producer] = {}
        self._by_ssrc: dict[int, tuple[Producer, RecvStream, bool]] = {}
        self.consumers: dict[str, Consumer] = {}
        self._consumers_by_ssrc: dict[int, Consumer] = {}
        self._ext_ids = ExtIds.from_map({})
        self._twcc_in = TwccRecorder(sender_ssrc=self.rtcp_ssrc, media_ssrc=0)
        self.twcc_out = TwccSender()
        self.feedback: list[PacketResult] = []  # results not yet taken by adaptation
        # Adaptation of what we send this connection's subscriber (idle on a publish-only connection).
        self.downlink = DownlinkAdapter(self.consumers, stats=stats)
        self.closed = False
        self._next_twcc = 0.0
        self._next_report = 0.0
        self._next_nack = 0.0
        # When `tick` next has work: the server's timer skips this connection until then, so a quiet
        # connection costs one comparison per timer pass. Feedback and new losses pull it in.
        self.due = 0.0
        self.rtt_s: float | None = None

    def attach(self, transport: WebRtcTransport) -> None:
        self.transport = transport

    # -- registration ------------------------------------------------------------------------------

    def add_producer(self, producer: Producer) -> None:
        self.producers[producer.id] = producer
        self._by_mid[producer.params.mid] = producer
        for codec in producer.params.codecs:
            self._by_pt[codec.payload_type] = producer
            if codec.rtx_payload_type is not None:
                self._by_pt[codec.rtx_payload_type] = producer
        for ssrc, (stream, is_rtx) in producer.ssrc_map.items():
            self._by_ssrc[ssrc] = (producer, stream, is_rtx)
        merged: dict[HeaderExtension, int] = {}
        for p in self.producers.values():
            merged.update(p.params.header_extensions)
        self._ext_ids = ExtIds.from_map(merged)
        self.due = 0.0  # start feedback and NACKs for it on the next timer pass

    def remove_producer(self, producer: Producer) -> None:
        self.producers.pop(producer.id, None)
        if self._by_mid.get(producer.params.mid) is producer:
            del self._by_mid[producer.params.mid]
        for table in (self._by_pt,):
            for key in [k for k, p in table.items() if p is producer]:
                del table[key]
        for ssrc in [s for s, entry in self._by_ssrc.items() if entry[0] is producer]:
            del self._by_ssrc[ssrc]

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers[consumer.id] = consumer
        self._consumers_by_ssrc[consumer.ssrc] = consumer
        if consumer.rtx_ssrc is not None:
            self._consumers_by_ssrc[consumer.rtx_ssrc] = consumer
        self.due = 0.0

    def remove_consumer(self, consumer: Consumer) -> None:
        self.consumers.pop(consumer.id, None)
        for ssrc in (consumer.ssrc, consumer.rtx_ssrc):
            if ssrc is not None and self._consumers_by_ssrc.get(ssrc) is consumer:
                del self._consumers_by_ssrc[ssrc]

    # -- TransportListener -------------------------------------------------------------------------

    def on_rtp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        try:
            pkt = parse_rtp(data, self._ext_ids)
        except RtpError:
            self._stats.drops[DropReason.RTP_MALFORMED] += 1
            return
        if pkt.tcc_seq is not None:
            # Every packet counts for the publisher's estimator, padding and unknown streams included.
            self._twcc_in.record(pkt.tcc_seq, now=now, ssrc=pkt.ssrc)
        entry = self._by_ssrc.get(pkt.ssrc)
        if entry is None:
            entry = self._discover(pkt)
            if entry is None:
                self._stats.drops[DropReason.UNKNOWN_SSRC] += 1
                return
        producer, stream, is_rtx = entry
        self._stats.packets_received[producer.kind_label] += 1
        self._stats.bytes_received[producer.kind_label] += len(data)
        producer.receive(pkt, stream, is_rtx, now=now)
        if stream.nack.missing_count and self._next_nack < self.due:
            self.due = self._next_nack  # a new hole: NACK it on the next timer pass, not the next report

    def _discover(self, pkt: RtpPacket) -> tuple[Producer, RecvStream, bool] | None:
        producer = self._by_mid.get(pkt.mid) if pkt.mid is not None else self._by_pt.get(pkt.pt)
        if producer is None or producer.closed:
            return None
        bound = producer.bind(pkt)
        if bound is None:
            return None
        entry = (producer, bound[0], bound[1])
        self._by_ssrc[pkt.ssrc] = entry
        return entry

    def on_rtcp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        packets, malformed = rtcp.parse_compound(data)
        if malformed:
            self._stats.drops[DropReason.RTCP_MALFORMED] += malformed
        for packet in packets:
            if isinstance(packet, rtcp.TransportCc):
                self.feedback.extend(self.twcc_out.on_feedback(packet, now=now))
                if len(self.feedback) > 10_000:  # nobody is consuming: keep memory bounded
                    del self.feedback[:5_000]
                self.due = 0.0  # adaptation reads it on the next timer pass
            elif isinstance(packet, rtcp.Nack):
                self._stats.nacks_received += 1
                consumer = self._consumers_by_ssrc.get(packet.media_ssrc)
                if consumer is not None:
                    consumer.retransmit(list(packet.lost), now=now)
            elif isinstance(packet, rtcp.Pli):
                self._stats.plis_received += 1
                consumer = self._consumers_by_ssrc.get(packet.media_ssrc)
                if consumer is not None:
                    consumer.request_keyframe(now=now)
            elif isinstance(packet, rtcp.Fir):
                self._stats.firs_received += 1
                for ssrc, _ in packet.entries:
                    consumer = self._consumers_by_ssrc.get(ssrc)
                    if consumer is not None:
                        consumer.request_keyframe(now=now)
            elif isinstance(packet, (rtcp.ReceiverReport, rtcp.SenderReport)):
                if isinstance(packet, rtcp.SenderReport):
                    self._on_sender_report(packet, now=now)
                for block in packet.reports:
                    self._on_report_block(block, now=now)

    def _on_sender_report(self, sr: rtcp.SenderReport, *, now: float) -> None:
        entry = self._by_ssrc.get(sr.ssrc)
        if entry is not None:
            stream = entry[1]
            stream.last_sr_ntp_middle = ntp_middle(sr.ntp_timestamp)
            stream.last_sr_arrival = now

    def _on_report_block(self, block: rtcp.ReportBlock, *, now: float) -> None:
        consumer = self._consumers_by_ssrc.get(block.ssrc)
        if consumer is None:
            return
        rtt: float | None = None
        if block.lsr:
            # RFC 3550 section 6.4.1: RTT = A - LSR - DLSR, in units of 1/65536 s.
            arrival = ntp_middle(ntp_timestamp(now + self._wallclock_offset))
            rtt_units = (arrival - block.lsr - block.dlsr) & 0xFFFFFFFF
            if rtt_units < 0x80000000:
                rtt = rtt_units / 65536
                self.rtt_s = rtt
        consumer.on_report(
            fraction_lost=block.fraction_lost / 256,
            jitter_s=block.jitter / consumer.params.codec.clock_rate,
            rtt_s=rtt,
        )

    def on_state(self, transport: WebRtcTransport, state: object, reason: str | None) -> None:
        if getattr(state, "value", state) == "closed" and not self.closed:
            self.close()
            self._on_closed(reason or "closed")

    # -- ProducerSink / EgressSink -----------------------------------------------------------------

    def request_keyframe(self, ssrc: int, method: KeyframeMethod) -> None:
        if method is KeyframeMethod.FIR:
            self._fir_seq = (getattr(self, "_fir_seq", 0) + 1) & 0xFF
            packet: rtcp.RtcpPacket = rtcp.Fir(sender_ssrc=self.rtcp_ssrc, entries=((ssrc, self._fir_seq),))
            self._stats.firs_sent += 1
        else:
            packet = rtcp.Pli(sender_ssrc=self.rtcp_ssrc, media_ssrc=ssrc)
            self._stats.plis_sent += 1
        self._send_rtcp([packet])

    def next_tcc_seq(self) -> int:
        return self.twcc_out.next_seq()

    def send_rtp(self, header: bytes, payload: bytes | memoryview, tcc_seq: int, now: float) -> None:
        transport = self.transport
        if transport is None:
            return
        if self._send_clock is not None:
            now = self._send_clock()
        cluster = self.downlink.sending_cluster
        size = len(header) + len(payload)
        self.twcc_out.on_sent(tcc_seq, size, now, cluster)
        if cluster is not None:  # media sent while a probe cluster goes out is part of it (padding tops it up)
            self.downlink.on_media_sent(size, now=now)
        transport.send_rtp(header, payload)

    def send_probe(self, data: bytes, tcc_seq: int, cluster_id: int, *, now: float) -> None:
        """A probe packet: recorded with its cluster so the prober can measure it from feedback."""
        transport = self.transport
        if transport is None:
            return
        if self._send_clock is not None:
            now = self._send_clock()
        self.twcc_out.on_sent(tcc_seq, len(data), now=now, probe_cluster=cluster_id)
        transport.send_rtp(data)

    def _send_rtcp(self, packets: list[rtcp.RtcpPacket]) -> None:
        if self.transport is not None and packets:
            self.transport.send_rtcp(rtcp.serialize(packets))

    # -- timers -------------------------------------------------------------------------------------

    def tick(self, *, now: float) -> None:
        """Periodic work: feedback and reports. The server's ~20 ms timer calls it once `due` has come."""
        if self.closed or self.transport is None:
            self.due = float("inf")
            return
        missing = False
        if self.producers:
            missing = self._has_missing()
            if missing and now >= self._next_nack:
                self._next_nack = now + NACK_INTERVAL
                self._send_nacks(now)
            if now >= self._next_twcc:
                self._next_twcc = now + TWCC_FEEDBACK_INTERVAL
                for fb in self._twcc_in.build_feedback(now=now):
                    self.transport.send_rtcp(fb)
        if now >= self._next_report:
            self._next_report = now + REPORT_INTERVAL
            self._send_reports(now)
            for consumer in self.consumers.values():
                consumer.update_layer(now=now)
            for producer in self.producers.values():
                producer.update_dynacast(now=now)
        if self.consumers:
            self.downlink.tick(self.take_feedback(), now=now)
        due = self._next_report
        if self.producers:
            due = min(due, self._next_twcc)
        if missing:
            due = min(due, self._next_nack)
        if self.consumers:
            adapt = self.downlink.next_timer
            if adapt is not None:
                due = min(due, adapt)
        self.due = due

    def _has_missing(self) -> bool:
        return any(stream.nack.missing_count for producer in self.producers.values() for stream in producer.streams)

    def _send_nacks(self, now: float) -> None:
        rtt = self.rtt_s or DEFAULT_RTT
        packets: list[rtcp.RtcpPacket] = []
        for producer in self.producers.values():
            if "nack" not in producer.codec.rtcp_feedback:
                continue
            for stream in producer.streams:
                if stream.ssrc is None:
                    continue
                lost = stream.nack.due(now=now, rtt=rtt)
                if lost:
                    packets.append(rtcp.Nack(sender_ssrc=self.rtcp_ssrc, media_ssrc=stream.ssrc, lost=tuple(lost)))
        self._send_rtcp(packets)

    def _send_reports(self, now: float) -> None:
        ntp = ntp_timestamp(now + self._wallclock_offset)
        packets: list[rtcp.RtcpPacket] = []
        for consumer in self.consumers.values():
            if consumer.last_out_ts is None:
                continue
            elapsed = now - consumer.last_send_time
            rtp_ts = (consumer.last_out_ts + int(elapsed * consumer.params.codec.clock_rate)) & 0xFFFFFFFF
            packets.append(rtcp.SenderReport(
                ssrc=consumer.ssrc, ntp_timestamp=ntp, rtp_timestamp=rtp_ts,
                packet_count=consumer.packets_sent & 0xFFFFFFFF, octet_count=consumer.octets_sent & 0xFFFFFFFF,
                reports=(),
            ))
        blocks = [self._report_block(stream, now) for producer in self.producers.values()
                  for stream in producer.streams if stream.ssrc is not None and stream.base_ext_seq is not None]
        for i in range(0, len(blocks), 31):  # RFC 3550 section 6.4.2: at most 31 blocks per report
            packets.append(rtcp.ReceiverReport(ssrc=self.rtcp_ssrc, reports=tuple(blocks[i : i + 31])))
        self._send_rtcp(packets)

    def _report_block(self, stream: RecvStream, now: float) -> rtcp.ReportBlock:
        # RFC 3550 appendix A.3.
        assert stream.base_ext_seq is not None and stream.ssrc is not None
        expected = stream.max_ext_seq - stream.base_ext_seq + 1
        lost = max(0, expected - stream.packets)
        expected_interval = expected - stream.expected_prior
        received_interval = stream.packets - stream.received_prior
        stream.expected_prior = expected
        stream.received_prior = stream.packets
        lost_interval = expected_interval - received_interval
        fraction = 0 if expected_interval <= 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        dlsr = 0
        if stream.last_sr_arrival is not None:
            dlsr = int((now - stream.last_sr_arrival) * 65536) & 0xFFFFFFFF
        return rtcp.ReportBlock(
            ssrc=stream.ssrc, fraction_lost=min(fraction, 255), cumulative_lost=min(lost, 0x7FFFFF),
            highest_seq=stream.max_ext_seq & 0xFFFFFFFF, jitter=int(stream.jitter),
            lsr=stream.last_sr_ntp_middle, dlsr=dlsr,
        )

    def take_feedback(self) -> list[PacketResult]:
        if not self.feedback:
            return _NO_RESULTS
        results, self.feedback = self.feedback, []
        return results

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for consumer in list(self.consumers.values()):
            consumer.close()
        for producer in list(self.producers.values()):
            producer.close()
        self.consumers.clear()
        self.producers.clear()
