"""Phase `backup`: a manual RDS snapshot taken, waited for, verified and recorded before the deploy.

Why each step: the rollback phase restores from this snapshot, so its id must be valid for RDS
(`v1.0.0` has dots RDS rejects), it must really be `available` (a `creating` snapshot is not a
backup), and it must be of the right instance, engine and encryption. A re-run finds the
snapshot it took and reuses it instead of taking another. Plan first: the notebook shows what
will happen; a dry run stops there. Waiting takes `sleep`/`now` so tests run instantly.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shipbook import aws
from shipbook.checks import CheckResult, badge, check, html_table, text_table, worst
from shipbook.errors import AwsError, InputError

log = logging.getLogger(__name__)

CHECK_ID = "db.backup"
RETENTION_ID = "db.backup_retention"
# Defaults of the [backup] section (pattern, keep, timeout_minutes) for callers without an environment.
DEFAULT_PATTERN = "pre-deploy-{version}-{date}"
DEFAULT_KEEP = 5
DEFAULT_TIMEOUT = 3600.0
MAX_ID = 255
_FIELDS = ("version", "date", "time", "env", "run_id")
_SNAPSHOTTABLE = ("available", "backing-up", "storage-optimization", "modifying")
_FAILED = ("failed", "error", "incompatible-restore", "deleted", "deleting")
_NOT_FOUND = ("DBSnapshotNotFound", "DBSnapshotNotFoundFault")

Sleep = Callable[[float], None]
Now = Callable[[], datetime]
Progress = Callable[[str], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BackupError(InputError):
    """The snapshot cannot be planned (bad identifier, wrong instance)."""


# --------------------------------------------------------------------------- identifiers


def identifier_problems(name: str) -> list[str]:
    """Why `name` is not a valid RDS snapshot identifier (empty when it is)."""
    problems = []
    if not name:
        return ["empty"]
    if len(name) > MAX_ID:
        problems.append(f"longer than {MAX_ID} characters")
    if not name[0].isalpha():
        problems.append("does not start with a letter")
    if re.search(r"[^A-Za-z0-9-]", name):
        problems.append("has characters other than letters, digits and hyphens")
    if "--" in name:
        problems.append("has two consecutive hyphens")
    if name.endswith("-"):
        problems.append("ends with a hyphen")
    return problems


def sanitize(text: str) -> str:
    """Make `text` a valid identifier: lower case, other characters to `-`, no `--`, letter first, ≤255."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower())
    s = re.sub(r"-{2,}", "-", s).strip("-")
    if s and not s[0].isalpha():
        s = f"snap-{s}"
    return s[:MAX_ID].rstrip("-")


def snapshot_identifier(pattern: str, version: str, when: datetime, env: str = "", run_id: str = "") -> str:
    """The snapshot id for a release: `pre-deploy-{version}-{date}` → `pre-deploy-v1-0-0-2026-11-28`."""
    values = {"version": version, "date": f"{when:%Y-%m-%d}", "time": f"{when:%H%M%S}", "env": env,
              "run_id": run_id}
    try:
        raw = pattern.format_map(values)
    except (KeyError, IndexError, ValueError) as exc:
        raise BackupError("pattern", f"{pattern!r}: only {{{'}, {'.join(_FIELDS)}}} may be used ({exc})") from exc
    name = sanitize(raw)
    if not name:
        raise BackupError("pattern", f"{pattern!r} gives an empty identifier")
    return name


def pattern_prefix(pattern: str) -> str:
    """The literal start of the pattern (`pre-deploy-`): how earlier pre-deploy snapshots are recognised."""
    literal = pattern.split("{", 1)[0]
    s = re.sub(r"[^a-z0-9]+", "-", literal.lower())
    return re.sub(r"-{2,}", "-", s).lstrip("-")


def _with_suffix(base: str, n: int) -> str:
    if n == 1:
        return base
    suffix = f"-{n}"
    return base[:MAX_ID - len(suffix)].rstrip("-") + suffix


# --------------------------------------------------------------------------- plan


