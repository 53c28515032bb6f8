"""RDS snapshots that take time (and can fail on a fault); IAM policy simulation from the roles' policies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

Twin = Any  # the `aws_twin` fixture's object (tests/sandbox/conftest.py)
ACCOUNT = "123456789012"
REPOSITORY_ARN = f"arn:aws:ecr:ap-northeast-1:{ACCOUNT}:repository/demo-app"


def snapshot(twin: Twin, name: str) -> dict[str, Any]:
    return twin.client("rds").describe_db_snapshots(DBSnapshotIdentifier=name)["DBSnapshots"][0]


def test_snapshot_is_creating_then_available(aws_twin: Twin, wait_for: Callable[..., Any]) -> None:
    name = f"pre-release-{uuid.uuid4().hex[:6]}"
    created = aws_twin.client("rds").create_db_snapshot(DBInstanceIdentifier="shipbook-demo-db",
                                                        DBSnapshotIdentifier=name)["DBSnapshot"]
    assert created["Status"] == "creating" and created["PercentProgress"] == 0
    seen = {snapshot(aws_twin, name)["PercentProgress"]}
    waiter = aws_twin.client("rds").get_waiter("db_snapshot_available")
    waiter.wait(DBSnapshotIdentifier=name, WaiterConfig={"Delay": 1, "MaxAttempts": 15})
    done = snapshot(aws_twin, name)
    seen.add(done["PercentProgress"])
    assert done["Status"] == "available" and done["PercentProgress"] == 100
    assert done["Engine"] == "postgres" and done["SnapshotType"] == "manual"
    events = aws_twin.client("rds").describe_events(SourceIdentifier=name, SourceType="db-snapshot")["Events"]
    assert [e["Message"] for e in events] == ["Creating manual snapshot", "Manual snapshot created"]


@pytest.fixture
def snapshot_failure(aws_twin: Twin) -> Iterator[None]:
    assert aws_twin.control("faults", {"rds_snapshot_failure": True}) == (200, {"rds_snapshot_failure": True})
    try:
        yield
    finally:
        aws_twin.control("faults", {"rds_snapshot_failure": False})


def test_snapshot_fails_under_the_fault(aws_twin: Twin, snapshot_failure: None,
                                        wait_for: Callable[..., Any]) -> None:
    name = f"doomed-{uuid.uuid4().hex[:6]}"
    aws_twin.client("rds").create_db_snapshot(DBInstanceIdentifier="shipbook-demo-db", DBSnapshotIdentifier=name)
    assert snapshot(aws_twin, name)["Status"] == "creating"
    wait_for(lambda: snapshot(aws_twin, name)["Status"] == "failed", timeout=10, what="the snapshot to fail")


def simulate(twin: Twin, role: str, actions: list[str], resources: list[str] | None = None,
             **extra: Any) -> dict[tuple[str, str], str]:
    response = twin.client("iam").simulate_principal_policy(
        PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:role/{role}", ActionNames=actions,
        **({"ResourceArns": resources} if resources else {}), **extra)
    return {(r["EvalActionName"], r["EvalResourceName"]): r["EvalDecision"] for r in response["EvaluationResults"]}


def test_task_execution_role_is_allowed_what_its_policies_say(aws_twin: Twin) -> None:
    secret_arns = list(aws_twin.facts["secrets"].values())
    partial = f"arn:aws:secretsmanager:ap-northeast-1:{ACCOUNT}:secret:shipbook-demo/SECRET_KEY"
    other = f"arn:aws:secretsmanager:ap-northeast-1:{ACCOUNT}:secret:other-app/SECRET_KEY-AbCdEf"
    role = "shipbook-demo-task-execution"
    assert simulate(aws_twin, role, ["ecr:GetAuthorizationToken"]) == {("ecr:GetAuthorizationToken", "*"): "allowed"}
    pulls = simulate(aws_twin, role, ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], [REPOSITORY_ARN])
    assert set(pulls.values()) == {"allowed"}
    reads = simulate(aws_twin, role, ["secretsmanager:GetSecretValue"], [*secret_arns, partial, other])
    assert [reads[("secretsmanager:GetSecretValue", arn)] for arn in [*secret_arns, partial, other]] == [
        "allowed", "allowed", "allowed", "implicitDeny"]
    log_arn = f"arn:aws:logs:ap-northeast-1:{ACCOUNT}:log-group:/ecs/demo-web:*"
    assert set(simulate(aws_twin, role, ["logs:CreateLogStream", "logs:PutLogEvents"], [log_arn]).values()) \
        == {"allowed"}
    denied = simulate(aws_twin, role, ["ecr:PutImage", "s3:DeleteBucket"], [REPOSITORY_ARN])
    assert set(denied.values()) == {"implicitDeny"}
    # like AWS: a statement scoped to a resource does not match the default resource "*"
    assert simulate(aws_twin, role, ["ecr:BatchGetImage"]) == {("ecr:BatchGetImage", "*"): "implicitDeny"}


def test_deploy_role_can_push_images_and_nothing_destructive(aws_twin: Twin) -> None:
    push = ["ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
            "ecr:CompleteLayerUpload", "ecr:PutImage"]
    result = simulate(aws_twin, "shipbook-demo-deploy", push, [REPOSITORY_ARN])
    assert set(result.values()) == {"allowed"}
    assert simulate(aws_twin, "shipbook-demo-deploy", ["ecr:GetAuthorizationToken"])[
        ("ecr:GetAuthorizationToken", "*")] == "allowed"
    other_repo = f"arn:aws:ecr:ap-northeast-1:{ACCOUNT}:repository/other"
    assert simulate(aws_twin, "shipbook-demo-deploy", ["ecr:PutImage", "ecr:DeleteRepository"],
                    [other_repo, REPOSITORY_ARN]) == {
        ("ecr:PutImage", other_repo): "implicitDeny", ("ecr:PutImage", REPOSITORY_ARN): "allowed",
        ("ecr:DeleteRepository", other_repo): "implicitDeny",
        ("ecr:DeleteRepository", REPOSITORY_ARN): "implicitDeny",
    }


def test_explicit_deny_wins_and_matched_statements_are_reported(aws_twin: Twin) -> None:
    iam = aws_twin.client("iam")
    role = f"t-role-{uuid.uuid4().hex[:6]}"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    iam.put_role_policy(RoleName=role, PolicyName="allow-ecr", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}))
    managed = iam.create_policy(PolicyName=f"deny-delete-{role}", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": ["ecr:Delete*", "ecr:BatchDelete?mage"], "Resource": "*"}]}))
    iam.attach_role_policy(RoleName=role, PolicyArn=managed["Policy"]["Arn"])
    response = iam.simulate_principal_policy(
        PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:role/{role}",
        ActionNames=["ecr:DescribeImages", "ECR:DeleteRepository", "ecr:BatchDeleteImage", "s3:GetObject"])
    results = {r["EvalActionName"]: r for r in response["EvaluationResults"]}
    assert {a: r["EvalDecision"] for a, r in results.items()} == {
        "ecr:DescribeImages": "allowed", "ECR:DeleteRepository": "explicitDeny",
        "ecr:BatchDeleteImage": "explicitDeny", "s3:GetObject": "implicitDeny"}
    assert [(m["SourcePolicyId"], m["SourcePolicyType"]) for m in results["ecr:DescribeImages"]["MatchedStatements"]] \
        == [("allow-ecr", "role")]
    assert [m["SourcePolicyType"] for m in results["ECR:DeleteRepository"]["MatchedStatements"]] == ["user-managed"]
    assert results["s3:GetObject"]["MatchedStatements"] == []
    extra = json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})
    assert simulate(aws_twin, role, ["s3:GetObject"], PolicyInputList=[extra]) == {("s3:GetObject", "*"): "allowed"}


def test_unknown_principal_is_an_error(aws_twin: Twin) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as error:
        simulate(aws_twin, "no-such-role", ["s3:GetObject"])
    assert error.value.response["Error"]["Code"] == "NoSuchEntity"
