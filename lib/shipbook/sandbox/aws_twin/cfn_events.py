"""Per-resource CloudFormation stack events, as a stack-events table expects them.

moto 5.2.5 records only the stack's own events (CREATE_IN_PROGRESS ... UPDATE_COMPLETE), so a
deploy watcher listing DescribeStackEvents sees no resource rows. Here CreateStack and
UpdateStack also record, for every resource created, updated or deleted, the IN_PROGRESS and
COMPLETE events with the resource's logical id, physical id and type, between the stack's own
start and end events; an update ends with UPDATE_COMPLETE_CLEANUP_IN_PROGRESS as on AWS.
"""

from __future__ import annotations

import logging
from typing import Any

from moto.cloudformation.models import Event, Stack

log = logging.getLogger(__name__)

_original_create_resources = Stack.create_resources
_original_update = Stack.update


def _resource_event(stack: Stack, logical_id: str, status: str, reason: str | None = None,
                    removed: dict[str, Any] | None = None) -> Event:
    resource = stack.resource_map._parsed_resources.get(logical_id)
    physical = getattr(resource, "physical_resource_id", None) if resource is not None else None
    body = (removed or stack.template_dict.get("Resources", {})).get(logical_id, {})
    return Event(
        stack_id=stack.stack_id,
        stack_name=stack.name,
        logical_resource_id=logical_id,
        physical_resource_id=str(physical or ""),
        resource_type=str(body.get("Type", "")),
        resource_status=status,
        resource_status_reason=reason,
        resource_properties=None,
    )


def _insert_before_last(stack: Stack, events: list[Event]) -> None:
    """Place resource events before the stack's closing event (moto has just appended it)."""
    closing = stack.events.pop() if stack.events else None
    stack.events.extend(events)
    if closing is not None:
        stack.events.append(closing)


def _create_resources(self: Stack) -> None:
    _original_create_resources(self)
    events = []
    for logical_id in self.template_dict.get("Resources", {}):
        if logical_id not in self.resource_map._parsed_resources:
            continue
        events.append(_resource_event(self, logical_id, "CREATE_IN_PROGRESS"))
        events.append(_resource_event(self, logical_id, "CREATE_IN_PROGRESS", "Resource creation Initiated"))
        events.append(_resource_event(self, logical_id, "CREATE_COMPLETE"))
    _insert_before_last(self, events)


def _update(self: Stack, template: str, role_arn: str | None = None, parameters: dict[str, Any] | None = None,
            tags: dict[str, str] | None = None) -> None:
    diff = self.resource_map.build_resource_diff(self.parse_template(template), parameters)
    before = dict(self.template_dict.get("Resources", {}))
    _original_update(self, template, role_arn, parameters=parameters, tags=tags)
    events = []
    for logical_id in diff["Add"]:
        events += [_resource_event(self, logical_id, "CREATE_IN_PROGRESS"),
                   _resource_event(self, logical_id, "CREATE_COMPLETE")]
    for logical_id in diff["Modify"]:
        events += [_resource_event(self, logical_id, "UPDATE_IN_PROGRESS"),
                   _resource_event(self, logical_id, "UPDATE_COMPLETE")]
    events.append(Event(stack_id=self.stack_id, stack_name=self.name, logical_resource_id=self.name,
                        physical_resource_id=self.stack_id, resource_type="AWS::CloudFormation::Stack",
                        resource_status="UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", resource_status_reason=None,
                        resource_properties=None))
    for logical_id in diff["Remove"]:
        events += [_resource_event(self, logical_id, "DELETE_IN_PROGRESS", removed=before),
                   _resource_event(self, logical_id, "DELETE_COMPLETE", removed=before)]
    _insert_before_last(self, events)
    log.info("stack %s updated: %d added, %d modified, %d removed", self.name, len(diff["Add"]),
             len(diff["Modify"]), len(diff["Remove"]))


def install() -> None:
    """Patch moto's stack creation and update to record resource events."""
    Stack.create_resources = _create_resources  # type: ignore[method-assign]
    Stack.update = _update  # type: ignore[method-assign]
