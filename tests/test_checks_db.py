"""db.* pre-checks: the migration probe run with the app's Python in clean worktrees, and the four checks.

A tiny Django project is built in tmp_path for each shape of migration history (two commits: the
previous release tag and the release); the demo app's real history (repo_builder) covers the
healthy and irreversible-migration scenarios end to end.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from shipbook import checks
from shipbook.checks import db
from shipbook.checks.worktree import Previous
from shipbook.config import AppSection, Environment, PrecheckSection
from shipbook.sandbox import repo_builder

pytest.importorskip("django")

SMALL = PrecheckSection(migration_sample_rows=200)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.invalid", "-c", "user.name=t",
                           "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


MANAGE = """\
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""
SETTINGS = """\
import os
SECRET_KEY = os.environ["SECRET_KEY"]  # like the demo app: refuses to start without it
INSTALLED_APPS = ["inv"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/nonexistent/real.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
"""
INITIAL = """\
from django.db import migrations, models

class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [migrations.CreateModel(name="Item", fields=[
        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
        ("code", models.CharField(max_length=20, unique=True)),
        ("note", models.CharField(max_length=50, null=True)),
        ("qty", models.IntegerField(default=0)),
    ])]
"""
MODELS_V1 = """\
from django.db import models

class Item(models.Model):
    code = models.CharField(max_length=20, unique=True)
    note = models.CharField(max_length=50, null=True)
    qty = models.IntegerField(default=0)
"""


def _migration(deps: str, ops: str) -> str:
    return f"from django.db import migrations, models\n\n\nclass Migration(migrations.Migration):\n" \
           f"    dependencies = [{deps}]\n    operations = [{ops}]\n"


def project(tmp_path: Path, release_files: dict[str, str]) -> Path:
    """A git repo: v1.0.0 = the initial schema; then one release commit writing `release_files`."""
    repo = tmp_path / "app"
    files = {"manage.py": MANAGE, "proj/__init__.py": "", "proj/settings.py": SETTINGS, "inv/__init__.py": "",
             "inv/models.py": MODELS_V1, "inv/migrations/__init__.py": "", "inv/migrations/0001_initial.py": INITIAL}
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    _git(repo.parent, "init", "-q", "-b", "main", str(repo))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "feat: inventory")
    _git(repo, "tag", "v1.0.0")
    for path, text in release_files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "feat: the release")
    return repo


def analyse(repo: Path, version: str = "v1.1.0", precheck: PrecheckSection = SMALL) -> db.MigrationReport:
    env = Environment(name="t", app=AppSection(repo=str(repo)), precheck=precheck)
    return db.analyse(env, checks.release(env, version))


# --------------------------------------------------------------------------- a small project


def test_schema_changes_that_break_the_previous_code_are_named_and_reversible(tmp_path):
    models = MODELS_V1.replace('    note = models.CharField(max_length=50, null=True)\n', "") \
        .replace("qty = models.IntegerField(default=0)", "qty = models.IntegerField(default=0)\n"
                 "    sku = models.CharField(max_length=10, default='x')")
    ops = ('migrations.RemoveField(model_name="item", name="note"), '
           'migrations.AddField(model_name="item", name="sku", field=models.CharField(default="x", max_length=10))')
    repo = project(tmp_path, {"inv/models.py": models,
                              "inv/migrations/0002_sku.py": _migration('("inv", "0001_initial")', ops)})
    (repo / "uncommitted.txt").write_text("the working copy is never looked at")
    report = analyse(repo)
    assert report.error == "" and report.previous == Previous("v1.0.0", _git(repo, "rev-parse", "v1.0.0"))

    found = db.migrations(report)
    assert found.verdict == "pass" and "1 new migration(s) since v1.0.0: inv.0002_sku" in found.summary
    assert found.details[0]["operations"] == "Remove field note from item; Add field sku to item"

    graph = db.migration_graph(report)
    assert graph.verdict == "pass" and "makemigrations --check: no changes" in graph.summary

    plan = db.rollback_plan(report)
    assert plan.verdict == "warn", plan.summary
    assert "python manage.py migrate inv 0001_initial" in plan.summary
    assert "code-only rollback is NOT safe" in plan.summary
    row = plan.details[0]
    assert row["reversible"] == "yes" and row["reverse command"] == "python manage.py migrate inv 0001_initial"
    broken = row["v1.0.0 code on the new schema"]
    assert "Item.note is dropped" in broken and "Item.sku is added NOT NULL without a database default" in broken
    assert "reversed in" in plan.details[-1]["note"]  # rehearsed on the sample


