"""Phase order, gates, resume, and the papermill call.

Each phase runs in a private work dir outside `runs/` (papermill saves as it goes, before any
redaction could run); when it ends, however it ends, the notebook is redacted and written to
the run dir, rendered to HTML, hashed into `run.json`, and the verdict read from the small
JSON result the notebook reported through `shipbook.result`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import papermill
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.exceptions import PapermillExecutionError

from shipbook import __version__, audit, clock, engine, places, render, runs_index
from shipbook import result as phase_result
from shipbook.config import Environment
from shipbook.errors import GateError, InputError, PhaseError, PhaseInfraError, ShipbookError
from shipbook.phases import NOTEBOOK_DIR, PHASES
from shipbook.redact import atomic_write_text

log = logging.getLogger(__name__)

# Exceptions a notebook raises (by class name) that mean "bad input" (exit 2) or "infrastructure" (exit 3);
# any other exception in a cell is the phase failing (exit 1).
INPUT_ERRORS = frozenset({"InputError", "ConfigError"})
INFRA_ERRORS = frozenset({"AwsError", "InfraError", "AuditError"})


class Progress:
    """What the runner tells the person waiting. The CLI prints it; tests may collect it."""

    def phase_start(self, phase: str, notebook: str) -> None:
        log.info("phase %s: %s", phase, notebook)

    def cell(self, phase: str, index: int, total: int, description: str) -> None:
        log.info("phase %s [%d/%d] %s", phase, index, total, description)

    def phase_end(self, phase: str, status: str, verdict: str | None, seconds: float, detail: str) -> None:
        log.info("phase %s %s (%s) in %.1fs %s", phase, status, verdict, seconds, detail)

    def output(self, phase: str, line: str) -> None:
        """One line a cell printed (already redacted): what a long cell is doing while the person waits."""
        log.info("phase %s | %s", phase, line)


class _LineForwarder:
    """A file-like sink for the kernel's stdout: complete lines, redacted, to `Progress.output`."""

    def __init__(self, phase: str, progress: Progress, redact: Callable[[str], str]) -> None:
        self.phase, self.progress, self.redact = phase, progress, redact
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.progress.output(self.phase, self.redact(line.rstrip()))
        return len(text)

    def flush(self) -> None:
        """Lines are forwarded as they complete; a partial line waits for its end."""


@dataclass
class RunOptions:
    version: str
    previous_version: str = ""
    commit: str = ""
    dry_run: bool = False
    only: str | None = None
    resume: str | None = None
    phases: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    operator: dict[str, str] = field(default_factory=dict)


@dataclass
class PhaseOutcome:
    phase: str
    status: str  # succeeded | blocked | failed
    verdict: str | None
    blocking: list[dict]
    error: str | None
    files: dict[str, str]
    cell: str = ""
    infra: bool = False  # the phase could not run (AWS, kernel, timeout): exit 3, not 1


