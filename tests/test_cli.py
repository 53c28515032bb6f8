"""The CLI and the Makefile as a user meets them: help, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def sh(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_lists_verbs_and_exit_codes():
    out = sh(sys.executable, "-m", "shipbook", "--help")
    assert out.returncode == 0
    for verb in ["release", "precheck", "backup", "deploy", "verify", "rollback", "report", "runs", "audit",
                 "unlock", "sandbox"]:
        assert verb in out.stdout
    assert "2  bad input or configuration" in out.stdout


@pytest.mark.parametrize("version", ["1.0.0", "v1.0", "v1.0.0; rm -rf /", ""])
def test_bad_version_is_one_line_and_exit_2_before_anything_starts(version):
    out = sh(sys.executable, "-m", "shipbook", "release", version, "--env", "sandbox")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shipbook: error: VERSION: ")


def test_unknown_env_is_exit_2():
    out = sh(sys.executable, "-m", "shipbook", "release", "v1.0.0", "--env", "nowhere")
    assert out.returncode == 2 and "no such environment" in out.stderr


def test_make_help_is_default_and_lists_every_target():
    out = sh("make", "--no-print-directory")
    assert out.returncode == 0
    for target in ["release VERSION=", "precheck", "backup", "deploy", "verify", "rollback", "report", "incident",
                   "postmortem", "runs", "audit", "lab", "test", "lint", "clean"]:
        assert target in out.stdout


def test_make_release_without_version_is_a_clear_error():
    out = sh("make", "--no-print-directory", "release")
    assert out.returncode == 2
    assert "VERSION is required, e.g. make release VERSION=v1.0.0" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_unknown_database_action_is_exit_2_naming_the_option():
    out = sh(sys.executable, "-m", "shipbook", "rollback", "v1.0.0", "--env", "sandbox", "--db-action", "sideways")
    assert out.returncode == 2
    assert "--db-action" in out.stderr and "invalid choice: 'sideways'" in out.stderr


def test_report_language_reaches_every_phase_target_and_the_incident_target():
    for target in ("release", "report", "rollback"):
        out = sh("make", "--no-print-directory", "-n", target, "VERSION=v1.0.0", "REPORT_LANG=en")
        assert out.returncode == 0 and '-p lang="$REPORT_LANG"' in out.stdout, (target, out.stdout)
    out = sh("make", "--no-print-directory", "-n", "incident", "INCIDENT=inc-1", "PREVENTION=x")
    assert '--id "$INCIDENT"' in out.stdout and '--prevention "$PREVENTION"' in out.stdout


def test_prevention_items_need_an_incident():
    out = sh(sys.executable, "-m", "shipbook", "incident", "--env", "sandbox", "--prevention", "more alarms")
    assert out.returncode == 2 and "--prevention: needs --id INCIDENT" in out.stderr