def test_conflicting_leaves_and_unmigrated_model_changes_fail_the_graph(tmp_path):
    repo = project(tmp_path, {
        "inv/models.py": MODELS_V1 + "    price = models.IntegerField(default=1)\n",
        "inv/migrations/0002_a.py": _migration('("inv", "0001_initial")', ""),
        "inv/migrations/0002_b.py": _migration('("inv", "0001_initial")', ""),
    })
    graph = db.migration_graph(analyse(repo))
    assert graph.verdict == "fail"
    assert "conflicting leaves in inv" in graph.summary
    by_check = {r["check"]: r for r in graph.details}
    assert by_check["conflicts"]["result"] == "inv: 0002_a, 0002_b"


def test_a_missing_dependency_is_reported_by_the_graph_check(tmp_path):
    repo = project(tmp_path, {"inv/migrations/0002_x.py": _migration('("inv", "0001_nope")', "")})
    report = analyse(repo)
    assert report.error == "" and report.broken
    graph = db.migration_graph(report)
    assert graph.verdict == "fail" and "1 missing dependency" in graph.summary
    assert "inv.0002_x depends on inv.0001_nope, which does not exist" in graph.details[2]["result"]
    for fn in (db.migrations, db.migration_estimate, db.rollback_plan):
        res = fn(report)
        assert res.verdict == "fail" and "cannot be built" in res.summary


def test_models_changed_without_a_migration_fail_the_graph(tmp_path):
    repo = project(tmp_path, {"inv/models.py": MODELS_V1 + "    price = models.IntegerField(default=1)\n"})
    report = analyse(repo)
    assert db.migrations(report).summary == "no new migrations since v1.0.0"
    graph = db.migration_graph(report)
    assert graph.verdict == "fail" and "makemigrations --check" in graph.summary
    assert "price" in graph.details[3]["result"]
    assert db.rollback_plan(report).verdict == "pass"
    assert db.migration_estimate(report).verdict == "pass"


def test_a_project_that_does_not_load_fails_all_four_checks_with_the_reason(tmp_path):
    repo = project(tmp_path, {"proj/settings.py": SETTINGS + "raise RuntimeError('broken settings')\n"})
    report = analyse(repo)
    assert "broken settings" in report.error
    for fn in (db.migrations, db.migration_graph, db.migration_estimate, db.rollback_plan):
        res = fn(report)
        assert res.verdict == "fail" and "broken settings" in res.summary


def test_the_runtime_sample_stops_at_its_time_budget(tmp_path):
    ops = 'migrations.AddField(model_name="item", name="size", field=models.IntegerField(null=True))'
    repo = project(tmp_path, {"inv/models.py": MODELS_V1 + "    size = models.IntegerField(null=True)\n",
                              "inv/migrations/0002_size.py": _migration('("inv", "0001_initial")', ops)})
    data = db.probe(sys.executable, repo, "proj.settings", "full", 120, sizes=(10, 20), sample_budget=1e-6)
    entries = [e for run in data["sample"]["runs"] for e in run["migrations"]]
    assert entries and all(e["error"].startswith("not run: the sample's time budget") for e in entries)
    release = checks.Release(str(repo), "v1.1.0", "a" * 40, "HEAD")
    est = db.migration_estimate(db.MigrationReport(release, Previous("", ""), SMALL, data=data))
    assert est.verdict == "warn" and "not measured (not run: the sample's time budget" in est.summary


