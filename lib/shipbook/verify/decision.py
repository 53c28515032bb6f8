"""The rollback decision table: the checklist's three criteria, plus "cannot tell", and the recommendation.

ロールバック判断基準: 致命的なバグ / パフォーマンス著しく低下 / セキュリティ上の重大な問題.

- fatal bug — `verify.reachable` or `verify.smoke` failed → ROLLBACK;
- severe performance drop — the judge's verdict is FAIL → ROLLBACK (naming each metric);
- serious security problem — declared by a person (`security_issue` / SECURITY_ISSUE="…") → ROLLBACK;
- otherwise, when the evidence is incomplete (judge INCONCLUSIVE or not run, a check that could
  not look, an alarm firing) → HOLD: a person decides;
- otherwise PROCEED.

New error signatures are shown as supporting evidence; on their own they decide nothing (the
5xx rate and the smoke tests are what a user feels). A pure function of check results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
           alarms: CheckResult | None = None, error_logs: CheckResult | None = None) -> Decision:
    """The recommendation from the verify checks and the person's declaration."""
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
