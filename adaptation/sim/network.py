"""The bottleneck: a drop-tail FIFO queue sized in milliseconds, serving at a stepped capacity."""

from __future__ import annotations

import random

from adaptation.sim.profiles import Profile


class Bottleneck:
    """Shared by every flow of a run. `send` returns the arrival time at the receiver, or None if dropped."""

    __slots__ = (
        "_busy_until",
        "_delay",
        "_jitter",
        "_last_arrival",
        "_loss",
        "_profile",
        "_queue_s",
        "_rng",
        "_step_i",
        "_steps",
        "queue_samples",
    )

    def __init__(self, profile: Profile, rng: random.Random) -> None:
        self._profile = profile
        self._busy_until = 0.0
        self._delay = profile.one_way_delay_ms / 1000.0
        self._jitter = profile.jitter_ms / 1000.0
        self._queue_s = profile.queue_ms / 1000.0
        self._loss = profile.loss
        self._rng = rng
        self._steps = [(t, kbps * 1000.0) for t, kbps in profile.capacity_kbps]
        self._step_i = 0
        self._last_arrival: dict[int, float] = {}
        # (time, queuing delay seen by a packet entering the queue)
        self.queue_samples: list[tuple[float, float]] = []

    def capacity(self, t: float) -> float:
        steps = self._steps
        i = self._step_i
        while i + 1 < len(steps) and steps[i + 1][0] <= t:
            i += 1
        self._step_i = i
        return steps[i][1]

    def queue_delay(self, now: float) -> float:
        """How long a packet entering the queue at `now` would wait."""
        return max(0.0, self._busy_until - now)

    def send(self, flow: int, size: int, now: float) -> float | None:
        wait = self._busy_until - now
        wait = max(wait, 0.0)
        self.queue_samples.append((now, wait))
        if wait > self._queue_s:
            return None  # drop-tail: the queue holds queue_ms of data
        capacity = self.capacity(now)
        done = now + wait + size * 8.0 / capacity
        self._busy_until = done
        if self._loss and self._rng.random() < self._loss:
            return None
        arrival = done + self._delay
        if self._jitter:
            arrival += self._rng.random() * self._jitter
            # Jitter delays but does not reorder (like netem with rate limiting in front of it).
            last = self._last_arrival.get(flow, 0.0)
            arrival = max(arrival, last)
            self._last_arrival[flow] = arrival
        return arrival
