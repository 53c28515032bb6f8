"""`monitoring.*`: the alarms that would page someone exist, are OK, notify a confirmed subscriber; health checks exist.

Which alarms: the names in `[verify] alarms` when given; otherwise every metric alarm on the
stack's load balancer, target group or ECS service — except the ones auto scaling owns (a
target-tracking alarm in ALARM is the scaler doing its job, not an incident). Without an
explicit list, the stack must at least cover three signals: 5xx errors, latency and unhealthy
targets. A subscription counts only once confirmed: an e-mail nobody confirmed pages nobody.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from shipbook import aws
from shipbook.checks import CheckResult, check
from shipbook.config import Environment
from shipbook.verify.metrics import Dimensions

log = logging.getLogger(__name__)

ALARMS = "monitoring.alarms"
NOTIFICATIONS = "monitoring.notifications"
HEALTH_CHECKS = "monitoring.health_checks"

SIGNALS: dict[str, tuple[str, ...]] = {
    "5xx errors": ("HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count"),
    "latency": ("TargetResponseTime",),
    "unhealthy targets": ("UnHealthyHostCount", "HealthyHostCount"),
}
UNCONFIRMED = ("PendingConfirmation", "Deleted", "")


def _all_alarms(cloudwatch: Any) -> list[dict]:
    return aws.collect(cloudwatch, "describe_alarms", "MetricAlarms", AlarmTypes=["MetricAlarm"])


def _autoscaling_owned(alarm: dict) -> bool:
    actions = alarm.get("AlarmActions", []) + alarm.get("OKActions", [])
    return alarm.get("AlarmName", "").startswith("TargetTracking-") or \
        (bool(actions) and all(":autoscaling:" in a for a in actions))


def _on_stack(alarm: dict, dims: Dimensions) -> bool:
    ours = {(k, v) for k, v in dims.alb} | {(k, v) for k, v in dims.ecs}
    theirs = {(d.get("Name"), d.get("Value")) for d in alarm.get("Dimensions", [])}
    if ("ClusterName", dict(dims.ecs).get("ClusterName")) in theirs:
        return ("ServiceName", dict(dims.ecs).get("ServiceName")) in theirs
    return bool(theirs & ours)


def stack_alarms(cloudwatch: Any, dims: Dimensions, names: Iterable[str] = ()) -> tuple[list[dict], list[str]]:
    """(the alarms to check, the expected names that do not exist)."""
    every = _all_alarms(cloudwatch)
    names = list(names)
    if names:
        by_name = {a["AlarmName"]: a for a in every}
        return [by_name[n] for n in names if n in by_name], [n for n in names if n not in by_name]
    return [a for a in every if _on_stack(a, dims) and not _autoscaling_owned(a)], []


def _threshold(a: dict) -> str:
    stat = a.get("ExtendedStatistic") or a.get("Statistic", "")
    op = {"GreaterThanThreshold": ">", "GreaterThanOrEqualToThreshold": "≥", "LessThanThreshold": "<",
          "LessThanOrEqualToThreshold": "≤"}.get(a.get("ComparisonOperator", ""), a.get("ComparisonOperator", ""))
    return f"{stat} {op} {a.get('Threshold')} over {a.get('EvaluationPeriods')}×{a.get('Period')}s"


@check(ALARMS)
def alarms(env: Environment, dims: Dimensions, names: Iterable[str] = (), cloudwatch: Any = None) -> CheckResult:
    """The expected alarms exist and are OK (ALARM warns: it may be this release)."""
    cloudwatch = cloudwatch or aws.client(env, "cloudwatch")
    names = list(names)
    found, missing = stack_alarms(cloudwatch, dims, names)
    rows = [{"alarm": a["AlarmName"], "metric": a.get("MetricName", ""), "condition": _threshold(a),
             "state": a.get("StateValue", ""), "actions": len(a.get("AlarmActions", []))} for a in found]
    rows += [{"alarm": n, "metric": "", "condition": "", "state": "MISSING", "actions": 0} for n in missing]
    problems = [f"expected alarm {n} does not exist" for n in missing]
    if not names:
        metrics = {a.get("MetricName", "") for a in found}
        uncovered = [sig for sig, ms in SIGNALS.items() if not metrics & set(ms)]
        problems += [f"no alarm on {sig} ({' / '.join(SIGNALS[sig])})" for sig in uncovered]
    evidence = "DescribeAlarms" + (f" {', '.join(names)}" if names else " (alarms on the stack's LB, TG and service)")
    if problems:
        return CheckResult(ALARMS, "fail", "; ".join(problems), rows, evidence)
    firing = [a["AlarmName"] for a in found if a.get("StateValue") == "ALARM"]
    if firing:
        return CheckResult(ALARMS, "warn", f"{len(firing)} of {len(found)} alarm(s) in ALARM: {', '.join(firing)}",
                           rows, evidence)
    states = ", ".join(f"{a['AlarmName']} {a.get('StateValue')}" for a in found)
    return CheckResult(ALARMS, "pass", f"{len(found)} alarm(s), none firing: {states}", rows, evidence)


def _topic_matches(arn: str, wanted: str) -> bool:
    return arn == wanted or arn.rsplit(":", 1)[-1] == wanted


@check(NOTIFICATIONS)
def notifications(env: Environment, dims: Dimensions, names: Iterable[str] = (), cloudwatch: Any = None,
                  sns: Any = None) -> CheckResult:
    """Every alarm notifies an SNS topic (the configured one) that has a confirmed subscription."""
    cloudwatch = cloudwatch or aws.client(env, "cloudwatch")
    sns = sns or aws.client(env, "sns")
    found, _ = stack_alarms(cloudwatch, dims, names)
    if not found:
        return CheckResult(NOTIFICATIONS, "fail", "no alarms to notify from (see monitoring.alarms)")
    problems: list[str] = []
    topics: dict[str, list[str]] = {}
    rows: list[dict] = []
    for a in found:
        sns_actions = [x for x in a.get("AlarmActions", []) if ":sns:" in x]
        if not a.get("ActionsEnabled", True):
            problems.append(f"{a['AlarmName']}: actions are disabled")
        if not sns_actions:
            problems.append(f"{a['AlarmName']}: no SNS action on ALARM")
        if env.stack.alarm_topic and not any(_topic_matches(x, env.stack.alarm_topic) for x in sns_actions):
            problems.append(f"{a['AlarmName']}: does not notify {env.stack.alarm_topic}")
        for x in sns_actions:
            topics.setdefault(x, []).append(a["AlarmName"])
    for topic, users in topics.items():
        subs = aws.call(sns, "list_subscriptions_by_topic", TopicArn=topic).get("Subscriptions", [])
        confirmed = [s for s in subs if s.get("SubscriptionArn", "") not in UNCONFIRMED]
        pending = len(subs) - len(confirmed)
        rows.append({"topic": topic.rsplit(":", 1)[-1], "alarms": ", ".join(users),
                     "confirmed": ", ".join(f"{s.get('Protocol')}:{s.get('Endpoint')}" for s in confirmed) or "—",
                     "pending": pending})
        if not confirmed:
            problems.append(f"topic {topic.rsplit(':', 1)[-1]} has no confirmed subscription"
                            + (f" ({pending} pending)" if pending else ""))
    evidence = f"DescribeAlarms; ListSubscriptionsByTopic ×{len(topics)}"
    if problems:
        return CheckResult(NOTIFICATIONS, "fail", "; ".join(problems), rows, evidence)
    return CheckResult(NOTIFICATIONS, "pass", f"{len(found)} alarm(s) notify {len(topics)} topic(s), each with a "
                       "confirmed subscription", rows, evidence)


@check(HEALTH_CHECKS)
def health_checks(env: Environment, elbv2: Any = None, ecs: Any = None) -> CheckResult:
    """The target group probes the app's health path; the running task definition has a container health check."""
    elbv2 = elbv2 or aws.client(env, "elbv2")
    ecs = ecs or aws.client(env, "ecs")
    rows: list[dict] = []
    problems: list[str] = []
    warnings: list[str] = []
    tg = aws.target_group(elbv2, env.stack.target_group)
    enabled = tg.get("HealthCheckEnabled", True)
    path = tg.get("HealthCheckPath", "")
    rows.append({"where": f"target group {env.stack.target_group}",
                 "health check": f"{tg.get('HealthCheckProtocol')} {path} every "
                                 f"{tg.get('HealthCheckIntervalSeconds')}s, healthy after "
                                 f"{tg.get('HealthyThresholdCount')}, matcher "
                                 f"{(tg.get('Matcher') or {}).get('HttpCode', '')}",
                 "ok": bool(enabled and path == env.app.health_path)})
    if not enabled:
        problems.append(f"target group {env.stack.target_group} has its health check disabled")
    elif env.app.health_path and path != env.app.health_path:
        problems.append(f"target group probes {path}, the app's health path is {env.app.health_path}")
    svc = aws.call(ecs, "describe_services", cluster=env.stack.cluster, services=[env.stack.service])["services"]
    td_arn = svc[0].get("taskDefinition", "") if svc else ""
    if td_arn:
        td = aws.call(ecs, "describe_task_definition", taskDefinition=td_arn)["taskDefinition"]
        container = next((c for c in td.get("containerDefinitions", []) if c.get("name") == env.stack.container), {})
        hc = container.get("healthCheck") or {}
        rows.append({"where": f"container {env.stack.container} of {td_arn.rsplit('/', 1)[-1]}",
                     "health check": (" ".join(hc.get("command", []))[:80] + f" every {hc.get('interval')}s")
                     if hc else "none", "ok": bool(hc)})
        if not hc:
            warnings.append(f"container {env.stack.container} has no health check in {td_arn.rsplit('/', 1)[-1]}")
    else:
        problems.append(f"service {env.stack.cluster}/{env.stack.service} not found")
    evidence = "DescribeTargetGroups; DescribeServices; DescribeTaskDefinition"
    if problems:
        return CheckResult(HEALTH_CHECKS, "fail", "; ".join(problems + warnings), rows, evidence)
    if warnings:
        return CheckResult(HEALTH_CHECKS, "warn", "; ".join(warnings), rows, evidence)
    return CheckResult(HEALTH_CHECKS, "pass", f"target group probes {path}; the container has a health check",
                       rows, evidence)
