"""Incident response: the notebook `incident.ipynb`, status reports, and standalone runs.

The notebook follows the team's emergency flow (緊急時対応フロー): first 30 minutes (who to
call, symptoms and impact, a first notice to users), analysis (logs, metrics, recent deploys),
response (the rollback decision, the exact command, live metrics), convergence (checks re-run,
prevention items). Each function here is one cell's worth of work; AWS only through
`shipbook.aws`, clients passable for tests.

An incident lives at `runs/<env>/incidents/<id>/`: `run.json` (the runner's record: the
executed notebooks and their hashes, the facts the notebook reported), the rendered HTML, and
`status.jsonl`, the status reports, appended and hash-chained like the feedback file. Incident
records are sealed in their own ledger, `runs/<env>/incidents/ledger.jsonl`, so the release
ledger and `shipbook audit` of releases are not affected.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import requests
from matplotlib.figure import Figure

from shipbook import audit, aws, charts_font, gitinfo, i18n, secretvalues, versions
from shipbook import result as phase_result
from shipbook.config import Environment
from shipbook.errors import InputError, PhaseError, PhaseInfraError, ShipbookError
from shipbook.phases import NOTEBOOK_DIR, STANDALONE
from shipbook.redact import Redactor

log = logging.getLogger(__name__)

INCIDENTS = "incidents"
STATUS_FILE = "status.jsonl"
PHASE = "incident"
METRIC_COLUMNS = ["time", "requests", "errors", "error_rate", "p50", "p95", "p99"]
LOG_COLUMNS = ["time", "level", "method", "path", "status", "duration_ms", "message", "exception"]
EVENT_COLUMNS = ["time", "source", "event", "detail"]
ERROR_RATE_CRITICAL = 1.0  # percent of requests answered 5xx: the seed's "致命的なバグ"
LATENCY_FACTOR = 2.0  # p99 this many times the baseline: "パフォーマンスが著しく低下"

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_time(value: str | datetime | None, default: datetime | None = None) -> datetime:
    """An aware UTC datetime from ISO text ('' gives `default`, else now)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return default or utcnow()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError("start", f"{value!r} is not an ISO date-time like 2026-11-28T15:30:00+09:00") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def fmt(t: datetime | None) -> str:
    """A time as people read it in a report (UTC, said so)."""
    if t is None:
        return "—"
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# ------------------------------------------------------------------ the incident


@dataclass
class Incident:
    """What is known when the incident is opened."""

    id: str
    env: str
    title: str
    started: datetime
    version: str = ""
    previous_version: str = ""
    lang: str = "ja"
    lookback: timedelta = timedelta(minutes=30)

    @property
    def window_start(self) -> datetime:
        return self.started - self.lookback

    def table(self) -> pd.DataFrame:
        lang = self.lang
        rows = [("ID", self.id), (i18n.t("incident.title", lang), self.title or "—"),
                (i18n.STATUS_FIELDS[0][1 if lang == "ja" else 2], fmt(self.started)),
                (i18n.t("report.version", lang), self.version or i18n.t("unknown", lang)),
                (i18n.t("report.previous", lang), self.previous_version or i18n.t("unknown", lang)),
                ("env", self.env)]
        return pd.DataFrame(rows, columns=[i18n.t("item", lang), i18n.t("value", lang)])


def new_id(now: datetime | None = None) -> str:
    return "inc-" + audit.new_run_id(now)


def incident_dir(env: str, incident_id: str, runs_root: Path | None = None) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,80}", incident_id or ""):
        raise InputError("INCIDENT", f"{incident_id!r} is not an incident id (e.g. inc-20261128T151600Z-ab12cd)")
    return (runs_root or audit.RUNS_ROOT) / env / INCIDENTS / incident_id


def deployed_runs(env: str, runs_root: Path | None = None) -> list[dict[str, Any]]:
    """Release run records of `env` that started a deploy, oldest first."""
    recs = [d for _p, d in audit.iter_records(runs_root or audit.RUNS_ROOT, env)
            if d and (d.get("facts") or {}).get("deploy_started")]
    return sorted(recs, key=lambda d: d["facts"]["deploy_started"])


def open_incident(env: Environment, incident_id: str = "", title: str = "", started: str = "", version: str = "",
                  previous_version: str = "", lang: str = "", lookback_minutes: float = 30,
                  runs_root: Path | None = None, now: Clock = utcnow) -> Incident:
    """The incident of this notebook: start time (default now), suspected version (default the last deployed)."""
    start = parse_time(started, now())
    runs = [d for d in deployed_runs(env.name, runs_root) if parse_time(d["facts"]["deploy_started"]) <= start]
    if not version and runs:
        version = runs[-1]["version"]
    if version and not previous_version:
        mine = [d for d in runs if d["version"] == version]
        previous_version = mine[-1].get("previous_version", "") if mine else ""
    if version and not previous_version and gitinfo.is_repo(env.app.repo):
        previous_version = versions.previous_release(gitinfo.tags(env.app.repo), version)
    return Incident(incident_id or new_id(start), env.name, title, start, version, previous_version,
                    i18n.resolve_lang(lang, env.lang), timedelta(minutes=lookback_minutes))


