"""RDS data in the twin: snapshots copy an instance's data, restores get it back, a rename moves the endpoint."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

Twin = Any  # the `aws_twin` fixture's object (tests/sandbox/conftest.py)


def new_instance(twin: Twin, name: str) -> None:
    twin.client("rds").create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
                                          MasterUsername="demo", MasterUserPassword="password123",
                                          AllocatedStorage=20)


def snapshot_available(twin: Twin, name: str) -> None:
    twin.client("rds").get_waiter("db_snapshot_available").wait(DBSnapshotIdentifier=name,
                                                                 WaiterConfig={"Delay": 1, "MaxAttempts": 20})


def instance(twin: Twin, ident: str) -> dict[str, Any]:
    return twin.client("rds").describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"][0]


def datafile(twin: Twin, ident: str) -> dict[str, Any]:
    status, body = twin.control(f"rds/datafile?host={instance(twin, ident)['Endpoint']['Address']}")
    assert status == 200, body
    return body


def rows(path: str | Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("select name from item order by id")]


def write(path: str | Path, *names: str) -> None:
    with sqlite3.connect(path) as db:  # what the app does through its DATABASE_URL
        db.execute("create table if not exists item (id integer primary key, name text)")
        db.executemany("insert into item (name) values (?)", [(n,) for n in names])


def test_every_instance_has_its_own_resource_id_and_data_file(aws_twin: Twin) -> None:
    name = f"t-own-{uuid.uuid4().hex[:6]}"
    new_instance(aws_twin, name)
    mine, seeded = datafile(aws_twin, name), datafile(aws_twin, "shipbook-demo-db")
    assert mine["instance"] == name and seeded["instance"] == "shipbook-demo-db"
    assert mine["resourceId"] != seeded["resourceId"] and mine["path"] != seeded["path"]
    assert mine["resourceId"] == instance(aws_twin, name)["DbiResourceId"]
    assert aws_twin.control("rds/datafile?host=nowhere.example")[0] == 404
    assert aws_twin.control("rds/datafile")[0] == 400


def test_restore_brings_back_the_snapshot_data_and_a_rename_swap_moves_the_endpoint(
    aws_twin: Twin, wait_for: Callable[..., Any]
) -> None:
    rds = aws_twin.client("rds")
    name = f"t-db-{uuid.uuid4().hex[:6]}"
    new_instance(aws_twin, name)
    address = instance(aws_twin, name)["Endpoint"]["Address"]
    original = datafile(aws_twin, name)
    write(original["path"], "before-1", "before-2")

    snap = f"{name}-snap"
    rds.create_db_snapshot(DBInstanceIdentifier=name, DBSnapshotIdentifier=snap)
    write(original["path"], "after-snapshot")  # lost by a restore: the data-loss window
    snapshot_available(aws_twin, snap)

    restored_name = f"{name}-restore"
    created = rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=restored_name,
                                                       DBSnapshotIdentifier=snap)["DBInstance"]
    assert created["DBInstanceStatus"] == "creating"
    wait_for(lambda: instance(aws_twin, restored_name)["DBInstanceStatus"] == "available", timeout=20,
             what="the restored instance to become available")
    restored = datafile(aws_twin, restored_name)
    assert rows(restored["path"]) == ["before-1", "before-2"]
    assert rows(original["path"]) == ["before-1", "before-2", "after-snapshot"]

    # the swap by renaming: the endpoint the app's DATABASE_URL names now reaches the restored data
    rds.modify_db_instance(DBInstanceIdentifier=name, NewDBInstanceIdentifier=f"{name}-aside", ApplyImmediately=True)
    assert aws_twin.control(f"rds/datafile?host={address}")[0] == 404  # nobody answers there between the renames
    rds.modify_db_instance(DBInstanceIdentifier=restored_name, NewDBInstanceIdentifier=name, ApplyImmediately=True)
    status, now = aws_twin.control(f"rds/datafile?host={address}")
    assert status == 200 and now["resourceId"] == restored["resourceId"] and now["path"] == restored["path"]
    assert rows(now["path"]) == ["before-1", "before-2"]
    assert rows(datafile(aws_twin, f"{name}-aside")["path"]) == ["before-1", "before-2", "after-snapshot"]


def test_a_snapshot_of_an_instance_without_data_restores_an_empty_instance(
    aws_twin: Twin, wait_for: Callable[..., Any]
) -> None:
    rds = aws_twin.client("rds")
    name = f"t-empty-{uuid.uuid4().hex[:6]}"
    new_instance(aws_twin, name)
    rds.create_db_snapshot(DBInstanceIdentifier=name, DBSnapshotIdentifier=f"{name}-s")
    snapshot_available(aws_twin, f"{name}-s")
    rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=f"{name}-r", DBSnapshotIdentifier=f"{name}-s")
    wait_for(lambda: instance(aws_twin, f"{name}-r")["DBInstanceStatus"] == "available", timeout=20,
             what="the restored instance")
    assert not Path(datafile(aws_twin, f"{name}-r")["path"]).exists()


def test_the_vpc_keeps_its_dns_attributes_from_the_template(aws_twin: Twin) -> None:
    ec2 = aws_twin.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["shipbook-demo"]}])["Vpcs"][0]["VpcId"]
    assert ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"]
    assert ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsSupport")["EnableDnsSupport"]["Value"]
