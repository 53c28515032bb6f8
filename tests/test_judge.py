"""The judge: a pure function over DataFrames. One test per way canary analysis is known to mislead."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from shipbook.config import VerifySection
from shipbook.errors import InputError
from shipbook.verify import judge as J
from shipbook.verify.settings import SANDBOX, check, metric_specs

SPECS = metric_specs(SANDBOX)
ALPHA = SANDBOX.alpha


def window(rng: np.random.Generator, n: int = 120, latency: float = 1.0, error_rate: float = 0.0,
           rps: float = 15.0, cpu: float = 20.0) -> pd.DataFrame:
    """1-second rows like the twin's: latency percentiles, requests, 5xx, CPU, memory."""
    base = rng.lognormal(np.log(4.5e-3), 0.2, n) * latency
    requests = rng.poisson(rps, n).astype(float)
    return pd.DataFrame({
        "latency_p50": base, "latency_p95": base * 1.9, "latency_p99": base * 2.2,
        "requests": requests, "errors_5xx": rng.binomial(requests.astype(int), error_rate).astype(float),
        "cpu": rng.normal(cpu, 5, n), "memory": rng.normal(8.7, 0.03, n)})


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_no_change_passes_with_a_reason_for_every_metric(rng):
    res = J.judge(window(rng), window(rng), SPECS, ALPHA)
    assert res.verdict == J.PASS
    table = res.reasons()
    assert list(table.columns) == J.REASON_COLUMNS
    assert len(table) == len(SPECS)
    assert all(table["why"].str.len() > 10)
    assert set(table["verdict"]) == {J.PASS}


def test_a_latency_regression_fails_and_names_the_metric_with_its_numbers(rng):
    res = J.judge(window(rng), window(rng, latency=1.5), SPECS, ALPHA)
    assert res.verdict == J.FAIL
    failed = {r.metric for r in res.failed}
    assert "latency_p50" in failed
    row = res.result("latency_p50")
    assert row.effect == pytest.approx(0.5, abs=0.1)
    assert row.p_value < ALPHA
    assert "latency p50" in res.summary and "significant" in row.why
    shown = res.reasons().set_index("metric").loc["latency p50"]
    assert shown["effect"].startswith("+") and shown["effect"].endswith("%")
    assert "ms" in shown["baseline"] and shown["p-value"] != "—"


def test_an_error_spike_fails_on_the_5xx_rate_even_with_zero_errors_before(rng):
    res = J.judge(window(rng), window(rng, error_rate=0.01), SPECS, ALPHA)
    assert res.verdict == J.FAIL
    assert [r.metric for r in res.failed] == ["error_rate"]
    row = res.result("error_rate")
    assert row.baseline == 0 and row.canary == pytest.approx(0.01, abs=0.005)
    assert "points" in res.reasons().set_index("metric").loc["5xx rate", "effect"]


# --------------------------------------------------------------------------- no opaque score


def test_no_score_only_rules_and_rows():
    assert not hasattr(J.Judgement, "score")
    assert len(J.RULES) == 3 and all("FAIL" in r or "INCONCLUSIVE" in r or "PASS" in r for r in J.RULES)


def test_the_verdict_says_which_rule_and_which_metrics(rng):
    res = J.judge(window(rng), window(rng, latency=3.0, error_rate=0.05), SPECS, ALPHA)
    text = res.explain()
    assert text.startswith("FAIL: regression in")
    for label in ("latency p50", "latency p95", "latency p99", "5xx rate"):
        assert label in text


# --------------------------------------------------------------------------- errored measurements never pass


def test_an_analysis_whose_measurements_all_errored_is_inconclusive_never_pass(rng):
    errors = {c: "InternalError: the query failed" for c in
              ("latency_p50", "latency_p95", "latency_p99", "errors_5xx", "requests", "cpu", "memory")}
    res = J.judge(window(rng), window(rng), SPECS, ALPHA, errors=errors)
    assert res.verdict == J.INCONCLUSIVE
    assert all(r.verdict == J.INCONCLUSIVE for r in res.results)
    assert all("query failed" in r.why for r in res.results)


