"""SIGTERM drains a real server: /readyz turns 503, new rooms are refused, the live session keeps
forwarding until the deadline, then the process exits cleanly."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from loadtests import server as load_server
from tests.netns import HOST_ADDR
from tests.ops.conftest import live_session
from tests.ops.metrics_text import scrape

pytestmark = pytest.mark.integration
DEADLINE = 3.0


async def test_sigterm_drains_then_exits(tmp_path: Path) -> None:
    srv = load_server.start(HOST_ADDR, log=tmp_path / "confidant.log",
                            env={"CONFIDANT_DRAIN_TIMEOUT": str(DEADLINE)})
    try:
        async with live_session(srv), aiohttp.ClientSession() as http:
            before = (await scrape(srv.base)).value("confidant_packets_forwarded_total")
            loop = asyncio.get_running_loop()
            srv.process.send_signal(signal.SIGTERM)
            sent_at = loop.time()
            while True:  # the signal is handled asynchronously
                async with http.get(srv.base + "/readyz") as r:
                    if r.status == 503:
                        assert (await r.json())["checks"]["accepting_rooms"] is False
                        break
                assert loop.time() - sent_at < 2
                await asyncio.sleep(0.05)
            auth = {"Authorization": f"Bearer {srv.key}:{srv.secret}"}
            async with http.post(srv.base + "/v1/rooms", json={"kind": "individual"}, headers=auth) as r:
                assert r.status == 503 and (await r.json())["error"]["code"] == "draining"
            await asyncio.sleep(1.0)
            during = await scrape(srv.base)
            assert during.value("confidant_draining") == 1
            assert during.value("confidant_packets_forwarded_total") > before, "the session stopped while draining"
            assert srv.process.poll() is None, "exited before the deadline with a session in progress"
            while srv.process.poll() is None and loop.time() - sent_at < DEADLINE + 10:
                await asyncio.sleep(0.1)
        assert srv.process.returncode == 0
        assert loop.time() - sent_at >= DEADLINE - 0.5
    finally:
        srv.stop()


async def test_sigterm_with_no_sessions_exits_at_once(tmp_path: Path) -> None:
    srv = load_server.start(HOST_ADDR, log=tmp_path / "confidant.log", env={"CONFIDANT_DRAIN_TIMEOUT": "60"})
    try:
        srv.process.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        start = loop.time()
        while srv.process.poll() is None and loop.time() - start < 10:
            await asyncio.sleep(0.05)
        assert srv.process.returncode == 0
    finally:
        srv.stop()
