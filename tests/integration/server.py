"""Starts the real `confidant` server as a subprocess (python -m signalling) configured by environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from signalling.tokens import mint_token
from tests.netns import HOST_ADDR

ROOT = Path(__file__).resolve().parents[2]


def free_port(kind: int, host: str) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    host: str
    http_port: int
    udp_port: int
    api_key: str
    api_secret: str
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.http_port}"

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

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(log_dir: Path, host: str = HOST_ADDR) -> RunningServer:
    http_port, udp_port = free_port(socket.SOCK_STREAM, host), free_port(socket.SOCK_DGRAM, host)
    key, secret = "it-key", "it-secret-" + os.urandom(16).hex()
    env = {
        **os.environ,
        "CONFIDANT_HTTP_HOST": host, "CONFIDANT_HTTP_PORT": str(http_port),
        "CONFIDANT_UDP_HOST": host, "CONFIDANT_UDP_PORT": str(udp_port),
        "CONFIDANT_API_KEY": key, "CONFIDANT_API_SECRET": secret,
        "CONFIDANT_LOG_LEVEL": "info", "CONFIDANT_LOG_FORMAT": "json",
    }
    log_path = log_dir / "confidant.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the subprocess writes to it until stop()
    process = subprocess.Popen([sys.executable, "-m", "signalling"], cwd=ROOT, env=env, stdout=log, stderr=log)
    server = RunningServer(process, host, http_port, udp_port, key, secret, log_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"confidant exited: {log_path.read_text()}")
        try:
            with urllib.request.urlopen(server.base + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("confidant did not start in 20 s")
