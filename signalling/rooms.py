"""Room rules without I/O: kinds and capacity, roles, join/leave, publishing, ending; returns events."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from signalling.tokens import ROOM_ID_RE, Grants, JoinClaims, Role


class RoomKind(str, enum.Enum):
    INDIVIDUAL = "individual"
    COUPLES = "couples"
    FAMILY = "family"


# Client slots besides the one therapist (DESIGN.md section 5).
CLIENT_CAPACITY = {RoomKind.INDIVIDUAL: 1, RoomKind.COUPLES: 2, RoomKind.FAMILY: 6}
MAX_OBSERVERS = 2  # per room, unless the operator raises `Config.max_observers` (e.g. a teaching clinic)
DEFAULT_OBSERVERS = 1


class RoomState(str, enum.Enum):
    OPEN = "open"
    ENDED = "ended"


class RoomError(Exception):
    """A rule refused an action. `code` is the protocol's stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TrackInfo:
    id: str
    kind: str  # "audio" | "video"
    simulcast: bool = False


@dataclass
class Member:
    participant_id: str
    role: Role
    grants: Grants
    name: str | None = None
    tracks: dict[str, TrackInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class ParticipantJoined:
    room_id: str
    participant_id: str


@dataclass(frozen=True)
class ParticipantLeft:
    room_id: str
    participant_id: str
    reason: str


@dataclass(frozen=True)
class TrackPublished:
    room_id: str
    participant_id: str
    track: TrackInfo


@dataclass(frozen=True)
class TrackUnpublished:
    room_id: str
    participant_id: str
    track_id: str


@dataclass(frozen=True)
class RoomEnded:
    room_id: str
    reason: str


RoomEvent = ParticipantJoined | ParticipantLeft | TrackPublished | TrackUnpublished | RoomEnded


class Room:
    """One session's membership. Every mutation returns the events others must be told about."""

    def __init__(self, room_id: str, kind: RoomKind, *, max_observers: int, now: float,
                 observer_limit: int = MAX_OBSERVERS) -> None:
        if not ROOM_ID_RE.match(room_id):
            raise RoomError("bad_request", "room id must be 1-64 chars of [A-Za-z0-9_-]")
        if not 0 <= max_observers <= observer_limit:
            raise RoomError("bad_request", f"max_observers must be 0..{observer_limit}")
        self.id = room_id
        self.kind = kind
        self.max_observers = max_observers
        self.created_at = now
        self.ended_at: float | None = None
        self.members: dict[str, Member] = {}

    @property
    def state(self) -> RoomState:
        return RoomState.OPEN if self.ended_at is None else RoomState.ENDED

    @property
    def capacity(self) -> dict[Role, int]:
        return {Role.THERAPIST: 1, Role.CLIENT: CLIENT_CAPACITY[self.kind], Role.OBSERVER: self.max_observers}

    def count(self, role: Role) -> int:
        return sum(1 for m in self.members.values() if m.role is role)

    def check_join(self, claims: JoinClaims) -> None:
        """Raise RoomError if `claims` may not join now. A participant already present may rejoin."""
        if claims.room_id != self.id:
            raise RoomError("wrong_room", "token is for another room")
        if self.state is RoomState.ENDED:
            raise RoomError("room_ended", "the room has ended")
        existing = self.members.get(claims.participant_id)
        if existing is not None and existing.role is claims.role:
            return  # a reconnect takes over its own slot
        limit = self.capacity[claims.role]
        if self.count(claims.role) >= limit:
            what = "observers are not allowed" if limit == 0 else f"no {claims.role.value} slot left"
            raise RoomError("room_full", f"the room is full: {what}")

    def join(self, claims: JoinClaims) -> list[RoomEvent]:
        """Admit a participant; a participant id already present is replaced (left, then joined)."""
        self.check_join(claims)
        events: list[RoomEvent] = []
        if claims.participant_id in self.members:
            events += self.leave(claims.participant_id, "replaced")
        self.members[claims.participant_id] = Member(
            participant_id=claims.participant_id, role=claims.role, grants=claims.grants, name=claims.name
        )
        events.append(ParticipantJoined(self.id, claims.participant_id))
        return events

    def leave(self, participant_id: str, reason: str) -> list[RoomEvent]:
        member = self.members.pop(participant_id, None)
        if member is None:
            return []
        events: list[RoomEvent] = [TrackUnpublished(self.id, participant_id, t) for t in member.tracks]
        events.append(ParticipantLeft(self.id, participant_id, reason))
        return events

    def can_publish(self, participant_id: str) -> bool:
        member = self.members.get(participant_id)
        return member is not None and member.grants.publish and member.role is not Role.OBSERVER

    def publish(self, participant_id: str, track: TrackInfo) -> list[RoomEvent]:
        if self.state is RoomState.ENDED:
            raise RoomError("room_ended", "the room has ended")
        if not self.can_publish(participant_id):
            raise RoomError("permission_denied", "this participant may not publish")
        if track.kind not in ("audio", "video"):
            raise RoomError("invalid_message", "track kind must be audio or video")
        self.members[participant_id].tracks[track.id] = track
        return [TrackPublished(self.id, participant_id, track)]

    def unpublish(self, participant_id: str, track_id: str) -> list[RoomEvent]:
        member = self.members.get(participant_id)
        if member is None or member.tracks.pop(track_id, None) is None:
            return []
        return [TrackUnpublished(self.id, participant_id, track_id)]

    def end(self, *, reason: str, now: float) -> list[RoomEvent]:
        if self.ended_at is not None:
            return []
        events: list[RoomEvent] = []
        for pid in list(self.members):
            events += self.leave(pid, "room_ended")
        self.ended_at = now
        events.append(RoomEnded(self.id, reason))
        return events


class RoomRegistry:
    """All rooms of this node. Ended rooms are forgotten after `grace` seconds."""

    def __init__(self, *, grace: float, observer_limit: int = MAX_OBSERVERS) -> None:
        self.grace = grace
        self.observer_limit = observer_limit
        self._rooms: dict[str, Room] = {}

    def create(self, room_id: str, kind: RoomKind, *, max_observers: int, now: float) -> Room:
        self.expire(now=now)
        if room_id in self._rooms:
            raise RoomError("room_exists", "a room with this id exists")
        room = Room(room_id, kind, max_observers=max_observers, now=now, observer_limit=self.observer_limit)
        self._rooms[room_id] = room
        return room

    def get(self, room_id: str) -> Room:
        room = self._rooms.get(room_id)
        if room is None:
            raise RoomError("room_not_found", "no such room")
        return room

    def rooms(self) -> list[Room]:
        return list(self._rooms.values())

    def expire(self, *, now: float) -> list[str]:
        gone = [
            r.id for r in self._rooms.values() if r.ended_at is not None and now - r.ended_at >= self.grace
        ]
        for room_id in gone:
            del self._rooms[room_id]
        return gone
