"""Verify judges on evidence, the rollback undoes a bad release, and the incident is written up.

These run on a twin of their own (another xdist group than test_release.py), so the two
sets of end-to-end tests run side by side on the two cores.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from shipbook import audit, i18n
from test_release import remote_tags

pytestmark = pytest.mark.xdist_group("sandbox-rollback")


def tag_commit(twin, tag: str) -> str:
    out = subprocess.run(["git", "rev-parse", f"{tag}^{{commit}}"], cwd=twin.url("git_remote"), capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def serves_the_previous_release(twin, rec: dict) -> None:
    """The code of v0.9.0 answers, deployed under the rollback tag (the image is named by the pushed tag)."""
    body = requests.get(twin.url("alb_url") + "/version/", timeout=5).json()
    assert body["commit"] == tag_commit(twin, "v0.9.0"), body
    assert body["version"] in ("v0.9.0", rec["facts"]["rollback_tag"]), body


def last(twin, version: str) -> dict:
    rec = audit.latest_run(twin.runs, "sandbox", version)
    assert rec is not None
    return rec


def incident_facts(twin, incident_id: str) -> dict:
    record = json.loads((twin.runs / "sandbox" / "incidents" / incident_id / "run.json").read_text(encoding="utf-8"))
    return record["facts"]


def phase(rec: dict, name: str) -> dict:
    return next(p for p in rec["phases"] if p["name"] == name)


def rolled_back_without_extra_errors(rec: dict) -> None:
    """Code first (the demo's release is additive), the database only after the previous code served, the
    re-verification held to the window before the broken deploy, and no pool of the rollback's own window
    above the failing release's 5xx rate."""
    f = rec["facts"]
    assert f["rollback_order"] == "code first", f
    assert f["rollback_error_window"].startswith("none expected")
    assert f["rollback_finished"] <= f["rollback_database_started"], f  # code healthy, then the database
    assert f["rollback_baseline"]["end"] <= f["deploy_started"], f  # the healthy window, not the broken one
    w = f["rollback_window"]
    assert not w["error"] and w["requests"] > 0, w
    assert w["extra_pools"] == 0, w
    print(f"\nrollback window: {w['requests']} requests, {w['errors_5xx']} 5xx; worst pool {w['worst_rate']} "
          f"({w['worst_errors']}/{w['worst_requests']}) against the failing release's {w['failing_rate']} "
          f"({w['failing_errors']}/{w['failing_requests']})")
    window = next(c for c in phase(rec, "rollback")["checks"] if c["id"] == "rollback.window")
    assert window["verdict"] == "pass" and "no extra errors" in window["summary"], window


@pytest.mark.xdist_group("sandbox")  # balances the two twins: this one runs beside the error-spike flow
def test_latency_regression_is_rolled_back_on_the_right_metric(twin):
    twin.reset("latency-regression")
    out = twin.run("release", "v1.0.0")
    assert out.returncode == 1, out.stderr[-3000:]
    assert "ROLLBACK" in out.stderr and "latency" in out.stderr.lower()
    rec = last(twin, "v1.0.0")
    assert rec["status"] == "rolled-back"
    assert rec["facts"]["recommendation"] == "ROLLBACK"
    assert any("latency" in r.lower() for r in rec["facts"]["rollback_reasons"])
    assert [p["name"] for p in rec["phases"]] == ["precheck", "backup", "deploy", "verify", "rollback", "report"]
    assert phase(rec, "rollback")["status"] == "succeeded"
    # the release's migrations reversed by a one-off task of its own task definition, before the code went back
    database = next(c for c in phase(rec, "rollback")["checks"] if c["id"] == "rollback.database")
    assert database["verdict"] == "pass", database
    assert database["summary"] == "reversed: python manage.py migrate shop 0002_seed_products --noinput"
    rolled_back_without_extra_errors(rec)
    serves_the_previous_release(twin, rec)
    assert rec["facts"]["rollback_tag"] in remote_tags(twin)


def test_error_spike_release_rollback_incident_status_reports_and_postmortem(twin):
    out = twin.run("make", "--no-print-directory", "rehearse", "VERSION=v1.0.0", "SCENARIO=error-spike")
    assert "ROLLBACK" in out.stderr, out.stderr[-3000:]
    rec = last(twin, "v1.0.0")
    assert rec["status"] == "rolled-back"
    assert any("5xx" in r or "error" in r.lower() for r in rec["facts"]["rollback_reasons"])
    rolled_back_without_extra_errors(rec)
    serves_the_previous_release(twin, rec)
    assert "v1.0.1-rollback" in remote_tags(twin)

    report_page = (twin.runs / "sandbox" / "v1.0.0" / rec["run_id"] / "06_report.stakeholder.html").read_text(
        encoding="utf-8")
    assert "ロールバック" in report_page and "v1.0.1-rollback" in report_page  # the manager's page tells it

    deploy_started = rec["facts"]["deploy_started"]
    out = twin.run("make", "--no-print-directory", "incident", "TITLE=5xx after v1.0.0", "SUSPECT=v1.0.0")
    assert out.returncode == 0, out.stderr[-3000:]
    incident_id = re.search(r"incident (\S+) opened", out.stdout).group(1)
    facts = incident_facts(twin, incident_id)
    # it starts from what already happened: rolled back, converged → no second rollback
    assert facts["current_state"]["state"] == "converged", facts["current_state"]
    assert facts["current_state"]["rollback"]["run_id"] == rec["run_id"]
    assert facts["decision"].startswith(i18n.t("incident.advice.monitor", "ja")), facts["decision"]
    assert i18n.t("incident.recommend_rollback", "ja") not in facts["decision"]
    # 発生時刻 is when the errors began (after the deploy), found without START, not when the incident was opened
    assert facts["incident_start_basis"] != "opened", facts["incident_start_basis"]
    assert deploy_started <= facts["incident_start"] < facts["incident_opened"], facts
    assert facts["suspected_deploy_run"] == rec["run_id"]
    out = twin.run("incident", "--id", incident_id, "--prevention", "5xx canary alarm on every deploy",
                   "--prevention", "error-spike rehearsal in CI")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 prevention item(s) recorded" in out.stdout
    reports = []
    for lang in ("ja", "en"):
        out = twin.run("status-report", incident_id, "--lang", lang)
        assert out.returncode == 0, out.stderr[-2000:]
        reports.append(out.stdout)
    for field in ("発生時刻", "影響範囲", "現在の状況", "対応予定時間", "次回の更新予定"):
        assert field in reports[0]
    print("\nstatus report (ja):\n" + reports[0])
    fields = dict(line.split("：", 1) for line in reports[0].splitlines() if "：" in line)
    started = datetime.fromisoformat(facts["incident_start"]).astimezone(UTC)
    assert f"{started:%H:%M}" in fields["発生時刻"], fields  # the onset, as a person would write it
    assert re.search(r"5xx 率 \d+(\.\d)?%（\d+/\d+ 件）", fields["影響範囲"]), fields  # a pooled rate with its counts
    assert re.search(r"最悪の1分 \d\d:\d\d", fields["影響範囲"]), fields  # the peak minute, named
    assert "ロールバック済み" in fields["現在の状況"] and "収束" in fields["現在の状況"], fields
    for field in ("Started", "Impact", "Current status", "Expected resolution", "Next update"):
        assert field in reports[1]
    inc_dir = twin.runs / "sandbox" / "incidents" / incident_id
    assert len((inc_dir / "status.jsonl").read_text(encoding="utf-8").splitlines()) == 2

    for lang in ("ja", "en"):
        out = twin.run("make", "--no-print-directory", "postmortem", f"INCIDENT={incident_id}", f"REPORT_LANG={lang}")
        assert out.returncode == 0, out.stderr[-3000:]
        html = (inc_dir / f"postmortem.{lang}.stakeholder.html").read_text(encoding="utf-8")
        assert "data:image/png;base64" in html  # the impact charts
        assert ("根本原因" if lang == "ja" else "Root causes") in html
        assert "5xx canary alarm on every deploy" in html  # the incident's prevention items become action items
    record = json.loads((inc_dir / "run.json").read_text(encoding="utf-8"))
    moments = [record["facts"][f"postmortem_{k}"] for k in ("deploy_start", "alarm", "rollback", "recovery")]
    assert all(moments) and moments == sorted(moments), moments  # deploy start → alarm → rollback → recovery
    for lang in ("ja", "en"):
        pm = next(p for p in record["phases"] if p["name"] == f"postmortem-{lang}")
        assert pm["status"] == "succeeded"
        assert any(c["id"] == "postmortem.timeline" and c["verdict"] == "pass" for c in pm["checks"])
    assert twin.run("audit").returncode == 0
    assert requests.get(twin.url("alb_url") + "/health/", timeout=5).ok


@pytest.mark.xdist_group("sandbox")  # the other twin: it runs beside the error-spike flow
def test_an_incident_opened_during_the_fault_recommends_the_rollback(twin):
    """The faulty release deployed on its own (no verify, so no automatic rollback): the incident sees the
    suspected version still serving and recommends rolling it back, with the command."""
    twin.reset("error-spike")
    out = twin.run("deploy", "v1.0.0")
    assert out.returncode == 0, out.stderr[-3000:]
    rec = last(twin, "v1.0.0")
    finished = datetime.fromisoformat(rec["facts"]["deploy_finished"])
    while datetime.now(UTC) < finished + timedelta(seconds=75):  # one whole minute of the fault to pool
        time.sleep(5)
    out = twin.run("make", "--no-print-directory", "incident", "TITLE=5xx on product pages", "SUSPECT=v1.0.0")
    assert out.returncode == 0, out.stderr[-3000:]
    facts = incident_facts(twin, re.search(r"incident (\S+) opened", out.stdout).group(1))
    assert facts["current_state"]["state"] == "not-rolled-back", facts["current_state"]
    assert facts["current_state"]["served"].startswith("v1.0.0"), facts["current_state"]
    assert facts["decision"] == i18n.t("incident.recommend_rollback", "ja"), facts["decision"]
    notebook = (twin.runs / "sandbox" / "incidents" / facts["incident_id"] / "incident.ipynb").read_text("utf-8")
    assert "make rollback VERSION=v1.0.0" in notebook  # the command, printed under the recommendation
    assert rec["facts"]["deploy_started"] <= facts["incident_start"] < facts["incident_opened"], facts
