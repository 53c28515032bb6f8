"""The `db.*` pre-checks: one analysis of the release's migrations (`analyse`), read by four checks.

Why through Django and not by reading files: which migrations are new, how they depend on each
other and whether they reverse is defined by the app's code and its Django version. So
`analyse()` runs the probe (`django_probe`) with the app's own Python in clean worktrees of the
previous release tag and of the release commit, and the four checks read its JSON. The probe
replaces every database with a scratch SQLite file: nothing here touches a real database.
Thresholds and production row counts come from the environment's `[precheck]` section.

The runtime estimate is a measurement, not a guess from operation types: each new migration runs
on SQLite samples holding a known number of synthetic rows (two sizes), a line `a + b·rows` goes
through the two timings, and it is extrapolated to the production row counts of the affected
tables (`[precheck] db_row_counts`). The report states that method, the sample sizes and figures.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipbook import gitinfo
from shipbook.checks import CheckResult, Release, check, worst
from shipbook.checks.django_probe import probe, settings_module
from shipbook.checks.worktree import Previous, app_python, checkout, previous
from shipbook.config import Environment, PrecheckSection
from shipbook.errors import ShipbookError

log = logging.getLogger(__name__)

MIGRATIONS, GRAPH, ESTIMATE, ROLLBACK = "db.migrations", "db.migration_graph", "db.migration_estimate", \
    "db.rollback_plan"
CHECK_IDS = (MIGRATIONS, GRAPH, ESTIMATE, ROLLBACK)
# A migration "scales with rows" when the larger sample took clearly longer than the smaller one.
_SCALES_RATIO, _SCALES_MIN_SECONDS = 1.5, 0.05

# --------------------------------------------------------------------------- the analysis


def sample_sizes(pre: PrecheckSection) -> tuple[int, int]:
    """The two sample sizes of the runtime estimate: a fifth of `migration_sample_rows`, and all of it."""
    big = max(10, pre.migration_sample_rows)
    return max(1, big // 5), big


@dataclass
class MigrationReport:
    """What the probe found at the release commit, against the previous release's graph."""

    release: Release
    previous: Previous
    precheck: PrecheckSection
    data: dict[str, Any] = field(default_factory=dict)
    prior: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    settings: str = ""
    python: str = ""
    seconds: float = 0.0
    changed_files: list[str] = field(default_factory=list)

    @property
    def broken(self) -> str:
        """Why Django could not build the release's migration graph ('' when it could)."""
        if self.error or self.data.get("graph") is not None:
            return ""
        return "the migration graph cannot be built: " + "; ".join(self.data.get("missing") or ["?"])

    @property
    def since(self) -> str:
        return self.previous.tag or "the first commit (no previous release)"

    @property
    def new(self) -> list[dict[str, Any]]:
        return list(self.data.get("migrations") or [])

    def evidence(self) -> str:
        prev = f"{self.previous.tag} @ {self.previous.commit[:12]}" if self.previous else "no previous release"
        return (f"django_migrations_probe.py with {self.python} (Django {self.data.get('django', '?')}, "
                f"settings {self.settings}) in clean worktrees of {self.release.short} ({self.release.ref}) and "
                f"{prev}; scratch SQLite databases only; {self.seconds:.1f}s")


def analyse(env: Environment, release: Release, previous_version: str = "", *,
            python: str | None = None) -> MigrationReport:
    """Probe the previous release's graph, then the release's migrations against it.

    Never raises a ShipbookError: the error is kept in the report and each of the four checks
    fails with it, so the rest of the notebook still runs.
    """
    t0 = time.monotonic()
    python = python or app_python(env)
    # both probes run in one notebook cell: stay inside the runner's cell timeout
    timeout = min(env.precheck.probe_timeout, max(60.0, env.runner.cell_timeout * 0.75))
    report = MigrationReport(release, Previous("", ""), env.precheck, python=python)
    try:
        report.previous = previous(release.repo, release.version, previous_version)
        scratch = Path(tempfile.mkdtemp(prefix="shipbook-graph-"))
        try:
            prior_json = None
            if report.previous:
                with checkout(release.repo, report.previous.commit) as tree:
                    report.prior = probe(python, tree, settings_module(env, tree), "graph", min(120.0, timeout))
                prior_json = scratch / "previous.json"
                prior_json.write_text(json.dumps(report.prior), encoding="utf-8")
            with checkout(release.repo, release.commit) as tree:
                report.settings = settings_module(env, tree)
                report.data = probe(python, tree, report.settings, "full", timeout, prior_json,
                                    sample_sizes(env.precheck))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        report.changed_files = _changed_released_migrations(report)
    except ShipbookError as exc:
        log.warning("migration analysis failed: %s", exc)
        report.error = str(exc)
    report.seconds = time.monotonic() - t0
    return report


