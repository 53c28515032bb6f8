"""A release run from start to end: validate, lock, record, run the phases, mirror.

Everything that can be wrong with the input is checked before anything changes: the version,
the environment file, the phases. Only then is the lock taken and the run recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from shipbook import (
    audit,
    aws,
    clock,
    gitinfo,
    lock,
    mirror,
    places,
    secretvalues,
    versions,
)
from shipbook.config import Environment
from shipbook.errors import InputError, ShipbookError
from shipbook.phases import NOTEBOOK_DIR, PHASES
from shipbook.pipeline import Progress, Runner, RunOptions, available_phases
from shipbook.redact import Redactor

log = logging.getLogger(__name__)


@dataclass
class Context:
    """Where a run reads and writes; tests point these at temporary directories."""

    runs_root: Path = field(default_factory=places.runs_root)  # read when the context is made, not at import
    notebook_dir: Path = NOTEBOOK_DIR


def plan_phases(env: Environment, only: str | None, ctx: Context) -> list[str]:
    if only is not None:
        if only not in PHASES:
            raise InputError("--only", f"unknown phase {only!r} (known: {', '.join(PHASES)})")
        requested: tuple[str, ...] = (only,)
    else:
        requested = env.runner.phases
    phases = available_phases(requested, ctx.notebook_dir)
    if not phases:
        raise InputError("phases", f"none of {', '.join(requested)} has a notebook in {ctx.notebook_dir}")
    return phases


def _release_facts(env: Environment, version: str) -> tuple[str, str]:
    """(previous_version, release commit) from the app repository's tags, when it is a git repo.

    The commit (the version's tag when it exists, else HEAD now) is recorded once and handed to every
    phase as `release_commit`: precheck checks it and deploy tags it, even if HEAD moves in between.
    """
    repo = env.app.repo
    if not gitinfo.is_repo(repo):
        log.warning("app.repo %s is not a git repository: previous version and commit unknown", repo)
        return "", ""
    tags = gitinfo.tags(repo)
    commit = gitinfo.rev_or_empty(repo, f"refs/tags/{version}") or gitinfo.rev_or_empty(repo, "HEAD")
    return versions.previous_release(tags, version), commit


def _pinned(env: Environment, version: str, last: dict | None) -> str:
    """For one phase on its own: the commit the version's last run recorded, until the version is tagged.

    `make precheck` then `make deploy` must tag what precheck checked, not wherever HEAD is now.
    """
    if not last or not last.get("commit") or not gitinfo.is_repo(env.app.repo):
        return ""
    if gitinfo.rev_or_empty(env.app.repo, f"refs/tags/{version}"):
        return ""  # tagged: the tag is the release commit
    head = gitinfo.rev_or_empty(env.app.repo, "HEAD")
    if head and head != last["commit"]:
        log.warning("HEAD moved to %s since run %s recorded %s for %s: this phase uses the recorded commit",
                    head[:12], last.get("run_id"), last["commit"][:12], version)
    return str(last["commit"])


def run(env: Environment, opts: RunOptions, progress: Progress | None = None, ctx: Context | None = None,
        redactor: Redactor | None = None) -> audit.RunRecord:
    """Run a release (or resume one). Raises GateError / PhaseError / InputError / LockHeldError."""
    ctx = ctx or Context()
    versions.parse(opts.version)
    if opts.resume:
        rec = audit.RunRecord.load(ctx.runs_root, env.name, opts.resume)
        if rec.data["version"] != opts.version:
            raise InputError("--resume", f"run {opts.resume} is of {rec.data['version']}, not {opts.version}")
        phases = None
    else:
        phases = plan_phases(env, opts.only, ctx)
    if phases and "deploy" in phases and gitinfo.is_repo(env.app.repo):
        # A new tag will be created: the version must move forward and be unused, before anything changes.
        from shipbook.deploy.version import check_version

        check_version(env.app.repo, opts.version, env.github.remote)
    # Who we are comes first: in the sandbox it refuses any account but the emulator's before any other call.
    operator = {"git_user": gitinfo.user(), "aws_arn": aws.caller_arn(env)}
    redactor = redactor or Redactor(secretvalues.collect(env))
    runner = Runner(env, redactor, ctx.runs_root, ctx.notebook_dir, progress)
    if opts.resume:
        run_id = rec.run_id
    else:
        prev, commit = _release_facts(env, opts.version)
        run_id = audit.new_run_id()
    release_lock = lock.ReleaseLock(env)
    with release_lock.held(operator["git_user"] or operator["aws_arn"] or "unknown", run_id):
        if not opts.resume:
            # One phase on its own (e.g. `make rollback`) starts from what the last run of the version learnt.
            last = audit.latest_run(ctx.runs_root, env.name, opts.version) if opts.only else None
            opts.previous_version = opts.previous_version or (last or {}).get("previous_version") or prev
            opts.commit = opts.commit or _pinned(env, opts.version, last) or commit
            opts.operator = operator
            rec = runner.new_record(opts, phases or [], run_id)
            if last:
                rec.data["facts"] = dict(last.get("facts") or {})
                rec.data["facts_from_run"] = last["run_id"]
                rec.save(redactor)
        todo = runner.phases_to_run(rec)
        if not todo:
            log.info("run %s has nothing left to run", rec.run_id)
            return rec
        rec.data.pop("mirror", None)  # a resumed run tries the mirror again: the record keeps the latest attempt
        try:
            runner.run(rec, todo)
        finally:
            if env.runner.runs_url:
                _mirror(env, ctx.runs_root, rec, redactor)
    return rec


def _mirror(env: Environment, runs_root: Path, rec: audit.RunRecord, redactor: Redactor) -> None:
    """Copy the sealed run to S3. A failed copy is a warning kept in run.json, never the run's outcome.

    Why not raise: this runs while the run's real result (success, a gate, a failed phase) is on its
    way out; an upload error must not replace it. The local trail is complete either way.
    """
    try:
        mirror.mirror_run(env, runs_root, rec.dir)
    except (ShipbookError, OSError) as exc:
        reason = " ".join(str(exc).split())
        log.warning("mirror to %s failed, the run is kept locally only: %s", env.runner.runs_url, reason)
        rec.data["mirror"] = {"url": env.runner.runs_url, "status": "failed", "error": reason,
                              "at": clock.now_iso()}
        rec.save(redactor)
        rec.seal(runs_root)  # the record changed after its seal: seal it again, so `shipbook audit` verifies
