"""Issue 11, parts 3-6, at unit level (fake clients, run records on tmp dirs, no sandbox): the incident starts from
the current state (no second rollback after a converged one), impact in pooled minutes (a 1-second spike is never a
headline), 発生時刻 is the onset after the deploy, the postmortem's trigger is the deploy run before the start, and
the status report of an error spike reads as a person would write it."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import timedelta

import pandas as pd
import pytest
from incident_fakes import (
    SPIKE_B,
    SPIKE_OPENED,
    SPIKE_RUN_A,
    SPIKE_RUN_B,
    app_server,
    environment,
    history_item,
    hm,
    spike_clients,
    spike_history,
    spike_metrics,
)
from shipbook import audit, config, incident, postmortem
from shipbook.errors import ConfigError
from test_incident import FakeClient

ENDPOINTS = pd.DataFrame({"endpoint": ["/products/{id}/"], "count": [159]})


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "runs"


def opened(runs, env=None, **kw) -> incident.Incident:
    """The incident as `make incident` opens it at 15:05:30, after the automatic rollback (no START)."""
    return incident.open_incident(env or environment(), "inc-spike", "5xx after v1.0.0", runs_root=runs,
                                  now=lambda: SPIKE_OPENED, **kw)


# ------------------------------------------------------------------ the current state decides the advice


def test_after_a_converged_rollback_the_advice_is_monitor_status_report_postmortem_not_a_rollback(runs):
    spike_history(runs)
    env = environment()
    inc = incident.find_start(env, opened(runs), spike_metrics(), cloudwatch=spike_clients()["cloudwatch"])
    fakes = spike_clients()
    state = incident.current_state(env, inc, spike_metrics(), runs_root=runs, now=lambda: hm(15, 6),
                                   cloudwatch=fakes["cloudwatch"], elbv2=fakes["elbv2"])
    assert state.state == incident.CONVERGED and state.failing == []
    assert (state.rollback.run_id, state.rollback.status, state.rollback.to, state.rollback.tag) == (
        SPIKE_RUN_B, "succeeded", "v0.9.0", "v1.0.1-rollback")
    shown = dict(state.table("ja").values.tolist())
    assert shown["ロールバック"] == (f"v1.0.0 → v0.9.0, run {SPIKE_RUN_B}, tag v1.0.1-rollback, "
                                 "15:04:31–15:04:44 UTC: succeeded")
    assert shown["収束確認（今）"] == "すべて合格"
    assert shown["直近のメトリクス"] == "直近 10 分の 5xx 率 0.0%、p99 20 ms"
    impact = incident.assess(env, inc, spike_metrics(), ENDPOINTS, runs_root=runs, cloudwatch=fakes["cloudwatch"])
    decisions = incident.decision_table(impact, "ja")
    assert decisions["該当"].tolist()[0] == "はい"  # the fault did meet the criterion …
    advice = incident.advise(env, inc, state, decisions)
    assert advice.kind == "monitor" and advice.command == ""  # … but it was already rolled back and converged
    assert advice.headline.startswith("ロールバックは不要です（実施済み・収束済み）")
    assert advice.steps == ["監視: 下の「継続的なモニタリング」",
                            "状況報告: shipbook status-report inc-spike --env t --lang ja",
                            "ポストモーテム: make postmortem INCIDENT=inc-spike ENV=t"]
    assert "make rollback" not in str(advice) and "ロールバックを推奨します" not in str(advice)
    notice = str(incident.first_notice(inc, impact, state))
    assert "現在は復旧しており" in notice and "原因の調査と復旧対応を進めております" not in notice


def test_during_the_fault_a_rollback_is_recommended_with_its_command(runs):
    spike_history(runs, rollback="")  # 15:03: verify has not finished, nothing rolled back, v1.0.0 serves
    fakes = spike_clients(live_errors=4.0, alarm="ALARM")
    with app_server("v1.0.0") as url:
        env = environment(public_url=url)
        inc = incident.open_incident(env, "inc-now", runs_root=runs, now=lambda: hm(15, 3))
        metrics = spike_metrics(end=hm(15, 3))
        inc = incident.find_start(env, inc, metrics, cloudwatch=fakes["cloudwatch"])
        state = incident.current_state(env, inc, metrics, runs_root=runs, now=lambda: hm(15, 3),
                                       cloudwatch=fakes["cloudwatch"], elbv2=fakes["elbv2"])
    assert (inc.version, inc.deploy_run, inc.started) == ("v1.0.0", SPIKE_RUN_B, SPIKE_B)
    assert (state.state, state.served, state.rollback) == (incident.NOT_ROLLED_BACK, "v1.0.0", None)
    impact = incident.assess(env, inc, metrics, runs_root=runs, cloudwatch=fakes["cloudwatch"])
    advice = incident.advise(env, inc, state, incident.decision_table(impact, inc.lang))
    assert advice.kind == "rollback"
    assert str(advice).splitlines() == ["ロールバックを推奨します", "make rollback VERSION=v1.0.0 ENV=t  # → v0.9.0"]
    assert dict(state.table("en").values.tolist())["verdict"] == "v1.0.0 has not been rolled back"


def test_rolled_back_but_still_failing_says_what_fails_and_never_rolls_back_again(runs):
    spike_history(runs)
    fakes = spike_clients(live_errors=2.4)  # 3 % of requests still fail after the rollback
    with app_server("v0.9.0") as url:
        env = environment(public_url=url)
        inc = incident.find_start(env, opened(runs, env), spike_metrics(), cloudwatch=fakes["cloudwatch"])
        state = incident.current_state(env, inc, spike_metrics(), runs_root=runs, now=lambda: hm(15, 6),
                                       cloudwatch=fakes["cloudwatch"], elbv2=fakes["elbv2"])
    assert state.state == incident.ROLLED_BACK and state.served == "v0.9.0"
    assert [c.id for c in state.failing] == ["verify.errors"]
    assert state.sentence("en") == (f"v1.0.0 was rolled back (→ v0.9.0, run {SPIKE_RUN_B}, tag v1.0.1-rollback, "
                                    "15:04:31–15:04:44 UTC) but has not converged: verify.errors (5xx rate 3.00% "
                                    "over the last periods)")
    advice = incident.advise(env, dataclasses.replace(inc, lang="en"), state, pd.DataFrame(
        [["critical bug", "8.8%", "≥ 1.0%", "yes"]], columns=["criterion", "observed", "threshold", "met"]))
    assert advice.kind == "fix" and advice.command == ""
    assert advice.headline == "The rollback is done (do not run it again): look into what still fails"
    assert advice.steps[0] == "still failing: verify.errors — 5xx rate 3.00% over the last periods"


@pytest.mark.parametrize("served, rollback, verdicts, expected, failing", [
    ("v0.9.0", "succeeded", ["pass", "pass"], incident.CONVERGED, []),
    ("", "succeeded", ["pass", "warn"], incident.CONVERGED, []),  # a warning is no failure; served unknown
    ("v1.0.0", "succeeded", ["pass", "pass"], incident.ROLLED_BACK, ["current.version"]),  # still serves it
    ("v0.9.0", "succeeded", ["fail", "pass"], incident.ROLLED_BACK, ["c0"]),
    ("v1.0.0", "running", ["fail", "pass"], incident.ROLLING_BACK, ["c0"]),
    ("v1.0.0", "failed", ["fail", "pass"], incident.NOT_ROLLED_BACK, ["c0"]),
    ("v1.0.0", "", ["fail", "fail"], incident.NOT_ROLLED_BACK, ["c0", "c1"]),
    ("v1.0.1-rollback", "", ["pass", "pass"], incident.CONVERGED, []),  # rolled back by hand: a tag serves
])
def test_the_state_is_a_pure_decision_over_the_records_the_served_version_and_the_checks(
        served, rollback, verdicts, expected, failing):
    rb = incident.RollbackInfo("v1.0.0", "r1", rollback, to="v0.9.0", started="2026-11-28T15:04:20+00:00") \
        if rollback else None
    checks = [incident.Check(f"c{i}", v, "") for i, v in enumerate(verdicts)]
    state, still = incident.decide_state("v1.0.0", served, rb, checks)
    assert (state, [c.id for c in still]) == (expected, failing)


def test_the_rollback_is_read_from_the_records_after_the_suspected_deploy_only(runs):
    spike_history(runs)
    found = incident.rollback_of("t", "v1.0.0", SPIKE_B, runs)
    assert (found.run_id, found.started, found.finished) == (
        SPIKE_RUN_B, "2026-11-28T15:04:31+00:00", "2026-11-28T15:04:44+00:00")
    assert incident.rollback_of("t", "v1.0.0", hm(15, 5), runs) is None  # a rollback before this deploy is not it
    assert incident.rollback_of("t", "v0.9.0", None, runs) is None


# ------------------------------------------------------------------ impact in pooled minutes


def test_a_one_second_spike_of_few_requests_never_becomes_the_headline():
    metrics = spike_metrics()
    assert metrics["error_rate"].max() == 72.22  # the old "5xx 率 最大 72.2%": one 1-s period, 13 of 18
    impact = incident.measure(metrics, ENDPOINTS, baseline_end=SPIKE_B, since=SPIKE_B, until=hm(15, 5))
    assert (impact.requests, impact.errors, round(impact.error_rate, 2)) == (2818, 159, 5.64)
    assert (impact.peak_time, impact.peak_errors, impact.peak_requests, impact.error_rate_peak) == (
        "2026-11-28T15:02:00+00:00", 42, 480, 8.75)
    assert impact.summary("ja") == ("14:59–15:05 UTC の 5xx 率 5.6%（159/2818 件）、"
                                    "最悪の1分 15:02 UTC に 8.8%（42/480 件）。"
                                    "p99 最大 30 ms（平常時 20 ms）。対象: /products/{id}/")
    assert impact.summary("en").startswith("5xx rate 5.6% (159/2818 requests) over 14:59–15:05 UTC; "
                                           "worst minute 15:02 UTC: 8.8% (42/480).")
    # a minute holding only that second has too few requests to be judged at all
    lonely = metrics[(metrics["time"] < hm(15, 4)) | (metrics["time"] == hm(15, 4, 31))]
    pools = incident.pooled(lonely, 60, 50)
    assert pools[pools["time"] == hm(15, 4)][["requests", "errors", "enough"]].values.tolist() == [[18, 13, False]]
    assert incident.measure(lonely, since=SPIKE_B).error_rate_peak == 8.75
    nothing = incident.measure(lonely[lonely["time"] == hm(15, 4, 31)], since=hm(15, 4))
    assert nothing.peak_time == "" and nothing.error_rate_peak == 0.0
    assert "50 件以上の1分がないため最悪値なし" in nothing.summary("ja")


def test_pools_follow_the_environment_and_the_table_names_the_worst_minute(runs):
    spike_history(runs)
    env = dataclasses.replace(environment(), incident=config.IncidentSection(pool_seconds=120, min_requests=500))
    inc = dataclasses.replace(opened(runs, env), started=SPIKE_B, start_basis="errors")
    impact = incident.assess(env, inc, spike_metrics(), ENDPOINTS, runs_root=runs,
                             cloudwatch=spike_clients()["cloudwatch"])
    assert (impact.pool_seconds, impact.peak_time, impact.peak_errors, impact.peak_requests) == (
        120, "2026-11-28T15:02:00+00:00", 66, 960)
    shown = dict(impact.table("ja").values.tolist())
    assert shown["最悪の2分"] == "最悪の2分 15:02 UTC に 6.9%（66/960 件）" and shown["影響期間"] == "14:59–15:06 UTC"
    assert incident.pools_table(env, spike_metrics())["requests"].iloc[0] == 960


@pytest.mark.parametrize("text, reason", [
    ("[incident]\npool_seconds = 0\n", "positive multiple of verify.period"),
    ("[verify]\nperiod = 60\n[incident]\npool_seconds = 90\n", "positive multiple of verify.period (60), got 90"),
    ("[incident]\nmin_requests = 0\n", "at least 1"),
    ("[incident]\nmin_request = 10\n", "unknown key"),
    ('[incident]\npool_seconds = "60"\n', "expected an integer"),
])
def test_the_incident_section_is_validated_like_the_others(tmp_path, text, reason):
    path = tmp_path / "e.toml"
    path.write_text('kind = "aws"\n' + text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(reason)) as err:
        config.load_file(path, sandbox_dir=tmp_path / "none")
    assert str(err.value).startswith(f"{path}: incident.")
    defaults = config.Environment(name="x").incident
    assert (defaults.pool_seconds, defaults.min_requests) == (60, 50)


# ------------------------------------------------------------------ 発生時刻 = the onset


def test_the_onset_is_the_first_bad_minute_after_the_deploy_and_the_opening_is_kept(runs):
    spike_history(runs)
    inc = opened(runs)
    assert (inc.started, inc.start_basis, inc.deploy, inc.deploy_run) == (SPIKE_OPENED, "opened", SPIKE_B, SPIKE_RUN_B)
    assert inc.window_start == SPIKE_B - timedelta(minutes=30)  # the baseline before the deploy is in the window
    found = incident.find_start(environment(), inc, spike_metrics(), cloudwatch=spike_clients()["cloudwatch"])
    # the minute 14:59 left the baseline (20/480 against 0/…): the onset is the deploy, not the alarm at 15:01:30
    assert (found.started, found.opened, found.start_basis) == (SPIKE_B, SPIKE_OPENED, "errors")
    assert found.start_detail == "14:59 UTC: 5xx 4.2% (20/480), p99 28 ms; baseline 5xx 0.0%, p99 20 ms"
    shown = dict(found.table().values.tolist())
    assert (shown["発生時刻"], shown["起票時刻"]) == ("2026-11-28 14:59:10 UTC", "2026-11-28 15:05:30 UTC")
    assert shown["発生時刻の根拠"].startswith("デプロイ後、5xx 率が平常時を外れた最初の区間: 14:59 UTC")
    given = incident.find_start(environment(), opened(runs, started="2026-11-28T15:00:00+00:00"), spike_metrics())
    assert (given.started, given.start_basis) == (hm(15, 0), "given")  # START is the start: nothing looked up


def test_the_first_alarm_is_the_onset_when_it_comes_first_or_the_metrics_cannot_tell(runs):
    spike_history(runs)
    early = FakeClient("cloudwatch", describe_alarms=lambda **kw: {"MetricAlarms": [
        {"AlarmName": "demo-5xx", "AlarmActions": ["arn:aws:sns:r:1:alarms"], "StateValue": "OK"}]},
        describe_alarm_history=lambda **kw: {"AlarmHistoryItems": [
            history_item("demo-5xx", hm(14, 30), "OK", "ALARM"),  # before the deploy: not this incident
            history_item("demo-5xx", hm(14, 59, 5), "OK", "ALARM")]})  # before the deploy too (14:59:10)
    sparse = dataclasses.replace(environment(), incident=config.IncidentSection(min_requests=1000))
    inc = incident.find_start(sparse, opened(runs), spike_metrics(), cloudwatch=early)
    assert (inc.started, inc.start_basis) == (SPIKE_OPENED, "opened")  # no minute holds 1000 requests, no alarm after
    later = spike_clients()["cloudwatch"]
    inc = incident.find_start(sparse, opened(runs), spike_metrics(), cloudwatch=later)
    assert (inc.started, inc.start_basis, inc.start_detail) == (hm(15, 1, 30), "alarm", "demo-5xx → ALARM 15:01:30 UTC")
    pools = incident.pooled(spike_metrics(), 60, 50)
    base = incident.baseline(spike_metrics(), SPIKE_B)
    onset = incident.find_onset(pools, base, SPIKE_B, [(hm(14, 59, 40), "demo-5xx")])
    assert (onset.time, onset.basis) == (SPIKE_B, "errors")  # the minute 14:59 (from the deploy) comes first
    latency = incident.find_onset(pools.assign(error_rate=0.0, errors=0, p99=[90.0 if t >= hm(15, 0) else 20.0
                                                                             for t in pools["time"]]),
                                  base, SPIKE_B, [(hm(15, 2), "demo-latency")])
    assert (latency.time, latency.basis) == (hm(15, 0), "latency")


# ------------------------------------------------------------------ the status report of the error spike


def recorded(runs, monkeypatch, tmp_path) -> str:
    """The incident notebook's work, as its record keeps it (find_start, assess, current_state, record)."""
    monkeypatch.setenv("SHIPBOOK_WORK_DIR", str(tmp_path))
    env, fakes = environment(), spike_clients()
    inc = incident.find_start(env, opened(runs), spike_metrics(), cloudwatch=fakes["cloudwatch"])
    impact = incident.assess(env, inc, spike_metrics(), ENDPOINTS, runs_root=runs, cloudwatch=fakes["cloudwatch"])
    state = incident.current_state(env, inc, spike_metrics(), runs_root=runs, now=lambda: hm(15, 5, 40),
                                   cloudwatch=fakes["cloudwatch"], elbv2=fakes["elbv2"])
    advice = incident.advise(env, inc, state, incident.decision_table(impact, inc.lang))
    facts = incident.record(inc, impact, state.checks, "", advice.headline, state).facts
    d = incident.incident_dir("t", inc.id, runs)
    d.mkdir(parents=True)
    (d / audit.RECORD).write_text(json.dumps({"run_id": inc.id, "env": "t", "version": "", "phases": [],
                                              "facts": facts}), encoding="utf-8")
    return inc.id


