"""A rollback never makes things worse: the order of code and database steps comes from the plan, the
database step after the code waits until the previous code serves alone, and the rollback's own window
is measured against the failing release's rate."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import boto3
import numpy as np
import pandas as pd
import pytest
from botocore.stub import Stubber
from shipbook import config, rollback
from shipbook.rollback import db, window
from shipbook.rollback.plan import make_plan
from shipbook.verify import metrics
from test_rollback import T0, dbplan, mig, rb_env, release_repo

DROPS_A_COLUMN = '''
from django.db import migrations
class Migration(migrations.Migration):
    dependencies = [("shop", "0002_seed")]
    operations = [migrations.RemoveField(model_name="product", name="legacy_code")]
'''
ADDS_A_TABLE = '''
from django.db import migrations, models
class Migration(migrations.Migration):
    dependencies = [("shop", "0002_seed")]
    operations = [migrations.CreateModel(name="Category", fields=[])]
'''
IRREVERSIBLE_DATA = '''
from django.db import migrations
class Migration(migrations.Migration):
    dependencies = [("shop", "0003_x")]
    operations = [migrations.RunPython(normalise)]
'''


# --------------------------------------------------------------------------- the order, planned


def test_an_additive_release_rolls_the_code_back_first_with_no_error_window():
    p = dbplan([mig("0003_category", ADDS_A_TABLE)], rollout_seconds=40)
    assert (p.action, p.order, p.error_window_seconds) == (db.REVERSE, db.CODE_FIRST, 0.0)
    assert "previous code runs on the new schema" in p.order_why and p.error_window.startswith("none expected")


def test_a_release_that_drops_a_column_reverses_the_database_first_and_states_its_error_window():
    p = dbplan([mig("0003_drop_legacy", DROPS_A_COLUMN)], rollout_seconds=42)
    assert p.action == db.REVERSE and not p.compatible
    assert p.order == db.DATABASE_FIRST and "shop.0003_drop_legacy" in p.order_why
    assert p.error_window_seconds == 42 and "≈42s" in p.error_window
    table = p.table().set_index("item")["value"]
    assert table["order"].startswith("database first") and "≈42s" in table["expected error window"]


def test_without_deploy_times_the_error_window_is_still_stated():
    p = dbplan([mig("0003_drop_legacy", DROPS_A_COLUMN)])
    assert p.order == db.DATABASE_FIRST and "about one rollout" in p.error_window


def test_a_confirmed_restore_follows_the_same_order_rule():
    compatible = dbplan([mig("0003_category", ADDS_A_TABLE), mig("0004_normalise", IRREVERSIBLE_DATA)],
                        confirm=True)
    assert (compatible.action, compatible.order) == (db.RESTORE, db.CODE_FIRST)
    breaking = dbplan([mig("0003_drop_legacy", DROPS_A_COLUMN), mig("0004_normalise", IRREVERSIBLE_DATA)],
                      confirm=True, rollout_seconds=30)
    assert (breaking.action, breaking.order) == (db.RESTORE, db.DATABASE_FIRST)
    assert "≈30s" in breaking.error_window
    asked = dbplan([mig("0003_category", ADDS_A_TABLE)], db_action="restore", confirm=True)
    assert (asked.action, asked.order) == (db.RESTORE, db.CODE_FIRST)


def test_leaving_the_database_touches_nothing_and_says_so():
    kept = dbplan([mig("0003_drop_legacy", DROPS_A_COLUMN)], db_action="none")
    assert kept.order == db.CODE_ONLY and kept.error_window.startswith("UNBOUNDED")
    assert dbplan([]).order == db.CODE_ONLY


@pytest.fixture
def dropping_repo(tmp_path):
    """A real repository whose v1.0.0 drops a column v0.9.0's code reads."""
    return release_repo(tmp_path, DROPS_A_COLUMN, "0003_drop_legacy")


@pytest.fixture
def repo(tmp_path):
    """A real repository whose v1.0.0 only adds a table."""
    return release_repo(tmp_path, ADDS_A_TABLE, "0003_category")


def test_the_plan_of_a_column_drop_from_a_real_repository_puts_the_database_first(dropping_repo):
    p = make_plan(rb_env(dropping_repo), "v1.0.0", run_id="r1", now=T0, rollout_seconds=55)
    assert not p.blocked and p.db.order == db.DATABASE_FIRST
    steps = p.steps()
    assert list(steps["what"]) == ["database", "code", "code", "verify", "measure"]
    assert steps.iloc[0]["why"].startswith("database first: the previous code does NOT run on the new schema")
    assert "≈55s" in p.check()["summary"] and "order: database first" in p.check()["summary"]
    assert p.table().set_index("item").loc["expected error window", "value"] == p.db.error_window


# --------------------------------------------------------------------------- the database slot, applied


RELEASE_TD = "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/demo-web:7"


