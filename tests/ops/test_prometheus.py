"""A real Prometheus (Debian's `prometheus`) scrapes a live server; we read the session back through its
HTTP API, and every expression of the Grafana dashboard evaluates there without error."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from loadtests.server import Server, free_port
from tests.netns import HOST_ADDR
from tests.ops.conftest import live_session
from tests.ops.metrics_text import scrape

pytestmark = pytest.mark.integration
DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "confidant.json"


def dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def test_dashboard_names_only_exposed_metrics(confidant: Server) -> None:
    got = asyncio.run(scrape(confidant.base))
    exposed = got.names()
    exprs = dashboard_expressions()
    assert len(exprs) >= 25
    for expr in exprs:
        for name in re.findall(r"\bconfidant_[a-z0-9_]+", expr):
            assert name in exposed, f"{name} in {expr!r} is not exposed by /metrics"
    templating = json.loads(DASHBOARD.read_text())["templating"]["list"]
    for var in templating:
        for name in re.findall(r"\bconfidant_[a-z0-9_]+", str(var.get("query", ""))):
            assert name in exposed


@pytest.fixture
def prometheus(confidant: Server, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary is not None, "Debian's prometheus package is required (scripts/test installs it)"
    port = free_port(socket.SOCK_STREAM, HOST_ADDR)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: confidant\n    static_configs: [{{targets: ['{confidant.host}:{confidant.http_port}']}}]\n")
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address={HOST_ADDR}:{port}"], stdout=log, stderr=log)
    try:
        yield f"http://{HOST_ADDR}:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def query(http: aiohttp.ClientSession, base: str, expr: str) -> dict[str, Any]:
    async with http.get(base + "/api/v1/query", params={"query": expr}) as r:
        body: dict[str, Any] = await r.json()
        return body


def total(body: dict[str, Any]) -> float:
    return sum(float(s["value"][1]) for s in body["data"]["result"])


async def test_prometheus_reads_back_a_live_session(confidant: Server, prometheus: str) -> None:
    async with aiohttp.ClientSession() as http:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:  # Prometheus takes a moment to start and to scrape for the first time
            try:
                async with http.get(prometheus + "/-/ready") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            assert loop.time() < deadline, "prometheus did not become ready"
            await asyncio.sleep(0.2)
        async with live_session(confidant):
            participants = forwarded = 0.0
            while loop.time() < deadline:
                participants = total(await query(http, prometheus, 'sum(confidant_participants{state="active"})'))
                forwarded = total(await query(
                    http, prometheus, 'sum(increase(confidant_packets_forwarded_total{job="confidant"}[5s]))'))
                if participants >= 2 and forwarded > 0:
                    break
                await asyncio.sleep(0.5)
            assert participants >= 2, "the session's participants never reached Prometheus"
            assert forwarded > 0, "no forwarded packets seen through Prometheus"
            video = await query(http, prometheus, 'confidant_packets_forwarded_total{kind="video"}')
            assert [s["metric"]["job"] for s in video["data"]["result"]] == ["confidant"]
            for expr in dashboard_expressions():
                concrete = expr.replace("$__rate_interval", "5s").replace("$instance", ".*")
                body = await query(http, prometheus, concrete)
                assert body["status"] == "success", (expr, body)
