"""Audio-only fallback per subscriber: video -> audio-only -> probing back -> video (DESIGN.md section 4)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from adaptation.events import (
    AudioOnlyEntered,
    FallbackEvent,
    FallbackReason,
    ProbingBackFailed,
    ProbingBackStarted,
    VideoResumed,
)
from adaptation.prober import ProbeCluster, ProbeResult


class FallbackState(str, enum.Enum):
    VIDEO = "video"
    AUDIO_ONLY = "audio_only"
    PROBING_BACK = "probing_back"


@dataclass(frozen=True, slots=True)
class FallbackConfig:
    enter_margin: float = 1.1  # pause when estimate - audio < 1.1 x lowest layer ... (DESIGN 4)
    enter_after_s: float = 1.5  # ... for 1.5 s (DESIGN 4)
    probe_margin: float = 1.2  # come back after a probe at 1.2 x lowest layer + audio succeeds (DESIGN 4)
    min_audio_only_s: float = 5.0  # at least 5 s in audio-only (DESIGN 4)
    # Flap guard: a pause that starts within `flap_window_s` of the previous one doubles the minimum
    # time in audio-only, up to `max_audio_only_s`, so a link that keeps dipping settles in audio-only.
    flap_window_s: float = 30.0  # DESIGN 4: more than one pause per 30 s is a defect
    max_audio_only_s: float = 30.0


class Fallback:
    """Decides when a subscriber's video pauses and when it may come back; every transition is an event."""

    __slots__ = ("_cfg", "_entered_at", "_goal", "_hold_s", "_last_pause", "_under_since", "state")

    def __init__(self, config: FallbackConfig = FallbackConfig()) -> None:
        self._cfg = config
        self.state = FallbackState.VIDEO
        self._under_since: float | None = None
        self._entered_at = 0.0
        self._hold_s = config.min_audio_only_s
        self._last_pause: float | None = None
        self._goal = 0.0

    def update(
        self, estimate_bps: float, audio_bps: float, lowest_layer_bps: float, *, now: float
    ) -> FallbackEvent | None:
        """Check the entry rule with the current estimate; returns an event on entering audio-only."""
        if self.state is not FallbackState.VIDEO:
            return None
        cfg = self._cfg
        if estimate_bps - audio_bps >= cfg.enter_margin * lowest_layer_bps:
            self._under_since = None
            return None
        if self._under_since is None:
            self._under_since = now
        if now - self._under_since < cfg.enter_after_s:
            return None
        self.state = FallbackState.AUDIO_ONLY
        self._under_since = None
        self._entered_at = now
        if self._last_pause is not None and now - self._last_pause < cfg.flap_window_s:
            self._hold_s = min(self._hold_s * 2.0, cfg.max_audio_only_s)
        else:
            self._hold_s = cfg.min_audio_only_s
        self._last_pause = now
        return AudioOnlyEntered(
            at=now,
            reason=FallbackReason.BANDWIDTH_TOO_LOW,
            estimate_bps=estimate_bps,
            needed_bps=audio_bps + cfg.enter_margin * lowest_layer_bps,
        )

    def probe_goal(self, audio_bps: float, lowest_layer_bps: float, *, now: float) -> float | None:
        """The rate a probe must prove to resume video, once the minimum audio-only time has passed."""
        if self.state is not FallbackState.AUDIO_ONLY or now - self._entered_at < self._hold_s:
            return None
        return audio_bps + self._cfg.probe_margin * lowest_layer_bps

    def on_probe_started(self, cluster: ProbeCluster, *, now: float) -> FallbackEvent:
        self.state = FallbackState.PROBING_BACK
        self._goal = cluster.goal_bps
        return ProbingBackStarted(
            at=now,
            reason=FallbackReason.HOLD_ELAPSED,
            probe_bps=cluster.target_bps,
            goal_bps=cluster.goal_bps,
        )

    def on_probe_result(self, result: ProbeResult, *, now: float) -> FallbackEvent | None:
        if self.state is not FallbackState.PROBING_BACK:
            return None
        if result.succeeded and result.bps is not None and result.bps >= self._goal:
            self.state = FallbackState.VIDEO
            return VideoResumed(
                at=now,
                reason=FallbackReason.PROBE_SUCCEEDED,
                measured_bps=result.bps,
                paused_for_s=now - self._entered_at,
            )
        self.state = FallbackState.AUDIO_ONLY
        detail = result.failure.value if result.failure is not None else "below_goal"
        return ProbingBackFailed(
            at=now, reason=FallbackReason.PROBE_FAILED, measured_bps=result.bps, detail=detail
        )
