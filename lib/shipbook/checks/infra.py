"""`infra.*`: what the release changes in the stack, the ECS service, the ALB and the scaling.

Why change sets and diffs before the deploy: a template edit that replaces the database or the
load balancer, a task definition that silently drops a variable or the health check, a target
group probing the wrong path — each is cheap to see now and expensive to learn in production.
Nothing here changes the environment: the change set is created only to be described, then
deleted, whatever happens in between.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import requests

from shipbook import aws
from shipbook.checks import CheckResult, Release, check, worst
from shipbook.checks.env import TASKDEF_PATH, container_of, environment_names, secret_refs
from shipbook.config import Environment
from shipbook.errors import AwsError

log = logging.getLogger(__name__)

TEMPLATE_PATH = "infra/template.yaml"
# A replacement or removal of these loses data or the public address: it blocks the release.
# Proposed config: [precheck] stateful_types.
STATEFUL_TYPES: tuple[str, ...] = (
    "AWS::RDS::DBInstance", "AWS::RDS::DBCluster", "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::ElasticLoadBalancingV2::TargetGroup",
)
CAPABILITIES = ("CAPABILITY_IAM", "CAPABILITY_NAMED_IAM")
TEMPLATE_BODY_LIMIT = 51_200
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
_UNSUPPORTED = ("NotImplemented", "InternalFailure", "InternalError", "500", "UnknownOperationException")

Sleep = Callable[[float], None]
Now = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- infra.cloudformation


def change_set_name(version: str, now: datetime) -> str:
    """A valid change set name: `shipbook-precheck-v1-0-0-20261128t153000`."""
    base = re.sub(r"[^A-Za-z0-9-]+", "-", f"shipbook-precheck-{version}-{now:%Y%m%dt%H%M%S}").strip("-")
    return re.sub(r"-{2,}", "-", base)[:128]


def classify_change(rc: dict, stateful: Iterable[str] = STATEFUL_TYPES) -> tuple[str, str]:
    """(verdict, note) of one ResourceChange: stateful removal/replacement fails."""
    action, rtype = rc.get("Action", ""), rc.get("ResourceType", "")
    replacement = rc.get("Replacement")
    is_stateful = rtype in set(stateful)
    if action == "Remove":
        return ("fail", "a stateful resource would be deleted") if is_stateful else ("pass", "removed")
    if action in ("Modify", "Dynamic"):
        if replacement == "True":
            return ("fail", "a stateful resource would be replaced") if is_stateful else ("pass", "replaced")
        if replacement == "Conditional":
            return ("warn", "may be replaced (depends on a runtime value)") if is_stateful else ("pass", "")
        if replacement is None and is_stateful:
            return "warn", "modified; the API did not say whether it is replaced"
        return "pass", "modified in place" if replacement == "False" else ""
    return "pass", ""


@check("infra.cloudformation")
def cloudformation(env: Environment, release: Release, cfn: Any = None, sleep: Sleep = time.sleep,
                   now: Now = _utcnow, timeout: float = 120.0, interval: float = 2.0,
                   stateful: Iterable[str] = STATEFUL_TYPES, template_path: str = TEMPLATE_PATH) -> CheckResult:
    """Create a change set of the release's template against the live stack, describe it, delete it.

    Parameters are kept as the live stack has them (UsePreviousValue), as the deploy does.
    """
    check_id = "infra.cloudformation"
    stack_name = env.stack.name
    template = release.read(template_path)
    evidence = f"{release.where(template_path)} against stack {stack_name} (change set, deleted afterwards)"
    if len(template.encode("utf-8")) > TEMPLATE_BODY_LIMIT:
        return CheckResult(check_id, "fail", f"the template is larger than {TEMPLATE_BODY_LIMIT} bytes: "
                           "it needs an S3 TemplateURL, which this check does not do yet", [], evidence)
    cfn = cfn if cfn is not None else aws.client(env, "cloudformation")
    try:
        stack = aws.call(cfn, "describe_stacks", StackName=stack_name)["Stacks"][0]
    except AwsError as exc:
        if "does not exist" in exc.message:
            return CheckResult(check_id, "fail", f"the stack {stack_name} does not exist", [], evidence)
        raise
    status = stack.get("StackStatus", "")
    if status.endswith("_IN_PROGRESS") or status in ("ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "ROLLBACK_FAILED"):
        return CheckResult(check_id, "fail", f"the stack {stack_name} is {status}: it cannot be updated now",
                           [{"stack": stack_name, "status": status}], evidence)
    current = {p["ParameterKey"] for p in stack.get("Parameters") or []}
    declared = [p["ParameterKey"] for p in aws.call(cfn, "validate_template", TemplateBody=template)
                .get("Parameters") or []]
    params = [{"ParameterKey": k, "UsePreviousValue": True} for k in declared if k in current]
    name = change_set_name(release.version or release.short, now())
    try:
        created = aws.call(cfn, "create_change_set", StackName=stack_name, ChangeSetName=name,
                           TemplateBody=template, Parameters=params, Capabilities=list(CAPABILITIES),
                           ChangeSetType="UPDATE",
                           Description=f"shipbook precheck of {release.version or release.short}: never executed")
    except AwsError as exc:
        if any(m in exc.message for m in _NO_CHANGES):
            return CheckResult(check_id, "pass", "the template at the release commit changes nothing", [], evidence)
        if exc.code in _UNSUPPORTED:
            return CheckResult(check_id, "skip", f"change sets are not available here ({exc.code}): "
                               "template changes not evaluated", [], evidence)
        raise
    cs_id = created.get("Id", name)
    try:
        described = _wait_change_set(cfn, stack_name, cs_id, sleep, now, timeout, interval)
        changes = _all_changes(cfn, stack_name, cs_id, described)
    finally:
        cleanup = _delete_change_set(cfn, stack_name, cs_id)
    rows: list[dict] = []
    cs_status, reason = described.get("Status", ""), described.get("StatusReason") or ""
    if cs_status == "FAILED" and any(m in reason for m in _NO_CHANGES):
        rows.append({"action": "", "resource": "", "type": "", "replacement": "", "verdict": "pass",
                     "note": "no changes"})
    elif cs_status != "CREATE_COMPLETE":
        rows.append({"action": "", "resource": "", "type": "", "replacement": "", "verdict": "fail",
                     "note": f"change set {cs_status or 'not ready'}: {reason or f'not complete in {timeout:.0f} s'}"})
    for ch in changes:
        rc = ch.get("ResourceChange") or {}
        verdict, note = classify_change(rc, stateful)
        rows.append({"action": rc.get("Action", ""), "resource": rc.get("LogicalResourceId", ""),
                     "type": rc.get("ResourceType", ""), "replacement": rc.get("Replacement", "not reported"),
                     "verdict": verdict, "note": note})
    if cleanup:
        rows.append({"action": "", "resource": name, "type": "change set", "replacement": "", "verdict": "warn",
                     "note": cleanup})
    verdict = worst(r["verdict"] for r in rows)
    flagged = [r for r in rows if r["verdict"] in ("fail", "warn") and r["resource"]]
    if flagged:
        summary = "; ".join(f"{r['action'] or r['type']} {r['resource']}: {r['note']}" for r in flagged)
    elif verdict == "fail":
        summary = rows[0]["note"]
    elif changes:
        counts: dict[str, int] = {}
        for r in rows:
            if r["action"]:
                counts[r["action"]] = counts.get(r["action"], 0) + 1
        summary = "changes: " + ", ".join(f"{n} {a}" for a, n in counts.items()) + "; no stateful replacement"
    else:
        summary = "the template at the release commit changes nothing"
    return CheckResult(check_id, verdict, summary, rows, evidence)


def _wait_change_set(cfn: Any, stack: str, cs_id: str, sleep: Sleep, now: Now, timeout: float,
                     interval: float) -> dict:
    deadline = now().timestamp() + timeout
    while True:
        d = aws.call(cfn, "describe_change_set", StackName=stack, ChangeSetName=cs_id)
        if d.get("Status") in ("CREATE_COMPLETE", "FAILED", "DELETE_COMPLETE", "DELETE_FAILED"):
            return d
        if now().timestamp() >= deadline:
            return d
        sleep(interval)


def _all_changes(cfn: Any, stack: str, cs_id: str, first: dict) -> list[dict]:
    """Every change of the change set: the first description's, or all pages when it has more."""
    if not first.get("NextToken"):
        return list(first.get("Changes") or [])
    return aws.collect(cfn, "describe_change_set", "Changes", StackName=stack, ChangeSetName=cs_id)


