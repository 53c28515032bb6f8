"""`code.shared`: the pre-check summary for the team — planned and shown by the check, sent by the next cell.

Plan, then apply (design convention 3). `shared()` is the check: it plans the notification (the
channels from `precheck.share_topic` (else `stack.alarm_topic`) and `precheck.share_webhook`; the
subject and the body, masked) and shows it. `send_summary()` is the apply step: `notify.send`
delivers the plan or, in a dry run, only says where it would go. Both run before the gate, so a
channel that is down (`manual`) or misconfigured (`fail`) is gated like any other item.

"Will be": this item runs inside the phase, so the report (rendered when the phase ends) and its S3
mirror (uploaded when the run ends) do not exist yet; the result says where they are going, not that
they are there. Only from a recorded run (`run_id` set by the runner): an interactive session writes
no report, and re-running a cell in JupyterLab must not notify the team again.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipbook import (
    mirror,
    notify,
    places,
)
from shipbook.checks import SECTION_1, CheckResult, CheckView, Release, badge, check, html_table, text_table, worst
from shipbook.config import Environment
from shipbook.errors import ShipbookError
from shipbook.redact import Redactor

SHARED = "code.shared"
REPORT_NAME = "01_precheck.stakeholder.html"
_WHAT = {"sns": "summary (SNS)", "webhook": "summary (webhook)"}
_NOTHING = CheckResult(SHARED, "fail", "nothing was planned")


def report_locations(env: Environment, version: str, run_id: str, runs_root: Path | None = None) -> tuple[str, str]:
    """(local path, S3 URL or '') of this run's stakeholder report, as the runner will write and mirror it."""
    root = runs_root or places.runs_root()
    rel = Path(env.name) / version / run_id / REPORT_NAME
    local = str(root / rel)
    if not env.runner.runs_url:
        return local, ""
    bucket, prefix = mirror.s3_target(env.runner.runs_url)
    key = "/".join(x for x in (prefix, rel.as_posix()) if x)
    return local, f"s3://{bucket}/{key}"


def summary_message(env: Environment, release: Release, results: Iterable[Any], run_id: str, report: str,
                    mirror_url: str) -> tuple[str, str]:
    """(subject, message) of the notification: counts, what blocks, every check's line, and where the report
    will be (the runner writes it when the phase ends and mirrors it when the run ends: not there yet)."""
    order = {row.id: i for i, row in enumerate(SECTION_1)}
    rows = sorted((r for r in results if getattr(r, "id", "") != SHARED), key=lambda r: order.get(r.id, len(order)))
    counts = Counter(r.verdict for r in rows)
    tally = ", ".join(f"{counts[v]} {v}" for v in ("fail", "manual", "warn", "pass", "skip") if counts[v])
    subject = f"[shipbook] precheck {release.version or release.short} on {env.name}: " \
              f"{counts['fail']} fail, {counts['warn']} warn"
    blocking = [r.id for r in rows if r.verdict == "fail"]
    signoff = [r.id for r in rows if r.verdict == "manual"]
    lines = [f"shipbook pre-release check of {release.version or '(no version)'} for {env.name}",
             f"run: {run_id}",
             f"commit: {release.short} ({release.ref})",
             f"verdicts: {tally or 'none yet'}",
             f"blocking: {', '.join(blocking) or 'nothing'}"]
    if signoff:
        lines.append(f"needs a sign-off: {', '.join(signoff)}")
    lines.append(f"report (written when the phase ends): {report}")
    if mirror_url:
        lines.append(f"report mirror (uploaded when the run ends): {mirror_url}")
    lines.append("")
    lines += [f"[{r.verdict}] {r.id}: {r.summary}" for r in rows]
    return subject, "\n".join(lines)


def share_topic(env: Environment) -> tuple[str, str]:
    """(topic, the key it came from): `precheck.share_topic`, else the alarm topic as before that key existed."""
    if env.precheck.share_topic:
        return env.precheck.share_topic, "precheck.share_topic"
    if env.stack.alarm_topic:
        return env.stack.alarm_topic, "stack.alarm_topic"
    return "", ""


