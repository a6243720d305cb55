"""`DownlinkController.on_update`: feedback and timer work in one decision (what the media plane calls)."""

from __future__ import annotations

import pytest

from adaptation import ControllerConfig, DownlinkController, LayerState, VideoTrack
from adaptation.controller import STEADY_BAND, STEADY_RECHECK_S
from adaptation.prober import ProbeFailure
from adaptation.types import PacketResult
from tests.adaptation.test_prober import send_cluster

LAYERS = (LayerState(150_000, 0.0), LayerState(500_000, 0.0), LayerState(1_500_000, 0.0))


def controller() -> DownlinkController:
    c = DownlinkController(ControllerConfig())
    c.set_media(32_000, (VideoTrack("v", LAYERS),))
    return c


def feedback(start_seq: int, t: float, n: int = 20, size: int = 1_000) -> list[PacketResult]:
    """`n` packets sent 5 ms apart from `t`, each arriving 40 ms later (an idle path)."""
    return [PacketResult(start_seq + i, t + i * 0.005, size, t + i * 0.005 + 0.04) for i in range(n)]


def test_update_decides_as_feedback_then_timer_would() -> None:
    """Where `on_update` skips a decision, the one that stands is what feedback + timer would decide."""
    twin, merged = controller(), controller()
    seq = 0
    standing = None
    skipped = 0
    for step in range(300):
        t = step * 0.1
        results = feedback(seq, t)
        seq += len(results)
        now = t + 0.1
        twin.on_feedback(results, now=now)
        expected = twin.on_timer(now=now)
        got = merged.on_update(results, now=now)
        if got is None:
            skipped += 1
            assert standing is not None
            assert merged.estimator.target_bps == pytest.approx(expected.target_bps)
            assert abs(standing.target_bps - expected.target_bps) <= STEADY_BAND * standing.target_bps
        else:
            standing = got
            assert got.target_bps == pytest.approx(expected.target_bps)
        assert standing is not None
        assert standing.allocation.tracks == expected.allocation.tracks
        assert standing.state is expected.state and standing.fallback is expected.fallback
    assert skipped > 0  # the idle path settles: most of these updates repeat the standing decision


def test_steady_update_decides_again_when_something_moves() -> None:
    c = controller()
    seq, t = 0, 0.0
    standing = None
    while standing is None or standing.allocation.probe_goal_bps is not None or not all(
        a.layer == 2 for a in standing.allocation.tracks
    ):  # ramp up until the top layer is granted and nothing is left to probe for
        results = feedback(seq, t)
        seq, t = seq + len(results), t + 0.1
        standing = c.on_update(results, now=t) or standing
        if c.prober.in_flight:  # answer probes at once: the path has room
            c.prober.on_timer(now=t + 10)
        assert t < 60, "never settled"
    results = feedback(seq, t)
    seq, t = seq + len(results), t + 0.1
    assert c.on_update(results, now=t) is None  # settled: nothing to decide
    # New media objects (a layer's measured rate moved): decide again.
    c.set_media(32_000, (VideoTrack("v", LAYERS),))
    assert c.on_update([], now=t + 0.01) is not None
    # And without any change, at least every STEADY_RECHECK_S.
    assert c.on_update([], now=t + 0.02) is None
    assert c.on_update([], now=t + 0.01 + STEADY_RECHECK_S) is not None


def test_update_without_feedback_times_out_a_probe() -> None:
    c = controller()
    cluster = c.prober.plan(2_000_000, 500_000, now=0.0)
    assert cluster is not None
    c.on_probe_sent(cluster.cluster_id, cluster.packet_size, now=0.0)
    first = c.on_update([], now=0.5)
    assert first is not None and first.probe_result is None
    decision = c.on_update([], now=1.1)
    assert decision is not None and decision.probe_result is not None
    assert decision.probe_result.failure is ProbeFailure.TIMED_OUT


def test_update_reports_the_cluster_its_feedback_completes() -> None:
    c = controller()
    cluster = c.prober.plan(2_000_000, 500_000, now=0.0)
    assert cluster is not None
    results = send_cluster(c.prober, cluster, 0.0, 3_000_000)
    decision = c.on_update(results, now=0.3)
    assert decision is not None and decision.probe_result is not None and decision.probe_result.cluster_id == cluster.cluster_id
    assert decision.probe_result.failure is None
    assert not c.prober.in_flight
