"""Benchmark of the AWS twin: process start -> /_sandbox/health 200 -> seeded, and its memory.

    .venv/bin/python bench/bench_aws_twin.py [--runs 3]

Each run starts `python -m shipbook.sandbox.aws_twin` on a free loopback port with a fresh state
directory, waits for the health endpoint, seeds the demo stack, then reads the process's resident
memory (VmRSS) and stops it by pid. Prints the median of the runs beside the sandbox's budget
(the whole sandbox: ready in under 10 s, under 600 MB).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 10.0
TARGET_MB = 600.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident set size of `pid` in MB (Linux /proc; psutil where /proc is missing)."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_sandbox/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def one_run() -> dict[str, float]:
    from shipbook.sandbox.aws_twin import seed

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="bench-aws-twin-") as state:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "shipbook.sandbox.aws_twin", "--port", str(port), "--state-dir", state,
             "--log-level", "WARNING"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            while not healthy(url):
                if process.poll() is not None or time.monotonic() - started > 120:
                    raise SystemExit(f"the twin did not start (exit code {process.poll()})")
                time.sleep(0.02)
            health = time.monotonic() - started
            seed.seed(url)
            ready = time.monotonic() - started
            memory = rss_mb(process.pid)
        finally:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
    return {"health": health, "seed": ready - health, "ready": ready, "rss": memory}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    rows = [
        ("start -> health 200 (s)", "health", None),
        ("seed (s)", "seed", None),
        ("start -> seeded, ready (s)", "ready", f"< {TARGET_SECONDS:.0f} s (whole sandbox)"),
        ("RSS after seed (MB)", "rss", f"< {TARGET_MB:.0f} MB (whole sandbox)"),
    ]
    print(f"AWS twin benchmark, median of {args.runs} runs (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print(f"{'metric':<28} {'median':>8}   {'runs':<24} target")
    for label, key, target in rows:
        values = [r[key] for r in runs]
        shown = ", ".join(f"{v:.2f}" if key != "rss" else f"{v:.0f}" for v in values)
        median = statistics.median(values)
        print(f"{label:<28} {median:>8.2f}   {shown:<24} {target or ''}")
    ready = statistics.median(r["ready"] for r in runs)
    rss = statistics.median(r["rss"] for r in runs)
    verdict = "within" if ready < TARGET_SECONDS and rss < TARGET_MB else "OVER"
    print(f"verdict: the twin alone is {verdict} the whole sandbox's budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