def contacts_table(env: Environment, lang: str = "ja") -> pd.DataFrame:
    """Who to call, from the environment's `[[contacts]]` only: numbers are never made up."""
    cols = [i18n.t(k, lang) for k in ("incident.role", "incident.name", "incident.phone", "incident.email")]
    if not env.contacts:
        return pd.DataFrame([[i18n.t("incident.no_contacts", lang), "", "", ""]], columns=cols)
    missing = "—"
    rows = [[c.role, c.name, c.phone or missing, c.email or missing] for c in env.contacts]
    return pd.DataFrame(rows, columns=cols)


# ------------------------------------------------------------------ metrics and logs


def alb_dimensions(env: Environment, elbv2: Any = None) -> list[dict[str, str]]:
    """The LoadBalancer/TargetGroup dimensions CloudWatch files the target group's metrics under."""
    elbv2 = elbv2 or aws.client(env, "elbv2")
    tg = aws.call(elbv2, "describe_target_groups", Names=[env.stack.target_group])["TargetGroups"][0]
    lbs = tg.get("LoadBalancerArns") or []
    dims = [{"Name": "TargetGroup", "Value": tg["TargetGroupArn"].split(":", 5)[5]}]
    if lbs:
        dims.insert(0, {"Name": "LoadBalancer", "Value": lbs[0].split(":", 5)[5].removeprefix("loadbalancer/")})
    return dims


