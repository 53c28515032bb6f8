"""Postmortem: sources merged in time order, key moments, durations, SRE sections with fields to fill."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from shipbook import config, incident, postmortem
from test_incident import FakeClient, _incident_record, env

T0 = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _release_run(tmp_path) -> None:
    d = tmp_path / "t" / "v1.0.0" / "20261128T145500Z-bbbbbb"
    d.mkdir(parents=True)
    phases = [{"name": "deploy", "status": "succeeded", "verdict": "pass", "started": at(-6).isoformat(),
               "finished": at(-4).isoformat(), "blocking": []},
              {"name": "rollback", "status": "succeeded", "verdict": "pass", "started": at(5).isoformat(),
               "finished": at(7).isoformat(), "blocking": []}]
    (d / "run.json").write_text(json.dumps({"run_id": d.name, "env": "t", "version": "v1.0.0", "phases": phases,
                                            "facts": {"deploy_started": at(-5).isoformat(),
                                                      "deploy_finished": at(-4).isoformat()}}))


def _clients():
    alarm = {"AlarmName": "demo-5xx", "AlarmActions": ["arn:aws:sns:r:1:alarms"], "StateValue": "OK"}

    def history(**kw):
        def item(t, old, new):
            return {"AlarmName": "demo-5xx", "Timestamp": t, "HistoryItemType": "StateUpdate",
                    "HistoryData": json.dumps({"oldState": {"stateValue": old}, "newState": {"stateValue": new}})}
        return {"AlarmHistoryItems": [item(at(-2), "OK", "ALARM"), item(at(9), "ALARM", "OK")]}

    cw = FakeClient("cloudwatch", describe_alarms=lambda **kw: {"MetricAlarms": [alarm]},
                    describe_alarm_history=history)
    ecs = FakeClient("ecs", describe_services=lambda **kw: {"services": [{"events": [
        {"createdAt": at(8), "message": "(service svc) has reached a steady state."},
        {"createdAt": at(-300), "message": "too old"}]}]})
    cfn = FakeClient("cloudformation", describe_stack_events=lambda **kw: {"StackEvents": [
        {"Timestamp": at(6), "LogicalResourceId": "Service", "ResourceStatus": "UPDATE_COMPLETE"},
        {"Timestamp": at(-4.5), "LogicalResourceId": "Service", "ResourceStatus": "UPDATE_IN_PROGRESS"},
        {"Timestamp": at(-600), "LogicalResourceId": "Vpc", "ResourceStatus": "CREATE_COMPLETE"}]})
    return cw, ecs, cfn


def test_timeline_key_moments_and_sections(tmp_path):
    e = env()
    _incident_record(tmp_path)
    _release_run(tmp_path)
    incident.status_report(e, "inc-1", "ja", current="調査中", runs_root=tmp_path, now=lambda: at(3))
    incident.status_report(e, "inc-1", "en", current="recovered", runs_root=tmp_path, now=lambda: at(12))
    case = postmortem.load(e, "inc-1", runs_root=tmp_path, now=lambda: at(20))
    assert case.lang == "ja" and case.inc.version == "v1.0.0" and case.start == at(-35)
    cw, ecs, cfn = _clients()
    tl = postmortem.timeline(e, case, runs_root=tmp_path, cloudwatch=cw, ecs=ecs, cloudformation=cfn)
    assert list(tl["time"]) == sorted(tl["time"])
    assert set(tl["source"]) == {"run v1.0.0 (20261128T145500Z-bbbbbb)", "CloudWatch", "ECS", "CloudFormation",
                                 "incident", "status report"}
    assert "too old" not in tl["detail"].tolist() and "Vpc CREATE_COMPLETE" not in tl["event"].tolist()
    moments = postmortem.key_moments(tl, case)
    assert moments == {"deploy_start": at(-5), "alarm": at(-2), "rollback": at(5), "recovery": at(9)}
    assert postmortem.in_order(moments)
    durations = dict(postmortem.durations(moments, "en").values.tolist())
    assert durations == {"time to detect": "3.0 min", "time to mitigate": "11.0 min", "duration of impact": "14.0 min"}
    doc = postmortem.sections(case, moments, tl)._repr_markdown_()
    for heading in ("概要", "影響", "根本原因", "トリガー", "解決策", "検知", "アクションアイテム", "うまくいったこと",
                    "うまくいかなかったこと", "運が良かったこと", "タイムライン"):
        assert f" {heading}" in doc
    assert doc.count("✍ 記入してください") >= 5  # summary, root causes, lessons: people write them
    assert "deploy v1.0.0 (run 20261128T145500Z-bbbbbb) @ 2026-11-28 14:55:00 UTC" in doc
    assert "demo-5xx @ 2026-11-28 14:58:00 UTC" in doc
    assert "| 担当 | 期限 |" in doc.replace("| 種類 ", "")
    assert "<table" in postmortem.TimelineView(tl)._repr_html_()


def test_missing_moments_are_not_in_order(tmp_path):
    e = config.Environment(name="t", kind="sandbox")
    _incident_record(tmp_path)
    case = postmortem.load(e, "inc-1", "en", runs_root=tmp_path, now=lambda: at(20))
    tl = postmortem.timeline(e, case, runs_root=tmp_path, cloudwatch=FakeClient(
        "cloudwatch", describe_alarms=lambda **kw: {"MetricAlarms": []},
        describe_alarm_history=lambda **kw: {"AlarmHistoryItems": []}),
        ecs=FakeClient("ecs", describe_services=lambda **kw: {"services": []}))
    moments = postmortem.key_moments(tl, case)
    assert moments["alarm"] is None and not postmortem.in_order(moments)
    assert postmortem.moments_table(moments, "en")["t+min"].isna().all()