@dataclass
class Plan:
    """What the phase will do, shown before it does it."""

    instance: str
    snapshot_id: str
    action: str  # create | reuse | wait | blocked
    version: str
    run_id: str
    planned_at: datetime
    instance_info: dict = field(default_factory=dict)
    existing: dict | None = None
    earlier_failed: list[str] = field(default_factory=list)
    old: list[dict] = field(default_factory=list)
    keep: int = DEFAULT_KEEP
    problems: list[str] = field(default_factory=list)

    def rows(self) -> list[dict]:
        i = self.instance_info
        out = [
            {"item": "DB instance", "value": f"{self.instance} ({i.get('Engine', '?')} {i.get('EngineVersion', '')},"
                                               f" {i.get('DBInstanceStatus', 'not found')})"},
            {"item": "snapshot id", "value": self.snapshot_id},
            {"item": "action", "value": {
                "create": "create a manual snapshot, wait until available, verify, tag",
                "reuse": "an available snapshot with this id exists: verify and reuse it",
                "wait": "a snapshot with this id is being created: wait for it, verify, reuse",
                "blocked": "nothing (see problems)"}.get(self.action, self.action)},
        ]
        if self.earlier_failed:
            out.append({"item": "ids already taken (left as they are)", "value": ", ".join(self.earlier_failed)})
        out.append({"item": f"pre-deploy snapshots beyond the newest {self.keep}",
                    "value": ", ".join(s["id"] for s in self.old) or "none"})
        out += [{"item": "problem", "value": p} for p in self.problems]
        return out

    def _repr_html_(self) -> str:
        return f"<p><strong>Backup plan</strong> {badge('fail') if self.problems else ''}</p>{html_table(self.rows())}"

    def __repr__(self) -> str:
        return "Backup plan\n" + text_table(self.rows())


def _describe_snapshot(rds: Any, snapshot_id: str) -> dict | None:
    try:
        found = aws.call(rds, "describe_db_snapshots", DBSnapshotIdentifier=snapshot_id).get("DBSnapshots") or []
    except AwsError as exc:
        if exc.code in _NOT_FOUND:
            return None
        raise
    return found[0] if found else None


def manual_snapshots(rds: Any, instance: str) -> list[dict]:
    """Every manual snapshot of the instance (all pages)."""
    return aws.collect(rds, "describe_db_snapshots", "DBSnapshots", DBInstanceIdentifier=instance,
                       SnapshotType="manual")


def plan(rds: Any, instance: str, version: str, run_id: str = "", snapshot_id: str = "",
         pattern: str = DEFAULT_PATTERN, keep: int = DEFAULT_KEEP, env_name: str = "",
         now: Now = _utcnow) -> Plan:
    """Decide the snapshot id and whether to create, wait for or reuse it; list what retention would delete."""
    when = now()
    if snapshot_id:
        problems = identifier_problems(snapshot_id)
        if problems:
            raise BackupError("snapshot_id", f"{snapshot_id!r} is not a valid RDS snapshot identifier: "
                              + "; ".join(problems))
        base = snapshot_id.lower()
    else:
        base = snapshot_identifier(pattern, version, when, env=env_name, run_id=run_id)
    p = Plan(instance=instance, snapshot_id=base, action="create", version=version, run_id=run_id,
             planned_at=when, keep=keep)
    if not instance:
        p.action = "blocked"
        p.problems.append("no database configured (stack.db_instance in the environment file)")
        return p
    try:
        dbs = aws.call(rds, "describe_db_instances", DBInstanceIdentifier=instance).get("DBInstances") or []
    except AwsError as exc:
        if exc.code not in ("DBInstanceNotFound", "DBInstanceNotFoundFault"):
            raise
        dbs = []
    if not dbs:
        p.action = "blocked"
        p.problems.append(f"DB instance {instance} not found")
        return p
    p.instance_info = dbs[0]
    for n in range(1, 10):
        candidate = _with_suffix(base, n)
        snap = _describe_snapshot(rds, candidate)
        if snap is None:
            p.snapshot_id, p.action = candidate, "create"
            break
        status = snap.get("Status", "")
        if snap.get("DBInstanceIdentifier") != instance:  # ids are per account and region, not per instance
            p.earlier_failed.append(f"{candidate} (taken of instance {snap.get('DBInstanceIdentifier')})")
            continue
        if status in _FAILED:
            p.earlier_failed.append(f"{candidate} ({status})")
            continue
        p.snapshot_id, p.existing = candidate, snap
        p.action = "reuse" if status == "available" else "wait"
        break
    else:
        p.action = "blocked"
        p.problems.append(f"{base} and its suffixes up to -9 are taken; give snapshot_id=… to choose another id")
    if p.action == "create" and p.instance_info.get("DBInstanceStatus") not in _SNAPSHOTTABLE:
        p.action = "blocked"
        p.problems.append(f"the instance is {p.instance_info.get('DBInstanceStatus')}: RDS cannot snapshot it now")
    p.old = _beyond_keep(manual_snapshots(rds, instance), pattern_prefix(pattern), keep, p)
    return p


