"""Watch the ECS rollout: the release's deployment, its rollout state, task counts and service events.

The release's deployment is the first one that was not there before the push (the baseline).
It passes when its rolloutState is COMPLETED with every desired task running; it fails when
it is FAILED, when a later deployment goes back to the previous task definition (the circuit
breaker's rollback), or when it disappears without completing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from shipbook.deploy.model import ECS, WORKFLOW, EcsSample
from shipbook.deploy.poll import Stage
from shipbook.deploy.timeline import Timeline
from shipbook.errors import AwsError

DEPLOYMENT_COLUMNS = ["deployment", "status", "rollout", "task definition", "desired", "running", "pending",
                      "failed tasks", "created", "updated", "reason"]
EVENT_COLUMNS = ["time", "message"]


@dataclass
class EcsBaseline:
    """What the service looked like before the push: its deployments and event ids."""

    deployment_ids: set[str] = field(default_factory=set)
    task_definition: str = ""
    event_ids: set[str] = field(default_factory=set)


def describe_service(call: Any, ecs: Any, cluster: str, service: str) -> dict[str, Any]:
    """The service's description; a missing service is an AwsError like any failed call."""
    resp = call(ecs, "describe_services", cluster=cluster, services=[service])
    services = resp.get("services", [])
    if not services:
        reason = "; ".join(f.get("reason", "") for f in resp.get("failures", [])) or "not found"
        raise AwsError("ecs", "describe_services", "ServiceNotFound", f"{cluster}/{service}: {reason}")
    return services[0]


def baseline(call: Any, ecs: Any, cluster: str, service: str, since: datetime | None = None) -> EcsBaseline:
    """The service before the push. With `since` (a resumed deploy), only what existed before it."""
    svc = describe_service(call, ecs, cluster, service)
    deployments = svc.get("deployments", [])
    events = svc.get("events", [])
    if since is not None:
        deployments = [d for d in deployments if d.get("createdAt") and d["createdAt"] < since]
        events = [e for e in events if e.get("createdAt") and e["createdAt"] < since]
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    return EcsBaseline({d["id"] for d in deployments},
                       (primary or {}).get("taskDefinition", svc.get("taskDefinition", "")),
                       {e["id"] for e in events})


def short_td(arn: str) -> str:
    return arn.rsplit("/", 1)[-1] if arn else ""


