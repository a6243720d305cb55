"""The care-session rules of `signalling.rooms`, without I/O: states, permissions, holds and who hears whom."""

from __future__ import annotations

import pytest

from signalling.quality import LinkStats, Quality, grade
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
    RoomError,
    RoomKind,
    RoomLockChanged,
    TrackInfo,
    TrackUnpublished,
    WaitingListChanged,
)
from signalling.tokens import Grants, JoinClaims, Role

T, A, B, O = "t", "a", "b", "o"  # therapist, two clients, an observer


def claims(pid: str, role: Role, exp: int = 100) -> JoinClaims:
    return JoinClaims(room_id="r", participant_id=pid, role=role, grants=Grants.for_role(role), issued_at=0,
                      expires_at=exp, name=f"name-{pid}")


def couples(*, waiting_room: bool = True, admit: bool = True) -> Room:
    """Therapist, clients a and b (admitted unless told otherwise) and an observer."""
    room = Room("r", RoomKind.COUPLES, max_observers=1, now=0.0, waiting_room=waiting_room)
    room.join(claims(T, Role.THERAPIST), token_id="tok-t")
    room.join(claims(A, Role.CLIENT), token_id="tok-a")
    room.join(claims(B, Role.CLIENT), token_id="tok-b")
    room.join(claims(O, Role.OBSERVER), token_id="tok-o")
    if admit and waiting_room:
        room.admit(T, A)
        room.admit(T, B)
    return room


@pytest.mark.parametrize(
    ("waiting_room", "role", "state"),
    [
        (True, Role.CLIENT, MemberState.WAITING),
        (True, Role.THERAPIST, MemberState.ACTIVE),
        (True, Role.OBSERVER, MemberState.ACTIVE),  # supervisors enter, and are shown to everyone
        (False, Role.CLIENT, MemberState.ACTIVE),
    ],
)
def test_who_waits(waiting_room: bool, role: Role, state: MemberState) -> None:
    room = Room("r", RoomKind.FAMILY, max_observers=1, now=0.0, waiting_room=waiting_room)
    events = room.join(claims("p", role))
    assert room.members["p"].state is state
    assert events == ([WaitingListChanged("r")] if state is MemberState.WAITING else [ParticipantJoined("r", "p")])


def test_waiting_client_gets_and_sends_nothing_until_admitted() -> None:
    room = couples(admit=False)
    assert [m.participant_id for m in room.waiting()] == [A, B]
    assert not room.may_receive(A, T) and not room.may_receive(T, A) and not room.in_session(A)
    with pytest.raises(RoomError) as info:
        room.publish(A, TrackInfo("x", "audio"))
    assert info.value.code == "not_admitted"
    assert room.admit(T, A) == [ParticipantAdmitted("r", A), WaitingListChanged("r"), ParticipantJoined("r", A)]
    assert room.may_receive(A, T) and room.may_receive(T, A) and room.may_receive(O, A)
    assert room.decline(T, B) == [ParticipantDeclined("r", B), WaitingListChanged("r")]
    assert B not in room.members and room.waiting() == []


CONTROLS = [
    ("admit", lambda r, by: r.admit(by, A)),
    ("decline", lambda r, by: r.decline(by, A)),
    ("remove", lambda r, by: r.remove(by, B)),
    ("lock", lambda r, by: r.set_locked(by, True)),
    ("mute", lambda r, by: r.set_muted(by, B, True)),
    ("check-in", lambda r, by: r.start_check_in(by, B)),
    ("end check-in", lambda r, by: r.end_check_in(by)),
]


@pytest.mark.parametrize("by", [B, O, "stranger"])
@pytest.mark.parametrize(("name", "control"), CONTROLS, ids=[c[0] for c in CONTROLS])
def test_only_the_therapist_controls(by: str, name: str, control: object) -> None:
    room = Room("r", RoomKind.COUPLES, max_observers=1, now=0.0)
    room.join(claims(T, Role.THERAPIST))
    room.join(claims(A, Role.CLIENT))
    room.join(claims(B, Role.CLIENT))
    room.join(claims(O, Role.OBSERVER))
    room.admit(T, B)
    before = {pid: (m.state, m.audio_muted) for pid, m in room.members.items()}
    with pytest.raises(RoomError) as info:
        control(room, by)  # type: ignore[operator]
    assert info.value.code == "permission_denied"
    assert {pid: (m.state, m.audio_muted) for pid, m in room.members.items()} == before
    assert (room.locked, room.check_in) == (False, None)
    control(room, T)  # type: ignore[operator]  # the therapist may


def test_remove_refuses_the_same_token_until_it_expires() -> None:
    room = couples()
    assert room.remove(T, B)[:1] == [ParticipantRemoved("r", B)]
    assert B not in room.members
    with pytest.raises(RoomError) as info:
        room.join(claims(B, Role.CLIENT), token_id="tok-b", now=50.0)
    assert info.value.code == "removed"
    room.join(claims(B, Role.CLIENT), token_id="tok-b-new", now=50.0)  # the platform may mint a new one
    room.leave(B, "left")
    room.join(claims(B, Role.CLIENT), token_id="tok-b", now=1000.0)  # an expired token is refused elsewhere
    with pytest.raises(RoomError):
        room.remove(T, T)


