"""End-to-end fixtures: a real sandbox of the tests' own (not the checkout's .sandbox), and a way
to run `make` / `python -m shipbook` against it exactly as a user would.

Every test of one xdist group shares that sandbox (one per worker), so a group runs one test after
another. Two groups, two twins: "sandbox" and "sandbox-rollback" run side by side on the two workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from shipbook import config
from shipbook.sandbox.lifecycle import Sandbox

ROOT = Path(__file__).resolve().parents[2]
REHEARSAL_TIMEOUT = 3600  # five releases in a row (~17 min measured) with room; the default (pyproject) is 900 s


@pytest.hookimpl(tryfirst=True)  # before xdist names the groups from the marks
def pytest_collection_modifyitems(items):
    parents = set()
    for item in items:
        if "/e2e/" not in str(item.fspath):
            continue
        # One group per test: the closest mark (the test's own over its module's), else "sandbox". xdist
        # would otherwise join every mark it finds ("sandbox_sandbox-rollback"): a third group, a third twin.
        closest = item.get_closest_marker("xdist_group")
        group = (closest.args[0] if closest.args else closest.kwargs.get("name", "sandbox")) if closest else "sandbox"
        item.own_markers[:] = [m for m in item.own_markers if m.name != "xdist_group"]
        item.add_marker(pytest.mark.xdist_group(group))
        parents.update(node for node in item.listchain() if node is not item)
        item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("rehearsal") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(REHEARSAL_TIMEOUT))
    for node in parents:  # the modules' marks are now on each of their tests
        node.own_markers[:] = [m for m in node.own_markers if m.name != "xdist_group"]


@dataclass
class Twin:
    """The group's sandbox, started on first use: a test whose first step is `reset(scenario)` gets the
    twin started in that scenario directly instead of a healthy one stopped again at once.

    A reset is a new twin (its app history rebuilt) and gets a new runs directory with it: a phase run on its
    own takes the commit the version's last run recorded, which a rebuilt history of another scenario does
    not have ("history rewritten?"), so runs left by the group's earlier tests would make a test depend on
    which test ran before it."""

    root: Path
    base: Path
    env_vars: dict[str, str]
    _sb: Sandbox | None = field(default=None, repr=False)
    _resets: int = 0

    @property
    def runs(self) -> Path:
        return Path(self.env_vars["SHIPBOOK_RUNS_DIR"])

    @property
    def sb(self) -> Sandbox:
        if self._sb is None:
            self._sb = Sandbox(self.root)
            self._sb.up(say=print)
        return self._sb

    @property
    def state(self) -> dict:
        return self.sb.state() or {}

    def url(self, key: str) -> str:
        return self.state["endpoints"][key]

    def env(self) -> config.Environment:
        return config.load("sandbox", sandbox_dir=self.sb.root)

    def run(self, *args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a command (make …, or shipbook … as python -m shipbook) against this twin (`env`: more variables)."""
        self.sb  # noqa: B018 - up before the command, as `make release` would find it
        cmd = list(args) if args[0] == "make" else [sys.executable, "-m", "shipbook", *args]
        return subprocess.run(cmd, cwd=ROOT, env={**self.env_vars, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)

    def reset(self, scenario: str) -> None:
        self._resets += 1
        self.env_vars["SHIPBOOK_RUNS_DIR"] = str(self.base / f"runs-{self._resets}")
        if self._sb is None:
            self._sb = Sandbox(self.root)
            self._sb.up(scenario, say=print)
        else:
            self._sb.reset(scenario, say=print)

    def down(self) -> None:
        if self._sb is not None:
            self._sb.down()


@pytest.fixture(scope="session")
def twin(tmp_path_factory):
    base = tmp_path_factory.mktemp("twin")
    root = base / ".sandbox"
    env_vars = {**os.environ, "SHIPBOOK_SANDBOX_DIR": str(root), "SHIPBOOK_RUNS_DIR": str(base / "runs")}
    env_vars.pop("AWS_ENDPOINT_URL", None)
    twin = Twin(root, base, env_vars)
    yield twin
    twin.down()
