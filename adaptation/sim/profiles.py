"""Network profiles: built-in RFC 8867-style cases and JSON files of the same shape."""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    duration_s: float
    capacity_kbps: tuple[tuple[float, float], ...]  # (from second, kbps), first entry at 0
    one_way_delay_ms: float = 50.0  # RFC 8867 section 4 defaults (ns-3 harness)
    jitter_ms: float = 0.0
    queue_ms: float = 300.0
    loss: float = 0.0
    competing_flows: int = 0
    seed: int = 1

    @property
    def flows(self) -> int:
        return 1 + self.competing_flows

    def capacity_at(self, t: float) -> float:
        """Bottleneck capacity in bits per second at simulated time `t`."""
        kbps = self.capacity_kbps[0][1]
        for start, value in self.capacity_kbps:
            if start > t:
                break
            kbps = value
        return kbps * 1000.0

    @classmethod
    def from_dict(cls, name: str, data: dict[str, object]) -> Profile:
        steps = data.get("capacity_kbps")
        if not isinstance(steps, list) or not steps:
            raise ValueError("capacity_kbps must be a non-empty list of [second, kbps]")
        capacity = tuple((float(s), float(k)) for s, k in steps)
        if capacity[0][0] != 0.0 or any(b[0] <= a[0] for a, b in pairwise(capacity)):
            raise ValueError("capacity_kbps must start at 0 s and increase")
        if any(k <= 0 for _, k in capacity):
            raise ValueError("capacities must be positive")

        def num(key: str, default: float) -> float:
            value = data.get(key, default)
            if not isinstance(value, int | float):
                raise TypeError(f"{key} must be a number")
            return float(value)

        profile = cls(
            name=name,
            duration_s=num("duration_s", 100.0),
            capacity_kbps=capacity,
            one_way_delay_ms=num("one_way_delay_ms", 50.0),
            jitter_ms=num("jitter_ms", 0.0),
            queue_ms=num("queue_ms", 300.0),
            loss=num("loss", 0.0),
            competing_flows=int(num("competing_flows", 0)),
            seed=int(num("seed", 1)),
        )
        if not 0.0 <= profile.loss < 1.0 or profile.duration_s <= 0 or profile.competing_flows < 0:
            raise ValueError("loss must be in [0, 1), duration positive, competing_flows >= 0")
        return profile


# RFC 8867 section 5.1 with its 1 Mbps reference capacity: 1.0 / 2.5 / 0.6 / 1.0 x, 50 ms, 300 ms queue.
_5_1 = Profile("rfc8867-5.1", 100.0, ((0, 1000), (40, 2500), (60, 600), (80, 1000)))
# RFC 8867 section 5.2: two flows, ratios 2.0 / 1.0 / 1.75 / 0.5 / 1.0 of 1 Mbps over 125 s.
_5_2 = Profile(
    "rfc8867-5.2", 125.0, ((0, 2000), (25, 1000), (50, 1750), (75, 500), (100, 1000)), competing_flows=1
)
# RFC 8867 section 5.3's forward-path schedule (2.0 / 1.0 / 0.5 / 2.0 x 1 Mbps); the reverse path is not
# congested here.
_5_3 = Profile("rfc8867-5.3", 100.0, ((0, 2000), (20, 1000), (40, 500), (60, 2000)))
# Capacity collapses below the lowest layer plus audio (150 + 40 kbps), then returns.
_FALLBACK = Profile("fallback", 80.0, ((0, 1000), (20, 120), (50, 1000)))
# Capacity wanders just above the lowest layer plus audio, with two short dips below it.
_FLAP = Profile(
    "flap",
    100.0,
    (
        (0, 300),
        (8, 230),
        (15, 280),
        (22, 215),
        (30, 150),
        (31, 260),
        (38, 225),
        (45, 320),
        (52, 220),
        (60, 160),
        (61, 240),
        (68, 300),
        (75, 215),
        (83, 270),
        (91, 230),
    ),
    jitter_ms=2.0,
)

BUILTIN: dict[str, Profile] = {p.name: p for p in (_5_1, _5_2, _5_3, _FALLBACK, _FLAP)}


def load(name_or_path: str) -> Profile:
    """A built-in profile by name, or a JSON file."""
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"unknown profile {name_or_path!r}: not one of {', '.join(BUILTIN)} nor a file")
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise TypeError("a profile file holds one JSON object")
    return Profile.from_dict(path.stem, data)
