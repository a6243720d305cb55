from __future__ import annotations

import pytest

from adaptation.allocator import Allocator, LayerState, PauseReason, VideoTrack

LAYERS = (150_000.0, 500_000.0, 1_500_000.0)
AUDIO = 40_000.0


def track(track_id: str = "cam", since: float = 0.0, priority: int = 0) -> VideoTrack:
    return VideoTrack(track_id, tuple(LayerState(b, since) for b in LAYERS), priority)


@pytest.mark.parametrize(
    ("estimate", "layer"),
    [
        (2_000_000, 2),
        (1_540_000, 2),  # exactly fits
        (1_539_999, 1),
        (600_000, 1),
        (300_000, 0),
        (150_000, None),  # audio first: 110 kbps left is under the lowest layer
    ],
)
def test_highest_layer_that_fits_after_audio(estimate: float, layer: int | None) -> None:
    allocation = Allocator().allocate(estimate, AUDIO, [track()], now=10.0)
    assert allocation.layer("cam") == layer
    assert allocation.audio_bps == AUDIO
    assert allocation.video_bps <= max(0.0, estimate - AUDIO)
    if layer is None:
        assert allocation.tracks[0].paused is PauseReason.INSUFFICIENT_BANDWIDTH


def test_priority_order() -> None:
    allocation = Allocator().allocate(
        800_000, AUDIO, [track("b", priority=1), track("a", priority=0)], now=10.0
    )
    assert allocation.layer("a") == 1
    assert allocation.layer("b") == 0


def test_upgrade_needs_the_layer_flowing_for_2_s() -> None:
    alloc = Allocator()
    alloc.allocate(600_000, AUDIO, [track(since=0.0)], now=10.0)
    fresh = VideoTrack(
        "cam", (LayerState(150_000, 0.0), LayerState(500_000, 0.0), LayerState(1_500_000, 9.0))
    )
    assert alloc.allocate(3_000_000, AUDIO, [fresh], now=10.5).layer("cam") == 1  # flowing 1.5 s
    assert alloc.allocate(3_000_000, AUDIO, [fresh], now=11.1).layer("cam") == 2


def test_no_upgrade_for_10_s_after_a_downgrade_unless_a_probe_proves_room() -> None:
    alloc = Allocator()
    alloc.allocate(2_000_000, AUDIO, [track()], now=10.0)
    assert alloc.allocate(1_000_000, AUDIO, [track()], now=11.0).layer("cam") == 1  # down at once
    assert alloc.allocate(2_000_000, AUDIO, [track()], now=15.0).layer("cam") == 1  # held
    proved = alloc.allocate(2_000_000, AUDIO, [track()], now=15.1, probe_proved_bps=1_600_000)
    assert proved.layer("cam") == 2
    alloc2 = Allocator()
    alloc2.allocate(2_000_000, AUDIO, [track()], now=10.0)
    alloc2.allocate(1_000_000, AUDIO, [track()], now=11.0)
    assert alloc2.allocate(2_000_000, AUDIO, [track()], now=21.1).layer("cam") == 2


def test_estimate_changes_under_15_percent_are_ignored_while_the_allocation_fits() -> None:
    alloc = Allocator()
    first = alloc.allocate(1_500_000, AUDIO, [track()], now=10.0)
    assert first.layer("cam") == 1
    # +4 % would fit layer 2 but is inside the dead-band
    assert alloc.allocate(1_560_000, AUDIO, [track()], now=30.0).layer("cam") == 1
    assert alloc.allocate(1_800_000, AUDIO, [track()], now=31.0).layer("cam") == 2


def test_grace_keeps_the_lowest_layer_over_budget_only_for_a_shortfall() -> None:
    alloc = Allocator()
    alloc.allocate(300_000, AUDIO, [track()], now=10.0)
    kept = alloc.allocate(170_000, AUDIO, [track()], now=11.0, grace=True)  # 130k left: 87 % of 150k
    assert kept.layer("cam") == 0 and kept.tracks[0].over_budget
    assert kept.probe_goal_bps == pytest.approx(AUDIO + 150_000)
    stopped = alloc.allocate(120_000, AUDIO, [track()], now=11.1, grace=True)  # 80k left: a collapse
    assert stopped.layer("cam") is None


def test_audio_only_pauses_every_track_and_keeps_audio() -> None:
    allocation = Allocator().allocate(5_000_000, AUDIO, [track("a"), track("b")], now=10.0, audio_only=True)
    assert [t.paused for t in allocation.tracks] == [PauseReason.AUDIO_ONLY] * 2
    assert allocation.audio_bps == AUDIO and allocation.video_bps == 0
    assert allocation.probe_goal_bps is None


def test_probe_goal_is_the_next_step_up() -> None:
    allocation = Allocator().allocate(800_000, AUDIO, [track()], now=10.0)
    assert allocation.probe_goal_bps == pytest.approx(AUDIO + 1_500_000)
    top = Allocator().allocate(5_000_000, AUDIO, [track()], now=10.0)
    assert top.probe_goal_bps is None


def test_nothing_flowing() -> None:
    idle = VideoTrack("cam", tuple(LayerState(b, None) for b in LAYERS))
    allocation = Allocator().allocate(5_000_000, AUDIO, [idle], now=0.0)
    assert allocation.tracks[0].paused is PauseReason.NO_LAYER_FLOWING
