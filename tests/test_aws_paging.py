"""shipbook.aws.pages / collect: boto3's paginators (each API's own token), one limit policy, errors translated."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from shipbook import aws
from shipbook.errors import AwsError


def rds():
    return boto3.client("rds", region_name="ap-northeast-1", aws_access_key_id="x", aws_secret_access_key="x")


def snaps(*ids: str) -> list[dict]:
    return [{"DBSnapshotIdentifier": i} for i in ids]


def test_collect_follows_the_apis_own_token_to_the_last_page():
    cli = rds()
    with Stubber(cli) as stub:  # RDS pages with Marker, not NextToken
        stub.add_response("describe_db_snapshots", {"DBSnapshots": snaps("a", "b"), "Marker": "m1"},
                          {"DBInstanceIdentifier": "db"})
        stub.add_response("describe_db_snapshots", {"DBSnapshots": snaps("c"), "Marker": "m2"},
                          {"DBInstanceIdentifier": "db", "Marker": "m1"})
        stub.add_response("describe_db_snapshots", {"DBSnapshots": snaps("d")},
                          {"DBInstanceIdentifier": "db", "Marker": "m2"})
        got = aws.collect(cli, "describe_db_snapshots", "DBSnapshots", DBInstanceIdentifier="db")
        stub.assert_no_pending_responses()
    assert [s["DBSnapshotIdentifier"] for s in got] == ["a", "b", "c", "d"]


def test_a_listing_past_the_limit_is_an_error_not_a_silently_cut_list(monkeypatch):
    monkeypatch.setattr(aws, "MAX_ITEMS", 2)
    cli = rds()
    with Stubber(cli) as stub:
        stub.add_response("describe_db_snapshots", {"DBSnapshots": snaps("a", "b"), "Marker": "m1"})
        stub.add_response("describe_db_snapshots", {"DBSnapshots": snaps("c")})
        with pytest.raises(AwsError) as err:
            aws.collect(cli, "describe_db_snapshots", "DBSnapshots")
    assert err.value.code == "TooManyItems" and "more than 2 DBSnapshots" in str(err.value)


def test_an_error_on_a_later_page_is_translated():
    cli = rds()
    with Stubber(cli) as stub:
        stub.add_response("describe_db_snapshots", {"DBSnapshots": snaps("a"), "Marker": "m1"})
        stub.add_client_error("describe_db_snapshots", "Throttling", "Rate exceeded")
        pages = aws.pages(cli, "describe_db_snapshots")
        assert next(pages)["DBSnapshots"] == snaps("a")
        with pytest.raises(AwsError) as err:
            next(pages)
    assert (err.value.code, err.value.operation) == ("Throttling", "describe_db_snapshots")
