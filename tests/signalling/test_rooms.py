from __future__ import annotations

import pytest

from signalling.rooms import (
    MemberState,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantStateChanged,
    Room,
    RoomEnded,
    RoomError,
    RoomKind,
    RoomRegistry,
    TrackInfo,
    TrackPublished,
    TrackUnpublished,
)
from signalling.tokens import Grants, JoinClaims, Role


def claims(pid: str, role: Role, room: str = "r1", publish: bool = True) -> JoinClaims:
    grants = Grants(publish=publish and role is not Role.OBSERVER, subscribe=True)
    return JoinClaims(room_id=room, participant_id=pid, role=role, grants=grants, issued_at=0, expires_at=60)


@pytest.mark.parametrize(
    ("kind", "observers", "joins", "refused_code"),
    [
        (RoomKind.INDIVIDUAL, 1, [Role.THERAPIST, Role.CLIENT], None),
        (RoomKind.INDIVIDUAL, 1, [Role.THERAPIST, Role.CLIENT, Role.CLIENT], "room_full"),
        (RoomKind.INDIVIDUAL, 1, [Role.THERAPIST, Role.THERAPIST], "room_full"),
        (RoomKind.COUPLES, 1, [Role.THERAPIST, Role.CLIENT, Role.CLIENT], None),
        (RoomKind.COUPLES, 1, [Role.CLIENT, Role.CLIENT, Role.CLIENT], "room_full"),
        (RoomKind.FAMILY, 1, [Role.THERAPIST] + [Role.CLIENT] * 6, None),
        (RoomKind.FAMILY, 1, [Role.THERAPIST] + [Role.CLIENT] * 7, "room_full"),
        (RoomKind.INDIVIDUAL, 1, [Role.THERAPIST, Role.CLIENT, Role.OBSERVER], None),
        (RoomKind.INDIVIDUAL, 1, [Role.OBSERVER, Role.OBSERVER], "room_full"),
        (RoomKind.INDIVIDUAL, 0, [Role.OBSERVER], "room_full"),
        (RoomKind.FAMILY, 2, [Role.OBSERVER, Role.OBSERVER], None),
    ],
)
def test_capacity(kind: RoomKind, observers: int, joins: list[Role], refused_code: str | None) -> None:
    room = Room("r1", kind, max_observers=observers, now=0.0, waiting_room=False)
    *ok, last = joins
    for i, role in enumerate(ok):
        room.join(claims(f"p{i}", role))
    if refused_code is None:
        assert room.join(claims("last", last))[-1] == ParticipantJoined("r1", "last")
    else:
        with pytest.raises(RoomError) as info:
            room.join(claims("last", last))
        assert info.value.code == refused_code
        assert "last" not in room.members


@pytest.mark.parametrize(
    ("role", "publish_grant", "allowed"),
    [
        (Role.THERAPIST, True, True),
        (Role.CLIENT, True, True),
        (Role.CLIENT, False, False),
        (Role.OBSERVER, True, False),
    ],
)
def test_publish_permission(role: Role, publish_grant: bool, allowed: bool) -> None:
    room = Room("r1", RoomKind.COUPLES, max_observers=1, now=0.0, waiting_room=False)
    room.join(claims("p", role, publish=publish_grant))
    track = TrackInfo("t1", "video")
    if allowed:
        assert room.publish("p", track) == [TrackPublished("r1", "p", track)]
    else:
        with pytest.raises(RoomError) as info:
            room.publish("p", track)
        assert info.value.code == "permission_denied"


def test_leave_unpublishes_then_leaves() -> None:
    room = Room("r1", RoomKind.COUPLES, max_observers=1, now=0.0)
    room.join(claims("a", Role.THERAPIST))
    room.publish("a", TrackInfo("t1", "audio"))
    assert room.leave("a", "left") == [TrackUnpublished("r1", "a", "t1"), ParticipantLeft("r1", "a", "left")]
    assert room.leave("a", "left") == []


def test_rejoin_resumes_and_full_room_still_admits_returning_participant() -> None:
    room = Room("r1", RoomKind.INDIVIDUAL, max_observers=0, now=0.0, waiting_room=False)
    room.join(claims("t", Role.THERAPIST))
    room.join(claims("c", Role.CLIENT))
    events = room.join(claims("c", Role.CLIENT))
    assert events == [ParticipantStateChanged("r1", "c", MemberState.RECONNECTING),
                      ParticipantStateChanged("r1", "c", MemberState.ACTIVE)]


@pytest.mark.parametrize(
    ("token_room", "ended", "code"), [("other", False, "wrong_room"), ("r1", True, "room_ended")]
)
def test_join_refusals(token_room: str, ended: bool, code: str) -> None:
    room = Room("r1", RoomKind.FAMILY, max_observers=1, now=0.0)
    if ended:
        room.end(reason="x", now=1.0)
    with pytest.raises(RoomError) as info:
        room.join(claims("p", Role.CLIENT, room=token_room))
    assert info.value.code == code


def test_end_and_registry_grace() -> None:
    reg = RoomRegistry(grace=10.0)
    room = reg.create("r1", RoomKind.COUPLES, max_observers=1, now=0.0)
    room.join(claims("a", Role.THERAPIST))
    events = room.end(reason="ended_by_platform", now=5.0)
    assert events[-1] == RoomEnded("r1", "ended_by_platform")
    assert ParticipantLeft("r1", "a", "room_ended") in events
    assert room.end(reason="again", now=6.0) == []
    with pytest.raises(RoomError) as dup:
        reg.create("r1", RoomKind.COUPLES, max_observers=1, now=6.0)
    assert dup.value.code == "room_exists"
    assert reg.expire(now=15.0) == ["r1"]
    with pytest.raises(RoomError) as gone:
        reg.get("r1")
    assert gone.value.code == "room_not_found"


@pytest.mark.parametrize(("room_id", "observers"), [("bad id", 1), ("ok", 3), ("ok", -1)])
def test_room_validation(room_id: str, observers: int) -> None:
    with pytest.raises(RoomError) as info:
        Room(room_id, RoomKind.FAMILY, max_observers=observers, now=0.0)
    assert info.value.code == "bad_request"
