"""The current state, read before anything is recommended: the suspect's rollback, the version served, convergence.

An incident is often opened after the release pipeline already rolled the release back. So
`observe` reads the run records (was the suspected release rolled back?) and the live service
(which version serves, do the convergence checks pass?); `decide_state` is pure over that data.
The convergence checks are the verify phase's: its smoke tests and settings (`[verify]`), and the
incident's one rule for "off the baseline" (`onset.errors_off` / `latency_off`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from shipbook import audit, clock, i18n, places
from shipbook.config import Environment
from shipbook.errors import ShipbookError
from shipbook.incident.impact import Impact, baseline_end, measure
from shipbook.incident.model import Incident
from shipbook.incident.onset import baseline, errors_off, latency_off, tolerance
from shipbook.incident.pools import ms_text
from shipbook.incident.signals import METRIC_COLUMNS, alarms_in_alarm, fetch_metrics
from shipbook.result import Check

log = logging.getLogger(__name__)

NOT_ROLLED_BACK, ROLLING_BACK, ROLLED_BACK, CONVERGED = "not-rolled-back", "rolling-back", "rolled-back", "converged"


@dataclass
class RollbackInfo:
    """A rollback of a release, as its run record tells it."""

    version: str
    run_id: str
    status: str  # the rollback phase's: succeeded | failed | running | …
    tag: str = ""
    to: str = ""
    started: str = ""
    finished: str = ""

    def describe(self, version: bool = True) -> str:
        """`v1.0.0 → v0.9.0, run …, tag v1.0.1-rollback, 15:02:31–15:02:44 UTC` (without the version: `→ v0.9.0, …`)."""
        when = f"{clock.time_of_day(self.started)}–{clock.time_of_day(self.finished) if self.finished else ''} UTC"
        tag = f", tag {self.tag}" if self.tag else ""
        return f"{self.version + ' ' if version else ''}→ {self.to or '?'}, run {self.run_id}{tag}, {when}"


def rollback_of(env: str, version: str, since: datetime | None, runs_root: Path | None = None
                ) -> RollbackInfo | None:
    """The newest rollback of `version` (of any version when empty) that started at or after `since`.

    From the run records: a rollback phase (in the release's run or a `make rollback` run of its
    own), or the facts a rollback leaves (rolled_back_to, rollback_tag, rollback_started/finished,
    the record's status "rolled-back").
    """
    found = []
    for _p, d in audit.iter_records(runs_root or places.runs_root(), env):
        if not d or (version and d.get("version") != version):
            continue
        f = d.get("facts") or {}
        rb = next((p for p in d.get("phases", []) if p.get("name") == "rollback"), None) or {}
        if not rb and d.get("status") != "rolled-back" and not f.get("rolled_back_to"):
            continue
        started = rb.get("started") or f.get("rollback_started") or ""
        if not started or (since is not None and clock.parse_time(started) < since):
            continue
        status = rb.get("status") or ("succeeded" if d.get("status") == "rolled-back" else "unknown")
        found.append(RollbackInfo(d.get("version", ""), d.get("run_id", ""), status, f.get("rollback_tag", ""),
                                  f.get("rolled_back_to") or d.get("previous_version", ""),
                                  f.get("rollback_started") or started,
                                  f.get("rollback_finished") or rb.get("finished") or ""))
    return max(found, key=lambda r: clock.parse_time(r.started)) if found else None


def served_now(env: Environment, get: Callable[..., Any] = requests.get) -> str:
    """The version the service answers at its version endpoint now ("" when it cannot be read)."""
    from shipbook.deploy.health import served_version  # as the verify modules: when used

    if not env.app.public_url:
        return ""
    try:
        resp = get(env.app.public_url.rstrip("/") + env.app.version_path, timeout=5)
    except requests.RequestException as exc:
        log.warning("version endpoint unreachable: %s", type(exc).__name__)
        return ""
    return served_version(resp.text) if resp.status_code == 200 else ""


def decide_state(suspected: str, served: str, rollback: RollbackInfo | None, checks: list[Check]
                 ) -> tuple[str, list[Check]]:
    """Where the incident stands, and what still fails. Pure.

    Rolled back: the suspected release's rollback succeeded (run records), or the service no
    longer serves it. Converged: rolled back, not serving the suspected version, and no
    convergence check fails. A running rollback is waited for; a failed one is no rollback.
    """
    from shipbook.deploy.health import same_version

    failing = [c for c in checks if c.verdict == "fail"]
    still = bool(served and suspected and same_version(served, suspected))
    if rollback is not None and rollback.status == "running":
        return ROLLING_BACK, failing
    done = (rollback is not None and rollback.status == "succeeded") or bool(served and suspected and not still)
    if not done:
        return NOT_ROLLED_BACK, failing
    if still:
        failing = [Check("current.version", "fail", f"{served} is still served"), *failing]
    return (ROLLED_BACK if failing else CONVERGED), failing


@dataclass
class CurrentState:
    """What already happened, read before anything is recommended: the version served now, the suspected
    release's rollback, the convergence checks re-run now, and `state` (decide_state)."""

    suspected: str
    served: str
    rollback: RollbackInfo | None
    checks: list[Check]
    state: str = NOT_ROLLED_BACK
    failing: list[Check] = field(default_factory=list)
    live: Impact | None = None
    live_metrics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=METRIC_COLUMNS), repr=False)
    live_minutes: float = 10

    @classmethod
    def of(cls, suspected: str, served: str, rollback: RollbackInfo | None, checks: list[Check],
           **observed: Any) -> CurrentState:
        state, failing = decide_state(suspected, served, rollback, checks)
        return cls(suspected, served, rollback, checks, state, failing, **observed)

    def _detail(self, lang: str) -> str:
        if self.rollback is not None:
            return self.rollback.describe(version=False)
        return i18n.t("incident.state.replaced", lang).format(served=self.served or "?")

    def sentence(self, lang: str = "ja") -> str:
        """The state in one sentence, for the notebook and the status report's 現在の状況."""
        if self.state == NOT_ROLLED_BACK and not self.suspected and self.rollback is None:
            return i18n.t("incident.state.no_rollback", lang)
        version = self.suspected or (self.rollback.version if self.rollback else "") or i18n.t("unknown", lang)
        failing = "; ".join(f"{c.id} ({c.summary})" for c in self.failing)
        key = {CONVERGED: "converged", ROLLED_BACK: "not_converged", ROLLING_BACK: "rolling_back"}.get(
            self.state, "not_rolled_back")
        text = i18n.t(f"incident.state.{key}", lang).format(version=version, detail=self._detail(lang),
                                                            failing=failing)
        if self.state == NOT_ROLLED_BACK and self.rollback is not None:
            text += f" (rollback run {self.rollback.run_id}: {self.rollback.status})"
        return text

    def live_sentence(self, lang: str = "ja") -> str:
        if self.live is None:
            return ""
        return i18n.t("incident.live", lang).format(minutes=f"{self.live_minutes:g}",
                                                    rate=f"{self.live.error_rate_now:.1f}%",
                                                    p99=ms_text(self.live.p99_now))

    def table(self, lang: str = "ja") -> pd.DataFrame:
        t = lambda k: i18n.t(k, lang)  # noqa: E731
        rb = f"{self.rollback.describe()}: {self.rollback.status}" if self.rollback else t("incident.state.none")
        checks = t("incident.state.all_pass") if not self.failing else t("incident.state.failing").format(
            ids=", ".join(c.id for c in self.failing))
        rows = [(t("incident.state.suspected"), self.suspected or t("unknown")),
                (t("incident.state.served"), self.served or t("unknown")),
                (t("incident.state.rollback"), rb), (t("incident.state.checks"), checks),
                (t("incident.state.live"), self.live_sentence(lang) or t("unknown")),
                (t("incident.state.verdict"), self.sentence(lang))]
        return pd.DataFrame(rows, columns=[t("item"), t("value")])

    def facts(self) -> dict[str, Any]:
        return {"state": self.state, "served": self.served, "rollback": asdict(self.rollback) if self.rollback else
                None, "failing": [c.id for c in self.failing]}


