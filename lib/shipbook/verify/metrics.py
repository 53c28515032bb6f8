"""CloudWatch metrics of a window: ONE batched GetMetricData call per window, for every metric.

Why one call: the baseline and the canary must be read the same way at the same moment of
the API's life, and a call per metric multiplies throttling and partial failures. Every
query's own StatusCode is kept: a query that failed is recorded in `errors` (and the judge
treats it as no data), never read as zeros — "an analysis whose measurements all errored"
must not look like a calm release.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from shipbook import aws
from shipbook.config import Environment
from shipbook.errors import AwsError

log = logging.getLogger(__name__)

ALB = "AWS/ApplicationELB"
ECS = "AWS/ECS"
MAX_PAGES = 10


@dataclass(frozen=True)
class Query:
    """One metric of the batch: the column it fills, where it lives and which statistic."""

    id: str
    namespace: str
    metric: str
    stat: str
    dimensions: str  # "alb" or "ecs"
    label: str


QUERIES: tuple[Query, ...] = (
    Query("latency_p50", ALB, "TargetResponseTime", "p50", "alb", "TargetResponseTime p50"),
    Query("latency_p95", ALB, "TargetResponseTime", "p95", "alb", "TargetResponseTime p95"),
    Query("latency_p99", ALB, "TargetResponseTime", "p99", "alb", "TargetResponseTime p99"),
    Query("errors_5xx", ALB, "HTTPCode_Target_5XX_Count", "Sum", "alb", "HTTPCode_Target_5XX_Count Sum"),
    Query("requests", ALB, "RequestCount", "Sum", "alb", "RequestCount Sum"),
    Query("cpu", ECS, "CPUUtilization", "Average", "ecs", "CPUUtilization Average"),
    Query("memory", ECS, "MemoryUtilization", "Average", "ecs", "MemoryUtilization Average"),
)


@dataclass(frozen=True)
class Window:
    """A time range [start, end) to read, aligned to the period."""

    name: str
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def describe(self) -> str:
        return f"{self.name} {self.start:%H:%M:%S}–{self.end:%H:%M:%S} UTC ({self.seconds:.0f}s)"


def align(t: datetime, period: int, up: bool = False) -> datetime:
    """`t` floored (or ceiled) to a multiple of `period` seconds, in UTC."""
    t = t.astimezone(UTC)
    epoch = int(t.timestamp())
    rest = epoch % period
    if up and (rest or t.microsecond):
        epoch += period - rest
    else:
        epoch -= rest
    return datetime.fromtimestamp(epoch, tz=UTC)


@dataclass
class WindowData:
    """What one window returned: one row per period, one column per query id; per-query errors."""

    window: Window
    frame: pd.DataFrame
    errors: dict[str, str] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    messages: list[str] = field(default_factory=list)
    failure: AwsError | None = None  # the call's error, when the call itself failed

    def table(self) -> pd.DataFrame:
        """Per query: status, datapoints, and the error when there is one."""
        rows = [{"window": self.window.name, "metric": q.label, "column": q.id,
                 "status": self.status.get(q.id, "—"),
                 "datapoints": int(self.frame[q.id].notna().sum()) if q.id in self.frame else 0,
                 "error": self.errors.get(q.id, "")} for q in QUERIES]
        return pd.DataFrame(rows)


@dataclass(frozen=True)
class Dimensions:
    """CloudWatch dimensions of the load balancer / target group and of the ECS service."""

    alb: tuple[tuple[str, str], ...]
    ecs: tuple[tuple[str, str], ...]

    def of(self, kind: str) -> list[dict[str, str]]:
        pairs = self.alb if kind == "alb" else self.ecs
        return [{"Name": k, "Value": v} for k, v in pairs]


def dimensions(env: Environment, elbv2: Any = None) -> Dimensions:
    """The dimension values CloudWatch uses: ARN suffixes of the load balancer and target group."""
    tg = aws.target_group(elbv2 or aws.client(env, "elbv2"), env.stack.target_group)
    tg_value = tg["TargetGroupArn"].split(":", 5)[5]
    lbs = tg.get("LoadBalancerArns") or []
    alb: tuple[tuple[str, str], ...] = (("TargetGroup", tg_value),)
    if lbs:
        alb = (("LoadBalancer", lbs[0].split(":", 5)[5].removeprefix("loadbalancer/")), *alb)
    ecs = (("ClusterName", env.stack.cluster), ("ServiceName", env.stack.service))
    return Dimensions(alb, ecs)


def query_id(i: int, q: Query, named: bool = False) -> str:
    """The Id a query goes by in the call (and CloudWatch answers with): `q<i>`, or with `named` its own id."""
    return q.id if named else f"q{i}"


def batch(dims: Dimensions, period: int, queries: tuple[Query, ...] = QUERIES, named: bool = False
          ) -> list[dict[str, Any]]:
    """The MetricDataQueries of one call: every metric of the window."""
    return [{"Id": query_id(i, q, named), "Label": q.id, "ReturnData": True,
             "MetricStat": {"Metric": {"Namespace": q.namespace, "MetricName": q.metric,
                                       "Dimensions": dims.of(q.dimensions)},
                            "Period": period, "Stat": q.stat}}
            for i, q in enumerate(queries)]


def fetch_window(cloudwatch: Any, window: Window, dims: Dimensions, period: int,
                 queries: tuple[Query, ...] = QUERIES, call: Callable[..., dict] = aws.call,
                 named: bool = False) -> WindowData:
    """One GetMetricData call for all `queries` over `window` (more pages only if AWS says so).

    A failed call is recorded (`errors`, and the error itself in `failure`), not raised: the verify
    judge reads it as no data; a caller that must stop re-raises `failure`.
    """
    data = WindowData(window, pd.DataFrame(columns=[q.id for q in queries], dtype=float))
    by_id = {query_id(i, q, named): q for i, q in enumerate(queries)}
    series: dict[str, dict[datetime, float]] = {q.id: {} for q in queries}
    next_page = ""
    request: dict[str, Any] = {"MetricDataQueries": batch(dims, period, queries, named), "StartTime": window.start,
                               "EndTime": window.end, "ScanBy": "TimestampAscending"}
    for _ in range(MAX_PAGES):
        if next_page:
            request["NextToken"] = next_page
        try:
            resp = call(cloudwatch, "get_metric_data", **request)
        except AwsError as exc:
            data.calls += 1
            data.failure = exc
            for q in queries:
                data.errors[q.id] = f"{exc.code}: {exc}"
                data.status[q.id] = "Error"
            log.warning("GetMetricData for the %s window failed: %s", window.name, exc)
            return data
        data.calls += 1
        for res in resp.get("MetricDataResults", []):
            q = by_id.get(res.get("Id", ""))
            if q is None:
                continue
            status = res.get("StatusCode", "Complete")
            data.status[q.id] = status
            for t, v in zip(res.get("Timestamps", []), res.get("Values", []), strict=False):
                series[q.id][t.astimezone(UTC)] = float(v)
            if status not in ("Complete", "PartialData"):
                msgs = "; ".join(m.get("Value", "") for m in res.get("Messages", []))
                data.errors[q.id] = f"{status}{': ' + msgs if msgs else ''}"
        data.messages += [f"{m.get('Code')}: {m.get('Value')}" for m in resp.get("Messages", [])]
        next_page = resp.get("NextToken", "")
        if not next_page:
            break
    for q in queries:
        if data.status.get(q.id) == "PartialData" and q.id not in data.errors:
            data.errors[q.id] = f"PartialData after {MAX_PAGES} pages"
        if q.id not in data.status:
            data.status[q.id] = "Missing"
            data.errors[q.id] = "no result for this query in the response"
    index = sorted({t for s in series.values() for t in s})
    frame = pd.DataFrame({q.id: [series[q.id].get(t, float("nan")) for t in index] for q in queries},
                         index=pd.DatetimeIndex(index, name="time"))
    data.frame = frame
    log.info("%s: %d periods, %d call(s), errors: %s", window.describe(), len(frame), data.calls,
             ", ".join(data.errors) or "none")
    return data


@dataclass
class Metrics:
    """Both windows' data."""

    baseline: WindowData
    canary: WindowData
    period: int

    @property
    def calls(self) -> int:
        return self.baseline.calls + self.canary.calls

    @property
    def errors(self) -> dict[str, str]:
        """Per column, the failure of either window's query."""
        out: dict[str, str] = {}
        for d in (self.baseline, self.canary):
            for k, v in d.errors.items():
                out.setdefault(k, f"{d.window.name}: {v}")
        return out

    def table(self) -> pd.DataFrame:
        return pd.concat([self.baseline.table(), self.canary.table()], ignore_index=True)


