"""A published track: its receive streams (one per simulcast layer), keyframe requests, fan-out."""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sfu import h264, vp8
from sfu.dynacast import LayerGate
from sfu.nack import NackGenerator
from sfu.params import Codec, MediaKind, ProducerParams
from sfu.rtp import RtpPacket, SeqUnwrapper, TsUnwrapper, rtx_original_seq
from sfu.stats import DropReason, MediaStats

if TYPE_CHECKING:
    from sfu.consumer import Consumer

# A PLI/FIR per source at most this often (DESIGN.md section 3; LiveKit throttles at 500 ms).
KEYFRAME_REQUEST_INTERVAL = 0.5
# A layer counts as flowing while packets arrived within this window.
LAYER_IDLE_AFTER = 1.0
# Bitrate meter: a sliding window of RATE_BUCKETS buckets. 2 s spans a keyframe interval of most encoders,
# so one keyframe does not swing a layer's measured rate by more than the allocator's 15 % dead-band.
RATE_BUCKET = 0.25
RATE_BUCKETS = 8


class KeyframeMethod(enum.Enum):
    PLI = "pli"  # RFC 4585 section 6.3.1
    FIR = "fir"  # RFC 5104 section 4.3.1


class ProducerSink(Protocol):
    """What a producer needs from the connection it arrives on."""

    def request_keyframe(self, ssrc: int, method: KeyframeMethod) -> None: ...

    def remove_producer(self, producer: Producer) -> None: ...


class ProducerListener(Protocol):
    """What signalling hears from a producer, to tell its publisher."""

    def on_layers_wanted(self, producer: Producer, active: tuple[bool, ...]) -> None: ...


@dataclass
class RecvStream:
    """One incoming RTP stream of a producer: a simulcast layer (or the only stream)."""

    layer: int
    rid: str | None
    ssrc: int | None
    rtx_ssrc: int | None
    seq: SeqUnwrapper
    ts: TsUnwrapper
    nack: NackGenerator
    last_arrival: float = -1e9
    last_keyframe: float = -1e9
    last_keyframe_request: float = -1e9
    packets: int = 0
    bytes: int = 0
    # Bitrate meter: bytes in the current bucket (ends at bucket_end), completed buckets, and their rate.
    bucket_end: float = 0.0
    bucket_bytes: int = 0
    buckets: deque[int] = field(default_factory=lambda: deque(maxlen=RATE_BUCKETS))
    bitrate_bps: float = 0.0
    # Since when the layer has been flowing without a gap of LAYER_IDLE_AFTER (None: not flowing).
    flowing_since: float | None = None
    # For receiver reports (RFC 3550 appendix A.3 and A.8).
    base_ext_seq: int | None = None
    max_ext_seq: int = -1
    expected_prior: int = 0
    received_prior: int = 0
    jitter: float = 0.0
    last_transit: float | None = None
    last_sr_ntp_middle: int = 0
    last_sr_arrival: float | None = None
    # Resolution read from the layer's last keyframe (VP8 only); None until one arrived.
    size: tuple[int, int] | None = None
    # Dynacast: when the publisher was asked to resume this layer (its first keyframe after that is asked for).
    resumed_at: float | None = None

    def flowing(self, now: float) -> bool:
        return now - self.last_arrival < LAYER_IDLE_AFTER

    def measure(self, now: float) -> float:
        """Close the buckets that have ended by `now` and return the rate over the window (bits/s).

        Called once per bucket from the ingress path and by adaptation on its timer (a layer that stopped
        decays to 0 even without packets).
        """
        if now >= self.bucket_end:
            buckets = self.buckets
            if self.bucket_end > 0.0:
                buckets.append(self.bucket_bytes)
                # Buckets that passed without a packet.
                for _ in range(min(RATE_BUCKETS, int((now - self.bucket_end) / RATE_BUCKET))):
                    buckets.append(0)
                self.bitrate_bps = sum(buckets) * 8.0 / (len(buckets) * RATE_BUCKET)
            self.bucket_bytes = 0
            self.bucket_end = now + RATE_BUCKET
        return self.bitrate_bps


def _keyframe_detector(codec: Codec) -> Callable[[bytes | memoryview], bool] | None:
    name = codec.name
    if name == "VP8":
        return vp8.is_keyframe
    if name == "H264":
        return h264.is_keyframe
    return None


