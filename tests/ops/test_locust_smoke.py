"""CI smoke: locust runs headless for ~20 s with a few users of two scenarios against a real server and
fails if any request event failed (join, admission, first media, received media)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests import server as load_server
from tests.netns import HOST_ADDR

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def smoke_server(tmp_path: Path) -> Iterator[load_server.Server]:
    server = load_server.start(HOST_ADDR, log=tmp_path / "confidant.log")
    yield server
    server.stop()


def test_locust_smoke(smoke_server: load_server.Server, tmp_path: Path) -> None:
    env = dict(os.environ, CONFIDANT_KEY=smoke_server.key, CONFIDANT_SECRET=smoke_server.secret,
               CONFIDANT_HOLD="5", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless",
         "--host", smoke_server.base, "-u", "3", "-r", "3", "-t", "20s", "--stop-timeout", "15",
         "--csv", str(tmp_path / "smoke"), "--only-summary", "IndividualSession", "CouplesSession", "ChurnSession"],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    with open(tmp_path / "smoke_stats.csv") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    failures = (tmp_path / "smoke_failures.csv").read_text()
    assert result.returncode == 0, result.stderr[-3000:] + failures
    for name in ("token_ms", "join_ms", "first_media_ms", "received_kbps", "loss_percent", "freezes"):
        assert int(rows[name]["Request Count"]) >= 2, name
    assert int(rows["Aggregated"]["Failure Count"]) == 0, failures
    assert float(rows["received_kbps"]["Median Response Time"]) > 100
