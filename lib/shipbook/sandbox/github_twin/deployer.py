"""The Actions stand-in: runs the demo app's `deploy` workflow for a pushed tag.

Job `build`: checkout, tests, image build (the tag's tree copied to `<state-dir>/images/<tag>/`,
the runtime's "registry") and ECR PutImage. Job `deploy` (needs build): render and register the
task definition from `infra/taskdef.json`, update the CloudFormation stack with the release's
`infra/template.yaml`, UpdateService, and wait until the new deployment's rolloutState is
COMPLETED (success) or FAILED (failure). Each step takes at least `step_seconds`.

The stack update keeps the stack's `ImageTag` (UsePreviousValue): the ECS deploy of
`infra/taskdef.json` owns the service's task definition, and with the twin's CloudFormation (as
on AWS) a new ImageTag would roll the service to the template's own task definition and race it.

Runs are executed one at a time in push order, like the workflow's concurrency group.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shipbook.sandbox.github_twin.gitrepo import GitError, Repo
from shipbook.sandbox.github_twin.store import Store, now_iso
from shipbook.sandbox.loopback import require_loopback

logger = logging.getLogger(__name__)

REGION = "ap-northeast-1"
ACCOUNT = "123456789012"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
ECR_REPOSITORY = "demo-app"
CLUSTER = "shipbook-demo"
SERVICE = "demo-web"
STACK = "shipbook-demo"
CONTAINER = "web"
WORKFLOW_NAME = "deploy"
WORKFLOW_PATH = ".github/workflows/deploy.yml"
DUMMY_CREDENTIALS = dict.fromkeys(("aws_access_key_id", "aws_secret_access_key"), "testing")

BUILD_STEPS = [
    "Set up job",
    "Run actions/checkout@v4",
    "Set up Python",
    "Run tests",
    "Configure AWS credentials",
    "Log in to Amazon ECR",
    "Build and push image",
    "Complete job",
]
DEPLOY_STEPS = [
    "Set up job",
    "Run actions/checkout@v4",
    "Configure AWS credentials",
    "Render task definition",
    "Register task definition",
    "Update CloudFormation stack",
    "Deploy to Amazon ECS",
    "Wait for service stability",
    "Complete job",
]
JOBS = [("build", BUILD_STEPS), ("deploy", DEPLOY_STEPS)]


class StepFailed(RuntimeError):
    """A step failed; the message is the step's last log line ("Error: ...")."""


_STEP_ERRORS = (StepFailed, ClientError, BotoCoreError, GitError, OSError, subprocess.SubprocessError,
                ValueError, KeyError)


@dataclass
class RunContext:
    run_id: int
    tag: str
    sha: str
    workspace: Path
    log: Callable[[str], None] = print
    values: dict[str, Any] = field(default_factory=dict)


