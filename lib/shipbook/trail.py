"""Verification of the whole audit trail under runs/: every run, incident and feedback list against its
ledger and the hashes its record holds, and no file that nothing owns.

Its own module because it reads what several modules write (`audit` records and ledgers,
`feedback` lists): none of them needs to import the others for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shipbook import feedback
from shipbook.audit import (
    INCIDENT_STATUS_FILE,
    INCIDENTS,
    LEDGER,
    RECORD,
    TOP_LEVEL_FILES,
    Ledger,
    iter_records,
    sha256_file,
)

__all__ = ["verify"]


def verify(runs_root: Path, env: str | None = None) -> list[str]:
    """Every problem in the trail: broken chain, changed, missing or unexpected files."""
    problems: list[str] = []
    envs = [env] if env else sorted(p.name for p in runs_root.iterdir() if p.is_dir()) if runs_root.is_dir() else []
    if not env and runs_root.is_dir():
        problems += [f"{f.name}: unexpected file (not the index, and in no environment)"
                     for f in sorted(runs_root.iterdir()) if f.is_file() and f.name not in TOP_LEVEL_FILES]
    for e in envs:
        env_root = runs_root / e
        chain_problems, sealed, hashes = Ledger(env_root).verify()
        problems += chain_problems
        seen: set[str] = set()
        owned: set[Path] = set()  # run dirs: each checks its own files against its record
        for path, data in iter_records(runs_root, e):
            rel = path.relative_to(runs_root)
            owned.add(path.parent)
            if not data:
                problems.append(f"{rel}: not valid JSON (changed)")
                continue
            run_id = data.get("run_id", "")
            seen.add(run_id)
            if run_id not in sealed:
                problems.append(f"{rel}: not in the ledger (unexpected run, or never sealed)")
            elif sealed[run_id] != sha256_file(path):
                problems.append(f"{rel}: changed since it was sealed")
            if data.get("previous_record_sha256") not in hashes:
                problems.append(f"{rel}: previous_record_sha256 is not a ledger entry (chain broken)")
            problems += _phase_files(path.parent, data, runs_root, {RECORD})
        for run_id in sorted(set(sealed) - seen):
            problems.append(f"{e}: run {run_id} is in the ledger but its record is missing")
        problems += _verify_incidents(runs_root, e)
        problems += feedback.verify_all(runs_root, e)
        problems += _unowned_files(runs_root, e, owned, feedback.FILE)
    return problems


def _unowned_files(runs_root: Path, env: str, run_dirs: set[Path], feedback_file: str) -> list[str]:
    """Files under runs/<env>/ that no run, incident, ledger or feedback list accounts for.

    Why: the per-run check only looks inside folders holding a run.json, so without this a file planted
    beside them (`runs/<env>/<version>/<x>/page.html`) would pass the audit unnoticed.
    """
    env_root = runs_root / env
    incidents = env_root / INCIDENTS
    known = {env_root / LEDGER, incidents / LEDGER}
    known |= set(env_root.glob(f"*/{feedback_file}")) | set(env_root.glob(f"*/.{feedback_file}.lock"))
    owned = set(run_dirs) | {p.parent for p in incidents.glob(f"*/{RECORD}")}  # incidents check their own files
    problems = []
    for f in sorted(env_root.rglob("*")):
        if f.is_file() and f not in known and not owned.intersection(f.parents):
            problems.append(f"{f.relative_to(runs_root)}: unexpected file (belongs to no run)")
    return problems


def _verify_incidents(runs_root: Path, env: str) -> list[str]:
    """Incidents keep their own ledger (runs/<env>/incidents/ledger.jsonl) and status reports."""
    root = runs_root / env / INCIDENTS
    if not root.is_dir():
        return []
    problems, sealed, _hashes = Ledger(root).verify()
    for path in sorted(root.glob(f"*/{RECORD}")):
        rel = path.relative_to(runs_root)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            problems.append(f"{rel}: not valid JSON (changed)")
            continue
        if sealed.get(data.get("run_id", "")) != sha256_file(path):
            problems.append(f"{rel}: changed since it was sealed (or never sealed)")
        problems += _phase_files(path.parent, data, runs_root, {RECORD, INCIDENT_STATUS_FILE})
    return problems


def _phase_files(run_dir: Path, data: dict[str, Any], runs_root: Path, expected: set[str]) -> list[str]:
    """Each file a record's phases hashed: present and unchanged; then any file the record does not name."""
    problems = []
    rel = run_dir.relative_to(runs_root)
    for ph in data.get("phases", []):
        for fname, digest in (ph.get("files") or {}).items():
            expected.add(fname)
            f = run_dir / fname
            if not f.is_file():
                problems.append(f"{rel / fname}: missing")
            elif sha256_file(f) != digest:
                problems.append(f"{rel / fname}: changed (sha256 differs from the record)")
    for f in sorted(run_dir.rglob("*")):
        if f.is_file() and str(f.relative_to(run_dir)) not in expected:
            problems.append(f"{f.relative_to(runs_root)}: unexpected file")
    return problems
