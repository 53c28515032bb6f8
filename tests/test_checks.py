"""Pre-checks: each check's pass and fail cases against a plain moto server or botocore's Stubber."""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from botocore.stub import Stubber
from shipbook import aws, checks
from shipbook.checks import env as env_checks
from shipbook.checks import iam as iam_checks
from shipbook.checks import infra
from shipbook.checks import network as net_checks
from shipbook.config import AppSection, AwsSection, Environment, HealthCheckSection, StackSection
from shipbook.errors import InputError
from support import aws_client

ACCOUNT = "123456789012"
REGION = "ap-northeast-1"
PLAINTEXT = "django-insecure-7f3a9c1e5b2d48a6b0c4e8f1d2a3b4c5e6f708192a3b4c5d"


def uid() -> str:
    return uuid.uuid4().hex[:8]


def taskdef(prefix: str, **changes) -> dict:
    """The demo app's task definition, its secrets under `prefix/`."""
    td = {
        "family": "demo-web", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "1024",
        "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/{prefix}-task-execution",
        "containerDefinitions": [{
            "name": "web", "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/demo-app:latest", "essential": True,
            "portMappings": [{"containerPort": 8000, "protocol": "tcp"}],
            "environment": [{"name": "ALLOWED_HOSTS", "value": "demo.example.com,localhost,127.0.0.1"},
                            {"name": "DJANGO_DEBUG", "value": "0"}, {"name": "LOG_LEVEL", "value": "INFO"}],
            "secrets": [
                {"name": "SECRET_KEY",
                 "valueFrom": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{prefix}/SECRET_KEY"},
                {"name": "DATABASE_URL",
                 "valueFrom": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{prefix}/DATABASE_URL"}],
            "healthCheck": {"command": ["CMD-SHELL", "curl -f http://127.0.0.1:8000/health/"], "interval": 10,
                            "timeout": 5, "retries": 3, "startPeriod": 10},
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/ecs/demo-web", "awslogs-region": REGION, "awslogs-stream-prefix": "web"}},
        }],
    }
    td.update(changes)
    return td


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def app_repo(tmp_path):
    """A git repo; `commit(files, tag=None)` commits the files (dicts are written as JSON)."""
    repo = tmp_path / "app"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.invalid")
    git(repo, "config", "user.name", "t")

    def commit(files: dict[str, object], tag: str | None = None) -> Path:
        for name, content in files.items():
            path = repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2), encoding="utf-8")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "change")
        if tag:
            git(repo, "tag", tag)
        return repo

    return commit


def make_environment(moto_url: str, repo: Path | str = ".", public_url: str = "http://127.0.0.1:8080",
                     **stack: str) -> Environment:
    return Environment(name="t", kind="sandbox", aws=AwsSection(region=REGION, endpoint_url=moto_url),
                       app=AppSection(repo=str(repo), public_url=public_url, health_path="/health/"),
                       stack=StackSection(**{"name": "shipbook-demo", "container": "web", **stack}))


def with_precheck(env: Environment, **keys) -> Environment:
    """`env` with `[precheck]` keys set, as the environment file would give them."""
    return replace(env, precheck=replace(env.precheck, **keys))


# --------------------------------------------------------------------------- the release commit


def test_release_reads_the_version_tag_when_it_exists_else_head(app_repo, moto_url):
    repo = app_repo({"infra/taskdef.json": {"v": "tagged"}}, tag="v1.0.0")
    app_repo({"infra/taskdef.json": {"v": "head"}})
    env = make_environment(moto_url, repo)
    tagged = checks.release(env, "v1.0.0")
    assert tagged.read_json("infra/taskdef.json") == {"v": "tagged"} and tagged.ref == "tag v1.0.0"
    head = checks.release(env, "v2.0.0")
    assert head.read_json("infra/taskdef.json") == {"v": "head"} and "not created yet" in head.ref
    (repo / "infra/taskdef.json").write_text("{not json")  # the working copy is never read
    assert head.read_json("infra/taskdef.json") == {"v": "head"}


def test_a_check_that_cannot_look_fails_with_the_reason_instead_of_raising(app_repo, moto_url):
    repo = app_repo({"README": "no infra here"})
    env = make_environment(moto_url, repo)
    res = env_checks.variables(env, checks.release(env, "v1.0.0"))
    assert res.verdict == "fail" and "could not be checked" in res.summary and "infra/taskdef.json" in res.summary


# --------------------------------------------------------------------------- env.variables


