"""The demo app's own cost: per-request latency of the release (v1.0.0, main of the healthy
history) beside the running version (v0.9.0), both served the way the sandbox serves a task
(`manage.py runserver --noreload`, migrated SQLite data), on the sandbox traffic model's mix.

    .venv/bin/python bench/bench_demo_release.py [--requests 4000] [--release main]

Requests alternate between the two servers in a random order, one connection each, so the
machine's load falls on both sides. The healthy release must not be a latency regression in
itself, or the verify judge (latency tolerance +20% on p50) would be right to roll it back.
Target: the release's overall p50 within +5% of v0.9.0's.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shipbook.config import VerifySection
from shipbook.sandbox import repo_builder
from shipbook.sandbox.runtime.tasks import free_port
from shipbook.sandbox.runtime.traffic import MIX, PRODUCT_IDS

TARGET_SHIFT = 0.05
WARM_UP = 200


def serve(repo: Path, ref: str, root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Extract `ref`, migrate its own SQLite data and start its server; (process, port)."""
    tree = root / ref.replace("/", "_")
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", ref], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    env = {"PATH": os.environ["PATH"], "SECRET_KEY": "bench-" + "k" * 44, "ALLOWED_HOSTS": "*",
           "DATABASE_URL": f"sqlite:///{tree / 'db.sqlite3'}", "APP_VERSION": ref, "LOG_LEVEL": "INFO",
           "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=tree, env=env, check=True,
                   capture_output=True)
    port = free_port()
    process = subprocess.Popen([sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
                               cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            get(port, "/health/")
            return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{ref}: the server did not answer on port {port} within 30 s")


def get(port: int, path: str) -> float:
    """Milliseconds for one GET on a new connection, as the sandbox's traffic sends it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    started = time.perf_counter()
    try:
        connection.request("GET", path, headers={"Host": "demo.example.com"})
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise SystemExit(f"GET {path} on port {port} answered {response.status}")
    return (time.perf_counter() - started) * 1000


def measure(ports: dict[str, int], requests: int, seed: int) -> dict[str, dict[str, list[float]]]:
    """Per side, per path template: latencies in ms (the first WARM_UP rounds dropped)."""
    rnd = random.Random(seed)  # nosec B311 - shapes traffic, protects nothing
    weights, templates = zip(*MIX, strict=True)
    results: dict[str, dict[str, list[float]]] = {side: {} for side in ports}
    for i in range(WARM_UP + requests):
        template = rnd.choices(templates, weights=weights)[0]
        path = template.format(id=rnd.choice(PRODUCT_IDS))
        sides = list(ports)
        rnd.shuffle(sides)
        for side in sides:
            ms = get(ports[side], path)
            if i >= WARM_UP:
                results[side].setdefault(template, []).append(ms)
    return results


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--release", default="main", help="the release's ref in the healthy history (main = v1.0.0)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        root = Path(tmp)
        repo_builder.build(root / "origin.git", root / "work")
        servers = {"v0.9.0": serve(root / "work", repo_builder.PREVIOUS_TAG, root),
                   "release": serve(root / "work", args.release, root)}
        try:
            results = measure({side: port for side, (_, port) in servers.items()}, args.requests, args.seed)
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=10)
    base, new = results["v0.9.0"], results["release"]
    print(f"demo app latency per request, v0.9.0 (baseline) beside {args.release} "
          f"({args.requests} requests each, python {sys.version.split()[0]})")
    print(f"{'path':18s} {'n':>5s} {'p50 v0.9.0':>11s} {'p50 release':>12s} {'shift':>7s} "
          f"{'p95 v0.9.0':>11s} {'p95 release':>12s}")
    for _, template in MIX:
        a, b = base[template], new[template]
        shift = statistics.median(b) / statistics.median(a) - 1
        print(f"{template:18s} {len(b):5d} {statistics.median(a):11.3f} {statistics.median(b):12.3f} "
              f"{shift:+7.1%} {p95(a):11.3f} {p95(b):12.3f}")
    all_a = [ms for values in base.values() for ms in values]
    all_b = [ms for values in new.values() for ms in values]
    shift = statistics.median(all_b) / statistics.median(all_a) - 1
    print(f"{'all (the mix)':18s} {len(all_b):5d} {statistics.median(all_a):11.3f} {statistics.median(all_b):12.3f} "
          f"{shift:+7.1%} {p95(all_a):11.3f} {p95(all_b):12.3f}")
    tolerance = VerifySection().latency_tolerance
    verdict = "met" if shift <= TARGET_SHIFT else "NOT met"
    print(f"target: overall p50 shift <= {TARGET_SHIFT:+.0%} (the judge's tolerance is {tolerance:+.0%}): {verdict}")
    return 0 if shift <= TARGET_SHIFT else 1


if __name__ == "__main__":
    sys.exit(main())
