"""The baseline and departures from it: when the incident began (発生時刻) and when its impact ended.

One rule says whether the service is "off the baseline" (`errors_off`, `latency_off`), built from
the verify phase's own tolerances (`[verify] error_rate_tolerance`, `alpha`, `latency_floor_ms`):
the onset, the end of the impact and the convergence checks all read it. Pure over frames, but
`find_start`, which reads the alarm history.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from shipbook import clock
from shipbook.config import Environment
from shipbook.errors import ShipbookError
from shipbook.incident.model import Incident
from shipbook.incident.pools import ms_text, pool_text, pool_width, pooled
from shipbook.incident.signals import alarm_events

log = logging.getLogger(__name__)

LATENCY_FACTOR = 2.0  # p99 this many times the baseline: "パフォーマンスが著しく低下"


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
        return f"baseline 5xx {self.rate:.1f}%, p99 {ms_text(self.p99)}"


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
    """How far the service may stray from the baseline before it counts as the incident."""

    error_points: float = 0.5  # 5xx rate: percentage points above the baseline's …
    alpha: float = 0.01  # … beyond chance (one-sided binomial test, when the counts are known)
    latency_factor: float = LATENCY_FACTOR  # p99 this many times the baseline's …
    latency_floor_ms: float = 5.0  # … and this much above it


def tolerance(env: Environment) -> Tolerance:
    """The verify phase's own tolerances: the incident holds the service to what a release is held to."""
    v = env.verify
    return Tolerance(100 * v.error_rate_tolerance, v.alpha, LATENCY_FACTOR, v.latency_floor_ms)


def errors_off(rate: float, base_rate: float, tol: Tolerance, counts: tuple[int, int] | None = None) -> bool:
    """A 5xx rate (%) above the baseline's by more than `tol.error_points`; with (errors, requests), beyond chance."""
    if rate <= base_rate + tol.error_points:
        return False
    if counts is None:
        return True
    from scipy import stats  # only when counts are judged

    errors, requests = counts
    return bool(stats.binom.sf(errors - 1, requests, min(base_rate / 100 + tol.error_points / 100, 1.0)) < tol.alpha)


def latency_off(p99: float, base_p99: float, tol: Tolerance) -> bool:
    """A p99 (ms) `tol.latency_factor` times the baseline's and `tol.latency_floor_ms` above it (unknown: not off)."""
    return base_p99 == base_p99 and p99 == p99 and p99 > base_p99 * tol.latency_factor \
        and p99 - base_p99 > tol.latency_floor_ms


def off_baseline(pools: pd.DataFrame, base: Baseline, tol: Tolerance = Tolerance()) -> list[str]:
    """Per pool: "errors" or "latency" when it left the baseline, else "" (pools without enough requests: "")."""
    out = []
    for r in pools.itertuples():
        why = ""
        if r.enough and r.requests:
            if errors_off(100 * r.errors / r.requests, base.rate, tol, (r.errors, r.requests)):
                why = "errors"
            elif latency_off(r.p99, base.p99, tol):
                why = "latency"
        out.append(why)
    return out


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
            found.append(Onset(when, "alarm", f"{name} → ALARM {clock.time_of_day(when)} UTC"))
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
