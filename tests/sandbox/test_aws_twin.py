"""The AWS twin process: seeding, shared state across processes, the control API, loopback only."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
Twin = Any  # the `aws_twin` fixture's object (tests/sandbox/conftest.py)

TEMPLATE_TYPES = {
    "AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::SecurityGroup", "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::ElasticLoadBalancingV2::TargetGroup", "AWS::ElasticLoadBalancingV2::Listener", "AWS::ECS::Cluster",
    "AWS::ECS::Service", "AWS::ECS::TaskDefinition", "AWS::ECR::Repository", "AWS::RDS::DBInstance",
    "AWS::CloudWatch::Alarm", "AWS::SNS::Topic", "AWS::SNS::Subscription", "AWS::Logs::LogGroup",
    "AWS::ApplicationAutoScaling::ScalableTarget", "AWS::ApplicationAutoScaling::ScalingPolicy", "AWS::IAM::Role",
    "AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::SecretsManager::Secret",
}


def test_seed_creates_every_resource_of_the_template(aws_twin: Twin) -> None:
    resources = aws_twin.client("cloudformation").describe_stack_resources(StackName="shipbook-demo")
    types = {r["ResourceType"] for r in resources["StackResources"]}
    assert TEMPLATE_TYPES <= types
    facts = aws_twin.facts
    assert facts["cluster"] == "shipbook-demo" and facts["service"] == "demo-web"
    assert facts["image"] == "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/demo-app:v0.9.0"
    assert sorted(facts["alarms"]) == ["shipbook-demo-5xx", "shipbook-demo-latency-p99",
                                       "shipbook-demo-unhealthy-hosts"]
    assert "DATABASE_URL" in json.dumps(facts) and "postgres://" not in json.dumps(facts)  # names, never values


def test_seeded_task_definition_and_secrets(aws_twin: Twin) -> None:
    ecs = aws_twin.client("ecs")
    service = ecs.describe_services(cluster="shipbook-demo", services=["demo-web"])["services"][0]
    assert service["launchType"] == "FARGATE"
    assert service["loadBalancers"][0]["containerPort"] == 8000
    assert service["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    # The seeded revision, not the service's current one: the ECS tests roll the shared twin forward.
    seeded = aws_twin.facts["task_definition_arn"]
    assert service["taskDefinition"].rsplit(":", 1)[0] == seeded.rsplit(":", 1)[0]
    task = ecs.describe_task_definition(taskDefinition=seeded)["taskDefinition"]
    assert task["family"] == "demo-web" and task["requiresCompatibilities"] == ["FARGATE"]
    assert task["executionRoleArn"].endswith(":role/shipbook-demo-task-execution")
    container = task["containerDefinitions"][0]
    assert container["name"] == "web" and container["image"].endswith("/demo-app:v0.9.0")
    assert {e["name"] for e in container["environment"]} >= {"APP_VERSION", "ALLOWED_HOSTS"}
    assert {s["name"] for s in container["secrets"]} == {"SECRET_KEY", "DATABASE_URL"}
    sm = aws_twin.client("secretsmanager")
    url = sm.get_secret_value(SecretId="shipbook-demo/DATABASE_URL")["SecretString"]
    endpoint = aws_twin.client("rds").describe_db_instances(DBInstanceIdentifier="shipbook-demo-db")["DBInstances"][0]
    assert url.startswith("postgres://demo:") and url.endswith(f"@{endpoint['Endpoint']['Address']}:5432/demo")
    assert len(sm.get_secret_value(SecretId="shipbook-demo/SECRET_KEY")["SecretString"]) == 50
    images = aws_twin.client("ecr").describe_images(repositoryName="demo-app")["imageDetails"]
    assert any("v0.9.0" in i.get("imageTags", []) for i in images)
    subscriptions = aws_twin.client("sns").list_subscriptions_by_topic(TopicArn=aws_twin.facts["topic_arn"])
    assert [(s["Protocol"], s["SubscriptionArn"] != "PendingConfirmation") for s in subscriptions["Subscriptions"]] \
        == [("email", True)]


def test_security_groups_open_only_what_the_contract_says(aws_twin: Twin) -> None:
    groups = aws_twin.facts["security_groups"]
    described = aws_twin.client("ec2").describe_security_groups(GroupIds=list(groups.values()))["SecurityGroups"]
    rules = {g["GroupId"]: g["IpPermissions"] for g in described}

    def ingress(group: str) -> set[tuple[int, str]]:
        found = set()
        for rule in rules[groups[group]]:
            sources = [r["CidrIp"] for r in rule.get("IpRanges", [])]
            sources += [p["GroupId"] for p in rule.get("UserIdGroupPairs", [])]
            found |= {(rule["FromPort"], source) for source in sources}
        return found

    assert ingress("AlbSecurityGroup") == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")}
    assert ingress("AppSecurityGroup") == {(8000, groups["AlbSecurityGroup"])}
    assert ingress("DbSecurityGroup") == {(5432, groups["AppSecurityGroup"])}
    database = aws_twin.client("rds").describe_db_instances(DBInstanceIdentifier="shipbook-demo-db")["DBInstances"][0]
    assert [g["VpcSecurityGroupId"] for g in database["VpcSecurityGroups"]] == [groups["DbSecurityGroup"]]
    assert (database["Engine"], database["Endpoint"]["Port"]) == ("postgres", 5432)
    assert database["PubliclyAccessible"] is False
    assert database["DeletionProtection"] and database["MasterUserSecret"]["SecretStatus"] == "active"


def test_state_written_by_one_process_is_read_by_another(aws_twin: Twin) -> None:
    writer = textwrap.dedent(f"""
        import boto3
        ddb = boto3.client("dynamodb", endpoint_url="{aws_twin.url}", region_name="ap-northeast-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        ddb.put_item(TableName="shipbook-locks", Item={{"env": {{"S": "cross-process"}}, "owner": {{"S": "writer"}}}})
    """)
    subprocess.run([sys.executable, "-c", writer], check=True, cwd=ROOT, timeout=60)
    item = aws_twin.client("dynamodb").get_item(TableName="shipbook-locks", Key={"env": {"S": "cross-process"}})
    assert item["Item"]["owner"] == {"S": "writer"}


def test_seed_is_idempotent(aws_twin: Twin) -> None:
    from shipbook.sandbox.aws_twin import seed

    again = seed.seed(aws_twin.url)
    assert again["stack_id"] == aws_twin.facts["stack_id"]
    assert again["image_digest"] == aws_twin.facts["image_digest"]


def test_control_api_rejects_bad_requests(aws_twin: Twin) -> None:
    assert aws_twin.control("faults", {"no_such_fault": True})[0] == 400
    assert aws_twin.control("faults", {"rds_snapshot_failure": "yes"})[0] == 400
    assert aws_twin.control("faults") == (200, {"rds_snapshot_failure": False})
    assert aws_twin.control("ecs/report", {"cluster": "shipbook-demo"})[0] == 400
    unknown = {"cluster": "shipbook-demo", "service": "nope", "taskDefinition": "demo-web:1", "running": 1,
               "healthy": 1, "failed": False, "reason": ""}
    assert aws_twin.control("ecs/report", unknown)[0] == 404
    assert aws_twin.control("nothing-here")[0] == 404
    status, health = aws_twin.control("health")
    assert status == 200 and health["moto"] == "5.2.5"


def test_startup_is_measured_and_within_budget(aws_twin: Twin) -> None:
    # bench/bench_aws_twin.py measures this properly; here only a loose guard against regressions
    assert 0 < aws_twin.healthy_after <= aws_twin.seeded_after < 30


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1"])
def test_refuses_a_non_loopback_host(host: str, tmp_path: Path, free_port: Callable[[], int]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shipbook.sandbox.aws_twin", "--host", host, "--port", str(free_port()),
         "--state-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr
