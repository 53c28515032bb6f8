"""`iam.task_execution_role`, `iam.ecr_push`: the roles can do what the release needs.

Why the policy simulator: reading policy documents by eye misses explicit denies, boundaries
and wildcards; SimulatePrincipalPolicy evaluates the role's own policies for each action on
the resource it will really touch (the ECR repository of the image, the log stream of the
container, each referenced secret), and says allowed or denied with the deciding statements.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from botocore.parsers import ResponseParserError

from shipbook import aws
from shipbook.checks import CheckResult, Release, check
from shipbook.checks.env import TASKDEF_PATH, container_of, describe_secret, secret_refs
from shipbook.config import Environment, PrecheckSection
from shipbook.errors import AwsError

log = logging.getLogger(__name__)

EXECUTION_ROLE_ACTIONS: tuple[str, ...] = (
    "ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
    "logs:CreateLogStream", "logs:PutLogEvents", "secretsmanager:GetSecretValue",
)
ECR_PUSH_ACTIONS: tuple[str, ...] = (
    "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage",
)
# The default of `[precheck] deploy_role` (name or ARN; {stack} = stack.name); the check reads the environment's.
DEPLOY_ROLE_PATTERN = PrecheckSection().deploy_role
# Actions authorised against "*" only (no resource type in IAM).
_GLOBAL_ACTIONS = {"ecr:getauthorizationtoken"}
# The simulator is not available / not permitted: the check says so instead of guessing.
# (ResponseParserError: an emulator without the action answers 500 with an HTML page.)
_UNAVAILABLE = ("AccessDenied", "AccessDeniedException", "NotImplemented", "InternalFailure", "InternalError",
                "500", "UnknownOperationException", "InvalidAction", "ResponseParserError")


def parse_image(image: str) -> tuple[str, str, str, str]:
    """(account, region, repository, tag) of an ECR image URI; empty strings when not ECR."""
    registry, _, rest = image.partition("/")
    parts = registry.split(".")
    if len(parts) < 6 or parts[1:3] != ["dkr", "ecr"] or not rest:
        return "", "", "", ""
    name = rest.split("@", 1)[0]
    repo, sep, tag = name.rpartition(":")
    if not sep:
        repo, tag = name, ""
    return parts[0], parts[3], repo, tag


def repository_arn(image: str) -> str:
    account, region, repo, _ = parse_image(image)
    return f"arn:aws:ecr:{region}:{account}:repository/{repo}" if repo else ""


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else ""


def simulate(iam: Any, principal_arn: str, targets: Iterable[tuple[str, str]]) -> list[dict]:
    """One row per (action, resource): the simulator's decision and the statements behind it."""
    by_resource: dict[str, list[str]] = {}
    for action, resource in targets:
        by_resource.setdefault(resource, []).append(action)
    rows = []
    for resource, actions in by_resource.items():
        for ev in aws.collect(iam, "simulate_principal_policy", "EvaluationResults", PolicySourceArn=principal_arn,
                              ActionNames=actions, ResourceArns=[resource]):
            decision = ev.get("EvalDecision", "")
            matched = [m.get("SourcePolicyId", "") for m in ev.get("MatchedStatements") or []]
            rows.append({"action": ev.get("EvalActionName"), "resource": ev.get("EvalResourceName", resource),
                         "decision": "allowed" if decision == "allowed" else "denied",
                         "evaluation": decision, "statements": matched,
                         "missing_context": ev.get("MissingContextValues") or []})
    return rows


def _role_arn(iam: Any, name_or_arn: str) -> str:
    """The role's ARN, or '' when it does not exist."""
    name = name_or_arn.rsplit("/", 1)[-1]
    try:
        return aws.call(iam, "get_role", RoleName=name)["Role"]["Arn"]
    except AwsError as exc:
        if exc.code in ("NoSuchEntity", "NoSuchEntityException"):
            return ""
        raise


def _verdict(check_id: str, role: str, rows: list[dict], evidence: str) -> CheckResult:
    denied = [r["action"] for r in rows if r["decision"] == "denied"]
    for r in rows:
        r["verdict"] = "fail" if r["decision"] == "denied" else "pass"
    if denied:
        return CheckResult(check_id, "fail", f"{role} is denied {', '.join(dict.fromkeys(denied))}", rows, evidence)
    return CheckResult(check_id, "pass", f"{role} is allowed all {len(rows)} required action/resource pairs",
                       rows, evidence)


def _simulate_or_skip(check_id: str, iam: Any, role_arn: str, targets: list[tuple[str, str]],
                      evidence: str) -> CheckResult:
    try:
        rows = simulate(iam, role_arn, targets)
    except AwsError as exc:
        if exc.code not in _UNAVAILABLE:
            raise
        code = exc.code
    except ResponseParserError:  # not translated by shipbook.aws.call (yet): an emulator's HTML 500 page
        code = "ResponseParserError"
    else:
        return _verdict(check_id, role_arn.rsplit("/", 1)[-1], rows, evidence)
    return CheckResult(check_id, "skip", f"the IAM policy simulator is not available here ({code}): "
                       "permissions not evaluated", [{"action": a, "resource": r} for a, r in targets], evidence)


