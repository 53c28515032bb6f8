"""Watching several stages at once: one loop, backoff with jitter, deadlines, bounded calls.

Why one loop for all stages: the stages overlap (the workflow starts the stack update and the
ECS rollout, the rollout moves the targets), and the chart needs the rollout observed *while*
it happens. Each stage is polled when it is due; an unchanged answer lengthens its interval,
a change resets it. Clock, sleep and randomness are injected so tests never wait.

A change in one stage also brings the others' next poll forward (the workflow reaching its
deploy step means the stack and the service are about to move), so a rollout is seen from its
first seconds without polling fast all the time.

The person waiting is never left in silence: every observation is one line, and a summary
line is written at least every `heartbeat` seconds.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shipbook import aws
from shipbook.config import DeploySection
from shipbook.deploy.model import Event
from shipbook.deploy.timeline import Timeline
from shipbook.errors import ShipbookError
from shipbook.result import Check

log = logging.getLogger(__name__)

Reporter = Callable[[str], None]
Clock = Callable[[], datetime]
Sleep = Callable[[float], None]

TERMINAL = ("pass", "fail", "skip", "manual", "warn")


@dataclass(frozen=True)
class WatchSettings(DeploySection):
    """The environment's `[deploy]` deadlines and polling, plus the backoff shape."""

    backoff: float = 1.6
    jitter: float = 0.2
    max_errors: int = 5

    @classmethod
    def from_env(cls, env: Any) -> WatchSettings:
        """Settings from the environment's `[deploy]` section."""
        return cls(**dataclasses.asdict(env.deploy))


class Stage:
    """One watched stage. Subclasses implement `poll`, `status` and, when needed, `settle`."""

    id = ""
    name = ""

    def __init__(self, timeline: Timeline, deadline: float) -> None:
        self.timeline = timeline
        self.deadline = deadline
        self.verdict = ""
        self.summary = ""
        self.finished_at: datetime | None = None
        self.calls = 0
        self.errors = 0
        self.last_error = ""

    @property
    def done(self) -> bool:
        return bool(self.verdict)

    def finish(self, verdict: str, summary: str, t: datetime | None = None) -> None:
        if self.done:
            return
        self.verdict, self.summary = verdict, summary
        self.finished_at = t
        if t is not None:
            self.timeline.add(Event(t, self.name, "stage", verdict.upper(), summary))

    def event(self, t: datetime, item: str, status: str, detail: str = "", url: str = "") -> None:
        self.timeline.add(Event(t, self.name, item, status, detail, url))

    def call(self, cli: Any, operation: str, **params: Any) -> dict:
        """An AWS call through shipbook.aws, counted against the stage's budget."""
        self.calls += 1
        return aws.call(cli, operation, **params)

    def poll(self, t: datetime, stages: Mapping[str, Stage]) -> bool:
        """Look once; record what changed; finish when terminal. Returns whether anything changed."""
        raise NotImplementedError

    def settle(self, t: datetime, stages: Mapping[str, Stage]) -> None:
        """Finish from what the other stages concluded (e.g. nothing to wait for). Default: nothing."""

    def status(self) -> str:
        """One short line: what the stage looks like now."""
        return self.summary or "waiting"

    def expire(self, t: datetime, elapsed: float) -> None:
        self.finish("fail", f"no terminal state within {elapsed:.0f}s: last seen {self.status()}", t)

    def check(self) -> Check:
        return Check(self.id, self.verdict or "fail", self.summary or "not finished")


def finished(stages: Mapping[str, Stage], *ids: str) -> list[Stage]:
    return [stages[i] for i in ids if i in stages and stages[i].done]


