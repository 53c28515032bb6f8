"""Incident response: the notebook `incident.ipynb`, status reports, and standalone runs.

The notebook follows the team's emergency flow (緊急時対応フロー): first 30 minutes (who to
call, symptoms and impact, a first notice to users), analysis (logs, metrics, recent deploys),
response (the rollback decision, the exact command, live metrics), convergence (checks re-run,
prevention items). Each function here is one cell's worth of work; AWS only through
`shipbook.aws`, clients passable for tests.

Why it starts from the current state: an incident is often opened after the release pipeline
already rolled the release back. Before recommending anything, `current_state` reads the run
records (was the suspected release rolled back?) and the live service (which version serves,
do the convergence checks pass?); `decide_state` and `advise` are pure over that data. Impact
is measured in pooled windows (`[incident] pool_seconds`, only pools holding `min_requests`),
so a second with a handful of requests never sets a headline figure; 発生時刻 is the onset
(`find_onset`), not the moment somebody opened the incident.

An incident lives at `runs/<env>/incidents/<id>/`: `run.json` (the runner's record: the
executed notebooks and their hashes, the facts the notebook reported), the rendered HTML, and
`status.jsonl`, the status reports, appended and hash-chained like the feedback file. Incident
records are sealed in their own ledger, `runs/<env>/incidents/ledger.jsonl`, so the release
ledger and `shipbook audit` of releases are not affected.
"""

from __future__ import annotations

import dataclasses
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
POOL_COLUMNS = ["time", "requests", "errors", "error_rate", "p99", "enough"]
LOG_COLUMNS = ["time", "level", "method", "path", "status", "duration_ms", "message", "exception"]
EVENT_COLUMNS = ["time", "source", "event", "detail"]
ERROR_RATE_CRITICAL = 1.0  # percent of requests answered 5xx: the seed's "致命的なバグ"
LATENCY_FACTOR = 2.0  # p99 this many times the baseline: "パフォーマンスが著しく低下"
DEPLOY_HORIZON = timedelta(hours=6)  # a deploy this long before the start no longer anchors the window

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_time(value: str | datetime | None, default: datetime | None = None, name: str = "start") -> datetime:
    """An aware UTC datetime from ISO text ('' gives `default`, else now)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return default or utcnow()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(name, f"{value!r} is not an ISO date-time like 2026-11-28T15:30:00+09:00") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def fmt(t: datetime | None) -> str:
    """A time as people read it in a report (UTC, said so)."""
    if t is None:
        return "—"
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def clock(t: datetime | str | None, seconds: bool = True) -> str:
    """A time of day (UTC), as a report names a minute: 15:02 or 15:02:10."""
    if not t:
        return "—"
    return parse_time(t).strftime("%H:%M:%S" if seconds else "%H:%M")


# ------------------------------------------------------------------ the incident


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
        deploy = f"{fmt(self.deploy)} (run {self.deploy_run})" if self.deploy else t("unknown")
        rows = [("ID", self.id), (t("incident.title"), self.title or "—"),
                (i18n.STATUS_FIELDS[0][1 if lang == "ja" else 2], fmt(self.started)),
                (t("incident.start_basis"), basis), (t("incident.opened"), fmt(self.opened_at)),
                (t("report.version"), self.version or t("unknown")),
                (t("report.previous"), self.previous_version or t("unknown")),
                (t("incident.suspected_deploy"), deploy), ("env", self.env)]
        return pd.DataFrame(rows, columns=[t("item"), t("value")])


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
    return sorted(recs, key=lambda d: parse_time(d["facts"]["deploy_started"]))


def last_deploy(env: str, before: datetime, runs_root: Path | None = None) -> dict[str, Any] | None:
    """The run record of the latest deploy, of any version, that started at or before `before`.

    The deploy that preceded an incident: a version released twice (a retry, a re-release after a
    rollback) has two runs, and only the later one can have caused what began after it.
    """
    runs = [d for d in deployed_runs(env, runs_root) if parse_time(d["facts"]["deploy_started"]) <= before]
    return runs[-1] if runs else None


def open_incident(env: Environment, incident_id: str = "", title: str = "", started: str = "", version: str = "",
                  previous_version: str = "", lang: str = "", lookback_minutes: float = 30,
                  runs_root: Path | None = None, now: Clock | None = None, opened: str = "") -> Incident:
    """The incident of this notebook: opened now (or `opened`); its start as given, else for now the opening
    (`find_start` finds the onset); the suspected version (default the last deployed) and its deploy run."""
    opened_at = parse_time(opened, None, "incident_opened") if opened else (now or utcnow)()
    start = parse_time(started, opened_at)
    runs = [d for d in deployed_runs(env.name, runs_root) if parse_time(d["facts"]["deploy_started"]) <= start]
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
                    deploy=parse_time(mine[-1]["facts"]["deploy_started"]) if mine else None,
                    deploy_run=mine[-1].get("run_id", "") if mine else "")


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


# ------------------------------------------------------------------ pooled windows, baseline, onset


def pool_label(seconds: int, lang: str = "ja") -> str:
    """How a pool is named in a sentence: 1分 / minute, 2分 / 2 minutes, 10秒 / 10 s."""
    if seconds % 60 == 0:
        n = seconds // 60
        return f"{n}分" if lang == "ja" else ("minute" if n == 1 else f"{n} minutes")
    return f"{seconds}秒" if lang == "ja" else f"{seconds} s"


def pool_width(metrics: pd.DataFrame, seconds: int) -> int:
    """The pool actually used: `seconds`, or the metrics' own period when that is longer."""
    if len(metrics) > 1:
        step = pd.to_datetime(metrics["time"], utc=True).diff().dt.total_seconds().median()
        if step == step and step > seconds:
            return int(step)
    return int(seconds)


