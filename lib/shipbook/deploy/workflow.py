"""Watch the GitHub Actions run the tag push started: jobs and steps until the run concludes.

The run is found by the tag's commit and the `push` event (and, when GitHub says so, the
workflow file and the tag as `head_branch`); it may take a little while to appear.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from shipbook import clock
from shipbook.deploy.model import WORKFLOW
from shipbook.deploy.poll import Stage
from shipbook.deploy.timeline import Timeline
from shipbook.github import GitHub

JOB_COLUMNS = ["job", "step", "status", "conclusion", "started", "completed", "seconds", "url"]




def duration(item: Mapping[str, Any]) -> float | None:
    start, end = clock.try_parse(item.get("started_at")), clock.try_parse(item.get("completed_at"))
    return (end - start).total_seconds() if start and end else None


def pick_run(runs: list[dict[str, Any]], tag: str, workflow: str) -> dict[str, Any] | None:
    """The run of `workflow` for `tag` among runs of the tag's commit; newest wins."""
    def score(r: dict[str, Any]) -> tuple[int, int, str]:
        path = str(r.get("path", ""))
        by_file = int(bool(workflow) and (path.endswith("/" + workflow) or path == workflow))
        by_tag = int(r.get("head_branch") == tag)
        return by_file, by_tag, str(r.get("created_at", ""))

    candidates = [r for r in runs if r.get("event", "push") == "push" and r.get("head_branch") in (None, "", tag)]
    if workflow and any(str(r.get("path", "")) for r in candidates):
        candidates = [r for r in candidates if not r.get("path") or str(r["path"]).endswith("/" + workflow)
                      or r["path"] == workflow]
    return max(candidates, key=score) if candidates else None