def test_the_status_report_of_the_error_spike_reads_as_a_person_would_write_it(runs, monkeypatch, tmp_path):
    spike_history(runs)
    incident_id = recorded(runs, monkeypatch, tmp_path)
    fakes = spike_clients()
    ja = incident.status_report(environment(), incident_id, "ja", eta="16:00", runs_root=runs, now=lambda: hm(15, 10),
                                cloudwatch=fakes["cloudwatch"], elbv2=fakes["elbv2"])
    assert dict(ja.fields()) == {
        "発生時刻": "2026-11-28 14:59:10 UTC（起票 2026-11-28 15:05:30 UTC）",
        "影響範囲": "14:59–15:05 UTC の 5xx 率 5.6%（159/2818 件）、最悪の1分 15:02 UTC に 8.8%（42/480 件）。"
                "p99 最大 30 ms（平常時 20 ms）。対象: /products/{id}/",
        "現在の状況": (f"v1.0.0 はロールバック済み（→ v0.9.0, run {SPIKE_RUN_B}, tag v1.0.1-rollback, "
                  "15:04:31–15:04:44 UTC）で、収束しています。直近 3 分の 5xx 率 0.0%、p99 20 ms。"
                  "監視を継続しています"),
        "対応予定時間": "16:00", "次回の更新予定": "2026-11-28 15:40:00 UTC"}
    en = incident.status_report(environment(), incident_id, "en", runs_root=runs, now=lambda: hm(15, 10),
                                cloudwatch=fakes["cloudwatch"], elbv2=fakes["elbv2"])
    assert en.started == "2026-11-28 14:59:10 UTC (opened 2026-11-28 15:05:30 UTC)"
    assert en.impact.startswith("5xx rate 5.6% (159/2818 requests) over 14:59–15:05 UTC; worst minute 15:02 UTC: "
                                "8.8% (42/480)")
    assert en.current == (f"v1.0.0 was rolled back (→ v0.9.0, run {SPIKE_RUN_B}, tag v1.0.1-rollback, "
                          "15:04:31–15:04:44 UTC) and has converged; last 3 minutes: 5xx rate 0.0%, p99 20 ms; "
                          "we keep monitoring")
    for text in (ja.text(), en.text()):
        assert "72.2" not in text and "最大 72" not in text
    # the first notice and the record carry the same figures
    facts = incident.load_record("t", incident_id, runs)["facts"]
    assert facts["incident_start"] == "2026-11-28T14:59:10+00:00" and facts["incident_start_basis"] == "errors"
    assert facts["current_state"]["state"] == "converged"
    assert facts["decision"].startswith("ロールバックは不要です")


