"""End-to-end sessions in real headless Chromium (each in its own namespace) through the real server."""

from __future__ import annotations

import asyncio

import pytest

from tests.browser.harness import BrowserLab
from tests.browser.server_process import ServerProcess
from tests.browser.session import FRAME_MONITOR_JS, Participant, assert_media_flows, measure

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

MEASURE_S = 10.0


async def join_all(
    server: ServerProcess, lab: BrowserLab, kind: str, roles: list[tuple[str, str]], **launch: object
) -> list[Participant]:
    room = await server.create_room(kind)
    people = []
    for i, (role, name) in enumerate(roles):
        token = await server.token(room, f"p-{role}-{i}", role, name)
        b = (
            await lab.launch(server.base_url, **launch)
            if i == 0 or not launch
            else await lab.launch(server.base_url)
        )
        p = Participant(b)
        await p.join(server.base_url, token, name=name)
        people.append(p)
    return people


async def test_individual_session_two_browsers(server: ServerProcess, lab: BrowserLab) -> None:
    therapist, client = await join_all(
        server, lab, "individual", [("therapist", "Dr. Lee"), ("client", "Alex")]
    )
    for me, other in ((therapist, client), (client, therapist)):
        await me.wait_remote(other.participant_id, "video")
        await me.wait_remote(other.participant_id, "audio")
    deltas = await asyncio.gather(
        *(measure(p, [o.participant_id], MEASURE_S) for p, o in ((therapist, client), (client, therapist)))
    )
    assert_media_flows(deltas[0], client.participant_id, MEASURE_S)
    assert_media_flows(deltas[1], therapist.participant_id, MEASURE_S)
    # The demo page shows both participants, the remote one with live video (no audio-only badge).
    for p, name in ((therapist, "therapist"), (client, "client")):
        assert await p.page.locator("section.tile").count() == 2
        assert await p.page.locator("section.tile.audio-only").count() == 0
        await p.screenshot(f"individual-{name}.png")
