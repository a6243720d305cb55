"""Fixtures for real-Chromium tests: `lab` gives namespaces and browsers and removes them even on failure."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.browser.harness import BrowserLab
from tests.browser.server_process import ServerProcess, start_server


@pytest.fixture
async def lab() -> AsyncIterator[BrowserLab]:
    lab = BrowserLab()
    try:
        yield lab
    finally:
        await lab.close()


@pytest.fixture
async def server() -> AsyncIterator[ServerProcess]:
    proc = await start_server()
    try:
        yield proc
    finally:
        print(f"--- server log tail ---\n{proc.log_tail(60)}")  # shown by pytest when the test fails
        await proc.stop()
