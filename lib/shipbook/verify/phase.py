"""The verify phase as the notebook calls it: one `Verification`, one method per cell.

Order: windows → reachable → smoke → wait for the canary window → metrics (two GetMetricData
calls) → judge → chart → performance → error logs → monitoring → decision → finish. Every
method records its check on the board (the summary table at the top of the notebook) and
returns what the cell shows. Clock, sleep and the reporter are parameters, so tests never wait.

The same object re-verifies a rollback: `expect_commit` (the previous release's commit) and
`baseline_end` (the start of the deploy that broke things, so the baseline is the healthy
period before it, not the broken one).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from shipbook import aws, clock, result
from shipbook.checks import Board, ChecklistRow, CheckResult, CheckView
from shipbook.config import Environment, VerifySection
from shipbook.errors import InputError, ShipbookError
from shipbook.verify import charts, decision, logs, metrics, monitoring, reach
from shipbook.verify import judge as judge_mod
from shipbook.verify import settings as settings_mod
from shipbook.verify.metrics import Metrics, Window

log = logging.getLogger(__name__)

PHASE = "verify"
PERFORMANCE = "verify.performance"
Reporter = Callable[[str], None]
Clock = Callable[[], datetime]
Sleep = Callable[[float], None]

say: Reporter = functools.partial(print, flush=True)

# Section 3 of the release checklist, in its order (CHECKLIST.md), and the decision of section 4.
SECTION_3: tuple[ChecklistRow, ...] = (
    ChecklistRow(reach.REACHABLE, "アプリケーションにアクセス可能か", "application reachable", PHASE),
    ChecklistRow(reach.SMOKE, "主要機能が正常に動作するか", "main features work", PHASE),
    ChecklistRow(logs.ERROR_LOGS, "エラーログに異常がないか", "no anomalies in error logs", PHASE),
    ChecklistRow(PERFORMANCE, "パフォーマンスに問題がないか", "no performance problem", PHASE),
    ChecklistRow(monitoring.ALARMS, "CloudWatchアラームの設定", "CloudWatch alarms configured", PHASE),
    ChecklistRow(monitoring.NOTIFICATIONS, "エラー通知の設定", "error notifications configured", PHASE),
    ChecklistRow(monitoring.HEALTH_CHECKS, "ヘルスチェックの設定", "health checks configured", PHASE),
)
CHECK_IDS = tuple(r.id for r in SECTION_3)






def ecs_deploy_times(env: Environment, ecs: Any = None) -> tuple[datetime, datetime]:
    """(start, finish) of the service's current deployment, when it has completed: for a verify run on its own.

    The finish is the time of ECS's "(deployment <id>) deployment completed." service event; a
    deployment's `updatedAt` is only the fallback (it moves whenever ECS touches the deployment).
    """
    ecs = ecs or aws.client(env, "ecs")
    svc = aws.call(ecs, "describe_services", cluster=env.stack.cluster, services=[env.stack.service])["services"]
    primary = next((d for d in (svc[0].get("deployments", []) if svc else []) if d.get("status") == "PRIMARY"), None)
    if primary is None or primary.get("rolloutState", "COMPLETED") != "COMPLETED":
        state = primary.get("rolloutState") if primary else "no PRIMARY deployment"
        raise InputError("deploy_started", f"unknown, and the service's current deployment is not complete ({state}): "
                         "run verify in the same run as deploy, or give deploy_started=/deploy_finished=")
    marker = f"(deployment {primary['id']}) deployment completed"
    done = [e["createdAt"] for e in svc[0].get("events", []) if marker in e.get("message", "")]
    finished = min(done) if done else primary["updatedAt"]
    return primary["createdAt"].astimezone(UTC), finished.astimezone(UTC)


@dataclass
class Windows:
    """The deploy's times, where they came from, and the two windows derived from them."""

    deploy_started: datetime
    deploy_finished: datetime
    source: str
    baseline: Window
    canary: Window
    lag: int
    baseline_end: datetime | None = None  # a rollback's: the broken release's deploy start

    @property
    def ready_at(self) -> datetime:
        return self.canary.end + timedelta(seconds=self.lag)

    @property
    def logs_before(self) -> Window:
        length = self.canary.end - self.deploy_finished
        end = self.baseline_end or self.deploy_started
        return Window("before the deploy", end - length, end)

    @property
    def logs_after(self) -> Window:
        return Window("since the deploy", self.deploy_finished, self.canary.end)

    def table(self) -> pd.DataFrame:
        rows = [("deploy started", f"{self.deploy_started:%Y-%m-%d %H:%M:%S} UTC ({self.source})"),
                ("deploy finished", f"{self.deploy_finished:%Y-%m-%d %H:%M:%S} UTC"),
                ("baseline window", self.baseline.describe()), ("canary window", self.canary.describe()),
                ("logs compared", f"{self.logs_before.describe()} vs {self.logs_after.describe()}"),
                ("readable from", f"{self.ready_at:%H:%M:%S} UTC (the canary's end + {self.lag}s for CloudWatch)")]
        return pd.DataFrame(rows, columns=["item", "value"])


