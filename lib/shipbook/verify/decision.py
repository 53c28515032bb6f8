"""The rollback decision table: the checklist's three criteria, plus "cannot tell", and the recommendation.

ロールバック判断基準: 致命的なバグ / パフォーマンス著しく低下 / セキュリティ上の重大な問題.

- fatal bug — `verify.reachable` or `verify.smoke` failed → ROLLBACK; so does a NEW error signature
  (absent before the deploy) logged at a sustained rate: every bucket (`fatal_signature_bucket_seconds`)
  of a run at least `fatal_signature_seconds` long holds `fatal_signature_per_minute` lines a minute or
  more (`fatal_signatures`, a row of its own with the evidence);
- severe performance drop — the judge's verdict is FAIL → ROLLBACK (naming each metric);
- serious security problem — declared by a person (`security_issue` / SECURITY_ISSUE="…") → ROLLBACK;
- otherwise, when the evidence is incomplete (judge INCONCLUSIVE or not run, a check that could
  not look, an alarm firing) → HOLD: a person decides;
- otherwise PROCEED.

Other error-log findings (a new signature in a burst or at a low rate, known errors more frequent)
are shown as supporting evidence and decide nothing on their own (the 5xx rate and the smoke tests
are what a user feels). Pure functions of check results and DataFrames.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from shipbook.checks import CheckResult
from shipbook.verify.judge import FAIL, INCONCLUSIVE, PASS, Judgement

PROCEED = "PROCEED"
ROLLBACK = "ROLLBACK"
HOLD = "HOLD"
DECISION = "verify.decision"
COLUMNS = ["criterion", "基準", "evidence", "triggered", "effect"]


@dataclass
class Criterion:
    """One row of the decision table."""

    id: str
    ja: str
    en: str
    evidence: str
    effect: str = ""  # ROLLBACK, HOLD or "" (no effect)

    @property
    def triggered(self) -> bool:
        return bool(self.effect)


@dataclass
class Decision:
    """The recommendation, the reasons for it, and the table it was read from."""

    recommendation: str
    criteria: list[Criterion] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        """The reasons behind the recommendation (ROLLBACK reasons, or HOLD reasons)."""
        return [f"{c.en}: {c.evidence}" for c in self.criteria if c.effect == self.recommendation]

    def table(self) -> pd.DataFrame:
        rows = [{"criterion": c.en, "基準": c.ja, "evidence": c.evidence, "triggered": "yes" if c.triggered else "no",
                 "effect": c.effect or "—"} for c in self.criteria]
        return pd.DataFrame(rows, columns=COLUMNS)

    def check(self) -> CheckResult:
        """`verify.decision`: fail (blocks) on ROLLBACK, warn on HOLD, pass on PROCEED."""
        verdict = {ROLLBACK: "fail", HOLD: "warn", PROCEED: "pass"}[self.recommendation]
        why = "; ".join(self.reasons) if self.reasons else "no criterion triggered"
        return CheckResult(DECISION, verdict, f"{self.recommendation}: {why}",
                           self.table().to_dict("records"), "the rollback decision table")

    def facts(self) -> dict[str, object]:
        return {"recommendation": self.recommendation,
                "rollback_reasons": self.reasons if self.recommendation == ROLLBACK else [],
                "hold_reasons": self.reasons if self.recommendation == HOLD else []}


@dataclass(frozen=True)
class FatalRule:
    """When a NEW error signature is a fatal bug: at least `per_minute` lines a minute in every
    `bucket_seconds` bucket of a run at least `seconds` long. `per_minute` 0 turns the rule off."""

    per_minute: float = 10.0
    seconds: int = 300
    bucket_seconds: int = 60

    @property
    def buckets(self) -> int:
        """Consecutive buckets the rate must hold for."""
        return max(1, math.ceil(self.seconds / self.bucket_seconds))

    @property
    def per_bucket(self) -> float:
        """Lines a bucket needs to be at the rate."""
        return self.per_minute * self.bucket_seconds / 60.0

    def describe(self) -> str:
        return f"≥{self.per_minute:g}/min in every {self.bucket_seconds}s for ≥{self.seconds}s"


@dataclass
class SignatureRate:
    """One NEW signature after the deploy: how many lines, how fast, for how long, when."""

    signature: str
    count: int
    per_minute: float  # over the whole window
    sustained_seconds: int  # the longest run of consecutive buckets at or above the rule's rate
    peak_per_minute: float  # the busiest bucket
    first_seen: datetime | None
    last_seen: datetime | None
    fatal: bool = False

    def describe(self, rule: FatalRule) -> str:
        seen = (f", first {self.first_seen:%H:%M:%S}, last {self.last_seen:%H:%M:%S} UTC"
                if self.first_seen and self.last_seen else "")
        held = (f"≥{rule.per_minute:g}/min for {self.sustained_seconds}s" if self.sustained_seconds
                else f"never ≥{rule.per_minute:g}/min in a {rule.bucket_seconds}s bucket")
        return (f"NEW {self.signature!r}: {self.count} line(s), {self.per_minute:.1f}/min "
                f"(peak {self.peak_per_minute:.1f}/min), {held}{seen}")


@dataclass
class FatalSignatures:
    """The NEW signatures of the window after the deploy, judged against the rule (fatal ones first)."""

    rule: FatalRule
    window_seconds: float
    rates: list[SignatureRate] = field(default_factory=list)
    note: str = ""  # e.g. the read stopped early: later buckets were not seen

    @property
    def fatal(self) -> list[SignatureRate]:
        return [r for r in self.rates if r.fatal]

    @property
    def triggered(self) -> bool:
        return bool(self.fatal)

    def evidence(self) -> str:
        """The decision row's text: the fatal signature(s), else why the new ones are not fatal."""
        note = f"; {self.note}" if self.note else ""
        if self.rule.per_minute <= 0:
            return "off (fatal_signature_per_minute = 0)"
        if not self.rates:
            return f"no new error signature (rule: {self.rule.describe()}){note}"
        shown = self.fatal or self.rates
        more = f" (+{len(shown) - 1} more)" if len(shown) > 1 else ""
        if self.fatal:
            return f"{shown[0].describe(self.rule)}{more} — rule: {self.rule.describe()}{note}"
        return (f"not sustained — {shown[0].describe(self.rule)}{more}; rule: {self.rule.describe()}{note}")

    def table(self) -> pd.DataFrame:
        rows = [{"signature": r.signature, "count": r.count, "per_minute": round(r.per_minute, 1),
                 "peak_per_minute": round(r.peak_per_minute, 1), "sustained_s": r.sustained_seconds,
                 "first_seen": r.first_seen, "last_seen": r.last_seen, "fatal": "FATAL" if r.fatal else ""}
                for r in self.rates]
        return pd.DataFrame(rows, columns=SIGNATURE_COLUMNS)


