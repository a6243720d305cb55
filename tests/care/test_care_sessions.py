"""Care sessions against the real server: waiting room, therapist controls, visible observers, private
check-ins counted at the packet level, quality reports and reconnects (docs/protocol.md section 6)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from client.aiortc_participant import AiortcParticipant
from client.media import Clip
from client.protocol import ProtocolError
from tests.care.conftest import RECONNECT_GRACE
from tests.care.participants import CareParticipant, Session, event, token, wait_for
from tests.integration.server import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MEDIA_REPORTS = {"quality", "participant_quality", "track_paused", "track_resumed", "layer_changed", "audio_only",
                 "participant_audio_only"}  # measurements, not consequences of a control
IN_FLIGHT = 0.1  # packets the server sent before it paused may still be on the loopback wire


@pytest.fixture
async def session(confidant: RunningServer, clip: Clip, request: pytest.FixtureRequest) -> AsyncIterator[Session]:
    kind = getattr(request, "param", "couples")
    s = Session(confidant, clip, await confidant.create_room(kind))  # the default: waiting room on
    try:
        yield s
    finally:
        await s.close()


async def receiving(p: CareParticipant, *sources: CareParticipant) -> None:
    await wait_for(lambda: all(p.packets_from(s.pid) > 20 for s in sources), f"{p.pid} receiving")


# -- 1. waiting room ---------------------------------------------------------------------------------


async def test_waiting_client_gets_no_packet_until_admitted(confidant: RunningServer, session: Session) -> None:
    therapist = AiortcParticipant(confidant.ws_url, token(confidant, session.room, "t", "therapist", "Dr. Lee"))
    try:
        await therapist.join()
        client = await session.join("c1", name="Alex")
        assert client.joined["participant"]["state"] == "waiting"  # type: ignore[index]
        assert client.joined["room"]["participants"] == []  # type: ignore[index]  # nothing about the session
        with pytest.raises(ProtocolError) as refused:
            await client.publish_media()
        assert refused.value.code == "not_admitted"
        waiting = [e for e in therapist.events if e["type"] == "waiting_room"]
        assert waiting[-1]["waiting"] == [{"id": "c1", "role": "client", "name": "Alex"}]
        assert not [e for e in therapist.events if e["type"] == "participant_joined"]
        await asyncio.sleep(2.0)  # the therapist publishes all along
        assert client.packets_total() == 0 and client.offers_answered == 0 and client.log == []

        await therapist.signalling.request({"type": "admit", "participant_id": "c1"})
        admitted = await event(client, "admitted")
        assert [p["id"] for p in admitted["room"]["participants"]] == ["t"]
        await client.publish_media()
        await wait_for(lambda: client.packets_from("t") > 50, "client receiving the therapist")
        await wait_for(lambda: any(s.frames > 10 for s in therapist.tracks_of("c1", "video")),
                       "therapist decoding the client")
        assert [e["waiting"] for e in therapist.events if e["type"] == "waiting_room"][-1] == []

        # A second client is declined: a clear message, then the connection closes.
        other = await session.join("c2", name="Sam")
        await wait_for(lambda: any(e["type"] == "waiting_room" and e["waiting"] for e in therapist.events[-3:]),
                       "c2 in the waiting list")
        await therapist.signalling.request({"type": "decline", "participant_id": "c2"})
        declined = await event(other, "declined")
        assert "could not admit you" in declined["message"]
        await asyncio.wait_for(other.signalling.closed.wait(), 5)
        assert other.signalling.close_code == 4003 and other.packets_total() == 0
    finally:
        await therapist.close()


async def test_therapist_joining_later_sees_who_waits(session: Session) -> None:
    await session.join("c1", name="Alex")
    therapist = await session.join("t", "therapist", "Dr. Lee")
    assert therapist.joined["room"]["waiting"] == [  # type: ignore[index]
        {"id": "c1", "role": "client", "name": "Alex"}]


# -- 2. therapist controls -----------------------------------------------------------------------------


@pytest.mark.parametrize("session", ["family"], indirect=True)
async def test_controls_are_the_therapists_alone(confidant: RunningServer, session: Session) -> None:
    therapist = await session.join("t", "therapist")
    await therapist.publish_media()
    a = await session.admitted(therapist, "a")
    b = await session.admitted(therapist, "b")
    await receiving(b, therapist, a)
    before = await confidant.rest("GET", f"/v1/rooms/{session.room}")
    seen = {p.pid: len(p.log) for p in (therapist, a, b)}
    for message in ({"type": "remove", "participant_id": "b"}, {"type": "lock_room"}, {"type": "unlock_room"},
                    {"type": "mute", "participant_id": "b", "muted": True},
                    {"type": "start_check_in", "participant_id": "b"}, {"type": "end_check_in"},
                    {"type": "admit", "participant_id": "b"}, {"type": "end_session"}):
        with pytest.raises(ProtocolError) as denied:
            await a.request(message)
        assert denied.value.code == "permission_denied", message
    assert await confidant.rest("GET", f"/v1/rooms/{session.room}") == before
    await asyncio.sleep(0.3)
    told = {p.pid: [e["type"] for e in p.log[seen[p.pid]:] if e["type"] not in MEDIA_REPORTS]
            for p in (therapist, a, b)}
    assert told == {"t": [], "a": [], "b": []}

    # Mute a at the server: a's audio stops reaching anyone, a's video does not, and a is told.
    await therapist.request({"type": "mute", "participant_id": "a", "muted": True})
    await event(a, "participant_muted", participant_id="a", muted=True)
    await asyncio.sleep(IN_FLIGHT)
    def audio_of(p: CareParticipant, frm: str) -> dict[int, int]:
        return {ssrc: c.packets for ssrc, c in p.media.received.items()
                if p.owner.get(ssrc) == frm and c.kind == "audio"}

    muted = {p.pid: audio_of(p, "a") for p in (therapist, b)}
    others = audio_of(b, "t")
    assert muted["b"] and muted["t"] and others
    await asyncio.sleep(1.5)
    assert {p.pid: audio_of(p, "a") for p in (therapist, b)} == muted  # not a packet of a's audio
    assert sum(audio_of(b, "t").values()) > sum(others.values()) + 30  # everyone else's audio flows
    audio = set(muted["b"])
    counts = muted["b"]
    await therapist.request({"type": "mute", "participant_id": "a", "muted": False})
    await wait_for(lambda: sum(b.media.received[s].packets for s in audio) > sum(counts.values()) + 20,
                   "a's audio back")

    # Lock: nobody new gets in, not even to the waiting room; unlock lets them knock.
    await therapist.request({"type": "lock_room"})
    await event(b, "room_locked", locked=True)
    with pytest.raises(ProtocolError) as locked:
        await session.join("c")
    assert locked.value.code == "room_locked"
    assert (await confidant.rest("GET", f"/v1/rooms/{session.room}"))[1]["locked"] is True
    await therapist.request({"type": "unlock_room"})
    c = await session.join("c")
    assert c.joined["participant"]["state"] == "waiting"  # type: ignore[index]

    # Remove b: disconnected, told, and the same token is refused from now on.
    b_token = b._token
    await therapist.request({"type": "remove", "participant_id": "b"})
    assert "removed" in (await event(b, "removed"))["message"]
    await asyncio.wait_for(b.signalling.closed.wait(), 5)
    assert b.signalling.close_code == 4004
    await event(a, "participant_left", participant_id="b", reason="removed")
    with pytest.raises(ProtocolError) as refused:
        await session.join("b", tok=b_token)
    assert refused.value.code == "removed"

    # End the session for all: everyone is told, and the room keeps nothing but its counts.
    await therapist.request({"type": "end_session"})
    for p in (a, c):
        assert (await event(p, "room_ended"))["reason"] == "ended_by_therapist"
    status, room = await confidant.rest("GET", f"/v1/rooms/{session.room}")
    assert (status, room["state"], room["participants"]) == (200, "ended", [])
    assert room["admitted"] == {"therapist": 1, "client": 2, "observer": 0}


# -- 3. observers are never invisible --------------------------------------------------------------


async def test_observer_is_announced_by_name(session: Session) -> None:
    therapist = await session.join("t", "therapist", "Dr. Lee")
    await therapist.publish_media()
    a = await session.admitted(therapist, "a")
    observer = await session.join("sup", "observer", "Dr. Supervisor")
    for p in (therapist, a):
        joined = await event(p, "participant_joined", where=lambda e: bool(e["participant"]["id"] == "sup"))
        assert (joined["participant"]["role"], joined["participant"]["name"]) == ("observer", "Dr. Supervisor")
    b = await session.admitted(therapist, "b", publish=False)
    admitted = await event(b, "admitted")
    assert {"id": "sup", "role": "observer", "name": "Dr. Supervisor"}.items() <= next(
        p for p in admitted["room"]["participants"] if p["id"] == "sup").items()
    with pytest.raises(ProtocolError) as denied:
        await observer.publish_media()
    assert denied.value.code == "permission_denied"
    await receiving(observer, therapist, a)  # subscribe-only


# -- 4. private check-in, at the packet level ------------------------------------------------------


@pytest.mark.parametrize("session", ["family"], indirect=True)
async def test_check_in_holds_everyone_else_to_the_packet(session: Session) -> None:
    therapist = await session.join("t", "therapist")
    await therapist.publish_media()
    a = await session.admitted(therapist, "a")
    b = await session.admitted(therapist, "b")
    c = await session.admitted(therapist, "c")
    everyone = [therapist, a, b, c]
    for p in everyone:
        await receiving(p, *[o for o in everyone if o is not p])

    await therapist.request({"type": "start_check_in", "participant_id": "a"})
    for held in (b, c):
        await event(held, "on_hold", active=True)
        assert (await event(held, "check_in", active=True))["participant_id"] == "a"
    await event(a, "check_in", active=True)
    await asyncio.sleep(IN_FLIGHT)
    snapshot = {(p.pid, o.pid): p.packets_from(o.pid) for p in everyone for o in everyone if o is not p}
    await asyncio.sleep(3.0)
    delta = {k: sum(p.packets_from(o.pid) for p in everyone for o in everyone
                    if (p.pid, o.pid) == k) - n for k, n in snapshot.items()}
    pair = {"t", "a"}
    for (to, frm), n in delta.items():
        if (to in pair) != (frm in pair):
            assert n == 0, f"{to} received {n} packets from {frm} during the check-in: " + repr(
                {ssrc: (c.kind, c.packets, c.bytes) for p in everyone if p.pid == to
                 for ssrc, c in p.media.received.items() if p.owner.get(ssrc) == frm})
        else:
            assert n > 50, f"{to} received only {n} packets from {frm}"  # the pair, and the held together

    await therapist.request({"type": "end_check_in"})
    for p in (b, c):
        await event(p, "on_hold", active=False)
    for dst, src in ((b, therapist), (c, a), (therapist, b), (a, c)):
        await _more_packets(dst, src.pid, 20)


async def _more_packets(dst: CareParticipant, src: str, n: int) -> None:
    start = dst.packets_from(src)
    await wait_for(lambda: dst.packets_from(src) > start + n, f"{dst.pid}<-{src}")


# -- 5. quality ------------------------------------------------------------------------------------


async def test_quality_for_everyone_and_the_therapist(session: Session) -> None:
    therapist = await session.join("t", "therapist")
    await therapist.publish_media()
    a = await session.admitted(therapist, "a")
    own = await event(a, "quality", timeout=10)
    assert own["quality"] == "good" and {"loss", "jitter_ms", "rtt_ms", "audio_only"} <= own.keys()
    seen = await event(therapist, "participant_quality", timeout=10, participant_id="a")
    assert seen["quality"] == "good"
    assert (await event(therapist, "quality", timeout=10))["quality"] == "good"
    await asyncio.sleep(4.5)  # two more measurements: nothing changed, nothing is sent
    assert len(a.events("quality")) == 1
    assert not any(e["participant_id"] == "t" for e in a.events("participant_quality"))  # therapists only


# -- 6. reconnect ----------------------------------------------------------------------------------


async def test_reconnect_inside_and_outside_the_grace_period(confidant: RunningServer, session: Session) -> None:
    therapist = await session.join("t", "therapist")
    await therapist.publish_media()
    a = await session.admitted(therapist, "a")
    b = await session.admitted(therapist, "b")
    await receiving(therapist, a, b)
    a_token, b_token = a._token, b._token

    await a.drop()
    await event(therapist, "participant_state", participant_id="a", state="reconnecting")
    await event(b, "participant_state", participant_id="a", state="reconnecting")
    back = await session.join("a", tok=a_token)  # same token, inside the grace period
    assert back.joined["participant"]["state"] == "active"  # type: ignore[index]  # no waiting room
    await event(therapist, "participant_state", participant_id="a", state="active")
    assert not [e for e in therapist.log if e["type"] == "participant_left"]
    await back.publish_media()
    await receiving(back, therapist, b)
    await receiving(therapist, back)

    await b.drop()
    await event(therapist, "participant_state", participant_id="b", state="reconnecting")
    left = await event(therapist, "participant_left", participant_id="b", timeout=RECONNECT_GRACE + 5)
    assert left["reason"] == "disconnected"
    late = await session.join("b", tok=b_token)  # after the grace period: a new arrival, so it waits
    assert late.joined["participant"]["state"] == "waiting"  # type: ignore[index]