@pytest.mark.parametrize(
    ("role", "present", "refused"),
    [
        (Role.CLIENT, False, "room_locked"),
        (Role.OBSERVER, False, "room_locked"),
        (Role.THERAPIST, False, None),  # the host is never locked out of their own session
        (Role.CLIENT, True, None),  # a reconnect is not a new join
    ],
)
def test_lock(role: Role, present: bool, refused: str | None) -> None:
    room = couples(admit=False)
    room.decline(T, B)
    pid = {Role.CLIENT: B, Role.OBSERVER: "o2", Role.THERAPIST: T}[role]
    if role is Role.OBSERVER:
        room.leave(O, "left")
    if present:
        room.join(claims(pid, role))
        room.admit(T, pid)
        room.disconnect(pid)
    assert room.set_locked(T, True) == [RoomLockChanged("r", True)]
    if role is Role.THERAPIST:
        room.leave(T, "disconnected")  # the therapist's grace period ran out
    if refused:
        with pytest.raises(RoomError) as info:
            room.join(claims(pid, role))
        assert info.value.code == refused
        assert pid not in room.members  # not even in the waiting room
    else:
        room.join(claims(pid, role))
        assert pid in room.members


def test_mute_pauses_audio_only_of_that_participant() -> None:
    room = couples()
    assert room.set_muted(T, A, True) == [ParticipantMuteChanged("r", A, True)]
    assert room.audio_muted(A) and not room.audio_muted(B)
    assert room.set_muted(T, A, True) == []
    assert room.set_muted(T, A, False) == [ParticipantMuteChanged("r", A, False)]


# Who receives whom during a check-in between the therapist and b: (subscriber, publisher) -> allowed.
CHECK_IN = {
    (T, B): True, (B, T): True,  # the pair
    (A, T): False, (T, A): False, (A, B): False, (B, A): False,  # the held and the pair are apart
    (O, T): False, (O, B): False, (O, A): True,  # the observer is held too, with a
}


@pytest.mark.parametrize(("pair", "allowed"), list(CHECK_IN.items()), ids=[f"{s}<-{p}" for s, p in CHECK_IN])
def test_check_in_islands(pair: tuple[str, str], allowed: bool) -> None:
    room = couples()
    room.start_check_in(T, B)
    assert room.may_receive(*pair) is allowed
    room.end_check_in(T)
    assert room.may_receive(*pair)


def test_check_in_states_and_events() -> None:
    room = couples()
    events = room.start_check_in(T, B)
    assert events == [CheckInChanged("r", B, T), ParticipantStateChanged("r", A, MemberState.ON_HOLD),
                      ParticipantStateChanged("r", O, MemberState.ON_HOLD)]
    assert room.start_check_in(T, B) == []
    switched = room.start_check_in(T, A)  # straight to a check-in with the other partner
    assert room.members[A].state is MemberState.ACTIVE and room.members[B].state is MemberState.ON_HOLD
    assert CheckInChanged("r", A, T) in switched
    with pytest.raises(RoomError):
        room.start_check_in(T, O)  # a check-in is with a client
    assert room.end_check_in(T)[0] == CheckInChanged("r", None, None)
    assert all(m.state is MemberState.ACTIVE for m in room.members.values())


def test_check_in_ends_when_its_client_leaves() -> None:
    room = couples()
    room.start_check_in(T, B)
    events = room.leave(B, "left")
    assert CheckInChanged("r", None, None) in events and room.members[A].state is MemberState.ACTIVE


@pytest.mark.parametrize("during_check_in", [False, True])
def test_reconnect_resumes_where_they_were(during_check_in: bool) -> None:
    room = couples()
    room.publish(A, TrackInfo("ta", "audio"))
    if during_check_in:
        room.start_check_in(T, B)
    events = room.disconnect(A)
    assert events == [TrackUnpublished("r", A, "ta"), ParticipantStateChanged("r", A, MemberState.RECONNECTING)]
    assert not room.may_receive(T, A) and not room.may_receive(A, O)
    expected = MemberState.ON_HOLD if during_check_in else MemberState.ACTIVE
    assert room.join(claims(A, Role.CLIENT), token_id="tok-a") == [ParticipantStateChanged("r", A, expected)]
    assert room.members[A].state is expected  # never back to the waiting room


def test_check_in_ending_while_reconnecting_resumes_active() -> None:
    room = couples()
    room.start_check_in(T, B)
    room.disconnect(A)
    room.end_check_in(T)
    room.join(claims(A, Role.CLIENT))
    assert room.members[A].state is MemberState.ACTIVE


def test_waiting_client_that_drops_just_leaves_the_list() -> None:
    room = couples(admit=False)
    assert room.disconnect(A) == [WaitingListChanged("r")]
    assert A not in room.members


def test_end_forgets_members_and_keeps_counts() -> None:
    room = couples()
    room.remove(T, B)
    events = room.end(reason="ended_by_therapist", now=9.0)
    assert ParticipantLeft("r", A, "room_ended") in events
    assert room.members == {} and room.removed_tokens == {} and room.check_in is None
    assert room.admitted == {Role.THERAPIST: 1, Role.CLIENT: 2, Role.OBSERVER: 1}


@pytest.mark.parametrize(
    ("stats", "quality"),
    [
        (LinkStats(), Quality.GOOD),
        (LinkStats(fraction_lost=0.01, jitter_s=0.01, rtt_s=0.05), Quality.GOOD),
        (LinkStats(fraction_lost=0.05), Quality.FAIR),
        (LinkStats(jitter_s=0.05), Quality.FAIR),
        (LinkStats(rtt_s=0.4), Quality.FAIR),
        (LinkStats(audio_only=True), Quality.FAIR),
        (LinkStats(fraction_lost=0.15), Quality.POOR),
        (LinkStats(jitter_s=0.2), Quality.POOR),
        (LinkStats(rtt_s=1.0, audio_only=True), Quality.POOR),
    ],
)
def test_quality_grades(stats: LinkStats, quality: Quality) -> None:
    assert grade(stats) is quality
