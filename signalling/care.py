"""Care-session pieces of a participant's connection: therapist controls, holds and mutes applied to its
consumers, and its connection quality. Kept apart from `session.py`, which speaks the base protocol."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any

from sfu.consumer import PauseReason
from signalling.quality import LinkStats, grade

if TYPE_CHECKING:
    from sfu.consumer import Consumer
    from signalling.hub import Hub
    from signalling.rooms import Room

CONTROLS = ("admit", "decline", "remove", "lock_room", "unlock_room", "mute", "start_check_in", "end_check_in",
            "end_session")
QUALITY_INTERVAL = 2.0  # seconds between quality measurements (receiver reports come about once a second)
# Pauses the care rules own. Others (bandwidth, no layer flowing) belong to adaptation and are left alone.
CARE_PAUSES = (PauseReason.HELD, PauseReason.PUBLISHER_MUTED)


def token_id(token: str) -> str:
    """An opaque id for a join token, so a removed participant's token can be refused without keeping it."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def apply_pause(consumer: Consumer, wanted: PauseReason) -> None:
    """Make `consumer` obey the care rules. A hold wins over everything; lifting one resumes only pauses
    that the care rules set (adaptation re-pauses for bandwidth on its next tick if it must)."""
    current = consumer.pause_reason
    if wanted is PauseReason.HELD:
        consumer.set_paused(PauseReason.HELD)
    elif wanted is PauseReason.PUBLISHER_MUTED:
        if current is not PauseReason.PUBLISHER_MUTED:
            consumer.set_paused(PauseReason.PUBLISHER_MUTED)
    elif current in CARE_PAUSES:
        consumer.set_paused(PauseReason.NONE)


def link_stats(consumers: list[Consumer], rtt_s: float | None, audio_only: bool) -> LinkStats:
    """The worst loss and jitter this subscriber reports over the streams it receives, and the link RTT."""
    live = [c for c in consumers if not c.closed and not c.paused and c.packets_sent > 0]
    rtts = [c.rtt_s for c in live if c.rtt_s is not None]
    rtt = rtt_s if rtt_s is not None else (max(rtts) if rtts else None)
    return LinkStats(
        fraction_lost=max((c.fraction_lost for c in live), default=0.0),
        jitter_s=max((c.jitter_s for c in live), default=0.0),
        rtt_s=rtt,
        audio_only=audio_only,
    )


def quality_details(stats: LinkStats) -> dict[str, Any]:
    return {"loss": round(stats.fraction_lost, 3), "jitter_ms": round(stats.jitter_s * 1000.0, 1),
            "rtt_ms": None if stats.rtt_s is None else round(stats.rtt_s * 1000.0, 1),
            "audio_only": stats.audio_only}


class QualityReporter:
    """Measures one participant's link every QUALITY_INTERVAL and reports it to the hub (which tells only
    changes)."""

    def __init__(self, hub: Hub, room: Room, peer: Any, measure: Any) -> None:
        self._hub, self._room, self._peer, self._measure = hub, room, peer, measure

    async def run(self) -> None:
        while True:
            await asyncio.sleep(QUALITY_INTERVAL)
            stats: LinkStats | None = self._measure()
            if stats is not None:
                self._hub.report_quality(self._peer, self._room, grade(stats), quality_details(stats))
