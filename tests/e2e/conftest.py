"""End-to-end fixtures: a real sandbox of the tests' own (not the checkout's .sandbox), and a way
to run `make` / `python -m shipbook` against it exactly as a user would.

Every test here shares that sandbox, so they run in one xdist group, one after another.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from shipbook import config
from shipbook.sandbox.lifecycle import Sandbox

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            if item.get_closest_marker("xdist_group") is None:
                item.add_marker(pytest.mark.xdist_group("sandbox"))
            item.add_marker(pytest.mark.e2e)


@dataclass
class Twin:
    sb: Sandbox
    runs: Path
    env_vars: dict[str, str]

    @property
    def state(self) -> dict:
        return self.sb.state() or {}

    def url(self, key: str) -> str:
        return self.state["endpoints"][key]

    def env(self) -> config.Environment:
        return config.load("sandbox", sandbox_dir=self.sb.root)

    def run(self, *args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a command (make …, or shipbook … as python -m shipbook) against this twin (`env`: more variables)."""
        cmd = list(args) if args[0] == "make" else [sys.executable, "-m", "shipbook", *args]
        return subprocess.run(cmd, cwd=ROOT, env={**self.env_vars, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)

    def reset(self, scenario: str) -> None:
        self.sb.reset(scenario, say=print)


@pytest.fixture(scope="session")
def twin(tmp_path_factory):
    base = tmp_path_factory.mktemp("twin")
    sb = Sandbox(base / ".sandbox")
    env_vars = {**os.environ, "SHIPBOOK_SANDBOX_DIR": str(sb.root), "SHIPBOOK_RUNS_DIR": str(base / "runs")}
    env_vars.pop("AWS_ENDPOINT_URL", None)
    sb.up(say=print)
    yield Twin(sb, base / "runs", env_vars)
    sb.down()
