"""Connection quality (good / fair / poor) from receiver-report loss, jitter and RTT; pure, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Quality(str, enum.Enum):
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"


# (fair above, poor above). Loss hurts first: Opus FEC hides ~5 %, video freezes well before 10 %.
# Jitter and RTT bounds follow ITU-T G.114 (150 ms one-way is "good", 400 ms the limit for conversation).
LOSS = (0.02, 0.08)
JITTER_S = (0.030, 0.080)
RTT_S = (0.300, 0.600)


@dataclass(frozen=True)
class LinkStats:
    """The worst of what a participant's receiver reports and transports say right now."""

    fraction_lost: float = 0.0
    jitter_s: float = 0.0
    rtt_s: float | None = None
    audio_only: bool = False  # adaptation fell back to audio-only for this participant


def grade(stats: LinkStats) -> Quality:
    def level(value: float, bounds: tuple[float, float]) -> int:
        return 2 if value > bounds[1] else 1 if value > bounds[0] else 0

    worst = max(level(stats.fraction_lost, LOSS), level(stats.jitter_s, JITTER_S),
                level(stats.rtt_s if stats.rtt_s is not None else 0.0, RTT_S))
    if stats.audio_only:
        worst = max(worst, 1)  # a participant without video does not have a good connection
    return (Quality.GOOD, Quality.FAIR, Quality.POOR)[worst]
