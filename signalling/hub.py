"""The node's rooms and their media: turns room events into media-plane calls and protocol messages.

`rooms.Room` decides; the hub applies: it creates routers, producers and consumers, and tells each
session what changed. A failure while serving one participant is contained to that participant.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sfu.consumer import PauseReason
from sfu.params import ConsumerParams, MediaKind
from signalling.quality import Quality
from signalling.rooms import (
    CheckInChanged,
    MemberState,
    ParticipantAdmitted,
    ParticipantDeclined,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuteChanged,
    ParticipantRemoved,
    ParticipantStateChanged,
    Room,
    RoomEnded,
    RoomError,
    RoomEvent,
    RoomKind,
    RoomLockChanged,
    RoomRegistry,
    TrackInfo,
    TrackPublished,
    TrackUnpublished,
    WaitingListChanged,
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

    def refresh_pauses(self) -> None:
        """Re-ask `Hub.pause_for` for every consumer (after holds or mutes changed)."""
        ...


@dataclass
class RoomMedia:
    room: Room
    router: Router
    peers: dict[str, Peer] = field(default_factory=dict)
    producers: dict[str, tuple[str, Producer]] = field(default_factory=dict)  # track id -> (publisher, producer)
    reconnect_timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)  # participant id -> expiry
    quality: dict[str, Quality] = field(default_factory=dict)  # last quality told, by participant id


CLOSE_DECLINED, CLOSE_REMOVED = 4003, 4004


class Hub:
    def __init__(self, media: MediaServer, *, grace: float, rng: random.Random | None = None,
                 observer_limit: int = 2, reconnect_grace: float = 30.0) -> None:
        self.media = media
        self.reconnect_grace = reconnect_grace
        self.registry = RoomRegistry(grace=grace, observer_limit=observer_limit)
        self.rng = rng or random.SystemRandom()
        self._rooms: dict[str, RoomMedia] = {}
        self.join_listeners: list[Callable[[], None]] = []  # told when a participant presents a token

    # -- platform operations ------------------------------------------------------------------------

    def create_room(self, kind: RoomKind, *, room_id: str | None, max_observers: int,
                    waiting_room: bool = True) -> Room:
        room_id = room_id or "rm_" + secrets.token_hex(8)
        room = self.registry.create(room_id, kind, max_observers=max_observers, now=time.time(),
                                    waiting_room=waiting_room)
        for gone in [r for r in self._rooms if r not in {x.id for x in self.registry.rooms()}]:
            self._rooms.pop(gone, None)
        self._rooms[room.id] = RoomMedia(room, self.media.create_router())
        log.info("room created room=%s kind=%s waiting_room=%s", room.id, kind.value, waiting_room)
        return room

    def end_room(self, room_id: str, reason: str = "ended_by_platform") -> Room:
        room = self.registry.get(room_id)
        media = self._rooms.get(room_id)
        events = room.end(reason=reason, now=time.time())
        if media is not None and events:
            del self._rooms[room_id]  # nothing of the session stays in memory but the ended room's counts
            for timer in media.reconnect_timers.values():
                timer.cancel()
            media.reconnect_timers.clear()
            media.quality.clear()
            peers = list(media.peers.values())
            media.peers.clear()
            for peer in peers:
                peer.send({"type": "room_ended", "reason": reason})
                peer.terminate(4001, None, "room ended")
            for _, producer in media.producers.values():
                producer.close()
            media.producers.clear()
            self.media.close_router(media.router)
            log.info("room ended room=%s reason=%s", room_id, reason)
        return room

    def join_begun(self) -> None:
        """A participant presented a token (observability: the metrics monitor times joins from here)."""
        for listener in self.join_listeners:
            listener()

    def rooms(self) -> list[Room]:
        self.registry.expire(now=time.time())
        return self.registry.rooms()

    def peers(self) -> list[tuple[Room, Peer]]:
        """Every connected participant with its room (read by the metrics monitor)."""
        return [(media.room, peer) for media in self._rooms.values() for peer in media.peers.values()]

    # -- participant operations ------------------------------------------------------------------------

    def join(self, peer: Peer, claims: JoinClaims, *, token_id: str | None = None) -> Room:
        """Enter `peer` (raises RoomError): into the waiting room, the session, or back where it was when the
        participant is reconnecting. An older connection of the same participant is replaced."""
        room = self.registry.get(claims.room_id)
        now = time.time()
        room.check_join(claims, token_id=token_id, now=now)
        media = self._rooms[room.id]
        old = media.peers.get(claims.participant_id)
        if old is not None:
            old.terminate(4000, "session_replaced", "the same participant joined on another connection")
            self.disconnect(old, "replaced")
        timer = media.reconnect_timers.pop(claims.participant_id, None)
        if timer is not None:
            timer.cancel()
        events = room.join(claims, token_id=token_id, now=now)
        log.info("participant joined room=%s participant=%s role=%s state=%s", room.id, claims.participant_id,
                 claims.role.value, room.members[claims.participant_id].state.value)
        self._apply(media, events)  # before the peer is added: its `joined` reply tells it, and comes first
        media.peers[claims.participant_id] = peer
        return room

    def leave(self, peer: Peer, reason: str) -> None:
        media = self._media_of(peer)
        if media is not None:
            del media.peers[peer.participant_id]
            log.info("participant left room=%s participant=%s reason=%s", media.room.id,
                     peer.participant_id, reason)
            self._apply(media, media.room.leave(peer.participant_id, reason))

    def disconnect(self, peer: Peer, reason: str) -> None:
        """The connection dropped without `leave`: the participant is `reconnecting` for the grace period."""
        media = self._media_of(peer)
        if media is None:
            return
        pid = peer.participant_id
        del media.peers[pid]
        log.info("participant disconnected room=%s participant=%s reason=%s", media.room.id, pid, reason)
        self._apply(media, media.room.disconnect(pid))
        if pid in media.room.members and reason != "replaced":
            loop = asyncio.get_running_loop()
            media.reconnect_timers[pid] = loop.call_later(self.reconnect_grace, self._reconnect_expired,
                                                          media, pid)

    def _reconnect_expired(self, media: RoomMedia, participant_id: str) -> None:
        media.reconnect_timers.pop(participant_id, None)
        member = media.room.members.get(participant_id)
        if member is None or member.state is not MemberState.RECONNECTING or participant_id in media.peers:
            return
        log.info("reconnect grace over room=%s participant=%s", media.room.id, participant_id)
        self._apply(media, media.room.leave(participant_id, "disconnected"))

    def _media_of(self, peer: Peer) -> RoomMedia | None:
        for media in self._rooms.values():
            if media.peers.get(peer.participant_id) is peer:
                return media
        return None

    # -- therapist controls (docs/protocol.md section 6) -------------------------------------------

    def control(self, peer: Peer, room: Room, action: str, message: dict[str, Any]) -> None:
        """Apply one therapist control (raises RoomError, e.g. permission_denied, and then changed nothing)."""
        media = self._rooms.get(room.id)
        if media is None or media.peers.get(peer.participant_id) is not peer:
            raise RoomError("room_ended", "the room has ended")
        by, target = peer.participant_id, message.get("participant_id")
        known = target if isinstance(target, str) and target in room.members else "-"  # never echo free text
        if action == "admit":
            events = room.admit(by, target)
        elif action == "decline":
            events = room.decline(by, target)
        elif action == "remove":
            events = room.remove(by, target)
        elif action == "lock_room":
            events = room.set_locked(by, True)
        elif action == "unlock_room":
            events = room.set_locked(by, False)
        elif action == "mute":
            muted = message.get("muted", True)
            if not isinstance(muted, bool):
                raise RoomError("invalid_message", "muted must be a boolean")
            events = room.set_muted(by, target, muted)
        elif action == "start_check_in":
            events = room.start_check_in(by, target)
        elif action == "end_check_in":
            events = room.end_check_in(by)
        elif action == "end_session":
            room.require_therapist(by)
            log.info("control room=%s by=%s action=%s", room.id, by, action)
            self.end_room(room.id, "ended_by_therapist")
            return
        else:  # pragma: no cover - session only routes the actions above
            raise RoomError("unknown_type", "unknown control")
        log.info("control room=%s by=%s action=%s target=%s", room.id, by, action, known)
        self._apply(media, events)

    def pause_for(self, room: Room, subscriber: str, publisher: str, kind: MediaKind) -> PauseReason:
        """Why a consumer of `publisher`'s track for `subscriber` must not forward (NONE: it may)."""
        if not room.may_receive(subscriber, publisher):
            return PauseReason.HELD
        if kind is MediaKind.AUDIO and room.audio_muted(publisher):
            return PauseReason.PUBLISHER_MUTED
        return PauseReason.NONE

    def report_quality(self, peer: Peer, room: Room, quality: Quality, details: dict[str, Any]) -> None:
        """A participant's quality, measured by its session every ~2 s: told to it and to therapists on change."""
        media = self._rooms.get(room.id)
        if media is None or media.peers.get(peer.participant_id) is not peer:
            return
        if media.quality.get(peer.participant_id) is quality:
            return
        media.quality[peer.participant_id] = quality
        peer.send({"type": "quality", "quality": quality.value, **details})
        for pid in room.therapists():
            therapist = media.peers.get(pid)
            if therapist is not None:
                therapist.send({"type": "participant_quality", "participant_id": peer.participant_id,
                                "quality": quality.value, **details})

    def quality_of(self, room: Room) -> list[dict[str, Any]]:
        media = self._rooms.get(room.id)
        if media is None:
            return []
        return [{"participant_id": pid, "quality": q.value} for pid, q in media.quality.items()]

    def publish(self, peer: Peer, room: Room, track_id: str, kind: str, simulcast: bool, producer: Producer) -> None:
        media = self._rooms[room.id]
        media.producers[track_id] = (peer.participant_id, producer)
        self._apply(media, room.publish(peer.participant_id, TrackInfo(track_id, kind, simulcast)))

    def unpublish(self, peer: Peer, room: Room, track_id: str) -> None:
        self._apply(self._rooms[room.id], room.unpublish(peer.participant_id, track_id))

    def router(self, room: Room) -> Router:
        return self._rooms[room.id].router

    def subscribe_existing(self, peer: Peer, room: Room) -> None:
        """Give a newly joined subscriber a consumer for every track already published in the room
        (nothing while it waits: a waiting client gets no consumer at all)."""
        media = self._rooms[room.id]
        if not room.in_session(peer.participant_id):
            return
        for track_id, (publisher, producer) in list(media.producers.items()):
            if publisher != peer.participant_id:
                self._consume(peer, track_id, publisher, producer)

    def room_view(self, room: Room, *, exclude: str | None = None) -> list[dict[str, Any]]:
        """The others in the session; waiting clients are shown to therapists only (`waiting_room`)."""
        return [participant_view(room, pid) for pid in room.members if pid != exclude and room.in_session(pid)]

    def room_info(self, room: Room, participant_id: str) -> dict[str, Any]:
        """What `joined`/`admitted` carry about the room for `participant_id`."""
        info: dict[str, Any] = {"id": room.id, "kind": room.kind.value, "locked": room.locked,
                                "check_in": room.check_in,
                                "participants": self.room_view(room, exclude=participant_id)}
        if participant_id in room.therapists():
            info["waiting"] = waiting_view(room)
            info["quality"] = self.quality_of(room)
        return info

    # -- applying room events ------------------------------------------------------------------------

    def _apply(self, media: RoomMedia, events: list[RoomEvent]) -> None:
        holds_changed = False
        for event in events:
            if isinstance(event, ParticipantJoined):
                view = participant_view(media.room, event.participant_id)
                self._broadcast(media, {"type": "participant_joined", "participant": view}, event.participant_id)
            elif isinstance(event, ParticipantLeft):
                media.quality.pop(event.participant_id, None)
                self._broadcast(media, {"type": "participant_left", "participant_id": event.participant_id,
                                        "reason": event.reason}, event.participant_id)
            elif isinstance(event, TrackPublished):
                track = {"id": event.track.id, "kind": event.track.kind, "simulcast": event.track.simulcast}
                self._broadcast(media, {"type": "track_published", "participant_id": event.participant_id,
                                        "track": track}, event.participant_id)
                _, producer = media.producers[event.track.id]
                for pid, peer in list(media.peers.items()):
                    if pid != event.participant_id and media.room.in_session(pid):
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
            elif isinstance(event, WaitingListChanged):
                self._to_therapists(media, {"type": "waiting_room", "waiting": waiting_view(media.room)})
            elif isinstance(event, ParticipantAdmitted):
                admitted = media.peers.get(event.participant_id)
                if admitted is not None:
                    admitted.send({"type": "admitted", "room": self.room_info(media.room, event.participant_id)})
                    self.subscribe_existing(admitted, media.room)
                holds_changed = True
            elif isinstance(event, ParticipantDeclined):
                self._dismiss(media, event.participant_id, "declined", CLOSE_DECLINED,
                              "The therapist could not admit you to this session. Please contact your practice.")
            elif isinstance(event, ParticipantRemoved):
                self._dismiss(media, event.participant_id, "removed", CLOSE_REMOVED,
                              "The therapist removed you from this session.")
            elif isinstance(event, RoomLockChanged):
                self._broadcast(media, {"type": "room_locked", "locked": event.locked}, "")
            elif isinstance(event, ParticipantMuteChanged):
                self._broadcast(media, {"type": "participant_muted", "participant_id": event.participant_id,
                                        "muted": event.muted}, "")
                holds_changed = True
            elif isinstance(event, CheckInChanged):
                self._broadcast(media, {"type": "check_in", "active": event.participant_id is not None,
                                        "participant_id": event.participant_id,
                                        "therapist_id": event.therapist_id}, "")
                holds_changed = True
            elif isinstance(event, ParticipantStateChanged):
                self._broadcast(media, {"type": "participant_state", "participant_id": event.participant_id,
                                        "state": event.state.value}, "")
                member_peer = media.peers.get(event.participant_id)
                if member_peer is not None and event.state in (MemberState.ON_HOLD, MemberState.ACTIVE):
                    member_peer.send({"type": "on_hold", "active": event.state is MemberState.ON_HOLD})
                holds_changed = True
            elif isinstance(event, RoomEnded):  # pragma: no cover - end_room handles ending itself
                pass
        if holds_changed:
            for peer in list(media.peers.values()):
                peer.refresh_pauses()

    def _dismiss(self, media: RoomMedia, participant_id: str, kind: str, code: int, message: str) -> None:
        peer = media.peers.pop(participant_id, None)
        if peer is not None:
            peer.send({"type": kind, "message": message})
            peer.terminate(code, None, kind)

    def _to_therapists(self, media: RoomMedia, message: dict[str, Any]) -> None:
        for pid in media.room.therapists():
            peer = media.peers.get(pid)
            if peer is not None:
                peer.send(message)

    def _broadcast(self, media: RoomMedia, message: dict[str, Any], origin: str) -> None:
        """To everyone admitted (waiting clients learn nothing about the session), except `origin`."""
        for pid, peer in list(media.peers.items()):
            if pid != origin and media.room.in_session(pid):
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
        "state": member.state.value,
        "audio_muted": member.audio_muted,
        "tracks": [{"id": t.id, "kind": t.kind, "simulcast": t.simulcast} for t in member.tracks.values()],
    }


def waiting_view(room: Room) -> list[dict[str, Any]]:
    return [{"id": m.participant_id, "role": m.role.value, "name": m.name} for m in room.waiting()]