def _changed_released_migrations(report: MigrationReport) -> list[str]:
    """Migration files of the previous release edited since: production will never re-run them."""
    files = ((report.prior.get("graph") or {}).get("files") or {}).values()
    files = [f for f in files if f and not Path(f).is_absolute()]
    if not report.previous or not files:
        return []
    out = gitinfo.git(report.release.repo, "diff", "--name-only", report.previous.commit, report.release.commit,
                      "--", *files)
    return [line for line in out.splitlines() if line]


def _failed(check_id: str, report: MigrationReport) -> CheckResult:
    why = f"could not be checked: {report.error}" if report.error else report.broken
    return CheckResult(check_id, "fail", why, evidence=report.evidence())


# --------------------------------------------------------------------------- db.migrations


@check(MIGRATIONS)
def migrations(report: MigrationReport) -> CheckResult:
    """The migrations added since the previous release, with their operations, for review."""
    if report.error or report.broken:
        return _failed(MIGRATIONS, report)
    rows = [{"migration": m["key"], "file": m["file"],
             "operations": "; ".join(o["describe"] for o in m["operations"]) or "(none)",
             "tables": m["tables"], "reversible": "yes" if m["reversible"] else "NO", "verdict": "pass"}
            for m in report.new]
    problems = []
    prior_nodes = set((report.prior.get("graph") or {}).get("nodes") or [])
    graph = report.data.get("graph") or {}
    squashed = {r for replaced in (graph.get("squashed") or {}).values() for r in replaced}
    removed = sorted(prior_nodes - set(graph.get("nodes") or []) - squashed)
    for key in removed:
        rows.append({"migration": key, "file": "", "operations": f"in {report.previous.tag}, gone from the release",
                     "verdict": "warn"})
        problems.append(f"{key} was released and is now removed")
    for path in report.changed_files:
        rows.append({"migration": path, "file": path, "operations": f"edited since {report.previous.tag}: "
                     "databases that applied it will not re-run it", "verdict": "warn"})
        problems.append(f"{path} edited after release")
    names = ", ".join(m["key"] for m in report.new)
    summary = f"{len(report.new)} new migration(s) since {report.since}: {names}" if report.new else \
        f"no new migrations since {report.since}"
    if problems:
        summary += "; " + "; ".join(problems)
    return CheckResult(MIGRATIONS, worst(r["verdict"] for r in rows), summary, rows, evidence=report.evidence())


# --------------------------------------------------------------------------- db.migration_graph


@check(GRAPH)
def migration_graph(report: MigrationReport) -> CheckResult:
    """One leaf per app, every dependency present, and no model change without its migration."""
    if report.error:
        return _failed(GRAPH, report)
    graph = report.data.get("graph") or {}
    conflicts = report.data.get("conflicts") or {}
    missing = report.data.get("missing") or []
    mm = report.data.get("makemigrations") or {}
    leaves = ", ".join(f"{app} {' + '.join(names)}" for app, names in (graph.get("leaves") or {}).items())
    rows = [
        {"check": "leaf nodes (one per app)", "result": leaves or "(no migrations)",
         "verdict": "fail" if conflicts else "pass"},
        {"check": "conflicts", "result": "; ".join(f"{app}: {', '.join(n)}" for app, n in conflicts.items())
         or "none", "verdict": "fail" if conflicts else "pass"},
        {"check": "missing dependencies", "result": "; ".join(missing) or "none",
         "verdict": "fail" if missing else "pass"},
        {"check": "makemigrations --check --dry-run",
         "result": mm.get("error") or _short(mm.get("output", "")) or "not run: the graph did not load",
         "verdict": "pass" if mm.get("clean") else "fail"},
    ]
    problems = []
    if conflicts:
        problems.append("conflicting leaves in " + ", ".join(conflicts) + " (needs a merge migration)")
    if missing:
        problems.append(f"{len(missing)} missing dependenc{'y' if len(missing) == 1 else 'ies'}")
    if mm.get("error"):
        problems.append(f"makemigrations --check failed: {mm['error']}")
    elif not mm.get("clean") and not report.broken:
        problems.append("models changed without a migration (makemigrations --check)")
    summary = "; ".join(problems) if problems else \
        f"one leaf per app ({leaves}); no missing dependencies; makemigrations --check: no changes"
    return CheckResult(GRAPH, worst(r["verdict"] for r in rows), summary, rows, evidence=report.evidence())


def _short(text: str, limit: int = 300) -> str:
    text = " / ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- db.migration_estimate