def _beyond_keep(snaps: list[dict], prefix: str, keep: int, p: Plan) -> list[dict]:
    """Pre-deploy snapshots older than the newest `keep` (the one about to be taken counts as the newest)."""
    ours = [s for s in snaps if s.get("DBSnapshotIdentifier", "").startswith(prefix)
            and s.get("DBSnapshotIdentifier") != p.snapshot_id and s.get("Status") in ("available", "failed")]
    ours.sort(key=lambda s: s.get("SnapshotCreateTime") or datetime.min.replace(tzinfo=UTC), reverse=True)
    room = max(keep - 1, 0)
    return [{"id": s["DBSnapshotIdentifier"], "created": str(s.get("SnapshotCreateTime", "")),
             "status": s.get("Status", "")} for s in ours[room:]]


# --------------------------------------------------------------------------- take and wait


@dataclass
class Outcome:
    """How taking the snapshot ended: available, failed, timeout, blocked or dry-run."""

    snapshot_id: str
    status: str
    message: str
    snapshot: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "available"

    def _repr_html_(self) -> str:
        verdict = "pass" if self.ok else ("skip" if self.status == "dry-run" else "fail")
        return f"<p>{badge(verdict)} {html.escape(self.message)}</p>"

    def __repr__(self) -> str:
        return f"[{self.status}] {self.message}"


def take(rds: Any, p: Plan, dry_run: bool = True, sleep: Sleep = time.sleep, now: Now = _utcnow,
         timeout: float = DEFAULT_TIMEOUT, progress: Progress = log.info, progress_every: float = 5.0,
         max_poll: float = 10.0) -> Outcome:
    """Create the snapshot (unless it exists) and wait until it is available, failed or the deadline."""
    if p.action == "blocked":
        return Outcome(p.snapshot_id, "blocked", "no snapshot taken: " + "; ".join(p.problems))
    if dry_run:
        return Outcome(p.snapshot_id, "dry-run", f"dry run: would {p.action} snapshot {p.snapshot_id}")
    if p.action == "create":
        try:
            aws.call(rds, "create_db_snapshot", DBSnapshotIdentifier=p.snapshot_id, DBInstanceIdentifier=p.instance)
            progress(f"snapshot {p.snapshot_id} of {p.instance}: requested")
        except AwsError as exc:
            if exc.code not in ("DBSnapshotAlreadyExists", "DBSnapshotAlreadyExistsFault"):
                return Outcome(p.snapshot_id, "failed", f"CreateDBSnapshot failed: {exc.code}: {exc.message}")
            progress(f"snapshot {p.snapshot_id} appeared meanwhile: waiting for it")
    elif p.action == "reuse":
        progress(f"snapshot {p.snapshot_id} exists and is available: reusing it")
    return wait(rds, p.snapshot_id, sleep=sleep, now=now, timeout=timeout, progress=progress,
                progress_every=progress_every, max_poll=max_poll)


def wait(rds: Any, snapshot_id: str, sleep: Sleep = time.sleep, now: Now = _utcnow,
         timeout: float = DEFAULT_TIMEOUT, progress: Progress = log.info, progress_every: float = 5.0,
         max_poll: float = 10.0) -> Outcome:
    """Poll until `available` (ok), a failed status, or `timeout` seconds; a progress line every few seconds."""
    start = now()
    poll, last_line, last_state = 1.0, -progress_every, ""
    while True:
        snap = _describe_snapshot(rds, snapshot_id) or {}
        status = snap.get("Status", "missing")
        pct = snap.get("PercentProgress")
        elapsed = (now() - start).total_seconds()
        state = f"{status} {pct}%" if pct is not None else status
        if state != last_state or elapsed - last_line >= progress_every:
            progress(f"snapshot {snapshot_id}: {state} ({elapsed:.0f} s)")
            last_line, last_state = elapsed, state
        if status == "available":
            return Outcome(snapshot_id, "available", f"snapshot {snapshot_id} is available after {elapsed:.0f} s",
                           snap, elapsed)
        if status in _FAILED or status == "missing":
            return Outcome(snapshot_id, "failed", f"snapshot {snapshot_id} ended {status} after {elapsed:.0f} s",
                           snap, elapsed)
        if elapsed >= timeout:
            return Outcome(snapshot_id, "timeout", f"snapshot {snapshot_id} still {state} after the "
                           f"{timeout:.0f} s deadline", snap, elapsed)
        sleep(min(poll, timeout - elapsed))
        poll = min(poll * 1.5, max_poll)


# --------------------------------------------------------------------------- verify, tag, record


