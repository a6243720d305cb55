from __future__ import annotations

import pytest

from adaptation.trendline import BandwidthUsage, Trendline, TrendlineConfig


def feed(trend: Trendline, deltas_ms: list[float], gap_ms: float = 20.0) -> list[BandwidthUsage]:
    """Groups sent every `gap_ms`; each arrives `delta` later than its send spacing."""
    out = []
    arrival = 1000.0
    for d in deltas_ms:
        arrival += gap_ms + d
        out.append(trend.update(gap_ms + d, gap_ms, arrival))
    return out


@pytest.mark.parametrize(
    ("deltas", "expected"),
    [
        ([0.0] * 40, BandwidthUsage.NORMAL),  # steady path
        ([0.0] * 20 + [2.0] * 20, BandwidthUsage.OVERUSING),  # queue growing 2 ms per group
        ([0.0] * 20 + [2.0] * 15 + [-3.0] * 30, BandwidthUsage.UNDERUSING),  # queue draining
    ],
)
def test_detector_hypothesis(deltas: list[float], expected: BandwidthUsage) -> None:
    assert feed(Trendline(), deltas)[-1] is expected


def test_overuse_needs_more_than_one_sample_over_threshold() -> None:
    usages = feed(Trendline(), [0.0] * 20 + [5.0])
    assert usages[-1] is not BandwidthUsage.OVERUSING


def test_threshold_stays_within_clamp() -> None:
    cfg = TrendlineConfig()
    trend = Trendline(cfg)
    feed(trend, [0.0] * 200)
    assert trend.threshold_ms == pytest.approx(cfg.min_threshold_ms)
    feed(trend, [0.5, -0.5] * 400)
    assert cfg.min_threshold_ms <= trend.threshold_ms <= cfg.max_threshold_ms


def test_long_runs_keep_the_slope_exact_after_rebasing() -> None:
    # Thousands of groups force the incremental sums to be rebuilt; a steady ramp must still read as a ramp.
    trend = Trendline()
    feed(trend, [0.0] * 3000)
    assert feed(trend, [1.5] * 30)[-1] is BandwidthUsage.OVERUSING