class Runner:
    """Runs the phases of one release run against one environment."""

    def __init__(self, env: Environment, redactor: Any, runs_root: Path | None = None,
                 notebook_dir: Path = NOTEBOOK_DIR, progress: Progress | None = None,
                 kernel_env: dict[str, str] | None = None) -> None:
        self.env = env
        self.redactor = redactor
        self.runs_root = runs_root or places.runs_root()
        self.notebook_dir = notebook_dir
        self.progress = progress or Progress()
        self.kernel_env = kernel_env if kernel_env is not None else {**os.environ, **env.process_env()}

    # ------------------------------------------------------------------ run records

    def new_record(self, opts: RunOptions, phases: list[str], run_id: str | None = None) -> audit.RunRecord:
        params = {"dry_run": opts.dry_run, **opts.params}
        rec = audit.RunRecord.create(
            self.runs_root, env=self.env.name, version=opts.version, previous_version=opts.previous_version,
            commit=opts.commit, operator=opts.operator, parameters=params,
            phases=[(p, PHASES[p]) for p in phases], shipbook_version=__version__, run_id=run_id)
        rec.save(self.redactor)
        return rec

    def phases_to_run(self, rec: audit.RunRecord) -> list[str]:
        """From the first phase that did not succeed, in the record's order."""
        names = [p["name"] for p in rec.data["phases"]]
        for i, p in enumerate(rec.data["phases"]):
            if p["status"] != "succeeded":
                return names[i:]
        return []

    # ------------------------------------------------------------------ one phase

    def parameters(self, rec: audit.RunRecord, notebook: Path) -> dict[str, Any]:
        """Common parameters, then facts of earlier phases the notebook declares. Never secrets."""
        declared = set(papermill.inspect_notebook(str(notebook)).keys())
        d = rec.data
        params = {"version": d["version"], "env": d["env"], "run_id": d["run_id"],
                  "previous_version": d["previous_version"], "dry_run": bool(d["parameters"].get("dry_run"))}
        if d.get("commit"):  # one release commit for every phase of the run, wherever HEAD is when a phase runs
            params["release_commit"] = d["commit"]
        extra = {**d.get("facts", {}), **d["parameters"]}  # what the operator asked for wins over facts
        params.update({k: v for k, v in extra.items() if k in declared and k not in params})
        return {k: v for k, v in params.items() if k in declared}

    def run_phase(self, rec: audit.RunRecord, phase: str) -> PhaseOutcome:
        entry = rec.phase(phase)
        notebook = self.notebook_dir / entry["notebook"]
        stem = Path(entry["notebook"]).stem
        entry.update(status="running", started=clock.now_iso(), finished=None, error=None, verdict=None)
        rec.save(self.redactor)
        self.progress.phase_start(phase, entry["notebook"])
        t0 = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f"shipbook-{phase}-"))
        os.chmod(work, 0o700)
        out_nb = work / entry["notebook"]
        error: str | None = None
        infra = False
        cell_name = ""
        started: list[int] = []  # the cell that started last: the one a timeout or a dead kernel stopped

        def on_cell(name: str, index: int, total: int, description: str) -> None:
            started[:] = [index - 1]
            self.progress.cell(name, index, total, description)

        try:
            papermill.execute_notebook(
                str(notebook), str(out_nb), parameters=self.parameters(rec, notebook),
                engine_name=engine.ENGINE_NAME, kernel_name=self.env.runner.kernel_name,
                execution_timeout=self.env.runner.cell_timeout, progress_bar=False,
                kernel_env={**self.kernel_env, "SHIPBOOK_WORK_DIR": str(work)},
                stdout_file=_LineForwarder(phase, self.progress, self.redactor.text),
                on_cell=on_cell, phase=phase, cwd=str(self.notebook_dir))
        except PapermillExecutionError as exc:
            error = f"{exc.ename}: {exc.evalue}"
            infra = exc.ename in INFRA_ERRORS
        except DeadKernelError as exc:
            error, infra = f"the kernel died ({exc})", True
        except CellTimeoutError:  # its message previews the cell over several lines: one line is enough
            error, infra = f"CellTimeoutError: the cell did not finish within {self.env.runner.cell_timeout}s " \
                "(runner.cell_timeout)", True
        except (TimeoutError, RuntimeError) as exc:  # kernel start failures
            error, infra = f"{type(exc).__name__}: {_first_line(str(exc))}", True
        try:
            outcome = self._finish_phase(rec, entry, phase, work, out_nb, stem, error, cell_name, infra,
                                         started[0] if started else None)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.progress.phase_end(phase, outcome.status, outcome.verdict, time.monotonic() - t0,
                                _detail(outcome))
        return outcome

    def _finish_phase(self, rec: audit.RunRecord, entry: dict, phase: str, work: Path, out_nb: Path,
                      stem: str, error: str | None, cell_name: str, infra: bool = False,
                      last_started: int | None = None) -> PhaseOutcome:
        files: dict[str, str] = {}
        if out_nb.is_file():
            nb = nbformat.read(str(out_nb), as_version=4)
            if error and not cell_name:
                cell_name = _failed_cell(nb, last_started)
            target = rec.dir / out_nb.name
            self.redactor.write_notebook(target, nb)
            files[target.name] = audit.sha256_file(target)
            title = f"{rec.data['version']} {phase} — {rec.data['env']}"
            lang = render.page_language(nb, self.env.lang or "en")
            for path in render.render_notebook(nb, rec.dir, stem, self.redactor, title, lang).values():
                files[path.name] = audit.sha256_file(path)
        res = phase_result.read(work)
        raw = work / phase_result.RESULT_FILE
        if raw.is_file():  # the verdict as the notebook reported it, kept beside the notebook (redacted, hashed)
            kept = rec.dir / f"{stem}.result.json"
            try:
                data = self.redactor.json(json.loads(raw.read_text(encoding="utf-8")))
                atomic_write_text(kept, json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True))
                files[kept.name] = audit.sha256_file(kept)
            except ValueError as exc:
                log.warning("%s: unreadable result (%s); not kept", raw, exc)
        # what reaches the terminal and the exception text is masked like what reaches runs/
        error = self.redactor.text(error) if error else error
        blocking = self.redactor.json(res.blocking) if res else []
        verdict = res.verdict if res else None
        if blocking:
            status = "blocked"
        elif error:
            status = "failed"
        elif res is None:
            status, error = "failed", "the notebook reported no result (shipbook.result.report was not called)"
        else:
            status = "succeeded"
        if status == "failed":
            cell_name = cell_name or "?"
            entry["cell"] = cell_name
        entry.update(status=status, verdict=verdict, finished=clock.now_iso(), files=files,
                     error=error if status == "failed" else None, blocking=blocking,
                     checks=[{"id": c.get("id"), "verdict": c.get("verdict"), "summary": c.get("summary", "")}
                             for c in (res.checks if res else [])])
        if res:
            rec.data.setdefault("facts", {}).update(res.facts)
        rec.save(self.redactor)
        return PhaseOutcome(phase, status, verdict, blocking, entry["error"], files, cell_name,
                            infra=infra and status == "failed")

    # ------------------------------------------------------------------ the whole run

    def run(self, rec: audit.RunRecord, phases: list[str], on_phase_done: Callable[[PhaseOutcome], None]
            | None = None) -> audit.RunRecord:
        """Run `phases` in order; stop at the first that does not succeed and raise its error."""
        rec.data.update(status="running", finished=None)
        rec.save(self.redactor)
        failure: ShipbookError | None = None
        try:
            for phase in phases:
                outcome = self.run_phase(rec, phase)
                if on_phase_done:
                    on_phase_done(outcome)
                recommendation = rec.data.get("facts", {}).get("recommendation") if phase == "verify" else None
                if outcome.status == "blocked" and recommendation == "ROLLBACK":
                    failure = self._on_rollback(rec, outcome, phases[phases.index(phase) + 1:], on_phase_done)
                    break
                if outcome.status == "blocked":
                    failure = GateError(phase, [phase_result.Check(b.get("id", ""), b.get("verdict", ""),
                                                            b.get("summary", "")) for b in outcome.blocking])
                    break
                if outcome.status == "succeeded" and recommendation == "HOLD":
                    failure = self._on_hold(rec)
                    break
                if outcome.status == "failed":
                    nb = rec.dir / rec.phase(phase)["notebook"]
                    ename, _, evalue = (outcome.error or "").partition(": ")
                    if ename in INPUT_ERRORS:  # bad input found by the notebook: exit 2
                        failure = InputError(f"phase {phase}", evalue)
                    elif outcome.infra:  # the phase could not run: exit 3
                        failure = PhaseInfraError(phase, outcome.cell or "?", outcome.error or "failed", str(nb))
                    else:
                        failure = PhaseError(phase, outcome.cell or "?", outcome.error or "failed", str(nb))
                    break
        except BaseException:  # Ctrl-C or an internal error: the record must not stay "running"
            rec.data["status"] = "failed"
            for p in rec.data["phases"]:
                if p["status"] == "running":
                    p.update(status="failed", finished=clock.now_iso(), error="interrupted")
            self._close(rec)
            raise
        if failure is None:
            rec.data["status"] = "succeeded"
        elif rec.data.get("status") != "rolled-back":
            rec.data["status"] = "blocked" if isinstance(failure, GateError) else "failed"
        self._close(rec)
        if failure:
            raise failure
        return rec

    def _commands(self, rec: audit.RunRecord) -> tuple[str, str]:
        where = f"VERSION={rec.data['version']} ENV={rec.data['env']}"
        return f"make rollback {where}", f"make report {where}"

    def _on_rollback(self, rec: audit.RunRecord, verify: PhaseOutcome, rest: list[str],
                     on_phase_done: Callable[[PhaseOutcome], None] | None) -> ShipbookError:
        """Verify recommends ROLLBACK: roll back now (auto_rollback) or say exactly how to."""
        facts = rec.data.get("facts", {})
        reasons = "; ".join(facts.get("rollback_reasons") or []) or "see the verify notebook"
        blocking = [phase_result.Check(b.get("id", ""), b.get("verdict", ""), b.get("summary", ""))
                    for b in verify.blocking]
        rollback_cmd, _ = self._commands(rec)
        if not self.env.auto_rollback:
            return GateError("verify", blocking,
                             f"verify recommends ROLLBACK: {reasons}. Roll back with: {rollback_cmd}")
        try:
            rec.phase("rollback")
        except KeyError:
            rec.add_phase("rollback", PHASES["rollback"], after="verify")
        rec.save(self.redactor)
        outcome = self.run_phase(rec, "rollback")
        if on_phase_done:
            on_phase_done(outcome)
        if outcome.status != "succeeded":
            detail = outcome.error or ", ".join(str(b.get("id")) for b in outcome.blocking)
            return GateError("rollback", blocking,
                             f"verify recommended ROLLBACK ({reasons}) and the automatic rollback did not succeed: "
                             f"{detail}. See the rollback notebook; retry with: {rollback_cmd}")
        rec.data["status"] = "rolled-back"
        if "report" in rest:  # the completion report records what happened, rollback included
            report = self.run_phase(rec, "report")
            if on_phase_done:
                on_phase_done(report)
        facts = rec.data.get("facts", {})
        return GateError("verify", blocking, f"verify recommended ROLLBACK ({reasons}); rolled back to "
                         f"{facts.get('rolled_back_to') or rec.data.get('previous_version')} with tag "
                         f"{facts.get('rollback_tag', '?')}")

    def _on_hold(self, rec: audit.RunRecord) -> ShipbookError:
        """Verify cannot tell: a person decides; the pipeline does not guess."""
        reasons = "; ".join(rec.data.get("facts", {}).get("hold_reasons") or []) or "see the verify notebook"
        rollback_cmd, report_cmd = self._commands(rec)
        return GateError("verify", [phase_result.Check("verify.decision", "warn", reasons)],
                         f"verify is inconclusive (HOLD): {reasons}. A person decides: proceed with `{report_cmd}` "
                         f"or roll back with `{rollback_cmd}`")

    def _close(self, rec: audit.RunRecord) -> None:
        rec.data["finished"] = clock.now_iso()
        rec.save(self.redactor)
        rec.seal(self.runs_root)
        runs_index.write_index(self.runs_root, self.redactor)