def observe(env: Environment, suspected: str, since: datetime | None, reference: Impact | None = None, *,
            minutes: float = 10, recent: int = 3, runs_root: Path | None = None,
            get: Callable[..., Any] = requests.get, http_get: Callable[..., Any] | None = None,
            cloudwatch: Any = None, elbv2: Any = None, now: clock.Clock | None = None) -> CurrentState:
    """Read the current state: the rollback of `suspected` since `since` (run records), the version served,
    the last `minutes` of metrics and the convergence checks against `reference`'s baseline (unreadable
    metrics fail `verify.metrics`)."""
    t = (now or clock.utcnow)()
    rollback = rollback_of(env.name, suspected, since, runs_root)
    live_metrics, live, unavailable = pd.DataFrame(columns=METRIC_COLUMNS), None, []
    try:
        live_metrics = fetch_metrics(env, t - timedelta(minutes=minutes), t, cloudwatch=cloudwatch, elbv2=elbv2)
        live = measure(live_metrics, alarms=alarms_in_alarm(env, cloudwatch), recent=recent)
    except ShipbookError as exc:
        log.warning("live metrics unavailable: %s", exc)
        unavailable = [Check("verify.metrics", "fail", f"live metrics unavailable: {str(exc)[:200]}")]
    checks = convergence_checks(env, reference or Impact("", ""), live, get=get, http_get=http_get)
    return CurrentState.of(suspected, served_now(env, get), rollback, checks + unavailable, live=live,
                           live_metrics=live_metrics, live_minutes=minutes)


