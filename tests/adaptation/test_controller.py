"""`DownlinkController.on_update`: feedback and timer work in one decision (what the media plane calls)."""

from __future__ import annotations

import pytest

from adaptation import ControllerConfig, DownlinkController, LayerState, VideoTrack
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
    twin, merged = controller(), controller()
    seq = 0
    for step in range(40):
        t = step * 0.1
        results = feedback(seq, t)
        seq += len(results)
        now = t + 0.1
        twin.on_feedback(results, now=now)
        expected = twin.on_timer(now=now)
        got = merged.on_update(results, now=now)
        assert got.target_bps == pytest.approx(expected.target_bps)
        assert got.allocation.tracks == expected.allocation.tracks
        assert got.state is expected.state and got.fallback is expected.fallback


def test_update_without_feedback_times_out_a_probe() -> None:
    c = controller()
    cluster = c.prober.plan(2_000_000, 500_000, now=0.0)
    assert cluster is not None
    c.on_probe_sent(cluster.cluster_id, cluster.packet_size, now=0.0)
    assert c.on_update([], now=0.5).probe_result is None
    result = c.on_update([], now=1.1).probe_result
    assert result is not None and result.failure is ProbeFailure.TIMED_OUT


def test_update_reports_the_cluster_its_feedback_completes() -> None:
    c = controller()
    cluster = c.prober.plan(2_000_000, 500_000, now=0.0)
    assert cluster is not None
    results = send_cluster(c.prober, cluster, 0.0, 3_000_000)
    decision = c.on_update(results, now=0.3)
    assert decision.probe_result is not None and decision.probe_result.cluster_id == cluster.cluster_id
    assert decision.probe_result.failure is None
    assert not c.prober.in_flight
