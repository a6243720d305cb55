from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from client.protocol import SignallingClient
from signalling.app import create_app
from signalling.config import Config
from signalling.tokens import mint_token

API_KEY, API_SECRET = "test-key", "test-secret-" * 4


class Server:
    def __init__(self, server: TestServer, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.auth = {"Authorization": f"Bearer {API_KEY}:{API_SECRET}"}

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def rest(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        headers = kw.pop("headers", self.auth)
        async with self.http.request(method, self.url(path), json=body, headers=headers, **kw) as resp:
            return resp.status, await resp.json()

    async def room(self, kind: str = "couples", **kw: Any) -> str:
        status, body = await self.rest("POST", "/v1/rooms", {"kind": kind, **kw})
        assert status == 201, body
        return str(body["id"])

    def token(self, room_id: str, pid: str, role: str = "client", **kw: Any) -> str:
        return mint_token(api_key=API_KEY, api_secret=API_SECRET, room_id=room_id, participant_id=pid, role=role,
                          **kw)

    async def client(self) -> SignallingClient:
        client = SignallingClient(self.url("/ws"), session=self.http)
        await client.connect()
        return client


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    config = Config(http_host="127.0.0.1", http_port=0, udp_host="127.0.0.1", udp_port=0, api_key=API_KEY,
                    api_secret=API_SECRET, join_timeout=0.5)
    test_server = TestServer(create_app(config), host="127.0.0.1", port=0)
    await test_server.start_server()
    async with aiohttp.ClientSession() as http:
        yield Server(test_server, http)
    await test_server.close()