def _delete_change_set(cfn: Any, stack: str, cs_id: str) -> str:
    """Delete the change set; '' when done, else why not (reported, never silent)."""
    try:
        aws.call(cfn, "delete_change_set", StackName=stack, ChangeSetName=cs_id)
    except AwsError as exc:
        log.warning("change set %s not deleted: %s", cs_id, exc)
        return f"could not delete the change set: {exc.code}: {exc.message}"
    return ""


# --------------------------------------------------------------------------- infra.ecs


def render_image(image: str, version: str) -> str:
    """The image the deploy will run: the repository of `image` at the release tag."""
    if not version or not image:
        return image
    name = image.split("@", 1)[0]
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        repo = name
    return f"{repo}:{version}"


def _health(c: dict) -> str:
    hc = c.get("healthCheck") or {}
    if not hc:
        return ""
    cmd = " ".join(str(x) for x in hc.get("command") or [])
    return f"{cmd} (every {hc.get('interval', 30)}s, timeout {hc.get('timeout', 5)}s, " \
           f"retries {hc.get('retries', 3)}, start {hc.get('startPeriod', 0)}s)"


def _ports(c: dict) -> str:
    return ", ".join(f"{p.get('containerPort')}/{p.get('protocol', 'tcp')}" for p in c.get("portMappings") or [])


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


