"""Media-plane events told to people: a subscriber hears why its video paused, resumed or changed layer,
and when its whole downlink falls back to audio-only; the room's therapists hear the last one too.

`TrackEvents` is the `sfu.consumer.ConsumerListener` of one received track; `PublishedTrackEvents` the
`sfu.producer.ProducerListener` of one published track (dynacast); `DownlinkEvents` the
`sfu.downlink.DownlinkListener` of one subscriber connection. Messages carry opaque ids only
(docs/protocol.md, "Adaptation events").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from signalling.tokens import Role

if TYPE_CHECKING:
    from sfu.consumer import Consumer, PauseReason
    from sfu.producer import Producer
    from signalling.hub import Hub, Peer

log = logging.getLogger("confidant.signalling")

Send = Callable[[dict[str, Any]], None]


class TrackEvents:
    """Tells the subscriber about one track it receives."""

    __slots__ = ("_send", "track_id")

    def __init__(self, send: Send, track_id: str) -> None:
        self._send = send
        self.track_id = track_id

    def on_layer_changed(self, consumer: Consumer, layer: int) -> None:
        self._send({"type": "layer_changed", "track_id": self.track_id, "layer": layer})

    def on_paused(self, consumer: Consumer, reason: PauseReason) -> None:
        self._send({"type": "track_paused", "track_id": self.track_id, "reason": reason.value})

    def on_resumed(self, consumer: Consumer) -> None:
        self._send({"type": "track_resumed", "track_id": self.track_id})


class PublishedTrackEvents:
    """Tells a publisher which simulcast layers of one of its tracks anyone wants (dynacast)."""

    __slots__ = ("_send", "track_id")

    def __init__(self, send: Send, track_id: str) -> None:
        self._send = send
        self.track_id = track_id

    def on_layers_wanted(self, producer: Producer, active: tuple[bool, ...]) -> None:
        rids = [s.rid for s in producer.streams]
        log.info("dynacast track=%s active=%s", self.track_id, "".join("1" if on else "0" for on in active))
        self._send({"type": "layers_wanted", "track_id": self.track_id,
                    "layers": [rid if rid is not None else i for i, (rid, on) in enumerate(zip(rids, active)) if on],
                    "active": list(active)})


class DownlinkEvents:
    """Tells the subscriber, and the therapists of its room, when its downlink goes audio-only and back."""

    __slots__ = ("_hub", "_peer")

    def __init__(self, peer: Peer, hub: Hub) -> None:
        self._peer = peer
        self._hub = hub

    def on_audio_only(self, active: bool, reason: str) -> None:
        peer = self._peer
        peer.send({"type": "audio_only", "active": active, "reason": reason})
        room = next((r for r, p in self._hub.peers() if p is peer), None)
        if room is None:
            return
        message = {"type": "participant_audio_only", "participant_id": peer.participant_id,
                   "active": active, "reason": reason}
        for other_room, other in self._hub.peers():
            member = room.members.get(other.participant_id)
            if (other_room is room and other is not peer and member is not None
                    and member.role is Role.THERAPIST):
                other.send(message)