@pytest.fixture
def secrets_env(moto_url, app_repo):
    """A repo with the task definition and the two secrets it references, under a unique prefix."""

    def make(td_change=None, create=("SECRET_KEY", "DATABASE_URL"), public_url="http://127.0.0.1:8080"):
        prefix = f"demo-{uid()}"
        sm = aws_client(moto_url, "secretsmanager")
        for name in create:
            sm.create_secret(Name=f"{prefix}/{name}", SecretString=f"value-of-{name}-{prefix}")
        td = taskdef(prefix)
        if td_change:
            td_change(td["containerDefinitions"][0])
        repo = app_repo({"infra/taskdef.json": td})
        env = make_environment(moto_url, repo, public_url=public_url)
        return env, checks.release(env, "v1.0.0")

    return make


def _row(res, variable):
    return next(r for r in res.details if r["variable"] == variable)


def test_env_variables_pass_when_every_variable_is_defined_and_secrets_exist(secrets_env):
    env, rel = secrets_env()
    res = env_checks.variables(env, rel)
    assert res.verdict == "pass", res.summary
    assert _row(res, "SECRET_KEY")["exists"] == "yes" and "Secrets Manager" in _row(res, "SECRET_KEY")["source"]
    assert "covers 127.0.0.1" in res.summary
    assert "value-of-" not in json.dumps(asdict(res))  # metadata only


def test_env_variables_fail_when_allowed_hosts_is_missing(secrets_env):
    env, rel = secrets_env(lambda c: c.__setitem__("environment", [e for e in c["environment"]
                                                                   if e["name"] != "ALLOWED_HOSTS"]))
    res = env_checks.variables(env, rel)
    assert res.verdict == "fail" and "ALLOWED_HOSTS: missing" in res.summary


def test_env_variables_fail_on_a_plaintext_secret_and_never_show_its_value(secrets_env):
    def plaintext(c):
        c["secrets"] = [s for s in c["secrets"] if s["name"] != "SECRET_KEY"]
        c["environment"].append({"name": "SECRET_KEY", "value": PLAINTEXT})

    env, rel = secrets_env(plaintext)
    res = env_checks.variables(env, rel)
    assert res.verdict == "fail" and "SECRET_KEY: plaintext secret" in res.summary
    assert _row(res, "SECRET_KEY")["source"] == "environment (plaintext)"
    assert PLAINTEXT not in json.dumps(asdict(res)) and PLAINTEXT not in repr(checks.show(res))
    assert PLAINTEXT not in checks.show(res)._repr_html_()


def test_env_variables_fail_when_a_referenced_secret_does_not_exist(secrets_env):
    env, rel = secrets_env(create=("SECRET_KEY",))
    res = env_checks.variables(env, rel)
    assert res.verdict == "fail" and "DATABASE_URL: secret not found" in res.summary


def test_env_variables_fail_when_allowed_hosts_does_not_cover_the_public_host(secrets_env):
    env, rel = secrets_env(public_url="http://127.0.0.2:8080")
    res = env_checks.variables(env, rel)
    assert res.verdict == "fail" and "does not cover 127.0.0.2" in res.summary


def test_required_variables_are_configurable(secrets_env):
    env, rel = secrets_env()
    res = env_checks.variables(env, rel, required=(*env_checks.REQUIRED_VARIABLES, "SENTRY_DSN"))
    assert res.verdict == "fail" and "SENTRY_DSN: missing" in res.summary


def test_required_variables_come_from_the_environment_file(secrets_env):
    env, rel = secrets_env()
    env = with_precheck(env, required_variables=("SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS", "SENTRY_DSN"))
    res = env_checks.variables(env, rel)  # as the notebook calls it: no list given
    assert res.verdict == "fail" and res.summary == "SENTRY_DSN: missing"
    assert _row(res, "SENTRY_DSN")["required"] == "yes" and _row(res, "LOG_LEVEL")["required"] == ""


@pytest.mark.parametrize(("hosts", "host", "covered"), [
    (["*"], "a.example.com", True),
    (["demo.example.com"], "demo.example.com", True),
    (["demo.example.com"], "DEMO.example.com.", True),
    ([".example.com"], "example.com", True),
    ([".example.com"], "a.b.example.com", True),
    ([".example.com"], "badexample.com", False),
    (["demo.example.com", "localhost"], "127.0.0.1", False),
    ([""], "x", False),
])
def test_allowed_hosts_follow_djangos_matching(hosts, host, covered):
    assert env_checks.allowed_hosts_cover(hosts, host) is covered


@pytest.mark.parametrize(("value_from", "store", "lookup"), [
    ("arn:aws:secretsmanager:r:1:secret:app/KEY-AbCdEf", "secretsmanager",
     "arn:aws:secretsmanager:r:1:secret:app/KEY-AbCdEf"),
    ("arn:aws:secretsmanager:r:1:secret:app/DB-AbCdEf:password::", "secretsmanager",
     "arn:aws:secretsmanager:r:1:secret:app/DB-AbCdEf"),
    ("app/KEY", "secretsmanager", "app/KEY"),
    ("arn:aws:ssm:r:1:parameter/app/key", "ssm", "/app/key"),
    ("/app/key", "ssm", "/app/key"),
])
def test_secret_references_are_looked_up_by_their_secret_not_their_json_key(value_from, store, lookup):
    ref = env_checks.SecretRef("X", value_from)
    assert (ref.store, ref.lookup_id) == (store, lookup)


