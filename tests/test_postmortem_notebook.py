"""postmortem.ipynb executed cell by cell against fake AWS clients: the merged timeline, key moments, the
SRE sections with the human parts marked to fill, its page's Japanese; alarm history read across pages."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import timedelta

import boto3
import pandas as pd
import pytest
from botocore.stub import Stubber
from incident_fakes import (
    NOTEBOOKS,
    ROLLBACK_RUN,
    T0,
    at,
    clients,
    environment,
    executed_notebook,
    headings,
    history_item,
    release_history,
    run_notebook,
)
from matplotlib.figure import Figure
from shipbook import audit, aws, config, incident, postmortem
from shipbook.redact import Redactor
from shipbook.render import render_notebook
from test_incident import FakeClient

INCIDENT_ID = "inc-20261120T150000Z-def456"
PREVENTION = ["5xx アラームの閾値を見直す", "カナリアで p99 を監視"]
FILL = "**✍ 記入してください** （要記入）"


def incident_record(runs, env) -> None:
    """The incident as the runner recorded it after incident.ipynb ran, and two status reports."""
    d = runs / "t" / "incidents" / INCIDENT_ID
    d.mkdir(parents=True)
    impact = incident.Impact("2026-11-20T14:30:00+00:00", "2026-11-20T15:20:00+00:00", requests=15000,
                             errors=480, error_rate_peak=8.0, p99_peak=90.0, p99_baseline=20.0,
                             endpoints=["/products/{id}/"], alarms=["demo-5xx"],
                             impact_start="2026-11-20T14:50:00+00:00", impact_end="2026-11-20T15:09:00+00:00",
                             peak_time="2026-11-20T14:52:00+00:00", peak_requests=750, peak_errors=60,
                             pool_seconds=60, min_requests=50)
    facts = {"incident_id": INCIDENT_ID, "incident_title": "商品ページで 500 エラー",
             "incident_start": "2026-11-20T15:00:00+00:00", "suspected_version": "v1.0.0",
             "rollback_target": "v0.9.0", "incident_lang": "ja", "impact": asdict(impact),
             "decision": "ロールバックを推奨します", "prevention_items": PREVENTION}
    (d / audit.RECORD).write_text(json.dumps({"run_id": INCIDENT_ID, "kind": "incident", "env": "t",
                                              "version": "v1.0.0", "started": "2026-11-20T15:01:00+00:00",
                                              "phases": [], "facts": facts}), encoding="utf-8")
    incident.status_report(env, INCIDENT_ID, "ja", current="調査中", runs_root=runs, now=lambda: at(3))
    incident.status_report(env, INCIDENT_ID, "en", runs_root=runs, now=lambda: at(15))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """postmortem.ipynb run once for the module: (page, fake clients, result.json, status reports)."""
    tmp = tmp_path_factory.mktemp("postmortem")
    runs = tmp / "runs"
    release_history(runs)
    fakes = clients()
    env = environment()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIPBOOK_RUNS_DIR", str(runs))
        mp.setattr(aws, "client", lambda env, service: fakes[service])
        mp.setattr(config, "load", lambda name: env)
        mp.setenv("SHIPBOOK_WORK_DIR", str(tmp))
        incident_record(runs, env)
        for fake in fakes.values():
            fake.calls.clear()  # what the status reports asked for is not the notebook's
        page = run_notebook(NOTEBOOKS / "postmortem.ipynb", {"env": "t", "run_id": INCIDENT_ID, "lang": ""})
    result = json.loads((tmp / "result.json").read_text(encoding="utf-8"))
    return page, fakes, result, incident.status_reports("t", INCIDENT_ID, runs)


def test_the_timeline_merges_every_source_in_time_order(executed):
    page, _fakes, _result, reports = executed
    case, tl = page.ns["case"], page.ns["timeline"]
    assert (case.lang, case.inc.version, case.inc.previous_version) == ("ja", "v1.0.0", "v0.9.0")
    assert case.inc.started == T0  # the start the notebook found, not when the record was written
    assert (case.start, case.end) == (at(-40), T0 + timedelta(hours=6))  # 30 minutes before the deploy
    assert list(tl["time"]) == sorted(tl["time"])
    assert set(tl["source"]) == {"run v1.0.0 (20261120T144900Z-aaaaaa)", f"run v1.0.0 ({ROLLBACK_RUN})",
                                 "run v1.0.1 (20261120T150500Z-cccccc)", "CloudWatch", "ECS", "CloudFormation",
                                 "incident", "status report"}
    events = tl["event"].tolist()
    assert "demo-5xx: OK → ALARM" in events and "demo-5xx: ALARM → OK" in events
    assert not any("other-team-alarm" in e for e in events)  # not a watched alarm
    assert not any("v0.9.0" in e for e in events)  # two days before: outside the window
    assert "Vpc CREATE_COMPLETE" not in events and "too old for the window" not in tl["detail"].tolist()
    # the status reports: the one written as 調査中, the other measured (live metrics, the rollback since the start)
    assert [r["current"] for r in reports][0] == "調査中"
    assert reports[1]["current"].startswith(f"v1.0.0 was rolled back (→ v0.9.0, run {ROLLBACK_RUN}, ")
    assert tl[tl["source"] == "status report"]["time"].tolist() == [at(3), at(15)]


def test_key_moments_durations_and_the_impact_chart(executed):
    page, fakes, _result, _reports = executed
    moments = page.ns["moments"]
    assert moments == {"deploy_start": at(-10), "alarm": at(-7), "rollback": at(8), "recovery": at(12)}
    shown = [s.value for s in page.outputs()]
    table, durations = shown[1], shown[2]
    assert table["t+min"].tolist() == [0.0, 3.0, 18.0, 22.0]
    assert table.iloc[:, 0].tolist() == ["デプロイ開始", "アラーム", "ロールバック", "回復"]
    assert dict(durations.values.tolist()) == {"検知までの時間": "3.0 分", "緩和までの時間": "19.0 分",
                                               "影響時間": "22.0 分"}
    chart = next(v for v in shown if isinstance(v, Figure))
    assert chart.get_suptitle() == "商品ページで 500 エラー — 障害期間の影響"
    assert [t.get_text() for t in chart.axes[0].texts] == ["デプロイ開始", "アラーム", "ロールバック", "回復"]
    (window,) = [(kw["StartTime"], kw["EndTime"]) for name, kw in fakes["cloudwatch"].calls
                 if name == "get_metric_data"]
    assert window == (at(-40), T0 + timedelta(hours=6))


def _section(doc: str, heading: str) -> str:
    """The text under `## heading` (or `### heading`) up to the next heading."""
    blocks = doc.split("\n\n")
    start = next(i for i, b in enumerate(blocks) if b.lstrip("#").strip() == heading)
    body = []
    for b in blocks[start + 1:]:
        if b.startswith("#"):
            break
        body.append(b)
    return "\n\n".join(body)


def test_the_sre_sections_fill_what_is_computed_and_mark_what_people_write(executed):
    page, _fakes, result, _reports = executed
    doc = next(s.value for s in page.outputs() if isinstance(s.value, postmortem.Document)).text
    found = [b.split("\n")[0] for b in doc.split("\n\n") if b.startswith("#")]
    assert found == ["# ポストモーテム: 商品ページで 500 エラー", "## 概要", "## 影響 （自動算出）", "## 根本原因",
                     "## トリガー （自動算出）", "## 解決策 （自動算出）", "## 検知 （自動算出）",
                     "## アクションアイテム", "## 教訓", "### うまくいったこと", "### うまくいかなかったこと",
                     "### 運が良かったこと", "## タイムライン （自動算出）"]
    for human in ("概要", "根本原因", "うまくいったこと", "うまくいかなかったこと", "運が良かったこと"):
        assert _section(doc, human) == FILL, human
    assert _section(doc, "影響 （自動算出）").startswith(
        "14:50–15:09 UTC の 5xx 率 3.2%（480/15000 件）、最悪の1分 14:52 UTC に 8.0%（60/750 件）")
    assert _section(doc, "トリガー （自動算出）") == (
        "deploy v1.0.0 (run 20261120T144900Z-aaaaaa) @ 2026-11-20 14:50:00 UTC")
    assert _section(doc, "解決策 （自動算出）") == "ロールバック → v0.9.0 @ 2026-11-20 15:08:00 UTC"
    assert _section(doc, "検知 （自動算出）") == "demo-5xx @ 2026-11-20 14:53:00 UTC"
    rows = _section(doc, "アクションアイテム").splitlines()
    assert rows[0] == "| アクション | 種類 | 担当 | 期限 |"
    assert rows[2:] == [f"| {p} | 種類: prevent | ✍ 記入してください | ✍ 記入してください |" for p in PREVENTION]
    # the whole timeline follows, every row (a DataFrame would show only 60)
    view = next(s.value for s in page.outputs() if isinstance(s.value, postmortem.TimelineView))
    assert view._repr_html_().count("<tr") == len(page.ns["timeline"]) + 1  # and the header row
    # the record: key moments as facts, the timeline in order
    assert result["phase"] == "postmortem" and result["blocking"] == [] and result["verdict"] == "pass"
    assert result["facts"] == {"postmortem_deploy_start": "2026-11-20T14:50:00+00:00",
                               "postmortem_alarm": "2026-11-20T14:53:00+00:00",
                               "postmortem_rollback": "2026-11-20T15:08:00+00:00",
                               "postmortem_recovery": "2026-11-20T15:12:00+00:00", "postmortem_lang": "ja"}
    assert "key moments in order" in result["checks"][0]["summary"]


def test_the_rendered_postmortem_page_keeps_its_japanese(executed, tmp_path):
    page, _fakes, _result, _reports = executed
    paths = render_notebook(executed_notebook(page), tmp_path, "postmortem.ja", Redactor(), title="postmortem")
    raw = paths["stakeholder"].read_bytes()
    html = raw.decode("utf-8")
    assert re.search(r'<meta charset="utf-8"\s*/?>', html[:html.index("</head>")], re.I)
    found = [text for tag, text in headings(html) if tag == "h2"]
    for heading in ("概要", "影響 （自動算出）", "根本原因", "アクションアイテム", "教訓", "タイムライン （自動算出）"):
        assert heading in found, (heading, found)
        assert heading.encode("utf-8") in raw
    assert "✍ 記入してください".encode() in raw and "<table" in html
    assert "ã" not in html and "\ufffd" not in html


# ------------------------------------------------------------------ units


def test_alarm_history_is_read_across_every_page():
    cw = boto3.client("cloudwatch", region_name="ap-northeast-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    env = environment()
    start, end = at(-40), at(60)
    base = {"StartDate": start, "EndDate": end, "HistoryItemType": "StateUpdate", "ScanBy": "TimestampAscending",
            "MaxRecords": 100}
    broken = {**history_item("demo-5xx", at(30), "OK", "ALARM"), "HistoryData": "{not json",
              "HistorySummary": "Alarm updated from OK to ALARM"}
    pages = [
        ([history_item("demo-5xx", at(-7), "OK", "ALARM", "Threshold Crossed"),
          history_item("other-team-alarm", at(-6), "OK", "ALARM")], "page-2"),
        ([history_item("demo-latency", at(1), "OK", "ALARM", "p99 > 50 ms")], "page-3"),
        ([history_item("demo-5xx", at(12), "ALARM", "OK", "Threshold no longer crossed"), broken], None),
    ]
    watched = [{"AlarmName": name, "AlarmActions": ["arn:aws:sns:ap-northeast-1:123456789012:alarms"],
                "StateValue": "OK"} for name in ("demo-5xx", "demo-latency")]
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", {"MetricAlarms": watched + [
            {"AlarmName": "other-team-alarm", "AlarmActions": ["arn:aws:sns:ap-northeast-1:123456789012:other"]}]},
            {"AlarmTypes": ["MetricAlarm"]})
        token = None
        for items, next_token in pages:
            response = {"AlarmHistoryItems": items, **({"NextToken": next_token} if next_token else {})}
            stub.add_response("describe_alarm_history", response, {**base, **({"NextToken": token} if token else {})})
            token = next_token
        events = postmortem.alarm_events(env, start, end, cloudwatch=cw)
        stub.assert_no_pending_responses()  # all three pages asked for, each with the token of the one before
    assert [(e["time"], e["event"]) for e in events] == [
        (at(-7), "demo-5xx: OK → ALARM"), (at(1), "demo-latency: OK → ALARM"), (at(12), "demo-5xx: ALARM → OK"),
        (at(30), "demo-5xx: ? → ?")]
    assert [e["detail"] for e in events] == ["Threshold Crossed", "p99 > 50 ms", "Threshold no longer crossed",
                                             "Alarm updated from OK to ALARM"]
    assert {e["source"] for e in events} == {"CloudWatch"}


def test_the_impact_chart_marks_only_the_known_moments():
    fakes = clients()
    case = postmortem.Case("t", "inc-x", {}, [], incident.Incident("inc-x", "t", "", T0, "v1.0.0", lang="en"),
                           at(-40), at(20), "en")
    fig = postmortem.impact_chart(environment(), case, {"deploy_start": at(-10), "alarm": at(-7), "rollback": None,
                                                        "recovery": None},
                                  cloudwatch=fakes["cloudwatch"], elbv2=fakes["elbv2"])
    assert fig.get_suptitle() == "inc-x — Impact over the incident window"  # no title: the id
    assert [t.get_text() for t in fig.axes[0].texts] == ["deploy start", "alarm"]
    err = fig.axes[0].lines[0].get_ydata()
    assert max(err) == 8.0 and err[0] == 0.0  # 5xx rate: healthy before the deploy, 8 % after
    (name, kw), = fakes["cloudwatch"].calls
    assert name == "get_metric_data" and (kw["StartTime"], kw["EndTime"]) == (at(-40), at(20))
    empty = FakeClient("cloudwatch", get_metric_data=lambda **kw: {"MetricDataResults": []})
    nothing = postmortem.impact_chart(environment(), case, {}, cloudwatch=empty, elbv2=fakes["elbv2"])
    assert [t.get_text() for t in nothing.axes[0].texts] == ["none"]


# ------------------------------------------------------------------ bugs found


def test_the_history_of_a_watched_alarm_on_a_later_page_is_kept():
    topic = "arn:aws:sns:ap-northeast-1:123456789012:alarms"
    pages = {None: {"MetricAlarms": [{"AlarmName": f"quiet-{i}", "AlarmActions": [topic]} for i in range(100)],
                    "NextToken": "page-2"},
             "page-2": {"MetricAlarms": [{"AlarmName": "demo-5xx", "AlarmActions": [topic]}]}}
    cw = FakeClient("cloudwatch", describe_alarms=lambda **kw: pages[kw.get("NextToken")],
                    describe_alarm_history=lambda **kw: {"AlarmHistoryItems": [
                        history_item("demo-5xx", at(-7), "OK", "ALARM")]})
    events = postmortem.alarm_events(environment(), at(-40), at(60), cloudwatch=cw)
    assert [e["event"] for e in events] == ["demo-5xx: OK → ALARM"]


def test_detection_is_the_alarm_after_the_deploy_as_in_the_key_moments():
    rows = [(at(-30), "CloudWatch", "demo-latency: OK → ALARM"), (at(-28), "CloudWatch", "demo-latency: ALARM → OK"),
            (at(-10), "run v1.0.0 (r1)", "deploy started: v1.0.0"), (at(-7), "CloudWatch", "demo-5xx: OK → ALARM"),
            (at(8), "run v1.0.0 (r2)", "rollback started"), (at(12), "CloudWatch", "demo-5xx: ALARM → OK")]
    tl = pd.DataFrame([{"time": t, "source": s, "event": e, "detail": ""} for t, s, e in rows],
                      columns=postmortem.COLUMNS)
    inc = incident.Incident("inc-1", "t", "", T0, "v1.0.0", "v0.9.0", "en")
    case = postmortem.Case("t", "inc-1", {}, [], inc, at(-40), at(60), "en", {})
    moments = postmortem.key_moments(tl, case)
    assert moments["alarm"] == at(-7)
    assert dict(postmortem.durations(moments, "en").values.tolist())["time to detect"] == "3.0 min"
    doc = postmortem.sections(case, moments, tl).text
    assert _section(doc, "Detection (computed)") == "demo-5xx @ 2026-11-20 14:53:00 UTC"
