"""ECS deployment lifecycle of the twin, driven through boto3 and the agent's report endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

Twin = Any  # the `aws_twin` fixture's object (tests/sandbox/conftest.py)
CLUSTER = "shipbook-demo"
TASK_KEYS = ("family", "containerDefinitions", "cpu", "memory", "networkMode", "requiresCompatibilities",
             "executionRoleArn")


def describe(twin: Twin, service: str) -> dict[str, Any]:
    return twin.client("ecs").describe_services(cluster=CLUSTER, services=[service])["services"][0]


def report(twin: Twin, service: str, task_definition: str, running: int, healthy: int, failed: bool = False,
           reason: str = "") -> dict[str, Any]:
    status, body = twin.control("ecs/report", {
        "cluster": CLUSTER, "service": service, "taskDefinition": task_definition, "running": running,
        "healthy": healthy, "failed": failed, "reason": reason,
    })
    assert status == 200, body
    return body


def new_revision(twin: Twin, family: str = "demo-web", tag: str = "v1.0.0") -> str:
    """Register a copy of the seeded task definition with another image tag."""
    ecs = twin.client("ecs")
    seeded = ecs.describe_task_definition(taskDefinition="demo-web:1")["taskDefinition"]
    definition = {k: seeded[k] for k in TASK_KEYS} | {"family": family}
    definition["containerDefinitions"][0]["image"] = f"{twin.facts['repository_uri']}:{tag}"
    return str(ecs.register_task_definition(**definition)["taskDefinition"]["taskDefinitionArn"])


def messages(service: dict[str, Any]) -> list[str]:
    return [e["message"] for e in service["events"]]


@pytest.fixture(scope="module")
def breaker_service(aws_twin: Twin) -> dict[str, str]:
    """A second service created by CreateService (circuit breaker with rollback), steady on revision 1."""
    first = new_revision(aws_twin, family="breaker-web", tag="v0.9.0")
    ecs = aws_twin.client("ecs")
    ecs.create_service(
        cluster=CLUSTER, serviceName="breaker-web", taskDefinition=first, desiredCount=1, launchType="FARGATE",
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True},
                                 "maximumPercent": 200, "minimumHealthyPercent": 100},
    )
    report(aws_twin, "breaker-web", first, running=1, healthy=1)
    assert describe(aws_twin, "breaker-web")["deployments"][0]["rolloutState"] == "COMPLETED"
    return {"name": "breaker-web", "first": first}


def test_seeded_service_completes_once_the_agent_reports_it_healthy(aws_twin: Twin) -> None:
    seeded = aws_twin.facts["task_definition_arn"]
    before = describe(aws_twin, "demo-web")
    assert [d["rolloutState"] for d in before["deployments"]] == ["IN_PROGRESS"]
    report(aws_twin, "demo-web", seeded, running=1, healthy=0)
    starting = describe(aws_twin, "demo-web")
    assert (starting["runningCount"], starting["pendingCount"]) == (1, 0)
    assert starting["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    report(aws_twin, "demo-web", seeded, running=1, healthy=1)
    steady = describe(aws_twin, "demo-web")
    assert [(d["status"], d["rolloutState"]) for d in steady["deployments"]] == [("PRIMARY", "COMPLETED")]
    assert messages(steady)[0] == "(service demo-web) has reached a steady state."


def test_update_service_rolls_out_to_completed(aws_twin: Twin, wait_for: Callable[..., Any]) -> None:
    report(aws_twin, "demo-web", aws_twin.facts["task_definition_arn"], running=1, healthy=1)
    old = describe(aws_twin, "demo-web")["taskDefinition"]
    new = new_revision(aws_twin)
    updated = aws_twin.client("ecs").update_service(cluster=CLUSTER, service="demo-web", taskDefinition=new)["service"]
    deployments = updated["deployments"]
    assert [(d["status"], d["taskDefinition"], d["rolloutState"]) for d in deployments] == [
        ("PRIMARY", new, "IN_PROGRESS"), ("ACTIVE", old, "COMPLETED")]
    primary_id = deployments[0]["id"]
    assert deployments[0]["rolloutStateReason"] == f"ECS deployment {primary_id} in progress."

    report(aws_twin, "demo-web", new, running=1, healthy=0)
    both = describe(aws_twin, "demo-web")
    assert both["runningCount"] == 2 and both["deployments"][0]["runningCount"] == 1
    health = aws_twin.client("elbv2").describe_target_health(TargetGroupArn=aws_twin.facts["target_group_arn"])
    assert sorted(t["TargetHealth"]["State"] for t in health["TargetHealthDescriptions"]) == ["healthy", "initial"]

    report(aws_twin, "demo-web", new, running=1, healthy=1)
    done = describe(aws_twin, "demo-web")
    assert [(d["id"], d["status"], d["rolloutState"]) for d in done["deployments"]] == [
        (primary_id, "PRIMARY", "COMPLETED")]
    assert done["deployments"][0]["rolloutStateReason"] == f"ECS deployment {primary_id} completed."
    assert (done["taskDefinition"], done["runningCount"], done["pendingCount"]) == (new, 1, 0)
    events = messages(done)
    assert events[:2] == ["(service demo-web) has reached a steady state.",
                          f"(service demo-web) (deployment {primary_id}) deployment completed."]
    assert any(m.startswith("(service demo-web) has started 1 tasks: (task ") for m in events)
    assert any(m.startswith("(service demo-web) registered 1 targets in (target-group ") for m in events)
    assert all({"id", "createdAt", "message"} <= set(e) for e in done["events"])
    stamps = [e["createdAt"] for e in done["events"]]
    assert stamps == sorted(stamps, reverse=True)
    health = aws_twin.client("elbv2").describe_target_health(TargetGroupArn=aws_twin.facts["target_group_arn"])
    assert [t["TargetHealth"]["State"] for t in health["TargetHealthDescriptions"]] == ["healthy"]


def test_failed_tasks_trip_the_circuit_breaker_and_roll_back(aws_twin: Twin, breaker_service: dict[str, str]) -> None:
    name, first = breaker_service["name"], breaker_service["first"]
    bad = new_revision(aws_twin, family="breaker-web", tag="v1.1.0")
    aws_twin.client("ecs").update_service(cluster=CLUSTER, service=name, taskDefinition=bad)
    for _ in range(2):
        report(aws_twin, name, bad, running=0, healthy=0, failed=True, reason="Essential container in task exited")
    assert describe(aws_twin, name)["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    report(aws_twin, name, bad, running=0, healthy=0, failed=True, reason="Essential container in task exited")

    service = describe(aws_twin, name)
    by_state = {(d["status"], d["rolloutState"]): d for d in service["deployments"]}
    failed = by_state[("ACTIVE", "FAILED")]
    assert failed["taskDefinition"] == bad and failed["failedTasks"] == 3
    assert failed["rolloutStateReason"] == "ECS deployment circuit breaker: tasks failed to start."
    rollback = by_state[("PRIMARY", "IN_PROGRESS")]
    assert rollback["taskDefinition"] == first and service["taskDefinition"] == first
    assert service["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    events = messages(service)
    assert f"(service {name}) (deployment {failed['id']}) deployment failed: tasks failed to start." in events
    assert any(m.startswith(f"(service {name}) rolling back to deployment ecs-svc/") for m in events)

    report(aws_twin, name, first, running=1, healthy=1)
    after = describe(aws_twin, name)
    assert [(d["id"], d["taskDefinition"], d["rolloutState"]) for d in after["deployments"]] == [
        (rollback["id"], first, "COMPLETED")]


def test_without_the_circuit_breaker_a_failing_rollout_keeps_trying(aws_twin: Twin) -> None:
    first = new_revision(aws_twin, family="plain-web", tag="v0.9.0")
    ecs = aws_twin.client("ecs")
    ecs.create_service(cluster=CLUSTER, serviceName="plain-web", taskDefinition=first, desiredCount=1)
    report(aws_twin, "plain-web", first, running=1, healthy=1)
    bad = new_revision(aws_twin, family="plain-web", tag="v1.1.0")
    ecs.update_service(cluster=CLUSTER, service="plain-web", taskDefinition=bad)
    for _ in range(4):
        report(aws_twin, "plain-web", bad, running=0, healthy=0, failed=True, reason="exit 1")
    service = describe(aws_twin, "plain-web")
    primary = service["deployments"][0]
    assert service["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": False, "rollback": False}
    assert (primary["taskDefinition"], primary["rolloutState"], primary["failedTasks"]) == (bad, "IN_PROGRESS", 4)
    assert "(service plain-web) is unable to consistently start tasks successfully" in " ".join(messages(service))


def test_stack_update_with_a_new_image_tag_starts_a_deployment(aws_twin: Twin) -> None:
    cloudformation = aws_twin.client("cloudformation")
    before = describe(aws_twin, "demo-web")
    cloudformation.update_stack(
        StackName="shipbook-demo", UsePreviousTemplate=True, Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[{"ParameterKey": "ImageTag", "ParameterValue": "v1.2.0"},
                    {"ParameterKey": "AlarmPeriod", "UsePreviousValue": True}],
    )
    stack = cloudformation.describe_stacks(StackName="shipbook-demo")["Stacks"][0]
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    after = describe(aws_twin, "demo-web")
    assert after["taskDefinition"] != before["taskDefinition"]
    assert after["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    image = aws_twin.client("ecs").describe_task_definition(taskDefinition=after["taskDefinition"])[
        "taskDefinition"]["containerDefinitions"][0]["image"]
    assert image.endswith("/demo-app:v1.2.0")
    report(aws_twin, "demo-web", after["taskDefinition"], running=1, healthy=1)
    assert describe(aws_twin, "demo-web")["deployments"][0]["rolloutState"] == "COMPLETED"
    events = cloudformation.describe_stack_events(StackName="shipbook-demo")["StackEvents"]
    latest = [(e["LogicalResourceId"], e["ResourceStatus"]) for e in events][:6]
    assert latest == [("shipbook-demo", "UPDATE_COMPLETE"),
                      ("shipbook-demo", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
                      ("Service", "UPDATE_COMPLETE"), ("Service", "UPDATE_IN_PROGRESS"),
                      ("TaskDefinition", "UPDATE_COMPLETE"), ("TaskDefinition", "UPDATE_IN_PROGRESS")]
    assert any(e["LogicalResourceId"] == "Database" and e["ResourceStatus"] == "CREATE_COMPLETE" for e in events)
