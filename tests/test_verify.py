"""Phase verify without the twin: windows, reachability and smoke (fake HTTP), error logs, one GetMetricData
per window (Stubber), monitoring (moto), the decision table and what the phase reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import numpy as np
import pandas as pd
import pytest
from botocore.stub import ANY, Stubber
from shipbook import config, result
from shipbook.checks import CheckResult
from shipbook.config import SmokeTestSection as SmokeTest
from shipbook.errors import InputError
from shipbook.verify import decision, logs, metrics, monitoring, phase, reach
from shipbook.verify import judge as J
from shipbook.verify.settings import SANDBOX, check, metric_specs, smoke_tests
from support import aws_client

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)


def env(**app: str) -> config.Environment:
    a = {"public_url": "http://127.0.0.1:9", "health_path": "/health/", "version_path": "/version/", **app}
    return config.Environment(name="t", kind="sandbox", app=config.AppSection(**a),
                              stack=config.StackSection(name="s", cluster="c", service="svc", target_group="tg",
                                                        log_group="/ecs/app", alarm_topic="alarms"))


def client(service: str):
    return boto3.client(service, region_name="ap-northeast-1", aws_access_key_id="x", aws_secret_access_key="x")


# --------------------------------------------------------------------------- settings and windows


def test_settings_sandbox_file_production_defaults_and_the_default_smoke_tests():
    sandbox = config.load("sandbox", resolve=False).verify
    assert (sandbox.baseline_seconds, sandbox.canary_seconds, sandbox.period) == (120, 120, 1)
    assert [t.path for t in smoke_tests(sandbox)] == ["/health/", "/version/", "/products/", "/products/1/"]
    assert config.Environment(name="p", kind="aws").verify.canary_seconds == 1800
    # no smoke list: the health and version endpoints are still tested
    assert [t.name for t in smoke_tests(config.VerifySection())] == ["health endpoint", "version endpoint"]
    one = config.VerifySection(smoke=(SmokeTest("/products/", status=200),))
    assert smoke_tests(one) == (SmokeTest("/products/", status=200),)
    with pytest.raises(InputError, match="verify.period"):
        check(config.VerifySection(period=0))


def test_windows_baseline_before_the_start_canary_after_the_finish_and_settle():
    w = phase.make_windows(SANDBOX, T0, T0 + timedelta(seconds=20.5), "test")
    assert w.baseline.end == T0 and w.baseline.seconds == SANDBOX.baseline_seconds
    assert w.canary.start == T0 + timedelta(seconds=36)  # 20.5 + 15 settle, rounded up to the period
    assert w.ready_at == w.canary.end + timedelta(seconds=SANDBOX.publish_lag_seconds)
    assert w.logs_before.end == T0 and w.logs_before.seconds == w.logs_after.seconds
    after_rollback = phase.make_windows(SANDBOX, T0 + timedelta(minutes=10), T0 + timedelta(minutes=11), "rb",
                                        baseline_end=T0)
    assert after_rollback.baseline.end == T0  # the healthy period before the broken deploy
    with pytest.raises(InputError):
        phase.make_windows(SANDBOX, T0, T0 - timedelta(seconds=1), "bad")


def test_without_run_facts_the_deploy_times_come_from_the_ecs_deployment_and_its_completed_event():
    ecs = client("ecs")
    dep = {"id": "ecs-svc/1", "status": "PRIMARY", "rolloutState": "COMPLETED", "createdAt": T0,
           "updatedAt": T0 + timedelta(minutes=30)}  # updatedAt moves: not the finish
    events = [{"id": "e1", "createdAt": T0 + timedelta(seconds=40),
               "message": "(service svc) (deployment ecs-svc/1) deployment completed."}]
    with Stubber(ecs) as stub:
        stub.add_response("describe_services", {"services": [{"deployments": [dep], "events": events}]})
        started, finished = phase.ecs_deploy_times(env(), ecs)
    assert (started, finished) == (T0, T0 + timedelta(seconds=40))
    with Stubber(ecs) as stub:
        running = {**dep, "rolloutState": "IN_PROGRESS"}
        stub.add_response("describe_services", {"services": [{"deployments": [running]}]})
        with pytest.raises(InputError, match="not complete"):
            phase.ecs_deploy_times(env(), ecs)


class Clock:
    def __init__(self) -> None:
        self.t = T0
        self.lines: list[str] = []

    def now(self) -> datetime:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += timedelta(seconds=s)


def test_waiting_for_the_canary_window_sleeps_until_it_is_readable_and_says_so():
    c = Clock()
    v = phase.Verification(env(), "v1.0.0", deploy_started=T0.isoformat(), deploy_finished=T0.isoformat(),
                           now=c.now, sleep=c.sleep, report=c.lines.append, settings=SANDBOX)
    v.resolve_windows()
    out = v.wait_for_canary()
    assert c.t >= v.windows.ready_at and out.startswith("waited")
    assert sum("to go" in line for line in c.lines) >= 5
    assert v.wait_for_canary().startswith("the canary window ended")


# --------------------------------------------------------------------------- reachability and smoke


def fake_http(routes: dict[str, tuple[int, str]]):
    calls = []

    def get(method: str, url: str, timeout: float) -> reach.Response:
        calls.append((method, url))
        path = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"
        status, body = routes.get(path, (404, "not found"))
        return reach.Response(url, status, 0.004, body)

    get.calls = calls  # type: ignore[attr-defined]
    return get


OK_ROUTES = {"/": (200, "shop"), "/health/": (200, '{"status": "ok"}'),
             "/version/": (200, json.dumps({"version": "v1.0.0", "commit": "abc123def4567890"}))}


def test_reachable_passes_when_the_url_answers_and_serves_the_version():
    res = reach.reachable(env(), "v1.0.0", SANDBOX, http_get=fake_http(OK_ROUTES))
    assert res.verdict == "pass" and "serves v1.0.0 (commit abc123def456)" in res.summary


@pytest.mark.parametrize(("routes", "expect", "why"), [
    ({**OK_ROUTES, "/version/": (200, '{"version": "v0.9.0"}')}, "v1.0.0", "serves v0.9.0"),
    ({**OK_ROUTES, "/": (502, "Bad Gateway")}, "v1.0.0", "502"),
    ({}, "v1.0.0", "404"),
])
def test_reachable_fails_on_wrong_version_or_a_5xx(routes, expect, why):
    res = reach.reachable(env(), expect, SANDBOX, http_get=fake_http(routes))
    assert res.verdict == "fail" and why in res.summary


def test_reachable_after_a_rollback_checks_the_commit_too():
    routes = {**OK_ROUTES, "/version/": (200, json.dumps({"version": "v1.0.1-rollback", "commit": "prev0123456789"}))}
    ok = reach.reachable(env(), "v1.0.1-rollback", SANDBOX, expect_commit="prev0123456789ab",
                         http_get=fake_http(routes))
    bad = reach.reachable(env(), "v1.0.1-rollback", SANDBOX, expect_commit="other0123456789",
                          http_get=fake_http(routes))
    assert ok.verdict == "pass" and bad.verdict == "fail" and "at commit other0123456" in bad.summary


def test_tls_days_left_are_checked_for_https():
    def tls(host: str, port: int, timeout: float) -> datetime:
        return T0 + timedelta(days=5)

    res = reach.reachable(env(public_url="https://shop.example.com"), "v1.0.0", SANDBOX,
                          http_get=fake_http(OK_ROUTES), tls=tls, now=lambda: T0)
    assert res.verdict == "warn" and "expires in 5 days" in res.summary
    expired = reach.reachable(env(public_url="https://shop.example.com"), "v1.0.0", SANDBOX,
                              http_get=fake_http(OK_ROUTES), tls=lambda *a: T0 - timedelta(days=1), now=lambda: T0)
    assert expired.verdict == "fail"


def test_smoke_tests_check_status_and_text_each_with_timing():
    settings = config.VerifySection(smoke=(SmokeTest("/health/", text="ok"), SmokeTest("/version/", text="{version}"),
                                     SmokeTest("/products/", status=200)))
    res = reach.smoke(env(), "v1.0.0", settings, http_get=fake_http(OK_ROUTES))
    assert res.verdict == "fail" and "1 of 3 smoke tests failed" in res.summary and "/products/" in res.summary
    assert [r["ok"] for r in res.details] == [True, True, False] and all("ms" in r for r in res.details)
    good = reach.smoke(env(), "v1.0.0", config.VerifySection(smoke=settings.smoke[:2]), http_get=fake_http(OK_ROUTES))
    assert good.verdict == "pass"


def test_no_public_url_skips_with_a_reason():
    assert reach.reachable(env(public_url=""), "v1", SANDBOX).verdict == "skip"
    assert reach.smoke(env(public_url=""), "v1", SANDBOX).verdict == "skip"


# --------------------------------------------------------------------------- error logs


def test_log_lines_are_classified_and_normalised_into_signatures():
    line = json.dumps({"level": "ERROR", "message": "Internal Server Error: /products/17/",
                       "exception": "Traceback (most recent call last):\n ...\nKeyError: 'L'"})
    text = logs.classify(line)
    assert text == "Internal Server Error: /products/17/ — KeyError: 'L'"
    other = logs.classify(line.replace("17", "4").replace("'L'", "'XL'"))
    assert logs.normalise(text) == logs.normalise(other)
    assert logs.classify(json.dumps({"level": "INFO", "message": "GET /products/ 200"})) is None
    assert logs.classify("Operations to perform:") is None
    assert logs.classify("Traceback (most recent call last):") is not None


def test_error_logs_highlight_new_signatures():
    w = metrics.Window("w", T0, T0 + timedelta(minutes=2))
    before = logs.LogWindow(w, 100)
    before.signatures["old <n>"] = 2
    after = logs.LogWindow(w, 100)
    after.signatures.update({"old <n>": 2, "Internal Server Error: /products/<n>/ — KeyError: '<s>'": 40})
    cmp = logs.ErrorLogs(before, after)
    res = logs.verdict(cmp, "/ecs/app", "", 1000)
    assert res.verdict == "warn" and "1 NEW error signature" in res.summary
    assert cmp.table().iloc[0]["new"] == "NEW"
    calm = logs.verdict(logs.ErrorLogs(before, before), "/ecs/app", "", 1000)
    assert calm.verdict == "pass"


def test_error_logs_read_stops_at_the_limit_and_says_so():
    cw = client("logs")
    w = metrics.Window("since", T0, T0 + timedelta(minutes=1))
    page = {"events": [{"message": '{"level": "ERROR", "message": "boom 1"}'}] * 3, "nextToken": "n"}
    with Stubber(cw) as stub:
        stub.add_response("filter_log_events", page)
        out = logs.read_window(cw, "/ecs/app", w, "", 3)
    assert out.truncated and out.errors == 3


# --------------------------------------------------------------------------- metrics: one call per window


DIMS = metrics.Dimensions((("LoadBalancer", "app/lb/1"), ("TargetGroup", "targetgroup/tg/2")),
                          (("ClusterName", "c"), ("ServiceName", "svc")))


def _results(n: int, status: dict[str, str] | None = None) -> list[dict]:
    status = status or {}
    times = [T0 + timedelta(seconds=i) for i in range(n)]
    return [{"Id": f"q{i}", "Label": q.id, "StatusCode": status.get(q.id, "Complete"), "Timestamps": times,
             "Values": [float(i + 1)] * n} for i, q in enumerate(metrics.QUERIES)]


def test_one_get_metric_data_call_per_window_for_every_metric():
    cw = client("cloudwatch")
    w = metrics.Window("canary", T0, T0 + timedelta(seconds=10))
    with Stubber(cw) as stub:
        stub.add_response("get_metric_data", {"MetricDataResults": _results(10)},
                          {"MetricDataQueries": ANY, "StartTime": T0, "EndTime": w.end, "ScanBy": "TimestampAscending"})
        data = metrics.fetch_window(cw, w, DIMS, 1)
        stub.assert_no_pending_responses()
    assert data.calls == 1 and not data.errors
    assert list(data.frame.columns) == [q.id for q in metrics.QUERIES] and len(data.frame) == 10
    queries = metrics.batch(DIMS, 1)
    assert len(queries) == len(metrics.QUERIES)
    assert {q["MetricStat"]["Stat"] for q in queries} >= {"p50", "p95", "p99", "Sum", "Average"}


def test_a_failed_query_is_an_error_not_zeros_and_a_failed_call_errors_every_metric():
    cw = client("cloudwatch")
    w = metrics.Window("canary", T0, T0 + timedelta(seconds=10))
    with Stubber(cw) as stub:
        stub.add_response("get_metric_data", {"MetricDataResults": _results(10, {"errors_5xx": "InternalError"})})
        data = metrics.fetch_window(cw, w, DIMS, 1)
    assert set(data.errors) == {"errors_5xx"}
    with Stubber(cw) as stub:
        stub.add_client_error("get_metric_data", "Throttling", "Rate exceeded")
        data = metrics.fetch_window(cw, w, DIMS, 1)
    assert data.calls == 1 and set(data.errors) == {q.id for q in metrics.QUERIES}
    res = J.judge(data.frame, data.frame, metric_specs(SANDBOX), 0.01, data.errors)
    assert res.verdict == J.INCONCLUSIVE


def test_alignment_to_the_period():
    t = datetime(2026, 1, 1, 0, 0, 7, 500000, tzinfo=UTC)
    assert metrics.align(t, 60) == datetime(2026, 1, 1, tzinfo=UTC)
    assert metrics.align(t, 60, up=True) == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert metrics.align(t, 1, up=True) == datetime(2026, 1, 1, 0, 0, 8, tzinfo=UTC)


def test_the_chart_marks_the_deploy_and_shades_the_baseline_range():
    rng = np.random.default_rng(1)
    idx_b = pd.date_range(T0 - timedelta(seconds=120), periods=120, freq="s", tz=UTC)
    idx_c = pd.date_range(T0 + timedelta(seconds=30), periods=120, freq="s", tz=UTC)
    frame = {q.id: rng.random(120) for q in metrics.QUERIES}
    m = metrics.Metrics(metrics.WindowData(metrics.Window("baseline", idx_b[0], T0), pd.DataFrame(frame, idx_b)),
                        metrics.WindowData(metrics.Window("canary", idx_c[0], idx_c[-1]), pd.DataFrame(frame, idx_c)),
                        1)
    j = J.judge(m.baseline.frame, m.canary.frame, metric_specs(SANDBOX), 0.01)
    fig = phase.charts.chart(m, j, T0, T0 + timedelta(seconds=25))
    ax = fig.axes[0]
    assert any(abs(line.get_xdata()[0]) < 1e-9 for line in ax.lines if len(line.get_xdata()) == 2)  # start marker
    assert any(p.get_label().startswith("baseline range") for p in ax.patches)


# --------------------------------------------------------------------------- monitoring (moto)


@pytest.fixture
def stack(moto_url):
    cw, sns = aws_client(moto_url, "cloudwatch"), aws_client(moto_url, "sns")
    suffix = datetime.now(UTC).strftime("%H%M%S%f")
    dims = metrics.Dimensions((("LoadBalancer", f"app/lb/{suffix}"), ("TargetGroup", f"targetgroup/tg/{suffix}")),
                              (("ClusterName", f"c{suffix}"), ("ServiceName", "svc")))
    topic = sns.create_topic(Name=f"alarms-{suffix}")["TopicArn"]
    alb = [{"Name": k, "Value": v} for k, v in dims.alb]

    def alarm(name: str, metric: str, actions: list[str]) -> str:
        cw.put_metric_alarm(AlarmName=f"{name}-{suffix}", Namespace="AWS/ApplicationELB", MetricName=metric,
                            Dimensions=alb, Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                            ComparisonOperator="GreaterThanThreshold", AlarmActions=actions)
        return f"{name}-{suffix}"

    return {"cw": cw, "sns": sns, "dims": dims, "topic": topic, "alarm": alarm, "suffix": suffix}


def test_monitoring_alarms_need_the_three_signals_and_warn_when_one_fires(stack):
    e = env()
    s = stack
    s["alarm"]("5xx", "HTTPCode_Target_5XX_Count", [s["topic"]])
    s["alarm"]("latency", "TargetResponseTime", [s["topic"]])
    missing = monitoring.alarms(e, s["dims"], cloudwatch=s["cw"])
    assert missing.verdict == "fail" and "no alarm on unhealthy targets" in missing.summary
    hosts = s["alarm"]("hosts", "UnHealthyHostCount", [s["topic"]])
    s["cw"].put_metric_alarm(AlarmName=f"TargetTracking-{s['suffix']}", Namespace="AWS/ECS",
                             MetricName="CPUUtilization", Statistic="Average", Period=60, EvaluationPeriods=1,
                             Threshold=1, ComparisonOperator="GreaterThanThreshold",
                             Dimensions=[{"Name": k, "Value": v} for k, v in s["dims"].ecs],
                             AlarmActions=["arn:aws:autoscaling:ap-northeast-1:123456789012:scalingPolicy:x"])
    s["cw"].set_alarm_state(AlarmName=f"TargetTracking-{s['suffix']}", StateValue="ALARM", StateReason="scaling")
    ok = monitoring.alarms(e, s["dims"], cloudwatch=s["cw"])
    assert ok.verdict == "pass" and len(ok.details) == 3  # the auto scaling alarm is not ours to judge
    s["cw"].set_alarm_state(AlarmName=hosts, StateValue="ALARM", StateReason="test")
    firing = monitoring.alarms(e, s["dims"], cloudwatch=s["cw"])
    assert firing.verdict == "warn" and hosts in firing.summary
    named = monitoring.alarms(e, s["dims"], names=[hosts, "nope"], cloudwatch=s["cw"])
    assert named.verdict == "fail" and "expected alarm nope does not exist" in named.summary


def test_monitoring_notifications_need_a_confirmed_subscription(stack):
    s = stack
    e = config.Environment(name="t", kind="sandbox", stack=config.StackSection(alarm_topic=s["topic"]))
    s["alarm"]("5xx", "HTTPCode_Target_5XX_Count", [s["topic"]])
    none = monitoring.notifications(e, s["dims"], cloudwatch=s["cw"], sns=s["sns"])
    assert none.verdict == "fail" and "no confirmed subscription" in none.summary
    s["sns"].subscribe(TopicArn=s["topic"], Protocol="sqs", Endpoint="arn:aws:sqs:ap-northeast-1:123456789012:q")
    assert monitoring.notifications(e, s["dims"], cloudwatch=s["cw"], sns=s["sns"]).verdict == "pass"
    s["alarm"]("silent", "TargetResponseTime", [])
    silent = monitoring.notifications(e, s["dims"], cloudwatch=s["cw"], sns=s["sns"])
    assert silent.verdict == "fail" and "no SNS action" in silent.summary


# --------------------------------------------------------------------------- the decision table


def ok(check_id: str) -> CheckResult:
    return CheckResult(check_id, "pass", "fine")


def judged(verdict: str) -> J.Judgement:
    rng = np.random.default_rng(2)
    base = pd.DataFrame({"latency_p95": rng.lognormal(-4.7, 0.2, 120), "requests": 15.0, "errors_5xx": 0.0})
    can = base.copy()
    if verdict == J.FAIL:
        can["latency_p95"] *= 20
    specs = [s for s in metric_specs(SANDBOX) if s.id in ("latency_p95", "error_rate", "requests")]
    if verdict == J.INCONCLUSIVE:
        can = can.head(3)
    res = J.judge(base, can, specs, 0.01)
    assert res.verdict == verdict
    return res


@pytest.mark.parametrize(("reachable", "smoke", "judge", "security", "expected", "named"), [
    ("pass", "pass", J.PASS, "", decision.PROCEED, ""),
    ("fail", "pass", J.PASS, "", decision.ROLLBACK, "fatal bug"),
    ("pass", "fail", J.PASS, "", decision.ROLLBACK, "fatal bug"),
    ("pass", "pass", J.FAIL, "", decision.ROLLBACK, "latency p95"),
    ("pass", "pass", J.PASS, "CVE-2026-1234 in the login form", decision.ROLLBACK, "CVE-2026-1234"),
    ("pass", "pass", J.INCONCLUSIVE, "", decision.HOLD, "INCONCLUSIVE"),
    ("skip", "pass", J.PASS, "", decision.HOLD, "not evaluated"),
    ("fail", "pass", J.INCONCLUSIVE, "", decision.ROLLBACK, "fatal bug"),
])
def test_decision_table(reachable, smoke, judge, security, expected, named):
    d = decision.decide(CheckResult(reach.REACHABLE, reachable, "r"), CheckResult(reach.SMOKE, smoke, "s"),
                        judged(judge), security)
    assert d.recommendation == expected
    assert all(named in r for r in d.reasons) if named else d.reasons == []
    table = d.table()
    assert list(table["criterion"][:3]) == ["fatal bug", "severe performance drop", "serious security problem"]
    assert d.check().verdict == {decision.PROCEED: "pass", decision.HOLD: "warn", decision.ROLLBACK: "fail"}[expected]


def test_no_judgement_and_firing_alarms_hold():
    d = decision.decide(ok(reach.REACHABLE), ok(reach.SMOKE), None)
    assert d.recommendation == decision.HOLD
    firing = CheckResult(monitoring.ALARMS, "warn", "1 of 3 alarm(s) in ALARM: x")
    assert decision.decide(ok(reach.REACHABLE), ok(reach.SMOKE), judged(J.PASS), alarms=firing).recommendation == \
        decision.HOLD
    logs_warn = CheckResult(logs.ERROR_LOGS, "warn", "1 NEW error signature")
    assert decision.decide(ok(reach.REACHABLE), ok(reach.SMOKE), judged(J.PASS),
                           error_logs=logs_warn).recommendation == decision.PROCEED


# --------------------------------------------------------------------------- what the phase reports


def test_rollback_blocks_with_verify_decision_and_records_the_reasons(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPBOOK_WORK_DIR", str(tmp_path))
    v = phase.Verification(env(), "v1.0.0", deploy_started=T0.isoformat(), deploy_finished=T0.isoformat(),
                           settings=SANDBOX, report=lambda s: None)
    for cid in phase.CHECK_IDS:
        v.board.add(ok(cid))
    v.judgement = judged(J.FAIL)
    v.decide()
    v.finish()
    res = result.read(tmp_path)
    assert res.verdict == "fail" and [b["id"] for b in res.blocking] == ["verify.decision"]
    assert res.facts["recommendation"] == "ROLLBACK" and "latency p95" in res.facts["rollback_reasons"][0]
    assert [c["id"] for c in res.checks] == [*phase.CHECK_IDS, "verify.decision"]


@pytest.mark.parametrize(("judge", "verdict", "rec"), [(J.PASS, "pass", "PROCEED"), (J.INCONCLUSIVE, "warn", "HOLD")])
def test_proceed_passes_and_hold_warns_without_blocking(tmp_path, monkeypatch, judge, verdict, rec):
    monkeypatch.setenv("SHIPBOOK_WORK_DIR", str(tmp_path))
    v = phase.Verification(env(), "v1.0.0", settings=SANDBOX, report=lambda s: None)
    for cid in phase.CHECK_IDS:
        v.board.add(ok(cid))
    v.judgement = judged(judge)
    v.finish()
    res = result.read(tmp_path)
    assert (res.verdict, res.facts["recommendation"], res.blocking) == (verdict, rec, [])


def test_a_check_that_never_ran_fails_instead_of_passing(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPBOOK_WORK_DIR", str(tmp_path))
    v = phase.Verification(env(), "v1.0.0", settings=SANDBOX, report=lambda s: None)
    v.board.add(ok(reach.REACHABLE))
    v.judgement = judged(J.PASS)
    v.finish()
    res = result.read(tmp_path)
    assert {c["id"]: c["verdict"] for c in res.checks}["monitoring.alarms"] == "fail"
    assert res.verdict == "warn"


def test_a_dry_run_without_a_deploy_verifies_nothing_and_recommends_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPBOOK_WORK_DIR", str(tmp_path))
    v = phase.Verification(env(), "v1.0.0", dry_run=True, report=lambda s: None)
    v.resolve_windows()
    v.reachable()
    v.wait_for_canary()
    v.finish()
    res = result.read(tmp_path)
    assert res.verdict == "skip" and res.facts["recommendation"] == "" and res.blocking == []
    assert {c["verdict"] for c in res.checks} == {"skip"}