SIGNATURE_COLUMNS = ["signature", "count", "per_minute", "peak_per_minute", "sustained_s", "first_seen", "last_seen",
                     "fatal"]


def fatal_signatures(lines: pd.DataFrame, baseline: Collection[str], start: datetime, end: datetime,
                     rule: FatalRule, note: str = "") -> FatalSignatures:
    """Which NEW signatures (in `lines`, not in `baseline`) held the rule's rate long enough to be a fatal bug.

    `lines`: one row per error line after the deploy, columns `time` (UTC) and `signature`. The window
    [start, end) is cut into whole buckets from `start` (a partial last bucket is not judged: its
    lines still count in the totals). A burst fills one bucket or two; a sustained error fills them all.
    """
    seconds = max((end - start).total_seconds(), 1e-9)
    n = int(seconds // rule.bucket_seconds)
    out = FatalSignatures(rule, seconds, note=note)
    if lines.empty:
        return out
    new = lines[~lines["signature"].isin(set(baseline))]
    for sig, group in new.groupby("signature", sort=False):
        times = pd.to_datetime(group["time"], utc=True)
        offsets = (times - pd.Timestamp(start)).dt.total_seconds()
        index = (offsets // rule.bucket_seconds).astype(int)
        counts = index[(index >= 0) & (index < n)].value_counts().reindex(range(n), fill_value=0).tolist()
        run = best = 0
        for c in counts:
            run = run + 1 if c >= rule.per_bucket else 0
            best = max(best, run)
        sustained = best * rule.bucket_seconds
        peak = max(counts, default=0) * 60.0 / rule.bucket_seconds
        out.rates.append(SignatureRate(
            str(sig), len(group), len(group) * 60.0 / seconds, sustained, peak,
            times.min().to_pydatetime(), times.max().to_pydatetime(),
            fatal=rule.per_minute > 0 and best >= rule.buckets))
    out.rates.sort(key=lambda r: (not r.fatal, -r.sustained_seconds, -r.count))
    return out


def _names(res: CheckResult) -> str:
    return f"{res.id} {res.verdict}: {res.summary}"


def performance_evidence(judgement: Judgement | None) -> tuple[str, str]:
    """(evidence, effect) of the performance criterion."""
    if judgement is None:
        return "the metrics could not be judged (see verify.performance)", HOLD
    if judgement.verdict == FAIL:
        parts = []
        for r in judgement.failed:
            spec = judgement.specs.get(r.metric)
            if spec is not None and spec.kind == "rate":
                parts.append(f"{r.label} {r.baseline * 100:.2f}% → {r.canary * 100:.2f}% "
                             f"({r.effect * 100:+.2f} points, p={r.p_value:.2g})")
            else:
                scale, unit = (spec.scale, spec.unit) if spec else (1.0, "")
                parts.append(f"{r.label} {r.baseline * scale:.3g} → {r.canary * scale:.3g} {unit} "
                             f"({r.effect:+.0%}, p={r.p_value:.2g})".replace("  ", " "))
        return "judge FAIL — " + "; ".join(parts), ROLLBACK
    if judgement.verdict == INCONCLUSIVE:
        return f"judge INCONCLUSIVE — {judgement.summary}", HOLD
    return f"judge {PASS} — {judgement.summary}", ""


def decide(reachable: CheckResult, smoke: CheckResult, judgement: Judgement | None, security_issue: str = "",
           alarms: CheckResult | None = None, error_logs: CheckResult | None = None,
           signatures: FatalSignatures | None = None) -> Decision:
    """The recommendation from the verify checks, the new error signatures and the person's declaration."""
    rows: list[Criterion] = []
    broken = [r for r in (reachable, smoke) if r.verdict == "fail"]
    unknown = [r for r in (reachable, smoke) if r.verdict == "skip"]
    if broken:
        rows.append(Criterion("fatal_bug", "致命的なバグ", "fatal bug", " | ".join(_names(r) for r in broken),
                              ROLLBACK))
    elif unknown:
        rows.append(Criterion("fatal_bug", "致命的なバグ", "fatal bug",
                              "not evaluated — " + " | ".join(_names(r) for r in unknown), HOLD))
    else:
        rows.append(Criterion("fatal_bug", "致命的なバグ", "fatal bug",
                              f"{reachable.id} {reachable.verdict}; {smoke.id} {smoke.verdict}: {smoke.summary}"))
    if signatures is not None:
        rows.append(Criterion("fatal_signature", "致命的なバグ", "fatal bug: new error signature sustained",
                              signatures.evidence(), ROLLBACK if signatures.triggered else ""))
    evidence, effect = performance_evidence(judgement)
    rows.append(Criterion("performance", "パフォーマンス著しく低下", "severe performance drop", evidence, effect))
    declared = (security_issue or "").strip()
    rows.append(Criterion("security", "セキュリティ上の重大な問題", "serious security problem",
                          f"declared by a person: {declared}" if declared else
                          "none declared (security_issue / SECURITY_ISSUE=\"…\")", ROLLBACK if declared else ""))
    if alarms is not None:
        firing = alarms.verdict == "warn" and "in ALARM" in alarms.summary
        rows.append(Criterion("alarms", "アラーム", "alarms firing", _names(alarms), HOLD if firing else ""))
    if error_logs is not None:
        rows.append(Criterion("error_logs", "エラーログ", "error logs (supporting evidence)", _names(error_logs)))
    if any(c.effect == ROLLBACK for c in rows):
        rec = ROLLBACK
    elif any(c.effect == HOLD for c in rows):
        rec = HOLD
    else:
        rec = PROCEED
    return Decision(rec, rows)