class Producer:
    """One published audio or video track and the consumers it feeds."""

    def __init__(
        self,
        producer_id: str,
        params: ProducerParams,
        *,
        sink: ProducerSink,
        stats: MediaStats,
        listener: ProducerListener | None = None,
    ) -> None:
        self.id = producer_id
        self.listener = listener
        self.params = params
        self.kind = params.kind
        self.kind_label = params.kind.value
        self.closed = False
        self._sink = sink
        self._stats = stats
        self.consumers: list[Consumer] = []
        self._codecs_by_pt = {c.payload_type: c for c in params.codecs}
        self._rtx_pts = {c.rtx_payload_type for c in params.codecs if c.rtx_payload_type is not None}
        self.codec = params.codecs[0]
        self._is_keyframe = _keyframe_detector(self.codec) if params.kind is MediaKind.VIDEO else None
        self._keyframe_method = (
            KeyframeMethod.PLI
            if any(fb == "nack pli" for fb in self.codec.rtcp_feedback) or not self.codec.rtcp_feedback
            else KeyframeMethod.FIR
        )
        encodings = params.encodings or ()
        self.streams: list[RecvStream] = []
        for layer, enc in enumerate(encodings or [None]):
            self.streams.append(
                RecvStream(
                    layer=layer,
                    rid=enc.rid if enc else None,
                    ssrc=enc.ssrc if enc else None,
                    rtx_ssrc=enc.rtx_ssrc if enc else None,
                    seq=SeqUnwrapper(),
                    ts=TsUnwrapper(),
                    nack=NackGenerator(),
                )
            )
        self._by_rid = {s.rid: s for s in self.streams if s.rid is not None}
        self._reads_size = params.kind is MediaKind.VIDEO and self.codec.name == "VP8"
        self.dynacast = LayerGate(len(self.streams))
        # ssrc -> (stream, is_rtx); filled from the offer and by discovery (rid / mid).
        self.ssrc_map: dict[int, tuple[RecvStream, bool]] = {}
        for s in self.streams:
            if s.ssrc is not None:
                self.ssrc_map[s.ssrc] = (s, False)
            if s.rtx_ssrc is not None:
                self.ssrc_map[s.rtx_ssrc] = (s, True)

    @property
    def simulcast(self) -> bool:
        return len(self.streams) > 1

    # -- SSRC discovery -------------------------------------------------------------------------

    def bind(self, pkt: RtpPacket) -> tuple[RecvStream, bool] | None:
        """Claim an SSRC first seen with this producer's mid, by its rid or repaired rid (RFC 8852)."""
        is_rtx = pkt.pt in self._rtx_pts
        stream: RecvStream | None
        if is_rtx and pkt.repaired_rid is not None:
            stream = self._by_rid.get(pkt.repaired_rid)
        elif pkt.rid is not None:
            stream = self._by_rid.get(pkt.rid)
        elif not self.simulcast:
            stream = self.streams[0]
        else:
            stream = None
        if stream is None or (stream.rtx_ssrc if is_rtx else stream.ssrc) is not None:
            return None  # no such layer, or its SSRC is known already: a stray stream must not take over
        if is_rtx:
            stream.rtx_ssrc = pkt.ssrc
        else:
            stream.ssrc = pkt.ssrc
        entry = (stream, is_rtx)
        self.ssrc_map[pkt.ssrc] = entry
        return entry

    # -- ingress --------------------------------------------------------------------------------

    def receive(self, pkt: RtpPacket, stream: RecvStream, is_rtx: bool, *, now: float) -> None:
        """Account one packet and forward it to every consumer."""
        payload_offset = pkt.payload_offset
        if is_rtx:
            if pkt.payload_end - payload_offset <= 2:
                self._stats.drop(DropReason.PADDING_ONLY)
                return
            seq = rtx_original_seq(pkt)
            payload_offset += 2
        else:
            if pkt.payload_end == payload_offset:
                # Padding-only packets probe the publisher's own link; their transport-wide
                # sequence number was recorded already.
                self._stats.drop(DropReason.PADDING_ONLY)
                return
            seq = pkt.seq
            if pkt.pt not in self._codecs_by_pt:
                self._stats.drop(DropReason.UNKNOWN_PAYLOAD_TYPE)
                return
        newest_before = stream.seq.highest
        ext_seq = stream.seq.unwrap(seq)
        ext_ts = stream.ts.unwrap(pkt.ts)
        payload = memoryview(pkt.data)[payload_offset : pkt.payload_end]
        keyframe = self._is_keyframe is not None and self._is_keyframe(payload)
        size = len(pkt.data)
        stream.packets += 1
        stream.bytes += size
        if now >= stream.bucket_end:
            stream.measure(now)
        stream.bucket_bytes += size
        restarted = now - stream.last_arrival >= LAYER_IDLE_AFTER
        if restarted:
            stream.flowing_since = now  # (re)started after a gap
        if not is_rtx:
            self._update_receive_stats(stream, ext_seq, pkt.ts, now)
            stream.nack.on_packet(ext_seq, now=now, is_keyframe=keyframe)
        stream.last_arrival = now
        if restarted and self.simulcast:
            # A layer (re)appeared, e.g. resumed by dynacast for a pin: consumers may want it now rather
            # than at their next periodic choice.
            for consumer in self.consumers:
                consumer.update_layer(now=now)
        if keyframe:
            stream.last_keyframe = now
            if self._reads_size:
                stream.size = vp8.keyframe_size(payload) or stream.size
        if stream.resumed_at is not None:
            # A layer dynacast resumed starts on a keyframe; ask for one from its first packets (a PLI
            # sent while the encoding was still stopped would be lost).
            if keyframe:
                stream.resumed_at = None
            else:
                self.request_keyframe(stream.layer, now=now)
        # A consumer may start a layer only on a keyframe that is the newest packet of its stream. An older
        # copy (an RTX retransmission, Chrome's RTX probes resending a recent packet, a reordered packet)
        # comes after later packets that a consumer waiting for a keyframe dropped or never saw: starting
        # there leaves a hole in its output that no retransmission can fill, and a receiver that assembles
        # frames in sequence order (aiortc) then decodes nothing.
        switch_point = keyframe and (newest_before is None or ext_seq > newest_before)
        for consumer in self.consumers:
            consumer.forward(pkt, payload, stream.layer, ext_seq, ext_ts, switch_point, now)

    def _update_receive_stats(self, stream: RecvStream, ext_seq: int, ts: int, now: float) -> None:
        if stream.base_ext_seq is None:
            stream.base_ext_seq = ext_seq
        stream.max_ext_seq = max(stream.max_ext_seq, ext_seq)
        # Interarrival jitter, RFC 3550 appendix A.8, in timestamp units.
        transit = now * self.codec.clock_rate - ts
        if stream.last_transit is not None:
            d = abs(transit - stream.last_transit)
            if d < self.codec.clock_rate * 10:  # ignore timestamp jumps (wrap, restarts)
                stream.jitter += (d - stream.jitter) / 16
        stream.last_transit = transit

    # -- keyframes -------------------------------------------------------------------------------

    def request_keyframe(self, layer: int, *, now: float) -> bool:
        """Ask the publisher for a keyframe on one layer; at most one per source per interval."""
        if self.kind is not MediaKind.VIDEO or self.closed:
            return False
        stream = self.streams[min(layer, len(self.streams) - 1)]
        if stream.ssrc is None or now - stream.last_keyframe_request < KEYFRAME_REQUEST_INTERVAL:
            return False
        stream.last_keyframe_request = now
        self._sink.request_keyframe(stream.ssrc, self._keyframe_method)
        return True

    # -- layers ----------------------------------------------------------------------------------

    def flowing_layers(self, *, now: float) -> list[int]:
        return [s.layer for s in self.streams if s.flowing(now)]

    def layer_sizes(self) -> list[tuple[int, int] | None]:
        """Each layer's resolution as measured from its keyframes (None where unknown)."""
        return [s.size for s in self.streams]

    def update_dynacast(self, *, now: float) -> None:
        """Tell the publisher which layers its subscribers want (sfu/dynacast.py); called on the connection's
        report timer and whenever a subscriber's preference changes."""
        if not self.simulcast or self.closed:
            return
        wanted = [c.wanted_layer for c in self.consumers if not c.closed]
        top = max((w for w in wanted if w is not None), default=None)
        change = self.dynacast.update(top, [s.flowing(now) for s in self.streams], now=now)
        if change is not None:
            for layer in change.resumed:
                self.streams[layer].resumed_at = now
            if self.listener is not None:
                self.listener.on_layers_wanted(self, change.active)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()
        self._sink.remove_producer(self)
