"""The rollback phase as the notebook calls it: one `Rollback`, one method per cell.

plan → gate (a blocked plan stops here; a dry run changes nothing after it) → database →
push (tag) → watch (the deploy phase's watchers) → verification of the previous version →
final state → finish. `make rollback VERSION=…` works on its own: the previous version comes
from the tags (or PREVIOUS_VERSION), the snapshot from the backup phase's fact (or SNAPSHOT,
or the newest manual snapshot before the broken deploy), the broken deploy's start from the
run's facts or the ECS service.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from shipbook import aws, clock, gitinfo, result
from shipbook.config import Environment, RollbackSection
from shipbook.deploy import phase as deploy_phase
from shipbook.deploy.health import http_probe, join, same_version, served_version
from shipbook.deploy.model import CHECK_IDS as DEPLOY_CHECK_IDS
from shipbook.errors import InputError, ShipbookError
from shipbook.github import GitHub
from shipbook.result import Check
from shipbook.rollback import apply as apply_mod
from shipbook.rollback import db as db_mod
from shipbook.rollback import window as window_mod
from shipbook.rollback.plan import PHASE, Plan, make_plan, serving_task_definition
from shipbook.verify import phase as verify_phase
from shipbook.verify import reach

log = logging.getLogger(__name__)

Reporter = Callable[[str], None]
say: Reporter = functools.partial(print, flush=True)
VERIFY = "rollback.verify"


def truthy(value: Any) -> bool:
    """A confirmation is a real True, or the words true/yes/1 (a `-p KEY=VALUE` parameter is a string).

    Why strict: `bool("False")` is True, and this flag decides whether a database is restored.
    """
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "yes", "1")


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def performance_after(res: Any) -> Check:
    """The judge after the rollback informs, it does not block.

    Why: the previous version is back (reachable and smoke decide that). Its metrics are judged
    against the healthy window before the broken deploy, minutes earlier; a difference then
    says something else changed too (load, the environment, the data the release left) — a
    person must look, but undoing the rollback would not help, and the run must still record
    and report what happened.
    """
    cid = f"{VERIFY}.performance"
    if res.verdict in ("fail", "warn"):
        return Check(cid, "warn", f"not back to the pre-release baseline — {res.summary}; the previous version is "
                     "serving: look for another cause (load, environment, data)")
    return Check(cid, res.verdict, res.summary)


class Rollback:
    """One rollback of `version`: the plan, each step's result, the verification afterwards."""

    def __init__(self, env: Environment, version: str, *, previous_version: str = "", snapshot_id: str = "",
                 confirm_db_restore: bool = False, db_action: str = "", dry_run: bool = True, run_id: str = "",
                 deploy_started: str = "", deploy_finished: str = "", rollback_reasons: Any = None,
                 tag_override: str = "",
                 settings: RollbackSection | None = None, now: Callable[[], datetime] = clock.utcnow,
                 sleep: Callable[[float], None] = time.sleep, report: Reporter = say) -> None:
        self.env = env
        self.version = version
        self.previous_version = previous_version
        self.snapshot_id = snapshot_id
        self.confirm = truthy(confirm_db_restore)
        self.db_action = db_action
        self.dry_run = dry_run if isinstance(dry_run, bool) else str(dry_run).strip().lower() not in (
            "false", "no", "0")
        self.run_id = run_id
        self.reasons = _as_list(rollback_reasons)
        self.tag_override = tag_override
        self.settings = settings or env.rollback
        self.now, self.sleep, self.report = now, sleep, report
        self._deploy_started = clock.parse_optional(deploy_started, "deploy_started")
        self._deploy_finished = clock.parse_optional(deploy_finished, "deploy_finished")
        self.applied_at: datetime | None = None  # the first change this rollback made
        self.measured: window_mod.RollbackWindow | None = None
        self.plan: Plan | None = None
        self.db_result: apply_mod.StepResult | None = None
        self.deployment: deploy_phase.Deployment | None = None
        self.outcome: deploy_phase.Outcome | None = None
        self.verification: verify_phase.Verification | None = None
        self.stopped = ""  # why the apply steps stopped early

    # ------------------------------------------------------------------ plan

    def broken_deploy_started(self) -> datetime | None:
        """When the broken release's deploy started: the run's fact, else the tag's creation (the tag is made
        and pushed at the deploy's start), else the ECS service's current deployment."""
        if self._deploy_started is None:
            tagged = gitinfo.git(self.env.app.repo, "for-each-ref", "--format=%(taggerdate:iso-strict)",
                                 f"refs/tags/{self.version}", check=False) if gitinfo.is_repo(self.env.app.repo) else ""
            if tagged:
                self._deploy_started = clock.parse_optional(tagged.splitlines()[0], "tag date")
        if self._deploy_started is None:
            try:
                self._deploy_started, _ = verify_phase.ecs_deploy_times(self.env)
            except ShipbookError as exc:
                log.warning("the broken deploy's start is unknown: %s", exc)
        return self._deploy_started

    def make_plan(self, rds: Any = None, ecs: Any = None) -> pd.DataFrame:
        """Compute the plan (reads only) and show it."""
        served = ""
        if self.env.app.public_url and self.env.app.version_path:
            probe = http_probe(join(self.env.app.public_url, self.env.app.version_path))
            served = served_version(probe.body) if probe.status == 200 else probe.describe()
        started = self.broken_deploy_started()
        rollout = (self._deploy_finished - started).total_seconds() if started and self._deploy_finished and \
            self._deploy_finished > started else None
        self.plan = make_plan(self.env, self.version, previous_version=self.previous_version,
                              snapshot_id=self.snapshot_id, confirm_db_restore=self.confirm, db_action=self.db_action,
                              dry_run=self.dry_run, run_id=self.run_id, deploy_started=started,
                              reasons=self.reasons, served=served, rollback_tag_override=self.tag_override,
                              settings=self.settings, rds=rds, now=self.now(), rollout_seconds=rollout)
        if self.plan.db.action == db_mod.REVERSE:
            self.plan.release_task_definition = serving_task_definition(self.env, ecs)
        return self.plan.table()

    def _need_plan(self) -> Plan:
        if self.plan is None:
            self.make_plan()
        assert self.plan is not None  # nosec B101
        return self.plan

    def migrations(self) -> pd.DataFrame:
        return self._need_plan().db.migrations_table()

    def database_plan(self) -> pd.DataFrame:
        return self._need_plan().db.table()

    def steps(self) -> pd.DataFrame:
        return self._need_plan().steps()

    def gate(self) -> pd.DataFrame:
        """Stop here (GateError) when the plan cannot be applied; a dry run reports and changes nothing."""
        p = self._need_plan()
        if p.blocked:
            result.gate(PHASE, [p.check()], facts=self.facts())
        return pd.DataFrame([p.check()])

    # ------------------------------------------------------------------ apply

    def _skip(self, what: str) -> str:
        if self.dry_run:
            return f"dry run: {what} not done"
        if self.stopped:
            return f"not done: {self.stopped}"
        return ""

    def database(self, before_code: bool = True, ecs: Any = None, rds: Any = None, logs: Any = None,
                 secrets: Any = None) -> pd.DataFrame:
        """The database step of the plan, in the slot the plan's order gives it (called before and after the code).

        Code first: the step runs only once the previous code is healthy and serving alone;
        otherwise it waits for a person (the schema it would leave is the one the code needs).
        """
        p = self._need_plan()
        first = p.db.order == db_mod.DATABASE_FIRST
        if not before_code and not p.db.changes_database:
            return pd.DataFrame([{"result": "nothing more: the database step ran before the code"}])
        if p.db.changes_database and before_code != first:
            where = "after the code is healthy and serving" if before_code else "before the code (above)"
            return pd.DataFrame([{"result": f"not here — {p.db.order}: the database step runs {where}"}])
        skipped = self._skip("the database step")
        if not skipped and not before_code:
            skipped = self._previous_code_serving_alone()
        if skipped:
            self.db_result = apply_mod.StepResult(apply_mod.DATABASE, "skip" if self.dry_run else "warn", skipped,
                                                  [{"result": skipped}])
            if not self.dry_run and p.db.commands:
                self.db_result.summary += "; reverse it later with: " + "; ".join(" ".join(c) for c in p.db.commands)
            self.report(f"{apply_mod.DATABASE}: {self.db_result.verdict.upper()} — {self.db_result.summary}")
            return self.db_result.table()
        self._mark_applied()
        if p.db.action == db_mod.REVERSE:
            self.db_result = apply_mod.reverse_migrations(
                self.env, p, ecs=ecs or aws.client(self.env, "ecs"), logs=logs or aws.client(self.env, "logs"),
                settings=self.settings, now=self.now, sleep=self.sleep, report=self.report,
                task_definition=p.release_task_definition)
            if self.db_result.verdict == "fail":
                if p.db.compatible:
                    self.db_result.verdict = "warn"
                    self.db_result.summary += (f"; the schema stays at {self.version}'s (additive changes only: the "
                                               f"previous code runs on it); reverse it later with: "
                                               + "; ".join(" ".join(c) for c in p.db.commands))
                else:
                    self.stopped = "the reverse migration failed and the previous code cannot run on the new schema"
        elif p.db.action == db_mod.RESTORE:
            try:
                self.db_result = apply_mod.restore_and_swap(
                    self.env, p, rds=rds or aws.client(self.env, "rds"),
                    secrets=secrets or aws.client(self.env, "secretsmanager"), settings=self.settings,
                    run_id=self.run_id, now=self.now, sleep=self.sleep, report=self.report)
            except ShipbookError as exc:
                self.db_result = apply_mod.StepResult(apply_mod.DATABASE, "fail",
                                                      f"restore failed: {apply_mod.brief(exc)}")
            if self.db_result.verdict == "fail":
                self.stopped = "the database restore failed"
        elif p.db.action == db_mod.KEEP:
            self.db_result = apply_mod.StepResult(apply_mod.DATABASE, "warn" if p.db.warnings else "pass",
                                                  "left as it is: " + (p.db.warnings[0] if p.db.warnings else
                                                                      p.db.why))
        else:
            self.db_result = apply_mod.StepResult(apply_mod.DATABASE, "pass", f"nothing to do: {p.db.why}")
        self.report(f"{apply_mod.DATABASE}: {self.db_result.verdict.upper()} — {self.db_result.summary}")
        if not self.db_result.rows:
            self.db_result.rows = [{"result": self.db_result.summary}]
        return self.db_result.table()

    def _previous_code_serving_alone(self, probes: int = 5) -> str:
        """'' when the rollout finished and every version probe answers the previous commit, else why."""
        if self.stopped:
            return f"not done: {self.stopped}"
        if self.outcome is None or not self.outcome.stages or self.outcome.failed:
            return "not done: the rollback's deploy did not finish healthy"
        if not (self.env.app.public_url and self.env.app.version_path):
            return ""  # nothing to probe: the watchers' health checks decided
        url = join(self.env.app.public_url, self.env.app.version_path)
        for _ in range(probes):
            probe = http_probe(url)
            if not (probe.status == 200 and self._is_previous(probe.body)):
                seen = reach.served_commit(probe.body)[:12] or served_version(probe.body) if probe.status == 200 \
                    else probe.describe()
                return f"not done: the previous code is not serving alone yet ({url} answered {seen})"
            self.sleep(1.0)
        return ""

    def _is_previous(self, body: str) -> bool:
        p = self._need_plan()
        commit = reach.served_commit(body)
        if commit:
            return commit[:12] == p.previous_commit[:12]
        served = served_version(body)
        return same_version(served, p.previous_version) or same_version(served, p.tag)

    def _mark_applied(self) -> None:
        if self.applied_at is None and not self.dry_run:
            self.applied_at = self.now()

    def push(self, github: GitHub | None = None, clients: deploy_phase.Clients | None = None) -> pd.DataFrame:
        """Tag the previous release's commit and push it: the deploy workflow starts (deploy.start)."""
        p = self._need_plan()
        dp = apply_mod.deploy_plan(self.env, p)
        skipped = self._skip("the tag push")
        if skipped:
            dp.dry_run = True
            self.deployment = deploy_phase.Deployment(self.env, dp, deploy_phase.apply_tag(dp))
            self.deployment.tag.skipped = skipped
            return self.deployment.table()
        github = github if github is not None else GitHub.from_env(self.env)
        self._mark_applied()
        self.deployment = deploy_phase.start(self.env, dp, clients=clients,
                                             github=apply_mod.tag_only_runs(github, p.tag), report=self.report,
                                             now=self.now)
        if not self.deployment.tag.pushed:
            self.stopped = f"the rollback tag was not pushed: {'; '.join(self.deployment.tag.problems)}"
        return self.deployment.table()

    def watch(self, **kw: Any) -> pd.DataFrame:
        """The deploy phase's watchers on the rollback's deploy: workflow, stack, ECS, health."""
        if self.deployment is None:
            self.push()
        assert self.deployment is not None  # nosec B101
        self.outcome = deploy_phase.watch(self.deployment, report=self.report, now=self.now, sleep=self.sleep, **kw)
        if self.outcome.stages and self.outcome.failed:
            self.stopped = "the rollback's deploy failed: " + ", ".join(c.id for c in self.outcome.failed)
        return self.outcome.summary_table()

    def chart(self) -> Figure:
        if self.outcome is None:
            return deploy_phase.chart(deploy_phase.Timeline(), self._need_plan().tag)
        return self.outcome.chart()

    # ------------------------------------------------------------------ verify the previous version

    def verify(self, **kw: Any) -> verify_phase.Verification:
        """A Verification of the rollback tag (the previous commit), judged against the healthy pre-release baseline."""
        p = self._need_plan()
        o = self.outcome
        started = o.deployment.started if o else None
        finished = o.finished if o else None
        baseline_end = self.broken_deploy_started()
        self.verification = verify_phase.Verification(
            self.env, p.tag, deploy_started=clock.iso(started), deploy_finished=clock.iso(finished),
            expect_commit=p.previous_commit, baseline_end=clock.iso(baseline_end), phase=PHASE,
            dry_run=bool(self.dry_run or self.stopped or not (started and finished)), now=self.now, sleep=self.sleep,
            report=self.report, **kw)
        if self.stopped and not self.dry_run:
            self.verification.dry_note = f"not verified: {self.stopped}"
        return self.verification

    def window(self, cloudwatch: Any = None, dims: Any = None) -> pd.DataFrame:
        """The rollback's own window — its first change to the end of its verification — against the failing
        release's rate before it (requests, 5xx, the worst pool)."""
        v = self.verification
        if self.dry_run or self.applied_at is None:
            return pd.DataFrame([("window", "dry run: nothing changed" if self.dry_run else
                                  "the rollback changed nothing")], columns=["item", "value"])
        canary = v.windows.canary if v is not None and v.windows is not None else None
        end = min(canary.end, self.now()) if canary is not None and not v.dry else self.now()  # type: ignore[union-attr]
        failing_start = self._deploy_finished or self.broken_deploy_started() or self.applied_at
        self.measured = window_mod.measure(self.env, start=self.applied_at, end=end, failing_start=failing_start,
                                           cloudwatch=cloudwatch, dims=dims)
        c = self.measured.check()
        self.report(f"{c.id}: {c.verdict.upper()} — {c.summary}")
        return self.measured.table()

    # ------------------------------------------------------------------ the end

    def checks(self) -> list[Check]:
        p = self._need_plan()
        pc = p.check()
        out = [Check(pc["id"], pc["verdict"], pc["summary"])]
        out.append(self.db_result.check() if self.db_result else Check(apply_mod.DATABASE, "skip", "not run"))
        if self.outcome is not None:
            out += [Check(f"rollback.{c.id.split('.', 1)[1]}" if c.id in DEPLOY_CHECK_IDS[3:] else
                          ("rollback.tag" if c.id == "release.tag" else c.id), c.verdict, c.summary)
                    for c in self.outcome.checks()[2:]]
        elif self.deployment is not None:
            out.append(Check("rollback.tag", "skip", self.deployment.tag.skipped or "not pushed"))
        v = self.verification
        if v is not None and not v.dry:
            for r in v.checks()[:4]:
                if r.id in (verify_phase.reach.REACHABLE, verify_phase.reach.SMOKE):
                    out.append(Check(f"{VERIFY}.{r.id.split('.', 1)[1]}", r.verdict, r.summary))
                elif r.id == verify_phase.PERFORMANCE:
                    out.append(performance_after(r))
        elif not self.dry_run:
            out.append(Check(VERIFY, "skip" if self.stopped else "fail",
                             f"not verified: {self.stopped}" if self.stopped else "the verification did not run"))
        if self.measured is not None:
            out.append(self.measured.check())
        return out

    def final_state(self) -> pd.DataFrame:
        """Where things stand: code served, tag on the remote, database, performance."""
        p = self._need_plan()
        rows = [("broken release", f"{p.version} ({p.release_commit[:12]})"),
                ("rolled back to", f"{p.previous_version} ({p.previous_commit[:12]})")]
        tag = self.deployment.tag if self.deployment else None
        rows.append(("rollback tag", f"{p.tag} on {p.remote} at {tag.remote_commit[:12]}" if tag and tag.pushed
                     else f"{p.tag}: {tag.skipped if tag else 'not pushed'}"))
        v = self.verification
        reach_res = v.board.results.get(verify_phase.reach.REACHABLE) if v else None
        rows.append(("served now", reach_res.summary if reach_res else "not checked"))
        rows.append(("database", self.db_result.summary if self.db_result else "not run"))
        loss = p.db.loss_text()
        if loss and p.db.action == db_mod.RESTORE:
            rows.append(("data-loss window", loss))
        j = v.judgement if v else None
        rows.append(("performance after the rollback", j.explain() if j else "not judged"))
        base = v.windows.baseline if v is not None and v.windows is not None else None
        rows.append(("judged against", base.describe() + " — before the broken release's deploy" if base else "—"))
        rows.append(("the rollback's own window", self.measured.check().summary if self.measured else "not measured"))
        rows.append(("verdict", self.verdict()))
        return pd.DataFrame(rows, columns=["item", "value"])

    def verdict(self) -> str:
        if self.dry_run:
            return "skip"
        checks = self.checks()
        if any(c.verdict == "fail" for c in checks):
            return "fail"
        if any(c.verdict == "warn" for c in checks):
            return "warn"
        return "pass"

    def facts(self) -> dict[str, Any]:
        p = self.plan
        out: dict[str, Any] = {}
        if p is None:
            return out
        out.update(rollback_tag=p.tag, rolled_back_to=p.previous_version, rollback_commit=p.previous_commit,
                   rollback_db_action=p.db.action, rollback_command=p.command)
        if p.db.snapshot:
            out["rollback_snapshot"] = p.db.snapshot.id
        if self.outcome is not None and self.outcome.deployment.active:
            out.update(rollback_started=clock.iso(self.outcome.deployment.started),
                       rollback_finished=clock.iso(self.outcome.finished))
        out.update(rollback_order=p.db.order, rollback_error_window=p.db.error_window)
        if self.db_result is not None and self.db_result.started:
            out.update(rollback_database_started=clock.iso(self.db_result.started),
                       rollback_database_finished=clock.iso(self.db_result.finished))
        v = self.verification
        if v is not None and v.windows is not None:
            base = v.windows.baseline
            out["rollback_baseline"] = {"start": clock.iso(base.start), "end": clock.iso(base.end)}
        if self.measured is not None:
            out.update(self.measured.facts())
        if p.db.action == db_mod.RESTORE and p.db.data_loss_window is not None:
            out["data_loss_window_minutes"] = round(p.db.data_loss_window.total_seconds() / 60, 1)
        return out

    def finish(self) -> pd.DataFrame:
        """Report the phase; every failed step blocks (the environment needs a person)."""
        checks = self.checks()
        verdict = self.verdict()
        res = result.report(PHASE, checks, facts=self.facts(), verdict=verdict,
                            blocking=[c for c in checks if c.verdict == "fail"])
        log.info("rollback phase verdict: %s", res.verdict)
        return pd.DataFrame([{"check": c.id, "verdict": c.verdict, "summary": c.summary} for c in checks])


def start(env: Environment, version: str, **kw: Any) -> Rollback:
    """The rollback of `version` (see `Rollback` for the keywords)."""
    if not version:
        raise InputError("VERSION", "is empty: which release is rolled back?")
    return Rollback(env, version, **kw)

