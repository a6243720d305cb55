from __future__ import annotations

import pytest

from adaptation.estimator import BandwidthEstimator
from adaptation.types import CongestionState, PacketResult


def run_path(
    est: BandwidthEstimator,
    *,
    send_bps: float,
    capacity_bps: float,
    seconds: float,
    start: float = 0.0,
    seq: int = 0,
    loss_every: int = 0,
) -> tuple[float, int]:
    """1000-byte packets paced at `send_bps` through a FIFO at `capacity_bps`, 50 ms away; feedback every 100 ms."""
    size = 1000
    gap = size * 8 / send_bps
    service = size * 8 / capacity_bps
    t = start
    busy = start
    pending: list[PacketResult] = []
    next_feedback = start + 0.1
    while t < start + seconds:
        busy = max(busy, t) + service
        lost = loss_every and seq % loss_every == 0
        pending.append(PacketResult(seq, t, size, None if lost else busy + 0.05))
        seq += 1
        t += gap
        if t >= next_feedback:
            est.on_packet_results(pending, now=next_feedback + 0.05)
            pending = []
            next_feedback += 0.1
    return t, seq


def test_application_limited_rate_rises_to_throughput_cap_only() -> None:
    est = BandwidthEstimator()
    run_path(est, send_bps=400_000, capacity_bps=2_000_000, seconds=20)
    assert est.state is CongestionState.NORMAL
    assert est.target_bps == pytest.approx(1.5 * 400_000 + 10_000, rel=0.05)


def test_overuse_cuts_to_085_of_acknowledged_rate() -> None:
    est = BandwidthEstimator()
    est.on_probe_result(1_500_000, link_limited=False, now=0.0)
    t, seq = run_path(est, send_bps=1_200_000, capacity_bps=2_000_000, seconds=3)
    run_path(est, send_bps=1_200_000, capacity_bps=800_000, seconds=1.0, start=t, seq=seq)
    assert est.target_bps < 0.85 * 1_000_000
    assert est.target_bps > 0.5 * 800_000
    assert est.acked_bps == pytest.approx(800_000, rel=0.1)


def test_congested_state_while_the_queue_grows() -> None:
    est = BandwidthEstimator()
    states = set()
    t, seq = run_path(est, send_bps=500_000, capacity_bps=1_000_000, seconds=3)
    for i in range(8):
        t, seq = run_path(est, send_bps=1_200_000, capacity_bps=800_000, seconds=0.1, start=t, seq=seq)
        states.add(est.state)
    assert CongestionState.CONGESTED in states


def test_heavy_loss_cuts_the_target() -> None:
    est = BandwidthEstimator()
    est.on_probe_result(1_000_000, link_limited=False, now=0.0)
    run_path(est, send_bps=500_000, capacity_bps=5_000_000, seconds=3, loss_every=4)  # 25 % loss
    assert est.target_bps < 500_000
    assert est.state is CongestionState.CONGESTED


@pytest.mark.parametrize(
    ("before", "probe", "link_limited", "after"),
    [
        (300_000, 900_000, False, 900_000),  # a successful probe lifts the estimate
        (1_000_000, 900_000, False, 1_000_000),  # a probe that did not saturate is only a lower bound
        (1_000_000, 600_000, True, 600_000),  # a saturated probe measured the path: take it
    ],
)
def test_probe_results(before: float, probe: float, link_limited: bool, after: float) -> None:
    est = BandwidthEstimator()
    est.on_probe_result(before, link_limited=False, now=0.0)
    est.on_probe_result(before, link_limited=True, now=0.0)
    est.on_probe_result(probe, link_limited=link_limited, now=1.0)
    assert est.target_bps == pytest.approx(after)


def test_lost_packets_and_reordering_do_not_break_grouping() -> None:
    est = BandwidthEstimator()
    results = [
        PacketResult(0, 0.000, 1200, 0.050),
        PacketResult(1, 0.010, 1200, None),
        PacketResult(2, 0.020, 1200, 0.071),
        PacketResult(3, 0.015, 1200, 0.072),  # sent before the current group: ignored for delay
        PacketResult(4, 0.030, 1200, 0.080),
    ]
    est.on_packet_results(results, now=0.2)
    snap = est.snapshot()
    assert snap.target_bps > 0
    assert snap.rtt_s > 0
