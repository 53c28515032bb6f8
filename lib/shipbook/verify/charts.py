"""Charts of the two windows: one panel per judged metric, the deploy marked, the baseline range shaded.

What a stakeholder reads in the rendered run: the x axis is seconds since the deploy started
(the baseline is negative), the deploy's start and finish are dashed lines, the canary window
is tinted, and each panel shades the range the baseline spanned (its 5th–95th percentile) so
"after" can be read against "before" at a glance. Panels of failing metrics are titled in red.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from shipbook.verify.judge import FAIL, INCONCLUSIVE, Judgement
from shipbook.verify.metrics import Metrics

PANELS: tuple[tuple[str, str, str, float], ...] = (
    # (metric id in the judgement, column, y label, display scale)
    ("latency_p50", "latency_p50", "p50 latency (ms)", 1000.0),
    ("latency_p95", "latency_p95", "p95 latency (ms)", 1000.0),
    ("latency_p99", "latency_p99", "p99 latency (ms)", 1000.0),
    ("error_rate", "error_rate", "5xx rate (%)", 100.0),
    ("requests", "requests", "requests per period", 1.0),
    ("cpu", "cpu", "CPU (%)", 1.0),
    ("memory", "memory", "memory (%)", 1.0),
)
COLOURS = {FAIL: "tab:red", INCONCLUSIVE: "tab:orange"}


def with_rate(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with a per-period 5xx rate (missing 5xx counts are zeros when requests were counted)."""
    out = frame.copy()
    if "requests" in out and "errors_5xx" in out:
        req = out["requests"].where(out["requests"] > 0)
        out["error_rate"] = out["errors_5xx"].fillna(0.0).where(req.notna()) / req
    return out


def _offsets(index: pd.Index, origin: datetime) -> np.ndarray:
    return np.array([(t.to_pydatetime() - origin).total_seconds() for t in pd.DatetimeIndex(index)])


def chart(metrics: Metrics, judgement: Judgement | None, deploy_started: datetime | None,
          deploy_finished: datetime | None, title: str = "") -> Figure:
    """Baseline and canary windows per metric, the deploy marked, the baseline's range shaded."""
    fig = Figure(figsize=(11, 11), layout="constrained")
    axes = fig.subplots(4, 2, sharex=True).ravel()
    origin = deploy_started or metrics.baseline.window.end
    base, can = with_rate(metrics.baseline.frame), with_rate(metrics.canary.frame)
    cw = metrics.canary.window
    for ax, (metric, col, label, scale) in zip(axes, PANELS, strict=False):
        res = judgement.result(metric) if judgement else None
        verdict = res.verdict if res else ""
        for frame, colour, name in ((base, "tab:gray", "baseline"), (can, "tab:blue", "canary")):
            if col in frame and frame[col].notna().any():
                ax.plot(_offsets(frame.index, origin), frame[col].to_numpy(dtype=float) * scale, color=colour,
                        linewidth=1, label=name)
        if col in base and base[col].notna().sum() >= 2:
            lo, hi = np.nanpercentile(base[col].to_numpy(dtype=float) * scale, [5, 95])
            ax.axhspan(lo, hi, color="tab:gray", alpha=0.15, label="baseline range (p5–p95)")
        ax.axvspan((cw.start - origin).total_seconds(), (cw.end - origin).total_seconds(), color="tab:blue",
                   alpha=0.05, label="canary window")
        ax.axvline(0, color="tab:purple", linestyle="--", linewidth=1)
        if deploy_finished is not None:
            ax.axvline((deploy_finished - origin).total_seconds(), color="tab:purple", linestyle="--", linewidth=1)
        if not (col in base and base[col].notna().any()) and not (col in can and can[col].notna().any()):
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="tab:red")
        effect = f" — {verdict}" if verdict else ""
        ax.set_title(f"{label}{effect}", fontsize="medium", color=COLOURS.get(verdict, "black"))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", fontsize="x-small")
    axes[0].annotate("deploy", (0, 1), xycoords=("data", "axes fraction"), xytext=(2, -10),
                     textcoords="offset points", color="tab:purple", fontsize="x-small")
    for ax in axes[-2:]:
        ax.set_xlabel("seconds since the deploy started (dashed: start and finish)")
    note = axes[-1]
    note.set_axis_off()
    verdict = judgement.verdict if judgement else "not judged"
    lines = [f"verdict: {verdict}", f"baseline: {metrics.baseline.window.describe()}",
             f"canary: {cw.describe()}", f"GetMetricData calls: {metrics.calls}"]
    note.text(0.02, 0.95, "\n".join(lines), va="top", fontsize="small", transform=note.transAxes,
              color=COLOURS.get(verdict, "black"))
    fig.suptitle(title or "Baseline vs canary")
    return fig
