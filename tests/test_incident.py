"""Incident helpers without AWS: metrics and logs shaping, impact, decisions, notices, status reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from shipbook import audit, config, i18n, incident
from shipbook.errors import InputError
from shipbook.verify import reach

T0 = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "incident.ipynb"


class FakeClient:
    """Enough of a boto3 client for shipbook.aws.call: a service name and canned operations."""

    def __init__(self, service: str, **ops):
        self.meta = type("Meta", (), {"service_model": type("SM", (), {"service_name": service})()})()
        self.calls: list[tuple[str, dict]] = []
        for name, fn in ops.items():
            setattr(self, name, self._record(name, fn))

    def _record(self, name, fn):
        def call(**kw):
            self.calls.append((name, kw))
            return fn(**kw)
        return call

    def get_paginator(self, op):
        """boto3's real paginator over the canned operation (its own token names)."""
        from fake_paging import paginator

        return paginator(self.meta.service_model.service_name, op, getattr(self, op))


def env(**kw) -> config.Environment:
    contacts = kw.pop("contacts", (config.Contact("インフラ担当者", "Ito", email="ito@example.invalid"),))
    return config.Environment(
        name="t", kind="sandbox", lang=kw.pop("lang", "ja"), contacts=contacts,
        stack=config.StackSection(name="s", cluster="c", service="svc", target_group="tg", log_group="/ecs/web",
                                  alarm_topic="alarms"),
        app=config.AppSection(repo="/nonexistent", public_url=kw.pop("public_url", "")), **kw)


def metrics(rates: list[float], p99: list[float] | None = None, start: datetime = T0) -> pd.DataFrame:
    series = {"requests": {}, "errors": {}, "p50": {}, "p95": {}, "p99": {}}
    for i, rate in enumerate(rates):
        t = start + timedelta(seconds=10 * i)
        series["requests"][t] = 100.0
        series["errors"][t] = rate
        series["p50"][t], series["p95"][t] = 0.01, 0.02
        series["p99"][t] = (p99[i] if p99 else 20) / 1000
    return incident.metrics_frame(series)


def test_get_metric_data_is_shaped_into_rates_and_milliseconds():
    stamps = [T0, T0 + timedelta(seconds=10)]

    def gmd(**kw):
        assert {q["Id"] for q in kw["MetricDataQueries"]} == {"requests", "errors", "p50", "p95", "p99"}
        assert kw["MetricDataQueries"][4]["MetricStat"]["Stat"] == "p99"
        vals = {"requests": [100, 50], "errors": [5, 0], "p50": [0.01, 0.01], "p95": [0.05, 0.02], "p99": [0.2]}
        return {"MetricDataResults": [{"Id": k, "Timestamps": stamps[:len(v)], "Values": v} for k, v in vals.items()]}

    elbv2 = FakeClient("elbv2", describe_target_groups=lambda **kw: {"TargetGroups": [{
        "TargetGroupArn": "arn:aws:elasticloadbalancing:r:1:targetgroup/tg/abc",
        "LoadBalancerArns": ["arn:aws:elasticloadbalancing:r:1:loadbalancer/app/lb/def"]}]})
    cw = FakeClient("cloudwatch", get_metric_data=gmd)
    df = incident.fetch_metrics(env(), T0, T0 + timedelta(minutes=1), cloudwatch=cw, elbv2=elbv2)
    dims = cw.calls[0][1]["MetricDataQueries"][0]["MetricStat"]["Metric"]["Dimensions"]
    assert dims == [{"Name": "LoadBalancer", "Value": "app/lb/def"},
                    {"Name": "TargetGroup", "Value": "targetgroup/tg/abc"}]
    assert list(df["error_rate"]) == [5.0, 0.0]
    assert df["p99"].iloc[0] == 200.0 and df["p99"].isna().iloc[1]
    one_second = config.VerifySection(period=1)  # the twin publishes 1 s datapoints: a 10 s floor
    assert incident.auto_period(env(verify=one_second), T0, T0 + timedelta(hours=1)) == 20
    assert incident.auto_period(env(), T0, T0 + timedelta(hours=1)) == 60  # AWS's standard 60 s metrics


