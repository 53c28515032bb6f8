"""The verify judge against a fixed threshold and a plain Mann-Whitney test, on the twin's traffic model.

Window pairs (baseline, canary) are drawn from a model of what the sandbox publishes
(`shipbook.sandbox.runtime.traffic` / `telemetry`): Poisson arrivals at 15 requests/s, the
endpoint mix of `traffic.MIX`, per-request latencies from a two-part lognormal mixture with a
per-second common factor (fitted to 144 s of the twin's 1-second p50/p95/p99 datapoints; the
fit is printed beside the twin's numbers), 1-second periods whose p50/p95/p99 are numpy's
linear percentiles (as the twin computes them), no 5xx at baseline (as the twin's healthy
app), CPU ~ N(20, 5.8) % and memory 8.72 ± 0.03 % per second. Windows are the sandbox's
(`shipbook.verify.settings.SANDBOX`).

No-change pairs draw both windows from the model; regressions multiply every canary latency
by 1.10/1.25/1.50/2.00, or add 0.5/1/5 points of 5xx to every canary request.

Judges compared:
- this judge (`shipbook.verify.judge.judge`, the sandbox settings);
- a fixed threshold as an Argo Rollouts analysis would write it: canary window p99 latency
  > 1.2 x the baseline window's (and, for 5xx, canary rate > 1.2 x the baseline rate);
- plain Mann-Whitney, Kayenta's classifier without tolerance: any metric's one-sided test on
  the 1-second series (5xx as per-second rates) with p < alpha fails.

    .venv/bin/python bench/bench_judge.py [--pairs 400] [--per-size 200] [--seed 1]

Target: <= 1% false alarms with >= 95% detection at +25% latency and +1 point 5xx.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from shipbook.sandbox.runtime.traffic import MIX
from shipbook.verify import judge as judge_mod
from shipbook.verify.settings import SANDBOX, metric_specs

RPS = 15.0
# Per-request latency model (seconds), fitted to the twin's 1-second percentiles with Nelder-Mead:
# product pages (list + detail: the MIX's first two entries) and the light endpoints.
PRODUCT_MEDIAN, PRODUCT_SIGMA = 3.77e-3, 0.648
LIGHT_MEDIAN, LIGHT_SIGMA = 5.30e-3, 0.118
SECOND_SIGMA = 0.113  # a factor shared by the requests of one second (CPU contention on the machine)
PRODUCT_SHARE = sum(w for w, p in MIX if p.startswith("/products")) / sum(w for w, _ in MIX)
CPU_MEAN, CPU_SD = 20.0, 5.8
MEMORY_MEAN, MEMORY_SD = 8.72, 0.03
# The twin's 1-second datapoints (v0.9.0, healthy, 144 s): quantiles 5/25/50/75/95 in ms.
TWIN = {"p50": (3.19, 3.86, 4.37, 5.24, 6.33), "p95": (5.25, 7.03, 8.53, 10.52, 16.09),
        "p99": (5.88, 7.47, 9.88, 12.66, 19.11)}

LATENCY_SIZES = (0.10, 0.25, 0.50, 1.00)
ERROR_SIZES = (0.005, 0.01, 0.05)
TARGET_FALSE = 0.01
TARGET_DETECT = 0.95


@dataclass
class Window:
    """One window as the judge sees it (1-second rows) and the raw requests the fixed threshold reads."""

    frame: pd.DataFrame
    latencies: np.ndarray
    errors: int
    requests: int


def draw(rng: np.random.Generator, seconds: int, latency_factor: float = 1.0, error_rate: float = 0.0) -> Window:
    counts = rng.poisson(RPS, seconds)
    rows = []
    all_lat = []
    errors = 0
    for n in counts:
        if n == 0:
            rows.append({"latency_p50": np.nan, "latency_p95": np.nan, "latency_p99": np.nan, "requests": 0.0,
                         "errors_5xx": 0.0})
            continue
        product = rng.random(n) < PRODUCT_SHARE
        z = rng.standard_normal(n)
        log_lat = np.where(product, np.log(PRODUCT_MEDIAN) + PRODUCT_SIGMA * z, np.log(LIGHT_MEDIAN) + LIGHT_SIGMA * z)
        lat = np.exp(log_lat + SECOND_SIGMA * rng.standard_normal()) * latency_factor
        e = int(rng.binomial(n, error_rate)) if error_rate else 0
        errors += e
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        rows.append({"latency_p50": p50, "latency_p95": p95, "latency_p99": p99, "requests": float(n),
                     "errors_5xx": float(e)})
        all_lat.append(lat)
    frame = pd.DataFrame(rows)
    frame["cpu"] = np.clip(rng.normal(CPU_MEAN, CPU_SD, seconds), 0, None)
    frame["memory"] = rng.normal(MEMORY_MEAN, MEMORY_SD, seconds)
    return Window(frame, np.concatenate(all_lat) if all_lat else np.array([]), errors, int(counts.sum()))


def this_judge(b: Window, c: Window, specs: list, alpha: float) -> str:
    return judge_mod.judge(b.frame, c.frame, specs, alpha).verdict


def fixed_threshold(b: Window, c: Window) -> str:
    p99_b, p99_c = np.percentile(b.latencies, 99), np.percentile(c.latencies, 99)
    rate_b, rate_c = b.errors / max(b.requests, 1), c.errors / max(c.requests, 1)
    bad = p99_c > 1.2 * p99_b or rate_c > 1.2 * rate_b
    return judge_mod.FAIL if bad else judge_mod.PASS


def plain_mann_whitney(b: Window, c: Window, alpha: float) -> str:
    fb, fc = b.frame.copy(), c.frame.copy()
    for f in (fb, fc):
        f["error_rate"] = f["errors_5xx"] / f["requests"].where(f["requests"] > 0)
    for col in ("latency_p50", "latency_p95", "latency_p99", "error_rate", "cpu", "memory"):
        x, y = fb[col].dropna().to_numpy(), fc[col].dropna().to_numpy()
        if len(x) == 0 or len(y) == 0 or (np.all(x == x[0]) and np.all(y == x[0])):
            continue
        if stats.mannwhitneyu(y, x, alternative="greater").pvalue < alpha:
            return judge_mod.FAIL
    return judge_mod.PASS


def model_check(rng: np.random.Generator) -> pd.DataFrame:
    w = draw(rng, 3000)
    rows = []
    for key in ("p50", "p95", "p99"):
        model = np.percentile(w.frame[f"latency_{key}"].dropna() * 1000, [5, 25, 50, 75, 95])
        rows.append({"1-s datapoint": key, "twin q5/25/50/75/95 (ms)": " / ".join(f"{v:.2f}" for v in TWIN[key]),
                     "model q5/25/50/75/95 (ms)": " / ".join(f"{v:.2f}" for v in model)})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=400, help="no-change window pairs")
    ap.add_argument("--per-size", type=int, default=200, help="window pairs per regression size")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    settings = SANDBOX
    specs = metric_specs(settings)
    alpha = settings.alpha
    bw, cw = settings.baseline_seconds // settings.period, settings.canary_seconds // settings.period
    t0 = time.perf_counter()

    cases: list[tuple[str, float, float, int]] = [("no change", 1.0, 0.0, args.pairs)]
    cases += [(f"latency +{s:.0%}", 1.0 + s, 0.0, args.per_size) for s in LATENCY_SIZES]
    cases += [(f"5xx +{s * 100:g} point{'s' if s != 0.01 else ''}", 1.0, s, args.per_size) for s in ERROR_SIZES]
    rows = []
    inconclusive_no_change = 0
    for name, factor, err, n in cases:
        fails = {"this judge": 0, "fixed threshold": 0, "plain Mann-Whitney": 0}
        unsure = 0
        for _ in range(n):
            b, c = draw(rng, bw), draw(rng, cw, factor, err)
            v = this_judge(b, c, specs, alpha)
            fails["this judge"] += v == judge_mod.FAIL
            unsure += v == judge_mod.INCONCLUSIVE
            fails["fixed threshold"] += fixed_threshold(b, c) == judge_mod.FAIL
            fails["plain Mann-Whitney"] += plain_mann_whitney(b, c, alpha) == judge_mod.FAIL
        if name == "no change":
            inconclusive_no_change = unsure
        rows.append({"case": name, "pairs": n, **{k: v / n for k, v in fails.items()}, "this judge: HOLD": unsure / n})
    table = pd.DataFrame(rows)
    elapsed = time.perf_counter() - t0

    print(f"judge bench: windows {settings.baseline_seconds}s / {settings.canary_seconds}s at {settings.period}s "
          f"periods (the sandbox's), {RPS:g} requests/s, alpha {alpha}, "
          f"latency tolerance {settings.latency_tolerance:.0%}, "
          f"5xx tolerance {settings.error_rate_tolerance * 100:g} point(s); seed {args.seed}; {elapsed:.1f}s")
    print("\ntraffic model against the twin (1-second TargetResponseTime datapoints):")
    print(model_check(np.random.default_rng(args.seed + 1)).to_string(index=False))
    print("\nFAIL rate per case (no change: false alarms; otherwise: detection). Baselines beside this judge:")
    fmt = table.copy()
    for col in ("this judge", "fixed threshold", "plain Mann-Whitney", "this judge: HOLD"):
        fmt[col] = fmt[col].map(lambda v: f"{v:6.1%}")
    print(fmt.to_string(index=False))
    fa = table.loc[table["case"] == "no change", "this judge"].iloc[0]
    d25 = table.loc[table["case"] == "latency +25%", "this judge"].iloc[0]
    d1 = table.loc[table["case"] == "5xx +1 point", "this judge"].iloc[0]
    met = fa <= TARGET_FALSE and d25 >= TARGET_DETECT and d1 >= TARGET_DETECT
    print(f"\ntarget: false alarms <= {TARGET_FALSE:.0%} (got {fa:.1%}), detection >= {TARGET_DETECT:.0%} at "
          f"+25% latency (got {d25:.1%}) and +1 point 5xx (got {d1:.1%}) -> {'MET' if met else 'MISSED'}")
    print(f"no-change pairs judged INCONCLUSIVE (HOLD, a person decides): {inconclusive_no_change}/{args.pairs}")


if __name__ == "__main__":
    main()
