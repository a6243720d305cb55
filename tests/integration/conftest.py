from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.server import RunningServer, start_server


@pytest.fixture(scope="session")
def confidant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real server subprocess shared by every integration test (a room per test)."""
    server = start_server(tmp_path_factory.mktemp("confidant"))
    yield server
    server.stop()
