"""Per-subscriber layer allocation: audio first, then video layers in priority order, computed then committed.

Hysteresis (DESIGN.md section 4): a layer must have been flowing for 2 s before we switch up to it; after a
bandwidth downgrade no upgrade for 10 s unless a probe proved room; estimate changes under 15 % are
ignored while the committed allocation still fits.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class PauseReason(str, enum.Enum):
    """Why a video track gets no layer."""

    INSUFFICIENT_BANDWIDTH = "insufficient_bandwidth"  # not even the lowest layer fits the estimate
    AUDIO_ONLY = "audio_only"  # the subscriber is in audio-only fallback
    NO_LAYER_FLOWING = "no_layer_flowing"  # the publisher sends nothing we could forward


@dataclass(frozen=True, slots=True)
class LayerState:
    """One simulcast layer as measured at the SFU's ingress."""

    bitrate_bps: float
    flowing_since: float | None  # None while the publisher is not sending this layer


@dataclass(frozen=True, slots=True)
class VideoTrack:
    """A subscribed video track with its layers, lowest first. Lower `priority` values are served first."""

    track_id: str
    layers: tuple[LayerState, ...]
    priority: int = 0


@dataclass(frozen=True, slots=True)
class TrackAllocation:
    track_id: str
    layer: int | None  # index into the track's layers; None when paused
    bitrate_bps: float
    paused: PauseReason | None = None
    # The lowest layer kept although it does not fit: the fallback's grace period (DESIGN 4 pauses video
    # only after the estimate has been short for 1.5 s).
    over_budget: bool = False


@dataclass(frozen=True, slots=True)
class Allocation:
    """A committed decision. `probe_goal_bps` is the total rate the next step up needs, if any."""

    tracks: tuple[TrackAllocation, ...]
    estimate_bps: float
    audio_bps: float
    video_bps: float
    probe_goal_bps: float | None

    @property
    def total_bps(self) -> float:
        return self.audio_bps + self.video_bps

    def layer(self, track_id: str) -> int | None:
        for t in self.tracks:
            if t.track_id == track_id:
                return t.layer
        raise KeyError(track_id)


@dataclass(frozen=True, slots=True)
class AllocatorConfig:
    min_flowing_s: float = 2.0  # DESIGN 4; mediasoup StreamMinActiveMs
    upgrade_hold_after_downgrade_s: float = 10.0  # DESIGN 4; mediasoup BweDowngradeConservativeMs
    estimate_deadband: float = 0.15  # DESIGN 4; Jitsi bwe-change-threshold
    # Grace covers a shortfall of about one GCC back-off (x0.85) below the lowest layer, not a collapse:
    # when even 75 % of the lowest layer does not fit, video stops at once to protect audio.
    grace_floor: float = 0.75


