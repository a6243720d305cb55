"""Events of the audio-only fallback, for the media plane to turn into messages and counters."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FallbackReason(str, enum.Enum):
    BANDWIDTH_TOO_LOW = "bandwidth_too_low"  # estimate - audio stayed under 1.1 x the lowest layer
    HOLD_ELAPSED = "hold_elapsed"  # the minimum time in audio-only has passed: try to come back
    PROBE_SUCCEEDED = "probe_succeeded"  # a probe proved room for the lowest layer plus audio
    PROBE_FAILED = "probe_failed"  # the probe did not prove room (its failure says why)


@dataclass(frozen=True, slots=True)
class AudioOnlyEntered:
    """Video paused for this subscriber; audio keeps flowing."""

    at: float
    reason: FallbackReason
    estimate_bps: float
    needed_bps: float  # what the lowest layer plus audio needs with its margin


@dataclass(frozen=True, slots=True)
class ProbingBackStarted:
    at: float
    reason: FallbackReason
    probe_bps: float
    goal_bps: float


@dataclass(frozen=True, slots=True)
class ProbingBackFailed:
    """Still audio-only: the probe did not prove room."""

    at: float
    reason: FallbackReason
    measured_bps: float | None
    detail: str  # the probe's failure, e.g. "below_goal"


@dataclass(frozen=True, slots=True)
class VideoResumed:
    at: float
    reason: FallbackReason
    measured_bps: float
    paused_for_s: float


FallbackEvent = AudioOnlyEntered | ProbingBackStarted | ProbingBackFailed | VideoResumed
