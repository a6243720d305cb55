"""/metrics of a real server carrying a live session: the families docs/metrics.md promises, sane values,
and no label that could identify a room, a person or an address."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from loadtests.server import Server
from tests.ops.conftest import live_session
from tests.ops.metrics_text import Scrape, scrape

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def documented_metrics() -> set[str]:
    """Every metric name docs/metrics.md documents (table rows start with the name in backticks)."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `(confidant_[a-z0-9_]+)`", text, flags=re.MULTILINE))


async def scrape_until(server: Server, ready: object, timeout: float = 10.0) -> Scrape:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await scrape(server.base)
        if ready(got) or asyncio.get_running_loop().time() > deadline:  # type: ignore[operator]
            return got
        await asyncio.sleep(0.2)


async def test_live_session_metrics(confidant: Server) -> None:
    async with live_session(confidant) as live:
        got = await scrape_until(confidant, lambda s: s.value("confidant_join_latency_seconds_count") >= 1
                                 and s.value("confidant_packets_forwarded_total", kind="video") > 0)
        assert got.value("confidant_rooms", kind="individual") >= 1
        assert got.value("confidant_participants", role="therapist", state="active") == 1
        assert got.value("confidant_participants", role="observer", state="active") == 1
        assert got.value("confidant_packets_forwarded_total", kind="audio") > 0
        assert got.value("confidant_bytes_forwarded_total", kind="video") > 0
        assert got.value("confidant_packets_received_total", kind="video") > 0
        # The observer's join: token presented to first packet forwarded, well under the 1 s service level.
        assert got.value("confidant_join_latency_seconds_count") == 1
        assert 0 < got.value("confidant_join_latency_seconds_sum") < 5
        assert got.value("confidant_process_resident_memory_bytes") > 10e6
        assert got.value("confidant_process_cpu_seconds_total") > 0
        assert got.value("confidant_ready") == 1 and got.value("confidant_draining") == 0
        identifying = [live.room_id, *live.participant_ids, "Secretname", confidant.host, "127.0.0.1"]
        for name, labels, _ in got.samples:
            for value in labels.values():
                assert not any(x in value for x in identifying), (name, labels)
        assert not any(x in got.text for x in identifying[:-2])


async def test_every_documented_metric_is_exposed_and_every_exposed_one_documented(confidant: Server) -> None:
    async with live_session(confidant):
        got = await scrape_until(confidant, lambda s: s.value("confidant_join_latency_seconds_count") >= 1)
    exposed = {n for n in got.families() if n.startswith("confidant_")}
    exposed = {re.sub(r"_created$", "", n) for n in exposed}
    documented = documented_metrics()
    assert documented - exposed == set(), "documented but not exposed"
    # Counters are documented with their _total name, histograms by base name.
    undocumented = {n for n in exposed if n not in documented and re.sub(r"_(total|bucket|sum|count)$", "", n)
                    not in {re.sub(r"_total$", "", d) for d in documented}}
    assert undocumented == set(), "exposed but not documented"


async def test_readyz_and_healthz(confidant: Server) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(confidant.base + "/readyz") as r:
            body = await r.json()
            assert r.status == 200 and body["checks"] == {"udp_bound": True, "accepting_rooms": True}
        async with http.get(confidant.base + "/healthz") as r:
            assert r.status == 200