class EcsStage(Stage):
    """deploy.ecs: the release's ECS deployment until COMPLETED (pass) or FAILED / rolled back (fail)."""

    id = ECS
    name = "ecs"

    def __init__(self, timeline: Timeline, deadline: float, ecs: Any, cluster: str, service: str,
                 base: EcsBaseline, appear_timeout: float = 120.0) -> None:
        super().__init__(timeline, deadline)
        self.ecs = ecs
        self.cluster = cluster
        self.service = service
        self.base = base
        self.appear_timeout = appear_timeout
        self.deployment_id = ""
        self.task_definition = ""
        self.deployments: dict[str, dict[str, Any]] = {}  # every deployment seen, by id, last state
        self.service_events: list[dict[str, Any]] = []
        self._states: dict[str, tuple[Any, ...]] = {}
        self._last: dict[str, Any] = {}

    def status(self) -> str:
        d = self._last
        if not d:
            return "waiting for the new deployment"
        return f"{d.get('rolloutState', d.get('status'))} {d.get('runningCount', 0)}/{d.get('desiredCount', 0)} " \
               f"running ({d.get('pendingCount', 0)} pending)"

    def settle(self, t: datetime, stages: Mapping[str, Stage]) -> None:
        if not (self.cluster and self.service):
            self.finish("skip", "no ECS service configured (stack.cluster / stack.service)", t)
            return
        wf = stages.get(WORKFLOW)
        if self.deployment_id or wf is None or not wf.done or wf.finished_at is None:
            return
        if wf.verdict == "fail":
            self.finish("skip", "no ECS deployment started: the workflow failed first", t)
        elif wf.verdict == "pass" and (t - wf.finished_at).total_seconds() >= self.appear_timeout:
            self.finish("fail", f"the workflow succeeded but no new deployment of {self.service} appeared "
                        f"within {self.appear_timeout:.0f}s", t)

    def poll(self, t: datetime, stages: Mapping[str, Stage]) -> bool:
        svc = describe_service(self.call, self.ecs, self.cluster, self.service)
        changed = self._record_events(svc, t)
        current = svc.get("deployments", [])
        for d in current:
            self.deployments[d["id"]] = d
        new = sorted((d for d in current if d["id"] not in self.base.deployment_ids),
                     key=lambda d: (d.get("createdAt") or t))
        if not self.deployment_id and new:
            ours = new[0]
            self.deployment_id, self.task_definition = ours["id"], ours.get("taskDefinition", "")
            self.event(ours.get("createdAt") or t, f"deployment {ours['id']}", "STARTED",
                       f"task definition {short_td(self.task_definition)} "
                       f"(was {short_td(self.base.task_definition)})")
            changed = True
        for d in current:
            state = (d.get("status"), d.get("rolloutState"), d.get("runningCount"), d.get("desiredCount"),
                     d.get("pendingCount"), d.get("failedTasks"))
            if self._states.get(d["id"]) != state and (d["id"] not in self.base.deployment_ids or
                                                       d["id"] in self._states):
                self.event(t, f"deployment {d['id']}", str(d.get("rolloutState") or
                                                                                   d.get("status")),
                           f"{short_td(d.get('taskDefinition', ''))}: {d.get('runningCount', 0)}/"
                           f"{d.get('desiredCount', 0)} running, {d.get('pendingCount', 0)} pending"
                           + (f", {d['failedTasks']} failed" if d.get("failedTasks") else "")
                           + (f" — {d['rolloutStateReason']}" if d.get("rolloutStateReason") else ""))
                changed = True
            self._states[d["id"]] = state
        ours_now = next((d for d in current if d["id"] == self.deployment_id), None)
        others = [d for d in current if d["id"] != self.deployment_id]
        self.timeline.ecs.append(EcsSample(
            t, int((ours_now or {}).get("runningCount", 0)), sum(int(d.get("runningCount", 0)) for d in others),
            int(svc.get("desiredCount", 0)), sum(int(d.get("pendingCount", 0)) for d in current),
            str((ours_now or {}).get("rolloutState", ""))))
        if not self.deployment_id:
            return changed
        self._last = ours_now or self._last
        self._judge(t, ours_now, new, svc)
        return changed or self.done

    def _record_events(self, svc: dict[str, Any], t: datetime) -> bool:
        fresh = [e for e in svc.get("events", []) if e["id"] not in self.base.event_ids]
        fresh.sort(key=lambda e: e.get("createdAt") or t)
        for e in fresh:
            self.base.event_ids.add(e["id"])
            self.service_events.append(e)
            self.event(e.get("createdAt") or t, "service event", "EVENT", e.get("message", ""))
        return bool(fresh)

    def _judge(self, t: datetime, ours: dict[str, Any] | None, new: list[dict[str, Any]], svc: dict[str, Any]) -> None:
        label = f"deployment {self.deployment_id} ({short_td(self.task_definition)})"
        rollback = next((d for d in new if d["id"] != self.deployment_id
                         and d.get("taskDefinition") != self.task_definition), None)
        if ours is not None and ours.get("rolloutState") == "FAILED":
            back = f"; ECS rolled back to {short_td(rollback.get('taskDefinition', ''))}" if rollback else ""
            self.finish("fail", f"{label} FAILED: {ours.get('rolloutStateReason') or 'no reason given'}"
                        f" ({ours.get('failedTasks', 0)} failed tasks){back}{self._last_event()}", t)
        elif rollback is not None:
            what = "a rollback to the previous task definition" \
                if rollback.get("taskDefinition") == self.base.task_definition else "another deployment"
            self.finish("fail", f"{label} was replaced by {rollback['id']} running "
                        f"{short_td(rollback.get('taskDefinition', ''))} ({what}){self._last_event()}", t)
        elif ours is None and self._steady_on_ours(svc):
            self.finish("pass", f"{label} done: the service runs {short_td(self.task_definition)} alone, "
                        f"{svc.get('runningCount', 0)}/{svc.get('desiredCount', 0)} tasks", t)
        elif ours is None:
            last = self.deployments.get(self.deployment_id, {})
            self.finish("fail", f"{label} disappeared before completing (last seen "
                        f"{last.get('rolloutState', last.get('status'))}){self._last_event()}", t)
        elif self._complete(ours, svc):
            self.finish("pass", f"{label} COMPLETED: {ours.get('runningCount')}/{ours.get('desiredCount')} tasks "
                        "running", t)

    def _steady_on_ours(self, svc: dict[str, Any]) -> bool:
        """Our deployment was folded away, but the service runs only our task definition, fully."""
        deployments = svc.get("deployments", [])
        return (len(deployments) == 1 and deployments[0].get("taskDefinition") == self.task_definition
                and deployments[0].get("rolloutState", "COMPLETED") == "COMPLETED"
                and int(deployments[0].get("runningCount", 0)) >= int(deployments[0].get("desiredCount", 0)) > 0)

    @staticmethod
    def _complete(ours: dict[str, Any], svc: dict[str, Any]) -> bool:
        running_all = int(ours.get("runningCount", 0)) >= int(ours.get("desiredCount", 0)) > 0
        if "rolloutState" in ours:
            return ours["rolloutState"] == "COMPLETED" and running_all
        # Without rollout states (no ECS deployment circuit breaker data): the new deployment alone, all running.
        return running_all and len(svc.get("deployments", [])) == 1 and not ours.get("pendingCount")

    def _last_event(self) -> str:
        return f"; last service event: {self.service_events[-1].get('message', '')}" if self.service_events else ""

    def deployments_table(self) -> pd.DataFrame:
        """Every deployment seen (the previous ones and the release's), last known state."""
        rows = [{"deployment": d["id"] + (" (this release)" if d["id"] == self.deployment_id else ""),
                 "status": d.get("status"), "rollout": d.get("rolloutState", ""),
                 "task definition": short_td(d.get("taskDefinition", "")), "desired": d.get("desiredCount"),
                 "running": d.get("runningCount"), "pending": d.get("pendingCount"),
                 "failed tasks": d.get("failedTasks", 0), "created": d.get("createdAt"),
                 "updated": d.get("updatedAt"), "reason": d.get("rolloutStateReason", "")}
                for d in self.deployments.values()]
        return pd.DataFrame(rows, columns=DEPLOYMENT_COLUMNS)

    def events_table(self) -> pd.DataFrame:
        """Service events since the deploy started, oldest first."""
        rows = [{"time": e.get("createdAt"), "message": e.get("message", "")} for e in self.service_events]
        return pd.DataFrame(rows, columns=EVENT_COLUMNS)