@check("infra.ecs")
def ecs(env: Environment, release: Release, ecs_client: Any = None, taskdef_path: str = TASKDEF_PATH) -> CheckResult:
    """Diff the service's current task definition and the release's (names of variables only, no values)."""
    check_id = "infra.ecs"
    cli = ecs_client if ecs_client is not None else aws.client(env, "ecs")
    svc = aws.call(cli, "describe_services", cluster=env.stack.cluster, services=[env.stack.service])
    services = svc.get("services") or []
    evidence = f"service {env.stack.cluster}/{env.stack.service} vs {release.where(taskdef_path)}"
    if not services:
        return CheckResult(check_id, "fail", f"the ECS service {env.stack.cluster}/{env.stack.service} was not found",
                           [], evidence)
    cur_arn = services[0].get("taskDefinition", "")
    cur = aws.call(cli, "describe_task_definition", taskDefinition=cur_arn)["taskDefinition"]
    new = release.read_json(taskdef_path)
    evidence += f" (current {cur_arn.rsplit('/', 1)[-1]})"
    cur_c = container_of(cur, env.stack.container)
    new_c = container_of(new, env.stack.container)
    rows: list[dict] = []

    def row(fld: str, before: Any, after: Any, verdict_if_changed: str = "pass", note: str = "") -> None:
        before, after = ("" if before is None else str(before)), ("" if after is None else str(after))
        changed = before != after
        rows.append({"field": fld, "current": before, "release": after, "change": "changed" if changed else "same",
                     "verdict": verdict_if_changed if changed else "pass", "note": note if changed else ""})

    new_image = render_image(str(new_c.get("image", "")), release.version)
    row("image", cur_c.get("image"), new_image,
        note="rendered to the release tag, as the deploy does" if new_image != new_c.get("image") else "")
    if cur_c.get("image", "").rpartition(":")[0] != new_image.rpartition(":")[0]:
        rows[-1].update(verdict="warn", note="the image repository changes")
    for fld in ("cpu", "memory"):
        before, after = _int(cur.get(fld)), _int(new.get(fld))
        row(f"task {fld}", before, after, "warn" if (before and after and after < before) else "pass",
            "decreases" if (before and after and after < before) else "")
    row("execution role", cur.get("executionRoleArn"), new.get("executionRoleArn"), "warn")
    row("task role", cur.get("taskRoleArn"), new.get("taskRoleArn"), "warn")
    row("ports", _ports(cur_c), _ports(new_c), "warn", "the target group forwards to the container port")
    cur_env, new_env = set(environment_names(cur_c)), set(environment_names(new_c))
    cur_sec, new_sec = {r.name for r in secret_refs(cur_c)}, {r.name for r in secret_refs(new_c)}
    for label, before, after in (("environment", cur_env, new_env), ("secrets", cur_sec, new_sec)):
        removed, added = sorted(before - after), sorted(after - before)
        rows.append({"field": f"{label} (names)", "current": ", ".join(sorted(before)),
                     "release": ", ".join(sorted(after)),
                     "change": "changed" if (removed or added) else "same",
                     "verdict": "warn" if removed else "pass",
                     "note": "; ".join(x for x in (f"removed: {', '.join(removed)}" if removed else "",
                                                   f"added: {', '.join(added)}" if added else "") if x)})
    before_hc, after_hc = _health(cur_c), _health(new_c)
    row("container health check", before_hc, after_hc, "warn" if before_hc and not after_hc else "pass",
        "the health check is removed" if before_hc and not after_hc else "")
    changed = [r for r in rows if r["change"] == "changed"]
    verdict = worst(r["verdict"] for r in rows)
    if not new_image:
        verdict = "fail"
        rows[0].update(verdict="fail", note="the release's container has no image")
    flagged = [r for r in rows if r["verdict"] in ("warn", "fail")]
    if flagged:
        summary = "; ".join(f"{r['field']}: {r['note']}" for r in flagged)
    elif changed:
        summary = "; ".join(f"{r['field']} {r['current'] or '-'} → {r['release'] or '-'}" if "names" not in r["field"]
                            else f"{r['field']}: {r['note']}" for r in changed)
    else:
        summary = "no difference"
    return CheckResult(check_id, verdict, summary, rows, evidence)


