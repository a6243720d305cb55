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


# One track's choice while computing: (layer, bitrate_bps, paused, over_budget). Plain tuples, because the
# allocator runs about 20 times a second per subscriber and most candidates are never committed.
_Pick = tuple[int | None, float, PauseReason | None, bool]


class Allocator:
    """Chooses one layer per video track for one subscriber."""

    __slots__ = ("_cfg", "_committed", "_committed_estimate", "_committed_layers", "_last_downgrade")

    def __init__(self, config: AllocatorConfig = AllocatorConfig()) -> None:
        self._cfg = config
        self._committed: Allocation | None = None
        self._committed_estimate = 0.0
        self._committed_layers: dict[str, int | None] = {}  # of `_committed`, by track id
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
        order = _priority_order(tracks)
        picks = self._pick(estimate_bps, audio_bps, tracks, order, now, probe_proved_bps, audio_only, grace)
        video = sum(p[1] for p in picks)
        if (
            previous is not None
            and probe_proved_bps is None
            and self._keep(previous, estimate_bps, audio_bps, tracks, picks)
            and self._estimate_driven(picks, estimate_bps, audio_bps, tracks, order, now, audio_only, grace)
        ):
            probe_goal = self._probe_goal(picks, video, audio_bps, tracks, order, audio_only)
            candidate = self._refresh(previous, estimate_bps, audio_bps, tracks, probe_goal)
        else:
            self._committed_estimate = estimate_bps
            candidate = Allocation(
                tuple(
                    TrackAllocation(track.track_id, layer, bitrate, paused, over)
                    for track, (layer, bitrate, paused, over) in zip(tracks, picks)
                ),
                estimate_bps,
                audio_bps,
                video,
                self._probe_goal(picks, video, audio_bps, tracks, order, audio_only),
            )
        self._commit(candidate, now)
        return candidate

    def _keep(
        self,
        previous: Allocation,
        estimate_bps: float,
        audio_bps: float,
        tracks: Sequence[VideoTrack],
        picks: list[_Pick],
    ) -> bool:
        """Whether the previous layers stand: same tracks, they still fit, and the estimate barely moved."""
        kept = previous.tracks
        if len(kept) != len(tracks) or any(p.track_id != t.track_id for p, t in zip(kept, tracks)):
            return False
        audio_only = False
        video = 0.0
        for p in kept:
            paused = p.paused
            if paused is PauseReason.NO_LAYER_FLOWING:
                return False
            audio_only |= paused is PauseReason.AUDIO_ONLY
        if audio_only != any(pick[2] is PauseReason.AUDIO_ONLY for pick in picks):
            return False
        for p, track in zip(kept, tracks):
            if p.layer is not None:
                if p.layer >= len(track.layers):
                    return False
                layer = track.layers[p.layer]
                if layer.flowing_since is None:
                    return False
                video += layer.bitrate_bps
        if video > estimate_bps - audio_bps:
            return False  # must go down now: never exceed the estimate
        if any(p.over_budget for p in kept):
            return False
        moved = abs(estimate_bps - self._committed_estimate)
        return moved < self._cfg.estimate_deadband * max(self._committed_estimate, 1.0)

    def _estimate_driven(
        self,
        picks: list[_Pick],
        estimate_bps: float,
        audio_bps: float,
        tracks: Sequence[VideoTrack],
        order: Sequence[int],
        now: float,
        audio_only: bool,
        grace: bool,
    ) -> bool:
        """Whether the candidate differs from what the committed estimate would give now (the dead-band's
        business), rather than for another reason such as a layer that has now flowed long enough."""
        committed = self._committed_estimate
        if committed == estimate_bps:
            return False  # the same inputs give the same choice
        baseline = self._pick(committed, audio_bps, tracks, order, now, None, audio_only, grace)
        return any(b[0] != c[0] for b, c in zip(baseline, picks))

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

    def _pick(
        self,
        estimate_bps: float,
        audio_bps: float,
        tracks: Sequence[VideoTrack],
        order: Sequence[int],
        now: float,
        probe_proved_bps: float | None,
        audio_only: bool,
        grace: bool,
    ) -> list[_Pick]:
        """Each track's choice, in track order."""
        if audio_only:
            return [(None, 0.0, PauseReason.AUDIO_ONLY, False)] * len(tracks)
        cfg = self._cfg
        min_flowing = cfg.min_flowing_s
        grace_floor = cfg.grace_floor
        hold_s = cfg.upgrade_hold_after_downgrade_s
        last_downgrade = self._last_downgrade
        prev_layers = self._committed_layers
        chosen: list[_Pick] = [_NO_PICK] * len(tracks)
        remaining = estimate_bps - audio_bps
        for i in order:
            track = tracks[i]
            track_id = track.track_id
            current = prev_layers.get(track_id)
            best: int | None = None
            lowest: int | None = None
            idx = 0
            for layer in track.layers:
                since = layer.flowing_since
                if since is None:
                    idx += 1
                    continue
                if lowest is None:
                    lowest = idx
                bitrate = layer.bitrate_bps
                if bitrate > remaining:
                    break
                if current is not None and idx > current:
                    if now - since < min_flowing:
                        idx += 1
                        continue
                    # held: a downgrade less than upgrade_hold_after_downgrade_s ago
                    if now - last_downgrade.get(track_id, -1e18) < hold_s and not (
                        probe_proved_bps is not None
                        and estimate_bps - remaining + bitrate <= probe_proved_bps
                    ):
                        idx += 1
                        continue
                best = idx
                idx += 1
            if best is not None:
                bitrate = track.layers[best].bitrate_bps
                remaining -= bitrate
                chosen[i] = (best, bitrate, None, False)
                continue
            if lowest is None:
                # no layer flowing (a break above skipped none: the lowest flowing one is seen first)
                chosen[i] = (None, 0.0, PauseReason.NO_LAYER_FLOWING, False)
                continue
            bitrate = track.layers[lowest].bitrate_bps
            if grace and current is not None and remaining >= grace_floor * bitrate:
                remaining -= bitrate
                chosen[i] = (lowest, bitrate, None, True)
            else:
                chosen[i] = (None, 0.0, PauseReason.INSUFFICIENT_BANDWIDTH, False)
        return chosen

    @staticmethod
    def _probe_goal(
        picks: list[_Pick],
        video: float,
        audio_bps: float,
        tracks: Sequence[VideoTrack],
        order: Sequence[int],
        audio_only: bool,
    ) -> float | None:
        if any(p[3] for p in picks):
            return audio_bps + video  # first prove that what is sent fits
        if audio_only:
            return None
        # The next step up: the highest-priority track that could go one layer higher.
        for i in order:
            layer, bitrate, _, _ = picks[i]
            start = 0 if layer is None else layer + 1
            for above in tracks[i].layers[start:]:
                if above.flowing_since is not None:
                    return audio_bps + video - bitrate + above.bitrate_bps
        return None

    def _commit(self, new: Allocation, now: float) -> None:
        before = self._committed_layers
        layers: dict[str, int | None] = {}
        for t in new.tracks:
            layer = t.layer
            if self._committed is not None:
                old = before.get(t.track_id)
                if (
                    old is not None
                    and (layer is None or layer < old)
                    and t.paused is not PauseReason.AUDIO_ONLY
                ):
                    self._last_downgrade[t.track_id] = now
            layers[t.track_id] = layer
        self._committed = new
        self._committed_layers = layers


_NO_PICK: _Pick = (None, 0.0, None, False)


def _priority_order(tracks: Sequence[VideoTrack]) -> Sequence[int]:
    """Track indices, highest priority (lowest value) first; ties keep the subscription order."""
    n = len(tracks)
    for i in range(1, n):
        if tracks[i].priority < tracks[i - 1].priority:
            return sorted(range(n), key=lambda i: tracks[i].priority)
    return range(n)