def pooled(metrics: pd.DataFrame, seconds: int = 60, min_requests: int = 50) -> pd.DataFrame:
    """The periods pooled into windows of `seconds` (by the window each starts in).

    Counts are summed and the 5xx rate is the rate of the sums, so a pool of a few requests
    weighs what it holds; p99 is the request-weighted mean of the periods' p99 (exact when a
    period is the pool). `enough`: the pool holds `min_requests`, the only pools a headline
    figure or an onset may come from.
    """
    if metrics.empty:
        return pd.DataFrame(columns=POOL_COLUMNS)
    p99 = metrics["p99"].astype(float)
    req = metrics["requests"].astype(float)
    has = p99.notna()
    frame = pd.DataFrame({"time": pd.to_datetime(metrics["time"], utc=True).dt.floor(f"{seconds}s"),
                          "requests": req, "errors": metrics["errors"].astype(float),
                          "w": (p99 * req).where(has, 0.0), "wr": req.where(has, 0.0), "p": p99})
    g = frame.groupby("time", sort=True).agg(requests=("requests", "sum"), errors=("errors", "sum"),
                                             w=("w", "sum"), wr=("wr", "sum"), p=("p", "mean"))
    requests_ = g["requests"].round().astype(int)
    errors_ = g["errors"].round().astype(int)
    rate = (100 * errors_ / requests_.where(requests_ > 0)).fillna(0.0).round(2)
    p99_pool = (g["w"] / g["wr"].where(g["wr"] > 0)).fillna(g["p"]).round(1)
    return pd.DataFrame({"time": [t.to_pydatetime() for t in g.index], "requests": requests_.to_numpy(),
                         "errors": errors_.to_numpy(), "error_rate": rate.to_numpy(), "p99": p99_pool.to_numpy(),
                         "enough": (requests_ >= min_requests).to_numpy()}, columns=POOL_COLUMNS)


def pools_table(env: Environment, metrics: pd.DataFrame) -> pd.DataFrame:
    """The metrics as the impact figures read them: one row per pool (`[incident] pool_seconds`)."""
    return pooled(metrics, pool_width(metrics, env.incident.pool_seconds), env.incident.min_requests)


@dataclass
class Baseline:
    """The service before the suspected deploy: what "left the baseline" is measured against."""

    requests: int = 0
    errors: int = 0
    p99: float = float("nan")  # the median of the periods' p99, in ms

    @property
    def rate(self) -> float:
        return 100 * self.errors / self.requests if self.requests else 0.0

    def describe(self) -> str:
        return f"baseline 5xx {self.rate:.1f}%, p99 {_ms(self.p99)}"


def baseline(metrics: pd.DataFrame, before: datetime | None) -> Baseline:
    """The periods before `before` (the suspected deploy), pooled into one."""
    if before is None or metrics.empty:
        return Baseline()
    b = metrics[metrics["time"] < before]
    if b.empty:
        return Baseline()
    return Baseline(int(round(b["requests"].sum())), int(round(b["errors"].sum())), float(b["p99"].median()))


@dataclass(frozen=True)
class Tolerance:
    """How far a pool may stray from the baseline before it counts as the incident."""

    error_points: float = 0.5  # 5xx rate: percentage points above the baseline's …
    alpha: float = 0.01  # … beyond chance (one-sided binomial test)
    latency_factor: float = LATENCY_FACTOR  # p99 this many times the baseline's …
    latency_floor_ms: float = 5.0  # … and this much above it


def tolerance(env: Environment) -> Tolerance:
    """The verify phase's own tolerances: the incident holds the service to what a release is held to."""
    v = env.verify
    return Tolerance(100 * v.error_rate_tolerance, v.alpha, LATENCY_FACTOR, v.latency_floor_ms)


def off_baseline(pools: pd.DataFrame, base: Baseline, tol: Tolerance = Tolerance()) -> list[str]:
    """Per pool: "errors" or "latency" when it left the baseline, else "" (pools without enough requests: "")."""
    from scipy import stats  # only when pools are judged

    p0 = min(base.rate / 100 + tol.error_points / 100, 1.0)
    out = []
    for r in pools.itertuples():
        why = ""
        if r.enough and r.requests:
            rate = 100 * r.errors / r.requests
            if rate > base.rate + tol.error_points and stats.binom.sf(r.errors - 1, r.requests, p0) < tol.alpha:
                why = "errors"
            elif base.p99 == base.p99 and r.p99 == r.p99 and r.p99 > base.p99 * tol.latency_factor \
                    and r.p99 - base.p99 > tol.latency_floor_ms:
                why = "latency"
        out.append(why)
    return out


def pool_text(row: Any, seconds: int) -> str:
    """One pool as evidence: `15:02 UTC: 5xx 8.1% (40/495), p99 90 ms`."""
    rate = 100 * row.errors / row.requests if row.requests else 0.0
    return (f"{clock(row.time, seconds % 60 != 0)} UTC: 5xx {rate:.1f}% ({row.errors}/{row.requests}), "
            f"p99 {_ms(row.p99)}")


@dataclass
class Onset:
    """When the incident began, and the evidence."""

    time: datetime | None = None
    basis: str = ""  # errors | latency | alarm
    detail: str = ""


