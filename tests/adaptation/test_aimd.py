from __future__ import annotations

import pytest

from adaptation.aimd import AimdConfig, AimdRateControl
from adaptation.trendline import BandwidthUsage


def test_decrease_goes_to_085_of_acknowledged_minus_5_kbps() -> None:
    aimd = AimdRateControl(AimdConfig(start_bps=1_000_000))
    aimd.update(BandwidthUsage.OVERUSING, 800_000, 0.1, now=1.0)
    assert aimd.bps == pytest.approx(0.85 * 800_000 - 5_000)


def test_one_decrease_per_rtt_unless_throughput_collapsed() -> None:
    aimd = AimdRateControl(AimdConfig(start_bps=1_000_000))
    aimd.update(BandwidthUsage.OVERUSING, 800_000, 0.1, now=1.0)
    first = aimd.bps
    aimd.update(BandwidthUsage.OVERUSING, 700_000, 0.1, now=1.05)  # within the RTT
    assert aimd.bps == first
    aimd.update(BandwidthUsage.OVERUSING, 300_000, 0.1, now=1.06)  # under half the target: cut now
    assert aimd.bps == pytest.approx(0.85 * 300_000 - 5_000)


def test_multiplicative_increase_is_8_percent_per_second_capped_by_throughput() -> None:
    aimd = AimdRateControl(AimdConfig(start_bps=300_000))
    aimd.update(BandwidthUsage.NORMAL, 1_000_000, 0.1, now=0.0)  # hold -> increase
    aimd.update(BandwidthUsage.NORMAL, 1_000_000, 0.1, now=1.0)
    assert aimd.bps == pytest.approx(300_000 * 1.08)
    aimd.update(BandwidthUsage.NORMAL, 100_000, 0.1, now=2.0)  # 1.5 x 100k + 10k = 160k < current: hold
    assert aimd.bps == pytest.approx(300_000 * 1.08)


def test_underuse_holds() -> None:
    aimd = AimdRateControl(AimdConfig(start_bps=500_000))
    aimd.update(BandwidthUsage.UNDERUSING, 500_000, 0.1, now=0.0)
    aimd.update(BandwidthUsage.UNDERUSING, 500_000, 0.1, now=5.0)
    assert aimd.bps == 500_000