# --------------------------------------------------------------------------- the demo app's history


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The real demo history, healthy and with the irreversible migration, built once for the module."""
    base = tmp_path_factory.mktemp("demo")
    out = {}
    for scenario in ("healthy", "irreversible-migration"):
        info = repo_builder.build(base / scenario / "bare.git", base / scenario / "work", scenario)
        out[scenario] = Path(str(info["work"]))
    return out


@pytest.mark.slow
def test_demo_release_healthy(demo):
    th = PrecheckSection(migration_sample_rows=500, db_row_counts={"shop_product": 2_000_000})
    report = analyse(demo["healthy"], "v1.0.0", th)
    assert report.error == ""
    assert [m["key"] for m in report.new] == ["shop.0003_category", "shop.0004_assign_categories"]
    assert db.migration_graph(report).verdict == "pass"
    plan = db.rollback_plan(report)
    assert plan.verdict == "pass", plan.summary
    assert db.reverse_commands(report) == [{"app": "shop", "target": "0002_seed_products",
                                            "command": "python manage.py migrate shop 0002_seed_products"}]
    est = db.migration_estimate(report)
    assert est.verdict in ("pass", "warn") and "100 and 500 synthetic rows" in est.evidence
    assert all("shop_product=2,000,000" in r["production rows"] for r in est.details)
    assert all(r["sample 1"].endswith("@ 120 rows") and r["sample 2"].endswith("@ 520 rows") for r in est.details)


@pytest.mark.slow
def test_demo_irreversible_migration_fails_the_rollback_plan(demo):
    report = analyse(demo["irreversible-migration"], "v1.0.0", PrecheckSection(migration_sample_rows=100))
    plan = db.rollback_plan(report)
    assert plan.verdict == "fail"
    assert "shop.0005_normalise_skus (RunPython without reverse_code" in plan.summary
    assert "pre-deploy snapshot" in plan.summary
    rows = {r["migration"]: r for r in plan.details}
    assert rows["shop.0005_normalise_skus"]["reversible"] == "NO"
    assert rows["shop.0005_normalise_skus"]["reverse command"] == "python manage.py migrate shop 0004_assign_categories"
    assert rows["whole release"]["note"].startswith("rehearsal on a 100-row SQLite sample failed: IrreversibleError")
    listed = db.migrations(report)
    assert "RunPython normalise_skus (reverse: none)" in listed.details[-1]["operations"]


# --------------------------------------------------------------------------- the estimate's arithmetic


def _report(entries: list[tuple[int, float]], tables: list[str], th: PrecheckSection) -> db.MigrationReport:
    release = checks.Release("/repo", "v2.0.0", "a" * 40, "tag v2.0.0")
    runs = [{"size": n, "migrations": [{"key": "app.0002_x", "rows": {tables[0]: n}, "seconds": t, "error": ""}],
             "rollback": None, "error": ""} for n, t in entries]
    data = {"graph": {"nodes": []}, "migrations": [{"key": "app.0002_x", "app": "app", "tables": tables,
                                                    "operations": []}],
            "sample": {"sizes": [n for n, _ in entries], "runs": runs}}
    return db.MigrationReport(release, Previous("v1.0.0", "b" * 40), th, data=data)


def test_estimate_extrapolates_the_fitted_line_to_production_rows():
    th = PrecheckSection(db_row_counts={"app_t": 1_000_000}, migration_warn_seconds=60)
    [est] = db.estimates(_report([(1000, 0.2), (5000, 0.6)], ["app_t"], th))
    assert est.scales and est.per_row == pytest.approx(0.0001) and est.intercept == pytest.approx(0.1)
    assert est.seconds == pytest.approx(100.1)
    res = db.migration_estimate(_report([(1000, 0.2), (5000, 0.6)], ["app_t"], th))
    assert res.verdict == "warn" and "≈1.7 min" in res.summary and "plan a window" in res.summary
    blocking = PrecheckSection(db_row_counts={"app_t": 1_000_000}, migration_fail_seconds=90)
    assert db.migration_estimate(_report([(1000, 0.2), (5000, 0.6)], ["app_t"], blocking)).verdict == "fail"


def test_estimate_of_a_flat_migration_and_of_unknown_production_rows():
    flat = db.estimates(_report([(1000, 0.05), (5000, 0.04)], ["app_t"], PrecheckSection()))[0]
    assert not flat.scales and flat.seconds == pytest.approx(0.05)
    assert db.migration_estimate(_report([(1000, 0.05), (5000, 0.04)], ["app_t"], PrecheckSection())).verdict == "pass"
    res = db.migration_estimate(_report([(1000, 0.2), (5000, 0.6)], ["app_t"], PrecheckSection()))
    assert res.verdict == "warn" and "db_row_counts" in res.summary
    assert res.details[0]["estimate"] == "100.0s per 1M rows"