def _failed_cell(nb: Any, last_started: int | None = None) -> str:
    """The cell papermill marked failed; else (a timeout, a dead kernel: it marks that cell completed) the last
    cell that started."""
    for i, cell in enumerate(nb.cells):
        if cell.get("metadata", {}).get("papermill", {}).get("status") in ("failed", "running"):
            return f"{cell.get('execution_count') or i} ({engine.describe(cell, i)})"
    if last_started is not None and 0 <= last_started < len(nb.cells):
        cell = nb.cells[last_started]
        return f"{cell.get('execution_count') or last_started} ({engine.describe(cell, last_started)})"
    return "?"


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def _detail(o: PhaseOutcome) -> str:
    if o.status == "blocked":
        return "blocked by " + ", ".join(f"{b.get('id')} ({b.get('verdict')})" for b in o.blocking)
    if o.status == "failed":
        return f"cell {o.cell}: {o.error}"
    return ""


def available_phases(requested: tuple[str, ...], notebook_dir: Path = NOTEBOOK_DIR) -> list[str]:
    """The requested phases whose notebooks exist (phases land one issue at a time)."""
    out = []
    for p in requested:
        if (notebook_dir / PHASES[p]).is_file():
            out.append(p)
        else:
            log.warning("phase %s has no notebook yet (%s): skipped", p, PHASES[p])
    return out
