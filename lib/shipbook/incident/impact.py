"""The impact: what a status report, the first notice and the decision table quote, from pooled windows.

Impact is measured in pooled windows (`[incident] pool_seconds`, only pools holding
`min_requests`), so a second with a handful of requests never sets a headline figure; it runs
from the start to the end of the last pool off the baseline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from shipbook import clock, i18n
from shipbook.config import Environment
from shipbook.incident.model import Incident, deploy_start
from shipbook.incident.onset import baseline, impact_end, tolerance
from shipbook.incident.pools import ms_text, pool_label, pool_width, pooled
from shipbook.incident.signals import alarms_in_alarm


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
    error_rate_baseline: float = 0.0  # the 5xx rate (%) before the baseline's end

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
        start = clock.time_of_day(self.impact_start, False)
        return f"{start}–{clock.time_of_day(self.impact_end, False)} UTC" if self.impact_end else f"{start} UTC–"

    def worst(self, lang: str = "ja") -> str:
        """The worst pool with its time and counts: `最悪の1分 15:02 UTC に 8.1%（40/495 件）`."""
        pool = pool_label(self.pool_seconds, lang)
        if not self.peak_time and not self.min_requests:  # recorded before pools: a peak without its counts
            return f"最大 {self.error_rate_peak:.1f}%" if lang == "ja" else f"up to {self.error_rate_peak:.1f}%"
        if not self.peak_time:
            return i18n.t("incident.no_worst", lang).format(pool=pool, min=self.min_requests)
        at = clock.time_of_day(self.peak_time, self.pool_seconds % 60 != 0)
        if lang == "ja":
            return f"最悪の{pool} {at} UTC に {self.error_rate_peak:.1f}%（{self.peak_errors}/{self.peak_requests} 件）"
        return f"worst {pool} {at} UTC: {self.error_rate_peak:.1f}% ({self.peak_errors}/{self.peak_requests})"

    def summary(self, lang: str = "ja") -> str:
        """One sentence for a status report's 影響範囲 / Impact: the overall rate first, then the worst pool."""
        eps = ", ".join(self.endpoints[:3]) or i18n.t("unknown", lang)
        rate, p99, base, span = f"{self.error_rate:.1f}%", ms_text(self.p99_peak), ms_text(self.p99_baseline), \
            self.period()
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
                (f"p99 max ({pool})", ms_text(self.p99_peak)), ("p99 baseline", ms_text(self.p99_baseline)),
                ("p99 now", ms_text(self.p99_now)),
                (t("incident.endpoint"), ", ".join(self.endpoints) or "—"),
                ("ALARM", ", ".join(self.alarms) or "—")]
        return pd.DataFrame([(k, str(v)) for k, v in rows], columns=[t("item"), t("value")])


def measure(metrics: pd.DataFrame, endpoints_df: pd.DataFrame | None = None, alarms: list[str] | None = None,
            baseline_end: datetime | None = None, recent: int = 3, *, since: datetime | None = None,
            until: datetime | None = None, pool_seconds: int = 60, min_requests: int = 50) -> Impact:
    """Totals over [since, until), the worst pool (with `min_requests`) in it, the last `recent` periods, and
    the baseline before `baseline_end` (a deploy, the start). No single short period sets a headline figure."""
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
    before = baseline(metrics, baseline_end)
    tail = metrics.tail(recent) if recent else metrics
    req_tail = tail["requests"].sum()
    return Impact(
        window_start=clock.iso(times.iloc[0]), window_end=clock.iso(times.iloc[-1]),
        requests=int(round(sel["requests"].sum())), errors=int(round(sel["errors"].sum())),
        error_rate_peak=float(worst["error_rate"]) if worst is not None else 0.0,
        error_rate_now=round(100 * float(tail["errors"].sum()) / req_tail, 2) if req_tail else 0.0,
        p99_peak=float(eligible["p99"].max()) if len(eligible) else float("nan"),
        p99_baseline=before.p99, p99_now=float(tail["p99"].median()),
        endpoints=list(endpoints_df.iloc[:, 0]) if endpoints_df is not None and not endpoints_df.empty else [],
        alarms=alarms, impact_start=clock.iso(lo), impact_end=clock.iso(hi),
        peak_time=clock.iso(worst["time"]) if worst is not None else "",
        peak_requests=int(worst["requests"]) if worst is not None else 0,
        peak_errors=int(worst["errors"]) if worst is not None else 0,
        pool_seconds=width, min_requests=min_requests, error_rate_baseline=round(before.rate, 2))


def baseline_end(env: Environment, inc: Incident, runs_root: Path | None = None) -> datetime:
    """Where the baseline ends: the suspected deploy when it is inside the window, else the start."""
    deployed = deploy_start(env, inc, runs_root)
    return deployed if deployed and deployed >= inc.window_start else inc.started


def assess(env: Environment, inc: Incident, metrics: pd.DataFrame, endpoints_df: pd.DataFrame | None = None, *,
           runs_root: Path | None = None, cloudwatch: Any = None) -> Impact:
    """The impact from the start to the end of the last pool off the baseline (else to now), pooled as
    `[incident]` says, against the window before the suspected deploy; alarms firing now."""
    base_end = baseline_end(env, inc, runs_root)
    cfg = env.incident
    width = pool_width(metrics, cfg.pool_seconds)
    end = None
    if not metrics.empty:
        end = impact_end(pooled(metrics, width, cfg.min_requests), baseline(metrics, base_end), inc.started,
                         tolerance(env), width)
    return measure(metrics, endpoints_df, alarms_in_alarm(env, cloudwatch), baseline_end=base_end,
                   since=inc.started, until=end, pool_seconds=cfg.pool_seconds, min_requests=cfg.min_requests)
