"""Everything observed during a deploy, in time order: one table and one chart.

The chart is what a stakeholder looks at in the rendered run: running tasks of the old and the
new deployment over time, health underneath, the deploy's start and finish marked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from shipbook.deploy.model import EcsSample, Event, HealthSample

TIMELINE_COLUMNS = ["time", "t+s", "stage", "item", "status", "detail", "url"]


@dataclass
class Timeline:
    """Observations, ECS samples and health samples; `listener` hears each event as it is added."""

    started: datetime | None = None
    finished: datetime | None = None
    events: list[Event] = field(default_factory=list)
    ecs: list[EcsSample] = field(default_factory=list)
    health: list[HealthSample] = field(default_factory=list)
    listener: Callable[[Event], None] | None = None

    def add(self, event: Event) -> None:
        self.events.append(event)
        if self.listener is not None:
            self.listener(event)

    def offset(self, t: datetime) -> float:
        return (t - self.started).total_seconds() if self.started else 0.0

    def frame(self) -> pd.DataFrame:
        """The timeline table: one row per observation, oldest first."""
        rows = [{"time": e.time.strftime("%Y-%m-%d %H:%M:%S"), "t+s": round(self.offset(e.time)),
                 "stage": e.stage, "item": e.item, "status": e.status, "detail": e.detail, "url": e.url,
                 "_t": e.time} for e in self.events]
        df = pd.DataFrame(rows, columns=[*TIMELINE_COLUMNS, "_t"])
        return df.sort_values("_t", kind="stable").drop(columns="_t").reset_index(drop=True)


def chart(timeline: Timeline, version: str = "", failed: str = "") -> Figure:
    """Running tasks (old vs new deployment) and health over time; deploy start/finish marked."""
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    tasks_ax, health_ax = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    if timeline.started is None:
        tasks_ax.text(0.5, 0.5, "dry run: nothing was deployed", ha="center", va="center",
                      transform=tasks_ax.transAxes)
        tasks_ax.set_axis_off()
        health_ax.set_axis_off()
        return fig
    if timeline.ecs:
        t = [timeline.offset(s.time) for s in timeline.ecs]
        tasks_ax.step(t, [s.desired for s in timeline.ecs], where="post", label="desired", color="black",
                      linestyle=":", linewidth=1, zorder=1)
        tasks_ax.step(t, [s.pending for s in timeline.ecs], where="post", label="pending", color="tab:orange",
                      linewidth=1, alpha=0.7, zorder=2)
        tasks_ax.step(t, [s.old_running for s in timeline.ecs], where="post", label="old deployment running",
                      color="tab:gray", linewidth=2.5, zorder=3)
        tasks_ax.step(t, [s.new_running for s in timeline.ecs], where="post",
                      label=f"new deployment running{f' ({version})' if version else ''}", color="tab:blue",
                      linewidth=2, zorder=4)
        tasks_ax.legend(loc="upper left", fontsize="small")
    else:
        tasks_ax.text(0.5, 0.5, "no ECS deployment observed", ha="center", va="center",
                      transform=tasks_ax.transAxes)
    tasks_ax.set_ylabel("tasks")
    tasks_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    health_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    tasks_ax.set_title(f"Deploy {version}".strip() + (f" — failed: {failed}" if failed else ""))
    if timeline.health:
        t = [timeline.offset(s.time) for s in timeline.health]
        healthy = [s.healthy_targets if s.healthy_targets is not None else float("nan") for s in timeline.health]
        health_ax.step(t, healthy, where="post", label="healthy targets", color="tab:green")
        ok_t = [x for x, s in zip(t, timeline.health, strict=True) if s.ok]
        bad_t = [x for x, s in zip(t, timeline.health, strict=True) if not s.ok]
        health_ax.scatter(ok_t, [0] * len(ok_t), marker="|", color="tab:green", s=120,
                          label=f"healthy and serving {version or 'the new version'}")
        health_ax.scatter(bad_t, [0] * len(bad_t), marker="|", color="tab:red", s=120,
                          label="not yet healthy / old version")
        health_ax.legend(loc="upper left", fontsize="small")
    health_ax.set_ylabel("health")
    health_ax.set_xlabel("seconds since the deploy started")
    for ax in (tasks_ax, health_ax):
        ax.axvline(0, color="tab:purple", linestyle="--", linewidth=1)
        if timeline.finished is not None:
            ax.axvline(timeline.offset(timeline.finished), color="tab:red" if failed else "tab:purple",
                       linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
    tasks_ax.annotate("start", (0, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                      textcoords="offset points", color="tab:purple", fontsize="small")
    if timeline.finished is not None:
        tasks_ax.annotate("finish", (timeline.offset(timeline.finished), 1), xycoords=("data", "axes fraction"),
                          xytext=(3, -12), textcoords="offset points", color="tab:purple", fontsize="small")
    return fig