def test_no_data_at_all_is_inconclusive(rng):
    empty = pd.DataFrame()
    assert J.judge(empty, empty, SPECS, ALPHA).verdict == J.INCONCLUSIVE
    assert J.judge(None, None, SPECS, ALPHA).verdict == J.INCONCLUSIVE


def test_ignoring_every_metric_cannot_pass(rng):
    specs = [J.MetricSpec(s.id, s.label, s.kind, s.direction, s.tolerance, s.floor, s.min_points, "ignore",
                          s.numerator, s.denominator, s.unit, s.scale, s.missing_is_zero)
             for s in SPECS if s.kind != J.TRAFFIC]
    res = J.judge(pd.DataFrame(), pd.DataFrame(), specs, ALPHA)
    assert {r.verdict for r in res.results} == {J.IGNORED}
    assert res.verdict == J.INCONCLUSIVE
    assert "nothing was judged on data" in res.summary


def test_a_failed_5xx_query_is_not_read_as_zero_errors(rng):
    before, after = window(rng), window(rng)
    after["errors_5xx"] = np.nan  # what a failed query leaves
    res = J.judge(before, after, SPECS, ALPHA, errors={"errors_5xx": "InternalError"})
    assert res.result("error_rate").verdict == J.INCONCLUSIVE
    assert res.verdict == J.INCONCLUSIVE


def test_absent_5xx_datapoints_count_as_zero_when_the_query_succeeded(rng):
    before, after = window(rng), window(rng)
    before["errors_5xx"] = np.nan  # CloudWatch publishes no HTTPCode_Target_5XX_Count for error-free periods
    after["errors_5xx"] = np.nan
    res = J.judge(before, after, SPECS, ALPHA)
    assert res.result("error_rate").verdict == J.PASS


def test_nan_datapoints_are_left_out_and_counted(rng):
    before, after = window(rng), window(rng)
    after.loc[:9, "latency_p95"] = np.nan
    row = J.judge(before, after, SPECS, ALPHA).result("latency_p95")
    assert row.dropped == 10 and row.n_canary == 110


def test_too_little_canary_traffic_is_inconclusive(rng):
    res = J.judge(window(rng), window(rng, rps=3.0), SPECS, ALPHA)
    assert res.result("requests").verdict == J.INCONCLUSIVE
    assert res.verdict == J.INCONCLUSIVE


def test_the_no_data_policy_fail_fails(rng):
    spec = J.MetricSpec("latency_p99", "latency p99", no_data="fail", min_points=10)
    res = J.judge(window(rng).head(5), window(rng).head(5), [spec], ALPHA)
    assert res.verdict == J.FAIL
    assert "no-data policy 'fail'" in res.results[0].why


# --------------------------------------------------------------------------- big regressions never pass


def test_a_several_hundred_percent_regression_with_few_points_is_never_a_pass(rng):
    """Few datapoints cannot make a huge regression pass: below min_points it is INCONCLUSIVE."""
    res = J.judge(window(rng, n=4), window(rng, n=4, latency=5.0), SPECS, ALPHA)
    assert res.verdict == J.INCONCLUSIVE
    assert res.result("latency_p50").verdict == J.INCONCLUSIVE


def test_a_several_hundred_percent_regression_fails_at_the_minimum_number_of_points(rng):
    n = SANDBOX.min_points
    res = J.judge(window(rng, n=n), window(rng, n=n, latency=5.0), SPECS, ALPHA)
    assert res.result("latency_p50").verdict == J.FAIL
    assert res.result("latency_p50").effect > 3


def test_a_shift_beyond_tolerance_that_is_not_significant_is_inconclusive():
    spec = J.MetricSpec("latency_p50", "latency p50", tolerance=0.2, min_points=10)
    before = pd.DataFrame({"latency_p50": np.arange(1.0, 11.0)})
    after = pd.DataFrame({"latency_p50": np.arange(1.0, 11.0) + 2})  # +2 on a median of 5.5: 36%, noisy
    row = J.judge(before, after, [spec], ALPHA).results[0]
    assert row.shift == 2 and row.p_value >= ALPHA
    assert row.verdict == J.INCONCLUSIVE and "more data needed" in row.why


