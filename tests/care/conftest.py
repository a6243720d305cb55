"""Real `confidant` subprocesses for the care-session tests, with a short reconnect grace period."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from client.media import Clip, load_clip
from tests.integration.server import RunningServer, start_server

RECONNECT_GRACE = 3.0


@contextmanager
def care_server(log_dir: Path, **env: str) -> Iterator[RunningServer]:
    """A server with `CONFIDANT_<NAME>` settings from `env` (names upper-cased), stopped on exit."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(f"CONFIDANT_{name.upper()}", value)
        server = start_server(log_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def confidant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with care_server(tmp_path_factory.mktemp("care"), reconnect_grace=str(RECONNECT_GRACE)) as server:
        yield server


@pytest.fixture(scope="module")
def clip() -> Clip:
    return load_clip(seconds=4, width=320, height=240, video_bitrate=300_000)