@dataclass(frozen=True)
class SharePlan:
    """`code.shared` before anything is sent: the report rows, the notification, or the result when there is none."""

    rows: tuple[dict, ...] = ()
    report_at: str = ""
    notification: notify.Plan | None = None
    outcome: CheckResult | None = None  # final already: nothing to send (interactive, nothing configured, error)

    def planned(self) -> tuple[str, list[dict]]:
        """(summary, rows) of the plan: the report rows and one row per channel."""
        channels = self.notification.channels if self.notification else ()
        rows = [*self.rows] + [{"what": _WHAT[c.kind], "where": c.where, "detail": c.problem or f"from {c.key}",
                                "verdict": "fail" if c.problem else "planned"} for c in channels]
        usable = [c.describe() for c in channels if not c.problem]
        summary = ("the summary goes to " + " and ".join(usable) if usable else "the summary cannot be sent") + \
            " when the next cell runs (a dry run sends nothing)" + \
            "".join(f"; {c.problem}" for c in channels if c.problem) + f"; report will be at {self.report_at}"
        return summary, rows

    def _repr_html_(self) -> str:
        if self.outcome is not None or self.notification is None:
            return CheckView(self.outcome or _NOTHING)._repr_html_()
        summary, rows = self.planned()
        n = self.notification
        return (f"<p>{badge('pending')} <code>{SHARED}</code> — plan: {html.escape(summary)}</p>{html_table(rows)}"
                f"<p>subject: <code>{html.escape(n.subject)}</code></p><pre>{html.escape(n.body)}</pre>")

    def __repr__(self) -> str:
        if self.outcome is not None or self.notification is None:
            return repr(CheckView(self.outcome or _NOTHING))
        summary, rows = self.planned()
        return f"[PLAN] {SHARED}: {summary}\n{text_table(rows)}\nsubject: {self.notification.subject}\n" \
               f"{self.notification.body}"


def shared(env: Environment, release: Release, results: Iterable[Any], *, run_id: str = "",
           runs_root: Path | None = None, redactor: Redactor | None = None) -> SharePlan:
    """Plan the pre-check summary for the configured SNS topic and/or webhook, naming where the report will be.

    Never raises a ShipbookError: a plan that cannot be made is a `fail` outcome, so the gate still runs.
    """
    if not run_id:
        return SharePlan(outcome=CheckResult(
            SHARED, "warn", "not a recorded run (no run_id): no report is published and nothing is sent; "
            "`shipbook precheck VERSION` does both", evidence="run_id parameter"))
    try:
        return _plan(env, release, list(results), run_id, runs_root, redactor)
    except ShipbookError as exc:
        return SharePlan(outcome=CheckResult(SHARED, "fail", f"could not be checked: {exc}",
                                             evidence=f"{type(exc).__name__} while planning"))


def _plan(env: Environment, release: Release, results: list[Any], run_id: str, runs_root: Path | None,
          redactor: Redactor | None) -> SharePlan:
    report, mirror_url = report_locations(env, release.version, run_id, runs_root)
    rows: list[dict] = [{"what": "report (stakeholder HTML)", "where": report,
                         "detail": "will be written by the runner when this phase ends", "verdict": "pass"}]
    if mirror_url:
        rows.append({"what": "report mirror", "where": mirror_url,
                     "detail": "will be uploaded by the runner when the run ends (runner.runs_url)", "verdict": "pass"})
    else:
        rows.append({"what": "report mirror", "where": "none", "verdict": "pass",
                     "detail": "runner.runs_url is empty: the report stays on the machine that ran the release"})
    topic, topic_key = share_topic(env)
    webhook = env.precheck.share_webhook
    report_at = f"{mirror_url} (uploaded when the run ends)" if mirror_url else \
        f"{report} (written when this phase ends; not mirrored)"
    if not topic and webhook is None:
        rows.append({"what": "summary", "where": "none configured", "verdict": "warn",
                     "detail": "precheck.share_topic, precheck.share_webhook and stack.alarm_topic are all empty"})
        if mirror_url:
            summary = (f"the report will be mirrored to {mirror_url} when the run ends, but nobody is told: no "
                       "precheck.share_topic / share_webhook (or stack.alarm_topic) configured; tell the team by hand")
        else:
            summary = (f"nothing is shared: no report mirror (runner.runs_url) and no summary destination "
                       f"(precheck.share_topic / share_webhook, stack.alarm_topic); the report will only be at "
                       f"{report} on this machine: share it by hand")
        return SharePlan(outcome=CheckResult(
            SHARED, "warn", summary, rows,
            evidence="runner.runs_url, precheck.share_topic, precheck.share_webhook, stack.alarm_topic"))
    subject, message = summary_message(env, release, results, run_id, report, mirror_url)
    notification = notify.plan(env, subject, message, topic=topic, topic_key=topic_key, webhook=webhook,
                               webhook_key="precheck.share_webhook", redactor=redactor)
    return SharePlan(tuple(rows), report_at, notification)