@check("iam.task_execution_role")
def task_execution_role(env: Environment, release: Release, iam: Any = None, sm: Any = None,
                        actions: Iterable[str] = EXECUTION_ROLE_ACTIONS,
                        taskdef_path: str = TASKDEF_PATH) -> CheckResult:
    """The execution role of the task definition being released can pull, log and read its secrets."""
    check_id = "iam.task_execution_role"
    taskdef = release.read_json(taskdef_path)
    container = container_of(taskdef, env.stack.container)
    role = str(taskdef.get("executionRoleArn") or "")
    evidence = f"executionRoleArn of {release.where(taskdef_path)}; iam:SimulatePrincipalPolicy"
    if not role:
        return CheckResult(check_id, "fail", "the task definition has no executionRoleArn", [], evidence)
    iam = iam if iam is not None else aws.client(env, "iam")
    role_arn = _role_arn(iam, role)
    if not role_arn:
        return CheckResult(check_id, "fail", f"the execution role {role} does not exist", [], evidence)
    account = _account_of(role_arn)
    repo = repository_arn(str(container.get("image", "")))
    opts = (container.get("logConfiguration") or {}).get("options") or {}
    group = opts.get("awslogs-group", "")
    region = opts.get("awslogs-region") or env.aws.region
    stream = f"{opts.get('awslogs-stream-prefix', 'ecs')}/{container.get('name', 'web')}/probe"
    log_stream = f"arn:aws:logs:{region}:{account}:log-group:{group}:log-stream:{stream}" if group else ""
    secrets = []
    refs = [r for r in secret_refs(container) if r.store == "secretsmanager"]
    if refs:
        sm = sm if sm is not None else aws.client(env, "secretsmanager")
        for ref in refs:
            secrets.append(describe_secret(sm, None, ref).get("ARN") or ref.lookup_id)
    ssm_params = [r.value_from if r.value_from.startswith("arn:") else
                  f"arn:aws:ssm:{env.aws.region}:{account}:parameter/{r.value_from.lstrip('/')}"
                  for r in secret_refs(container) if r.store == "ssm"]
    targets: list[tuple[str, str]] = [("ssm:GetParameters", arn) for arn in ssm_params]
    skipped: list[dict] = []
    for action in actions:
        low = action.lower()
        if low in _GLOBAL_ACTIONS:
            targets.append((action, "*"))
        elif low.startswith("ecr:"):
            if repo:
                targets.append((action, repo))
            else:
                skipped.append({"action": action, "decision": "n/a", "note": "the image is not in ECR"})
        elif low.startswith("logs:"):
            if log_stream:
                targets.append((action, log_stream))
            else:
                skipped.append({"action": action, "decision": "n/a", "note": "the container does not log to awslogs"})
        elif low.startswith("secretsmanager:"):
            targets += [(action, arn) for arn in secrets]
            if not secrets:
                skipped.append({"action": action, "decision": "n/a", "note": "no Secrets Manager secrets referenced"})
        else:
            targets.append((action, "*"))
    res = _simulate_or_skip(check_id, iam, role_arn, targets, evidence)
    res.details += skipped
    return res


def deploy_role(env: Environment) -> str:
    """The role the release workflow assumes: `precheck.deploy_role` with {stack} filled in."""
    return env.precheck.deploy_role.format(stack=env.stack.name)


@check("iam.ecr_push")
def ecr_push(env: Environment, release: Release, iam: Any = None, role: str = "",
             actions: Iterable[str] = ECR_PUSH_ACTIONS, taskdef_path: str = TASKDEF_PATH) -> CheckResult:
    """The deploy role (what the workflow assumes) can push the image to the app's ECR repository."""
    check_id = "iam.ecr_push"
    source = "" if role else " (precheck.deploy_role)"
    role = role or deploy_role(env)
    taskdef = release.read_json(taskdef_path)
    repo = repository_arn(str(container_of(taskdef, env.stack.container).get("image", "")))
    evidence = f"deploy role {role}{source}; repository from the image of {release.where(taskdef_path)}; " \
               "iam:SimulatePrincipalPolicy"
    if not repo:
        return CheckResult(check_id, "skip", "the image is not in ECR: no ECR push to check", [], evidence)
    iam = iam if iam is not None else aws.client(env, "iam")
    role_arn = _role_arn(iam, role)
    if not role_arn:
        return CheckResult(check_id, "fail", f"the deploy role {role} does not exist", [], evidence)
    targets = [(a, "*" if a.lower() in _GLOBAL_ACTIONS else repo) for a in actions]
    return _simulate_or_skip(check_id, iam, role_arn, targets, evidence)
