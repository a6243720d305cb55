"""The real `confidant` server for integration tests: `loadtests.server`'s launcher plus test conveniences."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from loadtests.server import ROOT, Server, start
from signalling.config import Config
from signalling.tokens import mint_token
from tests.netns import HOST_ADDR

__all__ = ["ROOT", "RunningServer", "start_server"]


@dataclass
class RunningServer(Server):
    """A `loadtests.server` subprocess with what tests ask of it: REST calls, rooms, tokens, its log."""

    log_path: Path

    @property
    def api_key(self) -> str:
        return self.key

    @property
    def api_secret(self) -> str:
        return self.secret

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.http_port}/ws"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}:{self.api_secret}"}

    async def rest(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.request(
            method, self.base + path, json=body, headers=self.auth
        ) as resp:
            return resp.status, await resp.json()

    async def create_room(self, kind: str, *, waiting_room: bool = True) -> str:
        status, body = await self.rest("POST", "/v1/rooms", {"kind": kind, "waiting_room": waiting_room})
        assert status == 201, body
        return str(body["id"])

    def token(self, room_id: str, participant_id: str, role: str = "client") -> str:
        return mint_token(api_key=self.api_key, api_secret=self.api_secret, room_id=room_id,
                          participant_id=participant_id, role=role, ttl=300)


def start_server(log_dir: Path, host: str = HOST_ADDR) -> RunningServer:
    """The server with the configuration's defaults (observer limit included), logging JSON at info level;
    on SIGTERM it drains for 1 s, not 300, so stop() sees it exit by itself."""
    log_path = log_dir / "confidant.log"
    env = {"CONFIDANT_LOG_LEVEL": "info", "CONFIDANT_LOG_FORMAT": "json",
           "CONFIDANT_MAX_OBSERVERS": str(Config.max_observers), "CONFIDANT_DRAIN_TIMEOUT": "1"}
    server = start(host, log=log_path, env=env)
    return RunningServer(server.process, server.host, server.http_port, server.udp_port, server.key, server.secret,
                         log_path)
