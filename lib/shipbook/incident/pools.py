"""Pooled windows: the incident's metrics summed per `[incident] pool_seconds`, as every headline figure reads them.

The pooling itself is verify's (`verify.metrics.pooled`, which a rollback's window reads too);
here it is shaped for the incident's tables: counts as integers, the 5xx rate in percent, p99 in ms.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from shipbook import clock
from shipbook.config import Environment

POOL_COLUMNS = ["time", "requests", "errors", "error_rate", "p99", "enough"]


def ms_text(v: float) -> str:
    """Milliseconds as a report writes them: `90 ms`, `—` when unknown (NaN)."""
    return "—" if v != v else f"{v:.0f} ms"  # NaN check without numpy


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
    """The periods pooled into windows of `seconds` (by the window each starts in), pools without periods left out.

    Counts are summed and the 5xx rate is the rate of the sums, so a pool of a few requests
    weighs what it holds; p99 is the request-weighted mean of the periods' p99. `enough`: the
    pool holds `min_requests`, the only pools a headline figure or an onset may come from.
    """
    from shipbook.verify.metrics import pooled as pool_periods  # the verify package loads its whole phase: when used

    if metrics.empty:
        return pd.DataFrame(columns=POOL_COLUMNS)
    frame = pd.DataFrame({"requests": metrics["requests"].to_numpy(), "errors_5xx": metrics["errors"].to_numpy(),
                          "latency_p99": metrics["p99"].to_numpy()},
                         index=pd.DatetimeIndex(pd.to_datetime(metrics["time"], utc=True), name="time"))
    pools = pool_periods(frame, seconds, min_requests)
    pools = pools[pools["periods"] > 0]
    requests_ = pools["requests"].round().astype(int)
    errors_ = pools["errors_5xx"].round().astype(int)
    rate = (100 * errors_ / requests_.where(requests_ > 0)).fillna(0.0).round(2)
    return pd.DataFrame({"time": [t.to_pydatetime() for t in pools.index], "requests": requests_.to_numpy(),
                         "errors": errors_.to_numpy(), "error_rate": rate.to_numpy(),
                         "p99": pools["latency_p99"].astype(float).round(1).to_numpy(),
                         "enough": pools["enough"].astype(bool).to_numpy()}, columns=POOL_COLUMNS)


def pools_table(env: Environment, metrics: pd.DataFrame) -> pd.DataFrame:
    """The metrics as the impact figures read them: one row per pool (`[incident] pool_seconds`)."""
    return pooled(metrics, pool_width(metrics, env.incident.pool_seconds), env.incident.min_requests)


def pool_text(row: Any, seconds: int) -> str:
    """One pool as evidence: `15:02 UTC: 5xx 8.1% (40/495), p99 90 ms`."""
    rate = 100 * row.errors / row.requests if row.requests else 0.0
    return (f"{clock.time_of_day(row.time, seconds % 60 != 0)} UTC: 5xx {rate:.1f}% ({row.errors}/{row.requests}), "
            f"p99 {ms_text(row.p99)}")