def current_state(env: Environment, inc: Incident, metrics: pd.DataFrame, *, runs_root: Path | None = None,
                  get: Callable[..., Any] = requests.get, http_get: Callable[..., Any] | None = None,
                  cloudwatch: Any = None, elbv2: Any = None, now: clock.Clock | None = None,
                  live_minutes: float = 10) -> CurrentState:
    """The incident notebook's current state: `observe` for the suspected release since its deploy, against
    the baseline of the window before it."""
    base = baseline(metrics, baseline_end(env, inc, runs_root))
    reference = Impact("", "", p99_baseline=base.p99, error_rate_baseline=base.rate)
    return observe(env, inc.version, inc.deploy or inc.window_start, reference, minutes=live_minutes,
                   runs_root=runs_root, get=get, http_get=http_get, cloudwatch=cloudwatch, elbv2=elbv2, now=now)


def convergence_checks(env: Environment, impact: Impact, live: Impact | None, *,
                       get: Callable[..., Any] = requests.get, http_get: Callable[..., Any] | None = None
                       ) -> list[Check]:
    """The verify checks that say the service is back: health, version, smoke tests, errors, latency, alarms.

    `impact` gives the baseline (before the suspected deploy), `live` the last minutes (None:
    unreadable, its three checks left out). The smoke tests are the environment's
    `[[verify.smoke]]` (全機能の動作確認), run against the version the service serves now (after
    a rollback, the previous one); errors and latency are off the baseline as the onset is
    (`[verify]` tolerances): 5xx fails, latency warns.
    """
    from shipbook.deploy.health import served_version
    from shipbook.verify import reach  # the verify package loads its whole phase: when used

    out: list[Check] = []
    if env.app.public_url:
        url = env.app.public_url.rstrip("/")
        try:
            health = get(url + env.app.health_path, timeout=5)
            out.append(Check("verify.health", "pass" if health.status_code == 200 else "fail",
                             f"{env.app.health_path} answered {health.status_code}"))
            served = get(url + env.app.version_path, timeout=5)
            text = served.text.strip()[:80]
            out.append(Check("verify.version", "pass" if served.status_code == 200 else "warn",
                             f"{env.app.version_path} serves {text!r}"))
            smoke = reach.smoke(env, served_version(served.text), env.verify,
                                http_get=http_get or reach.http)
            out.append(Check(smoke.id, smoke.verdict, smoke.summary))
        except requests.RequestException as exc:
            out.append(Check("verify.health", "fail", f"{url}: {type(exc).__name__}"))
    if live is None:
        return out
    tol = tolerance(env)
    rate = live.error_rate_now
    out.append(Check("verify.errors", "fail" if errors_off(rate, impact.error_rate_baseline, tol) else "pass",
                     f"5xx rate {rate:.2f}% over the last periods"))
    base, now_p99 = impact.p99_baseline, live.p99_now
    out.append(Check("verify.performance", "warn" if latency_off(now_p99, base, tol) else "pass",
                     f"p99 now {ms_text(now_p99)} (baseline {ms_text(base)})"))
    firing = live.alarms
    out.append(Check("verify.alarms", "fail" if firing else "pass",
                     f"in ALARM: {', '.join(firing)}" if firing else "all watched alarms OK"))
    return out


def checks_table(checks: list[Check]) -> pd.DataFrame:
    return pd.DataFrame([asdict(c) for c in checks], columns=["id", "verdict", "summary"])
