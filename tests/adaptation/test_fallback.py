from __future__ import annotations

import dataclasses

import pytest

from adaptation.events import (
    AudioOnlyEntered,
    FallbackReason,
    ProbingBackFailed,
    ProbingBackStarted,
    VideoResumed,
)
from adaptation.fallback import Fallback, FallbackState
from adaptation.prober import ProbeFailure, Prober, ProbeResult

AUDIO = 40_000.0
LOWEST = 150_000.0
SHORT = AUDIO + 1.1 * LOWEST - 1  # just under the entry threshold


def result(bps: float, goal: float, failure: ProbeFailure | None = None) -> ProbeResult:
    return ProbeResult(1, bps, goal, bps, bps, bps, False, failure)


@pytest.mark.parametrize(
    ("samples", "entered"),
    [
        ([(0.0, SHORT), (1.4, SHORT)], False),  # not yet 1.5 s
        ([(0.0, SHORT), (1.5, SHORT)], True),
        ([(0.0, SHORT), (1.0, SHORT + 10), (2.0, SHORT)], False),  # the timer restarts when it recovers
        ([(0.0, 1_000_000), (5.0, 1_000_000)], False),
    ],
)
def test_entry_needs_1_5_s_under_1_1_x_lowest_plus_audio(
    samples: list[tuple[float, float]], entered: bool
) -> None:
    fb = Fallback()
    events = [fb.update(est, AUDIO, LOWEST, now=t) for t, est in samples]
    assert (fb.state is FallbackState.AUDIO_ONLY) is entered
    if entered:
        event = events[-1]
        assert isinstance(event, AudioOnlyEntered)
        assert event.reason is FallbackReason.BANDWIDTH_TOO_LOW
        assert event.needed_bps == pytest.approx(AUDIO + 1.1 * LOWEST)


def enter(fb: Fallback, at: float) -> None:
    fb.update(SHORT, AUDIO, LOWEST, now=at)
    fb.update(SHORT, AUDIO, LOWEST, now=at + 1.5)
    assert fb.state is FallbackState.AUDIO_ONLY


def test_probe_back_after_at_least_5_s_and_resume_on_success() -> None:
    fb = Fallback()
    enter(fb, 10.0)
    assert fb.probe_goal(AUDIO, LOWEST, now=16.4) is None
    goal = fb.probe_goal(AUDIO, LOWEST, now=16.5)
    assert goal == pytest.approx(AUDIO + 1.2 * LOWEST)
    cluster = Prober().plan(goal, AUDIO, now=16.5)
    assert cluster is not None
    started = fb.on_probe_started(cluster, now=16.5)
    assert isinstance(started, ProbingBackStarted) and fb.state is FallbackState.PROBING_BACK
    resumed = fb.on_probe_result(result(goal + 1, goal), now=16.8)
    assert isinstance(resumed, VideoResumed)
    assert resumed.reason is FallbackReason.PROBE_SUCCEEDED
    assert resumed.paused_for_s == pytest.approx(5.3)
    assert fb.state is FallbackState.VIDEO


def test_failed_probe_back_stays_audio_only() -> None:
    fb = Fallback()
    enter(fb, 0.0)
    cluster = Prober().plan(AUDIO + 1.2 * LOWEST, AUDIO, now=7.0)
    assert cluster is not None
    fb.on_probe_started(cluster, now=7.0)
    event = fb.on_probe_result(result(120_000, cluster.goal_bps, ProbeFailure.BELOW_GOAL), now=7.2)
    assert isinstance(event, ProbingBackFailed)
    assert event.detail == "below_goal" and event.measured_bps == 120_000
    assert fb.state is FallbackState.AUDIO_ONLY


def test_second_pause_within_30_s_doubles_the_hold() -> None:
    fb = Fallback()
    enter(fb, 0.0)
    cluster = Prober().plan(AUDIO + 1.2 * LOWEST, AUDIO, now=7.0)
    assert cluster is not None
    fb.on_probe_started(cluster, now=7.0)
    fb.on_probe_result(result(300_000, cluster.goal_bps), now=7.2)
    enter(fb, 10.0)
    assert fb.probe_goal(AUDIO, LOWEST, now=11.5 + 9.9) is None
    assert fb.probe_goal(AUDIO, LOWEST, now=11.5 + 10.0) is not None


def test_events_are_frozen() -> None:
    event = AudioOnlyEntered(
        at=1.0, reason=FallbackReason.BANDWIDTH_TOO_LOW, estimate_bps=1.0, needed_bps=2.0
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.at = 2.0  # type: ignore[misc]
