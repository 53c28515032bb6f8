"""The incident and the run records around it: opening it, its directory and record, the deploys before it.

An incident lives at `runs/<env>/incidents/<id>/`. What it suspects comes from the release run
records of its environment: the version deployed last before the start, that deploy's run (a
version released twice has two), the rollback target the run names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from shipbook import audit, clock, gitinfo, i18n, places, versions
from shipbook.config import Environment
from shipbook.errors import InputError

INCIDENTS = "incidents"
STATUS_FILE = "status.jsonl"
PHASE = "incident"
DEPLOY_HORIZON = timedelta(hours=6)  # a deploy this long before the start no longer anchors the window


@dataclass
class Incident:
    """What is known when the incident is opened: when it started, when it was opened, what is suspected."""

    id: str
    env: str
    title: str
    started: datetime
    version: str = ""
    previous_version: str = ""
    lang: str = "ja"
    lookback: timedelta = timedelta(minutes=30)
    opened: datetime | None = None  # when it was opened (default: `started`)
    start_basis: str = "given"  # where `started` comes from: given | errors | latency | alarm | opened
    start_detail: str = ""  # the evidence: the first pool off the baseline, or the alarm
    deploy: datetime | None = None  # the suspected version's deploy (its last run before the start)
    deploy_run: str = ""

    @property
    def opened_at(self) -> datetime:
        return self.opened or self.started

    @property
    def window_start(self) -> datetime:
        """`lookback` before the start, or before the suspected deploy when that came first: its baseline."""
        anchor = self.started
        if self.deploy is not None and self.deploy < anchor and anchor - self.deploy <= DEPLOY_HORIZON:
            anchor = self.deploy
        return anchor - self.lookback

    def table(self) -> pd.DataFrame:
        lang = self.lang
        t = lambda k: i18n.t(k, lang)  # noqa: E731
        basis = t(f"incident.basis.{self.start_basis}") + (f": {self.start_detail}" if self.start_detail else "")
        deploy = f"{clock.fmt(self.deploy)} (run {self.deploy_run})" if self.deploy else t("unknown")
        rows = [("ID", self.id), (t("incident.title"), self.title or "—"),
                (i18n.STATUS_FIELDS[0][1 if lang == "ja" else 2], clock.fmt(self.started)),
                (t("incident.start_basis"), basis), (t("incident.opened"), clock.fmt(self.opened_at)),
                (t("report.version"), self.version or t("unknown")),
                (t("report.previous"), self.previous_version or t("unknown")),
                (t("incident.suspected_deploy"), deploy), ("env", self.env)]
        return pd.DataFrame(rows, columns=[t("item"), t("value")])


def new_id(now: datetime | None = None) -> str:
    return "inc-" + audit.new_run_id(now)


def incident_dir(env: str, incident_id: str, runs_root: Path | None = None) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,80}", incident_id or ""):
        raise InputError("INCIDENT", f"{incident_id!r} is not an incident id (e.g. inc-20261128T151600Z-ab12cd)")
    return (runs_root or places.runs_root()) / env / INCIDENTS / incident_id


def load_record(env: str, incident_id: str, runs_root: Path | None = None) -> dict[str, Any]:
    path = incident_dir(env, incident_id, runs_root) / audit.RECORD
    if not path.is_file():
        raise InputError("INCIDENT", f"no incident {incident_id!r} in {env!r} ({path.parent} has no run.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def deployed_runs(env: str, runs_root: Path | None = None) -> list[dict[str, Any]]:
    """Release run records of `env` that started a deploy, oldest first."""
    recs = [d for _p, d in audit.iter_records(runs_root or places.runs_root(), env)
            if d and (d.get("facts") or {}).get("deploy_started")]
    return sorted(recs, key=_deployed)


def _deployed(run: dict[str, Any]) -> datetime:
    return clock.parse_time(run["facts"]["deploy_started"])


def last_deploy(env: str, before: datetime, runs_root: Path | None = None) -> dict[str, Any] | None:
    """The run record of the latest deploy, of any version, that started at or before `before`.

    The deploy that preceded an incident: a version released twice (a retry, a re-release after a
    rollback) has two runs, and only the later one can have caused what began after it.
    """
    runs = [d for d in deployed_runs(env, runs_root) if _deployed(d) <= before]
    return runs[-1] if runs else None


def open_incident(env: Environment, incident_id: str = "", title: str = "", started: str = "", version: str = "",
                  previous_version: str = "", lang: str = "", lookback_minutes: float = 30,
                  runs_root: Path | None = None, now: clock.Clock | None = None, opened: str = "") -> Incident:
    """The incident of this notebook: opened now (or `opened`); its start as given, else for now the opening
    (`find_start` finds the onset); the suspected version (default the last deployed) and its deploy run."""
    opened_at = clock.parse_time(opened, None, "incident_opened") if opened else (now or clock.utcnow)()
    start = clock.parse_time(started, opened_at)
    runs = [d for d in deployed_runs(env.name, runs_root) if _deployed(d) <= start]
    if not version and runs:
        version = runs[-1]["version"]
    mine = [d for d in runs if d["version"] == version] if version else []
    if mine and not previous_version:
        previous_version = mine[-1].get("previous_version", "")
    if version and not previous_version and gitinfo.is_repo(env.app.repo):
        previous_version = versions.previous_release(gitinfo.tags(env.app.repo), version)
    return Incident(incident_id or new_id(start), env.name, title, start, version, previous_version,
                    i18n.resolve_lang(lang, env.lang), timedelta(minutes=lookback_minutes), opened=opened_at,
                    start_basis="given" if started else "opened",
                    deploy=_deployed(mine[-1]) if mine else None,
                    deploy_run=mine[-1].get("run_id", "") if mine else "")


def deploy_start(env: Environment, inc: Incident, runs_root: Path | None = None) -> datetime | None:
    """When the suspected version's deploy started (its newest run before the incident), if known."""
    if inc.deploy is not None:
        return inc.deploy
    runs = [d for d in deployed_runs(env.name, runs_root) if d["version"] == inc.version
            and _deployed(d) <= inc.started]
    return _deployed(runs[-1]) if runs else None