def find_onset(pools: pd.DataFrame, base: Baseline, deploy: datetime | None,
               alarms: list[tuple[datetime, str]] | None = None, tol: Tolerance = Tolerance(), seconds: int = 60,
               until: datetime | None = None) -> Onset:
    """The first pool after `deploy` that left the baseline (not before the deploy itself), or the first alarm
    after it, whichever is earlier; nothing after `until` (the opening). Without a deploy: the first alarm."""
    found: list[Onset] = []
    width = timedelta(seconds=seconds)
    if deploy is not None and not pools.empty:
        after = pools[[t + width > deploy and (until is None or t <= until) for t in pools["time"]]]
        flags = off_baseline(after, base, tol)
        bad = [(r, why) for r, why in zip(after.itertuples(), flags, strict=True) if why]
        if bad:
            row, why = bad[0]
            when = max(pd.Timestamp(row.time).to_pydatetime(), deploy)
            found.append(Onset(when, why, f"{pool_text(row, seconds)}; {base.describe()}"))
    for when, name in sorted(alarms or []):
        if (deploy is None or when >= deploy) and (until is None or when <= until):
            found.append(Onset(when, "alarm", f"{name} → ALARM {clock(when)} UTC"))
            break
    return min(found, key=lambda o: o.time) if found else Onset()


def impact_end(pools: pd.DataFrame, base: Baseline, since: datetime, tol: Tolerance = Tolerance(),
               seconds: int = 60) -> datetime | None:
    """The end of the last pool since `since` that is off the baseline: where the impact period ends."""
    width = timedelta(seconds=seconds)
    after = pools[[t + width > since for t in pools["time"]]] if not pools.empty else pools
    flags = off_baseline(after, base, tol)
    bad = [pd.Timestamp(r.time).to_pydatetime() for r, why in zip(after.itertuples(), flags, strict=True) if why]
    return bad[-1] + width if bad else None


def alarm_events(env: Environment, start: datetime, end: datetime, cloudwatch: Any = None) -> list[dict[str, Any]]:
    """State changes of the watched alarms (DescribeAlarmHistory), inside the window."""
    cw = cloudwatch or aws.client(env, "cloudwatch")
    names = {a["AlarmName"] for a in watched_alarms(env, cw)}
    out: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StartDate": start, "EndDate": end, "HistoryItemType": "StateUpdate",
                              "ScanBy": "TimestampAscending", "MaxRecords": 100}
    for _page in range(50):
        resp = aws.call(cw, "describe_alarm_history", **kwargs)
        for item in resp.get("AlarmHistoryItems", []):
            if item.get("AlarmName") not in names:
                continue
            try:
                hist = json.loads(item.get("HistoryData") or "{}")
            except json.JSONDecodeError:
                hist = {}
            old = (hist.get("oldState") or {}).get("stateValue", "?")
            new = (hist.get("newState") or {}).get("stateValue", "?")
            reason = (hist.get("newState") or {}).get("stateReason", item.get("HistorySummary", ""))
            out.append({"time": parse_time(item["Timestamp"]), "source": "CloudWatch",
                        "event": f"{item['AlarmName']}: {old} → {new}", "detail": str(reason)[:200]})
        token = resp.get("NextToken")
        if not token:
            break
        kwargs["NextToken"] = token
    return out


def find_start(env: Environment, inc: Incident, metrics: pd.DataFrame, *, cloudwatch: Any = None) -> Incident:
    """発生時刻 when START was not given: the onset after the suspected deploy (`find_onset`), else the opening.

    The baseline is the window before that deploy; pools follow `[incident]`; alarms are the watched
    alarms' history (unreadable history is left out, said in the log).
    """
    if inc.start_basis == "given":
        return inc
    try:
        history = alarm_events(env, inc.deploy or inc.window_start, inc.opened_at, cloudwatch)
    except ShipbookError as exc:
        log.warning("alarm history unavailable for the onset: %s", exc)
        history = []
    alarms = [(e["time"], e["event"].rsplit(": ", 1)[0]) for e in history if e["event"].endswith("→ ALARM")]
    width = pool_width(metrics, env.incident.pool_seconds)
    onset = find_onset(pooled(metrics, width, env.incident.min_requests), baseline(metrics, inc.deploy), inc.deploy,
                       alarms, tolerance(env), width, until=inc.opened_at)
    if onset.time is None or onset.time > inc.opened_at:
        return dataclasses.replace(inc, started=inc.opened_at, start_basis="opened", start_detail="")
    return dataclasses.replace(inc, started=onset.time, start_basis=onset.basis, start_detail=onset.detail)


# ------------------------------------------------------------------ impact


