"""Start the real `confidant` server as a subprocess in the test namespace (dev mode, bound on 10.77.0.1).

Configured only through `CONFIDANT_*` environment variables (signalling/config.py), so it does not depend on
CLI flags. Browsers reach 10.77.0.1 through the route the harness adds in their namespaces.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.netns import HOST_ADDR

ROOT = Path(__file__).resolve().parent.parent.parent
API_KEY = "browser-tests"
API_SECRET = "browser-tests-secret-0123456789abcdef"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST_ADDR, 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    base_url: str
    proc: asyncio.subprocess.Process
    log_path: Path
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}:{API_SECRET}"}

    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.request(method, self.base_url + path, json=body, headers=self.auth) as r:
            data = await r.json()
            if r.status >= 300:
                raise AssertionError(f"{method} {path} -> {r.status} {data}")
            return data

    async def create_room(self, kind: str, *, waiting_room: bool = True) -> str:
        room = await self.api("POST", "/v1/rooms", {"kind": kind, "waiting_room": waiting_room})
        return str(room["id"])

    async def token(self, room_id: str, participant_id: str, role: str, name: str | None = None) -> str:
        body: dict[str, Any] = {"participant_id": participant_id, "role": role, "ttl": 600}
        if name:
            body["display_name"] = name
        return str((await self.api("POST", f"/v1/rooms/{room_id}/tokens", body))["token"])

    def favour(self) -> None:
        """Schedule the server ahead of the browsers and peers sharing its cores (as on a host of its own)."""
        os.setpriority(os.PRIO_PROCESS, self.proc.pid, -10)  # tests run as root

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.log_path.unlink(missing_ok=True)


async def start_server() -> ServerProcess:
    http_port = free_port(socket.SOCK_STREAM)
    udp_port = free_port(socket.SOCK_DGRAM)
    env = dict(os.environ)
    env.update(
        CONFIDANT_HTTP_HOST=HOST_ADDR,
        CONFIDANT_HTTP_PORT=str(http_port),
        CONFIDANT_UDP_HOST=HOST_ADDR,
        CONFIDANT_UDP_PORT=str(udp_port),
        CONFIDANT_ANNOUNCED_IPS=HOST_ADDR,
        CONFIDANT_DEV="1",
        CONFIDANT_API_KEY=API_KEY,
        CONFIDANT_API_SECRET=API_SECRET,
        CONFIDANT_LOG_FORMAT="kv",
        # SIGTERM drains sessions for up to this long (300 s by default): a test's server should exit by
        # itself once its browsers are gone, not wait out stop()'s 10 s and be killed.
        CONFIDANT_DRAIN_TIMEOUT="1",
    )
    fd, log_name = tempfile.mkstemp(prefix="confidant-server-", suffix=".log")
    log = os.fdopen(fd, "wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signalling", cwd=ROOT, env=env, stdout=log, stderr=log
    )
    log.close()
    server = ServerProcess(f"http://{HOST_ADDR}:{http_port}", proc, Path(log_name))
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(100):
                if proc.returncode is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log_tail()}")
                try:
                    async with s.get(server.base_url + "/healthz") as r:
                        if r.status == 200:
                            return server
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"server not healthy after 10 s:\n{server.log_tail()}")
    except BaseException:
        await server.stop()
        raise