# --------------------------------------------------------------------------- infra.alb


HttpGet = Callable[..., Any]


@check("infra.alb")
def alb(env: Environment, elbv2: Any = None, http_get: HttpGet = requests.get, timeout: float = 5.0) -> CheckResult:
    """The target group's health check is what the environment says, and the path answers on the live app.

    The path is `app.health_path`; `precheck.health_check` adds the matcher, interval, timeout and
    thresholds to compare (only the keys it gives). Without a matcher, 200 must be a success code.
    """
    check_id = "infra.alb"
    want = env.precheck.health_check
    cli = elbv2 if elbv2 is not None else aws.client(env, "elbv2")
    evidence = f"target group {env.stack.target_group} against app.health_path and precheck.health_check; " \
               f"GET {env.app.public_url}{env.app.health_path}"
    try:
        tg = aws.target_group(cli, env.stack.target_group)
    except AwsError as exc:
        if exc.code != "TargetGroupNotFound":
            raise
        return CheckResult(check_id, "fail", f"target group {env.stack.target_group} not found", [], evidence)
    rows: list[dict] = []

    def row(setting: str, actual: Any, expected: Any, ok: bool, bad: str = "fail", note: str = "") -> None:
        rows.append({"setting": setting, "actual": actual, "expected": expected,
                     "verdict": "pass" if ok else bad, "note": "" if ok else note})

    row("health check enabled", tg.get("HealthCheckEnabled", True), True, tg.get("HealthCheckEnabled", True) is True,
        note="the ALB does not check the targets")
    row("health check path", tg.get("HealthCheckPath"), env.app.health_path,
        tg.get("HealthCheckPath") == env.app.health_path, note="probes another path than the app's health path")
    codes = str((tg.get("Matcher") or {}).get("HttpCode", ""))
    if want.matcher:
        matcher = want.matcher.replace(" ", "")
        row("success codes", codes, matcher, codes.replace(" ", "") == matcher,
            note="differs from precheck.health_check.matcher")
    else:
        row("success codes", codes, "includes 200", _code_matches(codes, "200"), "warn",
            note="200 is not a success code")
    row("protocol / port", f"{tg.get('HealthCheckProtocol')} / {tg.get('HealthCheckPort')}", "", True)
    interval, hc_timeout = tg.get("HealthCheckIntervalSeconds"), tg.get("HealthCheckTimeoutSeconds")
    for setting, key, actual in (("interval (s)", "interval", interval), ("timeout (s)", "timeout", hc_timeout),
                                 ("healthy threshold", "healthy_threshold", tg.get("HealthyThresholdCount")),
                                 ("unhealthy threshold", "unhealthy_threshold", tg.get("UnhealthyThresholdCount"))):
        expected = getattr(want, key)
        row(setting, actual, "" if expected is None else expected, expected is None or actual == expected,
            note=f"differs from precheck.health_check.{key}")
    row("timeout shorter than the interval", f"{hc_timeout} s / {interval} s", "", (hc_timeout or 0) < (interval or 1),
        "warn", "the timeout is not shorter than the interval")
    health = aws.call(cli, "describe_target_health", TargetGroupArn=tg["TargetGroupArn"])
    states = [d.get("TargetHealth", {}).get("State", "") for d in health.get("TargetHealthDescriptions") or []]
    unhealthy = [s for s in states if s not in ("healthy", "initial", "draining")]
    row("targets (now)", f"{states.count('healthy')} healthy of {len(states)}", "all healthy",
        bool(states) and not unhealthy, "warn", "no registered target" if not states else
        f"{len(unhealthy)} unhealthy target(s)")
    answers = want.matcher.replace(" ", "") or "200"
    if env.app.public_url:
        url = env.app.public_url.rstrip("/") + env.app.health_path
        t0 = time.monotonic()
        try:
            resp = http_get(url, timeout=timeout, allow_redirects=False)
            ms = (time.monotonic() - t0) * 1000
            row(f"GET {url}", f"{resp.status_code} in {ms:.0f} ms", answers,
                _code_matches(answers, str(resp.status_code)), note="the health path does not answer as expected")
        except requests.RequestException as exc:
            log.info("GET %s: %s", url, exc)
            row(f"GET {url}", f"no answer ({type(exc).__name__})", answers, False,
                note="the health path does not answer")
    else:
        row("live request", "not made", "", False, "warn", "no app.public_url configured")
    verdict = worst(r["verdict"] for r in rows)
    flagged = [r for r in rows if r["verdict"] != "pass"]
    compared = [k for k in ("matcher", "interval", "timeout", "healthy_threshold", "unhealthy_threshold")
                if getattr(want, k) not in (None, "")]
    summary = "; ".join(f"{r['setting']}: {r['note']}" for r in flagged) if flagged else \
        f"health check {tg.get('HealthCheckPath')} matches the environment" \
        + (f" ({', '.join(compared)} too)" if compared else "") + f" and answers {answers}"
    return CheckResult(check_id, verdict, summary, rows, evidence)


