"""Per-subscriber downlink adaptation for the SFU, sans-I/O: every call takes `now`, nothing reads a clock.

From transport-wide feedback it estimates each subscriber's bandwidth (GCC-style delay-based estimator and a
loss-based one, combined as the minimum), probes for more when a higher layer is wanted, paces what leaves,
allocates a simulcast layer per video track with audio reserved first, and falls back to audio-only when
even the lowest layer does not fit. `adaptation.sim` runs it all on a simulated network. Imports nothing
from `sfu` or `signalling`.
"""

from adaptation.allocator import Allocation, Allocator, LayerState, PauseReason, TrackAllocation, VideoTrack
from adaptation.controller import ControllerConfig, Decision, DownlinkController
from adaptation.estimator import BandwidthEstimator, Estimate, EstimatorConfig
from adaptation.events import (
    AudioOnlyEntered,
    FallbackEvent,
    FallbackReason,
    ProbingBackFailed,
    ProbingBackStarted,
    VideoResumed,
)
from adaptation.fallback import Fallback, FallbackState
from adaptation.pacer import Pacer, PacketKind, Release
from adaptation.prober import ProbeCluster, ProbeFailure, Prober, ProbeResult
from adaptation.types import CongestionState, PacketResult

__all__ = [
    "Allocation",
    "Allocator",
    "AudioOnlyEntered",
    "BandwidthEstimator",
    "CongestionState",
    "ControllerConfig",
    "Decision",
    "DownlinkController",
    "Estimate",
    "EstimatorConfig",
    "Fallback",
    "FallbackEvent",
    "FallbackReason",
    "FallbackState",
    "LayerState",
    "Pacer",
    "PacketKind",
    "PacketResult",
    "PauseReason",
    "ProbeCluster",
    "ProbeFailure",
    "ProbeResult",
    "Prober",
    "ProbingBackFailed",
    "ProbingBackStarted",
    "Release",
    "TrackAllocation",
    "VideoResumed",
    "VideoTrack",
]