def test_log_lines_are_parsed_and_endpoints_counted_once_per_failure():
    lines = [
        json.dumps({"level": "ERROR", "message": "Internal Server Error: /products/14/",
                    "exception": "Traceback...\n  File x\nKeyError: 'L'"}),
        json.dumps({"level": "ERROR", "message": "GET /products/14/ 500", "method": "GET", "path": "/products/14/",
                    "status": 500, "duration_ms": 2.5}),
        json.dumps({"level": "INFO", "message": "GET / 200", "path": "/", "status": 200}),
        "plain text line",
    ]
    events = [{"timestamp": int(T0.timestamp() * 1000) + i, "message": m} for i, m in enumerate(lines)]
    logs = FakeClient("logs", filter_log_events=lambda **kw: {"events": events})
    df = incident.fetch_logs(env(), T0, T0 + timedelta(minutes=1), logs=logs)
    assert len(df) == 4 and df["exception"].iloc[0] == "KeyError: 'L'"
    eps = incident.affected_endpoints(df, "en")
    assert eps.values.tolist() == [["/products/{id}/", 1]]
    assert incident.exceptions(df)["exception"].tolist() == ["KeyError: 'L'"]
    only_errors = incident.fetch_logs(env(), T0, T0, errors_only=True, logs=logs)
    assert len(only_errors) == 2


def test_impact_decision_and_rollback_command():
    m = metrics([0, 0, 0, 6, 8, 7], p99=[20, 20, 20, 60, 70, 65])
    impact = incident.measure(m, pd.DataFrame({"e": ["/products/{id}/"], "n": [3]}), ["shipbook-demo-5xx"],
                              baseline_end=T0 + timedelta(seconds=25))
    # the six 10-s periods pool into one minute: its rate (21/600), not the worst 10 s (8 %), is the peak
    assert impact.error_rate_peak == 3.5 and impact.p99_baseline == 20.0 and impact.requests == 600
    assert (impact.peak_time, impact.peak_errors, impact.peak_requests) == ("2026-11-28T15:00:00+00:00", 21, 600)
    assert "最悪の1分 15:00 UTC に 3.5%（21/600 件）" in impact.summary("ja")
    assert "/products/{id}/" in impact.summary("en")
    table = incident.decision_table(impact, "en")
    assert table.iloc[:, 3].tolist() == ["yes", "yes", "to decide"]
    assert incident.recommendation(table, "en") == "Rollback recommended"
    calm = incident.measure(metrics([0, 0, 0]), baseline_end=T0 + timedelta(seconds=15))
    advice = incident.recommendation(incident.decision_table(calm, "ja"), "ja")
    assert advice.startswith("ロールバック基準には該当しません")
    inc = incident.Incident("inc-x", "t", "", T0, "v1.0.0", "v0.9.0", "ja")
    assert incident.rollback_command(env(), inc) == "make rollback VERSION=v1.0.0 ENV=t  # → v0.9.0"
    with pytest.raises(InputError):
        incident.rollback_command(env(), incident.Incident("i", "t", "", T0, "1.0; rm -rf /"))


def test_contacts_come_from_the_environment_only():
    table = incident.contacts_table(env(), "ja")
    assert table.values.tolist() == [["インフラ担当者", "Ito", "—", "ito@example.invalid"]]
    assert "xxx" not in table.to_string()
    empty = incident.contacts_table(env(contacts=()), "en")
    assert "no contacts" in empty.iloc[0, 0]


def test_first_notice_in_both_languages():
    inc = incident.Incident("inc-x", "t", "商品ページのエラー", T0, "v1.0.0", lang="ja")
    impact = incident.Impact("", "", endpoints=["/products/{id}/"])
    ja = incident.first_notice(inc, impact)._repr_markdown_()
    assert "【障害のお知らせ】" in ja and "/products/{id}/" in ja and "15:30:00" in ja
    inc.lang = "en"
    assert "Next update by 2026-11-28 15:30:00 UTC" in str(incident.first_notice(inc, impact))


def test_convergence_checks_use_the_baseline_and_the_live_window():
    class Resp:
        def __init__(self, code, text=""):
            self.status_code, self.text = code, text

    answers = {"/health/": Resp(200), "/version/": Resp(200, '{"version": "v0.9.0"}')}
    get = lambda url, timeout: answers[url.removeprefix("http://app")]  # noqa: E731
    impact = incident.Impact("", "", p99_baseline=20.0)
    live = incident.Impact("", "", error_rate_now=0.0, p99_now=21.0)
    requested = []

    def smoke_get(method, url, timeout):
        requested.append((method, url))
        body = '{"version": "v0.9.0"}' if url.endswith("/version/") else '{"products": []}'
        return reach.Response(url, 200 if "/missing/" not in url else 404, 0.01, body)

    smoke = config.VerifySection(smoke=(config.SmokeTestSection("/version/", text="{version}"),
                                        config.SmokeTestSection("/products/", text='"products"')))
    checks = incident.convergence_checks(env(public_url="http://app", verify=smoke), impact, live, get=get,
                                         http_get=smoke_get)
    assert [(c.id, c.verdict) for c in checks] == [("verify.health", "pass"), ("verify.version", "pass"),
                                                    ("verify.smoke", "pass"), ("verify.errors", "pass"),
                                                    ("verify.performance", "pass"), ("verify.alarms", "pass")]
    assert requested == [("GET", "http://app/version/"), ("GET", "http://app/products/")]  # for the version served now
    broken = config.VerifySection(smoke=(config.SmokeTestSection("/missing/"),))
    failing = incident.convergence_checks(env(public_url="http://app", verify=broken), impact, live, get=get,
                                          http_get=smoke_get)
    assert [c.verdict for c in failing if c.id == "verify.smoke"] == ["fail"]
    live = incident.Impact("", "", error_rate_now=3.0, p99_now=80.0, alarms=["a-5xx"])
    verdicts = [c.verdict for c in incident.convergence_checks(env(), impact, live, get=get)]
    assert verdicts == ["fail", "warn", "fail"]


