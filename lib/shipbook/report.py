"""Phase `report`: the release completion report (リリース完了報告), one page for the whole run.

Why built from the run record: the report phase runs last, when `run.json` already holds every
earlier phase's status, verdict, checks and facts, and the run dir holds their executed
notebooks (hashed in the record). So this page — the notebook's stakeholder view, rendered by
the runner as `06_report.stakeholder.html` — shows each phase's verdict, checks and charts,
re-using the charts the phases drew (after checking their hashes) instead of recomputing them,
and writes nothing into the run dir itself (the runner owns it).

Features and fixes come from the version's section of the release notes, completed by the
pull requests merged since the previous tag, with links where GitHub (or its twin) knows them.
"""

from __future__ import annotations

import html
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from shipbook import (
    audit,
    clock,
    feedback,
    gitinfo,
    i18n,
    incident,
    places,
)
from shipbook import result as phase_result
from shipbook.config import Environment
from shipbook.deploy.notes import find_section
from shipbook.errors import InfraError, InputError, ShipbookError
from shipbook.github import GitHub

log = logging.getLogger(__name__)

PHASE = "report"
KINDS = ("features", "fixes", "other")
_HEADING_KIND = (
    (re.compile(r"feature|added|new|新機能|機能", re.I), "features"),
    (re.compile(r"fix|bug|修正|不具合", re.I), "fixes"),
)
_PR_REF = re.compile(r"\s*\(#(\d+)\)\s*$")
_MERGE = re.compile(r"^Merge pull request #(\d+) from [^/\s]+/(\S+)")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")
_CONVENTIONAL = re.compile(r"^(?P<type>[a-z]+)(?:\([^)]*\))?!?:")
FACT_KEYS = ("release_commit", "release_tag", "deploy_started", "deploy_finished", "snapshot_id",
             "workflow_run_url", "recommendation")


# ------------------------------------------------------------------ the run record


@dataclass
class Run:
    """The release run being reported: its record, where it lives, and the facts (parameters win)."""

    dir: Path
    data: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.data.get("version", "")

    @property
    def previous_version(self) -> str:
        return self.data.get("previous_version", "")

    def phases(self) -> list[dict[str, Any]]:
        return [p for p in self.data.get("phases", []) if p.get("name") != PHASE]

    def phase(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.data.get("phases", []) if p.get("name") == name), None)

    def phase_dir(self, phase: dict[str, Any]) -> Path:
        """Where a phase's files are: its own run's directory (an earlier run of the version, or this one)."""
        return Path(phase["_run_dir"]) if phase.get("_run_dir") else self.dir

    def phase_link(self, phase: dict[str, Any], name: str) -> str:
        """A link from this run's directory to a file of the phase's run."""
        return name if self.phase_dir(phase) == self.dir else f"../{self.phase_dir(phase).name}/{name}"


def _ran(phase: dict[str, Any]) -> bool:
    return phase.get("status") not in (None, "pending")


def with_history(root: Path, env_name: str, run: Run) -> Run:
    """The release as a whole: this run, with the phases of the version's earlier runs since its release run.

    `make report` and `make rollback` each start a run of their own; a report must still show the
    deploy, the verify verdict and the rollback. From the newest run of the version that deployed
    (or this run, if it did), each later run's phases replace the earlier ones of the same name;
    a phase this run did not reach is taken from the newest run that ran it.
    """
    runs = sorted((d for _p, d in audit.iter_records(root, env_name)
                   if d and d.get("version") == run.version and d.get("run_id", "") <= run.data.get("run_id", "")),
                  key=lambda d: d["run_id"])
    deployed = [i for i, d in enumerate(runs)
                if any(p.get("name") == "deploy" and _ran(p) for p in d.get("phases", []))]
    history = runs[deployed[-1]:] if deployed else []
    if not history or history[-1].get("run_id") != run.data.get("run_id"):
        return run
    merged: dict[str, dict[str, Any]] = {}
    facts: dict[str, Any] = {}
    for d in history:
        this = d.get("run_id") == run.data.get("run_id")
        for p in d.get("phases", []):
            if _ran(p) or this:
                merged[p["name"]] = p if this else {**p, "_run_dir": str(root / env_name / run.version / d["run_id"])}
        facts.update(d.get("facts") or {})
    order = [name for name in ("precheck", "backup", "deploy", "verify", "rollback", "report") if name in merged]
    order += [name for name in merged if name not in order]
    data = {**run.data, "phases": [merged[name] for name in order], "facts": {**facts, **run.data.get("facts", {})},
            "history": [d["run_id"] for d in history]}
    return Run(run.dir, data)


