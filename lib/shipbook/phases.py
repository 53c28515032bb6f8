"""The phases of a release, in order, and the notebooks that implement them."""

from __future__ import annotations

from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"

PHASES: dict[str, str] = {
    "precheck": "01_precheck.ipynb",
    "backup": "02_backup.ipynb",
    "deploy": "03_deploy.ipynb",
    "verify": "04_verify.ipynb",
    "rollback": "05_rollback.ipynb",
    "report": "06_report.ipynb",
}

# Notebooks that are not phases of a release but run through the same runner.
STANDALONE: dict[str, str] = {"incident": "incident.ipynb", "postmortem": "postmortem.ipynb"}

# Parameters every phase notebook declares in its `parameters` cell.
COMMON_PARAMETERS = ("version", "env", "run_id", "previous_version", "dry_run")
