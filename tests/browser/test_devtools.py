"""Dev-mode routes: the demo page and demo tokens exist only when dev mode is on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from signalling.config import Config
from signalling.devtools import add_dev_routes
from signalling.rooms import Room, RoomKind, RoomRegistry
from signalling.tokens import verify_token


class Rooms:
    """The slice of the Hub that the dev routes use (rooms without media)."""

    def __init__(self) -> None:
        self.registry = RoomRegistry(grace=60)

    def create_room(self, kind: RoomKind, *, room_id: str | None, max_observers: int) -> Room:
        return self.registry.create(room_id or "generated", kind, max_observers=max_observers, now=0.0)


KEY, SECRET = "dev-key", "dev-secret-0123456789abcdef0123456789"


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[[bool], object]]:
    clients: list[TestClient] = []

    async def make(dev: bool) -> tuple[TestClient, RoomRegistry]:
        app = web.Application()
        rooms = Rooms()
        registry = rooms.registry
        add_dev_routes(app, config=Config(dev=dev, api_key=KEY, api_secret=SECRET), rooms=rooms)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client, registry

    yield make
    for c in clients:
        await c.close()


async def test_off_unless_dev_mode(make_client) -> None:  # type: ignore[no-untyped-def]
    client, registry = await make_client(False)
    assert (await client.get("/")).status == 404
    r = await client.post("/dev/token", json={"kind": "individual", "role": "client"})
    assert r.status == 404
    assert registry.rooms() == []


async def test_dev_mode_serves_page_and_mints_tokens(make_client) -> None:  # type: ignore[no-untyped-def]
    client, registry = await make_client(True)
    page = await client.get("/")
    assert page.status == 200
    assert "/static/confidant.js" in await page.text() or "/static/demo.js" in await page.text()
    r = await client.post("/dev/token", json={"kind": "family", "role": "therapist", "name": "Dr. Lee"})
    assert r.status == 200
    body = await r.json()
    assert body["room_id"] == "demo-family" and body["ws_url"] == "/ws"
    claims = verify_token(body["token"], api_key=KEY, api_secret=SECRET, max_ttl=600)
    assert (claims.room_id, claims.role.value, claims.name) == ("demo-family", "therapist", "Dr. Lee")
    assert [room.id for room in registry.rooms()] == ["demo-family"]
    clash = await client.post("/dev/token", json={"room_id": "demo-family", "kind": "couples"})
    assert clash.status == 409
    bad = await client.post("/dev/token", json={"kind": "party"})
    assert bad.status == 400
