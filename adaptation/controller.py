"""One subscriber's downlink adaptation: estimator, prober, fallback and allocator wired together.

The media plane (and the simulator) calls `on_feedback` with each transport-wide feedback report and
`on_timer` about every 100 ms, applies the returned `Decision` (layers, pacer target, probe to start) and
forwards its events.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from adaptation.allocator import Allocation, Allocator, AllocatorConfig, PauseReason, VideoTrack
from adaptation.estimator import BandwidthEstimator, EstimatorConfig
from adaptation.events import FallbackEvent
from adaptation.fallback import Fallback, FallbackConfig, FallbackState
from adaptation.prober import ProbeCluster, Prober, ProberConfig, ProbeResult
from adaptation.types import CongestionState, PacketResult

# `on_update` skips a decision that would repeat the last one (see `_steady`): the estimate moved less than
# this fraction (the allocator ignores changes under 15 %, AllocatorConfig.estimate_deadband) and the last
# decision is younger than this. A steady subscriber then costs one decision per 0.5 s instead of ten.
STEADY_BAND = 0.05
STEADY_RECHECK_S = 0.5


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    prober: ProberConfig = field(default_factory=ProberConfig)
    allocator: AllocatorConfig = field(default_factory=AllocatorConfig)
    fallback: FallbackConfig = field(default_factory=FallbackConfig)
    # The pacer drains at most 1.25 x what the allocation sends (and never faster than the target), so a
    # keyframe leaves as a short, mild burst instead of at the full estimate, which may be stale and
    # above the path's capacity while we are application-limited.
    pacing_headroom: float = 1.25
    # An up-switch that a probe allowed and that is undone by a down-switch within this time counts as a
    # misleading probe (the prober then asks for a margin); one that lasts this long is trusted.
    up_switch_trial_s: float = 2.0


@dataclass(frozen=True, slots=True)
class Decision:
    allocation: Allocation
    target_bps: float
    pacing_bps: float
    state: CongestionState
    fallback: FallbackState
    probe: ProbeCluster | None  # start this cluster now (hand it to the pacer)
    probe_result: ProbeResult | None  # a cluster that just finished, for logs and metrics
    events: tuple[FallbackEvent, ...]


class DownlinkController:
    """Owns the adaptation state of one subscriber transport."""

    __slots__ = (
        "_audio_bps",
        "_decided_at",
        "_decided_bps",
        "_headroom",
        "_lowest_bps",
        "_media_changed",
        "_path_bps",
        "_settled",
        "_tracks",
        "_trial",
        "_trial_s",
        "allocator",
        "estimator",
        "fallback",
        "prober",
    )

    def __init__(self, config: ControllerConfig = ControllerConfig()) -> None:
        self.estimator = BandwidthEstimator(config.estimator)
        self.prober = Prober(config.prober)
        self.allocator = Allocator(config.allocator)
        self.fallback = Fallback(config.fallback)
        self._headroom = config.pacing_headroom
        self._trial_s = config.up_switch_trial_s
        self._trial: float | None = None  # when an up-switch that a probe allowed began its trial
        # The last rate a probe found the path saturated at; pacing stays under it, so a keyframe does not
        # overfill a path we have measured while the application-limited target creeps above it.
        self._path_bps: float | None = None
        self._audio_bps = 0.0
        self._tracks: tuple[VideoTrack, ...] = ()
        self._lowest_bps: float | None = None  # `_lowest_layer_bps` of `_tracks`, kept with them
        # What `_steady` compares with: the last decision's time and estimate, whether it left every track
        # settled, and whether the media changed since.
        self._decided_at = -math.inf
        self._decided_bps = 0.0
        self._settled = False
        self._media_changed = True

    def set_media(self, audio_bps: float, tracks: Sequence[VideoTrack]) -> None:
        """The measured audio rate and the subscribed video tracks' measured layers."""
        if abs(audio_bps - self._audio_bps) > STEADY_BAND * self._audio_bps:
            self._media_changed = True
        self._audio_bps = audio_bps
        new = tuple(tracks)
        old = self._tracks
        # The media plane hands back the same objects while its meters have not moved.
        if len(new) != len(old) or any(n is not o for n, o in zip(new, old)):
            self._lowest_bps = _lowest_layer_bps(new)
            self._media_changed = True
        self._tracks = new

    def on_feedback(self, results: Sequence[PacketResult], *, now: float) -> Decision:
        self.estimator.on_packet_results(results, now=now)
        return self._decide(self.prober.on_packet_results(results, now=now), now)

    def on_timer(self, *, now: float) -> Decision:
        return self._decide(self.prober.on_timer(now=now), now)

    def on_update(self, results: Sequence[PacketResult], *, now: float) -> Decision | None:
        """`on_feedback` and `on_timer` as one decision, for a shell that wakes for either: the timer's only
        work of its own is the prober's timeout, which a cluster just completed by this feedback skips.

        None when the last decision still stands (`_steady`): the shell has nothing to apply.
        """
        result: ProbeResult | None = None
        if results:
            self.estimator.on_packet_results(results, now=now)
            result = self.prober.on_packet_results(results, now=now)
        if result is None:
            result = self.prober.on_timer(now=now)
            if self._steady(now):
                return None
        return self._decide(result, now)

    def _steady(self, now: float) -> bool:
        """Whether a decision now would repeat the last one: every track has its top wanted layer with room
        (nothing to probe for, no grace running), nothing in flight, the estimate is NORMAL and within
        `STEADY_BAND` of the one decided on, the media is the same objects, and the last decision is under
        `STEADY_RECHECK_S` old (time-based rules: hold-offs, trials, the fallback's clocks)."""
        if not self._settled or self._media_changed or now - self._decided_at >= STEADY_RECHECK_S:
            return False
        estimator = self.estimator
        if estimator.state is not CongestionState.NORMAL or self.prober.in_flight:
            return False
        return abs(estimator.target_bps - self._decided_bps) <= STEADY_BAND * self._decided_bps

    def on_probe_sent(self, cluster_id: int, size: int, *, now: float) -> None:
        self.prober.on_probe_sent(cluster_id, size, now=now)

    def _decide(self, result: ProbeResult | None, now: float) -> Decision:
        estimator = self.estimator
        fallback = self.fallback
        events: list[FallbackEvent] = []
        proved: float | None = None
        if result is not None:
            if result.bps is not None:
                estimator.on_probe_result(result.bps, link_limited=result.link_limited, now=now)
                if result.link_limited:
                    self._path_bps = result.bps
                elif self._path_bps is not None and result.bps > self._path_bps:
                    self._path_bps = None
            if result.succeeded:
                proved = result.bps
            event = fallback.on_probe_result(result, now=now)
            if event is not None:
                events.append(event)
        audio = self._audio_bps
        target = estimator.target_bps
        lowest = self._lowest_bps
        previous = self.allocator.current
        if lowest is not None:
            # While congested, what the path delivers is the better measure of what fits (the target
            # steps down at most once per RTT and may still be above it).
            usable = target
            acked = estimator.acked_bps
            if estimator.state is CongestionState.CONGESTED and acked is not None:
                usable = min(target, acked)
            event = fallback.update(usable, audio, lowest, now=now)
            if event is not None:
                events.append(event)
        allocation = self.allocator.allocate(
            target,
            audio,
            self._tracks,
            now=now,
            probe_proved_bps=proved,
            audio_only=fallback.state is not FallbackState.VIDEO,
            grace=fallback.state is FallbackState.VIDEO,
        )
        self._judge_up_switch(previous, allocation, proved, now)
        total = allocation.total_bps
        probe = self._plan_probe(allocation, total, lowest, now)
        if probe is not None and fallback.state is FallbackState.AUDIO_ONLY:
            events.append(fallback.on_probe_started(probe, now=now))
        self._decided_at = now
        self._decided_bps = target
        self._media_changed = False
        self._settled = (
            fallback.state is FallbackState.VIDEO
            and probe is None
            and result is None
            and not events
            and self._trial is None
            and allocation.probe_goal_bps is None
            and _all_at_top(allocation, self._tracks)
        )
        return Decision(
            allocation,
            target,
            self._pacing_bps(target, total),
            estimator.state,
            fallback.state,
            probe,
            result,
            tuple(events),
        )

    def _pacing_bps(self, target: float, total_bps: float) -> float:
        rate = min(target, self._headroom * total_bps)
        if self._path_bps is not None:
            rate = min(rate, self._path_bps)
        return max(rate, total_bps)

    def _judge_up_switch(
        self, previous: Allocation | None, allocation: Allocation, proved: float | None, now: float
    ) -> None:
        if previous is None:
            return
        if self._trial is None and proved is None:
            return  # nothing to start and no trial to judge
        before = {t.track_id: t.layer for t in previous.tracks}
        went_up = went_down = False
        for t in allocation.tracks:
            old, new = before.get(t.track_id), t.layer
            if old is None or new is None:
                went_down |= old is not None and new is None
                continue
            went_up |= new > old
            went_down |= new < old
        if went_up and proved is not None:
            self._trial = now
        elif self._trial is not None:
            started = self._trial
            if went_down and now - started < self._trial_s:
                self.prober.on_misled(now=now)
                self._trial = None
            elif now - started >= self._trial_s:
                self.prober.on_up_switch_held()
                self._trial = None

    def _plan_probe(
        self, allocation: Allocation, total_bps: float, lowest: float | None, now: float
    ) -> ProbeCluster | None:
        if self.prober.in_flight or self.estimator.state is CongestionState.CONGESTED:
            return None
        urgent = False
        if self.fallback.state is FallbackState.VIDEO:
            goal = allocation.probe_goal_bps
            if goal is None:
                return None
            # video is wanted but short of the estimate: kept on grace, or stopped for lack of bandwidth
            for t in allocation.tracks:
                if t.over_budget or t.paused is PauseReason.INSUFFICIENT_BANDWIDTH:
                    urgent = True
                    break
        elif lowest is not None:
            goal = self.fallback.probe_goal(self._audio_bps, lowest, now=now)
        else:
            goal = None
        if goal is None:
            return None
        return self.prober.plan(goal, total_bps, now=now, urgent=urgent)


def _lowest_layer_bps(tracks: Sequence[VideoTrack]) -> float | None:
    """The lowest flowing layer of the highest-priority track that has one: what video needs at least."""
    best: VideoTrack | None = None
    for track in tracks:
        flowing = any(layer.flowing_since is not None for layer in track.layers)
        if flowing and (best is None or track.priority < best.priority):
            best = track
    if best is None:
        return None
    return next(layer.bitrate_bps for layer in best.layers if layer.flowing_since is not None)


def _all_at_top(allocation: Allocation, tracks: tuple[VideoTrack, ...]) -> bool:
    """Every track forwards its highest flowing layer, within budget: no decision can raise anything."""
    if len(allocation.tracks) != len(tracks):
        return False
    for granted, track in zip(allocation.tracks, tracks):
        top = max((i for i, layer in enumerate(track.layers) if layer.flowing_since is not None), default=None)
        if granted.track_id != track.track_id or granted.layer != top or granted.over_budget:
            return False
    return True
