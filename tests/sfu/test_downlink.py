"""DownlinkAdapter on a simulated clock: real producers and consumers, synthetic transport-wide feedback.

A tiny bottleneck model (FIFO drained at a capacity, 300 ms of queue, then drop-tail) turns what the
consumers send into `PacketResult`s every 100 ms, as a subscriber's transport-cc feedback would.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import pytest

from adaptation.types import PacketResult
from sfu.consumer import Consumer, PauseReason
from sfu.downlink import DownlinkAdapter
from sfu.params import Codec, ConsumerParams, Encoding, HeaderExtension, MediaKind, ProducerParams
from sfu.producer import KeyframeMethod, Producer
from sfu.rtp import EgressWriter, parse_rtp
from sfu.stats import MediaStats

VP8 = Codec("video/VP8", 96, 90000, rtx_payload_type=97, rtcp_feedback=("nack", "nack pli", "transport-cc"))
OPUS = Codec("audio/opus", 111, 48000, channels=2, rtcp_feedback=("transport-cc",))
TCC = {HeaderExtension.TRANSPORT_CC: 3}
STEP = 0.02
AUDIO_BYTES = 120  # ~48 kbps at 50 packets/s


@dataclass
class Sent:
    seq: int
    size: int
    at: float
    cluster: int | None
    ssrc: int
    padding: bool


class Subscriber:
    """EgressSink for the consumers plus a bottleneck that turns what they send into feedback."""

    def __init__(self, capacity_bps: float) -> None:
        self.capacity_bps = capacity_bps
        self._tcc = 0
        self.sent: list[Sent] = []
        self._queue_free_at = 0.0
        self._pending: list[tuple[Sent, float | None]] = []  # with arrival time (None: dropped)
        self.received: list[tuple[float, int, bool]] = []  # (arrival, ssrc, padding)
        self.adapter: DownlinkAdapter | None = None

    # EgressSink
    def next_tcc_seq(self) -> int:
        self._tcc += 1
        return self._tcc

    def send_rtp(self, header: bytes, payload: bytes | memoryview, tcc_seq: int, now: float) -> None:
        data = header + bytes(payload)
        # As the connection does: media sent during a probe cluster is part of it.
        cluster = self.adapter.sending_cluster if self.adapter is not None else None
        self._link(Sent(tcc_seq, len(data), now, cluster, int.from_bytes(data[8:12], "big"), False))
        if self.adapter is not None and cluster is not None:
            self.adapter.on_media_sent(len(data), now=now)

    def send_probe(self, data: bytes, tcc_seq: int, cluster_id: int, *, now: float) -> None:
        self._link(Sent(tcc_seq, len(data), now, cluster_id, int.from_bytes(data[8:12], "big"), True))

    def remove_consumer(self, consumer: Consumer) -> None:
        pass

    def _link(self, s: Sent) -> None:
        self.sent.append(s)
        start = max(s.at, self._queue_free_at)
        if start - s.at > 0.3:
            self._pending.append((s, None))  # drop-tail
            return
        self._queue_free_at = start + s.size * 8 / self.capacity_bps
        arrival = self._queue_free_at + 0.02
        self._pending.append((s, arrival))
        self.received.append((arrival, s.ssrc, s.padding))

    def feedback(self, now: float) -> list[PacketResult]:
        """Results for everything that arrived by `now` (and losses before the last arrival)."""
        arrived = [a for _, a in self._pending if a is not None and a <= now]
        if not arrived:
            return []
        horizon = max(s.at for s, a in self._pending if a is not None and a <= now)
        out, keep = [], []
        for s, a in self._pending:
            if (a is not None and a <= now) or (a is None and s.at <= horizon):
                out.append(PacketResult(s.seq, s.at, s.size, a, s.cluster))
            else:
                keep.append((s, a))
        self._pending = keep
        return sorted(out, key=lambda r: r.seq)


class Publisher:
    """ProducerSink; answers keyframe requests with a keyframe on the next frame of that layer."""

    def __init__(self) -> None:
        self.requests: set[int] = set()

    def request_keyframe(self, ssrc: int, method: KeyframeMethod) -> None:
        self.requests.add(ssrc)

    def remove_producer(self, producer: Producer) -> None:
        pass


@dataclass
class Events:
    paused: list[tuple[str, PauseReason]] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    layers: list[tuple[str, int]] = field(default_factory=list)
    audio_only: list[tuple[bool, str]] = field(default_factory=list)

    def on_layer_changed(self, consumer: Consumer, layer: int) -> None:
        self.layers.append((consumer.kind_label, layer))

    def on_paused(self, consumer: Consumer, reason: PauseReason) -> None:
        self.paused.append((consumer.kind_label, reason))

    def on_resumed(self, consumer: Consumer) -> None:
        self.resumed.append(consumer.kind_label)

    def on_audio_only(self, active: bool, reason: str) -> None:
        self.audio_only.append((active, reason))


class World:
    """One publisher (audio + video with the given layer rates) and one subscriber behind a bottleneck."""

    def __init__(self, layer_bps: tuple[float, ...], capacity_bps: float, *, feedback: bool = True) -> None:
        self.stats = MediaStats()
        self.rng = random.Random(1)
        self.pub = Publisher()
        self.sub = Subscriber(capacity_bps)
        self.events = Events()
        self.feedback = feedback
        self.layer_bps = layer_bps
        encodings = tuple(Encoding(rid=f"r{i}", ssrc=1000 + i) for i in range(len(layer_bps)))
        self.video = Producer("v", ProducerParams(MediaKind.VIDEO, "1", (VP8,), dict(TCC), encodings),
                              sink=self.pub, stats=self.stats)
        self.audio = Producer("a", ProducerParams(MediaKind.AUDIO, "0", (OPUS,), dict(TCC),
                                                  (Encoding(ssrc=2000),)), sink=self.pub, stats=self.stats)
        self.consumers: dict[str, Consumer] = {}
        self.vc = self._consume(self.video, MediaKind.VIDEO, VP8, 7000, 7001)
        self.ac = self._consume(self.audio, MediaKind.AUDIO, OPUS, 8000, None)
        self.adapter = DownlinkAdapter(self.consumers, stats=self.stats, listener=self.events)
        self.sub.adapter = self.adapter
        self.writers = [EgressWriter(1000 + i, 96) for i in range(len(layer_bps))]
        self.awriter = EgressWriter(2000, 111)
        self.seq = [0] * (len(layer_bps) + 1)
        self.now = 0.0
        self.audio_sent_while_paused = 0
        self.video_sent_while_audio_only = 0

    def _consume(self, producer: Producer, kind: MediaKind, codec: Codec, ssrc: int, rtx: int | None) -> Consumer:
        params = ConsumerParams(kind, "m", codec, ssrc, rtx, dict(TCC))
        c = Consumer(f"c{ssrc}", producer, params, sink=self.sub, stats=self.stats, rng=self.rng,
                     listener=self.events)
        producer.consumers.append(c)
        self.consumers[c.id] = c
        return c

    def _ingress(self, producer: Producer, layer: int, counter: int, writer: EgressWriter, payload: bytes) -> None:
        self.seq[counter] += 1
        pkt = parse_rtp(writer.build(marker=True, seq=self.seq[counter], ts=int(self.now * 90000), payload=payload))
        producer.receive(pkt, producer.streams[layer], False, now=self.now)

    def step(self) -> None:
        now = self.now
        self._ingress(self.audio, 0, len(self.layer_bps), self.awriter, bytes(AUDIO_BYTES - 12))
        for i, bps in enumerate(self.layer_bps):
            key = 1000 + i in self.pub.requests or int(now / STEP) % 100 == 0
            self.pub.requests.discard(1000 + i)
            frame = int(bps * STEP / 8)
            first = True
            while frame > 0:
                size = min(frame, 1100)
                frame -= size
                head = (b"\x10" + (b"\x00" if key else b"\x01")) if first else b"\x00\x01"
                self._ingress(self.video, i, i, self.writers[i], head + bytes(max(0, size - 14)))
                first = False
        if self.feedback and round(now / STEP) % 5 == 0:
            results = self.sub.feedback(now)
        else:
            results = []
        if round(now / STEP) % 50 == 0:  # as the connection's report tick does
            for c in self.consumers.values():
                c.update_layer(now=now)
        self.adapter.tick(results, now=now)
        while (due := self.adapter.probe_due_at) is not None and due < now + STEP:
            self.adapter.send_probes(now=max(due, now))
        assert self.ac.pause_reason is PauseReason.NONE, "audio must never be paused"
        self.now = round(now + STEP, 6)

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP)):
            self.step()

    def video_received(self, since: float, until: float) -> int:
        return sum(1 for at, ssrc, pad in self.sub.received if ssrc == 7000 and since <= at < until and not pad)

    def audio_max_gap(self, since: float, until: float) -> float:
        times = sorted(at for at, ssrc, _ in self.sub.received if ssrc == 8000 and since <= at < until)
        return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))


LADDER = (150_000.0, 500_000.0, 1_500_000.0)


@pytest.mark.parametrize(
    ("capacity", "layer"),
    [(400_000.0, 0), (1_000_000.0, 1), (3_000_000.0, 2)],
)
def test_layer_follows_the_estimate(capacity: float, layer: int) -> None:
    w = World(LADDER, capacity)
    w.run(40)
    assert w.adapter.engaged
    assert w.vc.adapted_layer == layer
    assert w.vc.current_layer == layer  # switched on a keyframe
    assert w.vc.pause_reason is PauseReason.NONE
    assert not w.adapter.audio_only
    assert 0.5 * capacity < w.adapter.estimate_bps


def test_layer_goes_down_when_capacity_drops() -> None:
    w = World(LADDER, 3_000_000.0)
    w.run(30)
    assert w.vc.current_layer == 2
    switches = w.adapter.layer_switches
    w.sub.capacity_bps = 1_000_000.0
    w.run(5)
    assert w.vc.current_layer == 1
    assert w.adapter.layer_switches > switches
    assert w.stats.layer_switches == w.adapter.layer_switches


def test_audio_only_and_back_after_a_probe() -> None:
    w = World((500_000.0,), 1_200_000.0)
    w.run(15)
    assert w.vc.current_layer == 0 and w.vc.pause_reason is PauseReason.NONE
    w.sub.capacity_bps = 120_000.0
    w.run(6)
    assert w.adapter.audio_only
    assert w.vc.pause_reason is PauseReason.BANDWIDTH
    assert ("video", PauseReason.BANDWIDTH) in w.events.paused
    assert w.events.audio_only == [(True, "bandwidth_too_low")]
    entered = w.now
    w.run(10)  # still shaped: probes fail, video stays paused, audio flows
    assert w.adapter.audio_only
    assert w.video_received(entered + 0.5, w.now) == 0
    assert w.audio_max_gap(entered, w.now) < 0.2
    assert w.stats.probes_failed >= 1
    assert any(s.padding and s.ssrc == 7001 for s in w.sub.sent)  # probes go on the RTX SSRC
    w.sub.capacity_bps = 1_200_000.0
    lifted = w.now
    w.run(12)
    assert not w.adapter.audio_only
    assert w.events.audio_only[-1] == (False, "probe_succeeded")
    assert w.vc.pause_reason is PauseReason.NONE and w.events.resumed == ["video"]
    assert w.video_received(lifted, w.now) > 100
    assert w.stats.audio_only_entered == w.stats.audio_only_exited == 1
    assert w.stats.probes_succeeded >= 1
    snap = w.adapter.snapshot(now=w.now)
    assert not snap.audio_only and 10 < snap.audio_only_s < 30


@pytest.mark.parametrize("capacity", [60_000.0, 120_000.0, 300_000.0, 1_000_000.0, 4_000_000.0])
def test_audio_is_never_paused(capacity: float) -> None:
    w = World(LADDER, capacity)
    w.run(20)  # `step` asserts the audio consumer is never paused
    assert all(kind == "video" for kind, _ in w.events.paused)
    assert w.ac.packets_sent >= 20 / STEP - 1


def test_without_feedback_the_highest_layer_flows() -> None:
    w = World(LADDER, 10_000_000.0, feedback=False)
    w.run(5)
    assert not w.adapter.engaged
    assert w.vc.current_layer == 2 and w.vc.adapted_layer is None


def test_a_pin_overrides_the_estimate_and_held_video_is_left_alone() -> None:
    w = World(LADDER, 1_000_000.0)
    w.vc.pin_layer(0)
    w.run(20)
    assert w.vc.current_layer == 0
    w.vc.set_paused(PauseReason.HELD)
    w.run(5)
    assert w.vc.pause_reason is PauseReason.HELD  # adaptation never resumes what it did not pause
