"""The rollback's own window: did the rollback add errors of its own?

From the rollback's first change to the end of its re-verification, requests and 5xx are read
from CloudWatch, pooled as an incident's impact is (`[incident] pool_seconds`, only pools with
`min_requests`), and
each pool is held against the failing release's own rate before the rollback. A pool counts as
extra errors when its rate is above the failing rate plus `[verify] error_rate_tolerance` by
more than chance explains (one-sided binomial test at `[verify] alpha`, Bonferroni over the
pools): a rollback that puts the previous code on a schema it does not know shows up here.
`assess` is pure; `measure` reads CloudWatch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from shipbook import aws
from shipbook.config import Environment
from shipbook.errors import ShipbookError
from shipbook.result import Check
from shipbook.verify import metrics

log = logging.getLogger(__name__)

WINDOW = "rollback.window"
COUNTS = tuple(q for q in metrics.QUERIES if q.id in ("requests", "errors_5xx"))


def _rate(errors: float, requests: float) -> float | None:
    return errors / requests if requests else None


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


@dataclass
class RollbackWindow:
    """The rollback's window against the failing release's rate before it."""

    start: datetime
    end: datetime
    pool_seconds: int
    requests: int = 0
    errors: int = 0
    failing_requests: int = 0
    failing_errors: int = 0
    worst_at: datetime | None = None
    worst_requests: int = 0
    worst_errors: int = 0
    extra: list[dict[str, Any]] = field(default_factory=list)  # pools above the failing rate, beyond chance
    error: str = ""

    @property
    def rate(self) -> float | None:
        return _rate(self.errors, self.requests)

    @property
    def failing_rate(self) -> float | None:
        return _rate(self.failing_errors, self.failing_requests)

    @property
    def worst_rate(self) -> float | None:
        return _rate(self.worst_errors, self.worst_requests)

    def worst_text(self) -> str:
        if self.worst_at is None:
            return "no pool with enough requests"
        return (f"{self.worst_at:%H:%M:%S} UTC (+{self.pool_seconds}s): {_pct(self.worst_rate)} "
                f"({self.worst_errors}/{self.worst_requests})")

    def check(self) -> Check:
        if self.error:
            return Check(WINDOW, "warn", f"the rollback's window could not be measured: {self.error}")
        head = (f"{self.start:%H:%M:%S}–{self.end:%H:%M:%S} UTC: {self.requests} requests, {self.errors} 5xx "
                f"({_pct(self.rate)}); worst {self.pool_seconds}s from {self.worst_text()}; the failing release "
                f"before it: {_pct(self.failing_rate)} ({self.failing_errors}/{self.failing_requests})")
        if self.extra:
            first = self.extra[0]
            return Check(WINDOW, "warn", f"{head} — the rollback ADDED errors: {len(self.extra)} pool(s) above the "
                                         f"failing rate, first at {first['time']:%H:%M:%S} ({_pct(first['rate'])})")
        return Check(WINDOW, "pass", f"{head} — no extra errors")

    def table(self) -> pd.DataFrame:
        rows = [("window", f"{self.start:%Y-%m-%d %H:%M:%S} – {self.end:%H:%M:%S} UTC (the rollback's first change "
                           "to the end of its verification)"),
                ("requests", str(self.requests)), ("5xx", f"{self.errors} ({_pct(self.rate)})"),
                (f"worst {self.pool_seconds}s", self.worst_text()),
                ("failing release before the rollback", f"{_pct(self.failing_rate)} "
                                                        f"({self.failing_errors}/{self.failing_requests})"),
                ("pools above the failing rate", ", ".join(f"{e['time']:%H:%M:%S} {_pct(e['rate'])} "
                                                           f"({e['errors']}/{e['requests']})" for e in self.extra)
                 or "none"),
                ("verdict", f"{self.check().verdict}: {self.check().summary}")]
        return pd.DataFrame(rows, columns=["item", "value"])

    def facts(self) -> dict[str, Any]:
        return {"rollback_window": {
            "start": self.start.isoformat(), "end": self.end.isoformat(), "pool_seconds": self.pool_seconds,
            "requests": self.requests, "errors_5xx": self.errors,
            "worst_at": self.worst_at.isoformat() if self.worst_at else None, "worst_requests": self.worst_requests,
            "worst_errors": self.worst_errors, "worst_rate": self.worst_rate, "failing_requests": self.failing_requests,
            "failing_errors": self.failing_errors, "failing_rate": self.failing_rate, "extra_pools": len(self.extra),
            "error": self.error}}


def assess(during: pd.DataFrame, failing: pd.DataFrame, *, start: datetime, end: datetime, pool_seconds: int,
           min_requests: int, tolerance: float, alpha: float) -> RollbackWindow:
    """`during` / `failing`: per-period `requests` and `errors_5xx` of the rollback's window and of the failing
    release before it."""
    pools = metrics.pooled(during, pool_seconds, min_requests)
    w = RollbackWindow(start, end, pool_seconds, int(pools["requests"].sum()), int(pools["errors_5xx"].sum()))
    fail = metrics.pooled(failing, pool_seconds, 1)
    w.failing_requests, w.failing_errors = int(fail["requests"].sum()), int(fail["errors_5xx"].sum())
    rated = pools.dropna(subset=["rate"])
    if rated.empty:
        return w
    worst = rated["rate"].idxmax()
    w.worst_at = worst.to_pydatetime()
    w.worst_requests, w.worst_errors = int(rated.at[worst, "requests"]), int(rated.at[worst, "errors_5xx"])
    from scipy import stats  # ~1 s to import: only when pools are judged

    ceiling = min(1.0, (w.failing_rate or 0.0) + tolerance)
    level = alpha / len(rated)
    for t, row in rated.iterrows():
        n, k = int(row["requests"]), int(row["errors_5xx"])
        if row["rate"] > ceiling and stats.binomtest(k, n, ceiling, alternative="greater").pvalue < level:
            w.extra.append({"time": t.to_pydatetime(), "rate": row["rate"], "errors": k, "requests": n})
    return w


def measure(env: Environment, *, start: datetime, end: datetime, failing_start: datetime, cloudwatch: Any = None,
            dims: metrics.Dimensions | None = None) -> RollbackWindow:
    """Read both windows (one GetMetricData call each) and assess them."""
    period = env.verify.period
    pool = env.incident
    try:
        cloudwatch = cloudwatch or aws.client(env, "cloudwatch")
        dims = dims or metrics.dimensions(env)
    except ShipbookError as exc:
        return RollbackWindow(start, end, pool.pool_seconds, error=str(exc))
    during = metrics.fetch_window(cloudwatch, metrics.Window("rollback", metrics.align(start, period),
                                                             metrics.align(end, period, up=True)), dims, period,
                                  COUNTS)
    failing = metrics.fetch_window(cloudwatch, metrics.Window("failing", metrics.align(failing_start, period),
                                                              metrics.align(start, period)), dims, period, COUNTS)
    errors = {**during.errors, **failing.errors}
    if errors:
        return RollbackWindow(start, end, pool.pool_seconds, error="; ".join(f"{k}: {v}" for k, v in errors.items()))
    return assess(during.frame, failing.frame, start=start, end=end, pool_seconds=pool.pool_seconds,
                  min_requests=pool.min_requests, tolerance=env.verify.error_rate_tolerance,
                  alpha=env.verify.alpha)
