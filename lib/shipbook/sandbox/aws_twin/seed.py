"""Seed the AWS twin: the `shipbook-demo` stack from the fixture template, then its out-of-band parts.

The template (`fixture/template.yaml`, also the demo app's `infra/template.yaml`) creates every
resource; the twin's CloudFormation models cover the types moto lacks. What a real account gets
outside CloudFormation is done here with ordinary API calls: the DATABASE_URL secret's value
(PutSecretValue) and the deployed image in ECR (PutImage). Only boto3 is used, so this works
against any endpoint that speaks AWS. Secret values are never returned or logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from shipbook.errors import InfraError
from shipbook.sandbox.loopback import require_loopback

log = logging.getLogger(__name__)

ACCOUNT_ID = "123456789012"
REGION = "ap-northeast-1"
STACK_NAME = "shipbook-demo"
IMAGE_TAG = "v0.9.0"
REPOSITORY = "demo-app"
TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "fixture" / "template.yaml"
DEFAULT_PARAMETERS = {"ImageTag": IMAGE_TAG, "AlarmPeriod": "10"}
DATABASE_URL_NAME = "shipbook-demo/DATABASE_URL"
DB_INSTANCE = "shipbook-demo-db"
CREDENTIALS = ("testing", "testing")  # the twin's dummy access key id and secret
_DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE")


def session(endpoint_url: str) -> Any:
    """Clients for the twin: dummy credentials, the twin's region, its endpoint (loopback only)."""
    require_loopback(endpoint_url, "seed endpoint")
    boto = boto3.session.Session(*CREDENTIALS, region_name=REGION)

    def client(name: str) -> Any:
        return boto.client(name, endpoint_url=endpoint_url)

    return client


def image_manifest(tag: str) -> str:
    """A Docker v2 manifest whose digests are derived from the tag (stable across seeds)."""

    def digest(part: str) -> str:
        return "sha256:" + hashlib.sha256(f"demo-app:{tag}:{part}".encode()).hexdigest()

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1469,
                       "digest": digest("config")},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 29_124_581,
                 "digest": digest("base")},
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 4_213_002,
                 "digest": digest("app")},
            ],
        }
    )


