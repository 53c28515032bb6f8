"""The runtime: tasks, ALB stand-in, telemetry, the ECS agent; then the whole chain with the AWS twin.

Unit tests run against plain moto (`ThreadedMotoServer`); the agent's reports are captured
instead of posted. The integration tests start the real AWS twin, the GitHub twin and the
runtime as processes: a tag push must reach COMPLETED and serve the new version, and a release
that crashes on start must end FAILED while the old version keeps serving.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from shipbook.sandbox import repo_builder
from shipbook.sandbox.runtime.agent import Agent
from shipbook.sandbox.runtime.proxy import make_proxy
from shipbook.sandbox.runtime.tasks import HealthSettings, ImageError, Task, image_tag, prepare_image
from shipbook.sandbox.runtime.telemetry import LogBuffer, Publisher, Recorder
from support import free_port, free_ports

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/demo-app:{tag}"


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def aws(url: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=url, region_name="ap-northeast-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bare repositories: healthy (v0.9.0), and crash-on-start with its main tagged v1.0.0."""
    root = tmp_path_factory.mktemp("repos")
    healthy = root / "healthy.git"
    repo_builder.build(healthy, root / "healthy-work", "healthy")
    crash = root / "crash.git"
    repo_builder.build(crash, root / "crash-work", "crash-on-start")
    subprocess.run(["git", "--git-dir", str(crash), "tag", "v1.0.0", "main"], check=True)
    return {"healthy": healthy, "crash": crash}


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[str]:
    """A plain moto server in its own process (moto's in-process backends are shared by the session)."""
    port = free_port()
    with (tmp_path / "moto.log").open("wb") as log:
        process = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1",
                                    "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ok(f"{url}/moto-api/"), 30, "moto_server")
        yield url
    finally:
        process.terminate()
        process.wait(10)


