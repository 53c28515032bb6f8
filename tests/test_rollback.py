"""Phase rollback without the twin: tag naming, migration analysis, the database plan, the plan from a real
repository, the one-off migrate task (Stubber), restore and swap (moto), and the tag pushed by the deploy code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import ANY, Stubber
from shipbook import config, rollback
from shipbook.deploy import plan as deploy_plan_mod
from shipbook.errors import InputError
from shipbook.rollback import apply as apply_mod
from shipbook.rollback import db
from shipbook.rollback.plan import find_snapshot, make_plan
from support import aws_client
from test_deploy_support import git, make_app_repo

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- tag naming


def test_the_default_rollback_tag_is_the_next_patch_with_rollback():
    assert rollback.next_patch("v1.0.0") == "v1.0.1"
    assert rollback.next_patch("v2.3.9-rc.1") == "v2.3.10"
    assert rollback.rollback_tag("v1.0.0", "v0.9.0", rollback.DEFAULT_TAG_PATTERN, set()) == ("v1.0.1-rollback", "")


def test_a_taken_rollback_tag_moves_to_the_next_free_patch_unless_this_run_made_it():
    taken = {"v1.0.1-rollback", "v1.0.2-rollback"}
    tag, note = rollback.rollback_tag("v1.0.0", "v0.9.0", rollback.DEFAULT_TAG_PATTERN, taken)
    assert tag == "v1.0.3-rollback" and "already exists" in note
    assert rollback.rollback_tag("v1.0.0", "v0.9.0", rollback.DEFAULT_TAG_PATTERN, taken,
                                 mine={"v1.0.1-rollback"})[0] == "v1.0.1-rollback"


def test_a_configured_pattern_and_its_errors():
    assert rollback.rollback_tag("v1.0.0", "v0.9.0", "{version}-rollback", set())[0] == "v1.0.0-rollback"
    with pytest.raises(InputError, match="unknown field"):
        rollback.rollback_tag("v1.0.0", "v0.9.0", "{nope}-rollback", set())
    with pytest.raises(InputError, match="no {next_patch}"):
        rollback.rollback_tag("v1.0.0", "v0.9.0", "{version}-rollback", {"v1.0.0-rollback"})
    with pytest.raises(InputError):
        rollback.rollback_tag("v1.0.0", "v0.9.0", "rollback-{version}", set())  # not a version tag


def test_the_make_rollback_command():
    assert rollback.command("sandbox", "v1.0.0") == "make rollback VERSION=v1.0.0"
    assert rollback.command("production", "v1.0.0", "v0.9.0", "pre-deploy-v1-0-0") == \
        "make rollback VERSION=v1.0.0 ENV=production PREVIOUS_VERSION=v0.9.0 SNAPSHOT=pre-deploy-v1-0-0"


# --------------------------------------------------------------------------- migration analysis

REVERSIBLE = '''
from django.db import migrations, models
class Migration(migrations.Migration):
    dependencies = [("shop", "0002_seed")]
    operations = [
        migrations.CreateModel(name="Category", fields=[]),
        migrations.AddField(model_name="product", name="category", field=models.ForeignKey(null=True, to="x")),
        migrations.RunPython(forwards, backwards),
    ]
'''
IRREVERSIBLE = '''
from django.db import migrations
class Migration(migrations.Migration):
    dependencies = [("shop", "0004_x")]
    operations = [migrations.RunPython(normalise_skus)]
'''


@pytest.mark.parametrize(("op", "reversible", "additive"), [
    ("migrations.RunPython(f)", False, True),
    ("migrations.RunPython(f, reverse_code=g)", True, True),
    ("migrations.RunPython(f, migrations.RunPython.noop)", True, True),
    ("migrations.RunPython(f, None)", False, True),
    ("migrations.RunSQL('UPDATE x')", False, True),
    ("migrations.RunSQL('UPDATE x', reverse_sql='UPDATE y')", True, True),
    ("migrations.AddField('p', 'n', models.IntegerField(default=0))", True, False),
    ("migrations.AddField('p', 'n', models.IntegerField(null=True))", True, True),
    ("migrations.RemoveField('p', 'n')", True, False),
    ("migrations.RenameField('p', 'a', 'b')", True, False),
    ("myapp.ops.Frobnicate()", False, False),
    ("migrations.SeparateDatabaseAndState(database_operations=[migrations.RunSQL('x')])", False, True),
])
def test_each_operation_is_classified(op, reversible, additive):
    ops, _, err = db.analyse(f"class Migration:\n    operations = [{op}]\n")
    assert not err and len(ops) == 1
    assert (ops[0].reversible, ops[0].additive) == (reversible, additive)


def test_a_migration_module_is_read_without_importing_it():
    ops, deps, err = db.analyse(REVERSIBLE)
    assert [o.name for o in ops] == ["CreateModel", "AddField", "RunPython"] and deps == [("shop", "0002_seed")]
    assert all(o.reversible and o.additive for o in ops)
    assert db.analyse("def broken(:\n")[2].startswith("cannot parse")


def mig(name: str, source: str, status: str = "added") -> db.Migration:
    ops, deps, err = db.analyse(source)
    return db.Migration("shop", name, f"shop/migrations/{name}.py", status, ops, deps, err)


def dbplan(migrations: list[db.Migration], **kw) -> db.DbPlan:
    args = {"instance": "app-db", "snapshot": db.Snapshot("pre-deploy-v1-0-0", T0, "available", "app-db"),
            "confirm": False, "db_action": "", "swap": "rename", "now": T0 + timedelta(minutes=42),
            "rollback_command": "make rollback VERSION=v1.0.0"}
    args.update(kw)
    return db.plan_database(migrations, {"shop": "0002_seed"}, [], **args)


def test_no_migrations_nothing_to_do():
    p = dbplan([])
    assert p.action == db.NOTHING and not p.problems


def test_all_reversible_migrations_are_reversed_to_the_previous_leaf():
    p = dbplan([mig("0003_category", REVERSIBLE)])
    assert p.action == db.REVERSE and p.commands == [["python", "manage.py", "migrate", "shop", "0002_seed",
                                                      "--noinput"]]
    assert p.compatible and "reverse" in p.table().iloc[0]["value"]


def test_an_irreversible_migration_needs_a_confirmed_restore_and_states_the_data_loss():
    migrations = [mig("0003_category", REVERSIBLE), mig("0005_normalise", IRREVERSIBLE)]
    confirmed = dbplan(migrations, confirm=True)
    assert confirmed.action == db.RESTORE and not confirmed.problems
    assert confirmed.data_loss_window == timedelta(minutes=42)
    assert "DATA LOSS" in confirmed.loss_text() and "42 minute(s)" in confirmed.loss_text()
    assert confirmed.restore_instance.startswith("app-db-restore-")
    table = confirmed.table().set_index("item")
    assert "new instance" in table.loc["action", "value"] and "DATA LOSS" in table.loc["data-loss window", "value"]


def test_without_confirmation_nothing_is_restored():
    migrations = [mig("0003_category", REVERSIBLE), mig("0005_normalise", IRREVERSIBLE)]
    keep = dbplan(migrations)  # additive: the previous code runs on the current schema
    assert keep.action == db.KEEP and "not confirmed" in keep.warnings[0]
    assert "CONFIRM_DB_RESTORE=1" in keep.warnings[0]
    breaking = mig("0005_drop", "class Migration:\n    operations = [migrations.RemoveField('p', 'sku'), "
                                "migrations.RunPython(f)]\n")
    stop = dbplan([breaking])
    assert stop.problems and "cannot run on the new schema" in stop.problems[0] and not stop.confirmed


def test_restore_problems_are_named():
    migrations = [mig("0005_normalise", IRREVERSIBLE)]
    assert "no available pre-deploy snapshot" in dbplan(migrations, confirm=True, snapshot=None).problems[0]
    failed = db.Snapshot("s", T0, "failed", "app-db")
    assert "is failed" in dbplan(migrations, confirm=True, snapshot=failed).problems[0]
    assert "db_instance" in dbplan(migrations, confirm=True, instance="").problems[0]


def test_the_operator_can_keep_or_force():
    migrations = [mig("0003_category", REVERSIBLE)]
    assert dbplan(migrations, db_action="none").action == db.KEEP
    assert dbplan(migrations, db_action="restore", confirm=True).action == db.RESTORE
    asked = dbplan(migrations, db_action="restore")  # asked for by name, not confirmed: refused, nothing changes
    assert asked.problems and "needs an explicit confirmation" in asked.problems[0]
    assert "DB_ACTION=restore CONFIRM_DB_RESTORE=1" in asked.problems[0]
    assert "cannot reverse" in dbplan([mig("0005_n", IRREVERSIBLE)], db_action="reverse").problems[0]
    assert dbplan(migrations, db_action="sideways").problems


# --------------------------------------------------------------------------- the plan from a real repository

MIG_0001 = "from django.db import migrations\nclass Migration(migrations.Migration):\n    dependencies = []\n" \
           "    operations = [migrations.CreateModel(name='Product', fields=[])]\n"
MIG_0002 = "from django.db import migrations\nclass Migration(migrations.Migration):\n" \
           "    dependencies = [('shop', '0001_initial')]\n    operations = [migrations.RunPython(seed, unseed)]\n"


@pytest.fixture
def repo(tmp_path):
    return release_repo(tmp_path, REVERSIBLE, "0003_category")


def release_repo(tmp_path, migration: str, name: str):
    """v0.9.0 with two migrations, tagged and pushed; v1.0.0 adds `migration` as shop/migrations/`name`.py."""
    r = make_app_repo(tmp_path)  # v0.9.0 tagged and pushed; the v1.0.0 release commit on main
    (r.work / "shop" / "migrations").mkdir(parents=True)
    git(r.work, "checkout", "-q", "v0.9.0")
    git(r.work, "checkout", "-q", "-b", "old")
    r.commit("shop/migrations/0001_initial.py", MIG_0001, "initial")
    r.commit("shop/migrations/0002_seed.py", MIG_0002, "seed")
    git(r.work, "tag", "-d", "v0.9.0")
    git(r.work, "push", "-q", "origin", ":refs/tags/v0.9.0")
    r.tag("v0.9.0")
    git(r.work, "checkout", "-q", "main")
    git(r.work, "merge", "-q", "--no-edit", "old")
    r.commit(f"shop/migrations/{name}.py", migration, name)
    git(r.work, "push", "-q", "origin", "main")
    r.tag("v1.0.0")
    return r


def rb_env(repo, **stack) -> config.Environment:
    return config.Environment(name="sandbox", kind="sandbox",
                              app=config.AppSection(repo=str(repo.work), notes_file="RELEASE_NOTES.md"),
                              github=config.GithubSection(remote="origin"),
                              stack=config.StackSection(**stack))


def test_the_plan_names_target_tag_and_database_steps(repo):
    p = make_plan(rb_env(repo), "v1.0.0", run_id="r1", now=T0)
    assert (p.previous_version, p.tag, p.blocked) == ("v0.9.0", "v1.0.1-rollback", False)
    assert p.previous_commit == git(repo.work, "rev-parse", "v0.9.0^{commit}")
    assert [m.label for m in p.db.migrations] == ["shop.0003_category"]
    assert p.db.action == db.REVERSE and p.db.commands[0][3:5] == ["shop", "0002_seed"]
    steps = p.steps()  # an additive release: the previous code runs on its schema, so the code goes back first
    assert p.db.order == db.CODE_FIRST and p.db.error_window.startswith("none expected")
    assert list(steps["what"]) == ["code", "code", "database", "verify", "measure"]
    assert "v1.0.1-rollback" in steps.iloc[0]["detail"] and steps.iloc[0]["why"].startswith("code first")
    assert "migrate shop 0002_seed" in steps.iloc[2]["detail"] and steps.iloc[2]["why"].startswith("after the code")
    assert "order: code first" in p.check()["summary"] and "expected error window: none" in p.check()["summary"]
    assert p.check()["verdict"] == "skip"  # dry run by default


def test_a_version_that_was_never_tagged_or_has_no_predecessor_blocks(repo):
    assert "not a tag" in make_plan(rb_env(repo), "v1.1.0", now=T0).problems[0]
    git(repo.work, "tag", "-d", "v0.9.0")
    git(repo.work, "push", "-q", "origin", ":refs/tags/v0.9.0")
    blocked = make_plan(rb_env(repo), "v1.0.0", now=T0)
    assert blocked.blocked and any("nothing to roll back to" in x for x in blocked.problems)


def test_the_rollback_tag_is_pushed_with_the_deploy_phase_code(repo):
    p = make_plan(rb_env(repo), "v1.0.0", run_id="r1", dry_run=False, now=T0,
                  reasons=["severe performance drop: latency p95 +2242%"])
    dp = apply_mod.deploy_plan(rb_env(repo), p)
    assert not dp.blocked
    tag = deploy_plan_mod.apply_tag(dp)
    assert tag.pushed and not tag.problems
    assert repo.remote_tags() >= {"v1.0.1-rollback"}
    assert git(repo.work, "rev-parse", "v1.0.1-rollback^{commit}") == p.previous_commit
    message = git(repo.work, "tag", "--list", "--format=%(contents)", "v1.0.1-rollback")
    assert "Rollback of v1.0.0 to v0.9.0" in message and "latency p95" in message and "Shipbook-Run: r1" in message
    again = make_plan(rb_env(repo), "v1.0.0", run_id="r1", now=T0)
    assert again.tag == "v1.0.1-rollback" and again.resumed  # this run's own tag: resume, not a new one
    other = make_plan(rb_env(repo), "v1.0.0", run_id="r2", now=T0)
    assert other.tag == "v1.0.2-rollback"


def test_workflow_runs_of_other_tags_on_the_same_commit_are_not_the_rollbacks():
    class Fake:
        calls = 0

        def workflow_runs(self, sha, event="push"):
            return [{"id": 1, "head_branch": "v0.9.0"}, {"id": 2, "head_branch": "v1.0.1-rollback"}]

    gh = apply_mod.tag_only_runs(Fake(), "v1.0.1-rollback")  # type: ignore[arg-type]
    assert [r["id"] for r in gh.workflow_runs("abc")] == [2]
    assert gh.calls == 0  # everything else is the real client's


# --------------------------------------------------------------------------- the one-off migrate task


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> datetime:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += timedelta(seconds=s)


def ecs_client():
    return boto3.client("ecs", region_name="ap-northeast-1", aws_access_key_id="x", aws_secret_access_key="x")


SERVICE = {"services": [{"taskDefinition": "arn:aws:ecs:ap-northeast-1:1:task-definition/web:7",
                         "launchType": "FARGATE",
                         "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["s-1"]}}}]}
TASK = "arn:aws:ecs:ap-northeast-1:1:task/c/abc"
MIGRATE = ["python", "manage.py", "migrate", "shop", "0002"]


@pytest.mark.parametrize(("code", "ok"), [(0, True), (1, False)])
def test_a_reverse_migrate_runs_as_a_one_off_task_of_the_current_task_definition(code, ok):
    ecs, c = ecs_client(), Clock()
    env = config.Environment(name="t", stack=config.StackSection(cluster="c", service="svc", container="web"))
    with Stubber(ecs) as stub:
        stub.add_response("describe_services", SERVICE)
        stub.add_response("run_task", {"tasks": [{"taskArn": TASK, "lastStatus": "PROVISIONING"}], "failures": []},
                          {"cluster": "c", "taskDefinition": SERVICE["services"][0]["taskDefinition"], "count": 1,
                           "startedBy": "shipbook-rollback", "launchType": "FARGATE", "networkConfiguration": ANY,
                           "overrides": {"containerOverrides": [{"name": "web", "command": MIGRATE}]}})
        stub.add_response("describe_tasks", {"tasks": [{"taskArn": TASK, "lastStatus": "RUNNING"}]})
        stub.add_response("describe_tasks", {"tasks": [{"taskArn": TASK, "lastStatus": "STOPPED",
                                                        "containers": [{"name": "web", "exitCode": code}]}]})
        row = apply_mod.run_one_off(env, MIGRATE, ecs=ecs, logs=None,
                                    timeout=60, poll=5, now=c.now, sleep=c.sleep, report=lambda s: None)
    assert row["ok"] is ok and row["exit code"] == code


def test_a_one_off_task_past_its_deadline_is_stopped_and_fails():
    ecs, c = ecs_client(), Clock()
    env = config.Environment(name="t", stack=config.StackSection(cluster="c", service="svc", container="web"))
    with Stubber(ecs) as stub:
        stub.add_response("describe_services", SERVICE)
        stub.add_response("run_task", {"tasks": [{"taskArn": TASK, "lastStatus": "PENDING"}], "failures": []})
        for _ in range(3):
            stub.add_response("describe_tasks", {"tasks": [{"taskArn": TASK, "lastStatus": "RUNNING"}]})
        stub.add_response("stop_task", {"task": {"taskArn": TASK}}, {"cluster": "c", "task": TASK, "reason": ANY})
        row = apply_mod.run_one_off(env, ["migrate"], ecs=ecs, logs=None, timeout=12, poll=5, now=c.now,
                                    sleep=c.sleep, report=lambda s: None)
        stub.assert_no_pending_responses()
    assert not row["ok"] and "did not finish within 12s" in row["result"]


# --------------------------------------------------------------------------- restore and swap (moto)


@pytest.fixture
def database(moto_url):
    rds = aws_client(moto_url, "rds")
    ident = f"app-db-{datetime.now(UTC):%H%M%S%f}"
    rds.create_db_instance(DBInstanceIdentifier=ident, Engine="postgres", DBInstanceClass="db.t4g.micro",
                           AllocatedStorage=20, MasterUsername="app", MasterUserPassword="not-a-secret-1")
    snap = rds.create_db_snapshot(DBSnapshotIdentifier=f"pre-deploy-{ident}", DBInstanceIdentifier=ident)
    created = snap["DBSnapshot"].get("SnapshotCreateTime", T0)
    return rds, ident, f"pre-deploy-{ident}", created


def restore_plan(ident: str, snap: str, created: datetime, confirm: bool) -> rollback.Plan:
    migrations = [mig("0005_normalise", IRREVERSIBLE)]
    dbp = dbplan(migrations, instance=ident, snapshot=db.Snapshot(snap, created, "available", ident), confirm=confirm,
                 now=datetime.now(UTC))
    return rollback.Plan("sandbox", "v1.0.0", "v0.9.0", "p" * 40, "subject", "r" * 40, "v1.0.1-rollback", "",
                         "origin", dbp, "run-1", False)


def test_a_confirmed_restore_leaves_the_apps_identifier_on_the_restored_data(database):
    rds, ident, snap, created = database
    c = Clock()
    p = restore_plan(ident, snap, created, confirm=True)
    assert p.db.action == db.RESTORE
    res = apply_mod.restore_and_swap(config.Environment(name="t"), p, rds=rds, secrets=None,
                                     settings=config.RollbackSection(poll=0.01), run_id="run-1", now=c.now,
                                     sleep=c.sleep, report=lambda s: None)
    assert res.verdict == "pass", res.summary
    assert apply_mod.restored_from(rds, ident) == snap  # the identifier the app uses: the restored data
    names = {d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]}
    assert any(n.startswith(f"{ident}-pre-rollback-") for n in names)  # the old one is kept, renamed
    assert "lost" in res.summary


def test_without_confirmation_nothing_is_restored_even_if_asked_to_apply(database):
    rds, ident, snap, created = database
    p = restore_plan(ident, snap, created, confirm=False)
    assert p.db.action == db.KEEP
    p.db.action = db.RESTORE  # even a plan forced to restore refuses without the confirmation
    before = {d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]}
    res = apply_mod.restore_and_swap(config.Environment(name="t"), p, rds=rds, secrets=None,
                                     settings=config.RollbackSection(poll=0.01), report=lambda s: None)
    assert res.verdict == "fail" and "nothing restored" in res.summary
    assert {d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]} == before


def test_the_pre_deploy_snapshot_is_found_by_time(database):
    rds, ident, snap, created = database
    found = find_snapshot(rds, ident, before=datetime.now(UTC) + timedelta(minutes=1))
    assert found is not None and found.id == snap and found.status == "available"
    assert find_snapshot(rds, ident, before=datetime(2000, 1, 1, tzinfo=UTC)) is None
    assert find_snapshot(rds, ident, snapshot_id="nope").status == "not found"


# --------------------------------------------------------------------------- the phase object


def test_a_dry_run_plans_and_changes_nothing(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPBOOK_WORK_DIR", str(tmp_path))
    from shipbook import result

    rb = rollback.start(rb_env(repo), "v1.0.0", deploy_started=T0.isoformat(), run_id="r1", report=lambda s: None)
    assert rb.make_plan().set_index("item").loc["mode", "value"].startswith("DRY RUN")
    rb.gate()
    assert rb.database().iloc[0]["result"].startswith("not here — code first") and rb.db_result is None
    rb.push()
    assert rb.deployment is not None and not rb.deployment.tag.pushed
    rb.watch()
    assert rb.database(before_code=False).iloc[0]["result"].startswith("dry run") and rb.db_result.verdict == "skip"
    after = rb.verify()
    assert after.dry
    rb.finish()
    res = result.read(tmp_path)
    assert res.verdict == "skip" and res.blocking == []
    assert res.facts["rollback_tag"] == "v1.0.1-rollback" and res.facts["rolled_back_to"] == "v0.9.0"
    assert "v1.0.1-rollback" not in repo.tags() | repo.remote_tags()


def test_a_blocked_plan_stops_at_the_gate(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPBOOK_WORK_DIR", str(tmp_path))
    from shipbook.errors import GateError

    rb = rollback.start(rb_env(repo), "v1.1.0", deploy_started=T0.isoformat(), report=lambda s: None)
    rb.make_plan()
    with pytest.raises(GateError, match="rollback.plan"):
        rb.gate()


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), ("True", True), ("False", False),
                                                 ("1", True), ("", False), ("no", False), ("yes", True)])
def test_the_restore_confirmation_is_read_strictly(value, expected):
    from shipbook.rollback.phase import truthy

    assert truthy(value) is expected


def test_without_the_runs_facts_the_broken_deploy_started_when_its_tag_was_made(repo):
    rb = rollback.start(rb_env(repo), "v1.0.0", report=lambda s: None)
    started = rb.broken_deploy_started()
    assert started is not None and abs((datetime.now(UTC) - started).total_seconds()) < 600


def test_the_judge_after_a_rollback_warns_instead_of_blocking():
    from shipbook.checks import CheckResult
    from shipbook.rollback.phase import performance_after

    worse = performance_after(CheckResult("verify.performance", "fail", "judge FAIL: latency p95 +21%"))
    assert worse.verdict == "warn" and "another cause" in worse.summary and worse.id == "rollback.verify.performance"
    assert performance_after(CheckResult("verify.performance", "pass", "judge PASS")).verdict == "pass"
