"""The incident's chart: 5xx rate, requests and latency percentiles over time, with its moments marked."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from shipbook import charts_font, clock, i18n
from shipbook.config import Environment
from shipbook.incident.model import Incident, deploy_start, rollback_phases

COLORS = ["tab:blue", "tab:red", "tab:purple", "tab:green", "black", "tab:brown"]


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
        out[f"rollback {d['version']}"] = clock.parse_time(rb["started"])
    return out


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
    for i, (label, when) in enumerate((marks or {}).items()):
        if when is None:
            continue
        color = COLORS[i % len(COLORS)]
        for ax in (err_ax, lat_ax):
            ax.axvline(when, color=color, linestyle="--", linewidth=1)
        err_ax.annotate(label, (when, 1), xycoords=("data", "axes fraction"), xytext=(3, -12 - 11 * i),
                        textcoords="offset points", color=color, fontsize="small")
    for ax in (err_ax, lat_ax):
        ax.grid(alpha=0.3)
    lat_ax.set_xlabel("UTC")
    return fig
