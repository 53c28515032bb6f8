"""The postmortem of an incident (`notebooks/postmortem.ipynb`, `make postmortem INCIDENT=…`).

Why computed: the timeline of an incident is scattered over the run records (deploy, verify,
rollback), CloudWatch alarm history, ECS service events, CloudFormation stack events, git's
rollback tags and the incident's own status reports. Merged and sorted here, it gives the key
moments (deploy start → alarm → rollback → recovery) and the times to detect and mitigate
without anybody copying timestamps by hand. The sections follow Google's SRE postmortem
template; what a person must write (root causes, lessons, action item owners) is marked as a
field to fill, never guessed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from shipbook import audit, aws, clock, gitinfo, i18n, places
from shipbook import result as phase_result
from shipbook.config import Environment
from shipbook.errors import ShipbookError
from shipbook.incident.charts import chart
from shipbook.incident.impact import Impact
from shipbook.incident.model import Incident, last_deploy, load_record
from shipbook.incident.signals import EVENT_COLUMNS, alarm_events, ecs_events, fetch_metrics
from shipbook.incident.status import status_reports

log = logging.getLogger(__name__)

PHASE = "postmortem"
COLUMNS = EVENT_COLUMNS
MOMENTS = ("deploy_start", "alarm", "rollback", "recovery")
_MOMENT_LABEL = {"deploy_start": "pm.deploy_start", "alarm": "pm.alarm", "rollback": "pm.rollback",
                 "recovery": "pm.recovery"}


@dataclass
class Case:
    """The incident as recorded: its run.json data, its status reports, and the window studied."""

    env: str
    id: str
    data: dict[str, Any]
    reports: list[dict[str, Any]]
    inc: Incident
    start: datetime
    end: datetime
    lang: str = "ja"
    facts: dict[str, Any] = field(default_factory=dict)
    trigger: dict[str, Any] | None = None  # the run record of the deploy that preceded the incident


def trigger_text(case: Case) -> str:
    """The trigger as the postmortem names it: `deploy v1.0.0 (run …) @ …`, the run that preceded the start."""
    if not case.trigger:
        return i18n.t("unknown", case.lang)
    run, started = case.trigger, clock.parse_time(case.trigger["facts"]["deploy_started"])
    return f"deploy {run.get('version', '?')} (run {run.get('run_id', '?')}) @ {clock.fmt(started)}"


def load(env: Environment, incident_id: str, lang: str = "", *, runs_root: Path | None = None,
         now: clock.Clock = clock.utcnow, before_minutes: float = 30, max_hours: float = 6) -> Case:
    """The incident `incident_id`, the deploy that preceded it (the latest of any version before its start, from
    the run records), and the window: from before that deploy to now (at most `max_hours`)."""
    data = load_record(env.name, incident_id, runs_root)
    facts = data.get("facts", {})
    lang = i18n.resolve_lang(lang or facts.get("incident_lang", ""), env.lang)
    started = clock.parse_time(facts.get("incident_start") or data.get("started"))
    trigger = last_deploy(env.name, started, runs_root)
    deployed = clock.parse_time(trigger["facts"]["deploy_started"]) if trigger else None
    inc = Incident(incident_id, env.name, facts.get("incident_title", ""), started,
                   facts.get("suspected_version") or data.get("version", ""), facts.get("rollback_target", ""), lang,
                   opened=clock.parse_time(facts["incident_opened"]) if facts.get("incident_opened") else None,
                   start_basis=facts.get("incident_start_basis") or "given", deploy=deployed,
                   deploy_run=trigger.get("run_id", "") if trigger else "")
    start = min(started, deployed or started) - timedelta(minutes=before_minutes)
    end = min(now(), started + timedelta(hours=max_hours))
    return Case(env.name, incident_id, data, status_reports(env.name, incident_id, runs_root), inc,
                start, end, lang, facts, trigger)


# ------------------------------------------------------------------ the timeline


def run_events(env: str, start: datetime, end: datetime, runs_root: Path | None = None) -> list[dict[str, Any]]:
    """Phase starts/ends and deploy start/finish of the release runs, inside the window."""
    out: list[dict[str, Any]] = []

    def add(when: str | None, event: str, detail: str, source: str) -> None:
        if when:
            t = clock.parse_time(when)
            if start <= t <= end:
                out.append({"time": t, "source": source, "event": event, "detail": detail})

    for _p, d in audit.iter_records(runs_root or places.runs_root(), env):
        if not d:
            continue
        src = f"run {d.get('version')} ({d.get('run_id')})"
        f = d.get("facts", {})
        add(f.get("deploy_started"), f"deploy started: {d.get('version')}", f.get("release_commit", "")[:12], src)
        add(f.get("deploy_finished"), f"deploy finished: {d.get('version')}", f.get("task_definition", ""), src)
        for p in d.get("phases", []):
            add(p.get("started"), f"{p['name']} started", "", src)
            blocking = "; ".join(b.get("id", "") for b in p.get("blocking", []))
            add(p.get("finished"), f"{p['name']} {p.get('status')}", f"verdict {p.get('verdict')} {blocking}".strip(),
                src)
    return out


def stack_events(env: Environment, start: datetime, end: datetime, cloudformation: Any = None
                 ) -> list[dict[str, Any]]:
    """The stack's events inside the window (CloudFormation lists newest first: stop when older)."""
    if not env.stack.name:
        return []
    cfn = cloudformation or aws.client(env, "cloudformation")
    out: list[dict[str, Any]] = []
    for page in aws.pages(cfn, "describe_stack_events", StackName=env.stack.name):
        older = False
        for ev in page.get("StackEvents", []):
            t = clock.parse_time(ev["Timestamp"])
            if t < start:
                older = True
                continue
            if t <= end:
                out.append({"time": t, "source": "CloudFormation",
                            "event": f"{ev.get('LogicalResourceId')} {ev.get('ResourceStatus')}",
                            "detail": ev.get("ResourceStatusReason", "") or ev.get("ResourceType", "")})
        if older:
            break
    return out


