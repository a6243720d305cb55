"""The node's rooms and their media: turns room events into media-plane calls and protocol messages.

`rooms.Room` decides; the hub applies: it creates routers, producers and consumers, and tells each
session what changed. A failure while serving one participant is contained to that participant.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sfu.params import ConsumerParams, MediaKind
from signalling.rooms import (
    ParticipantJoined,
    ParticipantLeft,
    Room,
    RoomEnded,
    RoomEvent,
    RoomKind,
    RoomRegistry,
    TrackInfo,
    TrackPublished,
    TrackUnpublished,
)
from signalling.sdp_writer import SUBSCRIBER_CODECS, SUBSCRIBER_EXTENSIONS
from signalling.tokens import JoinClaims

if TYPE_CHECKING:
    from sfu.producer import Producer
    from sfu.router import Router
    from sfu.server import MediaServer

log = logging.getLogger("confidant.signalling")


class Peer(Protocol):
    """What the hub needs from a participant's session (implemented by `session.Session`)."""

    participant_id: str

    def send(self, message: dict[str, Any]) -> None: ...

    def add_consumer(self, track_id: str, publisher_id: str, params: ConsumerParams, producer: Producer) -> None: ...

    def remove_consumer(self, track_id: str) -> None: ...

    def terminate(self, code: int, error: str | None, message: str) -> None: ...


@dataclass
class RoomMedia:
    room: Room
    router: Router
    peers: dict[str, Peer] = field(default_factory=dict)
    producers: dict[str, tuple[str, Producer]] = field(default_factory=dict)  # track id -> (publisher, producer)