@dataclass
class Impact:
    """Symptoms from the start on: what a status report, the first notice and the decision table need.

    `requests`/`errors` cover the impact period (the start to the end of the last pool off the
    baseline, or the window's end); the peaks are the worst pool among those with `min_requests`.
    """

    window_start: str
    window_end: str
    requests: int = 0
    errors: int = 0
    error_rate_peak: float = 0.0  # the worst pool's 5xx rate (%)
    error_rate_now: float = 0.0
    p99_peak: float = float("nan")  # the worst pool's p99 (ms)
    p99_baseline: float = float("nan")
    p99_now: float = float("nan")
    endpoints: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)
    impact_start: str = ""
    impact_end: str = ""
    peak_time: str = ""  # the worst pool's start
    peak_requests: int = 0
    peak_errors: int = 0
    pool_seconds: int = 60
    min_requests: int = 0

    @property
    def error_rate(self) -> float:
        """The 5xx rate over the impact period (%)."""
        return 100 * self.errors / self.requests if self.requests else 0.0

    @classmethod
    def from_facts(cls, data: dict[str, Any]) -> Impact:
        """An impact as recorded in run.json (keys this version does not know are left out)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"window_start": "", "window_end": "", **{k: v for k, v in data.items() if k in known}})

    def period(self) -> str:
        if not self.impact_start:
            return ""
        return f"{clock(self.impact_start, False)}–{clock(self.impact_end, False)} UTC" if self.impact_end else \
            f"{clock(self.impact_start, False)} UTC–"

    def worst(self, lang: str = "ja") -> str:
        """The worst pool with its time and counts: `最悪の1分 15:02 UTC に 8.1%（40/495 件）`."""
        pool = pool_label(self.pool_seconds, lang)
        if not self.peak_time and not self.min_requests:  # recorded before pools: a peak without its counts
            return f"最大 {self.error_rate_peak:.1f}%" if lang == "ja" else f"up to {self.error_rate_peak:.1f}%"
        if not self.peak_time:
            return i18n.t("incident.no_worst", lang).format(pool=pool, min=self.min_requests)
        at = clock(self.peak_time, self.pool_seconds % 60 != 0)
        if lang == "ja":
            return f"最悪の{pool} {at} UTC に {self.error_rate_peak:.1f}%（{self.peak_errors}/{self.peak_requests} 件）"
        return f"worst {pool} {at} UTC: {self.error_rate_peak:.1f}% ({self.peak_errors}/{self.peak_requests})"

    def summary(self, lang: str = "ja") -> str:
        """One sentence for a status report's 影響範囲 / Impact: the overall rate first, then the worst pool."""
        eps = ", ".join(self.endpoints[:3]) or i18n.t("unknown", lang)
        rate, p99, base, span = f"{self.error_rate:.1f}%", _ms(self.p99_peak), _ms(self.p99_baseline), self.period()
        if lang == "ja":
            where = f"{span} の " if span else ""
            return (f"{where}5xx 率 {rate}（{self.errors}/{self.requests} 件）、{self.worst(lang)}。"
                    f"p99 最大 {p99}（平常時 {base}）。対象: {eps}")
        where = f" over {span}" if span else ""
        return (f"5xx rate {rate} ({self.errors}/{self.requests} requests){where}; {self.worst(lang)}. "
                f"p99 up to {p99} (baseline {base}). Endpoints: {eps}")

    def table(self, lang: str = "ja") -> pd.DataFrame:
        t = lambda k: i18n.t(k, lang)  # noqa: E731
        pool = pool_label(self.pool_seconds, lang)
        rows = [(t("incident.impact_period"), self.period() or "—"), (t("incident.requests"), self.requests),
                (t("incident.errors"), self.errors), (t("incident.error_rate"), f"{self.error_rate:.1f}"),
                (t("incident.worst").format(pool=pool), self.worst(lang)),
                (t("incident.error_rate") + " now", f"{self.error_rate_now:.1f}"),
                (f"p99 max ({pool})", _ms(self.p99_peak)), ("p99 baseline", _ms(self.p99_baseline)),
                ("p99 now", _ms(self.p99_now)),
                (t("incident.endpoint"), ", ".join(self.endpoints) or "—"),
                ("ALARM", ", ".join(self.alarms) or "—")]
        return pd.DataFrame([(k, str(v)) for k, v in rows], columns=[t("item"), t("value")])


def _ms(v: float) -> str:
    return "—" if v != v else f"{v:.0f} ms"  # NaN check without numpy


def measure(metrics: pd.DataFrame, endpoints_df: pd.DataFrame | None = None, alarms: list[str] | None = None,
            baseline_end: datetime | None = None, recent: int = 3, *, since: datetime | None = None,
            until: datetime | None = None, pool_seconds: int = 60, min_requests: int = 50) -> Impact:
    """Totals over [since, until), the worst pool (with `min_requests`) in it, the last `recent` periods, and
    the p99 before `baseline_end` (a deploy, the start). No single short period sets a headline figure."""
    alarms = list(alarms or [])
    if metrics.empty:
        return Impact("", "", alarms=alarms, pool_seconds=pool_seconds, min_requests=min_requests)
    times = metrics["time"]
    width = pool_width(metrics, pool_seconds)
    lo = since or times.iloc[0]
    end = times.iloc[-1] + timedelta(seconds=pool_width(metrics, 1))  # the last period's end
    hi = min(until, end) if until else end
    sel = metrics[(times >= lo) & (times < hi)]
    pools = pooled(metrics, width, min_requests)
    span = pools[[t + timedelta(seconds=width) > lo and t < hi for t in pools["time"]]] if not pools.empty else pools
    eligible = span[span["enough"]] if not span.empty else span
    worst = eligible.loc[eligible["error_rate"].idxmax()] if len(eligible) else None
    before = metrics[times < baseline_end] if baseline_end is not None else metrics.iloc[:0]
    tail = metrics.tail(recent) if recent else metrics
    req_tail = tail["requests"].sum()
    return Impact(
        window_start=audit_iso(times.iloc[0]), window_end=audit_iso(times.iloc[-1]),
        requests=int(round(sel["requests"].sum())), errors=int(round(sel["errors"].sum())),
        error_rate_peak=float(worst["error_rate"]) if worst is not None else 0.0,
        error_rate_now=round(100 * float(tail["errors"].sum()) / req_tail, 2) if req_tail else 0.0,
        p99_peak=float(eligible["p99"].max()) if len(eligible) else float("nan"),
        p99_baseline=float(before["p99"].median()) if len(before) else float("nan"),
        p99_now=float(tail["p99"].median()),
        endpoints=list(endpoints_df.iloc[:, 0]) if endpoints_df is not None and not endpoints_df.empty else [],
        alarms=alarms, impact_start=audit_iso(lo), impact_end=audit_iso(hi),
        peak_time=audit_iso(worst["time"]) if worst is not None else "",
        peak_requests=int(worst["requests"]) if worst is not None else 0,
        peak_errors=int(worst["errors"]) if worst is not None else 0,
        pool_seconds=width, min_requests=min_requests)


