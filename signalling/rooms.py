"""Room rules without I/O: kinds and capacity, roles, waiting room, therapist controls, private check-ins,
reconnect states, publishing, ending. Every mutation returns events; the hub applies them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from signalling.tokens import LEEWAY as TOKEN_LEEWAY
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


class MemberState(str, enum.Enum):
    """Where a participant is in a care session (docs/protocol.md section 6)."""

    WAITING = "waiting"  # connected to signalling, no media either way until a therapist admits them
    ACTIVE = "active"
    ON_HOLD = "on_hold"  # a private check-in between the therapist and someone else is under way
    RECONNECTING = "reconnecting"  # the connection dropped; the slot is kept for the grace period
    REMOVED = "removed"  # only ever seen in events: a removed member leaves the room at once


IN_SESSION = (MemberState.ACTIVE, MemberState.ON_HOLD)  # states whose media flows (subject to holds)


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
    state: MemberState = MemberState.ACTIVE
    resume_state: MemberState = MemberState.ACTIVE  # what a reconnect returns to
    audio_muted: bool = False  # by the therapist, at the server
    token_id: str | None = None  # a digest of the join token, remembered if the member is removed
    token_expires_at: int = 0


@dataclass(frozen=True)
class ParticipantJoined:
    """The participant entered the session proper (directly, or admitted from the waiting room)."""

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


@dataclass(frozen=True)
class WaitingListChanged:
    room_id: str


@dataclass(frozen=True)
class ParticipantAdmitted:
    room_id: str
    participant_id: str


@dataclass(frozen=True)
class ParticipantDeclined:
    room_id: str
    participant_id: str


@dataclass(frozen=True)
class ParticipantRemoved:
    room_id: str
    participant_id: str


@dataclass(frozen=True)
class RoomLockChanged:
    room_id: str
    locked: bool


@dataclass(frozen=True)
class ParticipantMuteChanged:
    room_id: str
    participant_id: str
    muted: bool


@dataclass(frozen=True)
class CheckInChanged:
    room_id: str
    participant_id: str | None  # who is in a check-in with the therapist; None when it ended
    therapist_id: str | None


@dataclass(frozen=True)
class ParticipantStateChanged:
    room_id: str
    participant_id: str
    state: MemberState


RoomEvent = (
    ParticipantJoined | ParticipantLeft | TrackPublished | TrackUnpublished | RoomEnded | WaitingListChanged
    | ParticipantAdmitted | ParticipantDeclined | ParticipantRemoved | RoomLockChanged | ParticipantMuteChanged
    | CheckInChanged | ParticipantStateChanged
)


class Room:
    """One session's membership. Every mutation returns the events others must be told about."""

    def __init__(self, room_id: str, kind: RoomKind, *, max_observers: int, now: float,
                 observer_limit: int = MAX_OBSERVERS, waiting_room: bool = True) -> None:
        if not ROOM_ID_RE.match(room_id):
            raise RoomError("bad_request", "room id must be 1-64 chars of [A-Za-z0-9_-]")
        if not 0 <= max_observers <= observer_limit:
            raise RoomError("bad_request", f"max_observers must be 0..{observer_limit}")
        self.id = room_id
        self.kind = kind
        self.max_observers = max_observers
        self.waiting_room = waiting_room
        self.created_at = now
        self.ended_at: float | None = None
        self.members: dict[str, Member] = {}
        self.locked = False
        self.check_in: str | None = None  # the participant in a private check-in with the therapist
        self.removed_tokens: dict[str, int] = {}  # token id -> its expiry (unix s): refused until then
        self.admitted: dict[Role, int] = {role: 0 for role in Role}  # counts kept after the room ends

    @property
    def state(self) -> RoomState:
        return RoomState.OPEN if self.ended_at is None else RoomState.ENDED

    @property
    def capacity(self) -> dict[Role, int]:
        return {Role.THERAPIST: 1, Role.CLIENT: CLIENT_CAPACITY[self.kind], Role.OBSERVER: self.max_observers}

    def count(self, role: Role) -> int:
        return sum(1 for m in self.members.values() if m.role is role)

    def waiting(self) -> list[Member]:
        return [m for m in self.members.values() if m.state is MemberState.WAITING]

    def in_session(self, participant_id: str) -> bool:
        """Admitted (not waiting): may see the room and be told about it, even while reconnecting."""
        member = self.members.get(participant_id)
        return member is not None and member.state is not MemberState.WAITING

    def therapists(self) -> list[str]:
        return [m.participant_id for m in self.members.values()
                if m.role is Role.THERAPIST and m.state is not MemberState.WAITING]

    # -- joining and leaving --------------------------------------------------------------------------

    def check_join(self, claims: JoinClaims, *, token_id: str | None = None, now: float | None = None) -> None:
        """Raise RoomError if `claims` may not join now. A participant already present may rejoin."""
        if claims.room_id != self.id:
            raise RoomError("wrong_room", "token is for another room")
        if self.state is RoomState.ENDED:
            raise RoomError("room_ended", "the room has ended")
        if token_id is not None and token_id in self.removed_tokens:
            if now is None or now <= self.removed_tokens[token_id] + TOKEN_LEEWAY:
                raise RoomError("removed", "you were removed from this session")
            del self.removed_tokens[token_id]
        existing = self.members.get(claims.participant_id)
        if existing is not None and existing.role is claims.role:
            return  # a reconnect takes over its own slot
        if self.locked and claims.role is not Role.THERAPIST:
            raise RoomError("room_locked", "the therapist has locked this session")
        limit = self.capacity[claims.role]
        if self.count(claims.role) >= limit:
            what = "observers are not allowed" if limit == 0 else f"no {claims.role.value} slot left"
            raise RoomError("room_full", f"the room is full: {what}")

    def join(self, claims: JoinClaims, *, token_id: str | None = None, now: float | None = None) -> list[RoomEvent]:
        """Enter the room: clients of a waiting-room room wait; a participant already present resumes
        where they were (a reconnect skips the waiting room)."""
        self.check_join(claims, token_id=token_id, now=now)
        existing = self.members.get(claims.participant_id)
        if existing is not None and existing.state is not MemberState.WAITING and existing.role is claims.role:
            return self._resume(existing, claims, token_id)
        events: list[RoomEvent] = []
        if existing is not None:
            events += self.leave(claims.participant_id, "replaced")
        waits = self.waiting_room and claims.role is Role.CLIENT
        member = Member(participant_id=claims.participant_id, role=claims.role, grants=claims.grants,
                        name=claims.name, token_id=token_id, token_expires_at=claims.expires_at)
        self.members[claims.participant_id] = member
        if waits:
            member.state = MemberState.WAITING
            events.append(WaitingListChanged(self.id))
            return events
        return events + self._enter(member)

    def _enter(self, member: Member) -> list[RoomEvent]:
        held = self.check_in is not None and member.role is not Role.THERAPIST
        member.state = MemberState.ON_HOLD if held else MemberState.ACTIVE
        self.admitted[member.role] += 1
        events: list[RoomEvent] = [ParticipantJoined(self.id, member.participant_id)]
        if held:
            events.append(ParticipantStateChanged(self.id, member.participant_id, MemberState.ON_HOLD))
        return events

    def _resume(self, member: Member, claims: JoinClaims, token_id: str | None) -> list[RoomEvent]:
        events: list[RoomEvent] = []
        if member.state is not MemberState.RECONNECTING:
            events += self.disconnect(member.participant_id)  # the older connection is still open
        member.grants, member.name, member.token_id = claims.grants, claims.name, token_id
        member.token_expires_at = claims.expires_at
        member.state = member.resume_state
        events.append(ParticipantStateChanged(self.id, member.participant_id, member.state))
        return events

    def disconnect(self, participant_id: str) -> list[RoomEvent]:
        """The connection dropped without `leave`: keep the slot (grace period), stop its media."""
        member = self.members.get(participant_id)
        if member is None or member.state is MemberState.RECONNECTING:
            return []
        if member.state is MemberState.WAITING:
            return self.leave(participant_id, "disconnected")  # nothing to resume: they simply knock again
        member.resume_state = member.state
        member.state = MemberState.RECONNECTING
        events: list[RoomEvent] = [TrackUnpublished(self.id, participant_id, t) for t in member.tracks]
        member.tracks.clear()
        events.append(ParticipantStateChanged(self.id, participant_id, MemberState.RECONNECTING))
        return events

    def leave(self, participant_id: str, reason: str) -> list[RoomEvent]:
        member = self.members.pop(participant_id, None)
        if member is None:
            return []
        if member.state is MemberState.WAITING:
            return [WaitingListChanged(self.id)]
        events: list[RoomEvent] = [TrackUnpublished(self.id, participant_id, t) for t in member.tracks]
        if self.check_in is not None and (participant_id == self.check_in or member.role is Role.THERAPIST):
            events += self._end_check_in()
        events.append(ParticipantLeft(self.id, participant_id, reason))
        return events

    # -- therapist controls ------------------------------------------------------------------------

    def require_therapist(self, by: str) -> None:
        """Raise `permission_denied` unless `by` is this room's therapist, in the session."""
        self._require_therapist(by)

    def _require_therapist(self, by: str) -> None:
        member = self.members.get(by)
        if member is None or member.role is not Role.THERAPIST or member.state not in IN_SESSION:
            raise RoomError("permission_denied", "only the therapist may do this")
        if self.state is RoomState.ENDED:
            raise RoomError("room_ended", "the room has ended")

    def _target(self, participant_id: object, *, waiting: bool | None = None) -> Member:
        member = self.members.get(participant_id) if isinstance(participant_id, str) else None
        if member is None or (waiting is not None and (member.state is MemberState.WAITING) != waiting):
            where = "in the waiting room" if waiting else "in the session"
            raise RoomError("unknown_participant", f"no such participant {where}")
        return member

    def admit(self, by: str, participant_id: object) -> list[RoomEvent]:
        self._require_therapist(by)
        member = self._target(participant_id, waiting=True)
        return [ParticipantAdmitted(self.id, member.participant_id), WaitingListChanged(self.id),
                *self._enter(member)]

    def decline(self, by: str, participant_id: object) -> list[RoomEvent]:
        self._require_therapist(by)
        member = self._target(participant_id, waiting=True)
        del self.members[member.participant_id]
        return [ParticipantDeclined(self.id, member.participant_id), WaitingListChanged(self.id)]

    def remove(self, by: str, participant_id: object) -> list[RoomEvent]:
        """Disconnect a participant (waiting or in session); their token is refused from now on."""
        self._require_therapist(by)
        member = self._target(participant_id)
        if member.participant_id == by:
            raise RoomError("invalid_state", "the therapist cannot remove themselves; end the session instead")
        if member.token_id is not None:
            self.removed_tokens[member.token_id] = member.token_expires_at
        return [ParticipantRemoved(self.id, member.participant_id),
                *self.leave(member.participant_id, "removed")]

    def set_locked(self, by: str, locked: bool) -> list[RoomEvent]:
        self._require_therapist(by)
        if self.locked is locked:
            return []
        self.locked = locked
        return [RoomLockChanged(self.id, locked)]

    def set_muted(self, by: str, participant_id: object, muted: bool) -> list[RoomEvent]:
        self._require_therapist(by)
        member = self._target(participant_id, waiting=False)
        if member.audio_muted is muted:
            return []
        member.audio_muted = muted
        return [ParticipantMuteChanged(self.id, member.participant_id, muted)]

    def start_check_in(self, by: str, participant_id: object) -> list[RoomEvent]:
        """Only the therapist and `participant_id` exchange media; every other admitted member is held."""
        self._require_therapist(by)
        member = self._target(participant_id, waiting=False)
        if member.role is not Role.CLIENT:
            raise RoomError("invalid_state", "a check-in is with a client")
        if self.check_in == member.participant_id:
            return []
        events = self._end_check_in() if self.check_in is not None else []
        self.check_in = member.participant_id
        events.append(CheckInChanged(self.id, member.participant_id, by))
        for other in self.members.values():
            if other.participant_id in (by, member.participant_id) or other.state is MemberState.WAITING:
                continue
            if other.state is MemberState.RECONNECTING:
                other.resume_state = MemberState.ON_HOLD
            elif other.state is not MemberState.ON_HOLD:
                other.state = MemberState.ON_HOLD
                events.append(ParticipantStateChanged(self.id, other.participant_id, MemberState.ON_HOLD))
        for pair in (by, member.participant_id):  # a reconnecting member of the pair comes back into it
            self.members[pair].resume_state = MemberState.ACTIVE
            if self.members[pair].state is MemberState.ON_HOLD:
                self.members[pair].state = MemberState.ACTIVE
                events.append(ParticipantStateChanged(self.id, pair, MemberState.ACTIVE))
        return events

    def end_check_in(self, by: str) -> list[RoomEvent]:
        self._require_therapist(by)
        return self._end_check_in()

    def _end_check_in(self) -> list[RoomEvent]:
        if self.check_in is None:
            return []
        self.check_in = None
        events: list[RoomEvent] = [CheckInChanged(self.id, None, None)]
        for member in self.members.values():
            member.resume_state = MemberState.ACTIVE
            if member.state is MemberState.ON_HOLD:
                member.state = MemberState.ACTIVE
                events.append(ParticipantStateChanged(self.id, member.participant_id, MemberState.ACTIVE))
        return events

    # -- media rules (the hub applies them to consumers) ----------------------------------------------

    def may_receive(self, subscriber: str, publisher: str) -> bool:
        """May media from `publisher` reach `subscriber` now? Waiting and reconnecting members get none;
        during a check-in the pair and the held are two islands."""
        sub, pub = self.members.get(subscriber), self.members.get(publisher)
        if sub is None or pub is None or sub.state not in IN_SESSION or pub.state not in IN_SESSION:
            return False
        if self.check_in is None:
            return True
        return self._in_pair(sub) == self._in_pair(pub)

    def _in_pair(self, member: Member) -> bool:
        return member.participant_id == self.check_in or member.role is Role.THERAPIST

    def audio_muted(self, participant_id: str) -> bool:
        member = self.members.get(participant_id)
        return member is not None and member.audio_muted

    # -- publishing -----------------------------------------------------------------------------------

    def can_publish(self, participant_id: str) -> bool:
        member = self.members.get(participant_id)
        return member is not None and member.grants.publish and member.role is not Role.OBSERVER

    def publish(self, participant_id: str, track: TrackInfo) -> list[RoomEvent]:
        if self.state is RoomState.ENDED:
            raise RoomError("room_ended", "the room has ended")
        if not self.can_publish(participant_id):
            raise RoomError("permission_denied", "this participant may not publish")
        if self.members[participant_id].state not in IN_SESSION:
            raise RoomError("not_admitted", "wait until the therapist admits you")
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
        """End the session; nothing about its members stays in memory (only the admitted counts)."""
        if self.ended_at is not None:
            return []
        events: list[RoomEvent] = []
        for pid in list(self.members):
            events += self.leave(pid, "room_ended")
        self.ended_at = now
        self.removed_tokens.clear()
        self.locked = False
        events.append(RoomEnded(self.id, reason))
        return events


class RoomRegistry:
    """All rooms of this node. Ended rooms are forgotten after `grace` seconds."""

    def __init__(self, *, grace: float, observer_limit: int = MAX_OBSERVERS) -> None:
        self.grace = grace
        self.observer_limit = observer_limit
        self._rooms: dict[str, Room] = {}

    def create(self, room_id: str, kind: RoomKind, *, max_observers: int, now: float,
               waiting_room: bool = True) -> Room:
        self.expire(now=now)
        if room_id in self._rooms:
            raise RoomError("room_exists", "a room with this id exists")
        room = Room(room_id, kind, max_observers=max_observers, now=now, observer_limit=self.observer_limit,
                    waiting_room=waiting_room)
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