# ------------------------------------------------------------------ the postmortem's trigger


def test_the_postmortem_of_a_version_with_two_runs_names_the_later_deploy_run(runs, monkeypatch, tmp_path):
    spike_history(runs)
    incident_id = recorded(runs, monkeypatch, tmp_path)
    env = environment()
    case = postmortem.load(env, incident_id, runs_root=runs, now=lambda: hm(15, 30))
    assert (case.trigger["run_id"], case.inc.started, case.inc.opened) == (SPIKE_RUN_B, SPIKE_B, SPIKE_OPENED)
    assert case.start == SPIKE_B - timedelta(minutes=30)
    cw = spike_clients()["cloudwatch"]
    tl = postmortem.timeline(env, case, runs_root=runs, cloudwatch=cw,
                             ecs=FakeClient("ecs", describe_services=lambda **kw: {"services": []}),
                             cloudformation=FakeClient("cloudformation",
                                                       describe_stack_events=lambda **kw: {"StackEvents": []}))
    assert tl[tl["event"] == "deploy started: v1.0.0"]["source"].tolist() == [
        f"run v1.0.0 ({SPIKE_RUN_A})", f"run v1.0.0 ({SPIKE_RUN_B})"]  # both runs are in the window …
    moments = postmortem.key_moments(tl, case)
    assert moments["deploy_start"] == SPIKE_B  # … the marker is the one before the start
    assert (moments["alarm"], moments["rollback"], moments["recovery"]) == (hm(15, 1, 30), hm(15, 4, 20),
                                                                            hm(15, 5, 20))
    doc = postmortem.sections(case, moments, tl).text
    assert f"## トリガー （自動算出）\n\ndeploy v1.0.0 (run {SPIKE_RUN_B}) @ 2026-11-28 14:59:10 UTC" in doc
    assert "14:59–15:05 UTC の 5xx 率 5.6%（159/2818 件）" in doc
    chart = postmortem.impact_chart(env, case, moments, cloudwatch=cw, elbv2=spike_clients()["elbv2"])
    marker = next(line for line in chart.axes[0].lines[1:] if line.get_linestyle() == "--")
    assert pd.Timestamp(marker.get_xdata()[0]) == pd.Timestamp(SPIKE_B)
    # without the run records, the timeline's latest deploy at or before the start still beats the first one
    bare = dataclasses.replace(case, trigger=None)
    assert postmortem.key_moments(tl, bare)["deploy_start"] == SPIKE_B
