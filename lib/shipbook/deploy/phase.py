"""The deploy phase as the notebook calls it: check, plan, start (tag + push), watch, finish.

Each function is one notebook cell's worth of work. Clients, clock, sleep and the progress
reporter are parameters, so the whole phase runs in tests against fakes without waiting.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from shipbook import aws, clock, result
from shipbook.config import Environment
from shipbook.deploy import ecs as ecs_mod
from shipbook.deploy import stack as stack_mod
from shipbook.deploy import version as version_mod
from shipbook.deploy.health import SAMPLE_COLUMNS, HealthStage, Probe, http_probe
from shipbook.deploy.model import CHECK_IDS, CLOUDFORMATION, ECS, HEALTH, PHASE, WORKFLOW
from shipbook.deploy.plan import Plan, TagResult, apply_tag
from shipbook.deploy.poll import Clock, Reporter, Sleep, Stage, WatchSettings, monitor
from shipbook.deploy.timeline import Timeline, chart
from shipbook.deploy.workflow import JOB_COLUMNS, WorkflowStage
from shipbook.github import GitHub
from shipbook.result import Check

log = logging.getLogger(__name__)

say: Reporter = functools.partial(print, flush=True)


@dataclass
class Clients:
    """The AWS clients the watchers use (tests pass stubs)."""

    ecs: Any
    cloudformation: Any
    elbv2: Any


def clients_for(env: Environment) -> Clients:
    return Clients(aws.client(env, "ecs"), aws.client(env, "cloudformation"), aws.client(env, "elbv2"))


def check_version(env: Environment, version: str, previous_version: str = "", run_id: str = ""
                  ) -> version_mod.VersionCheck:
    """release.version against the app repo and its remote. Raises InputError (exit 2) when not releasable."""
    return version_mod.check_version(env.app.repo, version, env.github.remote, previous_version, run_id)


def checks_table(checks: list[Check]) -> pd.DataFrame:
    return pd.DataFrame([{"check": c.id, "verdict": c.verdict, "summary": c.summary} for c in checks],
                        columns=["check", "verdict", "summary"])


def gate_plan(plan: Plan) -> pd.DataFrame:
    """Stop here (GateError) when the plan cannot be applied; else the plan's checks."""
    checks = plan.checks()
    if plan.blocked:
        result.gate(PHASE, [*checks, *_not_started(plan, "the plan is blocked")],
                    facts={"release_commit": plan.commit})
    return checks_table(checks)


@dataclass
class Deployment:
    """A started deploy: the plan, the tag push, and what the service looked like before it."""

    env: Environment
    plan: Plan
    tag: TagResult
    started: datetime | None = None
    github: GitHub | None = None
    clients: Clients | None = None
    ecs_base: ecs_mod.EcsBaseline | None = None
    stack_event: str = ""

    @property
    def active(self) -> bool:
        """True when the tag is on the remote, so a deploy is (or was) running."""
        return self.tag.pushed and self.started is not None

    def table(self) -> pd.DataFrame:
        df = self.tag.table()
        extra = [("deploy started", clock.iso(self.started) or "—"),
                 ("previous task definition", ecs_mod.short_td(self.ecs_base.task_definition)
                  if self.ecs_base else "—")]
        return pd.concat([df, pd.DataFrame(extra, columns=["item", "value"])], ignore_index=True)


def start(env: Environment, plan: Plan, *, deploy_started: str = "", now: Clock = clock.utcnow,
          clients: Clients | None = None, github: GitHub | None = None, report: Reporter = say) -> Deployment:
    """Record the service's state, then tag and push (the push starts the deploy). Dry run: nothing."""
    if plan.dry_run or plan.blocked:
        dep = Deployment(env, plan, apply_tag(plan))
        report(f"{dep.tag.skipped}; the plan above is what a real run would do")
        return dep
    github = github if github is not None else GitHub.from_env(env)
    clients = clients or clients_for(env)
    since = None
    if plan.resumed:  # the push happened in an earlier attempt: "before the deploy" is before that push
        since = datetime.fromisoformat(deploy_started) if deploy_started else \
            version_mod.tag_time(plan.repo, plan.tag)
    base = ecs_mod.baseline(aws.call, clients.ecs, env.stack.cluster, env.stack.service, since) \
        if env.stack.cluster and env.stack.service else None
    stack_event = stack_mod.newest_event_id(clients.cloudformation, env.stack.name, aws.call) \
        if env.stack.name and since is None else ""
    started = since or now()
    report(f"{clock.iso(started)} pushing {plan.tag} ({plan.commit[:12]}) to {plan.remote}: the deploy starts now")
    tag = apply_tag(plan, github)
    for line in tag.problems + tag.warnings:
        report(line)
    if tag.pushed:
        report(f"{plan.tag} is on {plan.remote}" + (f"; GitHub release {tag.release_url}" if tag.release_url else ""))
    return Deployment(env, plan, tag, started if tag.pushed else None, github, clients, base, stack_event)