def load_run(env: Environment, version: str, run_id: str = "", *, runs_root: Path | None = None,
             overrides: dict[str, Any] | None = None) -> Run:
    """The run `run_id` (or the newest run of `version`), its facts overridden by non-empty parameters."""
    root = runs_root or places.runs_root()
    if run_id:
        rec = audit.RunRecord.load(root, env.name, run_id)
        run = Run(rec.dir, rec.data)
    else:
        data = audit.latest_run(root, env.name, version)
        if data is None:
            raise InputError("VERSION", f"no run of {version} in {env.name!r} under {root}")
        run = Run(root / env.name / version / data["run_id"], data)
    if version and run.version != version:
        raise InputError("run_id", f"run {run.data['run_id']} is of {run.version}, not {version}")
    run = with_history(root, env.name, run)
    run.facts = {**run.data.get("facts", {}), **{k: v for k, v in (overrides or {}).items() if v}}
    return run


def completion_table(run: Run, lang: str = "ja") -> pd.DataFrame:
    """デプロイ完了時刻 and the facts a manager asks next: duration, commit, snapshot, who."""
    f, t = run.facts, lambda k: i18n.t(k, lang)
    started = clock.parse_time(f["deploy_started"]) if f.get("deploy_started") else None
    finished = clock.parse_time(f["deploy_finished"]) if f.get("deploy_finished") else None
    duration = "—"
    if started and finished:
        secs = int((finished - started).total_seconds())
        duration = f"{secs // 60}m {secs % 60:02d}s"
    not_deployed = t("report.dry_run") if run.data.get("parameters", {}).get("dry_run") else t("report.not_deployed")
    op = run.data.get("operator") or {}
    rows = [
        (t("report.completed"), clock.fmt(finished) if finished else not_deployed),
        (t("report.started"), clock.fmt(started) if started else "—"),
        (t("report.duration"), duration),
        (t("report.version"), run.version),
        (t("report.previous"), run.previous_version or "—"),
        (t("report.run_status"), outcome(run)),
        (t("report.commit"), (f.get("release_commit") or run.data.get("commit") or "—")[:12]),
        (t("report.snapshot"), f.get("snapshot_id") or "—"),
        (t("report.workflow"), f.get("workflow_run_url") or "—"),
        (t("report.recommendation"), f.get("recommendation") or "—"),
        (t("report.operator"), op.get("git_user") or op.get("aws_arn") or "—"),
        (t("report.run"), run.data.get("run_id", "")),
    ]
    return pd.DataFrame(rows, columns=[t("item"), t("value")])


def outcome(run: Run) -> str:
    """The run in one word: rolled back, failed or blocked somewhere, or succeeded so far."""
    rb = run.phase("rollback")
    if rb and rb.get("status") == "succeeded":
        return "rolled_back"
    bad = [p for p in run.phases() if p.get("status") in ("failed", "blocked")]
    return f"{bad[0]['status']} ({bad[0]['name']})" if bad else "succeeded"