@dataclass
class Estimate:
    """One migration's sample timings, the fitted line and the production figure."""

    key: str
    tables: list[str]
    points: list[tuple[int, float]]
    production_rows: int | None
    rows_source: str
    intercept: float = 0.0
    per_row: float = 0.0
    seconds: float | None = None
    error: str = ""

    @property
    def scales(self) -> bool:
        if len(self.points) < 2:
            return False
        (_, t1), (_, t2) = self.points[0], self.points[-1]
        return t2 > t1 * _SCALES_RATIO and t2 - t1 > _SCALES_MIN_SECONDS


def estimates(report: MigrationReport) -> list[Estimate]:
    """Fit `seconds = a + b·rows` through the samples of each new migration and extrapolate it."""
    sample = report.data.get("sample") or {}
    runs = sample.get("runs") or []
    counts = report.precheck.db_row_counts
    out = []
    for m in report.new:
        entries = [e for r in runs for e in r.get("migrations", []) if e.get("key") == m["key"]]
        errors = [e["error"] for e in entries if e.get("error")] + [r["error"] for r in runs if r.get("error")]
        points = [(max(e.get("rows", {}).values(), default=0), float(e["seconds"]))
                  for e in entries if e.get("seconds") is not None]
        known = {t: int(counts[t]) for t in m["tables"] if t in counts}
        prod = max(known.values()) if known else None
        source = ", ".join(f"{t}={n:,}" for t, n in known.items()) + " ([precheck] db_row_counts)" if known else ""
        est = Estimate(m["key"], m["tables"], sorted(points), prod, source, error="; ".join(errors[:2]))
        if len(est.points) >= 2 and est.points[-1][0] != est.points[0][0]:
            (r1, t1), (r2, t2) = est.points[0], est.points[-1]
            est.per_row = max(0.0, (t2 - t1) / (r2 - r1))
            est.intercept = max(0.0, t2 - est.per_row * r2)
        elif est.points:
            est.intercept = est.points[-1][1]
        if est.points:
            rows = prod if prod is not None else est.points[-1][0]
            est.seconds = est.intercept + est.per_row * rows if est.scales else max(t for _, t in est.points)
        out.append(est)
    return out


@check(ESTIMATE)
def migration_estimate(report: MigrationReport) -> CheckResult:
    """Measured runtime of each new migration, extrapolated to production row counts."""
    if report.error or report.broken:
        return _failed(ESTIMATE, report)
    if not report.new:
        return CheckResult(ESTIMATE, "pass", f"no new migrations since {report.since}: nothing to run",
                           evidence=report.evidence())
    warn_after, fail_after = report.precheck.migration_warn_seconds, report.precheck.migration_fail_seconds
    sizes = (report.data.get("sample") or {}).get("sizes") or []
    rows, problems, total = [], [], 0.0
    for est in estimates(report):
        row: dict[str, Any] = {"migration": est.key, "tables": est.tables}
        for i, (n, t) in enumerate(est.points):
            row[f"sample {i + 1}"] = f"{t:.3f}s @ {n:,} rows"
        row["per 1k rows"] = f"{est.per_row * 1000:.3f}s" if est.scales else "flat"
        row["production rows"] = est.rows_source or "unknown"
        verdict = "pass"
        if est.seconds is None:
            row["estimate"] = "—"
            verdict = "warn"
            problems.append(f"{est.key}: not measured ({est.error or 'no sample'})")
        else:
            if est.scales and est.production_rows is None:
                row["estimate"] = f"{est.per_row * 1_000_000:.1f}s per 1M rows"
                verdict = "warn"
                problems.append(f"{est.key} grows with rows ({est.per_row * 1000:.3f}s per 1k) and the production "
                                f"row count of {', '.join(est.tables)} is unknown ([precheck] db_row_counts)")
            else:
                total += est.seconds
                row["estimate"] = _duration(est.seconds)
                if fail_after and est.seconds > fail_after:
                    verdict = "fail"
                    problems.append(f"{est.key}: ≈{_duration(est.seconds)} > {_duration(fail_after)} allowed")
                elif est.seconds > warn_after:
                    verdict = "warn"
                    problems.append(f"{est.key}: ≈{_duration(est.seconds)} (over {_duration(warn_after)}: "
                                    "plan a window)")
        if est.error and est.seconds is not None:
            row["note"] = est.error
        row["verdict"] = verdict
        rows.append(row)
    summary = "; ".join(problems) if problems else \
        f"{len(rows)} new migration(s), ≈{_duration(total)} in total at production size"
    method = (f"method: each new migration applied alone to SQLite samples whose tables in the changed apps held "
              f"{' and '.join(f'{n:,}' for n in sizes) or '?'} synthetic rows; seconds = a + b·rows fitted through "
              "the two timings and extrapolated to the production row count of the largest affected table "
              "(flat when the larger sample was not clearly slower). SQLite is not PostgreSQL and synthetic rows "
              "are not production data: an order of magnitude, lock time not measured")
    return CheckResult(ESTIMATE, worst(r["verdict"] for r in rows), summary, rows,
                       evidence=f"{method}; {report.evidence()}")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------- db.rollback_plan