def auto_period(env: Environment, start: datetime, end: datetime, points: int = 240) -> int:
    """A period that keeps a chart readable: at least the metrics' own period (`[verify] period`: AWS's 60 s
    standard metrics, the twin's 1 s) and never under 10 s."""
    floor = max(int(env.verify.period), 10)
    span = max((end - start).total_seconds(), floor)
    step = max(floor, int(span // points))
    return int(-(-step // floor) * floor)


def fetch_metrics(env: Environment, start: datetime, end: datetime, period: int = 0, *, cloudwatch: Any = None,
                  elbv2: Any = None) -> pd.DataFrame:
    """Requests, 5xx, 5xx rate (%) and latency percentiles (ms) per period, from GetMetricData."""
    period = period or auto_period(env, start, end)
    dims = alb_dimensions(env, elbv2)
    queries = [("requests", "RequestCount", "Sum"), ("errors", "HTTPCode_Target_5XX_Count", "Sum"),
               ("p50", "TargetResponseTime", "p50"), ("p95", "TargetResponseTime", "p95"),
               ("p99", "TargetResponseTime", "p99")]
    body = [{"Id": qid, "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": name, "Dimensions": dims},
        "Period": period, "Stat": stat}} for qid, name, stat in queries]
    cw = cloudwatch or aws.client(env, "cloudwatch")
    series: dict[str, dict[datetime, float]] = {q[0]: {} for q in queries}
    token = None
    for _page in range(50):
        kwargs: dict[str, Any] = {"MetricDataQueries": body, "StartTime": start, "EndTime": end,
                                  "ScanBy": "TimestampAscending"}
        if token:
            kwargs["NextToken"] = token
        resp = aws.call(cw, "get_metric_data", **kwargs)
        for r in resp.get("MetricDataResults", []):
            for ts, v in zip(r.get("Timestamps", []), r.get("Values", []), strict=False):
                series[r["Id"]][parse_time(ts)] = float(v)
        token = resp.get("NextToken")
        if not token:
            break
    return metrics_frame(series)


def metrics_frame(series: dict[str, dict[datetime, float]]) -> pd.DataFrame:
    """One row per period: counts filled with 0, percentiles in ms, 5xx rate in percent."""
    times = sorted(set().union(*(s.keys() for s in series.values()))) if series else []
    rows = []
    for t in times:
        req = series.get("requests", {}).get(t, 0.0)
        err = series.get("errors", {}).get(t, 0.0)
        row = {"time": t, "requests": req, "errors": err, "error_rate": round(100 * err / req, 2) if req else 0.0}
        for p in ("p50", "p95", "p99"):
            v = series.get(p, {}).get(t)
            row[p] = round(v * 1000, 1) if v is not None else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def fetch_logs(env: Environment, start: datetime, end: datetime, *, pattern: str = "", errors_only: bool = False,
               limit: int = 5000, logs: Any = None) -> pd.DataFrame:
    """Log lines of the service's log group in the window (JSON lines parsed), oldest first."""
    client = logs or aws.client(env, "logs")
    kwargs: dict[str, Any] = {"logGroupName": env.stack.log_group, "startTime": int(start.timestamp() * 1000),
                              "endTime": int(end.timestamp() * 1000), "limit": min(limit, 10000)}
    rows: list[dict[str, Any]] = []
    for _page in range(100):
        resp = aws.call(client, "filter_log_events", **kwargs)
        for ev in resp.get("events", []):
            row = parse_log_line(ev.get("message", ""), ev.get("timestamp", 0))
            if pattern and pattern.lower() not in ev.get("message", "").lower():
                continue
            if errors_only and not is_error(row):
                continue
            rows.append(row)
        token = resp.get("nextToken")
        if not token or len(rows) >= limit or token == kwargs.get("nextToken"):
            break
        kwargs["nextToken"] = token
    df = pd.DataFrame(rows[:limit], columns=LOG_COLUMNS)
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def parse_log_line(message: str, timestamp_ms: int) -> dict[str, Any]:
    """A structured row from one log line (the app logs JSON; plain text keeps its message)."""
    row: dict[str, Any] = {"time": datetime.fromtimestamp(timestamp_ms / 1000, UTC), "level": "", "method": "",
                           "path": "", "status": None, "duration_ms": None, "message": message.strip()[:500],
                           "exception": ""}
    try:
        data = json.loads(message)
    except (json.JSONDecodeError, TypeError):
        return row
    if isinstance(data, dict):
        row.update({k: data.get(k, row[k]) for k in ("level", "method", "path", "status", "duration_ms")})
        row["message"] = str(data.get("message", message))[:500]
        trace = [ln.strip() for ln in str(data.get("exception") or "").splitlines() if ln.strip()]
        row["exception"] = trace[-1][:300] if trace else ""
    return row


def is_error(row: dict[str, Any]) -> bool:
    status = row.get("status")
    return str(row.get("level", "")).upper() in ("ERROR", "CRITICAL") or (isinstance(status, int) and status >= 500)


def endpoint(path: str) -> str:
    """A path with its ids folded (/products/17/ -> /products/{id}/) so endpoints group."""
    return re.sub(r"/\d+(?=/|$)", "/{id}", path or "") or "—"


def affected_endpoints(logs_df: pd.DataFrame, lang: str = "ja", top: int = 10) -> pd.DataFrame:
    """Server errors per endpoint, most first.

    Request lines (with a status) are counted; when there are none, error lines are, their path
    read from the message ("Internal Server Error: /products/14/"), so one failure counts once.
    """
    cols = [i18n.t("incident.endpoint", lang), i18n.t("incident.count", lang)]
    if logs_df.empty:
        return pd.DataFrame(columns=cols)
    status = pd.to_numeric(logs_df["status"], errors="coerce")
    failed = logs_df[status >= 500]
    paths = failed["path"]
    if failed.empty:
        errs = logs_df[[is_error(r) for r in logs_df.to_dict("records")]]
        paths = errs["message"].str.extract(r"(/[^\s\"']*)", expand=False).dropna()
    counts = paths.map(endpoint).value_counts().head(top)
    return pd.DataFrame({cols[0]: list(counts.index), cols[1]: list(counts.values)}, columns=cols)


def exceptions(logs_df: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """The exceptions in the log lines (last line of each traceback), most frequent first."""
    if logs_df.empty:
        return pd.DataFrame(columns=["exception", "count", "first", "last"])
    exc = logs_df[logs_df["exception"].astype(bool)]
    grouped = exc.groupby("exception")["time"].agg(["count", "min", "max"]).sort_values("count", ascending=False)
    return grouped.head(top).reset_index().rename(columns={"min": "first", "max": "last"})


# ------------------------------------------------------------------ impact


@dataclass
class Impact:
    """Symptoms over the window: what a status report and the decision table need."""

    window_start: str
    window_end: str
    requests: int = 0
    errors: int = 0
    error_rate_peak: float = 0.0
    error_rate_now: float = 0.0
    p99_peak: float = float("nan")
    p99_baseline: float = float("nan")
    p99_now: float = float("nan")
    endpoints: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)

    def summary(self, lang: str = "ja") -> str:
        """One sentence for a status report's 影響範囲 / Impact."""
        eps = ", ".join(self.endpoints[:3]) or i18n.t("unknown", lang)
        rate, p99 = f"{self.error_rate_peak:.1f}%", _ms(self.p99_peak)
        if lang == "ja":
            return f"エラー（5xx）率 最大 {rate}（{self.errors}/{self.requests} 件）、p99 最大 {p99}。対象: {eps}"
        return f"5xx rate up to {rate} ({self.errors}/{self.requests} requests), p99 up to {p99}. Endpoints: {eps}"

    def table(self, lang: str = "ja") -> pd.DataFrame:
        rows = [(i18n.t("incident.requests", lang), self.requests), (i18n.t("incident.errors", lang), self.errors),
                (i18n.t("incident.error_rate", lang) + " max", self.error_rate_peak),
                (i18n.t("incident.error_rate", lang) + " now", self.error_rate_now),
                ("p99 max", _ms(self.p99_peak)), ("p99 baseline", _ms(self.p99_baseline)),
                ("p99 now", _ms(self.p99_now)),
                (i18n.t("incident.endpoint", lang), ", ".join(self.endpoints) or "—"),
                ("ALARM", ", ".join(self.alarms) or "—")]
        return pd.DataFrame([(k, str(v)) for k, v in rows], columns=[i18n.t("item", lang), i18n.t("value", lang)])


def _ms(v: float) -> str:
    return "—" if v != v else f"{v:.0f} ms"  # NaN check without numpy


def measure(metrics: pd.DataFrame, endpoints_df: pd.DataFrame | None = None, alarms: list[str] | None = None,
            baseline_end: datetime | None = None, recent: int = 3) -> Impact:
    """Totals, peaks, the last `recent` periods, and the p99 before `baseline_end` (a deploy, the start)."""
    if metrics.empty:
        return Impact("", "", alarms=list(alarms or []))
    before = metrics[metrics["time"] < baseline_end] if baseline_end is not None else metrics.iloc[:0]
    tail = metrics.tail(recent)
    req_tail = tail["requests"].sum()
    return Impact(
        window_start=audit_iso(metrics["time"].iloc[0]), window_end=audit_iso(metrics["time"].iloc[-1]),
        requests=int(metrics["requests"].sum()), errors=int(metrics["errors"].sum()),
        error_rate_peak=float(metrics["error_rate"].max()),
        error_rate_now=round(100 * float(tail["errors"].sum()) / req_tail, 2) if req_tail else 0.0,
        p99_peak=float(metrics["p99"].max()), p99_baseline=float(before["p99"].median()) if len(before) else
        float("nan"), p99_now=float(tail["p99"].median()),
        endpoints=list(endpoints_df.iloc[:, 0]) if endpoints_df is not None and not endpoints_df.empty else [],
        alarms=list(alarms or []))


def deploy_start(env: Environment, inc: Incident, runs_root: Path | None = None) -> datetime | None:
    """When the suspected version's deploy started (its newest run before the incident), if known."""
    runs = [d for d in deployed_runs(env.name, runs_root) if d["version"] == inc.version
            and parse_time(d["facts"]["deploy_started"]) <= inc.started]
    return parse_time(runs[-1]["facts"]["deploy_started"]) if runs else None


def assess(env: Environment, inc: Incident, metrics: pd.DataFrame, endpoints_df: pd.DataFrame | None = None, *,
           runs_root: Path | None = None, cloudwatch: Any = None) -> Impact:
    """The impact: metrics measured against the p99 before the suspected deploy, alarms firing now."""
    deployed = deploy_start(env, inc, runs_root)
    base_end = deployed if deployed and deployed >= inc.window_start else inc.started
    return measure(metrics, endpoints_df, alarms_in_alarm(env, cloudwatch), baseline_end=base_end)


def marks(env: Environment, inc: Incident, runs_root: Path | None = None) -> dict[str, datetime]:
    """The moments a chart marks: the suspected deploy, the incident's start, rollbacks since."""
    out: dict[str, datetime] = {}
    deployed = deploy_start(env, inc, runs_root)
    if deployed:
        out[f"deploy {inc.version}"] = deployed
    out[i18n.t("incident.start_mark", inc.lang)] = inc.started
    for d, rb in rollback_phases(env.name, inc.window_start, runs_root):
        out[f"rollback {d['version']}"] = parse_time(rb["started"])
    return out


def audit_iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds")


def watched_alarms(env: Environment, cloudwatch: Any = None) -> list[dict[str, Any]]:
    """The metric alarms that notify the environment's alarm topic (all alarms when none is set)."""
    cw = cloudwatch or aws.client(env, "cloudwatch")
    alarms = aws.collect(cw, "describe_alarms", "MetricAlarms", AlarmTypes=["MetricAlarm"])
    topic = env.stack.alarm_topic
    if not topic:
        return alarms
    return [a for a in alarms if any(arn.endswith(":" + topic) for arn in
                                     (*a.get("AlarmActions", []), *a.get("OKActions", [])))]


def alarms_in_alarm(env: Environment, cloudwatch: Any = None) -> list[str]:
    return [a["AlarmName"] for a in watched_alarms(env, cloudwatch) if a.get("StateValue") == "ALARM"]


def chart(metrics: pd.DataFrame, title: str, marks: dict[str, datetime] | None = None, lang: str = "ja") -> Figure:
    """5xx rate and latency percentiles over time, with the incident's moments marked."""
    charts_font.setup()
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    err_ax, lat_ax = fig.subplots(2, 1, sharex=True)
    fig.suptitle(title)
    if metrics.empty:
        err_ax.text(0.5, 0.5, i18n.t("none", lang), ha="center", va="center", transform=err_ax.transAxes)
        return fig
    t = metrics["time"]
    err_ax.plot(t, metrics["error_rate"], color="tab:red", label=i18n.t("incident.error_rate", lang))
    err_ax.set_ylabel(i18n.t("incident.error_rate", lang))
    req_ax = err_ax.twinx()
    req_ax.plot(t, metrics["requests"], color="tab:gray", alpha=0.4, linewidth=1)
    req_ax.set_ylabel(i18n.t("incident.requests", lang), color="tab:gray")
    for p, color in (("p50", "tab:green"), ("p95", "tab:orange"), ("p99", "tab:purple")):
        lat_ax.plot(t, metrics[p], color=color, label=p)
    lat_ax.set_ylabel("ms")
    lat_ax.legend(loc="upper left", fontsize="small")
    colors = ["tab:blue", "tab:red", "tab:purple", "tab:green", "black", "tab:brown"]
    for i, (label, when) in enumerate((marks or {}).items()):
        if when is None:
            continue
        for ax in (err_ax, lat_ax):
            ax.axvline(when, color=colors[i % len(colors)], linestyle="--", linewidth=1)
        err_ax.annotate(label, (when, 1), xycoords=("data", "axes fraction"), xytext=(3, -12 - 11 * i),
                        textcoords="offset points", color=colors[i % len(colors)], fontsize="small")
    for ax in (err_ax, lat_ax):
        ax.grid(alpha=0.3)
    lat_ax.set_xlabel("UTC")
    return fig


# ------------------------------------------------------------------ first notice, analysis


@dataclass
class Notice:
    """A drafted notice (markdown), shown as such in the notebook and the HTML."""

    text: str

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


def first_notice(inc: Incident, impact: Impact) -> Notice:
    """A draft of the first notice to users: what, since when, what we do, next update."""
    nxt = fmt(inc.started + timedelta(minutes=30))
    eps = ", ".join(impact.endpoints[:3])
    if inc.lang == "ja":
        title = inc.title or "サービスの一部で障害が発生しています"
        affected = f"（対象: {eps}）" if eps else ""
        return Notice(f"**{i18n.t('incident.notice_subject', 'ja')} {title}**\n\n"
                      f"{fmt(inc.started)} 頃より、サービスの一部で"
                      f"エラーが発生しやすい状態になっています{affected}。\n\n"
                      "現在、原因の調査と復旧対応を進めております。ご迷惑をおかけし申し訳ございません。\n\n"
                      f"次回の更新は {nxt} 頃を予定しています。")
    title = inc.title or "Some requests are failing"
    affected = f" (affected: {eps})" if eps else ""
    return Notice(f"**{i18n.t('incident.notice_subject', 'en')} {title}**\n\n"
                  f"Since about {fmt(inc.started)}, some requests to the service may fail{affected}.\n\n"
                  "We are investigating and working on a fix. We apologise for the inconvenience.\n\n"
                  f"Next update by {nxt}.")


def recent_deploys(env: Environment, inc: Incident, hours: float = 24, runs_root: Path | None = None
                   ) -> pd.DataFrame:
    """Release runs that deployed in the `hours` before the incident (and since), newest first."""
    since = inc.started - timedelta(hours=hours)
    rows = []
    for d in deployed_runs(env.name, runs_root):
        started = parse_time(d["facts"]["deploy_started"])
        if started < since:
            continue
        phases = {p["name"]: p for p in d.get("phases", [])}
        rb = phases.get("rollback", {})
        rows.append({"version": d["version"], "run_id": d["run_id"], "status": d.get("status", ""),
                     "deploy_started": fmt(started),
                     "deploy_finished": fmt(parse_time(d["facts"]["deploy_finished"]))
                     if d["facts"].get("deploy_finished") else "—",
                     "rollback": rb.get("status", "—") if rb else "—",
                     "minutes_before_incident": round((inc.started - started).total_seconds() / 60, 1)})
    df = pd.DataFrame(rows, columns=["version", "run_id", "status", "deploy_started", "deploy_finished",
                                     "rollback", "minutes_before_incident"])
    return df.iloc[::-1].reset_index(drop=True)


def ecs_events(env: Environment, start: datetime, end: datetime, ecs: Any = None) -> pd.DataFrame:
    """The service's ECS events in the window (ECS keeps the last 100), oldest first."""
    client = ecs or aws.client(env, "ecs")
    svcs = aws.call(client, "describe_services", cluster=env.stack.cluster, services=[env.stack.service])
    events = (svcs.get("services") or [{}])[0].get("events", [])
    rows = [{"time": parse_time(e["createdAt"]), "source": "ECS", "event": "service event",
             "detail": e.get("message", "")} for e in events]
    df = pd.DataFrame([r for r in rows if start <= r["time"] <= end], columns=EVENT_COLUMNS)
    return df.sort_values("time", kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------ response


def decision_table(impact: Impact, lang: str = "ja", latency_threshold_ms: float | None = None) -> pd.DataFrame:
    """The seed's rollback criteria against what was measured: critical bug, performance, security."""
    yes, no, manual = (i18n.t(k, lang) for k in ("incident.yes", "incident.no", "incident.manual"))
    base = impact.p99_baseline
    limit = latency_threshold_ms or (base * LATENCY_FACTOR if base == base else float("nan"))
    bug = impact.error_rate_peak >= ERROR_RATE_CRITICAL or any("5xx" in a.lower() for a in impact.alarms)
    perf = (impact.p99_peak == impact.p99_peak and limit == limit and impact.p99_peak > limit) or \
        any("latency" in a.lower() for a in impact.alarms)
    rows = [
        (i18n.t("incident.crit.bug", lang), f"{impact.error_rate_peak:.1f}%", f"≥ {ERROR_RATE_CRITICAL:.1f}%",
         yes if bug else no),
        (i18n.t("incident.crit.perf", lang), _ms(impact.p99_peak), f"> {_ms(limit)}", yes if perf else no),
        (i18n.t("incident.crit.security", lang), i18n.t("incident.crit.security_obs", lang), "—", manual),
    ]
    cols = [i18n.t(k, lang) for k in ("incident.decision", "incident.observed", "incident.threshold", "incident.met")]
    return pd.DataFrame(rows, columns=cols)


def recommendation(decisions: pd.DataFrame, lang: str = "ja") -> str:
    met = (decisions.iloc[:, 3] == i18n.t("incident.yes", lang)).any()
    return i18n.t("incident.recommend_rollback" if met else "incident.recommend_watch", lang)


def rollback_command(env: Environment, inc: Incident) -> str:
    """The exact command that rolls the suspected version back (the rollback phase of its release)."""
    if not inc.version:
        return "# " + ("疑わしいバージョンが不明です: VERSION を指定してください" if inc.lang == "ja"
                       else "the suspected version is unknown: give VERSION")
    versions.parse(inc.version)
    target = f"  # → {inc.previous_version}" if inc.previous_version else ""
    return f"make rollback VERSION={inc.version} ENV={env.name}{target}"


# ------------------------------------------------------------------ convergence


@dataclass
class Check:
    id: str
    verdict: str
    summary: str


def convergence_checks(env: Environment, impact: Impact, live: Impact, *, get: Callable[..., Any] = requests.get,
                       http_get: Callable[..., Any] | None = None) -> list[Check]:
    """The verify checks that say the service is back: health, version, smoke tests, errors, latency, alarms.

    `impact` gives the p99 baseline (before the suspected deploy), `live` the last minutes. The
    smoke tests are the environment's `[[verify.smoke]]` (全機能の動作確認), run against the version
    the service serves now (after a rollback, the previous one).
    """
    from shipbook.deploy.health import served_version
    from shipbook.verify import reach
    from shipbook.verify import settings as verify_settings

    out: list[Check] = []
    if env.app.public_url:
        url = env.app.public_url.rstrip("/")
        try:
            health = get(url + env.app.health_path, timeout=5)
            out.append(Check("verify.health", "pass" if health.status_code == 200 else "fail",
                             f"{env.app.health_path} answered {health.status_code}"))
            served = get(url + env.app.version_path, timeout=5)
            text = served.text.strip()[:80]
            out.append(Check("verify.version", "pass" if served.status_code == 200 else "warn",
                             f"{env.app.version_path} serves {text!r}"))
            smoke = reach.smoke(env, served_version(served.text), verify_settings.from_env(env),
                                http_get=http_get or reach.http)
            out.append(Check(smoke.id, smoke.verdict, smoke.summary))
        except requests.RequestException as exc:
            out.append(Check("verify.health", "fail", f"{url}: {type(exc).__name__}"))
    rate = live.error_rate_now
    out.append(Check("verify.errors", "pass" if rate < ERROR_RATE_CRITICAL else "fail",
                     f"5xx rate {rate:.2f}% over the last periods"))
    base, now_p99 = impact.p99_baseline, live.p99_now
    slow = base == base and now_p99 == now_p99 and now_p99 > base * LATENCY_FACTOR
    out.append(Check("verify.performance", "warn" if slow else "pass",
                     f"p99 now {_ms(now_p99)} (baseline {_ms(base)})"))
    firing = live.alarms
    out.append(Check("verify.alarms", "fail" if firing else "pass",
                     f"in ALARM: {', '.join(firing)}" if firing else "all watched alarms OK"))
    return out


def checks_table(checks: list[Check]) -> pd.DataFrame:
    return pd.DataFrame([asdict(c) for c in checks], columns=["id", "verdict", "summary"])


def prevention_table(items: list[str] | str, lang: str = "ja") -> pd.DataFrame:
    """Prevention items as given (one per line); an empty list shows the field to fill."""
    lines = [s.strip() for s in (items.splitlines() if isinstance(items, str) else items) if s.strip()]
    return pd.DataFrame({i18n.t("incident.prevention", lang): lines or [i18n.t("to_fill", lang)]})


def record(inc: Incident, impact: Impact, checks: list[Check], prevention: list[str] | str = "",
           decision: str = "") -> phase_result.PhaseResult:
    """Tell the runner what the incident notebook found; it lands in the incident's run.json."""
    lines = [s.strip() for s in (prevention.splitlines() if isinstance(prevention, str) else prevention) if s.strip()]
    facts = {"incident_id": inc.id, "incident_title": inc.title, "incident_start": audit_iso(inc.started),
             "suspected_version": inc.version, "rollback_target": inc.previous_version, "incident_lang": inc.lang,
             "impact": asdict(impact), "decision": decision, "prevention_items": lines}
    return phase_result.report(PHASE, checks, facts=facts, blocking=[])


# ------------------------------------------------------------------ status reports


@dataclass
class StatusReport:
    """The seed's five fields (発生時刻・影響範囲・現在の状況・対応予定時間・次回の更新予定)."""

    incident_id: str
    lang: str
    at: str
    started: str
    impact: str
    current: str
    eta: str
    next_update: str

    def fields(self) -> list[tuple[str, str]]:
        return [(label, getattr(self, key)) for key, label in i18n.status_labels(self.lang)]

    def text(self) -> str:
        """Exactly the five fields, one per line, in the seed's order."""
        sep = "：" if self.lang == "ja" else ": "
        return "\n".join(f"{label}{sep}{value}" for label, value in self.fields())


def load_record(env: str, incident_id: str, runs_root: Path | None = None) -> dict[str, Any]:
    path = incident_dir(env, incident_id, runs_root) / audit.RECORD
    if not path.is_file():
        raise InputError("INCIDENT", f"no incident {incident_id!r} in {env!r} ({path.parent} has no run.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def status_reports(env: str, incident_id: str, runs_root: Path | None = None) -> list[dict[str, Any]]:
    """The status reports appended to the incident, oldest first."""
    path = incident_dir(env, incident_id, runs_root) / STATUS_FILE
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def status_report(env: Environment, incident_id: str, lang: str = "", *, impact: str = "", current: str = "",
                  eta: str = "", next_update_minutes: float = 30, runs_root: Path | None = None,
                  now: Clock = utcnow, cloudwatch: Any = None, elbv2: Any = None,
                  redactor: Redactor | None = None) -> StatusReport:
    """Compose a status report (computed where not given), append it, timestamped, and return it.

    発生時刻 is the incident's start; 影響範囲 the incident notebook's impact unless given; 現在の
    状況 the last minutes' 5xx rate and p99 plus any rollback run since the start unless given.
    """
    lang = i18n.resolve_lang(lang, env.lang)
    rec = load_record(env.name, incident_id, runs_root)
    facts = rec.get("facts", {})
    started = parse_time(facts.get("incident_start") or rec.get("started"))
    t = now()
    if not impact:
        imp = facts.get("impact")
        impact = Impact(**imp).summary(lang) if isinstance(imp, dict) else i18n.t("unknown", lang)
    if not current:
        current = current_status(env, started, lang, t, runs_root=runs_root, cloudwatch=cloudwatch, elbv2=elbv2)
    rep = StatusReport(incident_id, lang, audit_iso(t), fmt(started), impact, current,
                       eta or i18n.t("to_fill", lang), fmt(t + timedelta(minutes=next_update_minutes)))
    _append_chained(incident_dir(env.name, incident_id, runs_root) / STATUS_FILE, asdict(rep),
                    redactor or Redactor(secretvalues.collect(env)))
    return rep


def current_status(env: Environment, started: datetime, lang: str, t: datetime, *, runs_root: Path | None = None,
                   cloudwatch: Any = None, elbv2: Any = None) -> str:
    """Live 5xx rate and p99 over the last few minutes, and the newest rollback since `started`."""
    parts = []
    try:
        live = measure(fetch_metrics(env, t - timedelta(minutes=3), t, cloudwatch=cloudwatch, elbv2=elbv2))
        if lang == "ja":
            parts.append(f"直近 3 分の 5xx 率 {live.error_rate_now:.1f}%、p99 {_ms(live.p99_now)}")
        else:
            parts.append(f"last 3 minutes: 5xx rate {live.error_rate_now:.1f}%, p99 {_ms(live.p99_now)}")
    except ShipbookError as exc:
        log.warning("live metrics unavailable for the status report: %s", exc)
    rollbacks = rollback_phases(env.name, started, runs_root)
    if rollbacks:
        d, rb = rollbacks[-1]
        parts.append(f"ロールバック（{d['version']}、run {d['run_id']}）: {rb['status']}" if lang == "ja"
                     else f"rollback of {d['version']} (run {d['run_id']}): {rb['status']}")
    sep = "。" if lang == "ja" else "; "
    return sep.join(parts) or i18n.t("unknown", lang)


def rollback_phases(env: str, since: datetime, runs_root: Path | None = None
                    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(record, rollback phase entry) of release runs whose rollback started since `since`, oldest first."""
    found = []
    for _p, d in audit.iter_records(runs_root or audit.RUNS_ROOT, env):
        for p in (d or {}).get("phases", []):
            if p.get("name") == "rollback" and p.get("started") and parse_time(p["started"]) >= since:
                found.append((d, p))
    return sorted(found, key=lambda dp: dp[1]["started"])


def _append_chained(path: Path, entry: dict[str, Any], redactor: Redactor) -> None:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()] if path.is_file() else []
    entry = {**redactor.json(entry), "seq": len(lines) + 1,
             "prev": audit.sha256_bytes(lines[-1].encode()) if lines else audit.GENESIS}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# ------------------------------------------------------------------ standalone runs


def run_standalone(env: Environment, kind: str, incident_id: str, params: dict[str, Any], *,
                   version: str = "", variant: str = "", runs_root: Path | None = None,
                   notebook_dir: Path = NOTEBOOK_DIR, progress: Any = None,
                   redactor: Redactor | None = None) -> audit.RunRecord:
    """Execute `incident.ipynb` or `postmortem.ipynb` into `runs/<env>/incidents/<id>/` with the runner.

    Reuses `pipeline.Runner.run_phase` (papermill engine, redaction, HTML render, hashes into
    run.json); the record is sealed in the incidents ledger, not the release ledger. A
    `variant` (e.g. the postmortem's language) keeps its own files: `postmortem.en.ipynb`, run
    from a private copy of the notebook under that name.
    """
    from shipbook import render  # nbconvert loads only for a run
    from shipbook.pipeline import Runner  # papermill too

    if kind not in STANDALONE:
        raise InputError("notebook", f"unknown standalone notebook {kind!r} (known: {', '.join(STANDALONE)})")
    runs_root = runs_root or audit.RUNS_ROOT
    run_dir = incident_dir(env.name, incident_id, runs_root)
    ledger = audit.Ledger(run_dir.parent)
    if (run_dir / audit.RECORD).is_file():
        rec = audit.RunRecord(run_dir, load_record(env.name, incident_id, runs_root))
        rec.data["parameters"].update(params)
    else:
        if kind != "incident":
            raise InputError("INCIDENT", f"no incident {incident_id!r} in {env.name!r}: open it with `make incident`")
        operator = {"git_user": gitinfo.user(), "aws_arn": aws.caller_arn(env)}
        rec = audit.RunRecord(run_dir, {
            "schema": audit.SCHEMA, "kind": "incident", "run_id": incident_id, "env": env.name, "version": version,
            "previous_version": "", "commit": "", "shipbook_version": _shipbook_version(), "operator": operator,
            "parameters": {"dry_run": True, **params}, "status": "running", "started": audit.now_iso(),
            "finished": None, "phases": [], "facts": {}, "previous_record_sha256": ledger.head()})
    phase, notebook = kind, STANDALONE[kind]
    if variant:
        if not re.fullmatch(r"[a-z0-9]{1,16}", variant):
            raise InputError("variant", f"{variant!r}: lower-case letters and digits only")
        phase, notebook = f"{kind}-{variant}", notebook.replace(".ipynb", f".{variant}.ipynb")
    try:
        rec.phase(phase)
    except KeyError:
        rec.add_phase(phase, notebook)
    redactor = redactor or Redactor(secretvalues.collect(env))
    with tempfile.TemporaryDirectory(prefix="shipbook-nb-") as tmp:
        if variant:
            shutil.copy(notebook_dir / STANDALONE[kind], Path(tmp) / notebook)
        runner = Runner(env, redactor, runs_root, Path(tmp) if variant else notebook_dir, progress)
        rec.data.update(status="running", finished=None)
        outcome = runner.run_phase(rec, phase)
    rec.data.update(status="open" if outcome.status == "succeeded" else "failed", finished=audit.now_iso())
    rec.save(redactor)
    ledger.append(rec.run_id, audit.sha256_file(rec.path))
    render.write_index(runs_root, redactor)
    if outcome.status == "failed":
        error_class = PhaseInfraError if outcome.infra else PhaseError
        raise error_class(kind, outcome.cell or "?", outcome.error or "failed", str(run_dir / notebook))
    return rec


def _shipbook_version() -> str:
    from shipbook import __version__

    return __version__


def converge(env: Environment, incident_id: str, prevention: list[str], *, lang: str = "",
             runs_root: Path | None = None, progress: Any = None) -> audit.RunRecord:
    """`shipbook incident --id ID --prevention …`: re-run the incident notebook of ID now (the verify
    checks of its convergence section, live metrics) with these prevention items added to the record."""
    data = load_record(env.name, incident_id, runs_root or audit.RUNS_ROOT)
    old = str((data.get("parameters") or {}).get("prevention") or "")
    items = [s.strip() for s in old.splitlines() if s.strip()]
    items += [s.strip() for s in prevention if s.strip() and s.strip() not in items]
    params: dict[str, Any] = {"prevention": "\n".join(items)}
    if lang:
        params["lang"] = i18n.resolve_lang(lang, env.lang)
    return run_standalone(env, "incident", incident_id, params, version=data.get("version", ""),
                          runs_root=runs_root, progress=progress)


def open_and_run(env: Environment, *, title: str = "", started: str = "", version: str = "", lang: str = "",
                 runs_root: Path | None = None, progress: Any = None, now: Clock = utcnow) -> audit.RunRecord:
    """`shipbook incident`: a new incident id, then the incident notebook executed into its dir."""
    start = parse_time(started, now())
    if version:
        versions.parse(version, "--version")
    incident_id = new_id(start)
    params = {"incident_start": audit_iso(start), "title": title, "lang": i18n.resolve_lang(lang, env.lang)}
    return run_standalone(env, "incident", incident_id, params, version=version, runs_root=runs_root,
                          progress=progress)
