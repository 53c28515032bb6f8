"""End-to-end fixtures: the real sandbox (the project's .sandbox, as `make release` uses it).

Every test here shares one sandbox, so they run in one xdist group, one after another.
"""

from __future__ import annotations

import pytest
from shipbook.sandbox.lifecycle import Sandbox


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.xdist_group("sandbox"))
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def sandbox():
    sb = Sandbox()
    state = sb.up(say=print)
    yield sb, state
    sb.down()
