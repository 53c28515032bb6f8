"""Incident functions one by one, against run records in a temp dir and fake AWS clients: opening an incident,
the impact against the right baseline, recent deploys, ECS events, chart marks, prevention items, the record,
現在の状況 of a status report, and how `shipbook incident` hands its parameters to the runner."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from datetime import timedelta

import pandas as pd
import pytest
from incident_fakes import (
    DEPLOY,
    RELEASE_RUN,
    ROLLBACK_RUN,
    T0,
    at,
    clients,
    environment,
    iso,
    metric_data,
    phase,
    release_history,
    write_run,
)
from shipbook import audit, incident, standalone
from shipbook.errors import AwsError, InputError
from test_incident import FakeClient


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    release_history(root)
    return root


def git_repo(path, *tags: str):
    path.mkdir()
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], check=True)
    for tag in tags:
        subprocess.run([*git, "tag", tag], check=True)
    return path


# ------------------------------------------------------------------ open_incident


def test_an_incident_opened_without_details_suspects_the_last_deploy_before_it(runs):
    inc = incident.open_incident(environment(), runs_root=runs, now=lambda: T0)
    assert (inc.started, inc.version, inc.previous_version) == (T0, "v1.0.0", "v0.9.0")  # not v1.0.1, deployed after
    assert inc.id.startswith("inc-20261120T150000Z-") and inc.lang == "ja" and inc.env == "t"
    assert (inc.deploy, inc.deploy_run, inc.opened, inc.start_basis) == (DEPLOY, RELEASE_RUN, T0, "opened")
    assert inc.window_start == at(-40)  # 30 minutes before the suspected deploy: its baseline is in the window
    later = incident.open_incident(environment(), started="2026-11-21T00:06:00+09:00", lang="en",
                                   lookback_minutes=5, runs_root=runs, now=lambda: at(999))
    assert (later.started, later.version, later.previous_version) == (at(6), "v1.0.1", "v1.0.0")
    assert later.lang == "en" and later.window_start == at(0) and later.start_basis == "given"
    shown = dict(later.table().values.tolist())
    assert (shown["Started"], shown["Opened"]) == ("2026-11-20 15:06:00 UTC", "2026-11-21 07:39:00 UTC")
    assert shown["Suspected deploy"] == "2026-11-20 15:05:00 UTC (run 20261120T150500Z-cccccc)"


def test_the_rollback_target_of_a_named_version_comes_from_its_record_else_from_the_tags(runs, tmp_path):
    env = dataclasses.replace(environment(), app=dataclasses.replace(
        environment().app, repo=str(git_repo(tmp_path / "app", "v0.9.0", "v1.0.0", "v1.1.0-rc.1", "v1.0.1-rollback"))))
    named = incident.open_incident(env, "inc-1", version="v1.0.0", runs_root=runs, now=lambda: T0)
    assert (named.id, named.version, named.previous_version) == ("inc-1", "v1.0.0", "v0.9.0")
    unrecorded = incident.open_incident(env, version="v1.1.0", runs_root=runs, now=lambda: T0)
    assert unrecorded.previous_version == "v1.0.0"  # neither the release candidate nor the rollback tag
    given = incident.open_incident(env, version="v1.1.0", previous_version="v0.9.0", runs_root=runs, now=lambda: T0)
    assert given.previous_version == "v0.9.0"
    nothing = incident.open_incident(environment(), runs_root=runs / "empty", now=lambda: T0)
    assert (nothing.version, nothing.previous_version) == ("", "")
    assert incident.rollback_command(environment(), nothing).startswith("# ")  # no command made up
    with pytest.raises(InputError, match="start"):
        incident.open_incident(environment(), started="yesterday afternoon", runs_root=runs)


# ------------------------------------------------------------------ assess, marks


def _metrics() -> pd.DataFrame:
    """From T0-12: p99 20 ms until the deploy (T0-10), 60 ms after it, 8 % 5xx from the start."""
    series = {k: {} for k in ("requests", "errors", "p50", "p95", "p99")}
    t = at(-12)
    while t < at(5):
        series["requests"][t], series["errors"][t] = 100.0, 8.0 if t >= T0 else 0.0
        series["p50"][t], series["p95"][t] = 0.01, 0.02
        series["p99"][t] = 0.02 if t < DEPLOY else 0.06
        t += timedelta(seconds=10)
    return incident.metrics_frame(series)


def test_the_impact_is_measured_against_the_p99_before_the_suspected_deploy(runs):
    cw = clients()["cloudwatch"]
    inc = incident.Incident("inc-1", "t", "", T0, "v1.0.0", "v0.9.0")
    eps = pd.DataFrame({"endpoint": ["/products/{id}/"], "count": [3]})
    impact = incident.assess(environment(), inc, _metrics(), eps, runs_root=runs, cloudwatch=cw)
    assert impact.p99_baseline == 20.0 and impact.p99_peak == 60.0 and impact.error_rate_peak == 8.0
    assert impact.alarms == ["demo-5xx"] and impact.endpoints == ["/products/{id}/"]
    assert cw.calls == [("describe_alarms", {"AlarmTypes": ["MetricAlarm"]})]
    # a deploy older than the window is not a baseline: the minutes before the start are
    short = dataclasses.replace(inc, lookback=timedelta(minutes=5))
    assert incident.assess(environment(), short, _metrics(), runs_root=runs, cloudwatch=cw).p99_baseline == 60.0
    unknown = dataclasses.replace(inc, version="v2.0.0")
    assert incident.assess(environment(), unknown, _metrics(), runs_root=runs, cloudwatch=cw).p99_baseline == 60.0


def test_marks_are_the_deploy_the_start_and_the_rollbacks_in_the_window(runs):
    write_run(runs, "v1.0.0", "20261120T140000Z-dddddd", phases=[phase("rollback", at(-60))])  # before the window
    inc = incident.Incident("inc-1", "t", "", T0, "v1.0.0", "v0.9.0", "ja")
    assert incident.marks(environment(), inc, runs) == {"deploy v1.0.0": DEPLOY, "発生": T0,
                                                        "rollback v1.0.0": at(8)}
    stranger = incident.Incident("inc-2", "t", "", T0, "v3.0.0", lang="en")
    assert incident.marks(environment(), stranger, runs) == {"start": T0, "rollback v1.0.0": at(8)}


# ------------------------------------------------------------------ analysis


def test_recent_deploys_are_newest_first_with_their_rollback(runs):
    write_run(runs, "v1.0.0", "20261120T150900Z-eeeeee", phases=[phase("precheck", at(9))])  # never deployed
    write_run(runs, "v0.9.1", "20261120T100000Z-ffffff", facts={"deploy_started": iso(at(-300))},
              phases=[phase("deploy", at(-300)), phase("rollback", at(-290), status="failed")])
    inc = incident.Incident("inc-1", "t", "", T0, "v1.0.0")
    df = incident.recent_deploys(environment(), inc, runs_root=runs)
    assert df[["version", "run_id", "rollback", "minutes_before_incident"]].values.tolist() == [
        ["v1.0.1", "20261120T150500Z-cccccc", "—", -5.0], ["v1.0.0", RELEASE_RUN, "—", 10.0],
        ["v0.9.1", "20261120T100000Z-ffffff", "failed", 300.0]]
    assert df["deploy_finished"].tolist() == ["—", "2026-11-20 14:52:00 UTC", "—"]
    wider = incident.recent_deploys(environment(), inc, hours=72, runs_root=runs)
    assert wider["version"].tolist()[-1] == "v0.9.0"  # two days before: only in a wider look-back


def test_ecs_events_of_the_window_oldest_first():
    ecs = clients()["ecs"]
    df = incident.ecs_events(environment(), at(-30), at(20), ecs=ecs)
    assert df["time"].tolist() == [at(-9.8), at(9)] and set(df["source"]) == {"ECS"}
    assert df["detail"].tolist()[1] == "(service svc) has reached a steady state."
    assert ecs.calls == [("describe_services", {"cluster": "c", "services": ["svc"]})]
    none = incident.ecs_events(environment(), at(-30), at(20),
                               ecs=FakeClient("ecs", describe_services=lambda **kw: {"services": []}))
    assert none.empty and list(none.columns) == incident.EVENT_COLUMNS


# ------------------------------------------------------------------ convergence


def test_prevention_items_one_per_line_or_the_field_to_fill():
    assert incident.prevention_table("  アラームを追加 \n\n ロールバック手順の訓練\n", "ja").values.tolist() == [
        ["アラームを追加"], ["ロールバック手順の訓練"]]
    table = incident.prevention_table(["canary p99 alarm", " "], "en")
    assert list(table.columns) == ["Prevention items"] and table.values.tolist() == [["canary p99 alarm"]]
    assert incident.prevention_table("", "ja").values.tolist() == [["✍ 記入してください"]]


def test_the_record_tells_the_runner_the_facts_and_never_blocks(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPBOOK_WORK_DIR", str(tmp_path))
    inc = incident.Incident("inc-1", "t", "商品ページ", T0, "v1.0.0", "v0.9.0", "en")
    impact = incident.Impact("a", "b", requests=10, errors=1, error_rate_peak=10.0, alarms=["demo-5xx"])
    checks = [incident.Check("verify.health", "pass", "200"), incident.Check("verify.alarms", "fail", "demo-5xx")]
    returned = incident.record(inc, impact, checks, "one\n\n two ", "Rollback recommended")
    written = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert written["blocking"] == [] and written["verdict"] == "fail" and returned.blocking == []
    assert [c["id"] for c in written["checks"]] == ["verify.health", "verify.alarms"]
    assert written["facts"] == {
        "incident_id": "inc-1", "incident_title": "商品ページ", "incident_start": "2026-11-20T15:00:00+00:00",
        "incident_opened": "2026-11-20T15:00:00+00:00", "incident_start_basis": "given",
        "suspected_version": "v1.0.0", "suspected_deploy": "", "suspected_deploy_run": "",
        "rollback_target": "v0.9.0", "incident_lang": "en",
        "impact": json.loads(json.dumps(dataclasses.asdict(impact))), "decision": "Rollback recommended",
        "current_state": {}, "prevention_items": ["one", "two"]}
    assert incident.record(inc, impact, checks, ["x", ""]).facts["prevention_items"] == ["x"]


# ------------------------------------------------------------------ 現在の状況 of a status report


def _incident_dir(runs, incident_id="inc-1"):
    d = runs / "t" / "incidents" / incident_id
    d.mkdir(parents=True)
    (d / audit.RECORD).write_text(json.dumps({"run_id": incident_id, "env": "t", "phases": [], "facts": {
        "incident_start": iso(T0), "impact": {"window_start": "", "window_end": "", "error_rate_peak": 8.0}}}))


def test_the_current_status_says_the_live_rates_and_the_rollback_since_the_start(runs):
    _incident_dir(runs)
    fakes = clients()
    rep = incident.status_report(environment(), "inc-1", "ja", runs_root=runs, now=lambda: at(20),
                                 cloudwatch=fakes["cloudwatch"], elbv2=fakes["elbv2"])
    # no suspected version in this record: the newest rollback since the start, of any version; the watched
    # alarm still fires, so it has not converged
    assert rep.current == (f"v1.0.0 はロールバック済み（→ v0.9.0, run {ROLLBACK_RUN}, 15:08:00–15:10:00 UTC）"
                           "ですが、まだ収束していません: verify.alarms (in ALARM: demo-5xx)。"
                           "直近 3 分の 5xx 率 0.0%、p99 20 ms")
    assert dict(rep.fields())["現在の状況"] == rep.current
    window = [(kw["StartTime"], kw["EndTime"]) for name, kw in fakes["cloudwatch"].calls if name == "get_metric_data"]
    assert window == [(at(17), at(20))]
    assert incident.status_reports("t", "inc-1", runs)[0]["current"] == rep.current
    during = incident.current_status(environment(), T0, "en", at(5), runs_root=runs, cloudwatch=fakes["cloudwatch"],
                                     elbv2=fakes["elbv2"])
    assert during.endswith("last 3 minutes: 5xx rate 8.0%, p99 90 ms")


def test_the_newest_rollback_is_reported_and_missing_metrics_are_left_out(runs):
    write_run(runs, "v1.0.0", "20261120T151500Z-gggggg", phases=[phase("rollback", at(15), status="running")])
    write_run(runs, "v0.9.0", "20261120T140000Z-hhhhhh", phases=[phase("rollback", at(-60))])  # before the start

    def unreachable(**kw):
        raise AwsError("elasticloadbalancing", "DescribeTargetGroups", "AccessDenied", "no")

    elbv2 = FakeClient("elasticloadbalancing", describe_target_groups=unreachable)
    text = incident.current_status(environment(), T0, "en", at(20), runs_root=runs, elbv2=elbv2,
                                   cloudwatch=FakeClient("cloudwatch", get_metric_data=metric_data))
    assert text == "the rollback of v1.0.0 is running (→ ?, run 20261120T151500Z-gggggg, 15:15:00–15:17:00 UTC)"
    assert incident.current_status(environment(), at(30), "ja", at(40), runs_root=runs, elbv2=elbv2) == \
        "ロールバックは行われていません"


# ------------------------------------------------------------------ shipbook incident → the runner


def test_open_and_run_gives_the_runner_a_new_id_and_the_parameters(monkeypatch, runs):
    calls = []
    monkeypatch.setattr(standalone, "run_standalone", lambda *a, **kw: calls.append((a, kw)) or "rec")
    assert standalone.open_and_run(environment(), title="500 on products", started="2026-11-21T00:00:00+09:00",
                                   version="v1.0.0", runs_root=runs, now=lambda: at(30)) == "rec"
    (args, kw), = calls
    env, kind, incident_id, params = args
    assert (env.name, kind) == ("t", "incident") and incident_id.startswith("inc-20261120T150000Z-")
    assert params == {"incident_start": "2026-11-20T15:00:00+00:00", "incident_opened": "2026-11-20T15:30:00+00:00",
                      "title": "500 on products", "lang": "ja"}
    assert kw["version"] == "v1.0.0" and kw["runs_root"] == runs
    standalone.open_and_run(environment(), lang="en", runs_root=runs, now=lambda: at(30))
    # no start given: the notebook finds the onset; the opening is its own parameter (a re-run keeps it)
    assert calls[1][0][3] == {"incident_start": "", "incident_opened": "2026-11-20T15:30:00+00:00", "title": "",
                              "lang": "en"}
    with pytest.raises(InputError, match="--version"):
        standalone.open_and_run(environment(), version="1.0", runs_root=runs)
    with pytest.raises(InputError, match="lang"):
        standalone.open_and_run(environment(), lang="fr", runs_root=runs)
    assert len(calls) == 2  # bad input starts nothing


def test_converge_adds_prevention_items_to_the_ones_recorded(monkeypatch, runs):
    d = runs / "t" / "incidents" / "inc-1"
    d.mkdir(parents=True)
    (d / audit.RECORD).write_text(json.dumps({"run_id": "inc-1", "env": "t", "version": "v1.0.0", "phases": [],
                                              "parameters": {"prevention": "more alarms"}, "facts": {}}))
    calls = []
    monkeypatch.setattr(standalone, "run_standalone", lambda *a, **kw: calls.append((a, kw)))
    standalone.converge(environment(), "inc-1", ["canary p99", "more alarms", " "], lang="en", runs_root=runs)
    (args, kw), = calls
    assert args[1:] == ("incident", "inc-1", {"prevention": "more alarms\ncanary p99", "lang": "en"})
    assert kw["version"] == "v1.0.0"
    with pytest.raises(InputError, match="no incident"):
        standalone.converge(environment(), "inc-404", ["x"], runs_root=runs)


# ------------------------------------------------------------------ bugs found


def test_a_firing_alarm_on_a_later_page_of_describe_alarms_is_seen():
    topic = "arn:aws:sns:ap-northeast-1:123456789012:alarms"
    pages = {None: {"MetricAlarms": [{"AlarmName": f"quiet-{i}", "AlarmActions": [topic], "StateValue": "OK"}
                                     for i in range(100)], "NextToken": "page-2"},
             "page-2": {"MetricAlarms": [{"AlarmName": "demo-5xx", "AlarmActions": [topic], "StateValue": "ALARM"}]}}
    cw = FakeClient("cloudwatch", describe_alarms=lambda **kw: pages[kw.get("NextToken")])
    firing = incident.alarms_in_alarm(environment(), cw)
    live = incident.Impact("", "", alarms=firing)
    verdicts = {c.id: c.verdict for c in incident.convergence_checks(environment(), incident.Impact("", ""), live)}
    assert firing == ["demo-5xx"] and verdicts["verify.alarms"] == "fail"
