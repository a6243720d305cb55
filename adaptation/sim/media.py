"""A simulcast publisher as the SFU sees it: three layers of frames with keyframes, and Opus audio."""

from __future__ import annotations

import math
import random
from collections import deque

NOMINAL_LAYER_BPS = (150_000.0, 500_000.0, 1_500_000.0)
AUDIO_BPS = 40_000.0  # Opus on the wire, 20 ms packets
AUDIO_INTERVAL_S = 0.020
AUDIO_PACKET_BYTES = int(AUDIO_BPS * AUDIO_INTERVAL_S / 8)
FPS = 30.0
MTU_PAYLOAD = 1200
KEYFRAME_INTERVAL_S = 4.0
KEYFRAME_FACTOR = 4.0  # a keyframe is this many average frames; the rate control pays it back after
VARIATION = 0.08  # each layer's rate wanders +-8 % around its nominal rate
RATE_WINDOW_S = 4.0  # the SFU measures each layer over this trailing window (one keyframe interval)
FIRST_MEASURE_S = 1.0  # a layer counts as flowing once it has been measured this long


class Publisher:
    """Produces one frame per layer every 1/30 s. Keyframes come periodically and on request (PLI)."""

    __slots__ = ("_debt", "_next_key", "_period", "_phase", "_requested", "_rng", "_window", "_window_bytes")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        n = len(NOMINAL_LAYER_BPS)
        self._phase = [rng.random() * 2 * math.pi for _ in range(n)]
        self._period = [17.0 + rng.random() * 10.0 for _ in range(n)]
        self._debt = [0.0] * n
        self._next_key = rng.random() * KEYFRAME_INTERVAL_S
        self._requested: list[float | None] = [None] * n
        self._window: list[deque[tuple[float, int]]] = [deque() for _ in range(n)]
        self._window_bytes = [0] * n

    def request_keyframe(self, layer: int, *, at: float) -> None:
        current = self._requested[layer]
        if current is None or at < current:
            self._requested[layer] = at

    def frame(self, now: float) -> list[tuple[int, bool]]:
        """The frame of each layer at `now`: (size in bytes, keyframe)."""
        periodic = now >= self._next_key
        if periodic:
            self._next_key += KEYFRAME_INTERVAL_S
        frames: list[tuple[int, bool]] = []
        for layer, nominal in enumerate(NOMINAL_LAYER_BPS):
            rate = nominal * (
                1.0 + VARIATION * math.sin(2 * math.pi * now / self._period[layer] + self._phase[layer])
            )
            average = rate / FPS / 8.0
            requested = self._requested[layer]
            key = periodic or (requested is not None and now >= requested)
            if key:
                self._requested[layer] = None
                size = average * KEYFRAME_FACTOR
                self._debt[layer] += size - average
            else:
                payback = min(self._debt[layer], 0.3 * average)
                self._debt[layer] -= payback
                size = (average - payback) * (0.8 + 0.4 * self._rng.random())
            nbytes = max(int(size), 60)
            frames.append((nbytes, key))
            window = self._window[layer]
            window.append((now, nbytes))
            self._window_bytes[layer] += nbytes
            while window[0][0] <= now - RATE_WINDOW_S:
                self._window_bytes[layer] -= window.popleft()[1]
        return frames

    def measured_bps(self, layer: int, now: float) -> float:
        """The layer's rate over the trailing window (over what there is of it, early on)."""
        return self._window_bytes[layer] * 8.0 / max(1.0, min(now, RATE_WINDOW_S))


def packetize(size: int) -> list[int]:
    """Split a frame into packets of at most MTU_PAYLOAD bytes, evenly."""
    count = -(-size // MTU_PAYLOAD)
    base, extra = divmod(size, count)
    return [base + 1 if i < extra else base for i in range(count)]