def monitor(stages: list[Stage], timeline: Timeline, *, settings: WatchSettings, now: Clock, sleep: Sleep,
            report: Reporter, rng: random.Random | None = None) -> datetime:
    """Poll every stage until all are terminal or past their deadlines. Returns the finish time."""
    # Jitter spreads polls; it is not cryptography.
    rng = rng or random.Random()  # noqa: S311  # nosec B311
    started = timeline.started or now()
    by_id = {s.id: s for s in stages}
    due = {s.id: started for s in stages}
    interval = {s.id: settings.poll_initial for s in stages}
    last_line = now()

    def emit(line: str) -> None:
        nonlocal last_line
        report(line)
        last_line = now()

    timeline.listener = lambda e: emit(event_line(timeline, e))
    while True:
        _stop_after_failure(stages, now(), settings.after_failure)
        for s in stages:
            if s.done:
                continue
            t = now()
            s.settle(t, by_id)
            if s.done:
                continue
            elapsed = (t - started).total_seconds()
            if elapsed >= s.deadline:
                s.expire(t, elapsed)
                continue
            if t < due[s.id]:
                continue
            if s.calls >= settings.max_calls:
                s.finish("fail", f"gave up after {s.calls} API calls: last seen {s.status()}", t)
                continue
            changed = _poll_once(s, t, by_id, settings)
            interval[s.id] = settings.poll_initial if changed else min(settings.poll_max,
                                                                       interval[s.id] * settings.backoff)
            spread = interval[s.id] * settings.jitter
            due[s.id] = now() + _seconds(interval[s.id] + rng.uniform(-spread, spread))
            if changed or s.done:  # something moved: the other stages are likely to move soon too
                soon = now() + _seconds(settings.poll_initial)
                for other in stages:
                    if other is not s and not other.done and due[other.id] > soon:
                        due[other.id], interval[other.id] = soon, settings.poll_initial
        active = [s for s in stages if not s.done]
        t = now()
        if not active:
            return t
        if (t - last_line).total_seconds() >= settings.heartbeat:
            emit(progress_line(timeline, t, stages))
        wake = min(due[s.id] for s in active)
        limit = min(settings.heartbeat - (t - last_line).total_seconds(),
                    min(started.timestamp() + s.deadline for s in active) - t.timestamp())
        pause = max(0.05, min((wake - t).total_seconds(), limit))
        sleep(pause)


def _stop_after_failure(stages: list[Stage], t: datetime, grace: float) -> None:
    """Once a stage has failed the phase has failed: the others get `grace` seconds to conclude, then stop."""
    failed = [s for s in stages if s.verdict == "fail" and s.finished_at is not None]
    if not failed:
        return
    first = min(failed, key=lambda s: s.finished_at or t)
    if (t - (first.finished_at or t)).total_seconds() < grace:
        return
    for s in stages:
        if not s.done:
            s.finish("skip", f"stopped watching {grace:.0f}s after {first.id} failed; last seen {s.status()}", t)


def _poll_once(s: Stage, t: datetime, by_id: Mapping[str, Stage], settings: WatchSettings) -> bool:
    try:
        changed = s.poll(t, by_id)
    except ShipbookError as exc:  # an API answer we could not get: count it, keep watching
        s.errors += 1
        message = str(exc)
        if message != s.last_error:
            s.event(t, "error", "ERROR", message)
        s.last_error = message
        log.warning("%s: %s (%d in a row)", s.id, message, s.errors)
        if s.errors >= settings.max_errors:
            s.finish("fail", f"{s.errors} failed API calls in a row, last: {message}; last seen {s.status()}", t)
        return False
    s.errors = 0
    return changed


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=max(0.0, value))


def progress_line(timeline: Timeline, t: datetime, stages: list[Stage]) -> str:
    parts = [f"{s.name} {s.verdict.upper() if s.done else s.status()}" for s in stages]
    return f"{t:%H:%M:%S} +{timeline.offset(t):4.0f}s  waiting · " + " · ".join(parts)


def event_line(timeline: Timeline, e: Event) -> str:
    detail = f" — {e.detail}" if e.detail else ""
    return f"{e.time:%H:%M:%S} +{timeline.offset(e.time):4.0f}s  {e.stage:<9} {e.item}: {e.status}{detail}"
