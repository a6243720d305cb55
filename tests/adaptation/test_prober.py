from __future__ import annotations

import pytest

from adaptation.prober import ProbeCluster, ProbeFailure, Prober, ProberConfig
from adaptation.types import PacketResult


@pytest.mark.parametrize(
    ("goal", "current", "target"),
    [
        (1_540_000, 540_000, 540_000 + 1.2 * 1_000_000),  # next layer: 1.2 x the missing rate
        (190_000, 40_000, 40_000 + 200_000),  # at least 200 kbps above what is sent
    ],
)
def test_cluster_rate_and_shape(goal: float, current: float, target: float) -> None:
    cluster = Prober().plan(goal, current, now=0.0)
    assert cluster is not None
    assert cluster.target_bps == pytest.approx(target)
    assert cluster.goal_bps == goal
    assert cluster.min_packets >= 5
    assert cluster.duration_s >= 0.015 - 1e-9
    assert cluster.spacing_s >= 0.002


def send_cluster(prober: Prober, cluster: ProbeCluster, start: float, recv_bps: float) -> list[PacketResult]:
    """Send the cluster at its rate; the path delivers at `recv_bps` (a saturated link when lower)."""
    results = []
    t = start
    arrival = start + 0.05
    for i in range(cluster.min_packets):
        prober.on_probe_sent(cluster.cluster_id, cluster.packet_size, now=t)
        arrival = max(arrival, t + 0.05) + cluster.packet_size * 8 / recv_bps
        results.append(PacketResult(100 + i, t, cluster.packet_size, arrival, cluster.cluster_id))
        t += cluster.packet_size * 8 / cluster.target_bps
    return results


def test_result_is_the_min_of_send_and_receive_rates() -> None:
    prober = Prober()
    cluster = prober.plan(1_540_000, 540_000, now=1.0)
    assert cluster is not None
    result = prober.on_packet_results(send_cluster(prober, cluster, 1.0, 1_000_000), now=1.3)
    assert result is not None
    assert result.receive_bps == pytest.approx(1_000_000, rel=0.01)
    assert result.bps == pytest.approx(1_000_000, rel=0.01)
    assert result.link_limited
    assert result.failure is ProbeFailure.BELOW_GOAL


def test_success_when_the_path_keeps_up() -> None:
    prober = Prober()
    cluster = prober.plan(1_540_000, 540_000, now=1.0)
    assert cluster is not None
    result = prober.on_packet_results(send_cluster(prober, cluster, 1.0, 10_000_000), now=1.3)
    assert result is not None and result.succeeded
    assert result.bps == pytest.approx(cluster.target_bps, rel=0.02)
    assert not result.link_limited


def test_too_few_acknowledged_fails() -> None:
    prober = Prober()
    cluster = prober.plan(600_000, 200_000, now=0.0)
    assert cluster is not None
    results = send_cluster(prober, cluster, 0.0, 10_000_000)
    results = [
        r if i < 2 else PacketResult(r.seq, r.send_time, r.size, None, r.probe_cluster)
        for i, r in enumerate(results)
    ]
    result = prober.on_packet_results(results, now=0.3)
    assert result is not None and result.failure is ProbeFailure.TOO_FEW_ACKNOWLEDGED


def test_implausible_receive_rate_is_rejected() -> None:
    prober = Prober()
    cluster = prober.plan(600_000, 200_000, now=0.0)
    assert cluster is not None
    sent = send_cluster(prober, cluster, 0.0, 10_000_000)
    # every packet arrives within 1 microsecond: a receive rate far above twice the send rate
    squashed = [
        PacketResult(r.seq, r.send_time, r.size, 0.1 + i * 1e-6, r.probe_cluster) for i, r in enumerate(sent)
    ]
    result = prober.on_packet_results(squashed, now=0.3)
    assert result is not None and result.failure is ProbeFailure.IMPLAUSIBLE_RATIO


def test_back_off_after_short_probes_then_smaller_goal_and_urgent_retry() -> None:
    cfg = ProberConfig()
    prober = Prober(cfg)
    cluster = prober.plan(1_540_000, 540_000, now=0.0)
    assert cluster is not None
    prober.on_packet_results(send_cluster(prober, cluster, 0.0, 1_000_000), now=0.2)
    assert prober.plan(1_540_000, 540_000, now=3.1) is None  # 3 s back-off
    assert prober.plan(1_540_000, 540_000, now=3.3) is not None
    prober.on_packet_results([], now=4.5)  # times out, no feedback
    assert prober.plan(1_540_000, 540_000, now=4.6) is None
    # the lowest layer is a much smaller goal: not held back by the failures above
    assert prober.plan(190_000, 40_000, now=4.6) is not None


def test_timeout_without_feedback() -> None:
    prober = Prober()
    cluster = prober.plan(600_000, 200_000, now=0.0)
    assert cluster is not None
    prober.on_probe_sent(cluster.cluster_id, cluster.packet_size, now=0.0)
    assert prober.on_timer(now=0.5) is None
    result = prober.on_timer(now=1.1)
    assert result is not None and result.failure is ProbeFailure.TIMED_OUT
    assert not prober.in_flight


def test_misled_up_switch_demands_a_margin_until_one_holds() -> None:
    prober = Prober()
    prober.on_misled(now=0.0)
    cluster = prober.plan(1_000_000, 500_000, now=10.0)
    assert cluster is not None and cluster.goal_bps == pytest.approx(1_100_000)
    prober.on_timer(now=20.0)
    prober.on_up_switch_held()
    cluster = prober.plan(1_000_000, 500_000, now=30.0)
    assert cluster is not None and cluster.goal_bps == pytest.approx(1_000_000)