def _incident_record(tmp_path: Path, incident_id: str = "inc-1") -> Path:
    d = tmp_path / "t" / "incidents" / incident_id
    d.mkdir(parents=True)
    facts = {"incident_start": "2026-11-28T15:00:00+00:00", "incident_lang": "ja",
             "impact": {"window_start": "", "window_end": "", "requests": 600, "errors": 21,
                        "error_rate_peak": 8.0, "endpoints": ["/products/{id}/"],
                        "impact_start": "2026-11-28T15:00:00+00:00", "impact_end": "2026-11-28T15:06:00+00:00",
                        "peak_time": "2026-11-28T15:02:00+00:00", "peak_requests": 100, "peak_errors": 8,
                        "pool_seconds": 60, "min_requests": 50}}
    (d / "run.json").write_text(json.dumps({"run_id": incident_id, "env": "t", "version": "v1.0.0",
                                            "started": "2026-11-28T15:00:00+00:00", "phases": [], "facts": facts}))
    return d


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_status_report_has_exactly_the_five_fields_and_is_appended(tmp_path, lang):
    d = _incident_record(tmp_path)
    clock = iter([T0 + timedelta(minutes=20), T0 + timedelta(minutes=50)])
    reports = [incident.status_report(env(), "inc-1", lang, current=c, eta="16:00", runs_root=tmp_path,
                                      now=lambda: next(clock)) for c in ("investigating", "rolled back")]
    text = reports[0].text().splitlines()
    labels = [label for _k, label in i18n.status_labels(lang)]
    assert len(text) == 5 and [line.split("：" if lang == "ja" else ": ")[0] for line in text] == labels
    if lang == "ja":
        assert labels == ["発生時刻", "影響範囲", "現在の状況", "対応予定時間", "次回の更新予定"]
        assert text[1].startswith("影響範囲：15:00–15:06 UTC の 5xx 率 3.5%（21/600 件）、"
                                  "最悪の1分 15:02 UTC に 8.0%（8/100 件）")
    else:
        assert labels == ["Started", "Impact", "Current status", "Expected resolution", "Next update"]
        assert text[1].startswith("Impact: 5xx rate 3.5% (21/600 requests) over 15:00–15:06 UTC; "
                                  "worst minute 15:02 UTC: 8.0% (8/100)")
    assert text[0].endswith("2026-11-28 15:00:00 UTC") and text[4].endswith("2026-11-28 15:50:00 UTC")
    stored = incident.status_reports("t", "inc-1", tmp_path)
    assert [r["current"] for r in stored] == ["investigating", "rolled back"]
    assert stored[0]["at"] == "2026-11-28T15:20:00+00:00"
    assert stored[1]["prev"] == audit.sha256_bytes((d / incident.STATUS_FILE).read_text().splitlines()[0].encode())


def test_unknown_incident_and_bad_ids_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no incident"):
        incident.status_report(env(), "inc-404", "ja", current="x", runs_root=tmp_path)
    with pytest.raises(InputError):
        incident.incident_dir("t", "../../etc")
    with pytest.raises(InputError, match="lang"):
        incident.status_report(env(), "inc-404", "fr", runs_root=tmp_path)


def test_notebook_follows_the_seed_order_with_thin_cells():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    headings = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## ")]
    assert [h.split(" — ")[0] for h in headings] == [
        "## 1. 初期対応（最初の30分）", "## 2. 分析フェーズ（30分〜1時間）",
        "## 3. 対応フェーズ（1時間〜）", "## 4. 収束確認"]
    for cell in nb.cells[2:]:
        if cell.cell_type == "code":
            assert cell.source.startswith("# papermill_description=")
            assert not any(w in cell.source for w in ("for ", "while ", "boto3")), cell.source
