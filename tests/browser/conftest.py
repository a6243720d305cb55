"""Fixtures for real-Chromium tests: `lab` gives namespaces and browsers and removes them even on failure."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.browser.harness import BrowserLab


@pytest.fixture
async def lab() -> AsyncIterator[BrowserLab]:
    lab = BrowserLab()
    try:
        yield lab
    finally:
        await lab.close()
