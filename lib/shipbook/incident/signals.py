"""What AWS shows of the service during an incident: metrics, log lines, alarms and ECS events, as frames.

Metrics and log lines are read by verify's readers (`verify.metrics.fetch_window`,
`verify.logs.events`), so an incident and a release look at the service the same way; here they
are shaped for people: 5xx rate in percent, latency in ms, log lines parsed, endpoints grouped.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from shipbook import aws, clock, i18n
from shipbook.config import Environment

log = logging.getLogger(__name__)

METRIC_COLUMNS = ["time", "requests", "errors", "error_rate", "p50", "p95", "p99"]
LOG_COLUMNS = ["time", "level", "method", "path", "status", "duration_ms", "message", "exception"]
EVENT_COLUMNS = ["time", "source", "event", "detail"]
# The incident's GetMetricData queries (verify.metrics.Query: id, metric, statistic of the target group); each
# goes by its own id in the call, so the request reads as what it asks for.
QUERIES = (("requests", "RequestCount", "Sum"), ("errors", "HTTPCode_Target_5XX_Count", "Sum"),
           ("p50", "TargetResponseTime", "p50"), ("p95", "TargetResponseTime", "p95"),
           ("p99", "TargetResponseTime", "p99"))


def auto_period(env: Environment, start: datetime, end: datetime, points: int = 240) -> int:
    """A period that keeps a chart readable: at least the metrics' own period (`[verify] period`: AWS's 60 s
    standard metrics, the twin's 1 s) and never under 10 s."""
    floor = max(int(env.verify.period), 10)
    span = max((end - start).total_seconds(), floor)
    step = max(floor, int(span // points))
    return int(-(-step // floor) * floor)


def fetch_metrics(env: Environment, start: datetime, end: datetime, period: int = 0, *, cloudwatch: Any = None,
                  elbv2: Any = None) -> pd.DataFrame:
    """Requests, 5xx, 5xx rate (%) and latency percentiles (ms) per period: one GetMetricData call (verify's
    reader, the incident's queries); a call that fails raises its AwsError."""
    from shipbook.verify import metrics as verify_metrics  # the verify package loads its whole phase: when used

    period = period or auto_period(env, start, end)
    queries = tuple(verify_metrics.Query(qid, verify_metrics.ALB, metric, stat, "alb", f"{metric} {stat}")
                    for qid, metric, stat in QUERIES)
    data = verify_metrics.fetch_window(cloudwatch or aws.client(env, "cloudwatch"),
                                       verify_metrics.Window("incident", start, end),
                                       verify_metrics.dimensions(env, elbv2), period, queries, named=True)
    if data.failure is not None:
        raise data.failure
    return metrics_frame({q.id: data.frame[q.id].dropna().to_dict() for q in queries})


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
               limit: int = 5000, max_scanned: int = 500_000, logs: Any = None) -> pd.DataFrame:
    """Log lines of the service's log group in the window (JSON lines parsed), oldest first: at most `limit`
    lines containing `pattern` (any case) and, with `errors_only`, errors only; at most `max_scanned` read."""
    from shipbook.verify.logs import events as log_events  # as in fetch_metrics

    rows: list[dict[str, Any]] = []
    events = log_events(logs or aws.client(env, "logs"), env.stack.log_group, start, end, page_size=limit)
    for scanned, ev in enumerate(events, 1):
        message = ev.get("message", "")
        row = parse_log_line(message, ev.get("timestamp", 0))
        if not (pattern and pattern.lower() not in message.lower()) and not (errors_only and not is_error(row)):
            rows.append(row)
        if len(rows) >= limit or scanned >= max_scanned:
            break
    df = pd.DataFrame(rows, columns=LOG_COLUMNS)
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


def alarm_events(env: Environment, start: datetime, end: datetime, cloudwatch: Any = None) -> list[dict[str, Any]]:
    """State changes of the watched alarms (DescribeAlarmHistory), inside the window."""
    cw = cloudwatch or aws.client(env, "cloudwatch")
    names = {a["AlarmName"] for a in watched_alarms(env, cw)}
    out: list[dict[str, Any]] = []
    for item in aws.collect(cw, "describe_alarm_history", "AlarmHistoryItems", StartDate=start, EndDate=end,
                            HistoryItemType="StateUpdate", ScanBy="TimestampAscending", MaxRecords=100):
        if item.get("AlarmName") not in names:
            continue
        try:
            hist = json.loads(item.get("HistoryData") or "{}")
        except json.JSONDecodeError:
            hist = {}
        old = (hist.get("oldState") or {}).get("stateValue", "?")
        new = (hist.get("newState") or {}).get("stateValue", "?")
        reason = (hist.get("newState") or {}).get("stateReason", item.get("HistorySummary", ""))
        out.append({"time": clock.parse_time(item["Timestamp"]), "source": "CloudWatch",
                    "event": f"{item['AlarmName']}: {old} → {new}", "detail": str(reason)[:200]})
    return out


def ecs_events(env: Environment, start: datetime, end: datetime, ecs: Any = None) -> pd.DataFrame:
    """The service's ECS events in the window (ECS keeps the last 100), oldest first."""
    client = ecs or aws.client(env, "ecs")
    svcs = aws.call(client, "describe_services", cluster=env.stack.cluster, services=[env.stack.service])
    events = (svcs.get("services") or [{}])[0].get("events", [])
    rows = [{"time": clock.parse_time(e["createdAt"]), "source": "ECS", "event": "service event",
             "detail": e.get("message", "")} for e in events]
    df = pd.DataFrame([r for r in rows if start <= r["time"] <= end], columns=EVENT_COLUMNS)
    return df.sort_values("time", kind="stable").reset_index(drop=True)