def reverse_commands(report: MigrationReport) -> list[dict[str, str]]:
    """Per app with new migrations: `python manage.py migrate <app> <previous leaf|zero>`."""
    targets = report.data.get("targets") or {}
    return [{"app": app, "target": name, "command": f"python manage.py migrate {app} {name}"}
            for app, name in targets.items()]


def _predecessors(report: MigrationReport) -> dict[str, str]:
    """migration key → the target that unapplies it and everything after it in its app."""
    order = (report.data.get("graph") or {}).get("order") or []
    out, last = {}, {}
    for key in order:
        app, name = key.split(".", 1)
        out[key] = last.get(app, "zero")
        last[app] = name
    return out


@check(ROLLBACK)
def rollback_plan(report: MigrationReport) -> CheckResult:
    """Per migration: reversible or not, the reverse command, and whether the previous code survives it."""
    if report.error or report.broken:
        return _failed(ROLLBACK, report)
    prev = report.previous.tag or "the previous release"
    if not report.new:
        return CheckResult(ROLLBACK, "pass", f"no new migrations: rolling back to {prev} needs no database step",
                           evidence=report.evidence())
    before = _predecessors(report)
    rows, irreversible, breaking = [], [], []
    for m in report.new:
        bad = [o for o in m["operations"] if not o["reversible"]]
        notes = [o["reverse_note"] for o in m["operations"] if o["reverse_note"]]
        breaks = m.get("breaks_previous") or []
        if bad:
            irreversible.append(f"{m['key']} ({bad[0]['reverse_note'] or bad[0]['type'] + ' is irreversible'})")
        breaking += [f"{m['key']}: {b}" for b in breaks]
        rows.append({"migration": m["key"], "reversible": "NO" if bad else "yes",
                     "reverse command": f"python manage.py migrate {m['app']} {before.get(m['key'], 'zero')}",
                     f"{prev} code on the new schema": "; ".join(breaks) or "runs",
                     "note": "; ".join(dict.fromkeys(notes)),
                     "verdict": "fail" if bad else "warn" if breaks else "pass"})
    rehearsal = _rehearsal(report)
    plan = "; then ".join(c["command"] for c in reverse_commands(report))
    rows.append({"migration": "whole release", "reversible": "NO" if irreversible else "yes",
                 "reverse command": "none by migrating: restore the pre-deploy snapshot" if irreversible else plan,
                 f"{prev} code on the new schema": "breaks" if breaking else "runs",
                 "note": rehearsal[0], "verdict": rehearsal[1]})
    if irreversible:
        summary = (f"cannot be reversed by migrating: {', '.join(irreversible)}. A database rollback to {prev} "
                   "needs the pre-deploy snapshot (phase backup)")
    elif breaking:
        summary = (f"reversible ({plan}, run with this release's code before rolling the code back); a code-only "
                   f"rollback is NOT safe: {'; '.join(breaking)}")
    else:
        summary = f"every migration reverses: {plan}; {prev}'s code runs on the new schema (code-only rollback safe)"
    if rehearsal[1] != "pass" and not irreversible:
        summary += f"; {rehearsal[0]}"
    verdict = "fail" if irreversible else worst(r["verdict"] for r in rows)
    return CheckResult(ROLLBACK, verdict, summary, rows, evidence=report.evidence())


def _rehearsal(report: MigrationReport) -> tuple[str, str]:
    """The backwards migration rehearsed on the largest sample: (note, verdict)."""
    runs = (report.data.get("sample") or {}).get("runs") or []
    done = [r["rollback"] for r in runs if r.get("rollback")]
    if not done:
        why = next((r["error"] for r in runs if r.get("error")), "") or next(
            (e["error"] for r in runs for e in r.get("migrations", []) if e.get("error")), "") or "no sample run"
        return f"rollback not rehearsed: {why}", "warn"
    last = done[-1]
    size = runs[-1].get("size", 0)
    if last.get("ok"):
        return f"rehearsed on a {size:,}-row SQLite sample: reversed in {last['seconds']:.2f}s", "pass"
    error = str(last.get("error", "?"))
    # IrreversibleError is proof; another error may be SQLite refusing PostgreSQL-only SQL.
    return f"rehearsal on a {size:,}-row SQLite sample failed: {error}", \
        "fail" if error.startswith("IrreversibleError") else "warn"
