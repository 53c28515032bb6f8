"""The twin's mutable state: workflow runs with jobs and steps, releases; saved as JSON.

Everything is kept in GitHub's own field names so the API layer only adds URLs and users.
The file `<state-dir>/github/state.json` survives a restart; runs that were in progress when
the twin stopped are marked failed ("the runner was lost"), as GitHub would.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FIRST_RUN_ID = 9_000_000_001
FIRST_JOB_ID = 25_000_000_001
FIRST_RELEASE_ID = 170_000_001


def now_iso() -> str:
    """Now in GitHub's timestamp format."""
    return _stamp(datetime.now(tz=UTC))


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Store:
    """Runs and releases behind one lock; every mutation is saved."""

    path: Path
    runs: list[dict[str, Any]] = field(default_factory=list)
    releases: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    next_run: int = FIRST_RUN_ID
    next_job: int = FIRST_JOB_ID
    next_release: int = FIRST_RELEASE_ID

    @classmethod
    def load(cls, path: Path) -> Store:
        store = cls(path=path)
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            store.runs = data.get("runs", [])
            store.releases = data.get("releases", [])
            store.next_run = data.get("next_run", FIRST_RUN_ID)
            store.next_job = data.get("next_job", FIRST_JOB_ID)
            store.next_release = data.get("next_release", FIRST_RELEASE_ID)
            for run in store.runs:
                if run["status"] != "completed":
                    store._abandon(run)
            store.save()
        return store

    def _abandon(self, run: dict[str, Any]) -> None:
        stamp = now_iso()
        for job in run["jobs"]:
            if job["status"] != "completed":
                job.update(status="completed", conclusion="failure", completed_at=stamp)
                job["log"].append("The runner was lost: the GitHub twin restarted during this job.")
                for step in job["steps"]:
                    if step["status"] != "completed":
                        step.update(status="completed", conclusion="cancelled", completed_at=stamp)
        run.update(status="completed", conclusion="failure", updated_at=stamp)

    def save(self) -> None:
        with self.lock:
            data = {
                "runs": self.runs,
                "releases": self.releases,
                "next_run": self.next_run,
                "next_job": self.next_job,
                "next_release": self.next_release,
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)

    def reset(self) -> None:
        with self.lock:
            self.runs, self.releases = [], []
            self.save()

    # -- runs ---------------------------------------------------------------------------------
    def new_run(self, *, name: str, path: str, head_sha: str, head_branch: str, event: str,
                message: str, actor: str, jobs: list[tuple[str, list[str]]]) -> dict[str, Any]:
        """A queued run whose jobs and steps are all queued."""
        with self.lock:
            stamp = now_iso()
            run_id = self.next_run
            self.next_run += 1
            run = {
                "id": run_id,
                "name": name,
                "path": path,
                "head_sha": head_sha,
                "head_branch": head_branch,
                "event": event,
                "status": "queued",
                "conclusion": None,
                "created_at": stamp,
                "updated_at": stamp,
                "run_started_at": stamp,
                "run_number": sum(1 for r in self.runs if r["name"] == name) + 1,
                "run_attempt": 1,
                "display_title": message.splitlines()[0] if message else head_branch,
                "head_commit_message": message,
                "actor": actor,
                "jobs": [],
            }
            for job_name, steps in jobs:
                run["jobs"].append(
                    {
                        "id": self.next_job,
                        "name": job_name,
                        "status": "queued",
                        "conclusion": None,
                        "created_at": stamp,
                        "started_at": None,
                        "completed_at": None,
                        "steps": [
                            {"name": s, "status": "queued", "conclusion": None, "number": i + 1,
                             "started_at": None, "completed_at": None}
                            for i, s in enumerate(steps)
                        ],
                        "log": [],
                    }
                )
                self.next_job += 1
            self.runs.append(run)
            self.save()
            return copy.deepcopy(run)

    def add_history(self, *, name: str, path: str, head_sha: str, head_branch: str, message: str, actor: str,
                    jobs: list[tuple[str, list[str]]], started: datetime, conclusion: str) -> dict[str, Any]:
        """A completed run from before the twin started (the deploy of the previous release)."""
        run = self.new_run(name=name, path=path, head_sha=head_sha, head_branch=head_branch, event="push",
                           message=message, actor=actor, jobs=jobs)
        clock = started
        with self.lock:
            stored = self._run(run["id"])
            stored.update(created_at=_stamp(clock), run_started_at=_stamp(clock))
            for job in stored["jobs"]:
                job.update(created_at=_stamp(clock), started_at=_stamp(clock), status="completed",
                           conclusion=conclusion)
                for step in job["steps"]:
                    step.update(started_at=_stamp(clock), status="completed", conclusion=conclusion)
                    clock += timedelta(seconds=20)
                    step["completed_at"] = _stamp(clock)
                job["completed_at"] = _stamp(clock)
                job["log"].append(f"{_stamp(clock)} (history: this run happened before the sandbox started)")
            stored.update(status="completed", conclusion=conclusion, updated_at=_stamp(clock))
            self.save()
            return copy.deepcopy(stored)

    def update_run(self, run_id: int, **fields: Any) -> None:
        with self.lock:
            run = self._run(run_id)
            run.update(fields)
            run["updated_at"] = now_iso()
            self.save()

    def update_job(self, run_id: int, job_name: str, **fields: Any) -> None:
        with self.lock:
            run = self._run(run_id)
            job = next(j for j in run["jobs"] if j["name"] == job_name)
            job.update(fields)
            run["updated_at"] = now_iso()
            self.save()

    def update_step(self, run_id: int, job_name: str, number: int, **fields: Any) -> None:
        with self.lock:
            run = self._run(run_id)
            job = next(j for j in run["jobs"] if j["name"] == job_name)
            job["steps"][number - 1].update(fields)
            run["updated_at"] = now_iso()
            self.save()

    def log(self, run_id: int, job_name: str, line: str) -> None:
        with self.lock:
            job = next(j for j in self._run(run_id)["jobs"] if j["name"] == job_name)
            job["log"].append(f"{now_iso()} {line}")
        logger.info("run %s %s: %s", run_id, job_name, line)

    def _run(self, run_id: int) -> dict[str, Any]:
        for run in self.runs:
            if run["id"] == run_id:
                return run
        raise KeyError(run_id)

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        with self.lock:
            for run in self.runs:
                if run["id"] == run_id:
                    return copy.deepcopy(run)
        return None

    def list_runs(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(list(reversed(self.runs)))

    def find_job(self, job_id: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        with self.lock:
            for run in self.runs:
                for job in run["jobs"]:
                    if job["id"] == job_id:
                        return copy.deepcopy(run), copy.deepcopy(job)
        return None

    # -- releases -----------------------------------------------------------------------------
    def add_release(self, release: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            release = {**release, "id": self.next_release}
            self.next_release += 1
            self.releases.append(release)
            self.save()
            return copy.deepcopy(release)

    def list_releases(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(list(reversed(self.releases)))
