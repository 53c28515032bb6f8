"""A database restore for real: the sandbox's RDS twin keeps each instance's data, so after a confirmed
restore the identifier (and endpoint) the app uses must serve the pre-deploy snapshot's data; without the
confirmation nothing may change.

The release here runs only backup and deploy, with short verify windows for the rollback's own checks
(an environment file of the test's own): the restore is what is under test, not the judge.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from shipbook import audit
from test_release import clients, remote_tags, served_version

pytestmark = pytest.mark.xdist_group("sandbox-rollback")
ROOT = Path(__file__).resolve().parents[2]
INSTANCE = "shipbook-demo-db"


def quick_environment(tmp_path: Path) -> dict[str, str]:
    text = (ROOT / "environments" / "sandbox.toml").read_text(encoding="utf-8")
    for old, new in [('phases = ["precheck", "backup", "deploy", "verify", "report"]', 'phases = ["backup", "deploy"]'),
                     ("baseline_seconds = 120", "baseline_seconds = 30"),
                     ("canary_seconds = 120", "canary_seconds = 30")]:
        assert old in text, old
        text = text.replace(old, new)
    (tmp_path / "sandbox.toml").write_text(text, encoding="utf-8")
    return {"SHIPBOOK_ENV_DIR": str(tmp_path)}


def instances(twin) -> dict[str, dict]:
    (rds,) = clients(twin, "rds")
    return {d["DBInstanceIdentifier"]: d for d in rds.describe_db_instances()["DBInstances"]}


def data_behind_database_url(twin) -> dict:
    """Which instance, and which data, the app reaches through its DATABASE_URL (the secret, unchanged)."""
    (sm,) = clients(twin, "secretsmanager")
    host = urlsplit(sm.get_secret_value(SecretId="shipbook-demo/DATABASE_URL")["SecretString"]).hostname
    answer = requests.get(f"{twin.url('aws_url')}/_sandbox/rds/datafile", params={"host": host}, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()


def shop_migrations(path: str) -> list[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [r[0] for r in db.execute("select name from django_migrations where app = 'shop' order by name")]


def test_a_confirmed_restore_puts_the_pre_deploy_data_behind_the_apps_identifier(twin, tmp_path):
    twin.reset("healthy")
    quick = quick_environment(tmp_path)
    out = twin.run("release", "v1.0.0", env=quick)
    assert out.returncode == 0, out.stderr[-3000:]
    assert served_version(twin) == "v1.0.0"
    snapshot = audit.latest_run(twin.runs, "sandbox", "v1.0.0")["facts"]["snapshot_id"]
    released = data_behind_database_url(twin)
    assert released["instance"] == INSTANCE
    assert "0004_assign_categories" in shop_migrations(released["path"])  # v1.0.0 migrated at start

    # a restore asked for by name but not confirmed: refused before anything changes
    before = set(instances(twin))
    refused = twin.run("rollback", "v1.0.0", "--db-action", "restore", env=quick)
    assert refused.returncode == 1, refused.stderr[-3000:]
    assert "--confirm-db-restore" in refused.stderr + refused.stdout
    assert set(instances(twin)) == before
    assert "v1.0.1-rollback" not in remote_tags(twin) and served_version(twin) == "v1.0.0"
    assert data_behind_database_url(twin)["resourceId"] == released["resourceId"]

    done = twin.run("rollback", "v1.0.0", "--db-action", "restore", "--confirm-db-restore", env=quick)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DATA LOSS" in done.stderr + done.stdout or "is lost" in done.stderr + done.stdout

    now = instances(twin)
    (rds,) = clients(twin, "rds")
    tags = {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=now[INSTANCE]["DBInstanceArn"])
            ["TagList"]}
    assert tags.get("shipbook:restored-from") == snapshot
    aside = [n for n in now if n.startswith(f"{INSTANCE}-pre-rollback-")]
    assert len(aside) == 1 and now[aside[0]]["DbiResourceId"] == released["resourceId"]  # kept, not deleted

    restored = data_behind_database_url(twin)  # the same DATABASE_URL, now the restored instance's data
    assert restored["instance"] == INSTANCE and restored["resourceId"] != released["resourceId"]
    assert restored["resourceId"] == now[INSTANCE]["DbiResourceId"]
    assert shop_migrations(restored["path"]) == ["0001_initial", "0002_seed_products"]  # the pre-deploy schema
    assert "0004_assign_categories" in shop_migrations(released["path"])  # the release's data, set aside

    rec = audit.latest_run(twin.runs, "sandbox", "v1.0.0")
    assert rec["facts"]["rolled_back_to"] == "v0.9.0" and "v1.0.1-rollback" in remote_tags(twin)
    products = requests.get(twin.url("alb_url") + "/products/", timeout=5)
    assert products.status_code == 200 and products.json()["products"]  # v0.9.0 serves from the restored data
