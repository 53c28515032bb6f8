"""The runner's cost per phase against what a user would script by hand, with a breakdown by component.

shipbook: one phase through `Runner.run_phase` (IPC kernel, parameters, redaction, full and
stakeholder HTML in-process, run record) in a long-lived process, as `make release` runs phases;
the first run is a warm-up (the first phase of a release pays the imports and the Jinja templates).
Baseline: `papermill in.ipynb out.ipynb -p …` then `jupyter nbconvert --to html out.ipynb`,
two CLI processes, on the same notebook. shipbook and baseline runs alternate, so load from other
work on the machine falls on both. Medians of N runs (default 5). Target: <= 0.6x per phase.

Breakdown: a second set of shipbook runs with the functions `run_phase` goes through wrapped from
here (module and class attributes patched at bench time, restored afterwards; no library change):
papermill.execute_notebook, nbclient's kernel start / client ready / cleanup, papermill's parameter
inference + injection and per-cell saves, Runner.parameters, Redactor.text/json/notebook,
Redactor.write_notebook, nbformat.read, render.render_notebook, RunRecord.save/seal and
audit.sha256_file. Times are exclusive (a wrapped call inside another one counts for itself only:
redaction inside the HTML render is redaction), so the components add up to the phase; what no
wrapper covers is the "other" row. Each component's median is over the runs.

Notebooks: the real phase notebooks (notebooks/0N_*.ipynb) cannot run here: their cells load an
environment and call AWS and GitHub, which needs the sandbox up (and a release in a given state).
So the ratio is measured on the fixture notebook tests/fixtures/notebooks/ok.ipynb, and, unless
--no-shapes, on a "shape" copy of each real phase notebook: its markdown and parameters cell
verbatim, its import lines kept (the kernel pays the same imports), and each other code cell
replaced by a stand-in output of the kind it shows — a 6-row table, or for a chart cell a 3-panel
figure (~0.14 MB PNG). The stand-ins approximate, not reproduce, a real run's outputs (e.g. the
report phase's large HTML tables are not there).

    .venv/bin/python bench/bench_runner.py [--runs 5] [--no-shapes]
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import nbclient.client
import nbformat
import papermill
import papermill.engines
import papermill.execute
from shipbook import audit, render
from shipbook.config import Environment
from shipbook.phases import PHASES
from shipbook.pipeline import Progress, Runner, RunOptions
from shipbook.redact import Redactor

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "notebooks" / "ok.ipynb"
NOTEBOOKS = ROOT / "notebooks"
BIN = Path(sys.executable).parent
TARGET = 0.6
PARAMS = {"version": "v1.0.0", "env": "bench", "previous_version": "v0.9.0"}

# Components, in the order of a phase; the group is what issue 2 names.
KERNEL_START = "kernel start (spawn -> ready)"
EXECUTE = "cell execution (papermill engine)"
PM_SAVE = "papermill: save notebook per cell"
KERNEL_STOP = "kernel shutdown"
PM_PARAMS = "papermill: infer + inject parameters"
RUNNER_PARAMS = "Runner.parameters (inspect notebook)"
REDACT = "redaction: notebook, run.json, cell output"
REDACT_HTML = "redaction: the two HTML pages"
NB_IO = "notebook: read executed, write redacted"
HTML = "HTML: nbconvert full + stakeholder, write"
HASH = "run record: sha256 of files"
RECORD = "run record: run.json save + ledger seal"
OTHER = "other (work dir, result.json, progress)"
COMPONENTS = [
    ("kernel", KERNEL_START), ("kernel", EXECUTE), ("kernel", PM_SAVE), ("kernel", KERNEL_STOP),
    ("parameters", RUNNER_PARAMS), ("parameters", PM_PARAMS), ("redaction", REDACT), ("redaction", REDACT_HTML),
    ("redaction", NB_IO),
    ("HTML", HTML), ("run record", HASH), ("run record", RECORD), ("", OTHER),
]
EXECUTE_SIDE = (KERNEL_START, EXECUTE, PM_SAVE, KERNEL_STOP, RUNNER_PARAMS, PM_PARAMS)


class Sections:
    """Exclusive wall time per label: a wrapped call nested in another is subtracted from its parent."""

    def __init__(self) -> None:
        self.stack: list[list[Any]] = []  # [label, time spent in wrapped children, start]
        self.totals: dict[str, float] = {}

    def reset(self) -> None:
        self.stack.clear()
        self.totals = {}

    def _enter(self, label: str) -> bool:
        top = self.stack[-1][0] if self.stack else None
        if label == REDACT and top in (HTML, REDACT_HTML):
            label = REDACT_HTML  # what render_notebook redacts: the notebook again and both pages
        if label == top:  # recursion (json -> text -> ...): time the outermost call only
            return False
        self.stack.append([label, 0.0, time.perf_counter()])
        return True

    def _leave(self) -> None:
        label, children, t0 = self.stack.pop()
        elapsed = time.perf_counter() - t0
        self.totals[label] = self.totals.get(label, 0.0) + elapsed - children
        if self.stack:
            self.stack[-1][1] += elapsed

    def wrap(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self._enter(label):
                return fn(*args, **kwargs)
            try:
                return fn(*args, **kwargs)
            finally:
                self._leave()

        return timed


@contextmanager
def instrumented(sections: Sections) -> Iterator[None]:
    """Wrap what `Runner.run_phase` calls, by patching the attributes it looks up; restore on exit."""
    client = nbclient.client.NotebookClient
    targets: list[tuple[Any, str, str]] = [
        (papermill, "execute_notebook", EXECUTE),
        # papermill's client runs the kernel through nbclient's sync entry points
        (client, "start_new_kernel", KERNEL_START),
        (client, "start_new_kernel_client", KERNEL_START),
        (client, "_cleanup_kernel", KERNEL_STOP),
        (papermill.execute, "_infer_parameters", PM_PARAMS),
        (papermill.execute, "parameterize_notebook", PM_PARAMS),
        (papermill.engines, "write_ipynb", PM_SAVE),
        (papermill.execute, "write_ipynb", PM_SAVE),
        (Runner, "parameters", RUNNER_PARAMS),
        (Redactor, "text", REDACT),
        (Redactor, "json", REDACT),
        (Redactor, "notebook", REDACT),
        (Redactor, "write_notebook", NB_IO),
        (nbformat, "read", NB_IO),
        (render, "render_notebook", HTML),
        (audit, "sha256_file", HASH),
        (audit.RunRecord, "save", RECORD),
        (audit.RunRecord, "seal", RECORD),
    ]
    with ExitStack() as stack:
        for owner, name, label in targets:
            stack.enter_context(mock.patch.object(owner, name, sections.wrap(getattr(owner, name), label)))
        yield


# ------------------------------------------------------------------ notebooks

SHAPE_SETUP = ("%matplotlib inline\nimport numpy as _np\nimport pandas as _pd\n"
               "from matplotlib.figure import Figure as _Fig\n")
SHAPE_TABLE = ("_pd.DataFrame({'check': [f'{_n}.item{i}' for i in range(6)], 'verdict': ['pass'] * 6,\n"
               "              'summary': ['a sentence of the kind a check writes, with a value 12.3 ms'] * 6})")
SHAPE_CHART = ("_fig = _Fig(figsize=(10, 7), dpi=100)\n"
               "_rng = _np.random.default_rng(1)\n"
               "for _ax in _fig.subplots(3, 1):\n"
               "    _ax.plot(_rng.normal(10, 2, 600))\n"
               "_fig")
SHAPE_REPORT = ("from shipbook import result as _result\n"
                "_result.report('shape', [{'id': 'shape.ok', 'verdict': 'pass', 'summary': 'stand-in outputs'}])\n")
IMPORT_LINE = re.compile(r"^(from \S+ import .+|import .+|%matplotlib .+)$")


def shape_of(src: Path, dest: Path) -> int:
    """Write the shape copy of a real phase notebook (see the module docstring); returns its cell count."""
    nb = nbformat.read(str(src), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
    for n, cell in enumerate(code):
        lines = cell.source.splitlines()
        keep = [ln for ln in lines if ln.startswith("# papermill_description=") or IMPORT_LINE.match(ln)]
        keep = [ln for ln in keep if ln != "%matplotlib inline"]
        body = SHAPE_CHART if "chart" in cell.source.lower() else SHAPE_TABLE.replace("{_n}", f"cell{n}")
        head = SHAPE_SETUP if n == 0 else ""
        tail = SHAPE_REPORT if n == len(code) - 1 else ""
        cell.source = "\n".join(keep) + "\n" + head + tail + body
    nbformat.write(nb, str(dest))
    return len(nb.cells)


# ------------------------------------------------------------------ one run each


def shipbook_once(runner: Runner, phase: str, sections: Sections | None = None) -> float:
    rec = runner.new_record(RunOptions(version=PARAMS["version"], previous_version=PARAMS["previous_version"]),
                            [phase])
    if sections is not None:  # the record's creation is not part of the phase
        sections.reset()
    t0 = time.perf_counter()
    out = runner.run_phase(rec, phase)
    rec.save(runner.redactor)
    rec.seal(runner.runs_root)
    elapsed = time.perf_counter() - t0
    assert out.status == "succeeded", out
    return elapsed


def baseline_once(notebook: Path, out: Path) -> tuple[float, float]:
    """(papermill CLI seconds, nbconvert CLI seconds)."""
    params = [a for k, v in PARAMS.items() for a in ("-p", k, v)]
    t0 = time.perf_counter()
    subprocess.run([str(BIN / "papermill"), str(notebook), str(out), *params, "--log-level", "ERROR",
                    "--no-progress-bar", "--cwd", str(notebook.parent)], check=True, capture_output=True)
    t1 = time.perf_counter()
    subprocess.run([str(BIN / "jupyter"), "nbconvert", "--to", "html", str(out)], check=True, capture_output=True)
    return t1 - t0, time.perf_counter() - t1


def measure(runner: Runner, phase: str, notebook: Path, tmp: Path, runs: int, warmup: bool) -> dict[str, Any]:
    """Alternating shipbook and baseline runs, then instrumented shipbook runs for the breakdown."""
    if warmup:
        shipbook_once(runner, phase)
    ours, base_pm, base_nc = [], [], []
    for i in range(runs):
        ours.append(shipbook_once(runner, phase))
        pm, nc = baseline_once(notebook, tmp / f"baseline-{phase}-{i}.ipynb")
        base_pm.append(pm)
        base_nc.append(nc)
    sections = Sections()
    parts: list[dict[str, float]] = []
    totals = []
    with instrumented(sections):
        for _ in range(runs):
            total = shipbook_once(runner, phase, sections)
            part = dict(sections.totals)
            part[OTHER] = total - sum(part.values())
            parts.append(part)
            totals.append(total)
    return {"ours": ours, "base": [a + b for a, b in zip(base_pm, base_nc, strict=True)], "base_pm": base_pm,
            "base_nc": base_nc, "parts": parts, "instrumented": totals}


# ------------------------------------------------------------------ tables

def med(values: list[float]) -> float:
    return statistics.median(values)


def print_breakdown(title: str, m: dict[str, Any]) -> None:
    parts, total = m["parts"], med(m["instrumented"])
    print(f"\n{title}: where a phase's time goes (instrumented runs, median of {len(parts)}; "
          f"phase median {total * 1000:.0f} ms)")
    print(f"{'group':<11} {'component':<42} {'median ms':>10} {'share':>7}")
    for group, label in COMPONENTS:
        ms = med([p.get(label, 0.0) for p in parts]) * 1000
        print(f"{group:<11} {label:<42} {ms:>10.1f} {ms / (total * 1000):>7.1%}")
    print(f"{'':<11} {'phase (run_phase + save + seal)':<42} {total * 1000:>10.1f} {1:>7.0%}")
    print("(component medians are taken separately, so they need not add up to the phase median exactly)")


def print_beside(title: str, m: dict[str, Any]) -> float:
    ours, base, parts = m["ours"], m["base"], m["parts"]
    ratio = med(ours) / med(base)
    ex = med([sum(p.get(k, 0.0) for k in EXECUTE_SIDE) for p in parts])
    html = med([p.get(HTML, 0.0) for p in parts])
    extra = med([sum(p.get(k, 0.0) for k in (REDACT, REDACT_HTML, NB_IO, HASH, RECORD, OTHER)) for p in parts])
    print(f"\n{title}: shipbook beside the hand-scripted baseline, median of {len(ours)} alternating runs")
    print(f"{'stage':<54} {'baseline ms':>12} {'shipbook ms':>12} {'ratio':>7}")
    print(f"{'execute: papermill CLI | kernel + parameters in-process':<54} {med(m['base_pm']) * 1000:>12.0f} "
          f"{ex * 1000:>12.0f} {ex / med(m['base_pm']):>6.2f}x")
    print(f"{'HTML: nbconvert CLI (1 view) | in-process (2 views)':<54} {med(m['base_nc']) * 1000:>12.0f} "
          f"{html * 1000:>12.0f} {html / med(m['base_nc']):>6.2f}x")
    print(f"{'redaction, notebook write, run record, other | none':<54} {'-':>12} {extra * 1000:>12.0f}")
    print(f"{'whole phase (uninstrumented runs)':<54} {med(base) * 1000:>12.0f} {med(ours) * 1000:>12.0f} "
          f"{ratio:>6.2f}x")
    print(f"  baseline min/max {min(base):.2f}/{max(base):.2f} s; shipbook min/max {min(ours):.2f}/{max(ours):.2f} s; "
          f"instrumented shipbook median {med(m['instrumented']):.2f} s")
    print(f"ratio shipbook/baseline: {ratio:.2f}x (target <= {TARGET}x) -> {'MET' if ratio <= TARGET else 'MISSED'}")
    return ratio


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-shapes", action="store_true", help="only the fixture notebook")
    args = ap.parse_args()
    print(f"runner cost per phase, medians of {args.runs} (python {sys.version.split()[0]}, "
          f"papermill {papermill.__version__})")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        nbdir = tmp / "notebooks"
        nbdir.mkdir()
        shutil.copy(FIXTURE, nbdir / PHASES["precheck"])
        env = Environment(name="bench", kind="aws")
        runner = Runner(env, Redactor(["a-planted-secret-value"]), tmp / "runs", nbdir, Progress())
        fixture = measure(runner, "precheck", nbdir / PHASES["precheck"], tmp, args.runs, warmup=True)
        files = sorted({p.name for p in (tmp / "runs").rglob("*") if p.is_file()} - {"run.json", "ledger.jsonl"})
        print_breakdown(f"fixture notebook {FIXTURE.name}", fixture)
        print_beside(f"fixture notebook {FIXTURE.name}", fixture)
        print(f"files written per phase by shipbook: {', '.join(files)}")
        if args.no_shapes:
            return 0
        rows = []
        for phase, name in PHASES.items():
            cells = shape_of(NOTEBOOKS / name, nbdir / name)
            m = measure(runner, phase, nbdir / name, tmp, args.runs, warmup=True)
            rows.append((phase, name, cells, m))
            print_breakdown(f"shape of {name}", m)
    print("\nper phase, shape copies of the real notebooks (stand-in outputs), uninstrumented medians:")
    print(f"{'notebook':<20} {'cells':>5} {'baseline s':>11} {'shipbook s':>11} {'ratio':>7} "
          f"{'kernel':>7} {'params':>7} {'redact':>7} {'HTML':>7} {'record':>7}  target")
    groups = {g: [label for gg, label in COMPONENTS if gg == g] for g in ("kernel", "parameters", "redaction", "HTML",
                                                                          "run record")}
    summary = {}
    for phase, name, cells, m in rows:
        ratio = med(m["ours"]) / med(m["base"])
        total = med(m["instrumented"])
        shares = [med([sum(p.get(k, 0.0) for k in labels) for p in m["parts"]]) / total for labels in groups.values()]
        print(f"{name:<20} {cells:>5} {med(m['base']):>11.2f} {med(m['ours']):>11.2f} {ratio:>6.2f}x "
              + " ".join(f"{s:>7.0%}" for s in shares) + f"  {'MET' if ratio <= TARGET else 'MISSED'}")
        summary[phase] = round(ratio, 3)
    print("(kernel .. record: share of the phase's instrumented median, per group of the breakdown)")
    print(json.dumps({"ratios": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
