from __future__ import annotations

import pytest

from tests.netns import enter_private_netns


def pytest_configure(config: pytest.Config) -> None:
    # Before any thread starts: every socket of the test run lives in a private namespace.
    enter_private_netns()