def phases_table(run: Run, lang: str = "ja") -> pd.DataFrame:
    """Each phase's status and verdict, with its checks counted by verdict and what blocked it."""
    rows = []
    for p in run.phases():
        counts: dict[str, int] = {}
        for c in p.get("checks", []):
            counts[c.get("verdict", "?")] = counts.get(c.get("verdict", "?"), 0) + 1
        rows.append({i18n.t("report.phase", lang): p["name"], i18n.t("status", lang): p.get("status"),
                     i18n.t("verdict", lang): p.get("verdict") or "—",
                     i18n.t("report.checks", lang): ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "—",
                     i18n.t("detail", lang): "; ".join(f"{b.get('id')}: {b.get('summary', '')}"
                                                       for b in p.get("blocking", [])) or (p.get("error") or "")})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ features and fixes


@dataclass
class Change:
    kind: str
    title: str
    pr: int | None = None
    url: str = ""
    source: str = "notes"  # notes | commits


@dataclass
class Changes:
    """What the release brings, by kind."""

    version: str
    previous_version: str
    items: list[Change] = field(default_factory=list)

    def of(self, kind: str) -> list[Change]:
        return [c for c in self.items if c.kind == kind]

    def table(self, kind: str, lang: str = "ja") -> pd.DataFrame:
        """One kind as a table; pull requests as links (rendered in the HTML)."""
        cols = [i18n.t("report.change", lang), i18n.t("report.pr", lang)]
        rows = [[html.escape(c.title), _link(c)] for c in self.of(kind)] or [[i18n.t("none", lang), ""]]
        return _HtmlTable(pd.DataFrame(rows, columns=cols))


class _HtmlTable(pd.DataFrame):
    """A DataFrame whose HTML keeps the links it holds (pandas escapes by default)."""

    def _repr_html_(self) -> str:  # type: ignore[override]
        return self.to_html(escape=False, index=False)


def _link(c: Change) -> str:
    if c.pr is None:
        return ""
    label = f"#{c.pr}"
    return f'<a href="{html.escape(c.url, quote=True)}">{label}</a>' if c.url else label


def classify(heading_or_title: str) -> str:
    """features / fixes / other, from a notes heading or a conventional-commit title."""
    m = _CONVENTIONAL.match(heading_or_title.strip())
    if m:
        return {"feat": "features", "fix": "fixes"}.get(m.group("type"), "other")
    for pattern, kind in _HEADING_KIND:
        if pattern.search(heading_or_title):
            return kind
    return "other"


def notes_items(body: str) -> list[Change]:
    """Bullets of a notes section, each under the kind of its `###` heading."""
    kind, out = "other", []
    for line in body.splitlines():
        s = line.strip()
        if s.startswith("#"):
            kind = classify(s.lstrip("# "))
        elif s.startswith(("- ", "* ")):
            text = s[2:].strip()
            m = _PR_REF.search(text)
            out.append(Change(kind, _PR_REF.sub("", text), int(m.group(1)) if m else None))
    return out


def merged_pulls(repo: str | Path, previous: str, head: str) -> list[Change]:
    """Pull requests merged on the first-parent line since `previous` (release branches left out)."""
    rng = f"{previous}..{head}" if previous else head
    out = gitinfo.git(repo, "log", "--first-parent", "--format=%s%x1f%b%x1e", rng)
    found = []
    for rec in out.split("\x1e"):
        subject, _, body = rec.strip().partition("\x1f")
        m = _MERGE.match(subject)
        if not m or m.group(2).startswith("release/"):
            continue
        title = next((ln.strip() for ln in body.splitlines() if ln.strip()), m.group(2))
        found.append(Change(classify(title), title, int(m.group(1)), source="commits"))
    return list(reversed(found))


