"""Dynacast on a simulated clock: unwanted layers pause after 5 s of flowing unwanted, resume at once."""

from __future__ import annotations

import pytest

from sfu.dynacast import PAUSE_DELAY, LayerGate, LayersChanged

ALL = (True, True, True)


def run(gate: LayerGate, steps: list[tuple[float, int | None]],
        flowing: tuple[bool, ...] = ALL) -> list[tuple[float, LayersChanged]]:
    out = []
    for now, top in steps:
        change = gate.update(top, flowing, now=now)
        if change is not None:
            out.append((now, change))
    return out


def ticks(start: float, end: float, top: int | None) -> list[tuple[float, int | None]]:
    """One update a second (the connection's report timer) from `start` to `end` inclusive."""
    return [(float(t), top) for t in range(int(start), int(end) + 1)]


def test_everything_wanted_changes_nothing() -> None:
    assert run(LayerGate(3), ticks(0, 60, 2)) == []


@pytest.mark.parametrize(
    ("top", "active"),
    [(1, (True, True, False)), (0, (True, False, False)), (None, (True, False, False))],  # lowest stays on
)
def test_unwanted_layers_pause_after_the_delay(top: int | None, active: tuple[bool, ...]) -> None:
    gate = LayerGate(3)
    changes = run(gate, ticks(0, 20, top))
    assert changes == [(PAUSE_DELAY, LayersChanged(active, ()))]  # first unwanted at 0, paused 5 s later


def test_short_dip_does_not_pause() -> None:
    gate = LayerGate(3)
    steps = ticks(0, 4, 1) + ticks(5, 8, 2) + ticks(9, 13, 1)
    assert run(gate, steps) == []  # never unwanted for 5 s in a row
    assert run(gate, [(14.0, 1)]) == [(14.0, LayersChanged((True, True, False), ()))]


def test_wanted_again_resumes_at_once() -> None:
    gate = LayerGate(3)
    run(gate, ticks(0, 10, 0))
    assert gate.active == (True, False, False)
    assert run(gate, [(10.5, 2)]) == [(10.5, LayersChanged(ALL, (1, 2)))]
    assert run(gate, [(11.0, 1)]) == []  # the debounce starts again


def test_a_layer_not_sent_is_not_counted_unwanted() -> None:
    gate = LayerGate(3)
    assert run(gate, ticks(0, 30, 1), flowing=(True, True, False)) == []  # the encoder has not started f
    assert run(gate, ticks(31, 35, 1)) == []  # f starts at 31: unwanted from then on
    assert run(gate, [(36.0, 1)]) == [(36.0, LayersChanged((True, True, False), ()))]


def test_single_layer_never_pauses() -> None:
    assert run(LayerGate(1), ticks(0, 30, None)) == []
