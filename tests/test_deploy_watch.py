"""The deploy watchers against a scripted world: an injected clock and sleep, no real waiting.

The world answers like GitHub, CloudFormation, ECS, the target group and the public URL would
at each moment of a scripted deploy (seconds since the push); the fake clock only moves when
the code under test sleeps.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from fake_paging import paginator
from matplotlib.figure import Figure
from shipbook import deploy
from shipbook.deploy.ecs import EcsBaseline, EcsStage
from shipbook.deploy.health import HealthStage, Probe, served_version
from shipbook.deploy.poll import WatchSettings
from shipbook.deploy.stack import StackStage
from shipbook.deploy.timeline import Timeline
from shipbook.errors import GateError
from test_deploy_support import make_app_repo, make_env

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TD1 = "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/demo-web:1"
TD2 = "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/demo-web:2"
TG_ARN = "arn:aws:elasticloadbalancing:ap-northeast-1:123456789012:targetgroup/demo-web-tg/0123456789abcdef"
FAST = WatchSettings(workflow_timeout=600, stack_timeout=600, ecs_timeout=600, health_timeout=700,
                     run_appear_timeout=60, deployment_appear_timeout=30)


def ts(sec: float) -> datetime:
    return T0 + timedelta(seconds=sec)


def gh_time(sec: float | None) -> str | None:
    return None if sec is None else ts(sec).strftime("%Y-%m-%dT%H:%M:%SZ")


class Clock:
    def __init__(self) -> None:
        self.t = T0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.t += timedelta(seconds=seconds)

    @property
    def at(self) -> float:
        return (self.t - T0).total_seconds()


# ---------------------------------------------------------------------------------------------- the world


@dataclass
class Step:
    name: str
    start: float
    end: float | None  # None: never ends
    conclusion: str = "success"


@dataclass
class Script:
    run_appears: float | None = 3
    jobs: dict[str, list[Step]] = field(default_factory=dict)
    stack: list[tuple[float, str, str, str, str]] = field(default_factory=list)
    ecs: Any = None  # at -> (deployments, events)
    served: Any = None  # at -> version
    targets: Any = None  # at -> [states]
    failing: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)


def healthy_jobs(deploy_end: float = 50) -> dict[str, list[Step]]:
    return {"build": [Step("Set up job", 4, 5), Step("Run tests", 5, 14), Step("Build and push image", 14, 20)],
            "deploy": [Step("Register task definition", 21, 23), Step("Update CloudFormation stack", 23, 31),
                       Step("Deploy to Amazon ECS", 31, 33), Step("Wait for service stability", 33, deploy_end)]}


STACK_OK = [(24, "shipbook-demo", "AWS::CloudFormation::Stack", "UPDATE_IN_PROGRESS", "User Initiated"),
            (25, "TaskDefinition", "AWS::ECS::TaskDefinition", "UPDATE_IN_PROGRESS", ""),
            (27, "TaskDefinition", "AWS::ECS::TaskDefinition", "UPDATE_COMPLETE", ""),
            (29, "shipbook-demo", "AWS::CloudFormation::Stack", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", ""),
            (31, "shipbook-demo", "AWS::CloudFormation::Stack", "UPDATE_COMPLETE", "")]


def dep(id_: str, status: str, rollout: str, td: str, running: int, created: float, pending: int = 0,
        failed: int = 0, reason: str = "") -> dict:
    d = {"id": id_, "status": status, "taskDefinition": td, "desiredCount": 2, "pendingCount": pending,
         "runningCount": running, "failedTasks": failed, "createdAt": ts(created), "updatedAt": ts(created),
         "launchType": "FARGATE", "rolloutState": rollout}
    if reason:
        d["rolloutStateReason"] = reason
    return d


OLD_EVENT = {"id": "ev-0", "createdAt": ts(-3600), "message": "(service demo-web) has reached a steady state."}


def ecs_healthy(at: float):
    old = dep("ecs-svc/old", "PRIMARY" if at < 32 else "ACTIVE", "COMPLETED", TD1,
              2 if at < 40 else (1 if at < 42 else 0), -3600)
    events = [OLD_EVENT]
    if at < 32:
        return [old], events
    running = 0 if at < 36 else (1 if at < 40 else 2)
    new = dep("ecs-svc/new", "PRIMARY", "COMPLETED" if at >= 45 else "IN_PROGRESS", TD2, running, 32,
              pending=2 - running)
    started = "(service demo-web) has started 2 tasks: (task a) (task b)."
    events = [{"id": "ev-1", "createdAt": ts(33), "message": started}, *events]
    if at >= 45:
        events = [{"id": "ev-2", "createdAt": ts(45), "message": "(service demo-web) has reached a steady state."},
                  *events]
    return ([new, old] if at < 44 else [new]), events


def ecs_crash(at: float):
    old = dep("ecs-svc/old", "PRIMARY" if at < 32 else "ACTIVE", "COMPLETED", TD1, 2, -3600)
    if at < 32:
        return [old], [OLD_EVENT]
    failed = 0 if at < 35 else (1 if at < 40 else (2 if at < 44 else 3))
    state = "FAILED" if at >= 46 else "IN_PROGRESS"
    reason = "ECS deployment circuit breaker: tasks failed to start." if at >= 46 else ""
    new = dep("ecs-svc/new", "ACTIVE" if at >= 46 else "PRIMARY", state, TD2, 0, 32, pending=0 if at >= 46 else 2,
              failed=failed, reason=reason)
    events = [{"id": "ev-1", "createdAt": ts(35), "message": "(service demo-web) (task a) failed container health "
               "checks."}, OLD_EVENT]
    deps = [new, old]
    if at >= 46:
        deps = [dep("ecs-svc/rollback", "PRIMARY", "IN_PROGRESS", TD1, 0, 46), new, old]
        events = [{"id": "ev-2", "createdAt": ts(46), "message": "(service demo-web) deployment ecs-svc/new deployment "
                   "failed: tasks failed to start. Rolling back to deployment ecs-svc/rollback."}, *events]
    return deps, events


def ecs_stuck(at: float):
    old = dep("ecs-svc/old", "PRIMARY" if at < 32 else "ACTIVE", "COMPLETED", TD1, 1 if at >= 40 else 2, -3600)
    if at < 32:
        return [old], [OLD_EVENT]
    return [dep("ecs-svc/new", "PRIMARY", "IN_PROGRESS", TD2, 0 if at < 40 else 1, 32, pending=1), old], [OLD_EVENT]


def served_after(sec: float):
    return lambda at: "v1.0.0" if at >= sec else "v0.9.0"


def targets_healthy(at: float) -> list[str]:
    if at < 36:
        return ["healthy", "healthy"]
    if at < 40:
        return ["healthy", "healthy", "initial"]
    if at < 44:
        return ["healthy", "healthy", "draining", "draining"]
    return ["healthy", "healthy"]


class World:
    def __init__(self, clock: Clock, script: Script) -> None:
        self.clock = clock
        self.script = script
        self.calls: dict[str, int] = {}

    @property
    def at(self) -> float:
        return self.clock.at

    def answer(self, service: str, op: str, params: dict) -> dict:
        self.calls[f"{service}.{op}"] = self.calls.get(f"{service}.{op}", 0) + 1
        window = self.script.failing.get((service, op))
        if window and window[0] <= self.at < window[1]:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, op)
        return getattr(self, f"{service}_{op}")(**params)

    # -- cloudformation
    def _stack_events(self) -> list[dict]:
        evs = [{"EventId": f"ev-{i}", "StackName": "shipbook-demo", "Timestamp": ts(sec), "LogicalResourceId": lid,
                "ResourceType": typ, "ResourceStatus": st, "ResourceStatusReason": reason}
               for i, (sec, lid, typ, st, reason) in enumerate(self.script.stack) if sec <= self.at]
        old = {"EventId": "ev-before", "StackName": "shipbook-demo", "Timestamp": ts(-86400),
               "LogicalResourceId": "shipbook-demo", "ResourceType": "AWS::CloudFormation::Stack",
               "ResourceStatus": "UPDATE_COMPLETE"}
        return [*reversed(evs), old]

    def cloudformation_describe_stack_events(self, StackName: str, NextToken: str = "") -> dict:
        evs = self._stack_events()
        start = int(NextToken or 0)
        page = {"StackEvents": evs[start:start + 2]}  # small pages: paging is exercised
        if start + 2 < len(evs):
            page["NextToken"] = str(start + 2)
        return page

    def cloudformation_describe_stacks(self, StackName: str) -> dict:
        stack_level = [e for e in self._stack_events() if e["LogicalResourceId"] == "shipbook-demo"]
        return {"Stacks": [{"StackName": StackName, "StackStatus": stack_level[0]["ResourceStatus"]}]}

    # -- ecs
    def ecs_describe_services(self, cluster: str, services: list[str]) -> dict:
        deps, events = self.script.ecs(self.at)
        return {"services": [{"serviceName": services[0], "desiredCount": 2, "deployments": deps, "events": events,
                              "taskDefinition": deps[0]["taskDefinition"]}], "failures": []}

    # -- elbv2
    def elbv2_describe_target_groups(self, Names: list[str]) -> dict:
        return {"TargetGroups": [{"TargetGroupArn": TG_ARN, "TargetGroupName": Names[0]}]}

    def elbv2_describe_target_health(self, TargetGroupArn: str) -> dict:
        states = self.script.targets(self.at) if self.script.targets else ["healthy", "healthy"]
        return {"TargetHealthDescriptions": [{"Target": {"Id": f"10.0.0.{i}", "Port": 8000},
                                              "TargetHealth": {"State": s}} for i, s in enumerate(states)]}

    # -- the public URL
    def probe(self, url: str) -> Probe:
        self.calls["http"] = self.calls.get("http", 0) + 1
        served = self.script.served(self.at) if self.script.served else "v0.9.0"
        if url.endswith("/version/"):
            return Probe(url, 200, json.dumps({"version": served, "commit": "abc"}))
        return Probe(url, 200, json.dumps({"status": "ok"}))


class FakeClient:
    def __init__(self, world: World, service: str) -> None:
        self.meta = SimpleNamespace(service_model=SimpleNamespace(service_name=service))
        self._world = world
        self._service = service

    def __getattr__(self, op: str):
        return lambda **params: self._world.answer(self._service, op, params)

    def get_paginator(self, op: str):
        return paginator(self._service, op, getattr(self, op))


class FakeGitHub:
    """What GitHub's API returns for the scripted run, at the world's time."""

    def __init__(self, world: World, sha: str) -> None:
        self.world = world
        self.sha = sha
        self.calls = 0

    def _jobs(self) -> list[dict]:
        at, out = self.world.at, []
        for n, (name, steps) in enumerate(self.world.script.jobs.items()):
            rendered = []
            for i, s in enumerate(steps):
                done = s.end is not None and at >= s.end
                status = "completed" if done else ("in_progress" if at >= s.start else "queued")
                rendered.append({"name": s.name, "number": i + 1, "status": status,
                                 "conclusion": s.conclusion if done else None,
                                 "started_at": gh_time(s.start) if at >= s.start else None,
                                 "completed_at": gh_time(s.end) if done else None})
            first, last = steps[0], steps[-1]
            done = all(r["status"] == "completed" for r in rendered)
            bad = any(r["conclusion"] == "failure" for r in rendered)
            out.append({"id": 100 + n, "name": name, "run_id": 1,
                        "html_url": f"https://github.com/x/runs/1/job/{100 + n}",
                        "status": "completed" if done else ("in_progress" if at >= first.start else "queued"),
                        "conclusion": ("failure" if bad else "success") if done else None,
                        "started_at": gh_time(first.start) if at >= first.start else None,
                        "completed_at": gh_time(last.end) if done else None, "steps": rendered})
        return out

    def _run(self) -> dict:
        jobs = self._jobs()
        done = all(j["status"] == "completed" for j in jobs)
        ends = [s.end for steps in self.world.script.jobs.values() for s in steps if s.end is not None]
        return {"id": 1, "run_number": 12, "name": "deploy", "path": ".github/workflows/deploy.yml",
                "head_sha": self.sha, "head_branch": "v1.0.0", "event": "push",
                "status": "completed" if done else "in_progress",
                "conclusion": ("failure" if any(j["conclusion"] == "failure" for j in jobs) else "success")
                if done else None, "html_url": "https://github.com/x/runs/1",
                "created_at": gh_time(self.world.script.run_appears), "run_started_at":
                    gh_time(self.world.script.run_appears), "updated_at": gh_time(max(ends) if done else self.world.at)}

    def workflow_runs(self, head_sha: str, event: str = "push") -> list[dict]:
        self.calls += 1
        appears = self.world.script.run_appears
        if appears is None or self.world.at < appears:
            return []
        other = {**self._run(), "id": 2, "path": ".github/workflows/ci.yml", "name": "ci", "head_branch": "main"}
        return [other, self._run()]

    def run(self, run_id: int) -> dict:
        self.calls += 1
        return self._run()

    def run_jobs(self, run_id: int) -> list[dict]:
        self.calls += 1
        return self._jobs()

    def create_release(self, tag, name, body, prerelease):
        self.calls += 1
        return {"html_url": f"https://github.com/example/demo-app/releases/tag/{tag}"}


@dataclass
class Run:
    clock: Clock
    world: World
    outcome: deploy.Outcome
    lines: list[tuple[float, str]]
    repo: Any

    def verdicts(self) -> dict[str, str]:
        return {c.id: c.verdict for c in self.outcome.checks()}

    def summary(self, check_id: str) -> str:
        return next(c.summary for c in self.outcome.checks() if c.id == check_id)


def run_deploy(tmp_path, script: Script, settings: WatchSettings = FAST, github: bool = True, **env_kw) -> Run:
    repo = make_app_repo(tmp_path)
    env = make_env(repo, **env_kw)
    clock = Clock()
    world = World(clock, script)
    lines: list[tuple[float, str]] = []

    def report(line: str) -> None:
        lines.append((clock.at, line))

    plan = deploy.make_plan(env, deploy.check_version(env, "v1.0.0", run_id="r1"), run_id="r1", dry_run=False)
    clients = deploy.Clients(FakeClient(world, "ecs"), FakeClient(world, "cloudformation"), FakeClient(world, "elbv2"))
    gh = FakeGitHub(world, plan.commit) if github else None
    dep_ = deploy.start(env, plan, now=clock.now, clients=clients, github=gh, report=report)
    if not github:
        dep_.github = None
    outcome = deploy.watch(dep_, settings=settings, now=clock.now, sleep=clock.sleep, report=report,
                           rng=random.Random(7), probe=world.probe)
    return Run(clock, world, outcome, lines, repo)


def healthy_script(**kw) -> Script:
    base = {"jobs": healthy_jobs(), "stack": STACK_OK, "ecs": ecs_healthy, "served": served_after(41),
            "targets": targets_healthy}
    base.update(kw)
    return Script(**base)


# ---------------------------------------------------------------------------------------------- scenarios


def test_healthy_deploy_passes_every_stage_with_a_timeline_and_facts(tmp_path):
    r = run_deploy(tmp_path, healthy_script())
    assert r.verdicts() == {"release.version": "pass", "release.notes": "pass", "release.tag": "pass",
                            "deploy.workflow": "pass", "deploy.cloudformation": "pass", "deploy.ecs": "pass",
                            "deploy.health": "pass"}
    assert "run #12 (deploy) succeeded in 47s (jobs: build 16s, deploy 29s)" in r.summary("deploy.workflow")
    assert "UPDATE_COMPLETE (1 resource(s) changed" in r.summary("deploy.cloudformation")
    assert "ecs-svc/new (demo-web:2) COMPLETED: 2/2" in r.summary("deploy.ecs")
    assert "healthy on v1.0.0" in r.summary("deploy.health") and "/version/ v1.0.0" in r.summary("deploy.health")
    # finished soon after the last stage could pass, not at a deadline
    assert 45 <= r.clock.at <= 70
    facts = r.outcome.facts()
    assert facts["release_commit"] == r.repo.head() and facts["deploy_started"] == "2026-11-28T12:00:00+00:00"
    assert facts["deploy_finished"] == r.outcome.finished.isoformat(timespec="seconds")
    assert facts["task_definition"] == TD2 and facts["previous_task_definition"] == TD1
    # the tables the notebook shows
    jobs = r.outcome.workflow_table()
    assert list(jobs[jobs.step == "Run tests"].seconds) == [9.0]
    assert list(r.outcome.stack_events_table().status)[-1] == "UPDATE_COMPLETE"
    assert "ev-before" not in str(r.outcome.stack_events_table())
    deps = r.outcome.deployments_table()
    assert "ecs-svc/new (this release)" in set(deps.deployment)
    assert list(r.outcome.service_events_table().message)[-1].endswith("has reached a steady state.")
    health = r.outcome.health_table()
    assert health.iloc[0]["served version"] == "v0.9.0" and health.iloc[-1]["served version"] == "v1.0.0"
    timeline = r.outcome.timeline_table()
    assert set(timeline.stage) == {"workflow", "stack", "ecs", "health"}
    assert list(timeline["t+s"]) == sorted(timeline["t+s"])
    samples = r.outcome.timeline.ecs
    assert samples[0].old_running == 2 and samples[-1].new_running == 2 and samples[-1].old_running == 0


def test_progress_is_never_silent_for_more_than_the_heartbeat(tmp_path):
    r = run_deploy(tmp_path, healthy_script())
    times = [t for t, _ in r.lines]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) <= FAST.heartbeat + 1e-6
    text = "\n".join(line for _, line in r.lines)
    assert "job build / Run tests: COMPLETED — success in 9s" in text
    assert "waiting · workflow" in text  # heartbeat lines name every stage
    assert "deploy.ecs: PASS" in text


def test_polls_back_off_when_nothing_changes_and_api_calls_stay_bounded(tmp_path):
    settings = WatchSettings(workflow_timeout=300, stack_timeout=300, ecs_timeout=300, health_timeout=300,
                             run_appear_timeout=400, deployment_appear_timeout=400, poll_max=15)
    r = run_deploy(tmp_path, Script(run_appears=None, ecs=ecs_healthy), settings=settings,
                   stack=make_env().stack.__class__(name="", cluster="shipbook-demo", service="demo-web"))
    # nothing ever happens: the run never appears; everything times out at its deadline
    assert r.verdicts()["deploy.workflow"] == "fail" and "no terminal state within 300s" in r.summary("deploy.workflow")
    assert r.verdicts()["deploy.cloudformation"] == "skip"
    assert 300 <= r.clock.at < 320
    # 300 s of watching at up to 15 s (+-20%) intervals: a few dozen calls, not hundreds
    assert r.world.calls["ecs.describe_services"] < 40
    assert max(r.clock.sleeps) <= settings.heartbeat + 1e-6


def test_crash_on_start_fails_on_the_rollout_and_the_old_version_keeps_serving(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPBOOK_WORK_DIR", str(tmp_path))
    r = run_deploy(tmp_path, healthy_script(ecs=ecs_crash, served=lambda at: "v0.9.0",
                                            targets=lambda at: ["healthy", "healthy"],
                                            jobs=healthy_jobs(deploy_end=90)))
    v = r.verdicts()
    assert v["deploy.ecs"] == "fail" and v["deploy.health"] == "skip" and v["deploy.cloudformation"] == "pass"
    ecs_summary = r.summary("deploy.ecs")
    assert "ecs-svc/new (demo-web:2) FAILED: ECS deployment circuit breaker: tasks failed to start." in ecs_summary
    assert "3 failed tasks" in ecs_summary and "rolled back to demo-web:1" in ecs_summary
    assert "now /version/ answers v0.9.0" in r.summary("deploy.health")
    # the failure ends the watch: the workflow still waiting for stability is not waited for
    assert v["deploy.workflow"] == "skip" and "after deploy.ecs failed" in r.summary("deploy.workflow")
    assert r.clock.at < 90
    with pytest.raises(GateError) as err:
        deploy.finish(r.outcome)
    assert "deploy.ecs" in str(err.value) and err.value.exit_code == 1
    data = json.loads((tmp_path / "result.json").read_text())
    assert [b["id"] for b in data["blocking"]] == ["deploy.ecs"]
    assert data["facts"]["deploy_started"] and data["facts"]["deploy_finished"]
    assert "circuit breaker" in data["blocking"][0]["summary"]


def test_a_failed_workflow_step_is_named_with_its_log_url_and_later_stages_are_not_reached(tmp_path):
    jobs = {"build": [Step("Set up job", 4, 5), Step("Run tests", 5, 14, "failure"),
                      Step("Build and push image", 14, 14, "skipped")],
            "deploy": [Step("Register task definition", 14, 14, "skipped")]}
    r = run_deploy(tmp_path, Script(jobs=jobs, ecs=ecs_healthy, targets=targets_healthy))
    v = r.verdicts()
    assert v["deploy.workflow"] == "fail"
    assert "concluded failure: job build, step 'Run tests' — log: https://github.com/x/runs/1/job/100" in \
        r.summary("deploy.workflow")
    assert v["deploy.ecs"] == "skip" and "the workflow failed first" in r.summary("deploy.ecs")
    assert v["deploy.cloudformation"] == "skip" and v["deploy.health"] == "skip"
    assert r.clock.at < 60


def test_a_stack_rollback_fails_with_the_resource_and_reason(tmp_path):
    stack = [(24, "shipbook-demo", "AWS::CloudFormation::Stack", "UPDATE_IN_PROGRESS", "User Initiated"),
             (26, "Service", "AWS::ECS::Service", "UPDATE_FAILED", "Invalid request provided: subnet missing"),
             (27, "shipbook-demo", "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_IN_PROGRESS", "failed: Service"),
             (33, "shipbook-demo", "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_COMPLETE", "")]
    jobs = {"deploy": [Step("Update CloudFormation stack", 23, 34, "failure")]}
    r = run_deploy(tmp_path, Script(jobs=jobs, stack=stack, ecs=lambda at: ecs_healthy(0), targets=targets_healthy))
    assert r.verdicts()["deploy.cloudformation"] == "fail"
    assert "UPDATE_ROLLBACK_COMPLETE: Service UPDATE_FAILED — Invalid request provided" in \
        r.summary("deploy.cloudformation")
    assert r.verdicts()["deploy.workflow"] == "fail" and r.verdicts()["deploy.ecs"] == "skip"


def test_a_rollout_that_never_completes_fails_at_its_deadline_with_what_was_seen(tmp_path):
    settings = WatchSettings(workflow_timeout=200, stack_timeout=200, ecs_timeout=120, health_timeout=200)
    r = run_deploy(tmp_path, healthy_script(ecs=ecs_stuck, jobs=healthy_jobs(deploy_end=None)), settings=settings)
    v = r.verdicts()
    assert v["deploy.ecs"] == "fail"
    assert "no terminal state within 120s: last seen IN_PROGRESS 1/2 running (1 pending)" in r.summary("deploy.ecs")
    assert v["deploy.health"] == "skip" and v["deploy.workflow"] == "skip"
    assert "stopped watching 30s after deploy.ecs failed; last seen in_progress (deploy / Wait for service " \
        "stability)" in r.summary("deploy.workflow")
    assert 150 <= r.clock.at <= 160


def test_no_workflow_run_for_the_tag_fails_after_it_had_time_to_appear(tmp_path):
    r = run_deploy(tmp_path, Script(run_appears=None, ecs=lambda at: ecs_healthy(0)))
    assert r.verdicts()["deploy.workflow"] == "fail"
    assert "no workflow run started for v1.0.0" in r.summary("deploy.workflow")
    assert 60 <= r.clock.at < 80
    assert r.verdicts()["deploy.ecs"] == "skip"


def test_without_github_the_workflow_is_manual_and_the_rest_is_still_watched(tmp_path):
    r = run_deploy(tmp_path, healthy_script(), github=False)
    v = r.verdicts()
    assert v["deploy.workflow"] == "manual" and "https://github.com/example/demo-app/actions" in \
        r.summary("deploy.workflow")
    assert v["deploy.ecs"] == "pass" and v["deploy.health"] == "pass" and v["deploy.cloudformation"] == "pass"


def test_transient_api_errors_are_survived_and_persistent_ones_fail_the_stage(tmp_path):
    r = run_deploy(tmp_path, healthy_script(failing={("ecs", "describe_services"): (36, 40)}))
    assert r.verdicts()["deploy.ecs"] == "pass"
    assert any(e.status == "ERROR" and "ThrottlingException" in e.detail for e in r.outcome.timeline.events)

    r2 = run_deploy(tmp_path / "b", healthy_script(failing={("ecs", "describe_services"): (34, 10_000)}))
    assert r2.verdicts()["deploy.ecs"] == "fail"
    assert "5 failed API calls in a row, last: AWS ecs.describe_services failed: ThrottlingException" in \
        r2.summary("deploy.ecs")


def test_a_call_budget_bounds_a_stage(tmp_path):
    settings = WatchSettings(max_calls=20, poll_max=2)
    r = run_deploy(tmp_path, healthy_script(ecs=ecs_stuck), settings=settings, github=False)
    assert r.verdicts()["deploy.ecs"] == "fail"
    assert "gave up after 20 API calls: last seen IN_PROGRESS" in r.summary("deploy.ecs")
    assert r.world.calls["ecs.describe_services"] == 21  # the baseline, then the budget
    assert r.clock.at < 60


def test_the_workflow_passing_without_a_new_deployment_fails_ecs(tmp_path):
    r = run_deploy(tmp_path, healthy_script(ecs=lambda at: ecs_healthy(0)))
    assert r.verdicts()["deploy.ecs"] == "fail"
    assert "no new deployment of demo-web appeared within 30s" in r.summary("deploy.ecs")


def test_a_completed_deployment_replaced_by_the_same_task_definition_passes(tmp_path):
    def folded(at: float):
        deps, events = ecs_healthy(at)
        if at >= 45:
            return [dep("ecs-svc/steady", "PRIMARY", "COMPLETED", TD2, 2, 45)], events
        return deps, events

    r = run_deploy(tmp_path, healthy_script(ecs=folded))
    assert r.verdicts()["deploy.ecs"] == "pass" and "runs demo-web:2 alone" in r.summary("deploy.ecs")


def test_a_resumed_deploy_recognises_its_own_push_and_watches_from_it(tmp_path):
    first = run_deploy(tmp_path, healthy_script())
    env = make_env(first.repo)
    clock = Clock()
    clock.t = ts(200)  # the run is resumed later: the deploy is long over
    world = first.world
    world.clock = clock
    vc = deploy.check_version(env, "v1.0.0", run_id="r1")
    assert vc.resumed
    plan = deploy.make_plan(env, vc, run_id="r1", dry_run=False)
    clients = deploy.Clients(FakeClient(world, "ecs"), FakeClient(world, "cloudformation"),
                             FakeClient(world, "elbv2"))
    started = first.outcome.facts()["deploy_started"]
    dep_ = deploy.start(env, plan, deploy_started=started, now=clock.now, clients=clients,
                        github=FakeGitHub(world, plan.commit), report=lambda line: None)
    assert dep_.active and not dep_.tag.created and dep_.started == T0
    out = deploy.watch(dep_, settings=FAST, now=clock.now, sleep=clock.sleep, report=lambda line: None,
                       rng=random.Random(3), probe=world.probe)
    assert {c.id: c.verdict for c in out.checks()} == first.verdicts()
    assert clock.at < 210 and out.facts()["task_definition"] == TD2


def test_chart_marks_start_and_finish_and_plots_old_and_new(tmp_path):
    r = run_deploy(tmp_path, healthy_script())
    fig = r.outcome.chart()
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "old deployment running" in labels and "new deployment running (v1.0.0)" in labels
    vlines = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert len(vlines) == 2
    fig.savefig(tmp_path / "chart.png")


# ---------------------------------------------------------------------------------------------- dry run


def test_dry_run_watches_nothing_and_reports_skips(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPBOOK_WORK_DIR", str(tmp_path))
    repo = make_app_repo(tmp_path)
    env = make_env(repo)
    plan = deploy.make_plan(env, deploy.check_version(env, "v1.0.0"), dry_run=True)
    lines: list[str] = []
    dep_ = deploy.start(env, plan, report=lines.append)
    out = deploy.watch(dep_, report=lines.append, sleep=lambda s: pytest.fail("a dry run must not wait"))
    table = deploy.finish(out)
    assert list(table.verdict) == ["pass", "pass", "skip", "skip", "skip", "skip", "skip"]
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["verdict"] == "skip" and data["blocking"] == [] and data["facts"] == {"release_commit": repo.head()}
    assert isinstance(out.chart(), Figure) and out.timeline_table().empty
    assert repo.tags() == {"v0.9.0"}


# ---------------------------------------------------------------------------------------------- shapes (Stubber)


def real_client(service: str):
    return boto3.client(service, region_name="ap-northeast-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def test_ecs_calls_and_answers_match_the_ecs_api():
    ecs = real_client("ecs")
    desc = {"services": [{"serviceName": "demo-web", "desiredCount": 2, "events": [OLD_EVENT],
                          "deployments": [dep("ecs-svc/old", "PRIMARY", "COMPLETED", TD1, 2, -3600)]}],
            "failures": []}
    deployments = [dep("ecs-svc/new", "PRIMARY", "COMPLETED", TD2, 2, 32),
                   dep("ecs-svc/old", "ACTIVE", "COMPLETED", TD1, 0, -9)]
    after = {"services": [{"serviceName": "demo-web", "desiredCount": 2, "events": [OLD_EVENT],
                           "deployments": deployments}], "failures": []}
    with Stubber(ecs) as stub:
        params = {"cluster": "shipbook-demo", "services": ["demo-web"]}
        stub.add_response("describe_services", desc, params)
        stub.add_response("describe_services", after, params)
        from shipbook import aws
        from shipbook.deploy import ecs as ecs_mod

        base = ecs_mod.baseline(aws.call, ecs, "shipbook-demo", "demo-web")
        assert base == EcsBaseline({"ecs-svc/old"}, TD1, {"ev-0"})
        stage = EcsStage(Timeline(started=T0), 600, ecs, "shipbook-demo", "demo-web", base)
        stage.poll(ts(50), {})
        stub.assert_no_pending_responses()
    assert stage.verdict == "pass" and stage.calls == 1


def test_cloudformation_calls_and_answers_match_the_api():
    cfn = real_client("cloudformation")
    ev = {"EventId": "e2", "StackId": "s", "StackName": "shipbook-demo", "Timestamp": ts(31),
          "LogicalResourceId": "shipbook-demo", "ResourceType": "AWS::CloudFormation::Stack",
          "ResourceStatus": "UPDATE_COMPLETE"}
    before = {**ev, "EventId": "e1", "Timestamp": ts(-10)}
    with Stubber(cfn) as stub:
        stub.add_response("describe_stack_events", {"StackEvents": [ev, before]}, {"StackName": "shipbook-demo"})
        stub.add_response("describe_stacks", {"Stacks": [{"StackName": "shipbook-demo", "CreationTime": ts(-99),
                                                          "StackStatus": "UPDATE_COMPLETE"}]},
                          {"StackName": "shipbook-demo"})
        stage = StackStage(Timeline(started=T0), 600, cfn, "shipbook-demo", baseline_event="e1")
        stage.poll(ts(40), {})
        stub.assert_no_pending_responses()
    assert stage.verdict == "pass" and [e["EventId"] for e in stage.events] == ["e2"]


def test_target_health_calls_and_answers_match_the_api():
    elb = real_client("elbv2")
    with Stubber(elb) as stub:
        stub.add_response("describe_target_groups", {"TargetGroups": [{"TargetGroupArn": TG_ARN}]},
                          {"Names": ["demo-web-tg"]})
        for _ in range(2):
            stub.add_response("describe_target_health", {"TargetHealthDescriptions": [
                {"Target": {"Id": "10.0.0.1", "Port": 8000}, "TargetHealth": {"State": "healthy"}}]},
                {"TargetGroupArn": TG_ARN})

        def probe(url: str) -> Probe:
            return Probe(url, 200, '{"version": "v1.0.0"}' if url.endswith("/version/") else "{}")

        stage = HealthStage(Timeline(started=T0), 600, elb, "demo-web-tg", "http://127.0.0.1:1/", "/health/",
                            "/version/", "v1.0.0", wait_for_ecs=False, probe=probe)
        stage.poll(ts(1), {})
        stage.poll(ts(3), {})
        stub.assert_no_pending_responses()
    assert stage.verdict == "pass" and "targets 1/1 healthy" in stage.summary


@pytest.mark.parametrize("body, want", [('{"version": "v1.0.0", "commit": "x"}', "v1.0.0"), ("1.0.0\n", "1.0.0"),
                                        ("", ""), ('"v2.0.0"', "v2.0.0")])
def test_served_version_reads_json_or_text(body, want):
    assert served_version(body) == want