def changes(env: Environment, version: str, previous_version: str = "", commit: str = "", *,
            github: GitHub | None = None) -> Changes:
    """Features, fixes and other changes of `version`: the notes first, then merged PRs they miss."""
    repo = env.app.repo
    result = Changes(version, previous_version)
    if not gitinfo.is_repo(repo):
        log.warning("app.repo %s is not a git repository: no changes listed", repo)
        return result
    head = commit or gitinfo.rev_or_empty(repo, version) or "HEAD"
    try:
        section = find_section(gitinfo.git(repo, "show", f"{head}:{env.app.notes_file}"), version)
    except InfraError:
        section = None
    result.items = notes_items(section[1]) if section else []
    known = {c.pr for c in result.items if c.pr is not None}
    prev = previous_version if previous_version and gitinfo.rev_or_empty(repo, previous_version) else ""
    result.items += [c for c in merged_pulls(repo, prev, head) if c.pr not in known]
    _add_links(env, result.items, github)
    return result


def _add_links(env: Environment, items: list[Change], github: GitHub | None) -> None:
    """PR links: from the GitHub API when configured, else github.com's pattern for a public repo."""
    gh = github if github is not None else GitHub.from_env(env)
    for c in items:
        if c.pr is None:
            continue
        if gh is not None:
            try:
                c.url = str(gh.get(f"/repos/{gh.repository}/pulls/{c.pr}").get("html_url", ""))
                continue
            except ShipbookError as exc:
                log.info("PR #%s: no link from GitHub (%s)", c.pr, exc)
        if env.github.repository and not env.github.api_url:
            c.url = f"https://github.com/{env.github.repository}/pull/{c.pr}"


# ------------------------------------------------------------------ known issues, next release


def plans_table(env: Environment, known_issues: str = "", next_release: str = "", lang: str = "ja") -> pd.DataFrame:
    """既知の問題点 and 次回リリース予定: parameters first, then the environment's `[report]` section."""
    issues = [s.strip() for s in known_issues.splitlines() if s.strip()] or list(env.report.known_issues)
    nxt = next_release or env.report.next_release or i18n.t("report.not_set", lang)
    rows = [(i18n.t("report.known_issues", lang), issue) for issue in issues] or \
        [(i18n.t("report.known_issues", lang), i18n.t("none", lang))]
    rows.append((i18n.t("report.next_release", lang), nxt))
    return pd.DataFrame(rows, columns=[i18n.t("item", lang), i18n.t("value", lang)])


# ------------------------------------------------------------------ rollback, charts, phases


def rollback_table(run: Run, lang: str = "ja") -> pd.DataFrame:
    """The rollback, if the run had one: status, times, and the facts it reported."""
    rb = run.phase("rollback")
    if not rb or rb.get("status") == "pending":
        return pd.DataFrame([(i18n.t("report.rollback", lang), i18n.t("report.no_rollback", lang))],
                            columns=[i18n.t("item", lang), i18n.t("value", lang)])
    rows = [(i18n.t("status", lang), rb.get("status")), (i18n.t("verdict", lang), rb.get("verdict") or "—"),
            ("started", rb.get("started") or "—"), ("finished", rb.get("finished") or "—")]
    rows += [(k, json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v)
             for k, v in run.facts.items() if k.startswith("rollback")]
    return pd.DataFrame(rows, columns=[i18n.t("item", lang), i18n.t("value", lang)])


def release_chart(env: Environment, run: Run, lang: str = "ja", after_minutes: float = 15) -> Figure:
    """5xx rate and latency around the deploy (10 minutes before it to now, or `after_minutes` after it)."""
    f = run.facts
    title = f"{run.version} — {i18n.t('report.chart_title', lang)}"
    if not f.get("deploy_started"):
        return incident.chart(pd.DataFrame(columns=incident.METRIC_COLUMNS), title, {}, lang)
    started = clock.parse_time(f["deploy_started"])
    end = min(incident.utcnow(), started + timedelta(minutes=after_minutes))
    marks = {i18n.t("report.started", lang): started}
    if f.get("deploy_finished"):
        marks[i18n.t("report.completed", lang)] = clock.parse_time(f["deploy_finished"])
    rb = run.phase("rollback")
    if rb and rb.get("started"):
        marks[i18n.t("report.rollback", lang)] = clock.parse_time(rb["started"])
    try:
        metrics = incident.fetch_metrics(env, started - timedelta(minutes=10), end)
    except ShipbookError as exc:
        log.warning("release metrics unavailable: %s", exc)
        metrics = pd.DataFrame(columns=incident.METRIC_COLUMNS)
    return incident.chart(metrics, title, marks, lang)


