"""Per-process import time of shipbook modules and of each phase kernel's first cell, beside a baseline commit.

Each measurement is a fresh `python -c` process (as every CLI call and every papermill kernel is)
timing the imports with `time.perf_counter`; the library is taken from `lib/` of the working tree,
or of a baseline commit checked out into a temporary git worktree (`--baseline-ref`), via
PYTHONPATH ahead of the editable install. Runs alternate baseline / current so machine load
falls on both. What a kernel's first cell imports is read from each notebook's first code cell
after the parameters cell (its `from shipbook import …` line).

    .venv/bin/python bench/bench_imports.py [--runs 7] [--baseline-ref f64a08a]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("shipbook.redact", "shipbook.config", "shipbook.cli")


def first_cell_imports(notebook: Path) -> str:
    """The `from shipbook import …` line of the notebook's set-up cell."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if cell["cell_type"] != "code" or "parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        for line in "".join(cell["source"]).splitlines():
            if re.match(r"from shipbook import ", line):
                return line
    return ""


def time_import(lib: Path, statement: str) -> float:
    code = f"import time; t=time.perf_counter(); {statement}; print(time.perf_counter()-t)"
    env = {**os.environ, "PYTHONPATH": str(lib)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=lib.parent)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--baseline-ref", default="f64a08a", help="the commit to compare with (default: before issue 12)")
    args = ap.parse_args()
    statements = {f"import {m}": f"import {m}" for m in MODULES}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        line = first_cell_imports(nb)
        if line:
            statements[f"{nb.stem}: {line}"] = line
    with tempfile.TemporaryDirectory(prefix="shipbook-bench-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(base), args.baseline_ref], cwd=ROOT,
                       check=True)
        try:
            rows = []
            for label, stmt in statements.items():
                before, after = [], []
                for _ in range(args.runs):
                    try:
                        before.append(time_import(base / "lib", stmt))
                    except subprocess.CalledProcessError:
                        before.append(float("nan"))  # the module did not exist at the baseline
                    after.append(time_import(ROOT / "lib", stmt))
                rows.append((label, statistics.median(before), statistics.median(after)))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    print(f"per-process import time, median of {args.runs} fresh processes (python {sys.version.split()[0]}); "
          f"baseline {args.baseline_ref}")
    print(f"{'what is imported':<78} {'baseline ms':>11} {'now ms':>8} {'ratio':>6}")
    for label, b, a in rows:
        ratio = f"{a / b:.2f}x" if b == b and b > 0 else "—"
        print(f"{label[:78]:<78} {b * 1000:>11.0f} {a * 1000:>8.0f} {ratio:>6}")


if __name__ == "__main__":
    main()
