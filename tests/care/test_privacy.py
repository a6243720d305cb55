"""Privacy: a full care session with distinctive display names and client addresses leaves neither in the
server's logs nor in `/metrics`; an ended session leaves nothing but counts."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import aiohttp
import pytest

from client.media import load_clip
from tests.care.participants import CareParticipant, event, token, wait_for
from tests.integration.server import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NAMES = {"t": "Dr. Quillfeather-Xylo", "a": "Zebulon Marchetti", "b": "Ysolde Pennywhistle",
         "sup": "Supervisor Vantablack"}
ADDRESSES = {"t": "10.77.0.151", "a": "10.77.0.152", "b": "10.77.0.153", "sup": "10.77.0.154"}


@pytest.fixture
def client_addresses() -> Iterator[dict[str, str]]:
    """Extra addresses in the tests' own namespace, so each participant's traffic has a source of its own."""
    for addr in ADDRESSES.values():
        subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", "lo"], check=True)
    try:
        yield ADDRESSES
    finally:
        for addr in ADDRESSES.values():
            subprocess.run(["ip", "addr", "del", f"{addr}/32", "dev", "lo"], check=False)


async def test_names_and_addresses_never_reach_logs_or_metrics(confidant: RunningServer,
                                                               client_addresses: dict[str, str]) -> None:
    clip = load_clip(seconds=4, width=320, height=240, video_bitrate=300_000)
    room = await confidant.create_room("couples")
    roles = {"t": "therapist", "a": "client", "b": "client", "sup": "observer"}
    people: dict[str, CareParticipant] = {}

    async def join(pid: str, tok: str | None = None) -> CareParticipant:
        p = CareParticipant(confidant.ws_url, tok or token(confidant, room, pid, roles[pid], NAMES[pid]), clip,
                            host=client_addresses[pid], local_addr=client_addresses[pid])
        people[pid] = p
        await p.start()
        return p

    try:
        t = await join("t")
        await t.publish_media()
        for pid in ("a", "b"):
            await join(pid)
            await t.request({"type": "admit", "participant_id": pid})
            await event(people[pid], "admitted")
            await people[pid].publish_media()
        await join("sup")
        await wait_for(lambda: all(people[x].packets_from(y) > 20 for x in people for y in ("t", "a", "b")
                                   if x != y), "media all round")
        assert (await event(t, "participant_quality", participant_id="a"))["quality"] in ("good", "fair", "poor")
        await t.request({"type": "mute", "participant_id": "a", "muted": True})
        await t.request({"type": "start_check_in", "participant_id": "b"})
        await asyncio.sleep(1.0)
        await t.request({"type": "end_check_in"})
        a_token = people["a"]._token
        await people["a"].drop()
        await event(t, "participant_state", participant_id="a", state="reconnecting")
        await join("a", a_token)
        await event(t, "participant_state", participant_id="a", state="active")
        await t.request({"type": "remove", "participant_id": "b"})
        async with aiohttp.ClientSession() as http, http.get(confidant.base + "/metrics") as resp:
            metrics_during = await resp.text()
        await t.request({"type": "end_session"})
        await event(people["a"], "room_ended")
    finally:
        await asyncio.gather(*(p.close() for p in people.values()), return_exceptions=True)

    async with aiohttp.ClientSession() as http, http.get(confidant.base + "/metrics") as resp:
        metrics_after = await resp.text()
    status, ended = await confidant.rest("GET", f"/v1/rooms/{room}")
    assert (status, ended["state"], ended["participants"]) == (200, "ended", [])
    assert ended["admitted"] == {"therapist": 1, "client": 2, "observer": 1}

    await asyncio.sleep(0.5)  # let the server flush its last log lines
    logs = confidant.log_path.read_text()
    assert "participant=a" in logs.replace('"participant": "a"', "participant=a")  # the log is the real one
    assert "confidant_" in metrics_during
    for where, text in (("log", logs), ("metrics during the session", metrics_during),
                        ("metrics after the session", metrics_after)):
        for secret in [*NAMES.values(), *client_addresses.values()]:
            assert secret not in text, f"{secret!r} found in the {where}"
        for word in ("Quillfeather", "Zebulon", "Pennywhistle", "Vantablack"):
            assert word.lower() not in text.lower(), f"{word!r} found in the {where}"
