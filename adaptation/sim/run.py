"""Discrete-event run of one or more SFU-to-subscriber downlinks sharing one bottleneck."""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from adaptation.allocator import LayerState, VideoTrack
from adaptation.controller import ControllerConfig, Decision, DownlinkController
from adaptation.events import AudioOnlyEntered, FallbackEvent
from adaptation.fallback import FallbackState
from adaptation.pacer import Pacer, PacerConfig, PacketKind
from adaptation.sim.media import (
    AUDIO_BPS,
    AUDIO_INTERVAL_S,
    AUDIO_PACKET_BYTES,
    FIRST_MEASURE_S,
    FPS,
    Publisher,
    packetize,
)
from adaptation.sim.network import Bottleneck
from adaptation.sim.profiles import Profile
from adaptation.types import PacketResult

FEEDBACK_INTERVAL_S = 0.100  # transport-wide feedback cadence (libwebrtc default, mediasoup fixed)
TIMER_INTERVAL_S = 0.100
SAMPLE_INTERVAL_S = 0.100
SEND_RATE_WINDOW_S = 0.200  # RFC 8868 section 3: rates over 200 ms intervals
PLI_DELAY_S = 0.100  # from our keyframe request to the publisher's keyframe reaching the SFU
TRACK_ID = "camera"

AUDIO = -1  # pacer item for an audio packet; video packets carry their layer index


@dataclass(slots=True)
class Sample:
    t: float
    capacity_bps: float  # what the bottleneck leaves for this flow (all of it for a single flow)
    link_bps: float
    estimate_bps: float
    send_bps: float
    layer: int | None  # the allocator's choice
    forwarded: int | None  # the layer actually being forwarded
    fallback: FallbackState
    queue_delay_s: float


@dataclass(slots=True)
class FlowTrace:
    samples: list[Sample] = field(default_factory=list)
    events: list[FallbackEvent] = field(default_factory=list)
    stalls: int = 0  # allocator pauses for lack of bandwidth outside audio-only
    audio_sent: int = 0
    audio_lost: int = 0
    audio_send_times: list[float] = field(default_factory=list)
    probes: int = 0
    probes_succeeded: int = 0
    sent_bytes: int = 0


@dataclass(slots=True)
class RunResult:
    profile: Profile
    flows: list[FlowTrace]
    queue_delays_s: list[float]


class _Flow:
    __slots__ = (
        "arrivals",
        "controller",
        "decision",
        "forwarded",
        "idx",
        "pacer",
        "pending",
        "publisher",
        "reported",
        "send_log",
        "send_log_bytes",
        "sent",
        "trace",
        "wake_at",
    )

    def __init__(
        self, idx: int, config: ControllerConfig, pacer_config: PacerConfig, rng: random.Random
    ) -> None:
        self.idx = idx
        self.controller = DownlinkController(config)
        self.pacer: Pacer[int] = Pacer(pacer_config, rate_bps=config.estimator.aimd.start_bps)
        self.publisher = Publisher(rng)
        self.forwarded: int | None = None
        self.pending: int | None = None
        # per transport-wide seq: (send time, size, probe cluster, is audio)
        self.sent: list[tuple[float, int, int | None, bool]] = []
        self.arrivals: deque[tuple[float, int]] = deque()
        self.reported = 0
        self.wake_at: float | None = None
        self.send_log: deque[tuple[float, int]] = deque()
        self.send_log_bytes = 0
        self.trace = FlowTrace()
        self.decision: Decision | None = None


