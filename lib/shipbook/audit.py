"""The audit trail: one `run.json` per run, file hashes, and a hash-chained ledger per environment.

Why a ledger beside the records: a run can be resumed after later runs started, which changes
its record; the ledger is append-only, so every state a record was sealed in stays verifiable
and any byte changed afterwards in a record or a file is reported by `shipbook audit`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from shipbook import clock
from shipbook.errors import InputError

log = logging.getLogger(__name__)

SCHEMA = 1
RECORD = "run.json"
LEDGER = "ledger.jsonl"
GENESIS = "0" * 64
INCIDENTS = "incidents"
# Files directly under runs/ that belong to no environment: the index page and the repository's placeholders.
TOP_LEVEL_FILES = frozenset({"index.html", ".gitkeep", "README.md"})
# Beside an incident's run.json and its phase files: its hash-chained status reports (incident.STATUS_FILE).
INCIDENT_STATUS_FILE = "status.jsonl"
# SHIPBOOK_RUNS_DIR points the audit trail elsewhere (tests, a shared volume).


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()




def new_run_id(now: datetime | None = None) -> str:
    now = now or clock.utcnow()
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Ledger:
    """Append-only, hash-chained list of sealed run records of one environment."""

    def __init__(self, env_root: Path) -> None:
        self.path = env_root / LEDGER

    def lines(self) -> list[str]:
        if not self.path.is_file():
            return []
        return [ln for ln in self.path.read_text(encoding="utf-8").splitlines() if ln.strip()]

    def head(self) -> str:
        lines = self.lines()
        return sha256_bytes(lines[-1].encode()) if lines else GENESIS

    def append(self, run_id: str, record_sha: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = json.dumps({"run_id": run_id, "record_sha256": record_sha, "prev": self.head(),
                            "at": clock.now_iso()}, sort_keys=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(entry + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def verify(self) -> tuple[list[str], dict[str, str], set[str]]:
        """Problems in the chain, the last sealed hash per run, and every line hash."""
        problems: list[str] = []
        last: dict[str, str] = {}
        hashes = {GENESIS}
        prev = GENESIS
        for n, line in enumerate(self.lines(), 1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                problems.append(f"{self.path}: line {n}: not JSON (changed)")
                prev = sha256_bytes(line.encode())
                continue
            if entry.get("prev") != prev:
                problems.append(f"{self.path}: line {n}: chain broken (a line was changed, removed or inserted)")
            prev = sha256_bytes(line.encode())
            hashes.add(prev)
            last[entry.get("run_id", "")] = entry.get("record_sha256", "")
        return problems, last, hashes


@dataclass
class RunRecord:
    """The record of one run, kept at runs/<env>/<version>/<run_id>/run.json."""

    dir: Path
    data: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.data["run_id"]

    @property
    def path(self) -> Path:
        return self.dir / RECORD

    @classmethod
    def create(cls, runs_root: Path, *, env: str, version: str, previous_version: str, commit: str,
               operator: dict[str, str], parameters: dict[str, Any], phases: list[tuple[str, str]],
               shipbook_version: str, run_id: str | None = None) -> RunRecord:
        run_id = run_id or new_run_id()
        run_dir = runs_root / env / version / run_id
        run_dir.mkdir(parents=True, exist_ok=False)
        data = {
            "schema": SCHEMA, "run_id": run_id, "env": env, "version": version,
            "previous_version": previous_version, "commit": commit, "shipbook_version": shipbook_version,
            "operator": operator, "parameters": parameters, "status": "running",
            "started": clock.now_iso(), "finished": None,
            "phases": [{"name": n, "notebook": nb, "status": "pending", "verdict": None, "started": None,
                        "finished": None, "files": {}, "error": None, "checks": [], "blocking": []}
                       for n, nb in phases],
            "facts": {}, "previous_record_sha256": Ledger(runs_root / env).head(),
        }
        return cls(run_dir, data)

    @classmethod
    def load(cls, runs_root: Path, env: str, run_id: str) -> RunRecord:
        found = sorted((runs_root / env).glob(f"*/{run_id}/{RECORD}")) if _safe_id(run_id) else []
        if not found:
            raise InputError("--resume", f"no run {run_id!r} in environment {env!r} under {runs_root}")
        path = found[0]
        return cls(path.parent, json.loads(path.read_text(encoding="utf-8")))

    def phase(self, name: str) -> dict[str, Any]:
        for p in self.data["phases"]:
            if p["name"] == name:
                return p
        raise KeyError(name)

    def add_phase(self, name: str, notebook: str, after: str | None = None) -> dict[str, Any]:
        """Add a phase to the record (at the end, or right after `after`: the order it runs in)."""
        entry = {"name": name, "notebook": notebook, "status": "pending", "verdict": None, "started": None,
                 "finished": None, "files": {}, "error": None, "checks": [], "blocking": []}
        names = [p["name"] for p in self.data["phases"]]
        at = names.index(after) + 1 if after in names else len(names)
        self.data["phases"].insert(at, entry)
        return entry

    def save(self, redactor: Any | None = None) -> None:
        data = redactor.json(self.data) if redactor is not None else self.data
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.path, json.dumps(data, indent=1, ensure_ascii=False, default=str).encode("utf-8"))

    def seal(self, runs_root: Path) -> None:
        """Append the record's current hash to the environment's ledger."""
        Ledger(runs_root / self.data["env"]).append(self.run_id, sha256_file(self.path))


def _safe_id(run_id: str) -> bool:
    return bool(run_id) and all(c.isalnum() or c in "-_" for c in run_id)


def iter_records(runs_root: Path, env: str | None = None) -> Iterator[tuple[Path, dict[str, Any]]]:
    pattern = f"{env}/*/*/{RECORD}" if env else f"*/*/*/{RECORD}"
    for path in sorted(runs_root.glob(pattern)):
        if path.parent.parent.name == INCIDENTS:
            continue
        try:
            yield path, json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            yield path, {}


def list_runs(runs_root: Path, env: str | None = None) -> list[dict[str, Any]]:
    """One row per run, newest first: env, version, run id, status, started, operator, duration."""
    rows = []
    for _path, d in iter_records(runs_root, env):
        if not d:
            continue
        started, finished = d.get("started"), d.get("finished")
        duration = ""
        if started and finished:
            secs = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
            duration = f"{int(secs // 60)}m{int(secs % 60):02d}s"
        op = d.get("operator") or {}
        rows.append({"env": d.get("env", ""), "version": d.get("version", ""), "run_id": d.get("run_id", ""),
                     "status": d.get("status", ""), "started": started or "",
                     "operator": op.get("git_user") or op.get("aws_arn") or "", "duration": duration})
    rows.sort(key=lambda r: r["run_id"], reverse=True)
    return rows


def latest_run(runs_root: Path, env: str, version: str) -> dict[str, Any] | None:
    recs = [d for _p, d in iter_records(runs_root, env) if d and d.get("version") == version]
    return max(recs, key=lambda d: d["run_id"]) if recs else None