def phase_images(run: Run, phase: dict[str, Any], limit: int = 2) -> list[str]:
    """The last `limit` charts (base64 PNG) a phase's executed notebook shows, if its hash matches the record."""
    nb_name = phase.get("notebook", "")
    path = run.phase_dir(phase) / nb_name
    digest = (phase.get("files") or {}).get(nb_name)
    if not nb_name or not path.is_file() or digest != audit.sha256_file(path):
        if path.is_file():
            log.warning("%s does not match its hash in run.json: its charts are not shown", path)
        return []
    nb = json.loads(path.read_text(encoding="utf-8"))
    pngs = [o["data"]["image/png"] for c in nb.get("cells", []) for o in c.get("outputs", [])
            if isinstance(o.get("data"), dict) and "image/png" in o["data"]]
    out = [p if isinstance(p, str) else "".join(p) for p in pngs[-limit:]]
    return [p for p in out if _BASE64.fullmatch(p)]  # a PNG payload, never markup


@dataclass
class PhaseDetails:
    """Every phase's verdict, checks and charts as one HTML block (the stakeholder's whole run)."""

    run: Run
    lang: str = "ja"

    def _repr_html_(self) -> str:
        parts = []
        for p in self.run.phases():
            verdict = p.get("verdict") or "—"
            parts.append(f'<h3>{html.escape(p["name"])} — <span class="verdict verdict-{html.escape(verdict)}">'
                         f'{html.escape(str(p.get("status")))} / {html.escape(verdict)}</span></h3>')
            checks = pd.DataFrame([{"id": c.get("id"), i18n.t("verdict", self.lang): c.get("verdict"),
                                    i18n.t("summary", self.lang): c.get("summary", "")} for c in p.get("checks", [])])
            if not checks.empty:
                parts.append(checks.to_html(index=False))
            for png in phase_images(self.run, p):
                parts.append(f'<img alt="{html.escape(p["name"])} chart" src="data:image/png;base64,{png}">')
            stem = str(p.get("notebook", "")).removesuffix(".ipynb")
            if stem and (self.run.phase_dir(p) / f"{stem}.stakeholder.html").is_file():
                page, full = self.run.phase_link(p, f"{stem}.stakeholder.html"), self.run.phase_link(p, f"{stem}.html")
                parts.append(f'<p><a href="{html.escape(page)}">{html.escape(stem)}</a> · '
                             f'<a href="{html.escape(full)}">full</a></p>')
        return "\n".join(parts)


# ------------------------------------------------------------------ feedback, verdict


def feedback_table(env: Environment, version: str, lang: str = "ja", runs_root: Path | None = None) -> pd.DataFrame:
    """Open feedback recorded against this release (`shipbook feedback VERSION "text"`)."""
    return feedback.table(feedback.open_items(env, version, runs_root=runs_root), lang)


def finish(run: Run, found: Changes, lang: str = "ja") -> pd.DataFrame:
    """Report the phase: it never blocks; warn when the release did not end as planned."""
    state = outcome(run)
    dry = bool(run.data.get("parameters", {}).get("dry_run"))
    verdict = "skip" if dry else ("pass" if state == "succeeded" else "warn")
    summary = (f"{run.version}: {state}; {len(found.of('features'))} feature(s), {len(found.of('fixes'))} fix(es)"
               + (f"; completed {run.facts['deploy_finished']}" if run.facts.get("deploy_finished") else ""))
    checks = [{"id": "report.completion", "verdict": verdict, "summary": summary}]
    phase_result.report(PHASE, checks, facts={"report_lang": lang, "release_outcome": state}, blocking=[])
    return pd.DataFrame(checks)