def push_image(client: Any, tag: str) -> str:
    """PutImage of `tag` in the demo repository (no-op if present); returns the image digest."""
    ecr = client("ecr")
    try:
        found = ecr.batch_get_image(repositoryName=REPOSITORY, imageIds=[{"imageTag": tag}])["images"]
    except ClientError as exc:
        raise InfraError(f"ECR repository {REPOSITORY} is not reachable: {exc}") from exc
    if found:
        return str(found[0]["imageId"]["imageDigest"])
    image = ecr.put_image(repositoryName=REPOSITORY, imageManifest=image_manifest(tag), imageTag=tag,
                          imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json")
    return str(image["image"]["imageId"]["imageDigest"])


def _stack(cloudformation: Any) -> dict[str, Any] | None:
    try:
        return dict(cloudformation.describe_stacks(StackName=STACK_NAME)["Stacks"][0])
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def _create_stack(cloudformation: Any, parameters: dict[str, str]) -> dict[str, Any]:
    cloudformation.create_stack(
        StackName=STACK_NAME,
        TemplateBody=TEMPLATE_PATH.read_text(encoding="utf-8"),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        Tags=[{"Key": "app", "Value": "shipbook-demo"}],
    )
    stack = _stack(cloudformation)
    if not stack or stack["StackStatus"] not in _DONE:
        status = stack["StackStatus"] if stack else "missing"
        reason = stack.get("StackStatusReason", "") if stack else ""
        raise InfraError(f"stack {STACK_NAME} did not create: {status} {reason}".strip())
    return stack


def write_database_url(client: Any) -> None:
    """Give the DATABASE_URL secret its value unless it has one: the instance's endpoint, a random password.

    The runtime maps the endpoint to the instance's data (`rds_data`), so a renamed or restored
    instance is what the app reaches through the same URL, as on AWS.
    """
    secretsmanager = client("secretsmanager")
    try:
        secretsmanager.get_secret_value(SecretId=DATABASE_URL_NAME)
        return
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
    endpoint = client("rds").describe_db_instances(DBInstanceIdentifier=DB_INSTANCE)["DBInstances"][0]["Endpoint"]
    password = secrets.token_urlsafe(18)
    url = f"postgres://demo:{password}@{endpoint['Address']}:{endpoint.get('Port') or 5432}/demo"
    secretsmanager.put_secret_value(SecretId=DATABASE_URL_NAME, SecretString=url)


def _facts(client: Any, stack: dict[str, Any], digest: str) -> dict[str, Any]:
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    resources = client("cloudformation").describe_stack_resources(StackName=STACK_NAME)["StackResources"]
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId") for r in resources}
    ecs = client("ecs")
    service = ecs.describe_services(cluster="shipbook-demo", services=["demo-web"])["services"][0]
    alarms = client("cloudwatch").describe_alarms(AlarmNamePrefix="shipbook-demo-")["MetricAlarms"]
    return {
        "account": ACCOUNT_ID,
        "region": REGION,
        "stack_name": STACK_NAME,
        "stack_id": stack["StackId"],
        "cluster": "shipbook-demo",
        "service": "demo-web",
        "service_arn": service["serviceArn"],
        "task_family": "demo-web",
        "task_definition_arn": service["taskDefinition"],
        "container": "web",
        "container_port": 8000,
        "image_tag": IMAGE_TAG,
        "image": f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}:{IMAGE_TAG}",
        "image_digest": digest,
        "repository": REPOSITORY,
        "repository_uri": outputs.get("RepositoryUri"),
        "load_balancer_arn": outputs.get("LoadBalancerArn"),
        "load_balancer_dns": outputs.get("LoadBalancerDnsName"),
        "target_group_arn": outputs.get("TargetGroupArn"),
        "target_group": "demo-web-tg",
        "health_check_path": "/health/",
        "log_group": "/ecs/demo-web",
        "db_instance": DB_INSTANCE,
        "secrets": {"SECRET_KEY": physical.get("SecretKeySecret"), "DATABASE_URL": physical.get("DatabaseUrlSecret")},
        "topic_arn": outputs.get("AlarmTopicArn"),
        "subscription_arn": physical.get("AlarmEmailSubscription"),
        "alarms": sorted(a["AlarmName"] for a in alarms),
        "security_groups": {k: physical.get(k) for k in ("AlbSecurityGroup", "AppSecurityGroup", "DbSecurityGroup")},
        "vpc_id": physical.get("Vpc"),
        "task_execution_role_arn": outputs.get("TaskExecutionRoleArn"),
        "deploy_role_arn": outputs.get("DeployRoleArn"),
        "lock_table": outputs.get("LockTableName"),
        "runs_bucket": outputs.get("RunsBucketName"),
    }


def seed(endpoint_url: str, parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """Create the demo stack and its out-of-band parts on the twin; return its facts (no secrets).

    Idempotent: an existing stack is kept, and the image and secret value are only written if
    missing. `parameters` override the template parameters (defaults: ImageTag v0.9.0,
    AlarmPeriod 10 s, as the sandbox compresses time).
    """
    started = time.monotonic()
    client = session(endpoint_url)
    cloudformation = client("cloudformation")
    stack = _stack(cloudformation)
    if stack is None:
        stack = _create_stack(cloudformation, DEFAULT_PARAMETERS | (parameters or {}))
    elif stack["StackStatus"] not in _DONE:
        raise InfraError(f"stack {STACK_NAME} exists in state {stack['StackStatus']}")
    digest = push_image(client, IMAGE_TAG)
    write_database_url(client)
    facts = _facts(client, stack, digest)
    log.info("twin seeded in %.2f s: stack %s, image %s", time.monotonic() - started, STACK_NAME, facts["image"])
    return facts
