"""`make release` end to end against the sandbox, as the release manager runs it."""

from __future__ import annotations

import subprocess

import requests
from shipbook import audit


def served_version(twin) -> str:
    return requests.get(twin.url("alb_url") + "/version/", timeout=5).json()["version"]


def remote_tags(twin) -> set[str]:
    out = subprocess.run(["git", "ls-remote", "--tags", twin.url("git_remote")], capture_output=True, text=True,
                         check=True).stdout
    return {line.split("refs/tags/")[1].removesuffix("^{}") for line in out.splitlines() if "refs/tags/" in line}


def latest_record(twin, version: str) -> dict:
    rec = audit.latest_run(twin.runs, "sandbox", version)
    assert rec is not None, f"no run of {version}"
    return rec


def clients(twin, *services: str):
    import boto3

    kw = dict(endpoint_url=twin.url("aws_url"), region_name="ap-northeast-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    return [boto3.client(s, **kw) for s in services]


def secret_values(twin) -> list[str]:
    (sm,) = clients(twin, "secretsmanager")
    values = [sm.get_secret_value(SecretId=f"shipbook-demo/{n}")["SecretString"]
              for n in ("SECRET_KEY", "DATABASE_URL")]
    assert all(len(v) > 8 for v in values)
    return values


def mutable_state(twin) -> dict:
    """What a bad release must not change: tags, images, task definitions, snapshots."""
    import boto3

    kw = dict(endpoint_url=twin.url("aws_url"), region_name="ap-northeast-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    ecr, ecs, rds = (boto3.client(s, **kw) for s in ("ecr", "ecs", "rds"))
    local = subprocess.run(["git", "tag", "--list"], cwd=twin.url("app_repo"), capture_output=True, text=True,
                           check=True).stdout.split()
    return {
        "tags": remote_tags(twin),
        "local_tags": sorted(local),
        "images": sorted(t for i in ecr.describe_images(repositoryName="demo-app")["imageDetails"]
                         for t in i.get("imageTags", [])),
        "taskdefs": ecs.list_task_definitions(familyPrefix="demo-web")["taskDefinitionArns"],
        "snapshots": sorted(s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots()["DBSnapshots"]),
    }


def test_bad_versions_exit_2_and_change_nothing(twin):
    before = mutable_state(twin)
    for bad in ["1.0.0", "v1.0", "v1.0.0.0", "v01.0.0", "v1.0.0; rm -rf /", "", "v0.8.0", "v0.9.0"]:
        out = twin.run("release", bad)  # the CLI's own exit code (make turns every failure into 2)
        assert out.returncode == 2, (bad, out.stdout, out.stderr)
        assert "VERSION" in out.stderr and "Traceback" not in out.stderr, (bad, out.stderr)
        if bad:
            out = twin.run("make", "--no-print-directory", "release", f"VERSION={bad}")
            assert out.returncode != 0 and "VERSION" in out.stderr, (bad, out.stderr)
    assert mutable_state(twin) == before


def test_healthy_release_deploys_v1_0_0_and_records_everything(twin):
    twin.reset("healthy")  # a twin of its own state: whatever ran before on it
    out = twin.run("make", "--no-print-directory", "release", "VERSION=v1.0.0")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "deploy [" in out.stderr and "OK   deploy: succeeded" in out.stderr
    assert served_version(twin) == "v1.0.0"
    assert "v1.0.0" in remote_tags(twin)
    rec = latest_record(twin, "v1.0.0")
    assert rec["status"] == "succeeded" and rec["previous_version"] == "v0.9.0" and len(rec["commit"]) == 40
    deploy = next(p for p in rec["phases"] if p["name"] == "deploy")
    assert deploy["status"] == "succeeded"
    run_dir = next(twin.runs.glob(f"sandbox/v1.0.0/{rec['run_id']}"))
    html = (run_dir / "03_deploy.html").read_text(encoding="utf-8")
    for needle in ["deploy.workflow", "deploy.cloudformation", "deploy.ecs", "COMPLETED", "UPDATE_COMPLETE"]:
        assert needle in html, needle
    assert "data:image/png;base64" in (run_dir / "03_deploy.stakeholder.html").read_text(encoding="utf-8")
    phases = {p["name"]: p for p in rec["phases"]}
    assert {"precheck", "backup", "deploy", "verify", "report"} <= set(phases)
    assert all(p["status"] == "succeeded" for p in phases.values())
    assert rec["facts"]["snapshot_id"].startswith("pre-deploy-v1-0-0-")
    precheck = (run_dir / "01_precheck.html").read_text(encoding="utf-8")
    for row in ["code.tests", "code.review", "code.bandit", "code.ruff", "code.release_notes", "code.shared",
                "db.migrations", "db.migration_graph", "db.migration_estimate", "db.rollback_plan", "env.variables",
                "iam.task_execution_role", "iam.ecr_push", "network.security_groups", "infra.cloudformation",
                "infra.ecs", "infra.alb", "infra.scaling", "すべての自動テストがパスしている"]:
        assert row in precheck, row
    backup = (run_dir / "02_backup.html").read_text(encoding="utf-8")
    assert rec["facts"]["snapshot_id"] in backup and "available" in backup and "db.backup" in backup
    assert "deploy [" in out.stderr and " │ " in out.stderr  # what long cells print reaches the terminal
    report = (run_dir / "06_report.stakeholder.html").read_text(encoding="utf-8")
    assert "product categories" in report and "#6" in report  # the feature of v1.0.0, with its PR
    assert "health check answers 503" in report and "#7" in report  # the fix of v1.0.0
    assert twin.run("audit").returncode == 0
    listing = twin.run("runs")
    assert rec["run_id"] in listing.stdout and "succeeded" in listing.stdout
    assert (twin.runs / "index.html").is_file()
    for value in secret_values(twin):  # the app's real secrets appear nowhere in the run
        assert not [p for p in twin.runs.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]


def test_crash_on_start_stops_the_release_and_the_old_version_keeps_serving(twin):
    twin.reset("crash-on-start")
    out = twin.run("release", "v1.0.0")  # the CLI's own exit code (make turns every failure into 2)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "deploy.ecs" in out.stderr
    assert served_version(twin) == "v0.9.0"
    rec = latest_record(twin, "v1.0.0")
    assert rec["status"] == "blocked"