@check(SHARED)
def send_summary(env: Environment, share: SharePlan, *, dry_run: bool = True, sns: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> CheckResult:
    """The apply step of `code.shared`: send the planned summary (`notify.send`); a dry run sends nothing."""
    if share.outcome is not None or share.notification is None:
        return share.outcome or _NOTHING
    plan = share.notification
    rows, sent, problems, evidence = list(share.rows), [], [], []
    for got in notify.send(env, plan, dry_run=dry_run, sns=sns, sleep=sleep):
        row, line, problem = _row(got)
        rows.append(row)
        if line:
            sent.append(line)
        if problem:
            problems.append(problem)
        evidence.append(_evidence(got, plan.subject))
    if dry_run:
        summary = "dry run: nothing sent" + (f"; would send the summary to {' and '.join(sent)}" if sent else "")
    else:
        summary = "summary sent to " + " and ".join(sent) if sent else "summary not sent"
    summary += "".join(f"; {p}" for p in problems) + f"; report will be at {share.report_at}"
    return CheckResult(SHARED, worst(r["verdict"] for r in rows), summary, rows, evidence="; ".join(evidence))


def _row(got: notify.Delivery) -> tuple[dict, str, str]:
    """(row, the summary's "sent to" part, a problem) for one channel's delivery."""
    kind, where = got.channel.kind, got.where
    row = {"what": _WHAT[kind], "where": where, "detail": "", "verdict": "fail"}
    name = where.rsplit(":", 1)[-1] if kind == "sns" else where.removeprefix("webhook ")
    if got.dry_run:
        row.update(detail="dry run: would send it here; nothing sent", verdict="skip")
        return row, got.channel.describe(), ""
    if kind == "sns":
        if got.error:
            row["detail"] = got.error
            return row, "", f"SNS topic {where} could not be used: {got.error}"
        receivers = ", ".join(got.receivers) or "nobody"
        row.update(detail=f"MessageId {got.message_id}; {len(got.receivers)} confirmed subscription(s): {receivers}",
                   verdict="pass" if got.receivers else "warn")
        return row, f"SNS topic {name} ({len(got.receivers)} confirmed subscriber(s))", \
            "" if got.receivers else f"nobody is subscribed to {name}"
    if not got.attempts:  # not even tried: the reference or the URL is wrong
        row["detail"] = got.error
        return row, "", f"the webhook could not be used: {got.error}"
    tries = f"{got.attempts} attempt(s)"
    if got.sent:
        row.update(detail=f"HTTP {got.status} after {tries}", verdict="pass")
        return row, f"webhook {name} (HTTP {got.status})", ""
    # no answer, 429 or 5xx after the retry: the channel is down, not misconfigured; a person may share by hand
    row.update(detail=f"not delivered after {tries}: {got.error}", verdict="manual" if got.transient else "fail")
    hint = ": share the report by hand, then sign off" if got.transient else ": fix precheck.share_webhook"
    return row, "", f"webhook {name} did not take the summary ({got.error}){hint}"


def _evidence(got: notify.Delivery, subject: str) -> str:
    channel = got.channel
    if channel.kind == "sns":
        what = f"SNS Publish to {got.where} ({channel.key}; subject: {subject}); ListSubscriptionsByTopic"
    else:
        what = (f"webhook POST (JSON {{\"text\": …}}, {notify.TIMEOUT:.0f}s timeout, one retry) to "
                f"{got.where.removeprefix('webhook ')} from {channel.key} "
                f"({channel.ref.describe() if channel.ref else '?'}); its path is a secret and never shown")
    return f"dry run, not done: {what}" if got.dry_run else what