class Simulation:
    def __init__(
        self,
        profile: Profile,
        *,
        config: ControllerConfig | None = None,
        pacer_config: PacerConfig | None = None,
    ) -> None:
        self.profile = profile
        rng = random.Random(profile.seed)
        self._link = Bottleneck(profile, random.Random(rng.random()))
        cfg = config or ControllerConfig()
        pcfg = pacer_config or PacerConfig()
        self._flows = [_Flow(i, cfg, pcfg, random.Random(rng.random())) for i in range(profile.flows)]
        self._heap: list[tuple[float, int, Callable[[float, _Flow], None], _Flow]] = []
        self._order = 0

    def _at(self, t: float, fn: Callable[[float, _Flow], None], flow: _Flow) -> None:
        self._order += 1
        heapq.heappush(self._heap, (t, self._order, fn, flow))

    def run(self) -> RunResult:
        end = self.profile.duration_s
        for flow in self._flows:
            offset = flow.idx * 0.0071
            self._at(offset, self._on_frame, flow)
            self._at(offset + 0.003, self._on_audio, flow)
            self._at(offset + FEEDBACK_INTERVAL_S, self._on_feedback_due, flow)
            self._at(offset, self._on_timer, flow)
        self._at(SAMPLE_INTERVAL_S, self._on_sample, self._flows[0])
        heap = self._heap
        pop = heapq.heappop
        while heap:
            t, _, fn, flow = pop(heap)
            if t > end:
                break
            fn(t, flow)
        return RunResult(
            self.profile, [f.trace for f in self._flows], [d for _, d in self._link.queue_samples]
        )

    # media in

    def _on_frame(self, now: float, flow: _Flow) -> None:
        self._at(now + 1.0 / FPS, self._on_frame, flow)
        frames = flow.publisher.frame(now)
        if flow.pending is not None and frames[flow.pending][1]:
            flow.forwarded = flow.pending
            flow.pending = None
        if flow.forwarded is not None:
            size, _ = frames[flow.forwarded]
            for part in packetize(size):
                flow.pacer.enqueue(flow.forwarded, part, PacketKind.VIDEO)
            self._kick(now, flow)

    def _on_audio(self, now: float, flow: _Flow) -> None:
        self._at(now + AUDIO_INTERVAL_S, self._on_audio, flow)
        flow.pacer.enqueue(AUDIO, AUDIO_PACKET_BYTES, PacketKind.AUDIO)
        self._kick(now, flow)

    # pacing and the link

    def _kick(self, now: float, flow: _Flow) -> None:
        t = flow.pacer.next_send_time(now=now)
        if t is not None and (flow.wake_at is None or t < flow.wake_at):
            flow.wake_at = t
            self._at(t, self._on_pacer, flow)

    def _on_pacer(self, now: float, flow: _Flow) -> None:
        if flow.wake_at != now:
            return  # superseded by an earlier wake-up
        flow.wake_at = None
        pacer = flow.pacer
        link = self._link
        controller = flow.controller
        trace = flow.trace
        while True:
            release = pacer.pop(now=now)
            if release is None:
                break
            seq = len(flow.sent)
            is_audio = release.kind is PacketKind.AUDIO
            flow.sent.append((now, release.size, release.probe_cluster, is_audio))
            if release.probe_cluster is not None:
                controller.on_probe_sent(release.probe_cluster, release.size, now=now)
            if is_audio:
                trace.audio_sent += 1
                trace.audio_send_times.append(now)
            trace.sent_bytes += release.size
            flow.send_log.append((now, release.size))
            flow.send_log_bytes += release.size
            arrival = link.send(flow.idx, release.size, now)
            if arrival is not None:
                flow.arrivals.append((arrival, seq))
            elif is_audio:
                trace.audio_lost += 1
        self._kick(now, flow)

    # feedback and control

    def _on_feedback_due(self, now: float, flow: _Flow) -> None:
        self._at(now + FEEDBACK_INTERVAL_S, self._on_feedback_due, flow)
        arrivals = flow.arrivals
        arrived: dict[int, float] = {}
        while arrivals and arrivals[0][0] <= now:
            at, seq = arrivals.popleft()
            arrived[seq] = at
        if not arrived:
            return
        last = max(arrived)
        sent = flow.sent
        results = []
        for seq in range(flow.reported, last + 1):
            send_time, size, cluster, _ = sent[seq]
            results.append(PacketResult(seq, send_time, size, arrived.get(seq), cluster))
        flow.reported = last + 1
        delay = self.profile.one_way_delay_ms / 1000.0
        self._at(now + delay, lambda t, f: self._apply(t, f, f.controller.on_feedback(results, now=t)), flow)

    def _on_timer(self, now: float, flow: _Flow) -> None:
        self._at(now + TIMER_INTERVAL_S, self._on_timer, flow)
        publisher = flow.publisher
        flowing = 0.0 if now >= FIRST_MEASURE_S else None
        layers = tuple(LayerState(publisher.measured_bps(i, now), flowing) for i in range(3))
        flow.controller.set_media(AUDIO_BPS, (VideoTrack(TRACK_ID, layers),))
        self._apply(now, flow, flow.controller.on_timer(now=now))

    def _apply(self, now: float, flow: _Flow, decision: Decision) -> None:
        previous = flow.decision
        flow.decision = decision
        flow.pacer.set_rate(decision.pacing_bps)
        trace = flow.trace
        trace.events.extend(decision.events)
        if decision.probe_result is not None:
            trace.probes += 1
            trace.probes_succeeded += decision.probe_result.succeeded
        target = decision.allocation.tracks[0].layer
        if (
            target is None
            and decision.fallback is FallbackState.VIDEO
            and previous is not None
            and previous.allocation.tracks[0].layer is not None
        ):
            trace.stalls += 1
        if target is None:
            flow.forwarded = flow.pending = None
        elif target != flow.forwarded and target != flow.pending:
            flow.pending = target
            flow.publisher.request_keyframe(target, at=now + PLI_DELAY_S)
        elif target == flow.forwarded:
            flow.pending = None
        if decision.probe is not None:
            flow.pacer.start_probe(decision.probe, now=now)
        self._kick(now, flow)

    def _on_sample(self, now: float, _: _Flow) -> None:
        self._at(now + SAMPLE_INTERVAL_S, self._on_sample, _)
        rates = []
        for flow in self._flows:
            log = flow.send_log
            while log and log[0][0] <= now - SEND_RATE_WINDOW_S:
                flow.send_log_bytes -= log.popleft()[1]
            rates.append(flow.send_log_bytes * 8.0 / SEND_RATE_WINDOW_S)
        link = self._link.capacity(now)
        others = sum(rates)
        queue = self._link.queue_delay(now)
        for flow, rate in zip(self._flows, rates):
            decision = flow.decision
            flow.trace.samples.append(
                Sample(
                    t=now,
                    # what the bottleneck leaves for this flow next to the others' current sending
                    capacity_bps=max(link - (others - rate), 0.0),
                    link_bps=link,
                    estimate_bps=decision.target_bps if decision else 0.0,
                    send_bps=rate,
                    layer=decision.allocation.tracks[0].layer if decision else None,
                    forwarded=flow.forwarded,
                    fallback=decision.fallback if decision else FallbackState.VIDEO,
                    queue_delay_s=queue,
                )
            )


def simulate(profile: Profile, *, config: ControllerConfig | None = None) -> RunResult:
    return Simulation(profile, config=config).run()


__all__ = ["AudioOnlyEntered", "RunResult", "Sample", "Simulation", "simulate"]