def make_windows(settings: VerifySection, started: datetime, finished: datetime, source: str,
                 baseline_end: datetime | None = None) -> Windows:
    """Baseline: the `baseline_seconds` before the deploy started; canary: after it finished and settled."""
    if finished < started:
        raise InputError("deploy_finished", f"{finished:%H:%M:%S} is before deploy_started {started:%H:%M:%S}")
    p = settings.period
    base = metrics.window_before(baseline_end or started, settings.baseline_seconds, p)
    canary = metrics.window_after(finished + timedelta(seconds=settings.settle_seconds), settings.canary_seconds, p)
    return Windows(started, finished, source, base, canary, settings.publish_lag_seconds, baseline_end)


class Verification:
    """One verify run: its settings, windows, check results and the decision."""

    def __init__(self, env: Environment, version: str, *, deploy_started: str = "", deploy_finished: str = "",
                 security_issue: str = "", expect_commit: str = "", baseline_end: str = "",
                 settings: VerifySection | None = None, now: Clock = clock.utcnow,
                 sleep: Sleep = time.sleep, report: Reporter = say, phase: str = PHASE, dry_run: bool = False) -> None:
        self.env = env
        self.version = version
        self.settings = settings or env.verify
        settings_mod.check(self.settings)
        self.security_issue = security_issue
        self.expect_commit = expect_commit
        self.now, self.sleep, self.report = now, sleep, report
        self.phase = phase
        self.board = Board(phase=phase, automated=CHECK_IDS, rows=SECTION_3)
        self._started = clock.parse_optional(deploy_started, "deploy_started")
        self._finished = clock.parse_optional(deploy_finished, "deploy_finished")
        self._baseline_end = clock.parse_optional(baseline_end, "baseline_end")
        self.windows: Windows | None = None
        self.metrics: Metrics | None = None
        self.judgement: judge_mod.Judgement | None = None
        self.error_cmp: logs.ErrorLogs | None = None
        self.decision: decision.Decision | None = None
        self._dims: metrics.Dimensions | None = None
        # A dry run deploys nothing: without a deploy of this run there is nothing to verify.
        self.dry = dry_run and not deploy_started
        self.dry_note = "dry run: nothing was deployed by this run, nothing to verify " \
                        "(set dry_run = False to verify what is deployed now)"

    # ------------------------------------------------------------------ windows

    def resolve_windows(self, ecs: Any = None) -> pd.DataFrame:
        """The deploy's times (run facts, else the ECS service's current deployment) and the windows."""
        if self.dry:
            return pd.DataFrame([("dry run", self.dry_note)], columns=["item", "value"])
        if self._started and self._finished:
            started, finished, source = self._started, self._finished, "from this run's deploy phase"
        else:
            started, finished = ecs_deploy_times(self.env, ecs)
            source = "from the ECS service's current deployment"
        self.windows = make_windows(self.settings, started, finished, source, self._baseline_end)
        return self.windows.table()

    # ------------------------------------------------------------------ checks

    def _add(self, res: CheckResult) -> CheckView:
        if self.dry:
            res = CheckResult(res.id, "skip", self.dry_note)
        self.report(f"{res.id}: {res.verdict.upper()} — {res.summary}")
        return self.board.add(res)

    def reachable(self, **kw: Any) -> CheckView:
        if self.dry:
            return self._add(CheckResult(reach.REACHABLE, "skip", self.dry_note))
        return self._add(reach.reachable(self.env, self.version, self.settings, expect_commit=self.expect_commit,
                                         **kw))

    def smoke(self, **kw: Any) -> CheckView:
        if self.dry:
            return self._add(CheckResult(reach.SMOKE, "skip", self.dry_note))
        return self._add(reach.smoke(self.env, self.version, self.settings, **kw))

    def wait_for_canary(self) -> str:
        """Sleep until the canary window is over and CloudWatch has its datapoints; a line every 15 s."""
        if self.dry:
            return self.dry_note
        w = self._need_windows()
        total = (w.ready_at - self.now()).total_seconds()
        if total <= 0:
            return f"the canary window ended at {w.canary.end:%H:%M:%S} UTC: nothing to wait for"
        self.report(f"waiting {total:.0f}s for the canary window ({w.canary.describe()}) and CloudWatch")
        last = self.now()
        while (left := (w.ready_at - self.now()).total_seconds()) > 0:
            self.sleep(min(left, 5.0))
            if (self.now() - last).total_seconds() >= 15 and (w.ready_at - self.now()).total_seconds() > 0:
                last = self.now()
                into = (self.now() - w.canary.start).total_seconds()
                self.report(f"{self.now():%H:%M:%S} canary {max(0.0, into):.0f}/{w.canary.seconds:.0f}s, "
                            f"{(w.ready_at - self.now()).total_seconds():.0f}s to go")
        return f"waited {total:.0f}s: the canary window is complete"

    def dims(self) -> metrics.Dimensions:
        if self._dims is None:
            self._dims = metrics.dimensions(self.env)
        return self._dims

    def fetch(self, cloudwatch: Any = None) -> pd.DataFrame:
        """Both windows, one GetMetricData call each; the per-query status table."""
        if self.dry:
            return pd.DataFrame([("dry run", self.dry_note)], columns=["item", "value"])
        w = self._need_windows()
        try:
            dims = self.dims()
        except ShipbookError as exc:
            empty = pd.DataFrame(columns=[q.id for q in metrics.QUERIES], dtype=float)
            errs = {q.id: f"dimensions unknown: {exc}" for q in metrics.QUERIES}
            self.metrics = Metrics(metrics.WindowData(w.baseline, empty, dict(errs)),
                                   metrics.WindowData(w.canary, empty.copy(), dict(errs)), self.settings.period)
            return self.metrics.table()
        cloudwatch = cloudwatch or aws.client(self.env, "cloudwatch")
        self.metrics = Metrics(metrics.fetch_window(cloudwatch, w.baseline, dims, self.settings.period),
                               metrics.fetch_window(cloudwatch, w.canary, dims, self.settings.period),
                               self.settings.period)
        self.report(f"GetMetricData: {self.metrics.calls} call(s), {len(self.metrics.baseline.frame)} baseline and "
                    f"{len(self.metrics.canary.frame)} canary periods")
        return self.metrics.table()

    def judge(self) -> pd.DataFrame:
        """The judge's reasons table (baseline, canary, effect, threshold, p-value, why per metric)."""
        if self.dry:
            return pd.DataFrame(columns=judge_mod.REASON_COLUMNS)
        m = self._need_metrics()
        self.judgement = judge_mod.judge(m.baseline.frame, m.canary.frame, settings_mod.metric_specs(self.settings),
                                         self.settings.alpha, m.errors)
        self.report(f"judge: {self.judgement.explain()}")
        return self.judgement.reasons()

    def chart(self) -> Figure:
        if self.dry:
            fig = Figure(figsize=(8, 1.5))
            fig.text(0.5, 0.5, self.dry_note, ha="center", va="center")
            return fig
        w = self._need_windows()
        return charts.chart(self._need_metrics(), self.judgement, w.deploy_started, w.deploy_finished,
                            f"{self.version}: baseline vs canary — {self.judgement.verdict if self.judgement else ''}")

    def performance(self) -> CheckView:
        """verify.performance from the judge: FAIL fails, INCONCLUSIVE warns (a person decides), PASS passes."""
        j = self.judgement
        m = self.metrics
        evidence = f"GetMetricData ×{m.calls if m else 0}; {self.settings.period}s periods; alpha {self.settings.alpha}"
        if j is None:
            res = CheckResult(PERFORMANCE, "fail", "the judge did not run", evidence=evidence)
        else:
            verdict = {judge_mod.PASS: "pass", judge_mod.FAIL: "fail", judge_mod.INCONCLUSIVE: "warn"}[j.verdict]
            res = CheckResult(PERFORMANCE, verdict, f"judge {j.explain()}", j.reasons().to_dict("records"), evidence)
        return self._add(res)

    def error_logs(self, logs_client: Any = None) -> CheckView:
        if self.dry:
            return self._add(CheckResult(logs.ERROR_LOGS, "skip", self.dry_note))
        w = self._need_windows()
        res, self.error_cmp = logs.check_error_logs(self.env, w.logs_before, w.logs_after, self.settings.log_filter,
                                                    self.settings.max_log_events, logs_client,
                                                    rule=settings_mod.fatal_rule(self.settings))
        return self._add(res)

    def error_table(self) -> pd.DataFrame:
        return self.error_cmp.table() if self.error_cmp else pd.DataFrame(columns=logs.COLUMNS)

    def alarms(self, cloudwatch: Any = None) -> CheckView:
        if self.dry:
            return self._add(CheckResult(monitoring.ALARMS, "skip", self.dry_note))
        return self._add(self._monitor(monitoring.alarms, monitoring.ALARMS, cloudwatch=cloudwatch))

    def notifications(self, cloudwatch: Any = None, sns: Any = None) -> CheckView:
        if self.dry:
            return self._add(CheckResult(monitoring.NOTIFICATIONS, "skip", self.dry_note))
        return self._add(self._monitor(monitoring.notifications, monitoring.NOTIFICATIONS, cloudwatch=cloudwatch,
                                       sns=sns))

    def health_checks(self, elbv2: Any = None, ecs: Any = None) -> CheckView:
        if self.dry:
            return self._add(CheckResult(monitoring.HEALTH_CHECKS, "skip", self.dry_note))
        return self._add(monitoring.health_checks(self.env, elbv2=elbv2, ecs=ecs))

    def _monitor(self, fn: Callable[..., CheckResult], check_id: str, **kw: Any) -> CheckResult:
        try:
            dims = self.dims()
        except ShipbookError as exc:
            return CheckResult(check_id, "fail", f"could not be checked: {exc}")
        return fn(self.env, dims, self.settings.alarms, **kw)

    # ------------------------------------------------------------------ decision and verdict

    def decide(self) -> pd.DataFrame:
        """The rollback decision table and the recommendation."""
        if self.dry:
            return pd.DataFrame([("dry run", self.dry_note)], columns=["item", "value"])
        r = self.board.results
        missing = CheckResult("?", "skip", "did not run")
        self.decision = decision.decide(r.get(reach.REACHABLE, missing), r.get(reach.SMOKE, missing), self.judgement,
                                        self.security_issue, r.get(monitoring.ALARMS), r.get(logs.ERROR_LOGS),
                                        self.error_cmp.fatal if self.error_cmp else None)
        self.report(f"recommendation: {self.decision.recommendation}" +
                    (f" — {'; '.join(self.decision.reasons)}" if self.decision.reasons else ""))
        return self.decision.table()

    def facts(self) -> dict[str, Any]:
        d = self.decision
        out: dict[str, Any] = dict(d.facts()) if d else {}
        if self.judgement:
            out["judge_verdict"] = self.judgement.verdict
            out["judge_failed_metrics"] = [r.metric for r in self.judgement.failed]
        if self.windows:
            w = self.windows
            out["verify_baseline"] = f"{w.baseline.start.isoformat()}/{w.baseline.end.isoformat()}"
            out["verify_canary"] = f"{w.canary.start.isoformat()}/{w.canary.end.isoformat()}"
        return out

    def checks(self) -> list[CheckResult]:
        """Every row of section 3 in the checklist's order; a check that never ran fails (it must not pass silently)."""
        missing = "the check did not run in this notebook"
        return [self.board.results.get(r.id) or CheckResult(r.id, "fail", missing) for r in SECTION_3]

    def verdict(self) -> str:
        """pass for PROCEED, warn for HOLD (or a check that warned/failed), fail for ROLLBACK; skip in a dry run."""
        if self.dry:
            return "skip"
        if self.decision is None:
            return "fail"
        if self.decision.recommendation == decision.ROLLBACK:
            return "fail"
        if self.decision.recommendation == decision.HOLD:
            return "warn"
        bad = [c for c in self.checks() if c.verdict in ("warn", "fail")]
        return "warn" if bad else "pass"

    def finish(self) -> pd.DataFrame:
        """Report the phase: every check, the decision (blocking on ROLLBACK) and the facts for later phases."""
        if self.dry:
            checks = [self.board.results.get(r.id) or CheckResult(r.id, "skip", self.dry_note) for r in SECTION_3]
            result.report(self.phase, checks, facts={"recommendation": "", "rollback_reasons": []}, verdict="skip",
                          blocking=[])
            return pd.DataFrame([{"check": c.id, "verdict": c.verdict, "summary": c.summary} for c in checks])
        if self.decision is None:
            self.decide()
        assert self.decision is not None  # for type checkers: decide() sets it  # nosec B101
        checks = self.checks()
        dcheck = self.decision.check()
        blocking = [dcheck] if self.decision.recommendation == decision.ROLLBACK else []
        res = result.report(self.phase, [*checks, dcheck], facts=self.facts(), verdict=self.verdict(),
                            blocking=blocking)
        log.info("%s phase verdict: %s (%s)", self.phase, res.verdict, self.decision.recommendation)
        rows = [{"check": c.id, "verdict": c.verdict, "summary": c.summary} for c in [*checks, dcheck]]
        return pd.DataFrame(rows, columns=["check", "verdict", "summary"])

    # ------------------------------------------------------------------ helpers

    def _need_windows(self) -> Windows:
        if self.windows is None:
            self.resolve_windows()
        assert self.windows is not None  # nosec B101
        return self.windows

    def _need_metrics(self) -> Metrics:
        if self.metrics is None:
            self.fetch()
        assert self.metrics is not None  # nosec B101
        return self.metrics


def start(env: Environment, version: str, **kw: Any) -> Verification:
    """The verify run of `version` (see `Verification` for the keywords)."""
    return Verification(env, version, **kw)
