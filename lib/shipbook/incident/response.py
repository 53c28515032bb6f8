"""What to do and what to say: the decision table, the advice, the first notice, prevention items, the record.

The advice starts from the current state (converged: monitor; rolled back but failing: what
fails; rolling back: wait); only when nothing was rolled back do the seed's rollback criteria
decide (致命的なバグ, パフォーマンスの著しい低下, セキュリティ), with the exact command.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta

import pandas as pd

from shipbook import clock, i18n, versions
from shipbook import result as phase_result
from shipbook.config import Environment
from shipbook.incident.impact import Impact
from shipbook.incident.model import PHASE, Incident
from shipbook.incident.onset import LATENCY_FACTOR
from shipbook.incident.pools import ms_text, pool_label
from shipbook.incident.state import CONVERGED, ROLLED_BACK, ROLLING_BACK, CurrentState
from shipbook.result import Check

ERROR_RATE_CRITICAL = 1.0  # percent of requests answered 5xx: the seed's "致命的なバグ"


def decision_table(impact: Impact, lang: str = "ja", latency_threshold_ms: float | None = None) -> pd.DataFrame:
    """The seed's rollback criteria against what was measured (the worst pool): critical bug, performance,
    security."""
    yes, no, manual = (i18n.t(k, lang) for k in ("incident.yes", "incident.no", "incident.manual"))
    base = impact.p99_baseline
    limit = latency_threshold_ms or (base * LATENCY_FACTOR if base == base else float("nan"))
    bug = impact.error_rate_peak >= ERROR_RATE_CRITICAL or any("5xx" in a.lower() for a in impact.alarms)
    perf = (impact.p99_peak == impact.p99_peak and limit == limit and impact.p99_peak > limit) or \
        any("latency" in a.lower() for a in impact.alarms)
    at = f" ({clock.time_of_day(impact.peak_time, impact.pool_seconds % 60 != 0)} UTC)" if impact.peak_time else ""
    rows = [
        (i18n.t("incident.crit.bug", lang), f"{impact.error_rate_peak:.1f}%{at}", f"≥ {ERROR_RATE_CRITICAL:.1f}%",
         yes if bug else no),
        (i18n.t("incident.crit.perf", lang), ms_text(impact.p99_peak), f"> {ms_text(limit)}", yes if perf else no),
        (i18n.t("incident.crit.security", lang), i18n.t("incident.crit.security_obs", lang), "—", manual),
    ]
    cols = [i18n.t(k, lang) for k in ("incident.decision", "incident.observed", "incident.threshold", "incident.met")]
    return pd.DataFrame(rows, columns=cols)


def recommendation(decisions: pd.DataFrame, lang: str = "ja") -> str:
    met = (decisions.iloc[:, 3] == i18n.t("incident.yes", lang)).any()
    return i18n.t("incident.recommend_rollback" if met else "incident.recommend_watch", lang)


def rollback_command(env: Environment, inc: Incident) -> str:
    """The exact command that rolls the suspected version back (the rollback phase of its release)."""
    if not inc.version:
        return "# " + ("疑わしいバージョンが不明です: VERSION を指定してください" if inc.lang == "ja"
                       else "the suspected version is unknown: give VERSION")
    versions.parse(inc.version)
    target = f"  # → {inc.previous_version}" if inc.previous_version else ""
    return f"make rollback VERSION={inc.version} ENV={env.name}{target}"


@dataclass
class Advice:
    """What to do now, from the current state first, then the decision table."""

    kind: str  # rollback | watch (not rolled back) · wait · fix (rolled back, still failing) · monitor (converged)
    headline: str
    steps: list[str] = field(default_factory=list)
    command: str = ""

    def __str__(self) -> str:
        return "\n".join([self.headline, *(f"- {s}" for s in self.steps), *([self.command] if self.command else [])])


def advise(env: Environment, inc: Incident, state: CurrentState, decisions: pd.DataFrame) -> Advice:
    """Already rolled back and converged → monitor, status report, postmortem (never a second rollback);
    rolled back, still failing → what fails; rolling back → wait; not rolled back → the decision table."""
    lang = inc.lang
    t = lambda k: i18n.t(k, lang)  # noqa: E731
    status = f"{t('incident.step.status')}: shipbook status-report {inc.id} --env {env.name} --lang {lang}"
    pm = f"{t('incident.step.postmortem')}: make postmortem INCIDENT={inc.id} ENV={env.name}"
    rerun = f"{t('incident.step.rerun')}: make incident INCIDENT={inc.id} ENV={env.name}"
    if state.state == CONVERGED:
        return Advice("monitor", f"{t('incident.advice.monitor')}（{state.sentence(lang)}）" if lang == "ja" else
                      f"{t('incident.advice.monitor')} ({state.sentence(lang)})",
                      [t("incident.step.monitor"), status, pm])
    if state.state == ROLLED_BACK:
        failing = [f"{t('incident.step.failing')}: {c.id} — {c.summary}" for c in state.failing]
        return Advice("fix", t("incident.advice.fix"), [*failing, rerun, status])
    if state.state == ROLLING_BACK:
        return Advice("wait", f"{t('incident.advice.wait')}: {state.sentence(lang)}", [rerun, status])
    steps = []
    if state.rollback is not None:
        steps.append(t("incident.step.failed_rollback").format(run=state.rollback.run_id,
                                                               status=state.rollback.status))
    kind = "rollback" if recommendation(decisions, lang) == t("incident.recommend_rollback") else "watch"
    return Advice(kind, recommendation(decisions, lang), steps, rollback_command(env, inc))


@dataclass
class Notice:
    """A drafted notice (markdown), shown as such in the notebook and the HTML."""

    text: str

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


# The first notice's wording per language: (title when none is given, the affected endpoints, the body).
_NOTICE = {
    "ja": ("サービスの一部で障害が発生しています", "（対象: {eps}）",
           "{started} 頃より、サービスの一部でエラーが発生しやすい状態になっています{affected}。{how_much}\n\n"
           "{doing}ご迷惑をおかけし申し訳ございません。\n\n次回の更新は {nxt} 頃を予定しています。"),
    "en": ("Some requests are failing", " (affected: {eps})",
           "Since about {started}, some requests to the service may fail{affected}.{how_much}\n\n"
           "{doing} We apologise for the inconvenience.\n\nNext update by {nxt}."),
}


def first_notice(inc: Incident, impact: Impact, state: CurrentState | None = None) -> Notice:
    """A draft of the first notice to users: what, since when (the start), how much (the impact's pooled
    figures), what we do (or that it has recovered), next update (30 minutes after the opening)."""
    lang = inc.lang
    how_much = ""
    if impact.requests:
        peak = f"{impact.error_rate_peak:.1f}%" if impact.peak_time else "—"
        how_much = i18n.t("incident.notice_rate", lang).format(rate=f"{impact.error_rate:.1f}%", peak=peak,
                                                               pool=pool_label(impact.pool_seconds, lang))
    recovered = state is not None and state.state == CONVERGED
    title, affected, body = _NOTICE["ja" if lang == "ja" else "en"]
    eps = ", ".join(impact.endpoints[:3])
    text = body.format(started=clock.fmt(inc.started), affected=affected.format(eps=eps) if eps else "",
                       how_much=how_much if lang == "ja" or not how_much else " " + how_much,
                       doing=i18n.t("incident.notice_recovered" if recovered else "incident.notice_working", lang),
                       nxt=clock.fmt(inc.opened_at + timedelta(minutes=30)))
    return Notice(f"**{i18n.t('incident.notice_subject', lang)} {inc.title or title}**\n\n{text}")


def prevention_items(items: list[str] | str) -> list[str]:
    """Prevention items as given: one per line (or list item), blanks dropped."""
    return [s.strip() for s in (items.splitlines() if isinstance(items, str) else items) if s.strip()]


def prevention_table(items: list[str] | str, lang: str = "ja") -> pd.DataFrame:
    """Prevention items as given (one per line); an empty list shows the field to fill."""
    return pd.DataFrame({i18n.t("incident.prevention", lang): prevention_items(items) or [i18n.t("to_fill", lang)]})


def record(inc: Incident, impact: Impact, checks: list[Check], prevention: list[str] | str = "",
           decision: str = "", state: CurrentState | None = None) -> phase_result.PhaseResult:
    """Tell the runner what the incident notebook found; it lands in the incident's run.json."""
    facts = {"incident_id": inc.id, "incident_title": inc.title, "incident_start": clock.iso(inc.started),
             "incident_opened": clock.iso(inc.opened_at), "incident_start_basis": inc.start_basis,
             "suspected_version": inc.version, "suspected_deploy": clock.iso(inc.deploy),
             "suspected_deploy_run": inc.deploy_run, "rollback_target": inc.previous_version, "incident_lang": inc.lang,
             "impact": asdict(impact), "decision": decision, "current_state": state.facts() if state else {},
             "prevention_items": prevention_items(prevention)}
    return phase_result.report(PHASE, checks, facts=facts, blocking=[])