# --------------------------------------------------------------------------- iam.*


def _role(name: str) -> dict:
    return {"Role": {"Path": "/", "RoleName": name, "RoleId": "AROAEXAMPLE123456789",
                     "CreateDate": "2026-01-01T00:00:00Z", "Arn": f"arn:aws:iam::{ACCOUNT}:role/{name}",
                     "AssumeRolePolicyDocument": "{}"}}


def _evaluations(actions, resource, denied=()):
    return {"EvaluationResults": [
        {"EvalActionName": a, "EvalResourceName": resource,
         "EvalDecision": "implicitDeny" if a in denied else "allowed",
         "MatchedStatements": [] if a in denied else [{"SourcePolicyId": "pull-image-and-write-logs"}]}
        for a in actions], "IsTruncated": False}


@pytest.fixture
def iam_env(moto_url, app_repo):
    repo = app_repo({"infra/taskdef.json": taskdef("demo")})
    env = make_environment(moto_url, repo)
    return env, checks.release(env, "v1.0.0")


def _stub_execution_role(iam, denied=()):
    stub = Stubber(iam)
    stub.add_response("get_role", _role("demo-task-execution"), {"RoleName": "demo-task-execution"})
    role = f"arn:aws:iam::{ACCOUNT}:role/demo-task-execution"
    repo = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/demo-app"
    stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/demo-web:log-stream:web/web/probe"
    for actions, resource in ((["ecr:GetAuthorizationToken"], "*"),
                              (["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], repo),
                              (["logs:CreateLogStream", "logs:PutLogEvents"], stream),
                              (["secretsmanager:GetSecretValue"], "sm-key"),
                              (["secretsmanager:GetSecretValue"], "sm-db")):
        stub.add_response("simulate_principal_policy", _evaluations(actions, resource, denied),
                          {"PolicySourceArn": role, "ActionNames": actions, "ResourceArns": [resource]})
    return stub


class _Secrets:
    """A stand-in for the Secrets Manager client: DescribeSecret only (so a test can prove no value is read)."""

    def describe_secret(self, SecretId):
        return {"ARN": "sm-key" if "SECRET_KEY" in SecretId else "sm-db", "Name": SecretId}

    class meta:
        class service_model:
            service_name = "secretsmanager"


def test_task_execution_role_allowed_every_action_passes_with_a_table(iam_env):
    env, rel = iam_env
    iam = aws.client(env, "iam")
    with _stub_execution_role(iam) as stub:
        res = iam_checks.task_execution_role(env, rel, iam=iam, sm=_Secrets())
        stub.assert_no_pending_responses()
    assert res.verdict == "pass", res.summary
    assert {r["action"] for r in res.details} == set(iam_checks.EXECUTION_ROLE_ACTIONS)
    assert all(r["decision"] == "allowed" for r in res.details)


def test_task_execution_role_denied_an_action_fails_naming_it(iam_env):
    env, rel = iam_env
    iam = aws.client(env, "iam")
    with _stub_execution_role(iam, denied=("logs:PutLogEvents",)):
        res = iam_checks.task_execution_role(env, rel, iam=iam, sm=_Secrets())
    assert res.verdict == "fail" and "logs:PutLogEvents" in res.summary
    row = next(r for r in res.details if r["action"] == "logs:PutLogEvents")
    assert row["decision"] == "denied" and row["evaluation"] == "implicitDeny"


def test_ecr_push_checks_the_deploy_role_on_the_repository(iam_env):
    env, rel = iam_env
    iam = aws.client(env, "iam")
    stub = Stubber(iam)
    stub.add_response("get_role", _role("shipbook-demo-deploy"), {"RoleName": "shipbook-demo-deploy"})
    repo = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/demo-app"
    stub.add_response("simulate_principal_policy", _evaluations(["ecr:GetAuthorizationToken"], "*"), None)
    push = [a for a in iam_checks.ECR_PUSH_ACTIONS if a != "ecr:GetAuthorizationToken"]
    stub.add_response("simulate_principal_policy", _evaluations(push, repo, denied=("ecr:PutImage",)),
                      {"PolicySourceArn": f"arn:aws:iam::{ACCOUNT}:role/shipbook-demo-deploy", "ActionNames": push,
                       "ResourceArns": [repo]})
    with stub:
        res = iam_checks.ecr_push(env, rel, iam=iam)
    assert res.verdict == "fail" and "ecr:PutImage" in res.summary
    assert len(res.details) == len(iam_checks.ECR_PUSH_ACTIONS)


def test_a_missing_role_fails(iam_env):
    env, rel = iam_env
    res = iam_checks.ecr_push(env, rel, role=f"no-such-role-{uid()}")
    assert res.verdict == "fail" and "does not exist" in res.summary


def test_the_deploy_role_comes_from_the_environment_file(iam_env, moto_url):
    env, rel = iam_env
    missing = with_precheck(env, deploy_role=f"ci-{{stack}}-{uid()}")
    res = iam_checks.ecr_push(missing, rel)  # as the notebook calls it: no role given
    assert res.verdict == "fail" and f"the deploy role {iam_checks.deploy_role(missing)} does not exist" in res.summary
    assert iam_checks.deploy_role(missing).startswith("ci-shipbook-demo-")
    assert "(precheck.deploy_role)" in res.evidence
    name = f"shipbook-demo-gha-{uid()}"
    aws_client(moto_url, "iam").create_role(RoleName=name, AssumeRolePolicyDocument="{}")
    by_arn = with_precheck(env, deploy_role=f"arn:aws:iam::{ACCOUNT}:role/{{stack}}-gha-{name.rsplit('-', 1)[1]}")
    iam = aws.client(by_arn, "iam")
    iam.meta.events.register("needs-retry.iam.SimulatePrincipalPolicy", lambda **kw: None)
    res = iam_checks.ecr_push(by_arn, rel, iam=iam)
    assert res.verdict == "skip" and f"role/{name}" in res.evidence  # found it; the emulator cannot simulate


def test_without_a_policy_simulator_the_iam_checks_skip_and_say_why(iam_env, moto_url):
    env, rel = iam_env
    name = f"deploy-{uid()}"
    aws_client(moto_url, "iam").create_role(RoleName=name, AssumeRolePolicyDocument="{}")
    iam = aws.client(env, "iam")
    iam.meta.events.register("needs-retry.iam.SimulatePrincipalPolicy", lambda **kw: None)
    res = iam_checks.ecr_push(env, rel, iam=iam, role=name)
    assert res.verdict == "skip" and "simulator is not available" in res.summary


@pytest.mark.parametrize(("image", "parsed"), [
    ("123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/demo-app:v1",
     ("123456789012", "ap-northeast-1", "demo-app", "v1")),
    ("123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/team/app", ("123456789012", "ap-northeast-1", "team/app", "")),
    ("123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/app@sha256:ab", ("123456789012", "ap-northeast-1", "app", "")),
    ("docker.io/library/python:3.11", ("", "", "", "")),
])
def test_ecr_image_uris_parse(image, parsed):
    assert iam_checks.parse_image(image) == parsed


# --------------------------------------------------------------------------- network.security_groups


@pytest.fixture
def network(moto_url):
    """VPC with the ALB, app and DB groups wired as the template does, an ALB, a service and a DB."""
    ec2, elb, ecs, rds = (aws_client(moto_url, s) for s in ("ec2", "elbv2", "ecs", "rds"))
    n = uid()
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{z}")
               ["Subnet"]["SubnetId"] for i, z in ((0, "a"), (1, "c"))]
    sg = {role: ec2.create_security_group(GroupName=f"{role}-{n}", Description=role, VpcId=vpc)["GroupId"]
          for role in ("alb", "app", "db")}

    def ingress(group, port, cidr=None, source=None):
        perm = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
        if cidr:
            perm["IpRanges"] = [{"CidrIp": cidr}]
        else:
            perm["UserIdGroupPairs"] = [{"GroupId": sg[source]}]
        ec2.authorize_security_group_ingress(GroupId=sg[group], IpPermissions=[perm])

    ingress("alb", 80, "0.0.0.0/0")
    ingress("alb", 443, "0.0.0.0/0")
    ingress("app", 8000, source="alb")
    ingress("db", 5432, source="app")
    lb = elb.create_load_balancer(Name=f"lb-{n}", Subnets=subnets, SecurityGroups=[sg["alb"]])["LoadBalancers"][0]
    tg = elb.create_target_group(Name=f"tg-{n}", Protocol="HTTP", Port=8000, VpcId=vpc, TargetType="ip",
                                 HealthCheckPath="/health/", HealthCheckIntervalSeconds=10)["TargetGroups"][0]
    elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Port=80, Protocol="HTTP",
                        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])
    ecs.create_cluster(clusterName=f"cl-{n}")
    cur = taskdef("demo")
    cur["containerDefinitions"][0]["image"] = cur["containerDefinitions"][0]["image"].replace(":latest", ":v0.9.0")
    cur["memory"] = "512"
    td = ecs.register_task_definition(**cur)["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=f"cl-{n}", serviceName="demo-web", taskDefinition=td, desiredCount=1,
                       networkConfiguration={"awsvpcConfiguration": {"subnets": subnets,
                                                                     "securityGroups": [sg["app"]]}},
                       loadBalancers=[{"targetGroupArn": tg["TargetGroupArn"], "containerName": "web",
                                       "containerPort": 8000}])
    rds.create_db_instance(DBInstanceIdentifier=f"db-{n}", Engine="postgres", DBInstanceClass="db.t4g.micro",
                           AllocatedStorage=20, VpcSecurityGroupIds=[sg["db"]], MasterUsername="demo",
                           MasterUserPassword="not-a-secret-1")
    env = make_environment(moto_url, cluster=f"cl-{n}", service="demo-web", target_group=f"tg-{n}",
                           db_instance=f"db-{n}")
    return {"env": env, "sg": sg, "ingress": ingress, "tg": tg, "ec2": ec2}


