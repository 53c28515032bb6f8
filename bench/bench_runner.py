"""The runner's cost per phase against what a user would script by hand.

shipbook: one phase through `Runner.run_phase` (IPC kernel, parameters, redaction, full and
stakeholder HTML in-process, run record) in a long-lived process, as `make release` runs phases.
Baseline: `papermill in.ipynb out.ipynb -p …` then `jupyter nbconvert --to html out.ipynb`,
two CLI processes, on the same notebook. Medians of N runs (default 5). Target: <= 0.6x.

    .venv/bin/python bench/bench_runner.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shipbook.config import Environment
from shipbook.pipeline import Progress, Runner, RunOptions
from shipbook.redact import Redactor

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "notebooks" / "ok.ipynb"
BIN = Path(sys.executable).parent
TARGET = 0.6


def bench_shipbook(tmp: Path, runs: int) -> list[float]:
    nbdir = tmp / "notebooks"
    nbdir.mkdir()
    shutil.copy(FIXTURE, nbdir / "01_precheck.ipynb")
    env = Environment(name="bench", kind="aws")
    runner = Runner(env, Redactor(["a-planted-secret-value"]), tmp / "runs", nbdir, Progress())
    times = []
    for _ in range(runs + 1):  # the first run warms imports, as the first phase of a release does
        rec = runner.new_record(RunOptions(version="v1.0.0"), ["precheck"])
        t0 = time.perf_counter()
        out = runner.run_phase(rec, "precheck")
        rec.save(runner.redactor)
        rec.seal(runner.runs_root)
        times.append(time.perf_counter() - t0)
        assert out.status == "succeeded", out
    return times[1:]


def bench_baseline(tmp: Path, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        out = tmp / f"out{i}.ipynb"
        t0 = time.perf_counter()
        subprocess.run([str(BIN / "papermill"), str(FIXTURE), str(out), "-p", "version", "v1.0.0", "--log-level",
                        "ERROR", "--no-progress-bar"], check=True, capture_output=True)
        subprocess.run([str(BIN / "jupyter"), "nbconvert", "--to", "html", str(out)], check=True,
                       capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ours = bench_shipbook(tmp, args.runs)
        base = bench_baseline(tmp, args.runs)
        files = sorted(p.name for p in (tmp / "runs").rglob("*") if p.is_file())
    m_ours, m_base = statistics.median(ours), statistics.median(base)
    ratio = m_ours / m_base
    print(f"runner cost per phase, median of {args.runs} (fixture notebook {FIXTURE.name})")
    print(f"{'what':<62} {'median s':>9} {'min s':>7} {'max s':>7}")
    print(f"{'baseline: papermill CLI + jupyter nbconvert --to html':<62} {m_base:>9.2f} {min(base):>7.2f} "
          f"{max(base):>7.2f}")
    print(f"{'shipbook: run_phase (kernel, params, redact, 2 HTML, record)':<62} {m_ours:>9.2f} {min(ours):>7.2f} "
          f"{max(ours):>7.2f}")
    print(f"ratio shipbook/baseline: {ratio:.2f}x (target <= {TARGET}x) -> {'MET' if ratio <= TARGET else 'MISSED'}")
    print(f"files written per phase by shipbook: {', '.join(sorted(set(files) - {'run.json', 'ledger.jsonl'}))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