class Deployer:
    """Queues runs for pushed tags and executes them in a worker thread."""

    def __init__(self, store: Store, repo: Callable[[], Repo], aws_url: str | None, state_dir: Path,
                 step_seconds: float = 0.5, stable_timeout: float = 300.0, poll_seconds: float = 1.0,
                 python: str = sys.executable) -> None:
        self.store = store
        self.repo = repo
        # None is allowed here (a GitHub twin without AWS serves the API but cannot deploy); _client refuses it.
        self.aws_url = require_loopback(aws_url, "deployer AWS endpoint") if aws_url is not None else None
        self.state_dir = Path(state_dir)
        self.step_seconds = step_seconds
        self.stable_timeout = stable_timeout
        self.poll_seconds = poll_seconds
        self.python = python
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="deployer", daemon=True)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    def _client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=require_loopback(self.aws_url, "deployer AWS endpoint"),
            region_name=REGION,
            config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
            **DUMMY_CREDENTIALS,
        )

    # -- queueing -----------------------------------------------------------------------------
    def push(self, ref: str, sha: str, actor: str = "github-actions") -> dict[str, Any] | None:
        """Queue the deploy workflow for a pushed tag `refs/tags/v*`; None if it does not match."""
        if not ref.startswith("refs/tags/v"):
            return None
        tag = ref.removeprefix("refs/tags/")
        message = self.repo().commit(sha).message
        run = self.store.new_run(
            name=WORKFLOW_NAME, path=WORKFLOW_PATH, head_sha=sha, head_branch=tag, event="push",
            message=message, actor=actor, jobs=JOBS,
        )
        self._queue.put(run["id"])
        logger.info("queued run %s for %s at %s", run["id"], tag, sha[:12])
        return run

    def _work(self) -> None:
        while not self._stop.is_set():
            run_id = self._queue.get()
            try:
                if run_id is not None:
                    self.execute(run_id)
            finally:
                self._queue.task_done()

    # -- execution ----------------------------------------------------------------------------
    def execute(self, run_id: int) -> str:
        """Run every job of the run; returns the run's conclusion."""
        run = self.store.get_run(run_id)
        if run is None:
            return "failure"
        workspace = self.state_dir / "github" / "workspace" / str(run_id)
        ctx = RunContext(run_id=run_id, tag=run["head_branch"], sha=run["head_sha"], workspace=workspace)
        self.store.update_run(run_id, status="in_progress", run_started_at=now_iso())
        conclusion = "success"
        try:
            for job_name, steps in JOBS:
                if conclusion != "success" or self._stop.is_set():
                    self.store.update_job(run_id, job_name, status="completed", conclusion="skipped",
                                          steps=[], started_at=None, completed_at=now_iso())
                    continue
                if not self._job(ctx, job_name, steps):
                    conclusion = "failure"
        finally:
            shutil.rmtree(workspace, ignore_errors=True)
        self.store.update_run(run_id, status="completed", conclusion=conclusion)
        logger.info("run %s for %s: %s", run_id, ctx.tag, conclusion)
        return conclusion

    def _job(self, ctx: RunContext, job_name: str, steps: list[str]) -> bool:
        ctx.log = lambda line: self.store.log(ctx.run_id, job_name, line)
        self.store.update_job(ctx.run_id, job_name, status="in_progress", started_at=now_iso())
        ok = True
        for number, name in enumerate(steps, start=1):
            if not ok and name != "Complete job":
                self.store.update_step(ctx.run_id, job_name, number, status="completed", conclusion="skipped")
                continue
            self.store.update_step(ctx.run_id, job_name, number, status="in_progress", started_at=now_iso())
            ctx.log(f"##[group]{name}")
            started = time.monotonic()
            step_ok = True
            try:
                self._step(ctx, job_name, name)
            except _STEP_ERRORS as error:
                ctx.log(f"##[error]{type(error).__name__}: {error}")
                step_ok = ok = False
            remaining = self.step_seconds - (time.monotonic() - started)
            if remaining > 0:
                self._stop.wait(remaining)
            ctx.log("##[endgroup]")
            self.store.update_step(ctx.run_id, job_name, number, status="completed",
                                   conclusion="success" if step_ok else "failure", completed_at=now_iso())
        self.store.update_job(ctx.run_id, job_name, status="completed",
                              conclusion="success" if ok else "failure", completed_at=now_iso())
        return ok

    def _step(self, ctx: RunContext, job: str, name: str) -> None:
        handlers: dict[str, Callable[[RunContext], None]] = {
            "Set up job": self.set_up_job,
            "Run actions/checkout@v4": self.checkout,
            "Set up Python": self.set_up_python,
            "Run tests": self.run_tests,
            "Configure AWS credentials": self.configure_credentials,
            "Log in to Amazon ECR": self.ecr_login,
            "Build and push image": self.build_and_push,
            "Render task definition": self.render_task_definition,
            "Register task definition": self.register_task_definition,
            "Update CloudFormation stack": self.update_stack,
            "Deploy to Amazon ECS": self.update_service,
            "Wait for service stability": self.wait_stable,
            "Complete job": self.complete_job,
        }
        handlers[name](ctx)

    # -- steps --------------------------------------------------------------------------------
    def set_up_job(self, ctx: RunContext) -> None:
        ctx.log("Current runner version: '2.321.0' (shipbook sandbox)")
        ctx.log(f"Operating System: {sys.platform}; GITHUB_REF=refs/tags/{ctx.tag}; GITHUB_SHA={ctx.sha}")

    def checkout(self, ctx: RunContext) -> None:
        if not (ctx.workspace / "manage.py").exists():
            shutil.rmtree(ctx.workspace, ignore_errors=True)
            self.repo().archive(ctx.sha, ctx.workspace)
        ctx.log(f"Checked out {ctx.sha} (refs/tags/{ctx.tag}) into {ctx.workspace}")

    def set_up_python(self, ctx: RunContext) -> None:
        ctx.log(f"Using Python {sys.version.split()[0]} at {self.python}")

    def run_tests(self, ctx: RunContext) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "AWS_"))}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        result = subprocess.run(
            [self.python, "manage.py", "test", "--noinput"],
            cwd=ctx.workspace, env=env, capture_output=True, text=True, timeout=300,
        )
        for line in (result.stdout + result.stderr).splitlines()[-15:]:
            ctx.log(line)
        if result.returncode != 0:
            raise StepFailed(f"Process completed with exit code {result.returncode}.")

    def configure_credentials(self, ctx: RunContext) -> None:
        identity = self._client("sts").get_caller_identity()
        ctx.log(f"Authenticated as account {identity['Account']} ({identity['Arn']})")

    def ecr_login(self, ctx: RunContext) -> None:
        data = self._client("ecr").get_authorization_token()["authorizationData"][0]
        ctx.log(f"Logged in to {data.get('proxyEndpoint', REGISTRY)}")

    def build_and_push(self, ctx: RunContext) -> None:
        images = self.state_dir / "images"
        target = images / ctx.tag
        staging = images / f".{ctx.tag}.{ctx.run_id}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(ctx.workspace, staging)
        config = {"tag": ctx.tag, "commit": ctx.sha, "created": now_iso(),
                  "env": {"APP_VERSION": ctx.tag, "GIT_COMMIT": ctx.sha}}
        (staging / ".image.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        ctx.log(f"Built {REGISTRY}/{ECR_REPOSITORY}:{ctx.tag} from {ctx.sha[:12]} into {target}")
        config_digest = "sha256:" + hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        layer_digest = "sha256:" + hashlib.sha256(f"{ctx.sha}:{ctx.tag}".encode()).hexdigest()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1470,
                       "digest": config_digest},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 52_428_800,
                        "digest": layer_digest}],
        }
        pushed = self._client("ecr").put_image(
            repositoryName=ECR_REPOSITORY, imageTag=ctx.tag, imageManifest=json.dumps(manifest)
        )["image"]
        digest = pushed["imageId"].get("imageDigest", "")
        ctx.values["image"] = f"{REGISTRY}/{ECR_REPOSITORY}:{ctx.tag}"
        ctx.log(f"{ctx.tag}: digest: {digest} size: 52428800")

    def render_task_definition(self, ctx: RunContext) -> None:
        taskdef = json.loads(self.repo().show(ctx.sha, "infra/taskdef.json"))
        image = ctx.values.get("image") or f"{REGISTRY}/{ECR_REPOSITORY}:{ctx.tag}"
        containers = [c for c in taskdef.get("containerDefinitions", []) if c.get("name") == CONTAINER]
        if not containers:
            raise StepFailed(f"Invalid task definition: Could not find container definition with name {CONTAINER}")
        containers[0]["image"] = image
        ctx.values["taskdef"] = taskdef
        ctx.log(f"Rendered infra/taskdef.json: container {CONTAINER} image {image}")

    def register_task_definition(self, ctx: RunContext) -> None:
        if "taskdef" not in ctx.values:
            self.render_task_definition(ctx)
        arn = self._client("ecs").register_task_definition(**ctx.values["taskdef"])["taskDefinition"][
            "taskDefinitionArn"
        ]
        ctx.values["taskdef_arn"] = arn
        ctx.log(f"Registered {arn}")

    def update_stack(self, ctx: RunContext) -> None:
        cfn = self._client("cloudformation")
        template = self.repo().show(ctx.sha, "infra/template.yaml")
        stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
        current = {p["ParameterKey"] for p in stack.get("Parameters", [])}
        declared = [p["ParameterKey"] for p in cfn.validate_template(TemplateBody=template).get("Parameters", [])]
        parameters = [{"ParameterKey": key, "UsePreviousValue": True} for key in declared if key in current]
        ctx.log(f"Waiting for changeset to be created.. (stack {STACK}, parameters kept: {', '.join(sorted(current))})")
        try:
            cfn.update_stack(StackName=STACK, TemplateBody=template, Parameters=parameters,
                             Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
        except ClientError as error:
            if "No updates are to be performed" in str(error):
                ctx.log(f"No changes to deploy. Stack {STACK} is up to date")
                return
            raise
        deadline = time.monotonic() + 120
        status = ""
        while time.monotonic() < deadline:
            status = cfn.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"]
            if not status.endswith("_IN_PROGRESS"):
                break
            self._stop.wait(self.poll_seconds)
        ctx.log(f"Stack {STACK}: {status}")
        if status not in ("UPDATE_COMPLETE", "CREATE_COMPLETE"):
            raise StepFailed(f"Failed to create/update the stack {STACK}: {status}")
        ctx.log(f"Successfully created/updated stack - {STACK}")

    def update_service(self, ctx: RunContext) -> None:
        arn = ctx.values.get("taskdef_arn")
        if not arn:
            raise StepFailed("no task definition was registered")
        service = self._client("ecs").update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=arn)["service"]
        primary = next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), {})
        ctx.values["deployment_id"] = primary.get("id", "")
        ctx.log(f"Deployment started: {ctx.values['deployment_id']} of {arn} on {CLUSTER}/{SERVICE}")

    def wait_stable(self, ctx: RunContext) -> None:
        ecs = self._client("ecs")
        deployment_id = ctx.values.get("deployment_id", "")
        arn = ctx.values.get("taskdef_arn", "")
        deadline = time.monotonic() + self.stable_timeout
        seen_events: set[str] = set()
        last = ""
        while time.monotonic() < deadline and not self._stop.is_set():
            service = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
            for event in reversed(service.get("events", [])):
                if event.get("id") not in seen_events:
                    seen_events.add(event.get("id"))
                    ctx.log(f"event: {event.get('message')}")
            ours = next((d for d in service.get("deployments", []) if d.get("id") == deployment_id), None)
            if ours is None:
                if service.get("taskDefinition") == arn and len(service.get("deployments", [])) <= 1:
                    ctx.log("Deployment completed; the service is stable.")
                    return
                raise StepFailed(f"deployment {deployment_id} was replaced before it completed")
            state = f"{ours.get('rolloutState')} running={ours.get('runningCount')}/{ours.get('desiredCount')}"
            if state != last:
                ctx.log(f"Deployment {deployment_id}: {state}")
                last = state
            if ours.get("rolloutState") == "COMPLETED":
                ctx.log("Deployment completed; the service is stable.")
                return
            if ours.get("rolloutState") == "FAILED":
                raise StepFailed(f"Deployment failed: {ours.get('rolloutStateReason', '')}")
            self._stop.wait(self.poll_seconds)
        raise StepFailed(f"Timed out after {self.stable_timeout:.0f}s waiting for {CLUSTER}/{SERVICE} to be stable")

    def complete_job(self, ctx: RunContext) -> None:
        ctx.log("Cleaning up orphan processes")