class WorkflowStage(Stage):
    """deploy.workflow: the run's jobs and steps, status and duration; the failed step's log URL."""

    id = WORKFLOW
    name = "workflow"

    def __init__(self, timeline: Timeline, deadline: float, github: GitHub | None, commit: str, tag: str,
                 workflow: str = "", appear_timeout: float = 120.0, actions_url: str = "") -> None:
        super().__init__(timeline, deadline)
        self.github = github
        self.commit = commit
        self.tag = tag
        self.workflow = workflow
        self.appear_timeout = appear_timeout
        self.actions_url = actions_url
        self.run: dict[str, Any] | None = None
        self.jobs: list[dict[str, Any]] = []
        self._seen: dict[str, tuple[Any, Any]] = {}
        self.failed_url = ""

    def settle(self, t: datetime, stages: Mapping[str, Stage]) -> None:
        if self.github is None:
            where = f": watch it at {self.actions_url}" if self.actions_url else ""
            self.finish("manual", f"GitHub API not configured (github.token / github.api_url){where}", t)

    def status(self) -> str:
        if self.run is None:
            return "looking for the run"
        running = [j for j in self.jobs if j.get("status") == "in_progress"]
        if running:
            step = next((s["name"] for s in running[0].get("steps", []) if s.get("status") == "in_progress"), "")
            return f"{self.run.get('status')} ({running[0].get('name')}{f' / {step}' if step else ''})"
        return str(self.run.get("status"))

    def poll(self, t: datetime, stages: Mapping[str, Stage]) -> bool:
        if self.github is None:  # settle() has finished the stage
            return False
        before = self.github.calls
        try:
            return self._poll(t, self.github)
        finally:
            self.calls += self.github.calls - before

    def _poll(self, t: datetime, gh: GitHub) -> bool:
        if self.run is None:
            run = pick_run(gh.workflow_runs(self.commit), self.tag, self.workflow)
            if run is None:
                started = self.timeline.started or t
                if (t - started).total_seconds() >= self.appear_timeout:
                    self.finish("fail", f"no workflow run started for {self.tag} ({self.commit[:12]}) within "
                                f"{self.appear_timeout:.0f}s of the push: is the workflow triggered by tags?", t)
                return False
            self.run = run
            self.event(clock.try_parse(run.get("created_at")) or t, f"run #{run.get('run_number', run.get('id'))}",
                       "FOUND", f"{run.get('name', '')} for {self.tag}", run.get("html_url", ""))
        else:
            self.run = gh.run(int(self.run["id"]))
        self.jobs = gh.run_jobs(int(self.run["id"]))
        changed = self._record(t)
        if self.run.get("status") == "completed":
            self._conclude(t)
            changed = True
        return changed

    def _record(self, t: datetime) -> bool:
        changed = False
        for job in self.jobs:
            key = f"job {job.get('name')}"
            changed |= self._transition(t, key, job, job.get("html_url", ""))
            for step in job.get("steps", []):
                if step.get("status") == "queued":  # steps start queued; their start is the news
                    continue
                changed |= self._transition(t, f"{key} / {step.get('name')}", step, job.get("html_url", ""))
        return changed

    def _transition(self, t: datetime, key: str, item: Mapping[str, Any], url: str) -> bool:
        state = (item.get("status"), item.get("conclusion"))
        if self._seen.get(key) == state:
            return False
        self._seen[key] = state
        status, conclusion = state
        if status == "completed":
            took = duration(item)
            detail = f"{conclusion}" + (f" in {took:.0f}s" if took is not None else "")
            when = clock.try_parse(item.get("completed_at")) or t
            self.event(when, key, "COMPLETED", detail, url if conclusion not in ("success", "skipped") else "")
        elif status == "in_progress":
            self.event(clock.try_parse(item.get("started_at")) or t, key, "IN_PROGRESS")
        else:
            self.event(t, key, str(status).upper())
        return True

    def _conclude(self, t: datetime) -> None:
        run = self.run or {}
        label = f"run #{run.get('run_number', run.get('id'))} ({run.get('name', 'workflow')})"
        begin = clock.try_parse(run.get("run_started_at") or run.get("created_at"))
        end = clock.try_parse(run.get("updated_at"))
        took = (end - begin).total_seconds() if begin and end else None
        if run.get("conclusion") == "success":
            jobs = ", ".join(f"{j.get('name')} {duration(j) or 0:.0f}s" for j in self.jobs)
            self.finish("pass", f"{label} succeeded" + (f" in {took:.0f}s" if took is not None else "")
                        + (f" (jobs: {jobs})" if jobs else ""), t)
            return
        job, step = failed_step(self.jobs)
        self.failed_url = (job or {}).get("html_url", "") or run.get("html_url", "")
        where = ""
        if job:
            where = f": job {job.get('name')}" + (f", step '{step.get('name')}'" if step else "")
        self.finish("fail", f"{label} concluded {run.get('conclusion') or 'without a conclusion'}{where}"
                    + (f" — log: {self.failed_url}" if self.failed_url else ""), t)

    def table(self) -> pd.DataFrame:
        """Jobs and their steps with status, conclusion and duration."""
        rows = []
        for job in self.jobs:
            url = job.get("html_url", "")
            rows.append({"job": job.get("name"), "step": "", "status": job.get("status"),
                         "conclusion": job.get("conclusion"), "started": job.get("started_at"),
                         "completed": job.get("completed_at"), "seconds": duration(job), "url": url})
            for step in job.get("steps", []):
                rows.append({"job": job.get("name"), "step": step.get("name"), "status": step.get("status"),
                             "conclusion": step.get("conclusion"), "started": step.get("started_at"),
                             "completed": step.get("completed_at"), "seconds": duration(step), "url": ""})
        return pd.DataFrame(rows, columns=JOB_COLUMNS)


def failed_step(jobs: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The first job (and its step) that did not succeed."""
    bad = ("failure", "cancelled", "timed_out", "action_required", "startup_failure")
    for job in jobs:
        if job.get("conclusion") in bad:
            step = next((s for s in job.get("steps", []) if s.get("conclusion") in bad), None)
            return job, step
    return None, None