def rollback_phases(env: str, since: datetime, runs_root: Path | None = None
                    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(record, rollback phase entry) of release runs whose rollback started since `since`, oldest first."""
    found = []
    for _p, d in audit.iter_records(runs_root or places.runs_root(), env):
        for p in (d or {}).get("phases", []):
            if p.get("name") == "rollback" and p.get("started") and clock.parse_time(p["started"]) >= since:
                found.append((d, p))
    return sorted(found, key=lambda dp: dp[1]["started"])


def recent_deploys(env: Environment, inc: Incident, hours: float = 24, runs_root: Path | None = None
                   ) -> pd.DataFrame:
    """Release runs that deployed in the `hours` before the incident (and since), newest first."""
    since = inc.started - timedelta(hours=hours)
    rows = []
    for d in deployed_runs(env.name, runs_root):
        started = _deployed(d)
        if started < since:
            continue
        phases = {p["name"]: p for p in d.get("phases", [])}
        rb = phases.get("rollback", {})
        rows.append({"version": d["version"], "run_id": d["run_id"], "status": d.get("status", ""),
                     "deploy_started": clock.fmt(started),
                     "deploy_finished": clock.fmt(clock.parse_time(d["facts"]["deploy_finished"]))
                     if d["facts"].get("deploy_finished") else "—",
                     "rollback": rb.get("status", "—") if rb else "—",
                     "minutes_before_incident": round((inc.started - started).total_seconds() / 60, 1)})
    df = pd.DataFrame(rows, columns=["version", "run_id", "status", "deploy_started", "deploy_finished",
                                     "rollback", "minutes_before_incident"])
    return df.iloc[::-1].reset_index(drop=True)


def contacts_table(env: Environment, lang: str = "ja") -> pd.DataFrame:
    """Who to call, from the environment's `[[contacts]]` only: numbers are never made up."""
    cols = [i18n.t(k, lang) for k in ("incident.role", "incident.name", "incident.phone", "incident.email")]
    if not env.contacts:
        return pd.DataFrame([[i18n.t("incident.no_contacts", lang), "", "", ""]], columns=cols)
    missing = "—"
    rows = [[c.role, c.name, c.phone or missing, c.email or missing] for c in env.contacts]
    return pd.DataFrame(rows, columns=cols)