class VersionApp(BaseHTTPRequestHandler):
    commits: list[str] = []

    def do_GET(self) -> None:
        commit = self.commits.pop(0) if len(self.commits) > 1 else self.commits[0]
        body = json.dumps({"version": "v0.9.0", "commit": commit}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def version_app():
    server = ThreadingHTTPServer(("127.0.0.1", 0), VersionApp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def applied_rollback(repo, url: str, reports: list[str]) -> rollback.Rollback:
    env = rb_env(repo)
    env = config.Environment(name=env.name, kind=env.kind, github=env.github, stack=env.stack,
                             app=config.AppSection(repo=env.app.repo, notes_file="RELEASE_NOTES.md", public_url=url,
                                                   version_path="/version/"))
    rb = rollback.start(env, "v1.0.0", deploy_started=T0.isoformat(), run_id="r1", dry_run=False,
                        report=reports.append, sleep=lambda s: None)
    ecs = boto3.client("ecs", region_name="ap-northeast-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    with Stubber(ecs) as stub:  # the broken release's task definition, read before the code goes back
        stub.add_response("describe_services",
                          {"services": [{"serviceName": "demo-web", "taskDefinition": RELEASE_TD}]},
                          {"cluster": env.stack.cluster, "services": [env.stack.service]})
        rb.make_plan(ecs=ecs)
    return rb


def test_code_first_the_database_waits_until_the_previous_code_serves_alone(repo, version_app):

    reports: list[str] = []
    url = f"http://127.0.0.1:{version_app.server_address[1]}"
    rb = applied_rollback(repo, url, reports)
    assert rb.plan.db.order == db.CODE_FIRST
    assert rb.database(before_code=True).iloc[0]["result"].startswith("not here — code first")
    assert rb.applied_at is None  # nothing changed in the first slot

    rb.outcome = SimpleNamespace(stages=["ecs"], failed=[])  # the rollout finished healthy …
    VersionApp.commits = [rb.plan.release_commit, rb.plan.previous_commit]  # … but a broken task still answers
    out = rb.database(before_code=False)
    assert "not serving alone yet" in out.iloc[0]["result"] and rb.db_result.verdict == "warn"
    assert "reverse it later with: python manage.py migrate shop 0002_seed" in rb.db_result.summary
    assert rb.applied_at is None and any("not serving alone" in r for r in reports)


def test_code_first_the_database_does_not_run_after_a_failed_rollout(repo, version_app):
    rb = applied_rollback(repo, f"http://127.0.0.1:{version_app.server_address[1]}", [])
    rb.outcome = SimpleNamespace(stages=["ecs"], failed=["ecs"])
    assert "did not finish healthy" in rb.database(before_code=False).iloc[0]["result"]


def test_code_first_the_reverse_runs_in_the_release_task_definition_once_the_previous_code_serves(
        repo, version_app, monkeypatch):
    calls: list[dict] = []

    def fake_reverse(env, plan, **kw):
        calls.append(kw)
        from shipbook.rollback.apply import DATABASE, StepResult
        return StepResult(DATABASE, "pass", "reversed: " + " ".join(plan.db.commands[0]))

    monkeypatch.setattr(rollback.phase.apply_mod, "reverse_migrations", fake_reverse)
    rb = applied_rollback(repo, f"http://127.0.0.1:{version_app.server_address[1]}", [])
    assert rb.plan.release_task_definition == RELEASE_TD
    rb.outcome = SimpleNamespace(stages=["ecs"], failed=[])
    VersionApp.commits = [rb.plan.previous_commit]
    rb.database(before_code=False, ecs=object(), logs=object())
    assert rb.db_result.verdict == "pass" and rb.applied_at is not None
    assert calls[0]["task_definition"].endswith("demo-web:7")
    assert "demo-web:7" in rb.plan.steps().iloc[2]["detail"]


# --------------------------------------------------------------------------- the rollback's own window


def frame(start: datetime, rates: list[float], rps: int = 15, seconds: int = 1) -> pd.DataFrame:
    """Per-second requests and 5xx at the given rates (deterministic counts)."""
    idx = pd.DatetimeIndex([start + timedelta(seconds=i * seconds) for i in range(len(rates))], name="time")
    req = np.full(len(rates), float(rps))
    return pd.DataFrame({"requests": req, "errors_5xx": np.round(req * np.array(rates))}, index=idx)


def assess(during: pd.DataFrame, failing: pd.DataFrame, **kw) -> window.RollbackWindow:
    args = {"start": during.index[0].to_pydatetime(), "end": during.index[-1].to_pydatetime(), "pool_seconds": 10,
            "min_requests": 30, "tolerance": 0.005, "alpha": 0.01}
    args.update(kw)
    return window.assess(during, failing, **args)


def test_pooled_rates_need_enough_requests():
    t = datetime(2026, 12, 1, 15, 0, 0, tzinfo=UTC)
    f = pd.DataFrame({"requests": [2.0, 1.0, 100.0], "errors_5xx": [2.0, 1.0, 5.0]},
                     index=pd.DatetimeIndex([t, t + timedelta(seconds=1), t + timedelta(seconds=20)], name="time"))
    pools = metrics.pooled(f, 10, 30)
    assert list(pools["requests"]) == [3.0, 0.0, 100.0]
    assert np.isnan(pools["rate"].iloc[0]) and pools["rate"].iloc[2] == pytest.approx(0.05)


def test_a_rollback_that_puts_old_code_on_the_wrong_schema_is_seen_as_extra_errors():
    t = datetime(2026, 12, 1, 15, 2, 0, tzinfo=UTC)
    failing = frame(t - timedelta(minutes=5), [1 / 15] * 300)  # the bug: one request in 15
    during = frame(t, [1 / 15] * 10 + [0.6] * 20 + [0.0] * 60)  # 20 s at 60%, as in the report
    w = assess(during, failing)
    assert w.check().verdict == "warn" and "ADDED errors" in w.check().summary
    assert w.worst_rate == pytest.approx(0.6, abs=0.01) and len(w.extra) == 2
    assert w.facts()["rollback_window"]["extra_pools"] == 2


def test_a_clean_code_first_rollback_adds_no_errors():
    t = datetime(2026, 12, 1, 15, 2, 0, tzinfo=UTC)
    failing = frame(t - timedelta(minutes=5), [1 / 15] * 300)
    during = frame(t, [1 / 15] * 20 + [0.0] * 70)
    w = assess(during, failing)
    assert w.check().verdict == "pass" and not w.extra
    assert w.requests == 90 * 15 and w.worst_rate == pytest.approx(1 / 15, abs=0.001)
    assert "no extra errors" in w.check().summary and w.table().set_index("item").loc["requests", "value"] == "1350"


def test_a_handful_of_errors_in_a_quiet_second_is_not_a_headline():
    t = datetime(2026, 12, 1, 15, 2, 0, tzinfo=UTC)
    failing = frame(t - timedelta(minutes=5), [0.0] * 300)  # a latency regression: no 5xx before
    during = frame(t, [0.0] * 90)
    during.iloc[3] = [2.0, 2.0]  # one second, two requests, both failing: "100%"
    w = assess(during, failing)
    assert w.check().verdict == "pass" and w.worst_rate < 0.02


def test_a_rollback_is_verified_against_the_window_before_the_broken_deploy():
    from shipbook.verify import phase as verify_phase

    broken = datetime(2026, 12, 1, 14, 59, 0, tzinfo=UTC)  # the broken release's deploy
    started, finished = broken + timedelta(minutes=3), broken + timedelta(minutes=4)  # the rollback's deploy
    s = config.VerifySection(baseline_seconds=120, canary_seconds=120, period=1, settle_seconds=15)
    w = verify_phase.make_windows(s, started, finished, "rollback", baseline_end=broken)
    assert w.baseline.end == broken and w.baseline.start == broken - timedelta(seconds=120)
    assert w.logs_before.end == broken  # error signatures are new against the healthy release, not the broken one
    plain = verify_phase.make_windows(s, started, finished, "run facts")
    assert plain.baseline.end == started and plain.logs_before.end == started


def test_the_reverse_runs_in_the_broken_release_task_definition_after_the_service_moved_back():
    """After a code-first rollback the service runs the previous release's task definition, whose image does not
    know the migrations to reverse: the one-off task is the broken release's, recorded at plan time."""
    from botocore.stub import ANY
    from shipbook.rollback import apply as apply_mod
    from test_rollback import TASK, Clock, ecs_client

    ecs, c = ecs_client(), Clock()
    env = config.Environment(name="t", stack=config.StackSection(cluster="c", service="svc", container="web"))
    previous = {"services": [{"taskDefinition": "arn:aws:ecs:ap-northeast-1:1:task-definition/web:6",
                              "launchType": "FARGATE"}]}
    plan = SimpleNamespace(db=SimpleNamespace(commands=[["python", "manage.py", "migrate", "shop", "0002"]]))
    with Stubber(ecs) as stub:
        stub.add_response("describe_services", previous)
        stub.add_response("run_task", {"tasks": [{"taskArn": TASK, "lastStatus": "STOPPED",
                                                  "containers": [{"name": "web", "exitCode": 0}]}], "failures": []},
                          {"cluster": "c", "taskDefinition": RELEASE_TD, "count": 1, "startedBy": "shipbook-rollback",
                           "launchType": "FARGATE", "overrides": ANY})
        res = apply_mod.reverse_migrations(env, plan, ecs=ecs, logs=None, settings=config.RollbackSection(),
                                           now=c.now, sleep=c.sleep, report=lambda s: None,
                                           task_definition=RELEASE_TD)
        stub.assert_no_pending_responses()
    assert res.verdict == "pass" and res.summary == "reversed: python manage.py migrate shop 0002"