def _code_matches(codes: str, code: str) -> bool:
    """ALB matcher syntax: `200`, `200,202`, `200-299`."""
    for part in (p.strip() for p in codes.split(",")):
        lo, sep, hi = part.partition("-")
        if part == code or (sep and lo.isdigit() and hi.isdigit() and code.isdigit()
                            and int(lo) <= int(code) <= int(hi)):
            return True
    return False


# --------------------------------------------------------------------------- infra.scaling


@check("infra.scaling")
def scaling(env: Environment, aas: Any = None, ecs_client: Any = None, cloudwatch: Any = None,
            min_capacity: int = 1) -> CheckResult:
    """The service's scalable target (min/max), its policies and their alarms."""
    check_id = "infra.scaling"
    resource = f"service/{env.stack.cluster}/{env.stack.service}"
    aas = aas if aas is not None else aws.client(env, "application-autoscaling")
    evidence = f"application-autoscaling ecs {resource}"
    targets = aws.call(aas, "describe_scalable_targets", ServiceNamespace="ecs", ResourceIds=[resource],
                       ScalableDimension="ecs:service:DesiredCount").get("ScalableTargets") or []
    if not targets:
        return CheckResult(check_id, "warn", "no scalable target: the service does not auto scale",
                           [{"resource": resource, "verdict": "warn", "note": "no scalable target"}], evidence)
    t = targets[0]
    lo, hi = int(t.get("MinCapacity", 0)), int(t.get("MaxCapacity", 0))
    cli = ecs_client if ecs_client is not None else aws.client(env, "ecs")
    services = aws.call(cli, "describe_services", cluster=env.stack.cluster,
                        services=[env.stack.service]).get("services") or []
    desired = services[0].get("desiredCount") if services else None
    rows: list[dict] = []

    def row(item: str, value: Any, verdict: str = "pass", note: str = "") -> None:
        rows.append({"item": item, "value": value, "verdict": verdict, "note": note})

    row("min capacity", lo, "fail" if lo < min_capacity else "pass",
        f"below {min_capacity}: the service may scale to {lo}" if lo < min_capacity else "")
    row("max capacity", hi, "fail" if hi < lo else ("warn" if hi == lo else "pass"),
        "below the minimum" if hi < lo else ("equal to the minimum: it cannot scale" if hi == lo else ""))
    in_range = desired is not None and lo <= int(desired) <= hi
    row("desired count (now)", desired, "pass" if in_range else "warn",
        "" if in_range else "outside min..max")
    suspended = {k: v for k, v in (t.get("SuspendedState") or {}).items() if v}
    if suspended:
        row("suspended", ", ".join(suspended), "warn", "scaling activities are suspended")
    policies = aws.call(aas, "describe_scaling_policies", ServiceNamespace="ecs",
                        ResourceId=resource).get("ScalingPolicies") or []
    alarm_names = [a["AlarmName"] for p in policies for a in p.get("Alarms") or []]
    states: dict[str, str] = {}
    if alarm_names:
        cw = cloudwatch if cloudwatch is not None else aws.client(env, "cloudwatch")
        found = aws.call(cw, "describe_alarms", AlarmNames=alarm_names[:100]).get("MetricAlarms") or []
        states = {a["AlarmName"]: a.get("StateValue", "") for a in found}
    for p in policies:
        cfg = p.get("TargetTrackingScalingPolicyConfiguration") or {}
        metric = (cfg.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType") or \
            (cfg.get("CustomizedMetricSpecification") or {}).get("MetricName", "")
        what = f"{p.get('PolicyType')}: {metric} target {cfg.get('TargetValue')}" if cfg else p.get("PolicyType")
        alarms = [f"{a['AlarmName']} ({states.get(a['AlarmName'], 'missing')})" for a in p.get("Alarms") or []]
        missing = [a for a in p.get("Alarms") or [] if a["AlarmName"] not in states]
        row(f"policy {p.get('PolicyName')}", what + (f"; alarms: {', '.join(alarms)}" if alarms else ""),
            "warn" if missing else "pass", "an alarm of the policy does not exist" if missing else "")
    if not policies:
        row("policies", "none", "warn", "a scalable target without policies never scales")
    verdict = worst(r["verdict"] for r in rows)
    flagged = [r for r in rows if r["verdict"] != "pass"]
    summary = "; ".join(f"{r['item']}: {r['note']}" for r in flagged) if flagged else \
        f"min {lo}, max {hi}, desired {desired}; {len(policies)} polic{'y' if len(policies) == 1 else 'ies'}"
    return CheckResult(check_id, verdict, summary, rows, evidence)
