"""The rollback plan: the code target, the rollback tag, the database plan — shown before anything changes.

Code target: the previous release tag's commit (runner's `previous_version`, else the greatest
release tag below VERSION). Rollback tag: by default the next patch of the broken version with
`-rollback` (`v1.0.0` → `v1.0.1-rollback`), as the checklist names it; when that tag exists and
this run did not create it, the next free patch is taken and the plan says so. The push of the
tag is what deploys (the same workflow as a release), so the previous commit goes out exactly
the way it went out the first time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import semver

from shipbook import aws, gitinfo, versions
from shipbook.config import Environment, RollbackSection
from shipbook.deploy.version import remote_refs, tag_run_id
from shipbook.errors import AwsError, InfraError, InputError, ShipbookError
from shipbook.rollback import db as db_mod

log = logging.getLogger(__name__)

PHASE = "rollback"
PLAN = "rollback.plan"
DEFAULT_TAG_PATTERN = "{next_patch}-rollback"


def next_patch(version: str) -> str:
    """`v1.0.0` → `v1.0.1`; `v1.0.0-rc.1` → `v1.0.1` (a pre-release's rollback still moves forward)."""
    v = versions.parse(version)
    return f"v{semver.Version(v.major, v.minor, v.patch + 1)}"


def rollback_tag(version: str, previous: str, pattern: str, taken: set[str], mine: set[str] = frozenset()
                 ) -> tuple[str, str]:
    """(tag, note). `{next_patch}`, `{version}`, `{previous}` are filled; a taken tag moves to the next free patch.

    `mine`: tags this run created (a resumed rollback reuses its own tag).
    """
    try:  # the fields are {next_patch}, {version} and {previous}; any other is an input error
        first = pattern.format(next_patch=next_patch(version), version=version, previous=previous)
    except (KeyError, IndexError) as exc:
        raise InputError("rollback.tag_pattern", f"{pattern!r}: unknown field {exc} (use {{next_patch}}, "
                         "{version}, {previous})") from exc
    versions.parse(first, "rollback tag")
    if first not in taken or first in mine:
        return first, ""
    if "{next_patch}" not in pattern:
        raise InputError("rollback.tag_pattern", f"{first} already exists; the pattern has no {{next_patch}} to "
                         "move on to a free one: give rollback_tag=…")
    bump = versions.parse(next_patch(version))
    for _ in range(100):
        bump = bump.bump_patch()
        candidate = pattern.format(next_patch=f"v{bump}", version=version, previous=previous)
        if candidate not in taken or candidate in mine:
            return candidate, f"{first} already exists (another rollback): using the next free patch"
    raise InputError("rollback tag", f"no free tag after {first}")


@dataclass
class Plan:
    """What the rollback will do, in order. Nothing has changed when it is shown."""

    env_name: str
    version: str
    previous_version: str
    previous_commit: str
    previous_subject: str
    release_commit: str
    tag: str
    tag_note: str
    remote: str
    db: db_mod.DbPlan
    run_id: str
    dry_run: bool
    served: str = ""
    resumed: bool = False
    reasons: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    release_task_definition: str = ""  # the broken release's: its image has the reverse code of its migrations

    @property
    def blocked(self) -> bool:
        return bool(self.problems or self.db.problems)

    @property
    def command(self) -> str:
        return command(self.env_name, self.version, self.previous_version,
                       self.db.snapshot.id if self.db.snapshot else "")

    def table(self) -> pd.DataFrame:
        rows = [("broken version", f"{self.version} ({self.release_commit[:12] or 'not tagged'})"),
                ("served now", self.served or "—"),
                ("roll back to", f"{self.previous_version} ({self.previous_commit[:12]} {self.previous_subject})"),
                ("rollback tag", self.tag + (f" — {self.tag_note}" if self.tag_note else "")
                 + (" (created by this run already: resuming)" if self.resumed else "")),
                ("remote", self.remote), ("database", self.db.table().iloc[0]["value"]),
                ("order", f"{self.db.order}: {self.db.order_why}"),
                ("expected error window", self.db.error_window),
                ("why roll back", "; ".join(self.reasons) or "(asked for: make rollback)"),
                ("mode", "DRY RUN: nothing changes" if self.dry_run else "apply")]
        rows += [("problem", p) for p in self.problems + self.db.problems]
        rows += [("warning", w) for w in self.warnings + self.db.warnings]
        return pd.DataFrame(rows, columns=["item", "value"])

    def _database_steps(self) -> list[tuple[str, str, str]]:
        d = self.db
        if d.action == db_mod.REVERSE:
            td = self.release_task_definition.rsplit("/", 1)[-1] or "the release's task definition"
            return [("database", f"one-off ECS task of {td}: {' '.join(c)}",
                     "the release's image holds the reverse code of its migrations") for c in d.commands]
        if d.action == db_mod.RESTORE:
            return [("database", f"restore {d.snapshot.id if d.snapshot else '?'} into {d.restore_instance}, "
                                 "wait until available", "a new instance: RDS cannot restore over the old one"),
                    ("database", d.table().set_index("item").loc["swap", "value"], d.loss_text())]
        return []

    def steps(self) -> pd.DataFrame:
        """The ordered steps a real run takes, each with why it comes where it does."""
        code = [("code", f"annotated tag {self.tag} on {self.previous_commit[:12]} ({self.previous_version}), "
                         f"pushed to {self.remote}: the deploy workflow runs", "the same workflow as a release"),
                ("code", "watch workflow, stack, ECS rollout and health as the deploy phase does",
                 "the database step after it waits until the previous code is healthy and serving alone"
                 if self.db.order == db_mod.CODE_FIRST else "")]
        database = self._database_steps()
        if self.db.order == db_mod.CODE_FIRST:
            ordered = code + [(w, d, f"after the code: {why}" if why else "after the code")
                              for w, d, why in database]
        else:
            ordered = database + code
        if ordered and self.db.order != db_mod.CODE_ONLY:
            w, d, why = ordered[0]
            ordered[0] = (w, d, f"{self.db.order}: {self.db.order_why}" + (f"; {why}" if why else ""))
        ordered += [("verify", f"re-run reachability, smoke tests and the judge against {self.previous_version}'s "
                               "code", "baseline: the window before the broken release's deploy started"),
                    ("measure", "requests, 5xx and the worst pooled period from the rollback's start to the end of "
                                "its verification", "a rollback must not add errors of its own")]
        return pd.DataFrame([{"step": i + 1, "what": w, "detail": d, "why": why}
                             for i, (w, d, why) in enumerate(ordered)])

    def check(self) -> dict[str, str]:
        problems = self.problems + self.db.problems
        if problems:
            return {"id": PLAN, "verdict": "fail", "summary": "; ".join(problems)}
        dry = "dry run: " if self.dry_run else ""
        return {"id": PLAN, "verdict": "skip" if self.dry_run else "pass",
                "summary": f"{dry}{self.version} → {self.previous_version} as {self.tag}; database: {self.db.action}; "
                           f"order: {self.db.order}; expected error window: {self.db.error_window}"}


def command(env_name: str, version: str, previous_version: str = "", snapshot: str = "") -> str:
    """The exact `make rollback` command for this rollback (printed when the pipeline stops instead)."""
    parts = ["make rollback", f"VERSION={version}"]
    if env_name and env_name != "sandbox":
        parts.append(f"ENV={env_name}")
    if previous_version:
        parts.append(f"PREVIOUS_VERSION={previous_version}")
    if snapshot:
        parts.append(f"SNAPSHOT={snapshot}")
    return " ".join(parts)


def serving_task_definition(env: Environment, ecs: Any = None) -> str:
    """The task definition the service runs now — the broken release's, whose image has its migrations' reverse
    code. Read at plan time: after a code-first rollback the service runs the previous release's, which does not
    know the migrations it must reverse. '' (with a warning) when it cannot be read."""
    try:
        svc = aws.call(ecs or aws.client(env, "ecs"), "describe_services", cluster=env.stack.cluster,
                       services=[env.stack.service])["services"]
    except ShipbookError as exc:
        log.warning("the service's task definition could not be read: %s", exc)
        return ""
    return svc[0].get("taskDefinition", "") if svc else ""


def find_snapshot(rds: Any, instance: str, snapshot_id: str = "", before: datetime | None = None
                  ) -> db_mod.Snapshot | None:
    """The given snapshot, else the newest available manual snapshot of `instance` taken before `before`."""
    if snapshot_id:
        try:
            snaps = aws.call(rds, "describe_db_snapshots", DBSnapshotIdentifier=snapshot_id).get("DBSnapshots", [])
        except AwsError as exc:
            if exc.code in ("DBSnapshotNotFound", "DBSnapshotNotFoundFault"):
                return db_mod.Snapshot(snapshot_id, None, "not found", instance)
            raise
    else:
        snaps = aws.collect(rds, "describe_db_snapshots", "DBSnapshots", DBInstanceIdentifier=instance,
                            SnapshotType="manual")
        snaps = [s for s in snaps if s.get("Status") == "available" and s.get("SnapshotCreateTime")
                 and (before is None or s["SnapshotCreateTime"] <= before)]
        snaps.sort(key=lambda s: s["SnapshotCreateTime"], reverse=True)
    if not snaps:
        return None
    s = snaps[0]
    created = s.get("SnapshotCreateTime")
    return db_mod.Snapshot(s["DBSnapshotIdentifier"], created.astimezone(UTC) if created else None,
                           s.get("Status", ""), s.get("DBInstanceIdentifier", instance))


def make_plan(env: Environment, version: str, *, previous_version: str = "", snapshot_id: str = "",
              confirm_db_restore: bool = False, db_action: str = "", dry_run: bool = True, run_id: str = "",
              deploy_started: datetime | None = None, reasons: list[str] | None = None, served: str = "",
              rollback_tag_override: str = "", settings: RollbackSection | None = None, rds: Any = None,
              now: datetime | None = None, rollout_seconds: float | None = None) -> Plan:
    """Read-only: git tags and migrations, the remote's tags, the snapshot. Problems are listed, not raised."""
    settings = settings or env.rollback
    now = now or datetime.now(UTC)
    repo = env.app.repo
    versions.parse(version)
    problems: list[str] = []
    warnings: list[str] = []
    tags = set(gitinfo.tags(repo))
    try:
        refs = remote_refs(repo, env.github.remote)
        remote_tags = set(refs.tags)
    except InfraError as exc:
        remote_tags = set()
        problems.append(f"the remote {env.github.remote} cannot be read: {exc}")
    previous_version = previous_version or versions.previous_release(tags | remote_tags, version)
    release_commit = gitinfo.rev_or_empty(repo, f"refs/tags/{version}")
    if not release_commit:
        problems.append(f"{version} is not a tag in {repo}: there is no release to roll back")
    prev_commit = gitinfo.rev_or_empty(repo, f"refs/tags/{previous_version}") if previous_version else ""
    if not previous_version:
        problems.append(f"no release before {version}: nothing to roll back to (give PREVIOUS_VERSION=…)")
    elif not prev_commit:
        problems.append(f"{previous_version} is not a tag in {repo}")
    subject = gitinfo.git(repo, "log", "-1", "--format=%s", prev_commit) if prev_commit else ""
    mine = {t for t in tags if t.endswith("-rollback") and run_id and tag_run_id(repo, t) == run_id}
    if rollback_tag_override:
        versions.parse(rollback_tag_override, "rollback_tag")
        tag, note = rollback_tag_override, ""
        if rollback_tag_override in tags | remote_tags and rollback_tag_override not in mine:
            problems.append(f"{rollback_tag_override} already exists")
    else:
        tag, note = rollback_tag(version, previous_version, settings.tag_pattern, tags | remote_tags, mine)
    migrations: list[db_mod.Migration] = []
    targets: dict[str, str] = {}
    target_problems: list[str] = []
    if release_commit and prev_commit:
        migrations = db_mod.release_migrations(repo, previous_version, version)
        for app in sorted({m.app for m in migrations}):
            targets[app], problem = db_mod.leaf(repo, previous_version, app)
            if problem:
                target_problems.append(problem)
    snapshot = None
    instance = env.stack.db_instance
    if instance and (migrations or db_action == db_mod.RESTORE):
        try:
            snapshot = find_snapshot(rds or aws.client(env, "rds"), instance, snapshot_id, deploy_started)
        except AwsError as exc:
            warnings.append(f"snapshots of {instance} could not be read: {exc}")
    cmd = command(env.name, version, previous_version, snapshot.id if snapshot else snapshot_id)
    dbp = db_mod.plan_database(migrations, targets, target_problems, instance=instance, snapshot=snapshot,
                               confirm=confirm_db_restore, db_action=db_action, swap=settings.db_swap, now=now,
                               rollback_command=cmd, rollout_seconds=rollout_seconds)
    return Plan(env.name, version, previous_version, prev_commit, subject, release_commit, tag, note,
                env.github.remote, dbp, run_id, dry_run, served, tag in mine, list(reasons or []), problems, warnings)
