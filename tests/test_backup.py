"""Phase backup: snapshot identifiers, the plan, the wait with an injected clock, verify/tag, retention."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import Stubber
from shipbook import aws, backup
from shipbook.config import AwsSection, Environment
from shipbook.errors import InputError
from support import aws_client

REGION = "ap-northeast-1"
WHEN = datetime(2026, 11, 28, 9, 30, 5, tzinfo=UTC)


class Clock:
    """`now`/`sleep` for the wait: sleeping advances time, nothing really waits."""

    def __init__(self, start: datetime = WHEN) -> None:
        self.t = start
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += timedelta(seconds=seconds)


# --------------------------------------------------------------------------- identifiers

VALID = re.compile(r"^[a-z](?!.*--)[a-z0-9-]{0,254}(?<!-)$")


@pytest.mark.parametrize(("pattern", "version", "expected"), [
    ("pre-deploy-{version}-{date}", "v1.0.0", "pre-deploy-v1-0-0-2026-11-28"),
    ("pre-deploy-{version}-{date}", "v2.10.3-rc.1", "pre-deploy-v2-10-3-rc-1-2026-11-28"),
    ("pre-deploy-{version}-{date}", "V1.0.0+Build_7", "pre-deploy-v1-0-0-build-7-2026-11-28"),
    ("{version}", "1.0.0", "snap-1-0-0"),
    ("{version}-{date}", "--v1..0--", "v1-0-2026-11-28"),
    ("Pre Deploy__{version}__{time}", "v1", "pre-deploy-v1-093005"),
    ("pre-deploy-{version}-", "v1.0.0", "pre-deploy-v1-0-0"),
    ("{env}-{version}-{run_id}", "v1.0.0", "prod-v1-0-0-20261128t093005-ab12"),
    ("x" * 300 + "-{version}", "v1.0.0", "x" * 255),
    ("x" * 254 + "-{version}", "v1", "x" * 254),
])
def test_snapshot_identifiers_are_valid_for_rds(pattern, version, expected):
    name = backup.snapshot_identifier(pattern, version, WHEN, env="prod", run_id="20261128T093005-ab12")
    assert name == expected
    assert VALID.match(name) and backup.identifier_problems(name) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("v1.0.0", "v1-0-0"), ("--", ""), ("1", "snap-1"), ("a-", "a"), ("a--b", "a-b"), ("ÄÖÜ-ß", ""),
    ("x" * 400, "x" * 255), ("a b\tc", "a-b-c"), ("-é-", ""), ("Pre Deploy__V2", "pre-deploy-v2"),
    ("9" * 300, "snap-" + "9" * 250), ("a" + "-b" * 200, ("a" + "-b" * 127)),
])
def test_sanitize_always_gives_a_valid_identifier_or_nothing(text, expected):
    name = backup.sanitize(text)
    assert name == expected
    if name:
        assert VALID.match(name) and backup.identifier_problems(name) == []
    else:  # nothing only when the text holds no letter or digit RDS accepts
        assert not re.search(r"[a-z0-9]", text.lower())


@pytest.mark.parametrize(("name", "problem"), [
    ("", "empty"), ("1abc", "does not start with a letter"), ("a.b", "other than letters"),
    ("a--b", "two consecutive hyphens"), ("ab-", "ends with a hyphen"), ("a" * 256, "longer than 255"),
])
def test_identifier_problems_name_the_rule(name, problem):
    assert any(problem in p for p in backup.identifier_problems(name))


def test_a_bad_pattern_is_an_input_error():
    with pytest.raises(InputError, match="pattern"):
        backup.snapshot_identifier("pre-{release}", "v1", WHEN)
    with pytest.raises(InputError, match="empty"):
        backup.snapshot_identifier("{env}", "v1", WHEN)


# --------------------------------------------------------------------------- waiting, with a stubbed RDS


def _rds():
    return aws_client("http://127.0.0.1:9", "rds")


def _snap(status, pct=None, sid="pre-deploy-v1-0-0-2026-11-28"):
    s = {"DBSnapshotIdentifier": sid, "DBInstanceIdentifier": "db", "Status": status}
    if pct is not None:
        s["PercentProgress"] = pct
    return {"DBSnapshots": [s]}


def _wait_with(statuses, timeout=60.0, progress_every=5.0):
    rds = _rds()
    stub = Stubber(rds)
    for st in statuses:
        stub.add_response("describe_db_snapshots", _snap(*st) if isinstance(st, tuple) else _snap(st))
    clock, lines = Clock(), []
    with stub:
        out = backup.wait(rds, "pre-deploy-v1-0-0-2026-11-28", sleep=clock.sleep, now=clock.now, timeout=timeout,
                          progress=lines.append, progress_every=progress_every, max_poll=4.0)
    return out, lines, clock


def test_wait_follows_creating_to_available_with_progress_lines():
    out, lines, clock = _wait_with([("creating", 0), ("creating", 10), ("creating", 10), ("creating", 60),
                                    ("available", 100)])
    assert out.ok and out.status == "available"
    assert lines[0] == "snapshot pre-deploy-v1-0-0-2026-11-28: creating 0% (0 s)"
    assert any("creating 60%" in line for line in lines) and "available" in lines[-1]
    assert clock.slept == [1.0, 1.5, 2.25, 3.375]  # backs off, never beyond max_poll
    assert out.seconds == pytest.approx(sum(clock.slept))


def test_wait_prints_a_line_every_few_seconds_even_without_change():
    out, lines, _ = _wait_with([("creating", 5)] * 8 + ["available"], progress_every=5.0)
    assert out.ok
    creating = [line for line in lines if "creating" in line]
    assert 3 <= len(creating) < 8  # the first, then one per 5 s of the ~24 s


def test_wait_ends_on_failed():
    out, lines, _ = _wait_with([("creating", 10), ("failed", 50)])
    assert out.status == "failed" and not out.ok and "ended failed" in out.message


def test_wait_gives_up_at_the_deadline():
    out, lines, clock = _wait_with([("creating", 1)] * 20, timeout=10.0)
    assert out.status == "timeout" and "deadline" in out.message
    assert clock.t - WHEN == timedelta(seconds=10)  # the last sleep is cut to the deadline


# --------------------------------------------------------------------------- the phase against moto


@pytest.fixture
def db(moto_url):
    rds = aws_client(moto_url, "rds")
    name = f"db-{uuid.uuid4().hex[:8]}"
    rds.create_db_instance(DBInstanceIdentifier=name, Engine="postgres", DBInstanceClass="db.t4g.micro",
                           AllocatedStorage=20, StorageEncrypted=True, MasterUsername="demo",
                           MasterUserPassword="not-a-secret-1")
    env = Environment(name="t", kind="sandbox", aws=AwsSection(region=REGION, endpoint_url=moto_url))
    return name, aws.client(env, "rds"), rds


def _take(rds, p, clock):
    return backup.take(rds, p, dry_run=False, sleep=clock.sleep, now=clock.now, progress=lambda line: None)


def test_plan_then_take_verify_tag_and_record_the_snapshot(db):
    name, rds, raw = db
    clock = Clock()
    p = backup.plan(rds, name, "v1.0.0", run_id="run-1", now=clock.now)
    # ids are per account: another test's instance may hold the plain id already (then `-2` …)
    assert p.action == "create" and re.fullmatch(r"pre-deploy-v1-0-0-2026-11-28(-\d)?", p.snapshot_id)
    assert not p.problems
    assert "create a manual snapshot" in repr(p)
    out = _take(rds, p, clock)
    assert out.ok, out.message
    res = backup.verify_and_tag(rds, p, out, version="v1.0.0", run_id="run-1")
    assert res.verdict == "pass", res.summary
    items = {r["item"]: r for r in res.details}
    assert items["encrypted"]["snapshot"] is True and items["engine"]["verdict"] == "pass"
    tags = raw.list_tags_for_resource(ResourceName=out.snapshot["DBSnapshotArn"])["TagList"]
    assert {"Key": "shipbook:run-id", "Value": "run-1"} in tags
    assert {"Key": "shipbook:version", "Value": "v1.0.0"} in tags
    facts = backup.facts(res, out)
    assert facts["snapshot_id"] == p.snapshot_id and facts["snapshot_time"].startswith("20")


def test_a_rerun_finds_the_snapshot_and_reuses_it(db):
    name, rds, raw = db
    clock = Clock()
    first = _take(rds, backup.plan(rds, name, "v1.0.0", now=clock.now), clock)
    again = backup.plan(rds, name, "v1.0.0", now=clock.now)
    assert again.action == "reuse" and again.snapshot_id == first.snapshot_id
    out = _take(rds, again, clock)
    res = backup.verify_and_tag(rds, again, out, version="v1.0.0", run_id="run-2")
    assert res.verdict == "pass" and "(reused)" in res.summary
    snaps = raw.describe_db_snapshots(DBInstanceIdentifier=name, SnapshotType="manual")["DBSnapshots"]
    assert len(snaps) == 1


def test_dry_run_stops_after_the_plan(db):
    name, rds, raw = db
    p = backup.plan(rds, name, "v1.0.0", now=Clock().now)
    out = backup.take(rds, p, dry_run=True)
    assert out.status == "dry-run"
    res = backup.verify_and_tag(rds, p, out, version="v1.0.0")
    assert res.verdict == "skip" and backup.facts(res, out) == {}
    assert raw.describe_db_snapshots(DBInstanceIdentifier=name, SnapshotType="manual")["DBSnapshots"] == []


def test_a_missing_instance_blocks_and_the_check_fails(db):
    _, rds, _ = db
    p = backup.plan(rds, "no-such-db", "v1.0.0", now=Clock().now)
    assert p.action == "blocked" and "not found" in p.problems[0]
    out = backup.take(rds, p, dry_run=False)
    res = backup.verify_and_tag(rds, p, out, version="v1.0.0")
    assert res.verdict == "fail" and "not found" in res.summary and backup.facts(res, out) == {}


def test_a_failed_snapshot_fails_the_backup_check():
    p = backup.Plan(instance="db", snapshot_id="s", action="create", version="v1", run_id="", planned_at=WHEN)
    out = backup.Outcome("s", "failed", "snapshot s ended failed after 4 s")
    res = backup.verify_and_tag(None, p, out, version="v1")
    assert res.id == "db.backup" and res.verdict == "fail" and "ended failed" in res.summary


def test_an_earlier_failed_attempt_is_left_and_the_next_id_is_used():
    rds = _rds()
    stub = Stubber(rds)
    stub.add_response("describe_db_instances", {"DBInstances": [{"DBInstanceIdentifier": "db", "Engine": "postgres",
                                                                 "DBInstanceStatus": "available"}]})
    stub.add_response("describe_db_snapshots", _snap("failed"))
    stub.add_client_error("describe_db_snapshots", "DBSnapshotNotFound", http_status_code=404)
    stub.add_response("describe_db_snapshots", {"DBSnapshots": []})
    with stub:
        p = backup.plan(rds, "db", "v1.0.0", now=Clock().now)
    assert p.action == "create" and p.snapshot_id == "pre-deploy-v1-0-0-2026-11-28-2"
    assert p.earlier_failed == ["pre-deploy-v1-0-0-2026-11-28 (failed)"]


def test_an_invalid_explicit_snapshot_id_is_refused(db):
    _, rds, _ = db
    with pytest.raises(InputError, match="not a valid RDS snapshot identifier"):
        backup.plan(rds, "db", "v1.0.0", snapshot_id="pre-deploy-v1.0.0")


def test_old_pre_deploy_snapshots_are_listed_and_deleted_only_with_the_flag(db):
    name, rds, raw = db
    for i in range(4):
        raw.create_db_snapshot(DBSnapshotIdentifier=f"pre-deploy-v0-{i}-0-2026-11-0{i + 1}", DBInstanceIdentifier=name)
    raw.create_db_snapshot(DBSnapshotIdentifier="manual-by-a-person", DBInstanceIdentifier=name)
    p = backup.plan(rds, name, "v1.0.0", keep=3, now=Clock().now)
    assert len(p.old) == 2  # 4 earlier + the new one, keep 3: the 2 oldest go
    assert "manual-by-a-person" not in {s["id"] for s in p.old}
    listed = backup.retention(rds, p, delete=False, dry_run=False)
    assert listed.verdict == "pass" and "listed, not deleted" in listed.summary
    assert backup.retention(rds, p, delete=True, dry_run=True).details[0]["action"] == "kept (dry run)"
    left = {s["DBSnapshotIdentifier"] for s in raw.describe_db_snapshots(DBInstanceIdentifier=name,
                                                                          SnapshotType="manual")["DBSnapshots"]}
    assert len(left) == 5
    deleted = backup.retention(rds, p, delete=True, dry_run=False)
    assert deleted.summary == "deleted 2 old pre-deploy snapshots"
    left = {s["DBSnapshotIdentifier"] for s in raw.describe_db_snapshots(DBInstanceIdentifier=name,
                                                                          SnapshotType="manual")["DBSnapshots"]}
    assert left.isdisjoint({s["id"] for s in p.old}) and "manual-by-a-person" in left
