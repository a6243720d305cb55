from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from client.media import load_clip
from client.replay import ReplaySession
from loadtests import server as load_server
from signalling.tokens import mint_token
from tests.netns import HOST_ADDR


@pytest.fixture(scope="module")
def confidant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[load_server.Server]:
    """A real server subprocess for this module's tests."""
    server = load_server.start(HOST_ADDR, log=tmp_path_factory.mktemp("ops") / "confidant.log")
    yield server
    server.stop()


@dataclass
class LiveSession:
    room_id: str
    participant_ids: tuple[str, ...]
    sessions: list[ReplaySession]


async def rest(server: load_server.Server, path: str, body: object) -> dict[str, object]:
    auth = {"Authorization": f"Bearer {server.key}:{server.secret}"}
    async with aiohttp.ClientSession() as http, http.post(server.base + path, json=body, headers=auth) as r:
        data: dict[str, object] = await r.json()
        assert r.status < 300, data
        return data


@contextlib.asynccontextmanager
async def live_session(server: load_server.Server) -> AsyncIterator[LiveSession]:
    """A therapist publishing replayed VP8 + Opus and an observer receiving it (no waiting room involved)."""
    room = await rest(server, "/v1/rooms", {"kind": "individual", "max_observers": 1})
    room_id = str(room["id"])
    ws = f"ws://{server.host}:{server.http_port}/ws"
    clip = load_clip()
    ids = ("th-ops-7f3a", "ob-ops-91c2")
    sessions = []
    try:
        for pid, role, publish in ((ids[0], "therapist", True), (ids[1], "observer", False)):
            token = mint_token(api_key=server.key, api_secret=server.secret, room_id=room_id, participant_id=pid,
                               role=role, ttl=300, name="Dr Secretname")
            s = ReplaySession(ws, token, clip, host=HOST_ADDR, publish=publish)
            sessions.append(s)
            await s.start()
        await asyncio.wait_for(sessions[1].subscribed.wait(), 10)
        yield LiveSession(room_id, ids, sessions)
    finally:
        for s in sessions:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.close(), 5)