def fetch(env: Environment, baseline: Window, canary: Window, period: int, cloudwatch: Any = None,
          elbv2: Any = None) -> Metrics:
    """Both windows: two GetMetricData calls in all (one each)."""
    cloudwatch = cloudwatch or aws.client(env, "cloudwatch")
    dims = dimensions(env, elbv2)
    return Metrics(fetch_window(cloudwatch, baseline, dims, period), fetch_window(cloudwatch, canary, dims, period),
                   period)


def window_before(end: datetime, seconds: int, period: int, name: str = "baseline") -> Window:
    end = align(end, period)
    return Window(name, end - timedelta(seconds=seconds), end)


def window_after(start: datetime, seconds: int, period: int, name: str = "canary") -> Window:
    start = align(start, period, up=True)
    return Window(name, start, start + timedelta(seconds=seconds))


def pooled(frame: pd.DataFrame, seconds: int, min_requests: int) -> pd.DataFrame:
    """Requests and 5xx summed over pools of `seconds` (aligned to the epoch), with the 5xx rate of each pool.

    Why pooled: a period of a second (the sandbox's) or a quiet minute holds a handful of
    requests, and one of them failing reads as a 20% or 100% "rate". A rate is given only for
    pools with at least `min_requests` requests (`enough`); the others keep their counts and a NaN
    rate. With a `latency_p99` column, a pool's p99 is the request-weighted mean of its periods'
    p99 (exact when a period is the pool; their plain mean when none has requests). `periods`: how
    many periods a pool holds (0 for a gap). An incident's impact and onset and a rollback's window
    read these.
    """
    latency = "latency_p99" in frame
    cols = ["requests", "errors_5xx", "rate", "enough", "periods", *(["latency_p99"] if latency else [])]
    if frame.empty or "requests" not in frame:
        return pd.DataFrame(columns=cols, index=pd.DatetimeIndex([], name="time"), dtype=float)
    req = frame["requests"].astype(float).fillna(0.0)
    data = pd.DataFrame({"requests": req, "errors_5xx": frame["errors_5xx"].astype(float).fillna(0.0)})
    if latency:
        p99 = frame["latency_p99"].astype(float)
        data["w"], data["wr"] = (p99 * req).where(p99.notna(), 0.0), req.where(p99.notna(), 0.0)
    pools = data.resample(f"{int(seconds)}s", origin="epoch")
    out = pools.sum()
    out["periods"] = pools.size()
    out["enough"] = out["requests"] >= min_requests
    out["rate"] = (out["errors_5xx"] / out["requests"]).where(out["enough"] & (out["requests"] > 0))
    if latency:
        plain = frame["latency_p99"].astype(float).resample(f"{int(seconds)}s", origin="epoch").mean()
        out["latency_p99"] = (out["w"] / out["wr"].where(out["wr"] > 0)).fillna(plain)
    out.index.name = "time"
    return out[cols]