@dataclass
class Outcome:
    """Everything the watch saw: per-stage results and tables, the timeline, the phase's checks and facts."""

    deployment: Deployment
    stages: dict[str, Stage] = field(default_factory=dict)
    timeline: Timeline = field(default_factory=Timeline)
    finished: datetime | None = None

    def checks(self) -> list[Check]:
        dep = self.deployment
        out = [*dep.plan.checks()[:2], dep.tag.check(dep.plan)]
        if not self.stages:
            return out + _not_started(dep.plan, dep.tag.skipped or "the tag was not pushed")
        return out + [self.stages[i].check() for i in CHECK_IDS if i in self.stages]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks() if c.verdict == "fail"]

    def facts(self) -> dict[str, str]:
        dep = self.deployment
        facts = {"release_commit": dep.plan.commit}
        if dep.active:
            facts.update(release_tag=dep.plan.tag, deploy_started=clock.iso(dep.started),
                         deploy_finished=clock.iso(self.finished))
            ecs_stage = self.stages.get(ECS)
            if isinstance(ecs_stage, ecs_mod.EcsStage):
                facts.update(task_definition=ecs_stage.task_definition,
                             previous_task_definition=ecs_stage.base.task_definition)
            wf = self.stages.get(WORKFLOW)
            if isinstance(wf, WorkflowStage) and wf.run:
                facts["workflow_run_url"] = str(wf.run.get("html_url", ""))
        return facts

    # ---------------------------------------------------------------- tables for the notebook

    def summary_table(self) -> pd.DataFrame:
        return checks_table(self.checks())

    def workflow_table(self) -> pd.DataFrame:
        stage = self.stages.get(WORKFLOW)
        return stage.table() if isinstance(stage, WorkflowStage) else pd.DataFrame(columns=JOB_COLUMNS)

    def stack_events_table(self) -> pd.DataFrame:
        stage = self.stages.get(CLOUDFORMATION)
        return stage.table() if isinstance(stage, stack_mod.StackStage) else \
            pd.DataFrame(columns=stack_mod.EVENT_COLUMNS)

    def deployments_table(self) -> pd.DataFrame:
        stage = self.stages.get(ECS)
        return stage.deployments_table() if isinstance(stage, ecs_mod.EcsStage) else \
            pd.DataFrame(columns=ecs_mod.DEPLOYMENT_COLUMNS)

    def service_events_table(self) -> pd.DataFrame:
        stage = self.stages.get(ECS)
        return stage.events_table() if isinstance(stage, ecs_mod.EcsStage) else \
            pd.DataFrame(columns=ecs_mod.EVENT_COLUMNS)

    def health_table(self) -> pd.DataFrame:
        stage = self.stages.get(HEALTH)
        return stage.table() if isinstance(stage, HealthStage) else pd.DataFrame(columns=SAMPLE_COLUMNS)

    def timeline_table(self) -> pd.DataFrame:
        return self.timeline.frame()

    def chart(self) -> Figure:
        failed = ", ".join(c.id for c in self.failed)
        return chart(self.timeline, self.deployment.plan.version, failed)


def _not_started(plan: Plan, why: str) -> list[Check]:
    reason = "dry run: nothing deployed" if plan.dry_run else f"not started: {why}"
    return [Check(i, "skip", reason) for i in (WORKFLOW, CLOUDFORMATION, ECS, HEALTH)]


def build_stages(dep: Deployment, timeline: Timeline, settings: WatchSettings,
                 probe: Callable[[str], Probe] = http_probe) -> list[Stage]:
    """The four watched stages for `dep`, wired to the environment's names."""
    env, plan, clients = dep.env, dep.plan, dep.clients
    if clients is None:
        raise ValueError("a started deployment has clients")
    actions = f"https://github.com/{env.github.repository}/actions" if env.github.repository else ""
    has_ecs = bool(env.stack.cluster and env.stack.service)
    return [
        WorkflowStage(timeline, settings.workflow_timeout, dep.github, plan.commit, plan.tag, env.github.workflow,
                      settings.run_appear_timeout, actions),
        stack_mod.StackStage(timeline, settings.stack_timeout, clients.cloudformation, env.stack.name,
                             dep.stack_event, dep.started if not dep.stack_event else None),
        ecs_mod.EcsStage(timeline, settings.ecs_timeout, clients.ecs, env.stack.cluster, env.stack.service,
                         dep.ecs_base or ecs_mod.EcsBaseline(), settings.deployment_appear_timeout),
        HealthStage(timeline, settings.health_timeout, clients.elbv2, env.stack.target_group, env.app.public_url,
                    env.app.health_path, env.app.version_path, plan.version, wait_for_ecs=has_ecs,
                    streak=settings.healthy_streak, probe=probe),
    ]


def watch(dep: Deployment, *, settings: WatchSettings | None = None, now: Clock = clock.utcnow,
          sleep: Sleep = time.sleep,
          report: Reporter = say, rng: random.Random | None = None,
          probe: Callable[[str], Probe] = http_probe) -> Outcome:
    """Watch workflow, stack, rollout and health together until each is terminal or past its deadline."""
    if not dep.active:
        out = Outcome(dep)
        report(f"nothing to watch: {dep.tag.skipped or 'the tag was not pushed'}")
        return out
    settings = settings or WatchSettings.from_env(dep.env)
    timeline = Timeline(started=dep.started)
    stages = build_stages(dep, timeline, settings, probe)
    report(f"watching {', '.join(s.name for s in stages)} (deadlines: " +
           ", ".join(f"{s.name} {s.deadline:.0f}s" for s in stages) +
           f"; a progress line at least every {settings.heartbeat:.0f}s)")
    finished = monitor(stages, timeline, settings=settings, now=now, sleep=sleep, report=report, rng=rng)
    timeline.finished = finished
    out = Outcome(dep, {s.id: s for s in stages}, timeline, finished)
    for c in out.checks()[3:]:
        report(f"{c.id}: {c.verdict.upper()} — {c.summary}")
    return out


def finish(outcome: Outcome) -> pd.DataFrame:
    """Report the phase (checks + facts for later phases); GateError naming every failed stage."""
    res = result.gate(PHASE, outcome.checks(), facts=outcome.facts())
    log.info("deploy phase verdict: %s", res.verdict)
    return outcome.summary_table()

