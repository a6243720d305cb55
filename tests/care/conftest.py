"""One real `confidant` subprocess for the care-session tests, with a short reconnect grace period."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.server import RunningServer, start_server

RECONNECT_GRACE = 3.0


@pytest.fixture(scope="module")
def confidant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CONFIDANT_RECONNECT_GRACE", str(RECONNECT_GRACE))
        server = start_server(tmp_path_factory.mktemp("care"))
    yield server
    server.stop()
