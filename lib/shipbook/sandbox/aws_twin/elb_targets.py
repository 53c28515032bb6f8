"""Target health of the ECS service's target group, and the ALB's host-count metrics.

Fargate tasks register their IPs with the target group, so on AWS DescribeTargetHealth shows one
target per task. moto knows no tasks; here the targets come from the agent's reports
(`ecs_rollout.targets_by_group`): healthy, `initial` while a new task is not healthy yet, and
`unhealthy` when the report says the tasks failed. Like the ALB, the twin also publishes
`HealthyHostCount` and `UnHealthyHostCount` (namespace AWS/ApplicationELB, dimensions
LoadBalancer and TargetGroup) from those targets, which the unhealthy-hosts alarm watches.
"""

from __future__ import annotations

import logging
from typing import Any

from moto.cloudwatch.models import MetricDatum, cloudwatch_backends
from moto.core.utils import utcnow
from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, elbv2_backends

from .ecs_rollout import targets_by_group
from .state import ACCOUNT_ID, REGION

log = logging.getLogger(__name__)

_REASONS = {
    "initial": ("Elb.InitialHealthChecking", "Initial health checks in progress"),
    "unhealthy": ("Target.FailedHealthChecks", "Health checks failed"),
}
_original_describe_target_health = ELBv2Backend.describe_target_health


def _describe_target_health(self: ELBv2Backend, target_group_arn: str, targets: list[dict[str, Any]]) -> list[Any]:
    reported = targets_by_group().get(target_group_arn)
    if not reported:
        return _original_describe_target_health(self, target_group_arn, targets)
    wanted = {t["Id"] for t in targets or []}
    found = []
    for target in reported:
        if wanted and target.target_id not in wanted:
            continue
        reason, description = _REASONS.get(target.state, (None, None))
        found.append(FakeHealthStatus(target.target_id, str(target.port), "traffic-port", target.state, reason,
                                      description))
    return found


def _full_name(arn: str, marker: str) -> str:
    """`app/<name>/<id>` and `targetgroup/<name>/<id>`: the metric dimension values."""
    return arn.split(marker, 1)[1] if marker in arn else arn


def publish_host_counts() -> None:
    """One HealthyHostCount and UnHealthyHostCount datapoint per reported target group."""
    groups = targets_by_group()
    if not groups:
        return
    elbv2 = elbv2_backends[ACCOUNT_ID][REGION]
    cloudwatch = cloudwatch_backends[ACCOUNT_ID][REGION]
    now = utcnow()
    for tg_arn, targets in groups.items():
        target_group = elbv2.target_groups.get(tg_arn)
        if target_group is None:
            continue
        healthy = sum(1 for t in targets if t.state == "healthy")
        unhealthy = sum(1 for t in targets if t.state == "unhealthy")
        for lb_arn in target_group.load_balancer_arns:
            dimensions = [
                {"Name": "LoadBalancer", "Value": _full_name(lb_arn, ":loadbalancer/")},
                {"Name": "TargetGroup", "Value": tg_arn.split(":")[-1]},
            ]
            for name, value in (("HealthyHostCount", healthy), ("UnHealthyHostCount", unhealthy)):
                cloudwatch.metric_data.append(
                    MetricDatum("AWS/ApplicationELB", name, float(value), dimensions, now, "Count")
                )


def install() -> None:
    """Patch moto's DescribeTargetHealth."""
    ELBv2Backend.describe_target_health = _describe_target_health  # type: ignore[method-assign]
