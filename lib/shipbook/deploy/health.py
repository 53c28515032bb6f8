"""Watch health: the target group's target health and the public health and version URLs.

The stage passes once the rollout has completed and, `streak` polls in a row, every target is
healthy (draining ones are leaving, that is fine), the health URL answers 200 and the version
URL answers the release's version. If the rollout failed, it records what is being served
(usually the old version, still healthy) and ends as not reached.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import requests

from shipbook import aws
from shipbook.deploy.model import ECS, HEALTH, HealthSample
from shipbook.deploy.poll import Stage
from shipbook.deploy.timeline import Timeline
from shipbook.errors import ShipbookError

NOT_READY = ("initial", "unhealthy", "unavailable", "unused")
SAMPLE_COLUMNS = ["time", "healthy targets", "targets", "health status", "served version", "ok"]


@dataclass
class Probe:
    """One GET of a URL: status (None when unreachable), body excerpt, error, seconds."""

    url: str
    status: int | None
    body: str = ""
    error: str = ""
    seconds: float = 0.0

    def describe(self) -> str:
        return f"{self.status}" if self.status is not None else f"unreachable ({self.error})"


def http_probe(url: str, timeout: float = 5.0) -> Probe:
    """GET `url` once, no redirects followed, never raising."""
    start = time.monotonic()
    try:
        resp = requests.get(url, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        return Probe(url, None, error=type(exc).__name__, seconds=time.monotonic() - start)
    return Probe(url, resp.status_code, resp.text[:2000], seconds=time.monotonic() - start)


def served_version(body: str) -> str:
    """The version a version endpoint answers: JSON `{"version": ...}` or plain text."""
    text = body.strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text.splitlines()[0][:64] if text else ""
    if isinstance(data, dict):
        return str(data.get("version", ""))[:64]
    return str(data)[:64]


def same_version(served: str, version: str) -> bool:
    return bool(served) and served.removeprefix("v") == version.removeprefix("v")


def join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


class HealthStage(Stage):
    """deploy.health: target health and the health/version URLs until healthy on the new version."""

    id = HEALTH
    name = "health"

    def __init__(self, timeline: Timeline, deadline: float, elbv2: Any, target_group: str, base_url: str,
                 health_path: str, version_path: str, version: str, *, wait_for_ecs: bool = True,
                 streak: int = 2, probe: Callable[[str], Probe] = http_probe) -> None:
        super().__init__(timeline, deadline)
        self.elbv2 = elbv2
        self.target_group = target_group
        self.base_url = base_url
        self.health_path = health_path
        self.version_path = version_path
        self.version = version
        self.wait_for_ecs = wait_for_ecs
        self.streak = max(1, streak)
        self.probe = probe
        self.good = 0
        self._tg_arn = target_group if target_group.startswith("arn:") else ""
        self.targets: Counter[str] | None = None
        self.health: Probe | None = None
        self.served = ""
        self._seen: dict[str, str] = {}

    def status(self) -> str:
        parts = []
        if self.targets is not None:
            parts.append(f"targets {self.targets.get('healthy', 0)}/{sum(self.targets.values())} healthy")
        if self.health is not None:
            parts.append(f"{self.health_path} {self.health.describe()}")
        if self.base_url and self.version_path:
            parts.append(f"{self.version_path} {self.served or '?'}")
        return ", ".join(parts) or "waiting"

    def settle(self, t: datetime, stages: Mapping[str, Stage]) -> None:
        if not self.target_group and not self.base_url:
            self.finish("skip", "nothing to watch (stack.target_group and app.public_url are empty)", t)
            return
        ecs = stages.get(ECS)
        if not self.wait_for_ecs or ecs is None or not ecs.done or ecs.verdict == "pass":
            return
        try:  # one last look: what is serving now that the rollout did not complete
            self.poll(t, {})
        except ShipbookError as exc:
            self.event(t, "error", "ERROR", str(exc))
        serving = f"{self.version_path} answers {self.served}" if self.served else self.status()
        self.finish("skip", f"not reached: {ecs.id} {ecs.verdict}; now {serving} ({self.status()})", t)

    def poll(self, t: datetime, stages: Mapping[str, Stage]) -> bool:
        changed = False
        if self.target_group:
            self.targets = self._target_states()
            summary = ", ".join(f"{n} {s}" for s, n in sorted(self.targets.items())) or "no targets registered"
            changed |= self._note(t, "targets", summary)
        if self.base_url:
            self.health = self.probe(join(self.base_url, self.health_path))
            changed |= self._note(t, self.health_path, self.health.describe())
            if self.version_path:
                answer = self.probe(join(self.base_url, self.version_path))
                self.served = served_version(answer.body) if answer.status == 200 else ""
                changed |= self._note(t, self.version_path, self.served or answer.describe())
        ok = self._ok()
        self.good = self.good + 1 if ok else 0
        healthy = self.targets.get("healthy", 0) if self.targets is not None else None
        self.timeline.health.append(HealthSample(
            t, healthy, sum(self.targets.values()) if self.targets is not None else None,
            self.health.status if self.health else None, self.served, ok))
        ecs = stages.get(ECS)
        ecs_ready = not self.wait_for_ecs or (ecs is not None and ecs.verdict == "pass")
        if self.good >= self.streak and ecs_ready:
            self.finish("pass", f"healthy on {self.version}: {self.status()}", t)
            changed = True
        return changed

    def _ok(self) -> bool:
        if self.targets is not None:
            if self.targets.get("healthy", 0) < 1 or any(self.targets.get(s, 0) for s in NOT_READY):
                return False
        if self.health is not None and self.health.status != 200:
            return False
        return not (self.base_url and self.version_path and not same_version(self.served, self.version))

    def _note(self, t: datetime, item: str, value: str) -> bool:
        if self._seen.get(item) == value:
            return False
        self._seen[item] = value
        self.event(t, item, value)
        return True

    def _target_states(self) -> Counter[str]:
        if not self._tg_arn:
            self._tg_arn = aws.target_group(self.elbv2, self.target_group, self.call)["TargetGroupArn"]
        resp = self.call(self.elbv2, "describe_target_health", TargetGroupArn=self._tg_arn)
        return Counter(d["TargetHealth"]["State"] for d in resp.get("TargetHealthDescriptions", []))

    def expire(self, t: datetime, elapsed: float) -> None:
        self.finish("fail", f"not healthy on {self.version} within {elapsed:.0f}s: {self.status()}", t)

    def table(self) -> pd.DataFrame:
        """Health samples over time."""
        rows = [{"time": s.time, "healthy targets": s.healthy_targets, "targets": s.total_targets,
                 "health status": s.health_status, "served version": s.served_version, "ok": s.ok}
                for s in self.timeline.health]
        return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)