def deploy_start(env: Environment, inc: Incident, runs_root: Path | None = None) -> datetime | None:
    """When the suspected version's deploy started (its newest run before the incident), if known."""
    if inc.deploy is not None:
        return inc.deploy
    runs = [d for d in deployed_runs(env.name, runs_root) if d["version"] == inc.version
            and parse_time(d["facts"]["deploy_started"]) <= inc.started]
    return parse_time(runs[-1]["facts"]["deploy_started"]) if runs else None


def baseline_end(env: Environment, inc: Incident, runs_root: Path | None = None) -> datetime:
    """Where the baseline ends: the suspected deploy when it is inside the window, else the start."""
    deployed = deploy_start(env, inc, runs_root)
    return deployed if deployed and deployed >= inc.window_start else inc.started


def assess(env: Environment, inc: Incident, metrics: pd.DataFrame, endpoints_df: pd.DataFrame | None = None, *,
           runs_root: Path | None = None, cloudwatch: Any = None) -> Impact:
    """The impact from the start to the end of the last pool off the baseline (else to now), pooled as
    `[incident]` says, p99 against the window before the suspected deploy; alarms firing now."""
    base_end = baseline_end(env, inc, runs_root)
    cfg = env.incident
    width = pool_width(metrics, cfg.pool_seconds)
    end = None
    if not metrics.empty:
        end = impact_end(pooled(metrics, width, cfg.min_requests), baseline(metrics, base_end), inc.started,
                         tolerance(env), width)
    return measure(metrics, endpoints_df, alarms_in_alarm(env, cloudwatch), baseline_end=base_end,
                   since=inc.started, until=end, pool_seconds=cfg.pool_seconds, min_requests=cfg.min_requests)


def marks(env: Environment, inc: Incident, runs_root: Path | None = None) -> dict[str, datetime]:
    """The moments a chart marks: the suspected deploy, the start, the opening (if later), rollbacks since."""
    out: dict[str, datetime] = {}
    deployed = deploy_start(env, inc, runs_root)
    if deployed:
        out[f"deploy {inc.version}"] = deployed
    out[i18n.t("incident.start_mark", inc.lang)] = inc.started
    if inc.opened_at != inc.started:
        out[i18n.t("incident.opened_short", inc.lang)] = inc.opened_at
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


