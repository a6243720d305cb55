from __future__ import annotations

import pytest

from sfu.nack import NackGenerator, RetransmissionBuffer

# Steps: ("store", seq, now, None) or ("get", seq, now, expected bytes | None); rtt 0.05, capacity 4, max age 1 s.


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param([("store", 1, 0.0, None), ("get", 1, 0.1, b"1"), ("get", 2, 0.1, None)], id="hit-and-miss"),
        pytest.param([("store", 1, 0.0, None), ("get", 1, 0.1, b"1"), ("get", 1, 0.12, None),
                      ("get", 1, 0.16, b"1")], id="resend-at-most-once-per-rtt"),
        pytest.param([("store", 1, 0.0, None), ("get", 1, 1.01, None)], id="too-old"),
        pytest.param([("store", 1, 0.0, None), ("store", 5, 0.0, None), ("get", 1, 0.1, None),
                      ("get", 5, 0.1, b"5")], id="evicted-by-ring"),
        pytest.param([("store", 65535, 0.0, None), ("store", 0, 0.0, None), ("get", 65535, 0.1, b"65535"),
                      ("get", 0, 0.1, b"0")], id="wrap"),
        pytest.param([("store", 3, 0.0, None), ("get", 3, 0.1, b"3"), ("store", 3, 0.2, None),
                      ("get", 3, 0.21, b"3")], id="restore-resets-resend-clock"),
    ],
)
def test_retransmission_buffer(steps: list[tuple[str, int, float, bytes | None]]) -> None:
    buf = RetransmissionBuffer(4, max_age=1.0)
    for op, seq, now, expected in steps:
        if op == "store":
            buf.store(seq, str(seq).encode(), now=now)
        else:
            assert buf.get(seq, now=now, rtt=0.05) == expected


# Steps: ("pkt", ext_seq, now, keyframe) or ("due", rtt, now, expected list of 16-bit seqs)
@pytest.mark.parametrize(
    "steps",
    [
        pytest.param([("pkt", 10, 0.0, False), ("pkt", 13, 0.0, False), ("due", 0.05, 0.0, [11, 12]),
                      ("due", 0.05, 0.03, []), ("pkt", 11, 0.04, False), ("due", 0.05, 0.05, [12])],
                     id="retry-after-rtt-and-recovered"),
        pytest.param([("pkt", 65534, 0.0, False), ("pkt", 65537, 0.0, False), ("due", 0.0, 0.0, [65535, 0])],
                     id="wrap-to-16-bit"),
        pytest.param([("pkt", 1, 0.0, False), ("pkt", 3, 0.0, False)]
                     + [("due", 0.0, 0.025 * i, [2]) for i in range(10)] + [("due", 0.0, 0.5, [])],
                     id="ten-retries-min-20ms"),
        pytest.param([("pkt", 1, 0.0, False), ("pkt", 3, 0.0, False), ("due", 0.5, 0.0, [2]),
                      ("due", 0.5, 1.01, [])], id="forget-after-1s"),
        pytest.param([("pkt", 1, 0.0, False), ("pkt", 200, 0.0, False), ("pkt", 201, 0.0, True),
                      ("due", 0.1, 0.0, [])], id="keyframe-clears-big-gap"),
        pytest.param([("pkt", 1, 0.0, False), ("pkt", 5, 0.0, False), ("pkt", 6, 0.0, True),
                      ("due", 0.1, 0.0, [2, 3, 4])], id="keyframe-keeps-small-gap"),
        pytest.param([("pkt", 1, 0.0, False), ("pkt", 10_000, 0.0, False), ("due", 0.1, 0.0, [])],
                     id="huge-jump-is-a-restart"),
        pytest.param([("pkt", 0, 0.0, False), ("pkt", 1000, 0.0, False), ("due", 0.1, 0.0, list(range(500, 620)))],
                     id="capped"),
    ],
)
def test_nack_generator(steps: list[tuple[str, float, float, object]]) -> None:
    gen = NackGenerator()
    for op, a, now, b in steps:
        if op == "pkt":
            gen.on_packet(int(a), now=now, is_keyframe=bool(b))
        else:
            assert gen.due(now=now, rtt=a) == b, now
