from __future__ import annotations

import pytest

from adaptation.loss import LossBasedEstimator


@pytest.mark.parametrize(
    ("lost", "expected"),
    [
        (0, 1.08 * 500_000 + 1_000),  # < 2 %: grow from the last second's minimum target
        (5, 500_000),  # 5 %: hold
        (20, 500_000 * (1 - 0.5 * 0.2)),  # > 10 %: cut by (1 - 0.5 p)
    ],
)
def test_loss_bands(lost: int, expected: float) -> None:
    est = LossBasedEstimator(start_bps=500_000)
    est.on_feedback(100 - lost, lost, 500_000, 0.1, now=1.0)
    assert est.bps == pytest.approx(expected)


def test_waits_for_enough_packets_and_cuts_at_most_once_per_300_ms_plus_rtt() -> None:
    est = LossBasedEstimator(start_bps=500_000)
    est.on_feedback(5, 5, 500_000, 0.1, now=1.0)  # 10 packets: not judged yet
    assert est.bps == 500_000
    est.on_feedback(5, 15, 500_000, 0.1, now=1.1)
    cut = est.bps
    assert cut < 500_000
    est.on_feedback(0, 30, cut, 0.1, now=1.2)
    assert est.bps == cut
    est.on_feedback(0, 30, cut, 0.1, now=1.6)
    assert est.bps < cut
