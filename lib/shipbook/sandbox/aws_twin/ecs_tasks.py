"""One-off ECS tasks (RunTask) that really run, as production runs `manage.py migrate …`.

moto 5.2.5 (measured): RunTask of a Fargate task definition whose container gives no `memory`
fails with HTTP 500 (None added to an int); and its tasks move RUNNING → STOPPED with exit code 0
as soon as they are described — a reverse migration would "succeed" without running.

Here a task's resources come from the task level when its containers give none, and a task
started by RunTask is `PROVISIONING` until the runtime reports it: `RUNNING` once its process
started, `STOPPED` with the container's exit code and reason when it ended. StopTask sets the
desired status; the runtime stops the process and reports it stopped (exit code 143, SIGTERM).

Control API (see `control`): `GET /_sandbox/ecs/tasks` lists the one-off tasks not yet stopped;
`POST /_sandbox/ecs/task-state` `{"taskArn", "lastStatus": "RUNNING"|"STOPPED", "exitCode", "reason"}`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from moto.ecs.models import EC2ContainerServiceBackend, Task, TaskDefinition

from .state import TWIN

log = logging.getLogger(__name__)

_ONE_OFF: dict[str, Task] = {}
_original_run_task = EC2ContainerServiceBackend.run_task
_original_stop_task = EC2ContainerServiceBackend.stop_task
_STATES = ("RUNNING", "STOPPED")


class UnknownTask(LookupError):
    pass


def _number(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _requirements(task_definition: TaskDefinition) -> dict[str, Any]:
    """CPU, memory and host ports of a task; Fargate's task-level cpu/memory when containers give none."""
    containers = task_definition.container_definitions
    cpu = sum(_number(c.get("cpu", c.get("Cpu"))) for c in containers) or _number(task_definition.cpu)
    memory = sum(_number(c.get("memory") or c.get("Memory") or c.get("memoryReservation")
                         or c.get("MemoryReservation")) for c in containers) or _number(task_definition.memory)
    ports = [m.get("hostPort", m.get("HostPort")) for c in containers
             for m in c.get("portMappings", c.get("PortMappings", [])) if "hostPort" in m or "HostPort" in m]
    return {"CPU": cpu, "MEMORY": memory, "PORTS": ports, "PORTS_UDP": []}


def _now() -> datetime:
    return datetime.now(UTC)


def _run_task(self: EC2ContainerServiceBackend, *args: Any, **kwargs: Any) -> list[Task]:
    tasks = _original_run_task(self, *args, **kwargs)
    for task in tasks:
        task._transitions = [("PROVISIONING", "PROVISIONING")]  # the runtime moves it on, not describe calls
        task.status = "PROVISIONING"
        task.created_at = _now()
        for container in task.containers:
            container.last_status = "PENDING"
            container.exitCode = None
        _ONE_OFF[task.task_arn] = task
        log.info("one-off task %s of %s: %s", task.id, task.task_definition_arn.rsplit("/", 1)[-1],
                 task.overrides.get("containerOverrides", [{}])[0].get("command", "(image command)"))
    return tasks


def _stop_task(self: EC2ContainerServiceBackend, cluster_str: str, task_str: str, reason: str) -> Task:
    task = next((t for arn, t in _ONE_OFF.items() if arn.endswith(task_str.split("/")[-1])), None)
    if task is None:
        return _original_stop_task(self, cluster_str, task_str, reason)
    if task.status != "STOPPED":
        task.desired_status = "STOPPED"
        task.stopped_reason = reason or "Task stopped by user"
        task.stop_code = "UserInitiated"
        log.info("one-off task %s: stop requested (%s)", task.id, task.stopped_reason)
    return task


def pending() -> list[dict[str, Any]]:
    """The one-off tasks the runtime still has to run or watch."""
    with TWIN.lock:
        return [{"taskArn": arn, "taskId": t.id, "taskDefinition": t.task_definition_arn, "lastStatus": t.status,
                 "desiredStatus": t.desired_status, "overrides": t.overrides, "startedBy": t.started_by}
                for arn, t in _ONE_OFF.items() if t.status != "STOPPED"]


def report(body: dict[str, Any]) -> dict[str, Any]:
    """Apply the runtime's report of one task: RUNNING, or STOPPED with an exit code."""
    arn, state = body.get("taskArn"), body.get("lastStatus")
    if not isinstance(arn, str) or state not in _STATES:
        raise ValueError(f"taskArn (string) and lastStatus ({' or '.join(_STATES)}) are required")
    code = body.get("exitCode")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        raise ValueError("exitCode must be an integer or null")
    with TWIN.lock:
        task = _ONE_OFF.get(arn)
        if task is None:
            raise UnknownTask(f"no one-off task {arn}")
        if task.status == "STOPPED":
            raise ValueError(f"task {arn} is already STOPPED")
        task.status = state
        container = task.containers[0]
        container.last_status = state
        if state == "RUNNING":
            task.started_at = _now()
        else:
            task.stopped_at = _now()
            task.desired_status = "STOPPED"
            container.exitCode = code
            container.reason = str(body.get("reason") or "")[:1024]
            if not task.stopped_reason:
                task.stopped_reason = "Essential container in task exited"
                task.stop_code = "EssentialContainerExited"
        log.info("one-off task %s: %s%s", task.id, state, f" (exit {code})" if state == "STOPPED" else "")
        return {"taskArn": arn, "lastStatus": task.status, "desiredStatus": task.desired_status}


def install() -> None:
    """Patch moto's task resource calculation, RunTask and StopTask."""
    EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(_requirements)  # type: ignore
    EC2ContainerServiceBackend.run_task = _run_task  # type: ignore[method-assign]
    EC2ContainerServiceBackend.stop_task = _stop_task  # type: ignore[method-assign]