class Hub:
    def __init__(self, media: MediaServer, *, grace: float, rng: random.Random | None = None,
                 observer_limit: int = 2) -> None:
        self.media = media
        self.registry = RoomRegistry(grace=grace, observer_limit=observer_limit)
        self.rng = rng or random.SystemRandom()
        self._rooms: dict[str, RoomMedia] = {}

    # -- platform operations ------------------------------------------------------------------------

    def create_room(self, kind: RoomKind, *, room_id: str | None, max_observers: int) -> Room:
        room_id = room_id or "rm_" + secrets.token_hex(8)
        room = self.registry.create(room_id, kind, max_observers=max_observers, now=time.time())
        for gone in [r for r in self._rooms if r not in {x.id for x in self.registry.rooms()}]:
            self._rooms.pop(gone, None)
        self._rooms[room.id] = RoomMedia(room, self.media.create_router())
        log.info("room created room=%s kind=%s", room.id, kind.value)
        return room

    def end_room(self, room_id: str, reason: str = "ended_by_platform") -> Room:
        room = self.registry.get(room_id)
        media = self._rooms.get(room_id)
        events = room.end(reason=reason, now=time.time())
        if media is not None and events:
            peers = list(media.peers.values())
            media.peers.clear()
            for peer in peers:
                peer.send({"type": "room_ended", "reason": reason})
                peer.terminate(4001, None, "room ended")
            for _, producer in media.producers.values():
                producer.close()
            media.producers.clear()
            self.media.close_router(media.router)
            log.info("room ended room=%s", room_id)
        return room

    def rooms(self) -> list[Room]:
        self.registry.expire(now=time.time())
        return self.registry.rooms()

    def peers(self) -> list[tuple[Room, Peer]]:
        """Every connected participant with its room (read by the metrics monitor)."""
        return [(media.room, peer) for media in self._rooms.values() for peer in media.peers.values()]

    # -- participant operations ------------------------------------------------------------------------

    def join(self, peer: Peer, claims: JoinClaims) -> Room:
        """Admit `peer` (raises RoomError); replaces an older connection of the same participant."""
        room = self.registry.get(claims.room_id)
        room.check_join(claims)
        media = self._rooms[room.id]
        old = media.peers.get(claims.participant_id)
        if old is not None:
            old.terminate(4000, "session_replaced", "the same participant joined on another connection")
            self.leave(old, "replaced")
        events = room.join(claims)
        media.peers[claims.participant_id] = peer
        log.info("participant joined room=%s participant=%s role=%s", room.id, claims.participant_id,
                 claims.role.value)
        self._apply(media, events)
        return room

    def leave(self, peer: Peer, reason: str) -> None:
        for media in self._rooms.values():
            if media.peers.get(peer.participant_id) is peer:
                del media.peers[peer.participant_id]
                log.info("participant left room=%s participant=%s reason=%s", media.room.id,
                         peer.participant_id, reason)
                self._apply(media, media.room.leave(peer.participant_id, reason))
                return

    def publish(self, peer: Peer, room: Room, track_id: str, kind: str, simulcast: bool, producer: Producer) -> None:
        media = self._rooms[room.id]
        media.producers[track_id] = (peer.participant_id, producer)
        self._apply(media, room.publish(peer.participant_id, TrackInfo(track_id, kind, simulcast)))

    def unpublish(self, peer: Peer, room: Room, track_id: str) -> None:
        self._apply(self._rooms[room.id], room.unpublish(peer.participant_id, track_id))

    def router(self, room: Room) -> Router:
        return self._rooms[room.id].router

    def subscribe_existing(self, peer: Peer, room: Room) -> None:
        """Give a newly joined subscriber a consumer for every track already published in the room."""
        media = self._rooms[room.id]
        for track_id, (publisher, producer) in list(media.producers.items()):
            if publisher != peer.participant_id:
                self._consume(peer, track_id, publisher, producer)

    def room_view(self, room: Room, *, exclude: str | None = None) -> list[dict[str, Any]]:
        return [participant_view(room, pid) for pid in room.members if pid != exclude]

    # -- applying room events ------------------------------------------------------------------------

    def _apply(self, media: RoomMedia, events: list[RoomEvent]) -> None:
        for event in events:
            if isinstance(event, ParticipantJoined):
                view = participant_view(media.room, event.participant_id)
                self._broadcast(media, {"type": "participant_joined", "participant": view}, event.participant_id)
            elif isinstance(event, ParticipantLeft):
                self._broadcast(media, {"type": "participant_left", "participant_id": event.participant_id,
                                        "reason": event.reason}, event.participant_id)
            elif isinstance(event, TrackPublished):
                track = {"id": event.track.id, "kind": event.track.kind, "simulcast": event.track.simulcast}
                self._broadcast(media, {"type": "track_published", "participant_id": event.participant_id,
                                        "track": track}, event.participant_id)
                _, producer = media.producers[event.track.id]
                for pid, peer in list(media.peers.items()):
                    if pid != event.participant_id:
                        self._consume(peer, event.track.id, event.participant_id, producer)
            elif isinstance(event, TrackUnpublished):
                entry = media.producers.pop(event.track_id, None)
                if entry is not None:
                    entry[1].close()
                for pid, peer in list(media.peers.items()):
                    if pid != event.participant_id:
                        peer.remove_consumer(event.track_id)
                self._broadcast(media, {"type": "track_unpublished", "participant_id": event.participant_id,
                                        "track_id": event.track_id}, event.participant_id)
            elif isinstance(event, RoomEnded):  # pragma: no cover - end_room handles ending itself
                pass

    def _broadcast(self, media: RoomMedia, message: dict[str, Any], origin: str) -> None:
        for pid, peer in list(media.peers.items()):
            if pid != origin:
                peer.send(message)

    def _consume(self, peer: Peer, track_id: str, publisher: str, producer: Producer) -> None:
        codec = SUBSCRIBER_CODECS.get(producer.params.codecs[0].mime)
        if codec is None:
            return
        ssrc = self.rng.getrandbits(32) or 1
        rtx = (self.rng.getrandbits(32) or 2) if codec.rtx_payload_type is not None else None
        params = ConsumerParams(
            kind=producer.params.kind,
            mid="",  # the session assigns the mid of its subscribe m-section
            codec=codec,
            ssrc=ssrc,
            rtx_ssrc=rtx if rtx != ssrc else ssrc ^ 0x5A5A5A5A,
            header_extensions=dict(SUBSCRIBER_EXTENSIONS[MediaKind(producer.params.kind)]),
            cname=publisher,  # one cname per publisher lets browsers lip-sync its audio and video
        )
        try:
            peer.add_consumer(track_id, publisher, params, producer)
        except Exception:  # contained: this subscriber misses the track, nobody else is affected
            log.exception("consumer failed participant=%s track=%s", peer.participant_id, track_id)


def participant_view(room: Room, participant_id: str) -> dict[str, Any]:
    member = room.members[participant_id]
    return {
        "id": member.participant_id,
        "role": member.role.value,
        "name": member.name,
        "tracks": [{"id": t.id, "kind": t.kind, "simulcast": t.simulcast} for t in member.tracks.values()],
    }
