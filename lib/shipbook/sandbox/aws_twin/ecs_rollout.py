"""ECS deployment lifecycle, driven by what the sandbox runtime's agent reports.

moto 5.2.5 keeps one PRIMARY deployment forever, writes no service events and drops the
deployment circuit breaker. Here, as on ECS:

- UpdateService with a new task definition (or forceNewDeployment) starts a new PRIMARY
  deployment `IN_PROGRESS`; the previous ones become ACTIVE.
- `report()` (POST /_sandbox/ecs/report) carries the running/healthy task counts of one task
  definition. When the PRIMARY's tasks are all healthy it becomes COMPLETED, the other
  deployments are drained, and the service reaches a steady state.
- Every report with `failed: true` counts one failed task of the deployments on that task
  definition. At `Settings.ecs_failed_task_threshold` failed tasks with the circuit breaker on,
  the deployment is FAILED and, with rollback on, a new PRIMARY deployment of the last completed
  task definition starts (the rollback), which completes by the same rule.
- Service events (newest first, with ids and times) use ECS's wording; counts on the service
  are the sums over its deployments.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from moto.core.utils import utcnow
from moto.ecs.exceptions import ClusterNotFoundException, ServiceNotFoundException, TaskDefinitionNotFoundException
from moto.ecs.models import EC2ContainerServiceBackend, Service, ecs_backends
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.moto_api._internal import mock_random

from .state import ACCOUNT_ID, REGION, TWIN

log = logging.getLogger(__name__)

MAX_EVENTS = 100
DEFAULT_DEPLOYMENT_CONFIGURATION: dict[str, Any] = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}


class ReportError(ValueError):
    """A report the twin cannot read."""


class UnknownResource(ReportError):
    """A report about a cluster, service or task definition the twin does not have."""


@dataclass
class TaskSet:
    """The tasks of one task definition as the agent last reported them."""

    running: int = 0
    healthy: int = 0
    failed: bool = False
    reason: str = ""
    task_ids: list[str] = field(default_factory=list)


@dataclass
class Target:
    """One target of a target group, derived from a reported task."""

    target_id: str
    port: int
    state: str


def _task_id() -> str:
    return uuid.uuid4().hex


def _deployment_id() -> str:
    return f"ecs-svc/{mock_random.randint(10**18, 10**19 - 1)}"


def _tasks(service: Service) -> dict[str, TaskSet]:
    if not hasattr(service, "sandbox_tasks"):
        service.sandbox_tasks = {}
    return service.sandbox_tasks  # type: ignore[no-any-return]


def _event(service: Service, message: str) -> None:
    """Prepend one service event: ECS lists them newest first."""
    service.events.insert(0, {"id": str(uuid.uuid4()), "createdAt": utcnow(), "message": message})
    del service.events[MAX_EVENTS:]
    log.info("ecs event: %s", message)


def _prefix(service: Service) -> str:
    return f"(service {service.name})"


def _target_groups(service: Service) -> list[str]:
    return [lb["targetGroupArn"] for lb in service.load_balancers or [] if lb.get("targetGroupArn")]


def _task_definition_arn(backend: EC2ContainerServiceBackend, name: str) -> str:
    try:
        return str(backend.describe_task_definition(name).arn)
    except TaskDefinitionNotFoundException as exc:
        raise UnknownResource(f"unknown task definition {name!r}") from exc


def _new_deployment(service: Service, task_definition: str, running: int = 0) -> dict[str, Any]:
    now = utcnow()
    deployment_id = _deployment_id()
    desired = int(service.desired_count or 0)
    return {
        "id": deployment_id,
        "status": "PRIMARY",
        "taskDefinition": task_definition,
        "desiredCount": desired,
        "pendingCount": max(desired - running, 0),
        "runningCount": running,
        "failedTasks": 0,
        "createdAt": now,
        "updatedAt": now,
        "launchType": service.launch_type,
        "platformVersion": "1.4.0" if service.launch_type == "FARGATE" else None,
        "platformFamily": "Linux" if service.launch_type == "FARGATE" else None,
        "networkConfiguration": service.network_configuration or None,
        "rolloutState": "IN_PROGRESS",
        "rolloutStateReason": f"ECS deployment {deployment_id} in progress.",
    }


def _sync_counts(service: Service) -> None:
    service.running_count = sum(int(d["runningCount"]) for d in service.deployments)
    service.pending_count = sum(int(d["pendingCount"]) for d in service.deployments)


def start_deployment(service: Service, task_definition: str) -> dict[str, Any]:
    """A new PRIMARY deployment; the earlier ones become ACTIVE. Reports move it on."""
    now = utcnow()
    for deployment in service.deployments:
        if deployment["status"] == "PRIMARY":
            deployment["status"] = "ACTIVE"
            deployment["pendingCount"] = 0  # ECS launches tasks for the PRIMARY deployment only
            deployment["updatedAt"] = now
    deployment = _new_deployment(service, task_definition)
    service.deployments.insert(0, deployment)
    service.task_definition = task_definition
    log.info("%s: deployment %s of %s started", service.name, deployment["id"], task_definition)
    _sync_counts(service)
    return deployment


def _complete(service: Service, deployment: dict[str, Any]) -> None:
    prefix = _prefix(service)
    deployment["rolloutState"] = "COMPLETED"
    deployment["rolloutStateReason"] = f"ECS deployment {deployment['id']} completed."
    deployment["updatedAt"] = utcnow()
    current = {deployment["taskDefinition"]}
    for other in [d for d in service.deployments if d is not deployment]:
        service.deployments.remove(other)
        if other["taskDefinition"] in current:
            continue
        tasks = _tasks(service).pop(other["taskDefinition"], None)
        if tasks and tasks.task_ids:
            stopped = " ".join(f"(task {t})" for t in tasks.task_ids)
            _event(service, f"{prefix} has stopped {len(tasks.task_ids)} running tasks: {stopped}.")
            for tg in _target_groups(service):
                _event(service, f"{prefix} deregistered {len(tasks.task_ids)} targets in (target-group {tg})")
    service.task_definition = deployment["taskDefinition"]
    _sync_counts(service)
    _event(service, f"{prefix} (deployment {deployment['id']}) deployment completed.")
    _event(service, f"{prefix} has reached a steady state.")


def _trip(service: Service, deployment: dict[str, Any]) -> None:
    prefix = _prefix(service)
    config = getattr(service, "deployment_configuration", None) or DEFAULT_DEPLOYMENT_CONFIGURATION
    breaker = config.get("deploymentCircuitBreaker") or {}
    if not breaker.get("enable"):
        if not deployment.get("sandboxWarned"):
            deployment["sandboxWarned"] = True
            _event(service, f"{prefix} is unable to consistently start tasks successfully. For more "
                            "information, see the Troubleshooting section of the Amazon ECS Developer Guide.")
        return
    deployment["rolloutState"] = "FAILED"
    deployment["rolloutStateReason"] = "ECS deployment circuit breaker: tasks failed to start."
    deployment["pendingCount"] = 0
    deployment["updatedAt"] = utcnow()
    _event(service, f"{prefix} (deployment {deployment['id']}) deployment failed: tasks failed to start.")
    if not breaker.get("rollback"):
        return
    previous = [d for d in service.deployments if d is not deployment and d["rolloutState"] == "COMPLETED"]
    if not previous:
        log.warning("%s: circuit breaker tripped but no completed deployment to roll back to", service.name)
        return
    target = previous[0]
    deployment["desiredCount"] = 0
    _event(service, f"{prefix} rolling back to deployment {target['id']}.")
    start_deployment(service, target["taskDefinition"])


def _apply_counts(service: Service, deployment: dict[str, Any], tasks: TaskSet) -> None:
    deployment["runningCount"] = tasks.running
    deployment["pendingCount"] = max(int(deployment["desiredCount"]) - tasks.running, 0)
    deployment["updatedAt"] = utcnow()
    if (
        deployment["status"] == "PRIMARY"
        and deployment["rolloutState"] == "IN_PROGRESS"
        and not tasks.failed
        and tasks.healthy >= int(deployment["desiredCount"])
    ):
        _complete(service, deployment)


def _ids(ids: list[str]) -> str:
    return " ".join(f"(task {t})" for t in ids)


def _track_tasks(service: Service, task_definition: str, running: int, healthy: int, failed: bool,
                 reason: str) -> TaskSet:
    """Update the task set of a task definition and write the start/stop/register events."""
    prefix = _prefix(service)
    tasks = _tasks(service).setdefault(task_definition, TaskSet())
    if failed:
        stopped, tasks.task_ids = tasks.task_ids[:1] or [_task_id()], tasks.task_ids[1:]
        _event(service, f"{prefix} has stopped 1 running tasks: {_ids(stopped)}.")
        if reason:
            for tg in _target_groups(service):
                _event(service, f"{prefix} (task {stopped[0]}) (port 8000) is unhealthy in "
                                f"(target-group {tg}) due to (reason {reason}).")
    if running > len(tasks.task_ids):
        started = [_task_id() for _ in range(running - len(tasks.task_ids))]
        tasks.task_ids.extend(started)
        _event(service, f"{prefix} has started {len(started)} tasks: {_ids(started)}.")
    elif running < len(tasks.task_ids):
        cut = len(tasks.task_ids) - running
        stopped, tasks.task_ids = tasks.task_ids[:cut], tasks.task_ids[cut:]
        _event(service, f"{prefix} has stopped {len(stopped)} running tasks: {_ids(stopped)}.")
    if healthy > tasks.healthy:
        for tg in _target_groups(service):
            _event(service, f"{prefix} registered {healthy - tasks.healthy} targets in (target-group {tg})")
    tasks.running, tasks.healthy, tasks.failed, tasks.reason = running, healthy, failed, reason
    return tasks


def report(body: dict[str, Any]) -> dict[str, Any]:
    """Apply one agent report; returns the service's deployments as the twin now sees them."""
    try:
        cluster = str(body.get("cluster") or "default")
        name = str(body["service"])
        running = max(int(body.get("running", 0)), 0)
        healthy = min(max(int(body.get("healthy", 0)), 0), running)
        failed = bool(body.get("failed", False))
        reason = str(body.get("reason") or "")
        task_definition_name = str(body["taskDefinition"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"bad report: {exc}") from exc
    backend = ecs_backends[ACCOUNT_ID][str(body.get("region") or REGION)]
    with TWIN.lock:
        try:
            service = backend._get_service(cluster, name)
        except (ClusterNotFoundException, ServiceNotFoundException) as exc:
            raise UnknownResource(f"unknown service {cluster}/{name}") from exc
        task_definition = _task_definition_arn(backend, task_definition_name)
        live = [d for d in service.deployments
                if d["taskDefinition"] == task_definition and d["rolloutState"] != "FAILED"]
        if live:
            tasks = _track_tasks(service, task_definition, running, healthy, failed, reason)
        for deployment in live:
            if deployment not in service.deployments:
                continue
            if failed and deployment["rolloutState"] == "IN_PROGRESS":
                deployment["failedTasks"] = int(deployment["failedTasks"]) + 1
                if deployment["failedTasks"] >= TWIN.settings.ecs_failed_task_threshold:
                    _trip(service, deployment)
                    continue
            _apply_counts(service, deployment, tasks)
        _sync_counts(service)
        return {
            "service": service.arn,
            "taskDefinition": service.task_definition,
            "deployments": [
                {k: v for k, v in d.items() if k in ("id", "status", "taskDefinition", "rolloutState",
                                                      "runningCount", "failedTasks")}
                for d in service.deployments
            ],
        }


def targets_by_group() -> dict[str, list[Target]]:
    """Targets per target group ARN, from the reported tasks of the services' current deployments."""
    found: dict[str, list[Target]] = {}
    backend = ecs_backends[ACCOUNT_ID][REGION]
    for service in backend.services.values():
        current = {d["taskDefinition"] for d in service.deployments}
        for lb in service.load_balancers or []:
            tg = lb.get("targetGroupArn")
            if not tg:
                continue
            port = int(lb.get("containerPort") or 8000)
            for td, tasks in _tasks(service).items():
                if td not in current:
                    continue
                for index, task_id in enumerate(tasks.task_ids):
                    if index < tasks.healthy:
                        state = "healthy"
                    else:
                        state = "unhealthy" if tasks.failed else "initial"
                    ip = f"10.0.{int(task_id[:2], 16) % 2}.{int(task_id[2:4], 16) % 250 + 4}"
                    found.setdefault(tg, []).append(Target(ip, port, state))
    return found


# ---------------------------------------------------------------- moto patches
_original_create_service = EC2ContainerServiceBackend.create_service
_original_update_service = EC2ContainerServiceBackend.update_service
_original_create_service_response = EC2ContainerServiceResponse.create_service


def _create_service(self: EC2ContainerServiceBackend, *args: Any, **kwargs: Any) -> Service:
    service = _original_create_service(self, *args, **kwargs)
    service.deployment_configuration = dict(DEFAULT_DEPLOYMENT_CONFIGURATION)
    service.events = []
    service.created_at = utcnow()
    service.running_count = 0
    service.pending_count = int(service.desired_count or 0)
    for deployment in service.deployments:
        deployment.update(_new_deployment(service, deployment["taskDefinition"]) | {"id": deployment["id"]})
        deployment["rolloutStateReason"] = f"ECS deployment {deployment['id']} in progress."
    _sync_counts(service)
    return service


def _update_service(self: EC2ContainerServiceBackend, service_properties: dict[str, Any]) -> Service:
    cluster = service_properties.get("cluster", "default")
    name = str(service_properties.get("service", "")).split("/")[-1]
    force = bool(service_properties.pop("force_new_deployment", False))
    requested = service_properties.get("task_definition")
    desired = service_properties.get("desired_count")
    service = self._get_service(cluster, name)
    before = service.task_definition
    counts = (service.running_count, service.pending_count)
    service = _original_update_service(self, service_properties)
    service.running_count, service.pending_count = counts
    if requested:
        service.task_definition = _task_definition_arn(self, requested)
    if desired is not None:
        for deployment in service.deployments:
            if deployment["status"] == "PRIMARY":
                deployment["desiredCount"] = int(desired)
                deployment["pendingCount"] = max(int(desired) - int(deployment["runningCount"]), 0)
    if service.task_definition != before or force:
        start_deployment(service, service.task_definition)
    _sync_counts(service)
    return service


def _create_service_response(self: EC2ContainerServiceResponse) -> Any:
    result = _original_create_service_response(self)
    service = self.ecs_backend._get_service(self._get_param("cluster", "default"), self._get_param("serviceName"))
    config = self._get_param("deploymentConfiguration")
    if config:
        service.deployment_configuration = DEFAULT_DEPLOYMENT_CONFIGURATION | config
    grace = self._get_param("healthCheckGracePeriodSeconds")
    if grace is not None:
        service.health_check_grace_period_seconds = int(grace)
    return result


def install() -> None:
    """Patch moto's ECS backend and CreateService response."""
    EC2ContainerServiceBackend.create_service = _create_service  # type: ignore[method-assign]
    EC2ContainerServiceBackend.update_service = _update_service  # type: ignore[method-assign]
    EC2ContainerServiceResponse.create_service = _create_service_response  # type: ignore[method-assign]