def seed_plain_moto(url: str, tag: str) -> None:
    """What the agent needs from AWS: a secret, a target group and a service on one task definition."""
    secrets = aws(url, "secretsmanager")
    secrets.create_secret(Name="shipbook-demo/SECRET_KEY", SecretString="k" * 50)
    secrets.create_secret(Name="shipbook-demo/DATABASE_URL", SecretString="postgres://demo:pw@db.invalid:5432/demo")
    ec2 = aws(url, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    aws(url, "elbv2").create_target_group(Name="demo-web-tg", Protocol="HTTP", Port=8000, VpcId=vpc,
                                          HealthCheckPath="/health/", HealthyThresholdCount=2,
                                          UnhealthyThresholdCount=2, TargetType="ip")
    ecs = aws(url, "ecs")
    ecs.create_cluster(clusterName="shipbook-demo")
    arn = ecs.register_task_definition(
        family="demo-web", cpu="256", memory="512", networkMode="awsvpc",
        containerDefinitions=[{
            "name": "web", "image": IMAGE.format(tag=tag), "essential": True,
            "environment": [{"name": "ALLOWED_HOSTS", "value": "*"}],
            "secrets": [{"name": "SECRET_KEY", "valueFrom": "shipbook-demo/SECRET_KEY"},
                        {"name": "DATABASE_URL", "valueFrom": "shipbook-demo/DATABASE_URL"}],
        }],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster="shipbook-demo", serviceName="demo-web", taskDefinition=arn, desiredCount=1)


class Answer:
    def __init__(self, body: dict[str, Any]) -> None:
        self.status_code, self.body, self.text = 200, body, "{}"

    def json(self) -> dict[str, Any]:
        return self.body


class CapturedReports:
    """Stands in for the agent's HTTP session to the twin's control API (plain moto has none):
    records the reports instead of posting them, lists no one-off tasks, and puts the database
    the DATABASE_URL names at `db.sqlite3` under `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.reports: list[dict[str, Any]] = []
        self.data_dir = data_dir
        self.hosts: list[str] = []

    def post(self, url: str, json: dict[str, Any], timeout: float) -> Any:
        assert url.endswith("/_sandbox/ecs/report")
        self.reports.append(json)
        return Answer({})

    def get(self, url: str, timeout: float, params: dict[str, str] | None = None) -> Any:
        if url.endswith("/_sandbox/ecs/tasks"):
            return Answer({"tasks": []})
        assert url.endswith("/_sandbox/rds/datafile") and params
        self.hosts.append(params["host"])
        return Answer({"instance": "db", "resourceId": "db-TEST", "status": "available",
                       "path": str(self.data_dir / "db.sqlite3")})


# ---------------------------------------------------------------------------------- unit


def test_image_tag() -> None:
    assert image_tag(IMAGE.format(tag="v1.0.0")) == "v1.0.0"
    assert image_tag("localhost:5000/demo-app") == "latest"


def test_prepare_image_from_git(repos: dict[str, Path], tmp_path: Path) -> None:
    image = prepare_image("v0.9.0", tmp_path, repos["healthy"])
    config = json.loads((image / ".image.json").read_text())
    assert config["env"]["APP_VERSION"] == "v0.9.0" and (image / "manage.py").exists()
    assert prepare_image("v0.9.0", tmp_path, None) == image  # cached
    with pytest.raises(ImageError, match="CannotPullContainerError"):
        prepare_image("v7.7.7", tmp_path, repos["healthy"])


def start_task(repos: dict[str, Path], tmp_path: Path, repo: str, tag: str) -> Task:
    image = prepare_image(tag, tmp_path, repos[repo])
    env = {"APP_VERSION": tag, "SECRET_KEY": "s" * 50, "ALLOWED_HOSTS": "*",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    task = Task(task_definition="td", tag=tag, workdir=tmp_path / "task", env=env)
    task.workdir.mkdir()
    task.start(image)
    return task


def test_task_serves_reports_health_and_usage(repos: dict[str, Path], tmp_path: Path) -> None:
    task = start_task(repos, tmp_path, "healthy", "v0.9.0")
    settings = HealthSettings(interval=0.2, healthy_threshold=2)
    try:
        def healthy() -> bool:
            task.observe(settings, time.monotonic())
            return task.healthy
        wait_for(healthy, 30, "the task to be healthy")
        assert requests.get(f"http://127.0.0.1:{task.port}/version/", timeout=5).json()["version"] == "v0.9.0"
        task.usage(time.monotonic())
        time.sleep(0.3)
        cpu, memory = task.usage(time.monotonic()) or (None, None)
        assert cpu is not None and cpu >= 0 and 0 < memory < 100
        # the entrypoint migrated the (empty) database before serving, and its output reached container.log
        log = task.workdir / "container.log"
        migrated = wait_for(lambda: "Applying shop.0001_initial... OK" in log.read_text(errors="replace"), 10,
                            "the migrate output in container.log")
        assert migrated and "Running migrations:" in log.read_text(errors="replace")
    finally:
        task.stop()
    assert not task.alive()


def test_crashing_task_exits(repos: dict[str, Path], tmp_path: Path) -> None:
    task = start_task(repos, tmp_path, "crash", "v1.0.0")
    try:
        code = wait_for(task.exit_code, 30, "the crashing task to exit")
        assert code != 0
        assert "ValueError" in (task.workdir / "container.log").read_text()
    finally:
        task.stop()


class Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 500 if self.path == "/boom/" else 200
        body = json.dumps({"path": self.path, "forwarded": self.headers.get("X-Forwarded-For")}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_proxy_forwards_and_records() -> None:
    upstream = HTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    target = Task(task_definition="td", tag="v", workdir=Path(), env={}, port=upstream.server_address[1])
    target.healthy = True
    target.alive = lambda: True  # type: ignore[method-assign]
    available: list[Task] = []
    recorder = Recorder()
    proxy = make_proxy(0, lambda: available, recorder)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{proxy.server_address[1]}"
    try:
        assert requests.get(f"{url}/x/", timeout=5).status_code == 503
        available.append(target)
        answer = requests.get(f"{url}/products/?a=1", timeout=5)
        assert answer.status_code == 200 and answer.json() == {"path": "/products/?a=1", "forwarded": "127.0.0.1"}
        assert requests.get(f"{url}/boom/", timeout=5).status_code == 500
    finally:
        for server in (proxy, upstream):
            server.shutdown()
            server.server_close()
    buckets = recorder.take(int(time.time()) + 2)
    codes: dict[str, int] = {}
    latencies = []
    for bucket in buckets.values():
        latencies += bucket.latencies
        for name, count in bucket.codes.items():
            codes[name] = codes.get(name, 0) + count
    assert codes == {"RequestCount": 3, "HTTPCode_ELB_5XX_Count": 1, "HTTPCode_Target_2XX_Count": 1,
                     "HTTPCode_Target_5XX_Count": 1}
    assert len(latencies) == 2 and all(0 < v < 5 for v in latencies)


def test_publisher_writes_metrics_and_logs(moto: str) -> None:
    ec2, elbv2 = aws(moto, "ec2"), aws(moto, "elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"ap-northeast-1{z}")
               ["Subnet"]["SubnetId"] for i, z in ((1, "a"), (2, "c"))]
    lb = elbv2.create_load_balancer(Name="shipbook-demo-alb", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elbv2.create_target_group(Name="demo-web-tg", Protocol="HTTP", Port=8000, VpcId=vpc)["TargetGroups"][0]
    elbv2.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                          DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])
    aws(moto, "logs").create_log_group(logGroupName="/ecs/demo-web")
    recorder, logs = Recorder(), LogBuffer()
    second = int(time.time()) - 1
    for latency, status in ((0.010, 200), (0.020, 200), (0.300, 500)):
        recorder.record(second + 0.5, latency, status, from_target=True)
    task = Task(task_definition="td", tag="v", workdir=Path(), env={}, task_id="abc123")
    logs.add(task, '{"level": "ERROR", "message": "boom"}')
    Publisher(moto, recorder, logs, lambda: []).flush()
    cloudwatch = aws(moto, "cloudwatch")
    dims = [{"Name": "LoadBalancer", "Value": lb.split("loadbalancer/")[1]},
            {"Name": "TargetGroup", "Value": tg["TargetGroupArn"].split(":")[-1]}]
    window = {"StartTime": datetime.fromtimestamp(second, UTC) - timedelta(seconds=5),
              "EndTime": datetime.fromtimestamp(second, UTC) + timedelta(seconds=5), "Period": 1}

    def total(name: str, stat: str) -> float:
        points = cloudwatch.get_metric_statistics(Namespace="AWS/ApplicationELB", MetricName=name, Dimensions=dims,
                                                  Statistics=[stat], **window)["Datapoints"]
        return sum(p[stat] for p in points)

    assert total("RequestCount", "Sum") == 3
    assert total("HTTPCode_Target_5XX_Count", "Sum") == 1
    assert total("TargetResponseTime", "SampleCount") == 3
    assert total("TargetResponseTime", "Maximum") == pytest.approx(0.3)
    events = aws(moto, "logs").get_log_events(logGroupName="/ecs/demo-web", logStreamName="web/web/abc123")["events"]
    assert [e["message"] for e in events] == ['{"level": "ERROR", "message": "boom"}']


def run_agent(agent: Agent, until: Callable[[], Any], timeout: float = 40.0, what: str = "agent") -> Any:
    def step() -> Any:
        agent.poll()
        return until()
    try:
        return wait_for(step, timeout, what)
    except BaseException:
        agent.stop_all()
        raise


def test_agent_runs_the_service_and_reports(moto: str, repos: dict[str, Path], tmp_path: Path) -> None:
    seed_plain_moto(moto, "v0.9.0")
    agent = Agent(tmp_path, moto, app_repo=repos["healthy"], health_interval=0.2)
    captured = CapturedReports(tmp_path)
    agent.http = captured  # type: ignore[assignment]
    try:
        run_agent(agent, agent.targets, what="a healthy target")
        target = agent.targets()[0]
        assert requests.get(f"http://127.0.0.1:{target.port}/version/", timeout=5).json()["version"] == "v0.9.0"
        assert target.env["DATABASE_URL"] == f"sqlite:///{tmp_path / 'db.sqlite3'}" and captured.hosts == ["db.invalid"]
        assert target.env["SECRET_KEY"] == "k" * 50
        last = captured.reports[-1]
        assert last["service"] == "demo-web" and last["running"] == 1 and last["healthy"] == 1
        assert last["failed"] is False and last["taskDefinition"].endswith("demo-web:1")
        assert last["taskIds"] == [target.task_id]
        status = json.loads((tmp_path / "runtime" / "status.json").read_text())
        assert status["tasks"][0]["healthy"] is True and status["targets"] == [target.task_id]
    finally:
        agent.stop_all()
    assert not target.alive()


def test_agent_reports_a_crashing_task_once_per_failure(moto: str, repos: dict[str, Path], tmp_path: Path) -> None:
    seed_plain_moto(moto, "v1.0.0")
    agent = Agent(tmp_path, moto, app_repo=repos["crash"], health_interval=0.2, replace_delay=0.2)
    captured = CapturedReports(tmp_path)
    agent.http = captured  # type: ignore[assignment]
    try:
        run_agent(agent, lambda: sum(r["failed"] for r in captured.reports) >= 2, what="two failure reports")
    finally:
        agent.stop_all()
    failed = [r for r in captured.reports if r["failed"]]
    assert failed[0]["reason"].startswith("Essential container in task exited (exit code")
    assert all(r["healthy"] == 0 for r in captured.reports)
    assert agent.targets() == []


# --------------------------------------------------------------------------- integration


class Sandbox:
    """AWS twin + GitHub twin + runtime as processes, on free ports, stopped by pid."""

    def __init__(self, root: Path, scenario: str) -> None:
        self.root, self.scenario = root, scenario
        self.ports = dict(zip(("aws", "github", "alb"), free_ports(3), strict=True))
        self.aws_url = f"http://127.0.0.1:{self.ports['aws']}"
        self.github_url = f"http://127.0.0.1:{self.ports['github']}"
        self.alb_url = f"http://127.0.0.1:{self.ports['alb']}"
        self.bare, self.work = root / "git" / "demo-app.git", root / "work" / "demo-app"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, *args: str) -> None:
        with (self.root / f"{name}.log").open("wb") as log:  # the child has its own descriptor
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def log(self, name: str, lines: int = 30) -> str:
        return "\n".join((self.root / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])

    def up(self) -> None:
        from shipbook.sandbox.aws_twin import seed

        self.root.mkdir(parents=True, exist_ok=True)
        self.spawn("aws", "shipbook.sandbox.aws_twin", "--port", str(self.ports["aws"]), "--state-dir", str(self.root))
        wait_for(lambda: _ok(f"{self.aws_url}/_sandbox/health"), 60, "the AWS twin")
        seed.seed(self.aws_url)
        repo_builder.build(self.bare, self.work, self.scenario, github_url=self.github_url)
        self.spawn("github", "shipbook.sandbox.github_twin", "--port", str(self.ports["github"]),
                   "--state-dir", str(self.root), "--aws-url", self.aws_url, "--repo", str(self.bare))
        self.spawn("runtime", "shipbook.sandbox.runtime", "--state-dir", str(self.root), "--aws-url", self.aws_url,
                   "--alb-port", str(self.ports["alb"]), "--app-repo", str(self.bare), "--rps", "10")
        wait_for(lambda: _ok(f"{self.github_url}/_sandbox/health"), 30, "the GitHub twin")
        wait_for(lambda: self.version() == "v0.9.0", 120, "v0.9.0 behind the ALB")

    def down(self) -> None:
        for name in ("runtime", "github", "aws"):
            process = self.processes.get(name)
            if process and process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(5)

    def version(self) -> str | None:
        try:
            return requests.get(f"{self.alb_url}/version/", timeout=10).json().get("version")
        except (requests.RequestException, ValueError):
            return None

    def push_release(self) -> None:
        subprocess.run(["git", "-C", str(self.work), "tag", "-a", "v1.0.0", "-m", "Release v1.0.0"], check=True)
        subprocess.run(["git", "-C", str(self.work), "push", "-q", "origin", "v1.0.0"], check=True)

    def run(self) -> dict[str, Any] | None:
        runs = requests.get(f"{self.github_url}/repos/example/demo-app/actions/runs", params={"branch": "v1.0.0"},
                            timeout=5).json()["workflow_runs"]
        return runs[0] if runs else None

    def service(self) -> dict[str, Any]:
        return aws(self.aws_url, "ecs").describe_services(cluster="shipbook-demo", services=["demo-web"])["services"][0]


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def sandbox_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Sandbox]]:
    """One whole sandbox per scenario for the module, started when a test first asks for it (a start is
    ~10-20 s of the machine). The tests sharing one (the `healthy` pair) pass in either order."""
    root = tmp_path_factory.mktemp("sandboxes")
    started: dict[str, Sandbox] = {}

    def make(scenario: str) -> Sandbox:
        if scenario not in started:
            for other in started.values():  # one at a time: an idle sandbox still serves traffic and publishes
                other.down()
            started[scenario] = box = Sandbox(root / scenario, scenario)
            box.up()
        return started[scenario]

    yield make
    for box in started.values():
        box.down()
        leftovers = subprocess.run(["pgrep", "-f", "runserver --noreload 127.0.0.1"], capture_output=True, text=True)
        for pid in leftovers.stdout.split():
            cwd = os.readlink(f"/proc/{pid}/cwd") if os.path.exists(f"/proc/{pid}/cwd") else ""
            assert not cwd.startswith(str(box.root)), f"task process {pid} outlived the runtime"


@pytest.mark.slow
@pytest.mark.xdist_group("runtime-healthy")  # shares the module's healthy sandbox with the one-off test
def test_tag_push_deploys_the_release(sandbox_factory: Callable[[str], Sandbox]) -> None:
    box = sandbox_factory("healthy")
    started = time.monotonic()
    box.push_release()
    run = wait_for(lambda: (r := box.run()) and r["status"] == "completed" and r, 240, "the workflow run")
    assert run["conclusion"] == "success", box.log("github")
    elapsed = time.monotonic() - started
    service = box.service()
    assert [d["rolloutState"] for d in service["deployments"]] == ["COMPLETED"]
    taskdef = aws(box.aws_url, "ecs").describe_task_definition(taskDefinition=service["taskDefinition"])
    assert taskdef["taskDefinition"]["containerDefinitions"][0]["image"].endswith(":v1.0.0")
    assert wait_for(lambda: box.version() == "v1.0.0", 10, "v1.0.0 behind the ALB")
    assert elapsed < 120, f"tag push to COMPLETED took {elapsed:.1f}s"
    now = datetime.now(UTC)
    metrics = aws(box.aws_url, "cloudwatch").list_metrics(Namespace="AWS/ApplicationELB",
                                                          MetricName="TargetResponseTime")["Metrics"]
    assert metrics and {d["Name"] for d in metrics[0]["Dimensions"]} == {"LoadBalancer", "TargetGroup"}
    points = aws(box.aws_url, "cloudwatch").get_metric_statistics(
        Namespace="AWS/ECS", MetricName="CPUUtilization", StartTime=now - timedelta(minutes=2), EndTime=now,
        Period=1, Statistics=["Average"],
        Dimensions=[{"Name": "ClusterName", "Value": "shipbook-demo"}, {"Name": "ServiceName", "Value": "demo-web"}],
    )["Datapoints"]
    assert len(points) >= 5
    streams = aws(box.aws_url, "logs").describe_log_streams(logGroupName="/ecs/demo-web")["logStreams"]
    assert len(streams) >= 2 and all(s["logStreamName"].startswith("web/web/") for s in streams)


@pytest.mark.slow
def test_crash_on_start_fails_and_the_old_version_keeps_serving(sandbox_factory: Callable[[str], Sandbox]) -> None:
    box = sandbox_factory("crash-on-start")
    box.push_release()
    served: list[str | None] = []

    def done() -> dict[str, Any] | None:
        served.append(box.version())
        run = box.run()
        return run if run and run["status"] == "completed" else None

    run = wait_for(done, 240, "the workflow run")
    assert run["conclusion"] == "failure"
    jobs = requests.get(f"{box.github_url}/repos/example/demo-app/actions/runs/{run['id']}/jobs", timeout=5).json()
    deploy = next(j for j in jobs["jobs"] if j["name"] == "deploy")
    failed_steps = [s["name"] for s in deploy["steps"] if s["conclusion"] == "failure"]
    assert failed_steps == ["Wait for service stability"]
    messages = [e["message"] for e in box.service()["events"]]
    assert any("deployment failed" in m for m in messages), messages[:10]
    wait_for(lambda: [d["rolloutState"] for d in box.service()["deployments"]] == ["COMPLETED"], 30, "the rollback")
    assert set(served) == {"v0.9.0"}, served
    assert box.version() == "v0.9.0"


@pytest.fixture
def seeded_twin(tmp_path: Path) -> Iterator[str]:
    """A seeded AWS twin of our own (scenarios change it; the session's shared twin stays clean)."""
    from shipbook.sandbox.aws_twin import seed

    box = Sandbox(tmp_path, "healthy")
    box.spawn("aws", "shipbook.sandbox.aws_twin", "--port", str(box.ports["aws"]), "--state-dir", str(tmp_path))
    try:
        wait_for(lambda: _ok(f"{box.aws_url}/_sandbox/health"), 60, "the AWS twin")
        seed.seed(box.aws_url)
        yield box.aws_url
    finally:
        box.down()


def test_twin_scenarios_are_visible_through_the_apis(seeded_twin: str) -> None:
    from shipbook.sandbox import scenarios

    assert scenarios.apply_twin("healthy", seeded_twin) == []
    assert scenarios.apply_twin("latency-regression", seeded_twin) == []
    done = scenarios.apply_twin("open-port", seeded_twin)
    assert done and "tcp/22" in done[0]
    group = scenarios.service_security_group(aws(seeded_twin, "ecs"))
    rules = aws(seeded_twin, "ec2").describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    assert any(r.get("FromPort") == 22 and {"CidrIp": "0.0.0.0/0"}.items() <= r["IpRanges"][0].items()
               for r in rules if r.get("IpRanges"))
    assert requests.get(f"{seeded_twin}/_sandbox/faults", timeout=5).json()["rds_snapshot_failure"] is False
    scenarios.apply_twin("snapshot-failure", seeded_twin)
    assert requests.get(f"{seeded_twin}/_sandbox/faults", timeout=5).json()["rds_snapshot_failure"] is True


def alb_window(box: Sandbox, name: str, stat: str, start: datetime, end: datetime) -> list[float]:
    """1-second datapoints of an ALB metric between `start` and `end` (none before the first is published)."""
    cloudwatch = aws(box.aws_url, "cloudwatch")
    dims = next((m["Dimensions"] for m in cloudwatch.list_metrics(Namespace="AWS/ApplicationELB",
                                                                   MetricName="RequestCount")["Metrics"]), None)
    if dims is None:
        return []
    extended = stat.startswith("p")
    points = cloudwatch.get_metric_statistics(
        Namespace="AWS/ApplicationELB", MetricName=name, Dimensions=dims, StartTime=start, EndTime=end, Period=1,
        **({"ExtendedStatistics": [stat]} if extended else {"Statistics": [stat]}),
    )["Datapoints"]
    return [p["ExtendedStatistics"][stat] if extended else p[stat] for p in points]


WINDOW = 6  # seconds of 1-second datapoints compared before and after the release


def measured_seconds(box: Sandbox, start: datetime, what: str) -> datetime:
    """Wait (with a deadline, not a fixed sleep) until WINDOW seconds from `start` on have published target
    response datapoints (requests the app served); returns the end of that window."""
    def covered() -> datetime | None:
        now = datetime.now(UTC)
        if now - start < timedelta(seconds=WINDOW):  # cannot hold WINDOW seconds yet
            return None
        return now if len(alb_window(box, "TargetResponseTime", "SampleCount", start, now)) >= WINDOW else None
    return wait_for(covered, 60, f"{WINDOW} s of {what} in the metrics")


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["latency-regression", "error-spike"])
def test_runtime_faults_show_in_the_metrics(scenario: str, sandbox_factory: Callable[[str], Sandbox]) -> None:
    box = sandbox_factory(scenario)
    before_start = datetime.now(UTC)  # v0.9.0 serves
    before_end = measured_seconds(box, before_start, "v0.9.0's traffic")
    box.push_release()
    run = wait_for(lambda: (r := box.run()) and r["status"] == "completed" and r, 240, "the workflow run")
    assert run["conclusion"] == "success", box.log("github")
    assert wait_for(lambda: box.version() == "v1.0.0", 10, "v1.0.0 behind the ALB")
    after_start = datetime.now(UTC)
    after_end = measured_seconds(box, after_start, "v1.0.0's traffic")
    if scenario == "latency-regression":
        before = alb_window(box, "TargetResponseTime", "Average", before_start, before_end)
        after = alb_window(box, "TargetResponseTime", "Average", after_start, after_end)
        assert before and after
        assert sum(after) / len(after) > sum(before) / len(before) + 0.05
        assert max(alb_window(box, "TargetResponseTime", "Maximum", after_start, after_end)) >= 0.25
    else:
        before = alb_window(box, "HTTPCode_Target_5XX_Count", "Sum", before_start, before_end)
        after = alb_window(box, "HTTPCode_Target_5XX_Count", "Sum", after_start, after_end)
        assert sum(before) == 0
        assert sum(after) > 0
        logs = aws(box.aws_url, "logs")
        wait_for(lambda: logs.filter_log_events(logGroupName="/ecs/demo-web", filterPattern="KeyError")["events"],
                 30, "the 500s' tracebacks in CloudWatch Logs")


def run_one_off(box: Sandbox, *command: str) -> str:
    """RunTask of the service's task definition with a command override, as a release runs `migrate`."""
    service = box.service()
    task = aws(box.aws_url, "ecs").run_task(
        cluster="shipbook-demo", taskDefinition=service["taskDefinition"], launchType="FARGATE", count=1,
        networkConfiguration=service["networkConfiguration"], startedBy="test",
        overrides={"containerOverrides": [{"name": "web", "command": list(command)}]},
    )["tasks"][0]
    assert task["lastStatus"] == "PROVISIONING"
    return str(task["taskArn"])


def stopped(box: Sandbox, arn: str, timeout: float = 60) -> dict[str, Any]:
    ecs = aws(box.aws_url, "ecs")
    return wait_for(lambda: next((t for t in ecs.describe_tasks(cluster="shipbook-demo", tasks=[arn])["tasks"]
                                  if t["lastStatus"] == "STOPPED"), None), timeout, f"task {arn} to stop")


def task_log(box: Sandbox, arn: str) -> str:
    stream = f"web/web/{arn.rsplit('/', 1)[-1]}"
    logs = aws(box.aws_url, "logs")

    def events() -> str:
        try:
            found = logs.get_log_events(logGroupName="/ecs/demo-web", logStreamName=stream)["events"]
        except logs.exceptions.ResourceNotFoundException:
            return ""
        return "\n".join(e["message"] for e in found)

    return str(wait_for(events, 20, f"the log stream {stream}"))


@pytest.mark.slow
@pytest.mark.xdist_group("runtime-healthy")  # shares the module's healthy sandbox with the tag-push test
def test_one_off_tasks_really_run_on_the_service_database(sandbox_factory: Callable[[str], Sandbox]) -> None:
    box = sandbox_factory("healthy")  # v0.9.0, or v1.0.0 if the tag-push test ran first: both migrated it
    ok = run_one_off(box, "python", "manage.py", "showmigrations", "shop")
    task = stopped(box, ok)
    assert task["containers"][0]["exitCode"] == 0 and task["stopCode"] == "EssentialContainerExited", task
    assert "[X] 0002_seed_products" in task_log(box, ok)  # the service's own database, migrated by the service

    bad = stopped(box, run_one_off(box, "python", "manage.py", "migrate", "shop", "9999_nope", "--noinput"))
    assert bad["containers"][0]["exitCode"] == 1, bad

    ecs = aws(box.aws_url, "ecs")
    slow = run_one_off(box, "python", "-c", "import time; time.sleep(120)")
    wait_for(lambda: ecs.describe_tasks(cluster="shipbook-demo", tasks=[slow])["tasks"][0]["lastStatus"] == "RUNNING",
             30, "the task to run")
    ecs.stop_task(cluster="shipbook-demo", task=slow, reason="test: enough")
    task = stopped(box, slow, 30)
    assert task["containers"][0]["exitCode"] == 143 and task["stoppedReason"] == "test: enough", task
    assert task["stopCode"] == "UserInitiated"