def rollback_tags(env: Environment, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Tags `*-rollback` created in the window: the seed's manual rollback (a tag pushed on the old commit)."""
    if not gitinfo.is_repo(env.app.repo):
        return []
    out = []
    listing = gitinfo.git(env.app.repo, "for-each-ref", "refs/tags/*-rollback",
                          "--format=%(refname:short)%09%(creatordate:iso-strict)%09%(contents:subject)")
    for line in listing.splitlines():
        name, _, rest = line.partition("\t")
        when, _, subject = rest.partition("\t")
        t = clock.parse_time(when)
        if start <= t <= end:
            out.append({"time": t, "source": "git", "event": f"rollback tag {name}", "detail": subject})
    return out


def incident_events(case: Case) -> list[dict[str, Any]]:
    out = [{"time": case.inc.started, "source": "incident", "event": f"incident opened: {case.id}",
            "detail": case.inc.title}]
    for r in case.reports:
        out.append({"time": clock.parse_time(r["at"]), "source": "status report",
                    "event": f"status report #{r.get('seq', '?')} ({r.get('lang')})", "detail": r.get("current", "")})
    return out


def timeline(env: Environment, case: Case, *, runs_root: Path | None = None, cloudwatch: Any = None,
             ecs: Any = None, cloudformation: Any = None) -> pd.DataFrame:
    """Every source merged, oldest first (a source that cannot be read is noted, not fatal)."""
    rows = run_events(env.name, case.start, case.end, runs_root) + incident_events(case)
    rows += rollback_tags(env, case.start, case.end)
    for name, fetch in (("CloudWatch", lambda: alarm_events(env, case.start, case.end, cloudwatch)),
                        ("ECS", lambda: ecs_events(env, case.start, case.end, ecs).to_dict("records")),
                        ("CloudFormation", lambda: stack_events(env, case.start, case.end, cloudformation))):
        try:
            rows += fetch()
        except ShipbookError as exc:
            log.warning("timeline: %s unavailable: %s", name, exc)
            rows.append({"time": case.end, "source": name, "event": "unavailable", "detail": str(exc)[:200]})
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def key_moments(tl: pd.DataFrame, case: Case) -> dict[str, datetime | None]:
    """deploy start → first alarm after it → rollback → first alarm back to OK after the rollback.

    The deploy is the trigger (the latest deploy of any version before the start, with its run);
    without one, the latest "deploy started" of the timeline at or before the start.
    """
    def first(mask: pd.Series, after: datetime | None) -> datetime | None:
        rows = tl[mask & (tl["time"] >= after)] if after is not None else tl[mask]
        return rows["time"].iloc[0] if len(rows) else None

    if case.trigger:
        deploy: datetime | None = clock.parse_time(case.trigger["facts"]["deploy_started"])
    else:
        before = tl[tl["event"].str.startswith("deploy started: ") & (tl["time"] <= case.inc.started)]
        deploy = before["time"].iloc[-1] if len(before) else None
    alarm = first(tl["event"].str.endswith("→ ALARM"), deploy)
    is_rollback = tl["event"].isin(["rollback started"]) | tl["event"].str.startswith("rollback tag ")
    rollback = first(is_rollback, alarm or deploy)
    recovery = first(tl["event"].str.contains("ALARM → OK", regex=False), rollback) if rollback else None
    return {"deploy_start": deploy, "alarm": alarm, "rollback": rollback, "recovery": recovery}


def moments_table(moments: dict[str, datetime | None], lang: str = "ja") -> pd.DataFrame:
    """The key moments, minutes from the deploy, and whether they came in the expected order."""
    base = moments.get("deploy_start")
    rows = []
    for key in MOMENTS:
        t = moments.get(key)
        rows.append({i18n.t("event", lang): i18n.t(_MOMENT_LABEL[key], lang), i18n.t("time", lang): clock.fmt(t),
                     "t+min": round((t - base).total_seconds() / 60, 1) if t and base else None})
    return pd.DataFrame(rows)


def in_order(moments: dict[str, datetime | None]) -> bool:
    """True when every moment is known and they came deploy → alarm → rollback → recovery."""
    times = [moments.get(k) for k in MOMENTS]
    return all(t is not None for t in times) and all(a <= b for a, b in zip(times, times[1:], strict=False))


def durations(moments: dict[str, datetime | None], lang: str = "ja") -> pd.DataFrame:
    """Time to detect (deploy → alarm), to mitigate (alarm → recovery), and the impact's duration."""
    def minutes(a: str, b: str) -> str:
        ta, tb = moments.get(a), moments.get(b)
        return f"{(tb - ta).total_seconds() / 60:.1f} {i18n.t('minutes', lang)}" if ta and tb else "—"

    rows = [(i18n.t("pm.time_to_detect", lang), minutes("deploy_start", "alarm")),
            (i18n.t("pm.time_to_mitigate", lang), minutes("alarm", "recovery")),
            (i18n.t("pm.duration", lang), minutes("deploy_start", "recovery"))]
    return pd.DataFrame(rows, columns=[i18n.t("item", lang), i18n.t("value", lang)])


def impact_chart(env: Environment, case: Case, moments: dict[str, datetime | None], *, cloudwatch: Any = None,
                 elbv2: Any = None) -> Figure:
    """5xx rate and latency over the incident window, the key moments marked."""
    metrics = fetch_metrics(env, case.start, case.end, cloudwatch=cloudwatch, elbv2=elbv2)
    marks = {i18n.t(_MOMENT_LABEL[k], case.lang): t for k, t in moments.items() if t is not None}
    title = f"{case.inc.title or case.id} — {i18n.t('pm.chart_title', case.lang)}"
    return chart(metrics, title, marks, case.lang)


# ------------------------------------------------------------------ the SRE sections


@dataclass
class Document:
    """The postmortem's sections (markdown): computed parts filled, human parts marked to fill."""

    text: str

    def _repr_markdown_(self) -> str:
        return self.text


def sections(case: Case, moments: dict[str, datetime | None], tl: pd.DataFrame) -> Document:
    """Summary, impact, root causes, trigger, resolution, detection, action items, lessons (SRE template)."""
    lang = case.lang
    t = lambda k: i18n.t(k, lang)  # noqa: E731
    fill = f"**{t('to_fill')}** {t('pm.human')}"
    imp = case.facts.get("impact")
    impact_line = Impact.from_facts(imp).summary(lang) if isinstance(imp, dict) else t("unknown")
    trigger = trigger_text(case) if case.trigger else (
        f"deploy @ {clock.fmt(moments.get('deploy_start'))}" if moments.get("deploy_start") else t("unknown"))
    rb = moments.get("rollback")
    resolution = f"{t('pm.rollback')} → {case.inc.previous_version or '?'} @ {clock.fmt(rb)}" if rb else fill
    alarm_rows = tl[tl["event"].str.endswith("→ ALARM")]
    if moments.get("alarm") is not None:  # the alarm the key moments name: the first after the deploy
        alarm_rows = alarm_rows[alarm_rows["time"] >= moments["alarm"]]
    elif moments.get("deploy_start") is not None:
        alarm_rows = alarm_rows[alarm_rows["time"] >= moments["deploy_start"]]
    detection = (f"{alarm_rows['event'].iloc[0].split(':')[0]} @ {clock.fmt(alarm_rows['time'].iloc[0])}"
                 if len(alarm_rows) else fill)
    prevention = case.facts.get("prevention_items") or []
    actions = "\n".join(f"| {p} | {t('pm.kind')}: prevent | {t('to_fill')} | {t('to_fill')} |" for p in prevention)
    actions = actions or f"| {t('to_fill')} | | {t('to_fill')} | {t('to_fill')} |"
    lines = [
        f"# {t('pm.title')}: {case.inc.title or case.id}",
        f"`{case.id}` · {case.env} · {case.inc.version or '?'} · {clock.fmt(case.inc.started)}",
        f"## {t('pm.summary')}", fill,
        f"## {t('pm.impact')} {t('pm.computed')}", impact_line,
        f"## {t('pm.root_causes')}", fill,
        f"## {t('pm.trigger')} {t('pm.computed')}", trigger,
        f"## {t('pm.resolution')} {t('pm.computed')}", resolution,
        f"## {t('pm.detection')} {t('pm.computed')}", detection,
        f"## {t('pm.action_items')}",
        f"| {t('pm.action')} | {t('pm.kind')} | {t('pm.owner')} | {t('pm.due')} |\n|---|---|---|---|\n{actions}",
        f"## {t('pm.lessons')}",
        f"### {t('pm.went_well')}", fill, f"### {t('pm.went_wrong')}", fill, f"### {t('pm.got_lucky')}", fill,
        f"## {t('pm.timeline')} {t('pm.computed')}", "↓",
    ]
    return Document("\n\n".join(lines))


@dataclass
class TimelineView:
    """The whole timeline as one HTML table (a notebook shows only 60 rows of a DataFrame)."""

    frame: pd.DataFrame

    def _repr_html_(self) -> str:
        shown = self.frame.assign(time=self.frame["time"].map(clock.fmt))
        return shown.to_html(index=False)


def finish(case: Case, moments: dict[str, datetime | None], tl: pd.DataFrame) -> pd.DataFrame:
    """Record the postmortem's computed facts in the incident's record (never blocks)."""
    ordered = in_order(moments)
    checks = [{"id": "postmortem.timeline", "verdict": "pass" if ordered else "warn",
               "summary": f"{len(tl)} events; key moments {'in order' if ordered else 'incomplete or out of order'}"}]
    facts = {f"postmortem_{k}": clock.iso(v) if v else "" for k, v in moments.items()}
    facts["postmortem_lang"] = case.lang
    phase_result.report(PHASE, checks, facts=facts, blocking=[])
    return pd.DataFrame(checks)