def test_settings_that_could_never_fail_a_regression_are_refused():
    with pytest.raises(InputError, match="min_points"):
        J.check_specs([J.MetricSpec("latency_p50", "p50", min_points=3)], 0.01)
    with pytest.raises(InputError, match="min_points"):
        check(VerifySection(min_points=2))
    assert J.min_p_value(10, 10) < 1e-5


@pytest.mark.parametrize(("field", "value"), [("kind", "score"), ("direction", "up"), ("no_data", "pass")])
def test_unknown_spec_values_are_refused(field, value):
    spec = J.MetricSpec("latency_p50", "p50", **{field: value})
    with pytest.raises(InputError):
        J.check_specs([spec], 0.01)


# --------------------------------------------------------------------------- direction, tolerance, floor


def test_direction_awareness(rng):
    faster = J.judge(window(rng), window(rng, latency=0.5), SPECS, ALPHA)
    assert faster.verdict == J.PASS
    assert "not higher" in faster.result("latency_p50").why
    throughput = J.MetricSpec("throughput", "throughput", direction="decrease", tolerance=0.1, min_points=10)
    before = pd.DataFrame({"throughput": rng.normal(100, 2, 60)})
    after = pd.DataFrame({"throughput": rng.normal(70, 2, 60)})
    assert J.judge(before, after, [throughput], ALPHA).verdict == J.FAIL
    assert J.judge(after, before, [throughput], ALPHA).verdict == J.PASS


def test_a_significant_shift_within_tolerance_passes(rng):
    res = J.judge(window(rng, n=600), window(rng, n=600, latency=1.08), SPECS, ALPHA)
    row = res.result("latency_p50")
    assert row.p_value < ALPHA and row.verdict == J.PASS
    assert "within the threshold" in row.why


def test_the_absolute_floor_ignores_tiny_changes_of_small_numbers():
    spec = J.MetricSpec("cpu", "CPU", tolerance=0.5, floor=10.0, min_points=10)
    before = pd.DataFrame({"cpu": np.full(60, 2.0) + np.linspace(0, 0.1, 60)})
    after = pd.DataFrame({"cpu": np.full(60, 6.0) + np.linspace(0, 0.1, 60)})  # +200%, but 4 points
    assert J.judge(before, after, [spec], ALPHA).verdict == J.PASS


def test_zero_baseline_median_gives_an_infinite_relative_effect_not_a_crash():
    spec = J.MetricSpec("queue", "queue", tolerance=0.2, floor=1.0, min_points=10)
    before = pd.DataFrame({"queue": np.zeros(30)})
    after = pd.DataFrame({"queue": np.full(30, 5.0)})
    row = J.judge(before, after, [spec], ALPHA).results[0]
    assert math.isinf(row.effect) and row.verdict == J.FAIL
    assert J.judge(before, before, [spec], ALPHA).results[0].verdict == J.PASS


def test_the_same_data_gives_the_same_verdict(rng):
    b, c = window(rng), window(rng, latency=1.3)
    one, two = J.judge(b, c, SPECS, ALPHA), J.judge(b, c, SPECS, ALPHA)
    assert one.reasons().equals(two.reasons())


def test_hodges_lehmann_is_the_median_of_pairwise_differences():
    assert J.hodges_lehmann(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 2.0
    big_c, big_b = np.arange(3000.0), np.arange(3000.0) - 5
    assert J.hodges_lehmann(big_c, big_b) == pytest.approx(5.0, abs=2)  # subsampled above MAX_PAIRS


def test_binomial_p_is_one_without_events_and_small_for_a_clear_rise():
    assert J.binomial_p(0, 1000, 0, 1000, "increase") == 1.0
    assert J.binomial_p(0, 1000, 10, 1000, "increase") < 0.01
    assert J.binomial_p(10, 1000, 0, 1000, "increase") == 1.0
