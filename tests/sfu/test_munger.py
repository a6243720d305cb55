from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.munger import SeqMunger, TsMunger
from sfu.stats import DropReason

DUP = DropReason.DUPLICATE
OLD = DropReason.TOO_OLD

# Steps: ("map", ext_in, out | reason), ("switch", ext_in, None), ("skip", ext_in, None), ("nack", out, ext_in|None)
Step = tuple[str, int, int | DropReason | None]


@pytest.mark.parametrize(
    ("initial", "steps"),
    [
        pytest.param(100, [("map", 5000, 100), ("map", 5001, 101), ("map", 5003, 103), ("map", 5002, 102)],
                     id="gap-kept-then-filled"),
        pytest.param(0, [("map", 10, 0), ("map", 11, 1), ("map", 11, DUP), ("map", 10, DUP), ("map", 12, 2)],
                     id="duplicates"),
        pytest.param(65534, [("map", 1, 65534), ("map", 2, 65535), ("map", 3, 0), ("map", 4, 1)],
                     id="output-wraps"),
        pytest.param(7, [("map", 65535, 7), ("map", 65536, 8), ("map", 65538, 10), ("map", 65537, 9)],
                     id="input-extended-across-wrap"),
        pytest.param(1000, [("map", 50, 1000), ("map", 51, 1001), ("switch", 9000, None), ("map", 9000, 1002),
                            ("map", 8999, OLD), ("map", 9001, 1003), ("map", 52, OLD)],
                     id="switch-continues-and-drops-older"),
        pytest.param(65535, [("map", 1, 65535), ("switch", 300, None), ("map", 301, 1), ("map", 300, 0)],
                     id="switch-across-output-wrap-with-reorder"),
        pytest.param(0, [("switch", 40, None), ("map", 40, 0), ("map", 41, 1)], id="switch-before-first"),
        pytest.param(0, [("map", 10, 0), ("skip", 11, None), ("map", 12, 1), ("skip", 14, None), ("map", 15, 3),
                         ("map", 13, 2), ("skip", 12, None), ("map", 12, DUP)],
                     id="skips-close-up-only-when-newest"),
        pytest.param(0, [("map", 5000, 0), ("map", 5000 + 1100, 1100), ("map", 5050, OLD)], id="outside-window"),
        pytest.param(500, [("map", 10, 500), ("map", 11, 501), ("map", 13, 503), ("nack", 502, 12),
                           ("nack", 503, 13), ("nack", 499, None), ("nack", 504, None)],
                     id="nack-translation"),
        pytest.param(65535, [("map", 7, 65535), ("skip", 8, None), ("map", 9, 0), ("switch", 70000, None),
                             ("map", 70000, 1), ("nack", 1, 70000), ("nack", 0, None), ("nack", 65535, None)],
                     id="nack-after-skip-and-switch"),
        pytest.param(0, [("map", 10, 0), ("skip", 11, None), ("map", 12, 1), ("nack", 1, 12), ("nack", 0, 10)],
                     id="nack-across-skip"),
    ],
)
def test_seq_munger(initial: int, steps: list[Step]) -> None:
    m = SeqMunger(initial)
    for op, value, expected in steps:
        if op == "map":
            out = m.map(value)
            if isinstance(expected, DropReason):
                assert out is None and m.drop_reason is expected, (value, out)
            else:
                assert out == expected, (value, out)
        elif op == "switch":
            m.switch(value)
        elif op == "skip":
            m.skip(value)
        else:
            assert m.out_to_in(value) == expected, value


@given(st.integers(0, 65535), st.lists(st.tuples(st.booleans(), st.integers(1, 40)), min_size=1, max_size=60))
def test_output_is_continuous_across_switches(initial: int, runs: list[tuple[bool, int]]) -> None:
    """Whatever the switches, in-order input yields consecutive output seqs (libsrtp needs no jumps)."""
    m = SeqMunger(initial)
    expected = initial
    base = 0
    for switch, length in runs:
        if switch:
            base += 100_000
            m.switch(base)
        for i in range(length):
            assert m.map(base + i) == expected & 0xFFFF
            assert m.out_to_in(expected & 0xFFFF) == base + i
            expected += 1
        base += length


@pytest.mark.parametrize(
    ("clock", "initial", "steps"),
    [
        pytest.param(90000, 1000, [("map", 5, 0.0, 1000), ("map", 3005, 0.033, 4000), ("map", 3005, 0.04, 4000)],
                     id="offset-kept"),
        pytest.param(90000, 0xFFFFFF00, [("map", 0, 0.0, 0xFFFFFF00), ("map", 512, 0.1, 0x100)], id="output-wraps"),
        pytest.param(90000, 0, [("map", 100, 0.0, 0), ("map", 3100, 0.033, 3000), ("switch", 777_777, 0.133, None),
                                ("map", 777_777, 0.133, 12000), ("map", 780_777, 0.166, 15000)],
                     id="switch-advances-by-wall-time"),
        pytest.param(48000, 0, [("map", 960, 0.0, 0), ("switch", 5, 0.0, None), ("map", 5, 0.0, 1)],
                     id="switch-at-least-one-tick"),
        pytest.param(90000, 50, [("switch", 2**32 + 9, 1.0, None), ("map", 2**32 + 9, 1.0, 50),
                                 ("map", 2**32 + 9 - 3000, 1.0, 2**32 - 2950)],
                     id="first-switch-uses-initial-and-late-frame"),
    ],
)
def test_ts_munger(clock: int, initial: int, steps: list[tuple[str, int, float, int | None]]) -> None:
    m = TsMunger(clock, initial)
    for op, ts, now, expected in steps:
        if op == "switch":
            m.switch(ts, now=now)
        else:
            assert m.map(ts, now=now) == expected
