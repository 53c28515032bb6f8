"""Applying a rollback plan: the database step and the code (tag + push + the deploy phase's watchers),
in the order the plan gives (`db.order_steps`).

Database:
- reverse: each `migrate <app> <target>` runs as a one-off ECS task of the broken release's task
  definition, recorded at plan time (its image has the migrations' reverse code; the previous
  image does not — and after a code-first rollback the service already runs the previous one),
  in the service's network, and must exit 0;
- restore: RestoreDBInstanceFromDBSnapshot into a new identifier, wait until available, then
  swap — rename the current instance away and the restored one into its identifier (the
  endpoint the app's DATABASE_URL names follows the identifier), or rewrite DATABASE_URL's
  secret to the restored endpoint. The old instance is kept, renamed, never deleted.

Code: the rollback tag is pushed through `shipbook.deploy` (plan → start → watch), exactly as a
release is; the watchers are the deploy phase's own. Clock and sleep are parameters.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from shipbook import aws, clock, gitinfo
from shipbook.config import Environment, RollbackSection
from shipbook.deploy.model import NOTES, VERSION
from shipbook.deploy.notes import ReleaseNotes
from shipbook.deploy.plan import Plan as DeployPlan
from shipbook.deploy.plan import github_target
from shipbook.deploy.version import VersionCheck, remote_refs, remote_url
from shipbook.errors import AwsError, ShipbookError
from shipbook.github import GitHub
from shipbook.result import Check
from shipbook.rollback.plan import Plan

log = logging.getLogger(__name__)

DATABASE = "rollback.database"
Reporter = Callable[[str], None]
Clock = Callable[[], datetime]
Sleep = Callable[[float], None]
say: Reporter = functools.partial(print, flush=True)
RESTORED_FROM = "shipbook:restored-from"




def brief(exc: Exception, limit: int = 200) -> str:
    """An error in one line: an HTML error page (a proxy's, an emulator's) reduced to its text."""
    text = re.sub(r"<[^>]+>", " ", str(exc))
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class StepResult:
    """What one step did: its check, the rows shown under it, and when."""

    id: str
    verdict: str
    summary: str
    rows: list[dict] = field(default_factory=list)
    started: datetime | None = None
    finished: datetime | None = None

    def check(self) -> Check:
        return Check(self.id, self.verdict, self.summary)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


# --------------------------------------------------------------------------- reverse migrations


def run_one_off(env: Environment, command: list[str], *, ecs: Any, logs: Any | None, timeout: float, poll: float,
                now: Clock, sleep: Sleep, report: Reporter, started_by: str = "shipbook-rollback",
                task_definition: str = "") -> dict:
    """Run `command` in a one-off task of `task_definition` (default: the service's current one), in the service's
    network; the outcome as a table row."""
    svc = aws.call(ecs, "describe_services", cluster=env.stack.cluster, services=[env.stack.service])["services"][0]
    td = task_definition or svc["taskDefinition"]
    params: dict[str, Any] = {"cluster": env.stack.cluster, "taskDefinition": td, "count": 1, "startedBy": started_by,
                              "overrides": {"containerOverrides": [{"name": env.stack.container, "command": command}]}}
    if svc.get("capacityProviderStrategy"):
        params["capacityProviderStrategy"] = svc["capacityProviderStrategy"]
    elif svc.get("launchType"):
        params["launchType"] = svc["launchType"]
    if svc.get("networkConfiguration"):
        params["networkConfiguration"] = svc["networkConfiguration"]
    text = " ".join(command)
    report(f"one-off task of {td.rsplit('/', 1)[-1]}: {text}")
    resp = aws.call(ecs, "run_task", **params)
    if resp.get("failures") or not resp.get("tasks"):
        why = "; ".join(f"{f.get('arn', '')} {f.get('reason', '')}" for f in resp.get("failures", [])) or "no task"
        return {"command": text, "task": "", "exit code": None, "result": f"RunTask failed: {why}", "ok": False}
    arn = resp["tasks"][0]["taskArn"]
    t0 = now()
    task: dict[str, Any] = resp["tasks"][0]
    while task.get("lastStatus") != "STOPPED":
        if (now() - t0).total_seconds() > timeout:
            aws.call(ecs, "stop_task", cluster=env.stack.cluster, task=arn,
                     reason=f"shipbook: {text} did not finish within {timeout:.0f}s")
            return {"command": text, "task": arn.rsplit("/", 1)[-1], "exit code": None,
                    "result": f"did not finish within {timeout:.0f}s (last status {task.get('lastStatus')}): "
                              "stopped", "ok": False}
        sleep(poll)
        task = aws.call(ecs, "describe_tasks", cluster=env.stack.cluster, tasks=[arn])["tasks"][0]
    container = next((c for c in task.get("containers", []) if c.get("name") == env.stack.container), {})
    code = container.get("exitCode")
    tail = _task_log_tail(env, td, arn, ecs, logs)
    ok = code == 0
    result = "exit 0" if ok else f"exit {code}: {container.get('reason') or task.get('stoppedReason', '')}"
    return {"command": text, "task": arn.rsplit("/", 1)[-1], "exit code": code,
            "result": result + (f" — {tail}" if tail else ""), "ok": ok}


def _task_log_tail(env: Environment, td: str, arn: str, ecs: Any, logs: Any | None, lines: int = 5) -> str:
    """The last lines the task wrote (awslogs), best effort."""
    if logs is None:
        return ""
    try:
        tdd = aws.call(ecs, "describe_task_definition", taskDefinition=td)["taskDefinition"]
        c = next(x for x in tdd["containerDefinitions"] if x.get("name") == env.stack.container)
        opts = (c.get("logConfiguration") or {}).get("options", {})
        stream = f"{opts.get('awslogs-stream-prefix', '')}/{env.stack.container}/{arn.rsplit('/', 1)[-1]}"
        events = aws.call(logs, "get_log_events", logGroupName=opts.get("awslogs-group", env.stack.log_group),
                          logStreamName=stream, limit=lines, startFromHead=False).get("events", [])
    except (ShipbookError, StopIteration, KeyError):
        return ""
    return " | ".join(e.get("message", "")[:200] for e in events)


def reverse_migrations(env: Environment, plan: Plan, *, ecs: Any, logs: Any | None, settings: RollbackSection,
                       now: Clock = clock.utcnow, sleep: Sleep = time.sleep, report: Reporter = say,
                       task_definition: str = "") -> StepResult:
    """Each reverse `migrate`, in order, stopping at the first that fails, in one-off tasks of `task_definition`
    (the broken release's: the previous image does not have the migrations it must reverse)."""
    res = StepResult(DATABASE, "pass", "", started=now())
    for cmd in plan.db.commands:
        try:
            row = run_one_off(env, cmd, ecs=ecs, logs=logs, timeout=settings.migrate_timeout, poll=settings.poll,
                              now=now, sleep=sleep, report=report, task_definition=task_definition)
        except ShipbookError as exc:
            row = {"command": " ".join(cmd), "task": "", "exit code": None, "result": f"could not run: {brief(exc)}",
                   "ok": False}
        res.rows.append(row)
        report(f"{row['command']}: {row['result']}")
        if not row["ok"]:
            break
    res.finished = now()
    failed = [r for r in res.rows if not r["ok"]]
    if failed:
        res.verdict = "fail"
        res.summary = f"reverse migration failed: {failed[0]['command']}: {failed[0]['result']}"
    else:
        res.summary = "reversed: " + "; ".join(r["command"] for r in res.rows)
    return res


# --------------------------------------------------------------------------- restore and swap


def _instance(rds: Any, ident: str) -> dict | None:
    try:
        found = aws.call(rds, "describe_db_instances", DBInstanceIdentifier=ident).get("DBInstances", [])
    except AwsError as exc:
        if exc.code in ("DBInstanceNotFound", "DBInstanceNotFoundFault"):
            return None
        raise
    return found[0] if found else None


def wait_instance(rds: Any, ident: str, *, timeout: float, poll: float, now: Clock, sleep: Sleep,
                  report: Reporter) -> dict:
    """Until `ident` exists and is available. Raises a ShipbookError past `timeout` or on a failed status."""
    t0 = now()
    last = ""
    while True:
        inst = _instance(rds, ident)
        status = inst.get("DBInstanceStatus", "") if inst else "not visible yet"
        if status != last:
            report(f"{ident}: {status} ({(now() - t0).total_seconds():.0f}s)")
            last = status
        if inst and status == "available":
            return inst
        if status in ("failed", "incompatible-restore", "incompatible-parameters", "storage-full"):
            raise AwsError("rds", "wait", status, f"{ident} ended {status}")
        if (now() - t0).total_seconds() > timeout:
            raise AwsError("rds", "wait", "Timeout", f"{ident} not available within {timeout:.0f}s (last: {status})")
        sleep(poll)


def restore_and_swap(env: Environment, plan: Plan, *, rds: Any, secrets: Any | None, settings: RollbackSection,
                     run_id: str = "", now: Clock = clock.utcnow, sleep: Sleep = time.sleep, report: Reporter = say
                     ) -> StepResult:
    """Restore the snapshot into a new instance, wait, swap it in; the data-loss window recorded."""
    d = plan.db
    res = StepResult(DATABASE, "pass", "", started=now())
    snap = d.snapshot
    if snap is None or not d.confirmed:  # make_plan never gets here without both; a guard all the same
        res.verdict, res.summary = "fail", "no confirmed snapshot restore in the plan: nothing restored"
        return res
    current = _instance(rds, d.instance)
    if current is None:
        res.verdict, res.summary = "fail", f"{d.instance} does not exist"
        return res
    loss_from = snap.created
    kwargs: dict[str, Any] = {"DBInstanceIdentifier": d.restore_instance, "DBSnapshotIdentifier": snap.id,
                              "DBInstanceClass": current.get("DBInstanceClass"),
                              "Tags": [{"Key": RESTORED_FROM, "Value": snap.id},
                                       {"Key": "shipbook:run", "Value": run_id or "-"}]}
    if current.get("DBSubnetGroup", {}).get("DBSubnetGroupName"):
        kwargs["DBSubnetGroupName"] = current["DBSubnetGroup"]["DBSubnetGroupName"]
    groups = [g["VpcSecurityGroupId"] for g in current.get("VpcSecurityGroups", []) if g.get("VpcSecurityGroupId")]
    if groups:
        kwargs["VpcSecurityGroupIds"] = groups
    for key in ("MultiAZ", "PubliclyAccessible"):
        if key in current:
            kwargs[key] = current[key]
    report(f"restoring {snap.id} into {d.restore_instance} (a new instance: RDS cannot restore over {d.instance})")
    aws.call(rds, "restore_db_instance_from_db_snapshot", **kwargs)
    res.rows.append({"step": "restore", "detail": f"{snap.id} → {d.restore_instance}", "at": now()})
    restored = wait_instance(rds, d.restore_instance, timeout=settings.restore_timeout, poll=settings.poll, now=now,
                             sleep=sleep, report=report)
    res.rows.append({"step": "available", "detail": d.restore_instance, "at": now()})
    if d.swap == "secret":
        _swap_secret(env, restored, secrets, settings, res, now)
    else:
        aside = f"{d.instance}-pre-rollback-{now():%Y%m%d%H%M%S}"
        report(f"renaming {d.instance} → {aside} (kept, not deleted)")
        aws.call(rds, "modify_db_instance", DBInstanceIdentifier=d.instance, NewDBInstanceIdentifier=aside,
                 ApplyImmediately=True)
        wait_instance(rds, aside, timeout=settings.restore_timeout, poll=settings.poll, now=now, sleep=sleep,
                      report=report)
        res.rows.append({"step": "renamed away", "detail": f"{d.instance} → {aside}", "at": now()})
        report(f"renaming {d.restore_instance} → {d.instance}")
        aws.call(rds, "modify_db_instance", DBInstanceIdentifier=d.restore_instance,
                 NewDBInstanceIdentifier=d.instance, ApplyImmediately=True)
        wait_instance(rds, d.instance, timeout=settings.restore_timeout, poll=settings.poll, now=now, sleep=sleep,
                      report=report)
        res.rows.append({"step": "swapped in", "detail": f"{d.restore_instance} → {d.instance}", "at": now()})
    proof = restored_from(rds, d.instance if d.swap == "rename" else d.restore_instance)
    res.finished = now()
    window = (res.finished - loss_from).total_seconds() / 60 if loss_from else None
    loss = f"data written after {loss_from:%Y-%m-%d %H:%M:%S} UTC is lost ({window:.0f} min)" if loss_from and \
        window is not None else "data-loss window unknown"
    if proof != snap.id:
        res.verdict = "fail"
        res.summary = f"after the swap {d.instance} is not the instance restored from {snap.id} (tag: {proof or '—'})"
    else:
        target = d.instance if d.swap == "rename" else f"{d.restore_instance} (DATABASE_URL)"
        res.summary = f"restored {snap.id}; {target} now serves the restored data; {loss}"
    return res


def restored_from(rds: Any, ident: str) -> str:
    inst = _instance(rds, ident)
    if not inst:
        return ""
    tags = inst.get("TagList")
    if tags is None:
        tags = aws.call(rds, "list_tags_for_resource", ResourceName=inst["DBInstanceArn"]).get("TagList", [])
    return next((t["Value"] for t in tags if t.get("Key") == RESTORED_FROM), "")


def _swap_secret(env: Environment, restored: dict, secrets: Any | None, settings: RollbackSection, res: StepResult,
                 now: Clock) -> None:
    """Point DATABASE_URL's secret at the restored endpoint. The value is read and written, never shown."""
    ref = env.secrets.get(settings.database_url_name)
    if ref is None or not ref.secretsmanager or secrets is None:
        raise AwsError("secretsmanager", "swap", "NotConfigured",
                       f"[secrets] {settings.database_url_name} must be a Secrets Manager reference for the "
                       "'secret' swap")
    value = aws.call(secrets, "get_secret_value", SecretId=ref.secretsmanager)["SecretString"]
    parts = urlsplit(value)
    endpoint = restored.get("Endpoint", {})
    host = endpoint.get("Address", "")
    netloc = parts.netloc.rsplit("@", 1)
    creds = netloc[0] + "@" if len(netloc) == 2 else ""
    port = endpoint.get("Port") or parts.port
    new = urlunsplit((parts.scheme, f"{creds}{host}{':' + str(port) if port else ''}", parts.path, parts.query,
                      parts.fragment))
    aws.call(secrets, "put_secret_value", SecretId=ref.secretsmanager, SecretString=new)
    res.rows.append({"step": "secret", "detail": f"{settings.database_url_name} now names host {host}", "at": now()})


# --------------------------------------------------------------------------- the code: a deploy plan for the tag


def deploy_plan(env: Environment, plan: Plan) -> DeployPlan:
    """The deploy phase's Plan for pushing the rollback tag, so tagging and watching are the deploy phase's."""
    repo = env.app.repo
    refs = remote_refs(repo, env.github.remote)
    branch = next((b for b, sha in sorted(refs.heads.items()) if sha == plan.previous_commit), "")
    body = (f"Rollback of {plan.version} to {plan.previous_version} ({plan.previous_commit[:12]}).\n\n"
            + ("Why:\n" + "\n".join(f"- {r}" for r in plan.reasons) if plan.reasons else "Why: make rollback"))
    notes = ReleaseNotes(env.app.notes_file, plan.previous_commit, plan.tag, heading=f"## {plan.tag}", body=body)
    vc = VersionCheck(plan.tag, plan.version, plan.previous_version, env.github.remote,
                      remote_url(repo, env.github.remote), 0, len(refs.tags), resumed=plan.resumed, remote_refs=refs)
    return DeployPlan(plan.tag, plan.previous_commit, plan.previous_subject, str(repo), env.github.remote,
                      vc.remote_url, branch, gitinfo.user(repo), notes, vc, github_target(env), False, plan.run_id,
                      plan.dry_run, list(plan.problems))


def plan_checks(dp: DeployPlan) -> list[Check]:
    """The deploy plan's checks under rollback names (release.version/notes describe a release, not a rollback)."""
    out = []
    for c in dp.checks():
        if c.id == VERSION:
            out.append(Check("rollback.tag_name", c.verdict, c.summary.replace("moves forward", "is free")))
        elif c.id == NOTES:
            continue
        else:
            out.append(Check("rollback.tag", c.verdict, c.summary))
    return out


class RunsOfTag:
    """A GitHub client whose `workflow_runs` keeps only the runs of one tag.

    Why: the rollback tag points at an old commit that already has a deploy run (the previous
    release's); `deploy.workflow.pick_run` would take that finished run for the rollback's until
    the new one appears. Everything else is the real client.
    """

    def __init__(self, inner: GitHub, tag: str) -> None:
        self._inner = inner
        self._tag = tag

    def workflow_runs(self, head_sha: str, event: str = "push") -> list[dict[str, Any]]:
        runs = self._inner.workflow_runs(head_sha, event)
        return [r for r in runs if r.get("head_branch") in (None, "", self._tag)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def tag_only_runs(github: GitHub | None, tag: str) -> GitHub | None:
    return cast(GitHub, RunsOfTag(github, tag)) if github is not None else None