class Allocator:
    """Chooses one layer per video track for one subscriber."""

    __slots__ = ("_cfg", "_committed", "_committed_estimate", "_last_downgrade")

    def __init__(self, config: AllocatorConfig = AllocatorConfig()) -> None:
        self._cfg = config
        self._committed: Allocation | None = None
        self._committed_estimate = 0.0
        self._last_downgrade: dict[str, float] = {}

    @property
    def current(self) -> Allocation | None:
        return self._committed

    def allocate(
        self,
        estimate_bps: float,
        audio_bps: float,
        tracks: Sequence[VideoTrack],
        *,
        now: float,
        probe_proved_bps: float | None = None,
        audio_only: bool = False,
        grace: bool = False,
    ) -> Allocation:
        """Compute an allocation for `estimate_bps` and commit it.

        `probe_proved_bps` is a probe result just obtained: it lifts the post-downgrade upgrade hold up
        to that rate. With `audio_only` every video track is paused. With `grace` a track that has video
        keeps its lowest layer even when that does not fit (marked `over_budget`); the caller bounds
        how long (the fallback pauses video 1.5 s later).
        """
        previous = self._committed
        candidate = self._compute(estimate_bps, audio_bps, tracks, now, probe_proved_bps, audio_only, grace)
        if (
            previous is not None
            and probe_proved_bps is None
            and self._keep(previous, candidate, tracks)
            and self._estimate_driven(candidate, audio_bps, tracks, now, audio_only, grace)
        ):
            candidate = self._refresh(previous, estimate_bps, audio_bps, tracks, candidate.probe_goal_bps)
        else:
            self._committed_estimate = estimate_bps
        self._commit(previous, candidate, now)
        return candidate

    def _keep(self, previous: Allocation, candidate: Allocation, tracks: Sequence[VideoTrack]) -> bool:
        """Whether the previous layers stand: same tracks, they still fit, and the estimate barely moved."""
        if [t.track_id for t in previous.tracks] != [t.track_id for t in candidate.tracks]:
            return False
        if any(p.paused is PauseReason.NO_LAYER_FLOWING for p in previous.tracks):
            return False
        if any(p.paused is PauseReason.AUDIO_ONLY for p in previous.tracks) != any(
            c.paused is PauseReason.AUDIO_ONLY for c in candidate.tracks
        ):
            return False
        video = 0.0
        for p, track in zip(previous.tracks, tracks):
            if p.layer is not None:
                if p.layer >= len(track.layers):
                    return False
                layer = track.layers[p.layer]
                if layer.flowing_since is None:
                    return False
                video += layer.bitrate_bps
        if video > candidate.estimate_bps - candidate.audio_bps:
            return False  # must go down now: never exceed the estimate
        if any(p.over_budget for p in previous.tracks):
            return False
        moved = abs(candidate.estimate_bps - self._committed_estimate)
        return moved < self._cfg.estimate_deadband * max(self._committed_estimate, 1.0)

    def _estimate_driven(
        self,
        candidate: Allocation,
        audio_bps: float,
        tracks: Sequence[VideoTrack],
        now: float,
        audio_only: bool,
        grace: bool,
    ) -> bool:
        """Whether the candidate differs from what the committed estimate would give now (the dead-band's
        business), rather than for another reason such as a layer that has now flowed long enough."""
        baseline = self._compute(self._committed_estimate, audio_bps, tracks, now, None, audio_only, grace)
        return [t.layer for t in baseline.tracks] != [t.layer for t in candidate.tracks]

    @staticmethod
    def _refresh(
        previous: Allocation,
        estimate_bps: float,
        audio_bps: float,
        tracks: Sequence[VideoTrack],
        probe_goal_bps: float | None,
    ) -> Allocation:
        kept = tuple(
            TrackAllocation(
                p.track_id,
                p.layer,
                track.layers[p.layer].bitrate_bps if p.layer is not None else 0.0,
                p.paused,
            )
            for p, track in zip(previous.tracks, tracks)
        )
        return Allocation(kept, estimate_bps, audio_bps, sum(t.bitrate_bps for t in kept), probe_goal_bps)

    def _compute(
        self,
        estimate_bps: float,
        audio_bps: float,
        tracks: Sequence[VideoTrack],
        now: float,
        probe_proved_bps: float | None,
        audio_only: bool,
        grace: bool,
    ) -> Allocation:
        cfg = self._cfg
        order = sorted(range(len(tracks)), key=lambda i: tracks[i].priority)
        chosen: list[TrackAllocation | None] = [None] * len(tracks)
        remaining = estimate_bps - audio_bps
        probe_goal: float | None = None
        previous = self._committed
        prev_layers = {t.track_id: t.layer for t in previous.tracks} if previous is not None else {}
        for i in order:
            track = tracks[i]
            if audio_only:
                chosen[i] = TrackAllocation(track.track_id, None, 0.0, PauseReason.AUDIO_ONLY)
                continue
            current = prev_layers.get(track.track_id)
            held = now - self._last_downgrade.get(track.track_id, -1e18) < cfg.upgrade_hold_after_downgrade_s
            best: int | None = None
            any_flowing = False
            for idx, layer in enumerate(track.layers):
                if layer.flowing_since is None:
                    continue
                any_flowing = True
                if layer.bitrate_bps > remaining:
                    break
                is_up = current is None or idx > current
                if is_up and current is not None and now - layer.flowing_since < cfg.min_flowing_s:
                    continue
                if is_up and current is not None and held:
                    proved = (
                        probe_proved_bps is not None
                        and estimate_bps - remaining + layer.bitrate_bps <= (probe_proved_bps)
                    )
                    if not proved:
                        continue
                best = idx
            lowest = next(
                (j for j, layer in enumerate(track.layers) if layer.flowing_since is not None), None
            )
            if (
                best is None
                and grace
                and current is not None
                and lowest is not None
                and remaining >= cfg.grace_floor * track.layers[lowest].bitrate_bps
            ):
                bitrate = track.layers[lowest].bitrate_bps
                remaining -= bitrate
                chosen[i] = TrackAllocation(track.track_id, lowest, bitrate, over_budget=True)
            elif best is None:
                reason = PauseReason.INSUFFICIENT_BANDWIDTH if any_flowing else PauseReason.NO_LAYER_FLOWING
                chosen[i] = TrackAllocation(track.track_id, None, 0.0, reason)
            else:
                bitrate = track.layers[best].bitrate_bps
                remaining -= bitrate
                chosen[i] = TrackAllocation(track.track_id, best, bitrate)
        allocations = tuple(a for a in chosen if a is not None)
        video = sum(a.bitrate_bps for a in allocations)
        if any(a.over_budget for a in allocations):
            probe_goal = audio_bps + video  # first prove that what is sent fits
        elif not audio_only:
            # The next step up: the highest-priority track that could go one layer higher.
            for i in order:
                a = allocations[i]
                nxt = self._next_layer(tracks[i], a.layer)
                if nxt is not None:
                    probe_goal = audio_bps + video - a.bitrate_bps + nxt
                    break
        return Allocation(allocations, estimate_bps, audio_bps, video, probe_goal)

    @staticmethod
    def _next_layer(track: VideoTrack, current: int | None) -> float | None:
        start = 0 if current is None else current + 1
        for layer in track.layers[start:]:
            if layer.flowing_since is not None:
                return layer.bitrate_bps
        return None

    def _commit(self, previous: Allocation | None, new: Allocation, now: float) -> None:
        if previous is not None:
            before = {t.track_id: t.layer for t in previous.tracks}
            for t in new.tracks:
                old = before.get(t.track_id)
                if (
                    old is not None
                    and (t.layer is None or t.layer < old)
                    and t.paused is not PauseReason.AUDIO_ONLY
                ):
                    self._last_downgrade[t.track_id] = now
        self._committed = new