@check(CHECK_ID)
def verify_and_tag(rds: Any, p: Plan, outcome: Outcome, version: str, run_id: str = "") -> CheckResult:
    """Check the snapshot is what the rollback needs (status, instance, engine, encryption, size), then tag it."""
    evidence = f"DescribeDBSnapshots {outcome.snapshot_id}; DescribeDBInstances {p.instance}"
    if outcome.status == "dry-run":
        return CheckResult(CHECK_ID, "skip", outcome.message, [{"item": r["item"], "value": r["value"]}
                                                               for r in p.rows()], evidence)
    if not outcome.ok:
        return CheckResult(CHECK_ID, "fail", outcome.message, [{"item": "outcome", "value": outcome.status,
                                                                "verdict": "fail"}], evidence)
    snap = _describe_snapshot(rds, outcome.snapshot_id) or outcome.snapshot
    inst = p.instance_info
    rows: list[dict] = []

    def row(item: str, actual: Any, expected: Any, ok: bool, bad: str = "fail", note: str = "") -> None:
        rows.append({"item": item, "snapshot": actual, "expected": expected, "verdict": "pass" if ok else bad,
                     "note": "" if ok else note})

    row("status", snap.get("Status"), "available", snap.get("Status") == "available")
    row("instance", snap.get("DBInstanceIdentifier"), p.instance, snap.get("DBInstanceIdentifier") == p.instance)
    row("engine", f"{snap.get('Engine')} {snap.get('EngineVersion', '')}".strip(),
        f"{inst.get('Engine')} {inst.get('EngineVersion', '')}".strip(), snap.get("Engine") == inst.get("Engine"))
    enc, want = bool(snap.get("Encrypted")), bool(inst.get("StorageEncrypted"))
    row("encrypted", enc, want, enc == want and enc, "fail" if want else "warn",
        "the instance is encrypted but the snapshot is not" if want else "neither instance nor snapshot is encrypted")
    size, isize = snap.get("AllocatedStorage"), inst.get("AllocatedStorage")
    row("size (GiB)", size, isize, size == isize, "warn", "differs from the instance's allocated storage")
    created = snap.get("SnapshotCreateTime")
    row("created", str(created or ""), "a creation time", bool(created), note="no creation time")
    tags = [{"Key": "shipbook:version", "Value": version}, {"Key": "shipbook:run-id", "Value": run_id or "interactive"},
            {"Key": "shipbook:kind", "Value": "pre-deploy"}]
    arn = snap.get("DBSnapshotArn", "")
    if arn:
        aws.call(rds, "add_tags_to_resource", ResourceName=arn, Tags=tags)
        row("tags", ", ".join(f"{t['Key']}={t['Value']}" for t in tags), "", True)
    else:
        row("tags", "", "", False, "warn", "no ARN: not tagged")
    verdict = worst(r["verdict"] for r in rows)
    flagged = [f"{r['item']}: {r['note']}" for r in rows if r["verdict"] != "pass"]
    reused = " (reused)" if p.action in ("reuse", "wait") else ""
    summary = "; ".join(flagged) if flagged else \
        f"snapshot {outcome.snapshot_id}{reused} available, {snap.get('Engine')}, {size} GiB, created {created}"
    return CheckResult(CHECK_ID, verdict, summary, rows, evidence)


def facts(res: CheckResult, outcome: Outcome) -> dict[str, str]:
    """What later phases need (the rollback restores from it); nothing unless the backup passed."""
    if res.verdict not in ("pass", "warn") or not outcome.ok:
        return {}
    created = outcome.snapshot.get("SnapshotCreateTime")
    return {"snapshot_id": outcome.snapshot_id,
            "snapshot_time": created.isoformat() if isinstance(created, datetime) else str(created or "")}


# --------------------------------------------------------------------------- retention


@check(RETENTION_ID)
def retention(rds: Any, p: Plan, delete: bool = False, dry_run: bool = True) -> CheckResult:
    """List pre-deploy snapshots beyond the newest `keep`; delete them only with `delete` and not a dry run."""
    evidence = f"manual snapshots of {p.instance} named like the pattern; keep {p.keep}"
    if not p.old:
        return CheckResult(RETENTION_ID, "pass", f"no pre-deploy snapshots beyond the newest {p.keep}", [], evidence)
    rows = [dict(s, action="kept (delete_old_snapshots=False)" if not delete else
                 "kept (dry run)" if dry_run else "") for s in p.old]
    failed = []
    if delete and not dry_run:
        for r in rows:
            try:
                aws.call(rds, "delete_db_snapshot", DBSnapshotIdentifier=r["id"])
                r["action"] = "deleted"
            except AwsError as exc:
                r["action"] = f"not deleted: {exc.code}"
                failed.append(r["id"])
    if failed:
        return CheckResult(RETENTION_ID, "warn", f"could not delete {', '.join(failed)}", rows, evidence)
    done = sum(1 for r in rows if r["action"] == "deleted")
    summary = f"deleted {done} old pre-deploy snapshots" if done else \
        f"{len(rows)} old pre-deploy snapshots beyond the newest {p.keep} (listed, not deleted)"
    return CheckResult(RETENTION_ID, "pass", summary, rows, evidence)
