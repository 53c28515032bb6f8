"""Status reports: the seed's five fields, composed from the incident's record and the state read now.

They are appended to `runs/<env>/incidents/<id>/status.jsonl`, redacted and hash-chained like
the feedback file, so the postmortem's timeline can quote them and nobody can rewrite one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from shipbook import audit, clock, i18n, secretvalues
from shipbook.config import Environment
from shipbook.incident.impact import Impact
from shipbook.incident.model import STATUS_FILE, incident_dir, load_record
from shipbook.incident.state import CONVERGED, observe
from shipbook.redact import Redactor


@dataclass
class StatusReport:
    """The seed's five fields (発生時刻・影響範囲・現在の状況・対応予定時間・次回の更新予定)."""

    incident_id: str
    lang: str
    at: str
    started: str
    impact: str
    current: str
    eta: str
    next_update: str

    def fields(self) -> list[tuple[str, str]]:
        return [(label, getattr(self, key)) for key, label in i18n.status_labels(self.lang)]

    def text(self) -> str:
        """Exactly the five fields, one per line, in the seed's order."""
        sep = "：" if self.lang == "ja" else ": "
        return "\n".join(f"{label}{sep}{value}" for label, value in self.fields())


def status_reports(env: str, incident_id: str, runs_root: Path | None = None) -> list[dict[str, Any]]:
    """The status reports appended to the incident, oldest first."""
    path = incident_dir(env, incident_id, runs_root) / STATUS_FILE
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def started_text(started: datetime, opened: datetime | None, lang: str = "ja") -> str:
    """発生時刻 as a report gives it: when it started, and when it was opened if that was later."""
    if opened is None or opened == started:
        return clock.fmt(started)
    label = i18n.t("incident.opened_short", lang)
    return f"{clock.fmt(started)}（{label} {clock.fmt(opened)}）" if lang == "ja" else \
        f"{clock.fmt(started)} ({label} {clock.fmt(opened)})"


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) else default


def status_report(env: Environment, incident_id: str, lang: str = "", *, impact: str = "", current: str = "",
                  eta: str = "", next_update_minutes: float = 30, runs_root: Path | None = None,
                  now: clock.Clock | None = None, cloudwatch: Any = None, elbv2: Any = None,
                  get: Callable[..., Any] = requests.get, http_get: Callable[..., Any] | None = None,
                  redactor: Redactor | None = None) -> StatusReport:
    """Compose a status report (computed where not given), append it, timestamped, and return it.

    発生時刻 is the incident's start (and when it was opened); 影響範囲 the incident notebook's
    pooled impact unless given; 現在の状況, unless given, the current state read now: the
    suspected release's rollback, the version served, the convergence checks, the last 3 minutes.
    """
    lang = i18n.resolve_lang(lang, env.lang)
    rec = load_record(env.name, incident_id, runs_root)
    facts = rec.get("facts", {})
    started = clock.parse_time(facts.get("incident_start") or rec.get("started"))
    opened = clock.parse_time(facts["incident_opened"]) if facts.get("incident_opened") else None
    imp = facts.get("impact") if isinstance(facts.get("impact"), dict) else None
    t = (now or clock.utcnow)()
    if not impact:
        impact = Impact.from_facts(imp).summary(lang) if imp else i18n.t("unknown", lang)
    if not current:
        since = clock.parse_time(facts["suspected_deploy"]) if facts.get("suspected_deploy") else started
        recorded = imp or {}
        reference = Impact("", "", p99_baseline=_number(recorded.get("p99_baseline"), float("nan")),
                           error_rate_baseline=_number(recorded.get("error_rate_baseline"), 0.0))
        current = current_status(env, started, lang, t, suspected=facts.get("suspected_version", ""), since=since,
                                 reference=reference, runs_root=runs_root, cloudwatch=cloudwatch, elbv2=elbv2,
                                 get=get, http_get=http_get)
    rep = StatusReport(incident_id, lang, clock.iso(t), started_text(started, opened, lang), impact, current,
                       eta or i18n.t("to_fill", lang), clock.fmt(t + timedelta(minutes=next_update_minutes)))
    _append_chained(incident_dir(env.name, incident_id, runs_root) / STATUS_FILE, asdict(rep),
                    redactor or Redactor(secretvalues.collect(env)))
    return rep


def current_status(env: Environment, started: datetime, lang: str, t: datetime, *, suspected: str = "",
                   since: datetime | None = None, reference: Impact | None = None, runs_root: Path | None = None,
                   cloudwatch: Any = None, elbv2: Any = None, get: Callable[..., Any] = requests.get,
                   http_get: Callable[..., Any] | None = None, minutes: float = 3) -> str:
    """現在の状況 in a few sentences: the current state (`observe`: the rollback of `suspected`, of any version
    when unknown, since `since`; the version served; what still fails against `reference`'s baseline), then
    the last `minutes`."""
    state = observe(env, suspected, since or started, reference, minutes=minutes, recent=0, runs_root=runs_root,
                    get=get, http_get=http_get, cloudwatch=cloudwatch, elbv2=elbv2, now=lambda: t)
    parts = [state.sentence(lang)]
    if state.served:
        parts.append(i18n.t("incident.serving", lang).format(served=state.served))
    if state.live is not None:
        parts.append(state.live_sentence(lang))
    if state.state == CONVERGED:
        parts.append(i18n.t("incident.monitoring", lang))
    return ("。" if lang == "ja" else "; ").join(parts)


def _append_chained(path: Path, entry: dict[str, Any], redactor: Redactor) -> None:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()] if path.is_file() else []
    entry = {**redactor.json(entry), "seq": len(lines) + 1,
             "prev": audit.sha256_bytes(lines[-1].encode()) if lines else audit.GENESIS}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
