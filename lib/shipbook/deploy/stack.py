"""Watch the CloudFormation stack: its events since the deploy started, until a terminal status.

Events are taken newer than the newest event seen before the push (by id), so a clock skew
between this machine and AWS cannot hide or duplicate one. A deploy that changes nothing in
the stack is fine: once the workflow (or the rollout) is over and the stack is not updating,
the stage ends with "no stack update".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from shipbook import aws
from shipbook.deploy.model import CLOUDFORMATION, ECS, WORKFLOW
from shipbook.deploy.poll import Stage, finished
from shipbook.deploy.timeline import Timeline
from shipbook.errors import AwsError

STACK_TYPE = "AWS::CloudFormation::Stack"
GOOD = ("UPDATE_COMPLETE", "CREATE_COMPLETE", "IMPORT_COMPLETE")
EVENT_COLUMNS = ["time", "resource", "type", "status", "reason"]


def is_bad(status: str) -> bool:
    return "ROLLBACK" in status or status.endswith("_FAILED")


def newest_event_id(cfn: Any, stack: str, call: Any) -> str:
    """The id of the stack's newest event (before the deploy), '' when there is none."""
    events = call(cfn, "describe_stack_events", StackName=stack).get("StackEvents", [])
    return events[0]["EventId"] if events else ""


class StackStage(Stage):
    """deploy.cloudformation: stack events until UPDATE_COMPLETE (pass) or a rollback/failure (fail)."""

    id = CLOUDFORMATION
    name = "stack"

    def __init__(self, timeline: Timeline, deadline: float, cfn: Any, stack: str, baseline_event: str = "",
                 since: datetime | None = None) -> None:
        super().__init__(timeline, deadline)
        self.cfn = cfn
        self.stack = stack
        self.baseline_event = baseline_event
        self.since = since
        self.stack_status = ""
        self.events: list[dict[str, Any]] = []
        self._ids: set[str] = set()
        self.updated = False  # a stack-level event since the deploy started
        self.last_poll: datetime | None = None

    def status(self) -> str:
        return self.stack_status or "waiting"

    def settle(self, t: datetime, stages: Mapping[str, Stage]) -> None:
        if not self.stack:
            self.finish("skip", "no stack configured (stack.name)", t)
            return
        if self.updated or self.stack_status.endswith("_IN_PROGRESS") or not self.stack_status:
            return
        over = [s for s in finished(stages, WORKFLOW, ECS)
                if s.finished_at is not None and self.last_poll is not None and self.last_poll >= s.finished_at]
        if any(s.verdict == "fail" for s in over if s.id == WORKFLOW):
            self.finish("skip", f"no stack update: the workflow failed first (stack {self.stack_status})", t)
        elif any(s.verdict in ("pass", "fail") for s in over):
            self.finish("pass", f"no stack update in this deploy (stack {self.stack} {self.stack_status})", t)

    def poll(self, t: datetime, stages: Mapping[str, Stage]) -> bool:
        fresh = self._new_events()  # events first: the status read after them is at least as new
        for ev in fresh:
            self._record(ev, t)
        stacks = self.call(self.cfn, "describe_stacks", StackName=self.stack).get("Stacks", [])
        status = stacks[0].get("StackStatus", "") if stacks else "MISSING"
        changed = bool(fresh) or status != self.stack_status
        self.stack_status = status
        self.last_poll = t
        if self.updated and not status.endswith("_IN_PROGRESS") and not self._stack_states()[-1].endswith(
                "_IN_PROGRESS"):
            self._conclude(t)
            changed = True
        return changed

    def _new_events(self) -> list[dict[str, Any]]:
        """Events newer than the baseline, oldest first (the API lists newest first: reading stops at the
        baseline, so a long history is not read)."""
        out: list[dict[str, Any]] = []
        for page in aws.pages(self.cfn, "describe_stack_events", StackName=self.stack):
            self.calls += 1  # each page is a call against the stage's budget
            for ev in page.get("StackEvents", []):
                if ev["EventId"] == self.baseline_event or ev["EventId"] in self._ids:
                    return list(reversed(out))
                if self.since is not None and not self.baseline_event and ev["Timestamp"] < self.since:
                    return list(reversed(out))
                out.append(ev)
                if len(out) > aws.MAX_ITEMS:
                    raise AwsError("cloudformation", "describe_stack_events", "TooManyItems",
                                   f"more than {aws.MAX_ITEMS} new events since the baseline")
        return list(reversed(out))

    def _record(self, ev: dict[str, Any], t: datetime) -> None:
        self._ids.add(ev["EventId"])
        self.events.append(ev)
        status = ev.get("ResourceStatus", "")
        if ev.get("ResourceType") == STACK_TYPE and ev.get("LogicalResourceId") == self.stack:
            self.updated = True
        self.event(ev.get("Timestamp") or t, f"{ev.get('LogicalResourceId')} ({ev.get('ResourceType')})", status,
                   ev.get("ResourceStatusReason", "") or "")

    def _stack_states(self) -> list[str]:
        """The stack's own statuses since the deploy started, oldest first."""
        return [e.get("ResourceStatus", "") for e in self.events
                if e.get("ResourceType") == STACK_TYPE and e.get("LogicalResourceId") == self.stack]

    def _conclude(self, t: datetime) -> None:
        if self.stack_status in GOOD and not any(is_bad(s) for s in self._stack_states()):
            resources = len({e.get("LogicalResourceId") for e in self.events} - {self.stack})
            self.finish("pass", f"stack {self.stack} {self.stack_status} ({resources} resource(s) changed, "
                        f"{len(self.events)} events)", t)
            return
        cause = next((e for e in self.events if e.get("ResourceStatus", "").endswith("_FAILED")
                      and e.get("LogicalResourceId") != self.stack), None)
        why = f": {cause['LogicalResourceId']} {cause['ResourceStatus']} — {cause.get('ResourceStatusReason', '')}" \
            if cause else ""
        self.finish("fail", f"stack {self.stack} {self.stack_status}{why}", t)

    def table(self) -> pd.DataFrame:
        """The stack events seen since the deploy started, oldest first."""
        rows = [{"time": e.get("Timestamp"), "resource": e.get("LogicalResourceId"), "type": e.get("ResourceType"),
                 "status": e.get("ResourceStatus"), "reason": e.get("ResourceStatusReason", "")} for e in self.events]
        return pd.DataFrame(rows, columns=EVENT_COLUMNS)
