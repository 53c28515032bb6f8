"""Sandbox start-up: time from `sandbox up` to ready (seeded, v0.9.0 serving, metrics flowing)
and the memory of all the sandbox's processes together (the twin, the GitHub twin, the
runtime and the app processes it started). Median of N starts (default 3) in a private root.

    .venv/bin/python bench/bench_sandbox.py [--runs 3]

Targets (issue 3): ready in under 10 s, under 600 MB.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import boto3
from shipbook.sandbox.lifecycle import PROCESSES, Sandbox

TARGET_SECONDS = 10.0
TARGET_MB = 600.0


def rss_tree_mb(pid: int) -> float:
    """RSS of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
        todo += children.get(p, [])
    return total / 1024


def metrics_flowing(aws_url: str, timeout: float = 30) -> float:
    """Seconds until the traffic generator's RequestCount shows up in CloudWatch."""
    cw = boto3.client("cloudwatch", endpoint_url=aws_url, region_name="ap-northeast-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cw.list_metrics(Namespace="AWS/ApplicationELB", MetricName="RequestCount")["Metrics"]:
            return time.monotonic() - t0
        time.sleep(0.2)
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    ready, mem = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            sb = Sandbox(Path(d) / ".sandbox")
            t0 = time.monotonic()
            try:
                state = sb.up()
                extra = metrics_flowing(state["endpoints"]["aws_url"])
                ready.append(time.monotonic() - t0)
                time.sleep(2)  # steady state: traffic flowing, app warmed
                mem.append(sum(rss_tree_mb(sb.pid(n)) for n in PROCESSES if sb.pid(n)))
                print(f"  run: ready {ready[-1]:.1f}s (metrics {extra:.1f}s after up), {mem[-1]:.0f} MB",
                      file=sys.stderr)
            finally:
                sb.down()
    r, m = statistics.median(ready), statistics.median(mem)
    print(f"sandbox start-up, median of {args.runs}")
    print(f"{'measure':<40} {'result':>10} {'target':>10}  met")
    met_r, met_m = ("yes" if r <= TARGET_SECONDS else "NO"), ("yes" if m <= TARGET_MB else "NO")
    print(f"{'sandbox up -> ready + metrics (s)':<40} {r:>10.1f} {TARGET_SECONDS:>10.1f}  {met_r}")
    print(f"{'memory of all sandbox processes (MB)':<40} {m:>10.0f} {TARGET_MB:>10.0f}  {met_m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
