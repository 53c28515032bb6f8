"""The ECS "agent": runs the tasks of the service's deployments and reports them to the twin.

Every poll: DescribeServices; for each deployment's task definition keep `desiredCount` tasks
(capped) running; health-check them with the target group's settings; POST one report per task
definition to `{aws_url}/_sandbox/ecs/report`. A task that exits or fails its health checks is
reported once with `failed: true` and replaced, as ECS does, until the twin marks the deployment
FAILED (its circuit breaker). Task definitions that left the service are drained and stopped.

One-off tasks (RunTask, e.g. a reverse migration) are listed by the twin at
`/_sandbox/ecs/tasks`: each runs its command override once in a copy of its image, with the task
definition's environment and secrets, its output shipped to its own log stream; it is reported
RUNNING, then STOPPED with its exit code (`/_sandbox/ecs/task-state`). StopTask stops it (SIGTERM).

DATABASE_URL: its host is an RDS endpoint; the twin says which instance answers there now and
where that instance's data is (`/_sandbox/rds/datafile`), and the task gets that SQLite file. A
host no instance answers at gets a database that cannot be opened, as a refused connection.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from botocore.exceptions import BotoCoreError, ClientError

from shipbook.sandbox.runtime.aws import CLUSTER, CONTAINER, SERVICE, TARGET_GROUP, client
from shipbook.sandbox.runtime.tasks import (
    HealthSettings,
    ImageError,
    Task,
    image_env,
    image_tag,
    prepare_image,
    reachable,
)

logger = logging.getLogger(__name__)

_AWS_ERRORS = (ClientError, BotoCoreError, requests.RequestException)


@dataclass
class Report:
    task_definition: str
    running: int
    healthy: int
    failed: bool
    reason: str
    task_ids: list[str] = field(default_factory=list)


@dataclass
class Agent:
    """Reconciles local processes with the service's deployments."""

    state_dir: Path
    aws_url: str
    app_repo: Path | None = None
    max_tasks: int = 2
    health_interval: float = 1.0
    replace_delay: float = 1.0
    drain_seconds: float = 1.0
    on_line: Callable[[Task, str], None] = lambda task, line: None
    tasks: dict[str, list[Task]] = field(default_factory=dict)
    pending_failures: dict[str, list[str]] = field(default_factory=dict)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _taskdefs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _health: HealthSettings | None = None
    _next_start: dict[str, float] = field(default_factory=dict)
    _draining: list[tuple[float, Task]] = field(default_factory=list)
    _notes: set[str] = field(default_factory=set)
    one_offs: dict[str, Task] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ecs = client("ecs", self.aws_url)
        self.elbv2 = client("elbv2", self.aws_url)
        self.secrets = client("secretsmanager", self.aws_url)
        self.http = requests.Session()
        self.runtime_dir = self.state_dir / "runtime"
        self.runtime_dir.mkdir(parents=True, exist_ok=True)

    # -- what the ALB needs -------------------------------------------------------------------
    def targets(self) -> list[Task]:
        """Healthy tasks of the PRIMARY deployment, or of any deployment until the primary has one."""
        with self.lock:
            primary = [d["taskDefinition"] for d in self.deployments if d.get("status") == "PRIMARY"]
            chosen = [t for td in primary for t in self.tasks.get(td, []) if t.healthy and t.alive()]
            if chosen:
                return chosen
            return [t for tasks in self.tasks.values() for t in tasks if t.healthy and t.alive()]

    def running_tasks(self) -> list[Task]:
        with self.lock:
            return [t for tasks in self.tasks.values() for t in tasks if t.alive()]

    # -- one poll ------------------------------------------------------------------------------
    def poll(self) -> list[Report]:
        """Describe the service, reconcile, health-check and report. Returns what was reported."""
        try:
            service = self.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"]
        except _AWS_ERRORS as error:
            self._note("describe", f"DescribeServices failed: {error}")
            return []
        if not service:
            self._note("missing", f"service {CLUSTER}/{SERVICE} not found (twin not seeded yet?)")
            return []
        now = time.monotonic()
        with self.lock:
            self.deployments = list(service[0].get("deployments", []))
            wanted = self._wanted(self.deployments)
            self._stop_unwanted(set(wanted), now)
            health = self._health_settings(service[0])
            for task_definition, (count, rollout) in wanted.items():
                self._reconcile(task_definition, count, rollout, health, now)
            reports = [self._report(td) for td in wanted]
            self._finish_drains(now)
        for report in reports:
            self._send(report)
        self._one_off_tasks()
        self._write_status()
        return reports

    def _wanted(self, deployments: list[dict[str, Any]]) -> dict[str, tuple[int, str]]:
        wanted: dict[str, tuple[int, str]] = {}
        for deployment in deployments:
            td = deployment["taskDefinition"]
            count = min(int(deployment.get("desiredCount", 1)), self.max_tasks)
            rollout = deployment.get("rolloutState", "COMPLETED")
            previous = wanted.get(td)
            if previous is None or count > previous[0] or previous[1] == "FAILED":
                wanted[td] = (count, rollout)
        return wanted

    def _stop_unwanted(self, wanted: set[str], now: float) -> None:
        for td in [td for td in self.tasks if td not in wanted]:
            for task in self.tasks.pop(td):
                task.healthy = False
                self._draining.append((now + self.drain_seconds, task))
            self.pending_failures.pop(td, None)
            logger.info("task definition %s left the service: draining its tasks", td)

    def _finish_drains(self, now: float) -> None:
        due = [t for deadline, t in self._draining if deadline <= now]
        self._draining = [(d, t) for d, t in self._draining if d > now]
        for task in due:
            threading.Thread(target=self._retire, args=(task,), daemon=True).start()

    def _retire(self, task: Task) -> None:
        task.stop()
        shutil.rmtree(task.workdir / "app", ignore_errors=True)

    def _reconcile(self, td: str, count: int, rollout: str, health: HealthSettings, now: float) -> None:
        tasks = self.tasks.setdefault(td, [])
        for task in list(tasks):
            task.observe(health, now)
            code = task.exit_code()
            if code is not None and not task.failed_reason:
                task.failed_reason = f"Essential container in task exited (exit code {code})"
            if task.failed_reason:
                logger.warning("task %s of %s failed: %s", task.task_id, td, task.failed_reason)
                self.pending_failures.setdefault(td, []).append(task.failed_reason)
                tasks.remove(task)
                threading.Thread(target=self._retire, args=(task,), daemon=True).start()
                self._next_start[td] = now + self.replace_delay
        if rollout == "FAILED":
            return
        while len(tasks) < count and now >= self._next_start.get(td, 0.0):
            task = self._launch(td)
            if task is None:
                self._next_start[td] = now + max(self.replace_delay, 2.0)
                break
            tasks.append(task)
        for task in tasks[count:]:
            tasks.remove(task)
            threading.Thread(target=self._retire, args=(task,), daemon=True).start()

    def _report(self, td: str) -> Report:
        tasks = self.tasks.get(td, [])
        failures = self.pending_failures.get(td, [])
        reason = failures.pop(0) if failures else ""
        return Report(td, sum(t.alive() for t in tasks), sum(t.healthy for t in tasks), bool(reason), reason,
                      [t.task_id for t in tasks if t.alive()])

    def _send(self, report: Report) -> None:
        body = {"cluster": CLUSTER, "service": SERVICE, "taskDefinition": report.task_definition,
                "running": report.running, "healthy": report.healthy, "failed": report.failed,
                "reason": report.reason, "taskIds": report.task_ids}
        try:
            response = self.http.post(f"{self.aws_url}/_sandbox/ecs/report", json=body, timeout=5)
            if response.status_code >= 400:
                detail = f"{response.status_code} {response.text[:200]}"
                self._note(f"report{response.status_code}", f"report rejected: {detail}")
        except requests.RequestException as error:
            self._note("report", f"report failed: {error}")
            if report.failed:
                self.pending_failures.setdefault(report.task_definition, []).insert(0, report.reason)

    # -- one-off tasks (RunTask) --------------------------------------------------------------
    def _one_off_tasks(self) -> None:
        """Start the tasks RunTask asked for, stop those StopTask asked to stop, report those that ended."""
        try:
            response = self.http.get(f"{self.aws_url}/_sandbox/ecs/tasks", timeout=5)
            listed = response.json()["tasks"] if response.status_code == 200 else []
        except (requests.RequestException, ValueError, KeyError) as error:
            self._note("one-off", f"listing one-off tasks failed: {error}")
            return
        for item in listed:
            arn = item["taskArn"]
            task = self.one_offs.get(arn)
            if task is None and item.get("desiredStatus") == "STOPPED":
                self._task_state(arn, "STOPPED", None, "stopped before it started")
            elif task is None:
                self._start_one_off(item)
            elif item.get("desiredStatus") == "STOPPED" and task.alive():
                threading.Thread(target=task.stop, daemon=True).start()
        for arn, task in list(self.one_offs.items()):
            code = task.exit_code()
            if code is None:
                continue
            del self.one_offs[arn]
            exit_code = 128 - code if code < 0 else code  # killed by a signal: 128 + its number, as Docker says
            self._task_state(arn, "STOPPED", exit_code, "" if code == 0 else f"exit code {exit_code}")
            threading.Thread(target=self._retire, args=(task,), daemon=True).start()

    def _start_one_off(self, item: dict[str, Any]) -> None:
        arn, td = item["taskArn"], item["taskDefinition"]
        override = next((o for o in (item.get("overrides") or {}).get("containerOverrides", [])
                         if o.get("name") == CONTAINER), {})
        try:
            taskdef = self._task_definition(td)
            container = next(c for c in taskdef["containerDefinitions"] if c["name"] == CONTAINER)
            image = prepare_image(image_tag(container["image"]), self.state_dir, self.app_repo)
            env = {**image_env(image), **{e["name"]: e["value"] for e in container.get("environment", [])}}
            env.update(self._secrets(container.get("secrets", [])))
            env.update({e["name"]: e["value"] for e in override.get("environment", [])})
        except (ImageError, StopIteration, *_AWS_ERRORS) as error:
            self._task_state(arn, "STOPPED", None, f"CannotStartContainerError: {error}")
            return
        task = Task(task_definition=td, tag=image_tag(container["image"]), workdir=Path(), env=env,
                    on_line=self.on_line, task_id=item.get("taskId") or arn.rsplit("/", 1)[-1],
                    command=override.get("command") or container.get("command"))
        task.workdir = self.runtime_dir / "tasks" / task.task_id
        task.workdir.mkdir(parents=True, exist_ok=True)
        try:
            task.start(image)
        except OSError as error:
            self._task_state(arn, "STOPPED", None, f"CannotStartContainerError: {error}")
            return
        self.one_offs[arn] = task
        logger.info("one-off task %s started: %s", task.task_id, " ".join(task.command or ["(entrypoint)"]))
        self._task_state(arn, "RUNNING", None, "")

    def _task_state(self, arn: str, state: str, exit_code: int | None, reason: str) -> None:
        body = {"taskArn": arn, "lastStatus": state, "exitCode": exit_code, "reason": reason}
        try:
            response = self.http.post(f"{self.aws_url}/_sandbox/ecs/task-state", json=body, timeout=5)
            if response.status_code >= 400:
                logger.warning("task state %s of %s rejected: %s", state, arn, response.text[:200])
        except requests.RequestException as error:
            logger.warning("task state %s of %s not reported: %s", state, arn, error)

    # -- launching ----------------------------------------------------------------------------
    def _task_definition(self, arn: str) -> dict[str, Any]:
        if arn not in self._taskdefs:
            self._taskdefs[arn] = self.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        return self._taskdefs[arn]

    def _launch(self, td: str) -> Task | None:
        """Start one task of `td`; a launch failure is reported like a stopped task."""
        try:
            taskdef = self._task_definition(td)
            container = next(c for c in taskdef["containerDefinitions"] if c["name"] == CONTAINER)
            tag = image_tag(container["image"])
            image = prepare_image(tag, self.state_dir, self.app_repo)
            env = {**image_env(image), **{e["name"]: e["value"] for e in container.get("environment", [])}}
            env.update(self._secrets(container.get("secrets", [])))
        except ImageError as error:
            self.pending_failures.setdefault(td, []).append(str(error))
            return None
        except StopIteration:
            self.pending_failures.setdefault(td, []).append(f"no container named {CONTAINER}")
            return None
        except _AWS_ERRORS as error:
            self.pending_failures.setdefault(td, []).append(f"ResourceInitializationError: {error}")
            return None
        task = Task(
            task_definition=td, tag=tag, workdir=Path(), env=env, on_line=self.on_line,
            cpu_units=int(taskdef.get("cpu") or 256), memory_mib=int(taskdef.get("memory") or 512),
        )
        task.workdir = self.runtime_dir / "tasks" / task.task_id
        task.workdir.mkdir(parents=True, exist_ok=True)
        try:
            task.start(image)
        except OSError as error:
            self.pending_failures.setdefault(td, []).append(f"CannotStartContainerError: {error}")
            return None
        return task

    def _secrets(self, secrets: list[dict[str, str]]) -> dict[str, str]:
        """Resolve the container's secrets like ECS; DATABASE_URL goes to a local database."""
        values: dict[str, str] = {}
        for secret in secrets:
            name, source = secret["name"], secret["valueFrom"]
            try:
                values[name] = self.secrets.get_secret_value(SecretId=source)["SecretString"]
            except _AWS_ERRORS:
                if name != "DATABASE_URL":
                    raise
                values[name] = ""
        url = values.get("DATABASE_URL", "")
        if url.startswith(("postgres://", "postgresql://")):
            values["DATABASE_URL"] = self._database(url)
        return values

    def _database(self, url: str) -> str:
        """The database a task reaches through `url`: the RDS twin's data of the instance at that host."""
        host = urlsplit(url).hostname or ""
        response = self.http.get(f"{self.aws_url}/_sandbox/rds/datafile", params={"host": host}, timeout=5)
        if response.status_code == 200:
            found = response.json()
            self._note(f"db-{found['resourceId']}", f"{host} is {found['instance']}: the app uses {found['path']}")
            return f"sqlite:///{found['path']}"
        if reachable(url):
            self._note("db-real", f"{host} is a reachable PostgreSQL server: the app uses it")
            return url
        self._note(f"db-none-{host}", f"no DB instance answers at {host}: the task cannot connect")
        return f"sqlite:///{self.runtime_dir / 'unreachable' / host / 'db.sqlite3'}"

    # -- settings and status ------------------------------------------------------------------
    def _health_settings(self, service: dict[str, Any]) -> HealthSettings:
        if self._health is None:
            settings = HealthSettings(interval=self.health_interval)
            try:
                tg = self.elbv2.describe_target_groups(Names=[TARGET_GROUP])["TargetGroups"][0]
            except _AWS_ERRORS as error:
                self._note("tg", f"target group {TARGET_GROUP} not found ({error}); default health settings")
                return settings
            settings.path = tg.get("HealthCheckPath") or settings.path
            settings.timeout = min(float(tg.get("HealthCheckTimeoutSeconds") or 5), 2.0)
            settings.healthy_threshold = int(tg.get("HealthyThresholdCount") or 5)
            settings.unhealthy_threshold = int(tg.get("UnhealthyThresholdCount") or 2)
            settings.matcher = (tg.get("Matcher") or {}).get("HttpCode", "200")
            settings.grace = float(service.get("healthCheckGracePeriodSeconds") or 30)
            self._health = settings
        return self._health

    def _note(self, key: str, message: str) -> None:
        """Log a message once per key (the poll loop would repeat it twice a second)."""
        if key not in self._notes:
            self._notes.add(key)
            logger.warning("%s", message)

    def _write_status(self) -> None:
        with self.lock:
            status = {
                "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "deployments": [
                    {k: d.get(k) for k in ("id", "status", "taskDefinition", "rolloutState", "desiredCount")}
                    for d in self.deployments
                ],
                "tasks": [
                    {"taskId": t.task_id, "taskDefinition": td, "tag": t.tag, "pid": t.pid, "port": t.port,
                     "healthy": t.healthy, "logStream": t.stream}
                    for td, tasks in self.tasks.items() for t in tasks
                ],
                "targets": [t.task_id for t in self.targets()],
            }
        path = self.runtime_dir / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=1, default=str), encoding="utf-8")
        tmp.replace(path)

    def stop_all(self) -> None:
        """Stop every task (on shutdown)."""
        with self.lock:
            everything = [t for tasks in self.tasks.values() for t in tasks] + [t for _, t in self._draining]
            self.tasks.clear()
            self._draining.clear()
        threads = [threading.Thread(target=t.stop, daemon=True) for t in everything]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
