"""`make help` lists every phase target on a line of its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def help_lines() -> list[str]:
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.mark.parametrize("target", ["precheck", "backup", "deploy", "verify", "rollback", "report"])
def test_each_phase_target_has_its_own_line(help_lines: list[str], target: str) -> None:
    mine = [line for line in help_lines if line.strip().startswith(f"make {target} ")]
    assert len(mine) == 1, help_lines
    assert "VERSION=" in mine[0]


def test_no_line_lists_targets_joined_by_bars(help_lines: list[str]) -> None:
    assert not [line for line in help_lines if "precheck|" in line or "|report" in line]