def test_security_groups_as_the_template_has_them_pass(network):
    res = net_checks.security_groups(network["env"])
    assert res.verdict == "pass", res.summary
    assert len(res.details) == 4 and {r["ports"] for r in res.details} == {"80", "443", "8000", "5432"}


def test_a_world_open_port_outside_the_list_fails(network):
    network["ingress"]("app", 22, "0.0.0.0/0")
    res = net_checks.security_groups(network["env"])
    assert res.verdict == "fail" and "tcp/22 from world (0.0.0.0/0)" in res.summary
    assert sum(r["verdict"] == "fail" for r in res.details) == 1


def test_the_database_reachable_from_elsewhere_fails_and_an_odd_private_rule_warns(network):
    network["ingress"]("db", 5432, "10.0.0.0/8")
    res = net_checks.security_groups(network["env"])
    assert res.verdict == "fail" and "5432 from 10.0.0.0/8" in res.summary
    network["ec2"].revoke_security_group_ingress(GroupId=network["sg"]["db"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    network["ingress"]("app", 9000, "10.0.0.0/16")
    res = net_checks.security_groups(network["env"])
    assert res.verdict == "warn" and "9000" in res.summary


def test_the_allowed_list_is_configurable_in_a_compact_form(network):
    network["ingress"]("app", 22, "0.0.0.0/0")
    allowed = [*net_checks.DEFAULT_ALLOWED, "app tcp/22 world"]
    assert net_checks.security_groups(network["env"], allowed=allowed).verdict == "pass"


def test_the_allowed_list_comes_from_the_environment_file(network):
    network["ingress"]("app", 22, "0.0.0.0/0")
    env = with_precheck(network["env"], allowed_ingress=(*network["env"].precheck.allowed_ingress, "app tcp/22 world"))
    res = net_checks.security_groups(env)  # as the notebook calls it: no list given
    assert res.verdict == "pass", res.summary
    assert "allowed (precheck.allowed_ingress): " in res.evidence and "app tcp/22 world" in res.evidence
    https_only = with_precheck(network["env"], allowed_ingress=("alb tcp/443 world", "app tcp/container alb",
                                                                "db tcp/5432 app", "app tcp/22 world"))
    res = net_checks.security_groups(https_only)
    assert res.verdict == "fail" and res.summary.startswith("tcp/80 from world (0.0.0.0/0) on alb ")


@pytest.mark.parametrize("text", ["alb 80 world", "web tcp/80 world", "alb tcp/x world", "alb tcp/80 nowhere",
                                  "alb tcp/container-90 world", "alb tcp/70000 world"])
def test_a_malformed_allowance_is_an_input_error(text):
    with pytest.raises(InputError):
        net_checks.Allowance.parse(text)


# --------------------------------------------------------------------------- infra.ecs / alb / scaling


def test_ecs_diff_shows_image_memory_and_variable_names_only(network, app_repo):
    new = taskdef("demo")
    c = new["containerDefinitions"][0]
    c["environment"] = [e for e in c["environment"] if e["name"] != "LOG_LEVEL"]
    c["environment"].append({"name": "FEATURE_X", "value": "on"})
    repo = app_repo({"infra/taskdef.json": new})
    env = make_environment(network["env"].aws.endpoint_url, repo, **{
        k: getattr(network["env"].stack, k) for k in ("cluster", "service", "target_group", "db_instance")})
    res = infra.ecs(env, checks.release(env, "v1.0.0"))
    rows = {r["field"]: r for r in res.details}
    assert rows["image"]["current"].endswith(":v0.9.0") and rows["image"]["release"].endswith(":v1.0.0")
    assert rows["task memory"]["current"] == "512" and rows["task memory"]["release"] == "1024"
    assert rows["environment (names)"]["note"] == "removed: LOG_LEVEL; added: FEATURE_X"
    assert res.verdict == "warn" and "removed: LOG_LEVEL" in res.summary
    assert "INFO" not in json.dumps(asdict(res))  # names, never values


def test_ecs_diff_without_differences_passes(network, app_repo):
    same = taskdef("demo", memory="512")
    repo = app_repo({"infra/taskdef.json": same})
    env = make_environment(network["env"].aws.endpoint_url, repo, **{
        k: getattr(network["env"].stack, k) for k in ("cluster", "service")})
    res = infra.ecs(env, checks.release(env, "v0.9.0"))
    assert res.verdict == "pass" and res.summary == "no difference"


class _Resp:
    def __init__(self, status):
        self.status_code = status


def test_alb_health_check_matches_and_the_path_answers(network, moto_url):
    aws_client(moto_url, "elbv2").register_targets(TargetGroupArn=network["tg"]["TargetGroupArn"],
                                                   Targets=[{"Id": "10.0.0.5", "Port": 8000}])
    seen = []
    res = infra.alb(network["env"], http_get=lambda url, **kw: seen.append(url) or _Resp(200))
    assert res.verdict == "pass", res.summary
    assert seen == ["http://127.0.0.1:8080/health/"]


def test_alb_wrong_path_or_failing_health_endpoint_fails(network, moto_url):
    aws_client(moto_url, "elbv2").modify_target_group(TargetGroupArn=network["tg"]["TargetGroupArn"],
                                                      HealthCheckPath="/")
    res = infra.alb(network["env"], http_get=lambda url, **kw: _Resp(503))
    assert res.verdict == "fail"
    assert "health check path" in res.summary and "does not answer" in res.summary


def test_alb_health_check_settings_are_compared_with_the_environment_file(network, moto_url):
    aws_client(moto_url, "elbv2").register_targets(TargetGroupArn=network["tg"]["TargetGroupArn"],
                                                   Targets=[{"Id": "10.0.0.5", "Port": 8000}])
    tg = aws_client(moto_url, "elbv2").describe_target_groups(Names=[network["env"].stack.target_group])[
        "TargetGroups"][0]
    same = HealthCheckSection(matcher=tg["Matcher"]["HttpCode"], interval=tg["HealthCheckIntervalSeconds"],
                              timeout=tg["HealthCheckTimeoutSeconds"], healthy_threshold=tg["HealthyThresholdCount"],
                              unhealthy_threshold=tg["UnhealthyThresholdCount"])
    res = infra.alb(with_precheck(network["env"], health_check=same), http_get=lambda url, **kw: _Resp(200))
    assert res.verdict == "pass", res.summary
    assert "(matcher, interval, timeout, healthy_threshold, unhealthy_threshold too)" in res.summary
    drifted = replace(same, interval=tg["HealthCheckIntervalSeconds"] + 20, unhealthy_threshold=9)
    res = infra.alb(with_precheck(network["env"], health_check=drifted), http_get=lambda url, **kw: _Resp(200))
    rows = {r["setting"]: r for r in res.details}
    assert res.verdict == "fail"
    assert "interval (s): differs from precheck.health_check.interval" in res.summary
    assert "unhealthy threshold: differs from precheck.health_check.unhealthy_threshold" in res.summary
    assert (rows["interval (s)"]["actual"], rows["interval (s)"]["expected"]) == (10, 30)
    assert rows["healthy threshold"]["verdict"] == "pass"
    only = HealthCheckSection(matcher="200-299")  # only the keys given are compared
    res = infra.alb(with_precheck(network["env"], health_check=only), http_get=lambda url, **kw: _Resp(204))
    assert res.verdict == "fail" and res.summary == "success codes: differs from precheck.health_check.matcher"
    assert {r["setting"]: r["verdict"] for r in res.details}["GET http://127.0.0.1:8080/health/"] == "pass"
    assert {r["setting"]: r["expected"] for r in res.details}["interval (s)"] == ""


def test_scaling_reports_min_max_policies_and_alarms(network, moto_url):
    env = network["env"]
    aas = aws_client(moto_url, "application-autoscaling")
    rid = f"service/{env.stack.cluster}/{env.stack.service}"
    assert infra.scaling(env).verdict == "warn"  # no scalable target yet
    aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=rid, ScalableDimension="ecs:service:DesiredCount",
                                 MinCapacity=1, MaxCapacity=4)
    res = infra.scaling(env)
    assert res.verdict == "warn" and "never scales" in res.summary
    aas.put_scaling_policy(PolicyName="cpu", ServiceNamespace="ecs", ResourceId=rid,
                           ScalableDimension="ecs:service:DesiredCount", PolicyType="TargetTrackingScaling",
                           TargetTrackingScalingPolicyConfiguration={
                               "TargetValue": 60.0,
                               "PredefinedMetricSpecification": {
                                   "PredefinedMetricType": "ECSServiceAverageCPUUtilization"}})
    res = infra.scaling(env)
    assert res.verdict == "pass", res.summary
    assert "min 1, max 4, desired 1" in res.summary
    policy = next(r for r in res.details if r["item"] == "policy cpu")
    assert "ECSServiceAverageCPUUtilization target 60" in policy["value"] and "AlarmHigh" in policy["value"]
    assert infra.scaling(env, min_capacity=2).verdict == "fail"


# --------------------------------------------------------------------------- infra.cloudformation

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  ImageTag:
    Type: String
    Default: v0.9.0
Resources:
  Database:
    Type: AWS::RDS::DBInstance
    Properties:
      DBInstanceIdentifier: {db}
      Engine: postgres
      DBInstanceClass: db.t4g.micro
      AllocatedStorage: "20"
      MasterUsername: demo
      ManageMasterUserPassword: true
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: {topic}
      DisplayName:
        Ref: ImageTag
"""

EXTRA = """\
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: {queue}
"""


@pytest.fixture
def stack(moto_url, app_repo):
    n = uid()
    body = TEMPLATE.format(db=f"db-{n}", topic=f"t-{n}")
    cfn = aws_client(moto_url, "cloudformation")
    cfn.create_stack(StackName=f"st-{n}", TemplateBody=body, Parameters=[{"ParameterKey": "ImageTag",
                                                                          "ParameterValue": "v0.9.0"}])

    def release_with(template: str):
        repo = app_repo({"infra/template.yaml": template})
        env = make_environment(moto_url, repo, name=f"st-{n}")
        return env, checks.release(env, "v1.0.0")

    return {"body": body, "n": n, "release_with": release_with, "cfn": cfn, "name": f"st-{n}"}


def test_cloudformation_unchanged_template_passes(stack):
    env, rel = stack["release_with"](stack["body"])
    res = infra.cloudformation(env, rel, sleep=lambda s: None)
    assert res.verdict == "pass" and "changes nothing" in res.summary


def test_cloudformation_lists_changes_and_deletes_the_change_set(stack):
    env, rel = stack["release_with"](stack["body"] + EXTRA.format(queue=f"q-{stack['n']}"))
    res = infra.cloudformation(env, rel, sleep=lambda s: None)
    assert res.verdict == "pass", res.summary
    assert [(r["action"], r["resource"]) for r in res.details] == [("Add", "Queue")]
    assert stack["cfn"].list_change_sets(StackName=stack["name"])["Summaries"] == []


def test_cloudformation_removing_the_database_fails(stack):
    body = stack["body"]
    without_db = body[:body.index("  Database:")] + body[body.index("  Topic:"):]
    env, rel = stack["release_with"](without_db)
    res = infra.cloudformation(env, rel, sleep=lambda s: None)
    assert res.verdict == "fail" and "Remove Database: a stateful resource would be deleted" in res.summary
    assert stack["cfn"].list_change_sets(StackName=stack["name"])["Summaries"] == []


def test_cloudformation_missing_stack_fails(moto_url, app_repo):
    repo = app_repo({"infra/template.yaml": TEMPLATE.format(db="x", topic="y")})
    env = make_environment(moto_url, repo, name=f"nope-{uid()}")
    res = infra.cloudformation(env, checks.release(env, "v1.0.0"))
    assert res.verdict == "fail" and "does not exist" in res.summary


@pytest.mark.parametrize(("change", "verdict"), [
    ({"Action": "Remove", "ResourceType": "AWS::RDS::DBInstance"}, "fail"),
    ({"Action": "Modify", "ResourceType": "AWS::RDS::DBInstance", "Replacement": "True"}, "fail"),
    ({"Action": "Modify", "ResourceType": "AWS::ElasticLoadBalancingV2::TargetGroup", "Replacement": "True"}, "fail"),
    ({"Action": "Modify", "ResourceType": "AWS::ElasticLoadBalancingV2::LoadBalancer", "Replacement": "Conditional"},
     "warn"),
    ({"Action": "Modify", "ResourceType": "AWS::RDS::DBInstance"}, "warn"),  # replacement not reported (moto)
    ({"Action": "Modify", "ResourceType": "AWS::RDS::DBInstance", "Replacement": "False"}, "pass"),
    ({"Action": "Modify", "ResourceType": "AWS::ECS::TaskDefinition", "Replacement": "True"}, "pass"),
    ({"Action": "Remove", "ResourceType": "AWS::SNS::Topic"}, "pass"),
    ({"Action": "Add", "ResourceType": "AWS::RDS::DBInstance"}, "pass"),
])
def test_stateful_replacement_and_removal_are_flagged(change, verdict):
    assert infra.classify_change(change)[0] == verdict


def test_change_set_replacing_the_database_fails_with_stubbed_aws(moto_url, app_repo):
    repo = app_repo({"infra/template.yaml": "Resources: {}\n"})
    env = make_environment(moto_url, repo, name="demo")
    rel = checks.release(env, "v1.0.0")
    cfn = aws.client(env, "cloudformation")
    stub = Stubber(cfn)
    stub.add_response("describe_stacks", {"Stacks": [{"StackName": "demo", "StackStatus": "UPDATE_COMPLETE",
                                                      "CreationTime": "2026-01-01T00:00:00Z",
                                                      "Parameters": [{"ParameterKey": "ImageTag",
                                                                      "ParameterValue": "v0.9.0"}]}]})
    stub.add_response("validate_template", {"Parameters": [{"ParameterKey": "ImageTag"}]})
    stub.add_response("create_change_set", {"Id": "cs-1"})
    stub.add_response("describe_change_set", {"Status": "CREATE_PENDING"})
    stub.add_response("describe_change_set", {"Status": "CREATE_COMPLETE", "Changes": [
        {"Type": "Resource", "ResourceChange": {"Action": "Modify", "LogicalResourceId": "Database",
                                                "ResourceType": "AWS::RDS::DBInstance", "Replacement": "True"}}]})
    stub.add_response("delete_change_set", {}, {"StackName": "demo", "ChangeSetName": "cs-1"})
    slept = []
    with stub:
        res = infra.cloudformation(env, rel, cfn=cfn, sleep=slept.append)
        stub.assert_no_pending_responses()
    assert res.verdict == "fail" and "Modify Database: a stateful resource would be replaced" in res.summary
    assert slept == [2.0]


# --------------------------------------------------------------------------- the board and the gate


def test_board_has_every_checklist_row_and_unautomated_rows_skip_with_a_reason():
    board = checks.Board()
    rows = board.summary().rows
    assert [r["id"] for r in rows] == [r.id for r in checks.SECTION_1]
    by_id = {r["id"]: r for r in rows}
    assert by_id["code.review"]["verdict"] == "skip" and by_id["code.review"]["summary"] == checks.NOT_AUTOMATED
    assert by_id["db.backup"]["verdict"] == "skip" and "backup" in by_id["db.backup"]["summary"]
    assert by_id["env.variables"]["verdict"] == "pending"
    html = board.summary()._repr_html_()
    assert "本番環境の環境変数設定" in html and "production environment variables" in html


def test_gate_fails_an_automated_check_that_never_ran_and_an_unsigned_manual_item():
    board = checks.Board()
    for cid in checks.PRECHECK_AUTOMATED[1:]:
        board.add(checks.CheckResult(cid, "pass", "fine"))
    board.add(checks.CheckResult("code.review", "manual", "2 commits without review"))
    final = {r.id: r for r in board.finish("")}
    assert final["env.variables"].verdict == "fail" and "did not run" in final["env.variables"].summary
    assert final["code.review"].verdict == "fail" and 'signoffs="code.review=NAME"' in final["code.review"].summary
    assert final["code.tests"].verdict == "skip"


def test_a_signed_manual_item_passes_and_the_sign_off_is_recorded():
    board = checks.Board(automated=())
    board.add(checks.CheckResult("code.review", "manual", "2 commits without review"))
    final = {r.id: r for r in board.finish("code.review=alice, code.shared=bob")}
    assert final["code.review"].verdict == "pass" and "signed off by alice" in final["code.review"].summary
    assert board.facts() == {"precheck_signoffs": {"code.review": "alice", "code.shared": "bob"}}


@pytest.mark.parametrize("text", ["code.review", "=alice", "code.review="])
def test_a_malformed_sign_off_is_an_input_error(text):
    with pytest.raises(InputError):
        checks.parse_signoffs(text)


def test_a_check_result_rejects_an_unknown_verdict():
    with pytest.raises(ValueError, match="verdict"):
        checks.CheckResult("x", "ok", "")


def test_the_result_round_trips_through_the_runner_json():
    res = checks.CheckResult("env.variables", "fail", "x", [{"a": 1}], "taskdef")
    assert json.loads(json.dumps(asdict(res))) == asdict(res)
    assert copy.deepcopy(res) == res


def test_execution_role_targets_are_the_real_resources_including_ssm_parameters(moto_url, app_repo, monkeypatch):
    td = taskdef("demo")
    td["containerDefinitions"][0]["secrets"].append({"name": "API_TOKEN", "valueFrom": "/demo/api-token"})
    repo = app_repo({"infra/taskdef.json": td})
    env = make_environment(moto_url, repo)
    seen = []
    monkeypatch.setattr(iam_checks, "_role_arn", lambda iam, name: f"arn:aws:iam::{ACCOUNT}:role/{name}")
    monkeypatch.setattr(iam_checks, "simulate", lambda iam, arn, targets: seen.extend(targets) or [])
    iam_checks.task_execution_role(env, checks.release(env, "v1.0.0"), iam=object(), sm=_Secrets())
    assert ("ssm:GetParameters", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/demo/api-token") in seen
    assert ("secretsmanager:GetSecretValue", "sm-key") in seen and ("ecr:GetAuthorizationToken", "*") in seen