def first_notice(inc: Incident, impact: Impact, state: CurrentState | None = None) -> Notice:
    """A draft of the first notice to users: what, since when (the start), how much (the impact's pooled
    figures), what we do (or that it has recovered), next update (30 minutes after the opening)."""
    nxt = fmt(inc.opened_at + timedelta(minutes=30))
    eps = ", ".join(impact.endpoints[:3])
    lang = inc.lang
    how_much = ""
    if impact.requests:
        peak = f"{impact.error_rate_peak:.1f}%" if impact.peak_time else "—"
        how_much = i18n.t("incident.notice_rate", lang).format(rate=f"{impact.error_rate:.1f}%", peak=peak,
                                                               pool=pool_label(impact.pool_seconds, lang))
    recovered = state is not None and state.state == CONVERGED
    if lang == "ja":
        title = inc.title or "サービスの一部で障害が発生しています"
        affected = f"（対象: {eps}）" if eps else ""
        doing = i18n.t("incident.notice_recovered" if recovered else "incident.notice_working", "ja")
        return Notice(f"**{i18n.t('incident.notice_subject', 'ja')} {title}**\n\n"
                      f"{fmt(inc.started)} 頃より、サービスの一部で"
                      f"エラーが発生しやすい状態になっています{affected}。{how_much}\n\n"
                      f"{doing}ご迷惑をおかけし申し訳ございません。\n\n"
                      f"次回の更新は {nxt} 頃を予定しています。")
    title = inc.title or "Some requests are failing"
    affected = f" (affected: {eps})" if eps else ""
    doing = i18n.t("incident.notice_recovered" if recovered else "incident.notice_working", "en")
    return Notice(f"**{i18n.t('incident.notice_subject', 'en')} {title}**\n\n"
                  f"Since about {fmt(inc.started)}, some requests to the service may fail{affected}."
                  f"{' ' + how_much if how_much else ''}\n\n"
                  f"{doing} We apologise for the inconvenience.\n\n"
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
    """The seed's rollback criteria against what was measured (the worst pool): critical bug, performance,
    security."""
    yes, no, manual = (i18n.t(k, lang) for k in ("incident.yes", "incident.no", "incident.manual"))
    base = impact.p99_baseline
    limit = latency_threshold_ms or (base * LATENCY_FACTOR if base == base else float("nan"))
    bug = impact.error_rate_peak >= ERROR_RATE_CRITICAL or any("5xx" in a.lower() for a in impact.alarms)
    perf = (impact.p99_peak == impact.p99_peak and limit == limit and impact.p99_peak > limit) or \
        any("latency" in a.lower() for a in impact.alarms)
    at = f" ({clock(impact.peak_time, impact.pool_seconds % 60 != 0)} UTC)" if impact.peak_time else ""
    rows = [
        (i18n.t("incident.crit.bug", lang), f"{impact.error_rate_peak:.1f}%{at}", f"≥ {ERROR_RATE_CRITICAL:.1f}%",
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


# ------------------------------------------------------------------ the current state

NOT_ROLLED_BACK, ROLLING_BACK, ROLLED_BACK, CONVERGED = "not-rolled-back", "rolling-back", "rolled-back", "converged"


@dataclass
class RollbackInfo:
    """A rollback of a release, as its run record tells it."""

    version: str
    run_id: str
    status: str  # the rollback phase's: succeeded | failed | running | …
    tag: str = ""
    to: str = ""
    started: str = ""
    finished: str = ""

    def describe(self, version: bool = True) -> str:
        """`v1.0.0 → v0.9.0, run …, tag v1.0.1-rollback, 15:02:31–15:02:44 UTC` (without the version: `→ v0.9.0, …`)."""
        when = f"{clock(self.started)}–{clock(self.finished) if self.finished else ''} UTC"
        tag = f", tag {self.tag}" if self.tag else ""
        return f"{self.version + ' ' if version else ''}→ {self.to or '?'}, run {self.run_id}{tag}, {when}"


def rollback_of(env: str, version: str, since: datetime | None, runs_root: Path | None = None
                ) -> RollbackInfo | None:
    """The newest rollback of `version` (of any version when empty) that started at or after `since`.

    From the run records: a rollback phase (in the release's run or a `make rollback` run of its
    own), or the facts a rollback leaves (rolled_back_to, rollback_tag, rollback_started/finished,
    the record's status "rolled-back").
    """
    found = []
    for _p, d in audit.iter_records(runs_root or audit.RUNS_ROOT, env):
        if not d or (version and d.get("version") != version):
            continue
        f = d.get("facts") or {}
        rb = next((p for p in d.get("phases", []) if p.get("name") == "rollback"), None) or {}
        if not rb and d.get("status") != "rolled-back" and not f.get("rolled_back_to"):
            continue
        started = rb.get("started") or f.get("rollback_started") or ""
        if not started or (since is not None and parse_time(started) < since):
            continue
        status = rb.get("status") or ("succeeded" if d.get("status") == "rolled-back" else "unknown")
        found.append(RollbackInfo(d.get("version", ""), d.get("run_id", ""), status, f.get("rollback_tag", ""),
                                  f.get("rolled_back_to") or d.get("previous_version", ""),
                                  f.get("rollback_started") or started,
                                  f.get("rollback_finished") or rb.get("finished") or ""))
    return max(found, key=lambda r: parse_time(r.started)) if found else None


def served_now(env: Environment, get: Callable[..., Any] = requests.get) -> str:
    """The version the service answers at its version endpoint now ("" when it cannot be read)."""
    from shipbook.deploy.health import served_version

    if not env.app.public_url:
        return ""
    try:
        resp = get(env.app.public_url.rstrip("/") + env.app.version_path, timeout=5)
    except requests.RequestException as exc:
        log.warning("version endpoint unreachable: %s", type(exc).__name__)
        return ""
    return served_version(resp.text) if resp.status_code == 200 else ""


@dataclass
class Check:
    id: str
    verdict: str
    summary: str


def decide_state(suspected: str, served: str, rollback: RollbackInfo | None, checks: list[Check]
                 ) -> tuple[str, list[Check]]:
    """Where the incident stands, and what still fails. Pure.

    Rolled back: the suspected release's rollback succeeded (run records), or the service no
    longer serves it. Converged: rolled back, not serving the suspected version, and no
    convergence check fails. A running rollback is waited for; a failed one is no rollback.
    """
    from shipbook.deploy.health import same_version

    failing = [c for c in checks if c.verdict == "fail"]
    still = bool(served and suspected and same_version(served, suspected))
    if rollback is not None and rollback.status == "running":
        return ROLLING_BACK, failing
    done = (rollback is not None and rollback.status == "succeeded") or bool(served and suspected and not still)
    if not done:
        return NOT_ROLLED_BACK, failing
    if still:
        failing = [Check("current.version", "fail", f"{served} is still served"), *failing]
    return (ROLLED_BACK if failing else CONVERGED), failing


@dataclass
class CurrentState:
    """What already happened, read before anything is recommended: the version served now, the suspected
    release's rollback, the convergence checks re-run now, and `state` (decide_state)."""

    suspected: str
    served: str
    rollback: RollbackInfo | None
    checks: list[Check]
    state: str = NOT_ROLLED_BACK
    failing: list[Check] = field(default_factory=list)
    live: Impact | None = None
    live_metrics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=METRIC_COLUMNS), repr=False)
    live_minutes: float = 10

    @classmethod
    def of(cls, suspected: str, served: str, rollback: RollbackInfo | None, checks: list[Check],
           **observed: Any) -> CurrentState:
        state, failing = decide_state(suspected, served, rollback, checks)
        return cls(suspected, served, rollback, checks, state, failing, **observed)

    def _detail(self, lang: str) -> str:
        if self.rollback is not None:
            return self.rollback.describe(version=False)
        return i18n.t("incident.state.replaced", lang).format(served=self.served or "?")

    def sentence(self, lang: str = "ja") -> str:
        """The state in one sentence, for the notebook and the status report's 現在の状況."""
        if self.state == NOT_ROLLED_BACK and not self.suspected and self.rollback is None:
            return i18n.t("incident.state.no_rollback", lang)
        version = self.suspected or (self.rollback.version if self.rollback else "") or i18n.t("unknown", lang)
        failing = "; ".join(f"{c.id} ({c.summary})" for c in self.failing)
        key = {CONVERGED: "converged", ROLLED_BACK: "not_converged", ROLLING_BACK: "rolling_back"}.get(
            self.state, "not_rolled_back")
        text = i18n.t(f"incident.state.{key}", lang).format(version=version, detail=self._detail(lang),
                                                            failing=failing)
        if self.state == NOT_ROLLED_BACK and self.rollback is not None:
            text += f" (rollback run {self.rollback.run_id}: {self.rollback.status})"
        return text

    def live_sentence(self, lang: str = "ja") -> str:
        if self.live is None:
            return ""
        return i18n.t("incident.live", lang).format(minutes=f"{self.live_minutes:g}",
                                                    rate=f"{self.live.error_rate_now:.1f}%", p99=_ms(self.live.p99_now))

    def table(self, lang: str = "ja") -> pd.DataFrame:
        t = lambda k: i18n.t(k, lang)  # noqa: E731
        rb = f"{self.rollback.describe()}: {self.rollback.status}" if self.rollback else t("incident.state.none")
        checks = t("incident.state.all_pass") if not self.failing else t("incident.state.failing").format(
            ids=", ".join(c.id for c in self.failing))
        rows = [(t("incident.state.suspected"), self.suspected or t("unknown")),
                (t("incident.state.served"), self.served or t("unknown")),
                (t("incident.state.rollback"), rb), (t("incident.state.checks"), checks),
                (t("incident.state.live"), self.live_sentence(lang) or t("unknown")),
                (t("incident.state.verdict"), self.sentence(lang))]
        return pd.DataFrame(rows, columns=[t("item"), t("value")])

    def facts(self) -> dict[str, Any]:
        return {"state": self.state, "served": self.served, "rollback": asdict(self.rollback) if self.rollback else
                None, "failing": [c.id for c in self.failing]}


def observe(env: Environment, suspected: str, since: datetime | None, p99_baseline: float = float("nan"), *,
            minutes: float = 10, recent: int = 3, runs_root: Path | None = None,
            get: Callable[..., Any] = requests.get, http_get: Callable[..., Any] | None = None,
            cloudwatch: Any = None, elbv2: Any = None, now: Clock | None = None) -> CurrentState:
    """Read the current state: the rollback of `suspected` since `since` (run records), the version served,
    the last `minutes` of metrics and the convergence checks (unreadable metrics fail `verify.metrics`)."""
    t = (now or utcnow)()
    rollback = rollback_of(env.name, suspected, since, runs_root)
    live_metrics, live, unavailable = pd.DataFrame(columns=METRIC_COLUMNS), None, []
    try:
        live_metrics = fetch_metrics(env, t - timedelta(minutes=minutes), t, cloudwatch=cloudwatch, elbv2=elbv2)
        live = measure(live_metrics, alarms=alarms_in_alarm(env, cloudwatch), recent=recent)
    except ShipbookError as exc:
        log.warning("live metrics unavailable: %s", exc)
        unavailable = [Check("verify.metrics", "fail", f"live metrics unavailable: {str(exc)[:200]}")]
    checks = convergence_checks(env, Impact("", "", p99_baseline=p99_baseline), live, get=get, http_get=http_get)
    return CurrentState.of(suspected, served_now(env, get), rollback, checks + unavailable, live=live,
                           live_metrics=live_metrics, live_minutes=minutes)


def current_state(env: Environment, inc: Incident, metrics: pd.DataFrame, *, runs_root: Path | None = None,
                  get: Callable[..., Any] = requests.get, http_get: Callable[..., Any] | None = None,
                  cloudwatch: Any = None, elbv2: Any = None, now: Clock | None = None,
                  live_minutes: float = 10) -> CurrentState:
    """The incident notebook's current state: `observe` for the suspected release since its deploy, the p99
    baseline from the window before it."""
    base = baseline(metrics, baseline_end(env, inc, runs_root))
    return observe(env, inc.version, inc.deploy or inc.window_start, base.p99, minutes=live_minutes,
                   runs_root=runs_root, get=get, http_get=http_get, cloudwatch=cloudwatch, elbv2=elbv2, now=now)


@dataclass
class Advice:
    """What to do now, from the current state first, then the decision table."""

    kind: str  # rollback | watch (not rolled back) · wait · fix (rolled back, still failing) · monitor (converged)
    headline: str
    steps: list[str] = field(default_factory=list)
    command: str = ""

    def __str__(self) -> str:
        return "\n".join([self.headline, *(f"- {s}" for s in self.steps), *([self.command] if self.command else [])])


def advise(env: Environment, inc: Incident, state: CurrentState, decisions: pd.DataFrame) -> Advice:
    """Already rolled back and converged → monitor, status report, postmortem (never a second rollback);
    rolled back, still failing → what fails; rolling back → wait; not rolled back → the decision table."""
    lang = inc.lang
    t = lambda k: i18n.t(k, lang)  # noqa: E731
    status = f"{t('incident.step.status')}: shipbook status-report {inc.id} --env {env.name} --lang {lang}"
    pm = f"{t('incident.step.postmortem')}: make postmortem INCIDENT={inc.id} ENV={env.name}"
    rerun = f"{t('incident.step.rerun')}: make incident INCIDENT={inc.id} ENV={env.name}"
    if state.state == CONVERGED:
        return Advice("monitor", f"{t('incident.advice.monitor')}（{state.sentence(lang)}）" if lang == "ja" else
                      f"{t('incident.advice.monitor')} ({state.sentence(lang)})",
                      [t("incident.step.monitor"), status, pm])
    if state.state == ROLLED_BACK:
        failing = [f"{t('incident.step.failing')}: {c.id} — {c.summary}" for c in state.failing]
        return Advice("fix", t("incident.advice.fix"), [*failing, rerun, status])
    if state.state == ROLLING_BACK:
        return Advice("wait", f"{t('incident.advice.wait')}: {state.sentence(lang)}", [rerun, status])
    steps = []
    if state.rollback is not None:
        steps.append(t("incident.step.failed_rollback").format(run=state.rollback.run_id,
                                                               status=state.rollback.status))
    kind = "rollback" if recommendation(decisions, lang) == t("incident.recommend_rollback") else "watch"
    return Advice(kind, recommendation(decisions, lang), steps, rollback_command(env, inc))


# ------------------------------------------------------------------ convergence


def convergence_checks(env: Environment, impact: Impact, live: Impact | None, *,
                       get: Callable[..., Any] = requests.get, http_get: Callable[..., Any] | None = None
                       ) -> list[Check]:
    """The verify checks that say the service is back: health, version, smoke tests, errors, latency, alarms.

    `impact` gives the p99 baseline (before the suspected deploy), `live` the last minutes (None:
    unreadable, its three checks left out). The smoke tests are the environment's
    `[[verify.smoke]]` (全機能の動作確認), run against the version the service serves now (after
    a rollback, the previous one).
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
    if live is None:
        return out
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
           decision: str = "", state: CurrentState | None = None) -> phase_result.PhaseResult:
    """Tell the runner what the incident notebook found; it lands in the incident's run.json."""
    lines = [s.strip() for s in (prevention.splitlines() if isinstance(prevention, str) else prevention) if s.strip()]
    facts = {"incident_id": inc.id, "incident_title": inc.title, "incident_start": audit_iso(inc.started),
             "incident_opened": audit_iso(inc.opened_at), "incident_start_basis": inc.start_basis,
             "suspected_version": inc.version, "suspected_deploy": audit_iso(inc.deploy) if inc.deploy else "",
             "suspected_deploy_run": inc.deploy_run, "rollback_target": inc.previous_version, "incident_lang": inc.lang,
             "impact": asdict(impact), "decision": decision, "current_state": state.facts() if state else {},
             "prevention_items": lines}
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


def started_text(started: datetime, opened: datetime | None, lang: str = "ja") -> str:
    """発生時刻 as a report gives it: when it started, and when it was opened if that was later."""
    if opened is None or opened == started:
        return fmt(started)
    label = i18n.t("incident.opened_short", lang)
    return f"{fmt(started)}（{label} {fmt(opened)}）" if lang == "ja" else f"{fmt(started)} ({label} {fmt(opened)})"


def status_report(env: Environment, incident_id: str, lang: str = "", *, impact: str = "", current: str = "",
                  eta: str = "", next_update_minutes: float = 30, runs_root: Path | None = None,
                  now: Clock = utcnow, cloudwatch: Any = None, elbv2: Any = None,
                  get: Callable[..., Any] = requests.get, http_get: Callable[..., Any] | None = None,
                  redactor: Redactor | None = None) -> StatusReport:
    """Compose a status report (computed where not given), append it, timestamped, and return it.

    発生時刻 is the incident's start (and when it was opened); 影響範囲 the incident notebook's
    pooled impact unless given; 現在の状況, unless given, the current state read now: the
    suspected release's rollback, the version served, the convergence checks, the last 3 minutes.
    """
    lang = i18n.resolve_lang(lang, env.lang)
    rec = load_record(env.name, incident_id, runs_root)
    facts = rec.get("facts", {})
    started = parse_time(facts.get("incident_start") or rec.get("started"))
    opened = parse_time(facts["incident_opened"]) if facts.get("incident_opened") else None
    imp = facts.get("impact") if isinstance(facts.get("impact"), dict) else None
    t = now()
    if not impact:
        impact = Impact.from_facts(imp).summary(lang) if imp else i18n.t("unknown", lang)
    if not current:
        since = parse_time(facts["suspected_deploy"]) if facts.get("suspected_deploy") else started
        base = (imp or {}).get("p99_baseline")
        current = current_status(env, started, lang, t, suspected=facts.get("suspected_version", ""), since=since,
                                 p99_baseline=float(base) if isinstance(base, int | float) else float("nan"),
                                 runs_root=runs_root, cloudwatch=cloudwatch, elbv2=elbv2, get=get, http_get=http_get)
    rep = StatusReport(incident_id, lang, audit_iso(t), started_text(started, opened, lang), impact, current,
                       eta or i18n.t("to_fill", lang), fmt(t + timedelta(minutes=next_update_minutes)))
    _append_chained(incident_dir(env.name, incident_id, runs_root) / STATUS_FILE, asdict(rep),
                    redactor or Redactor(secretvalues.collect(env)))
    return rep


def current_status(env: Environment, started: datetime, lang: str, t: datetime, *, suspected: str = "",
                   since: datetime | None = None, p99_baseline: float = float("nan"), runs_root: Path | None = None,
                   cloudwatch: Any = None, elbv2: Any = None, get: Callable[..., Any] = requests.get,
                   http_get: Callable[..., Any] | None = None, minutes: float = 3) -> str:
    """現在の状況 in a few sentences: the current state (`observe`: the rollback of `suspected`, of any version
    when unknown, since `since`; the version served; what still fails), then the last `minutes`."""
    state = observe(env, suspected, since or started, p99_baseline, minutes=minutes, recent=0, runs_root=runs_root,
                    get=get, http_get=http_get, cloudwatch=cloudwatch, elbv2=elbv2, now=lambda: t)
    parts = [state.sentence(lang)]
    if state.served:
        parts.append(i18n.t("incident.serving", lang).format(served=state.served))
    if state.live is not None:
        parts.append(state.live_sentence(lang))
    if state.state == CONVERGED:
        parts.append(i18n.t("incident.monitoring", lang))
    return ("。" if lang == "ja" else "; ").join(parts)


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
    from shipbook import runs_index  # nbconvert loads only for a run
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
    runs_index.write_index(runs_root, redactor)
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
    """`shipbook incident`: a new incident id, then the incident notebook executed into its dir.

    The opening time is a parameter of its own, so a re-run keeps it; without `started` the
    notebook finds the onset (`find_start`) instead of taking the opening for the start.
    """
    opened = now()
    start = parse_time(started, opened) if started else None
    if version:
        versions.parse(version, "--version")
    incident_id = new_id(start or opened)
    params = {"incident_start": audit_iso(start) if start else "", "incident_opened": audit_iso(opened),
              "title": title, "lang": i18n.resolve_lang(lang, env.lang)}
    return run_standalone(env, "incident", incident_id, params, version=version, runs_root=runs_root,
                          progress=progress)
