"""The sandbox's account rail lives in `aws.client`: no command or notebook reaches another account.

moto answers as the account in `MOTO_ACCOUNT_ID` (read per request, so the in-process server
of `moto_url` follows `monkeypatch.setenv`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from shipbook import aws, config, lock
from shipbook.errors import ConfigError
from support import aws_client

ROOT = Path(__file__).resolve().parents[1]
OTHER = "999999999999"


@pytest.fixture
def calls(monkeypatch):
    """A fresh per-process cache, and every operation `aws.call` makes, in order."""
    monkeypatch.setattr(aws, "_VERIFIED", set(), raising=False)
    made: list[str] = []
    real = aws.call

    def record(cli, operation, **params):
        made.append(operation)
        return real(cli, operation, **params)

    monkeypatch.setattr(aws, "call", record)
    return made


def test_a_sandbox_client_of_another_account_is_refused_before_any_other_call(make_env, calls, monkeypatch):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", OTHER)
    env = make_env()
    with pytest.raises(ConfigError) as refused:
        lock.ReleaseLock(env)
    assert str(refused.value) == (f"{env.source}: aws: the sandbox refuses account {OTHER}: "
                                  "only the emulator's 123456789012 is allowed")
    with pytest.raises(ConfigError, match=OTHER):  # a refusal is not remembered as a pass
        aws.client(env, "cloudwatch")
    assert calls == ["get_caller_identity", "get_caller_identity"]


def test_the_check_costs_one_call_per_process_and_endpoint(make_env, calls):
    env = make_env()
    for service in ("dynamodb", "cloudwatch", "ecs", "sts"):
        aws.client(env, service)
    assert calls == ["get_caller_identity"]
    assert lock.ReleaseLock(env).holder() is None
    assert calls == ["get_caller_identity", "get_item"]


def test_the_explicit_caller_check_still_refuses(make_env, calls, monkeypatch):
    env = make_env()
    assert aws.caller_arn(env).endswith(":user/moto")
    monkeypatch.setenv("MOTO_ACCOUNT_ID", OTHER)
    with pytest.raises(ConfigError, match=f"refuses account {OTHER}"):
        aws.caller_arn(env)  # the client is cached as checked; caller_arn looks again


def test_a_sandbox_without_an_endpoint_is_refused_without_calling_aws(calls):
    env = config.Environment(name="t", kind="sandbox")
    with pytest.raises(ConfigError, match="aws.endpoint_url: a sandbox environment needs the emulator's endpoint"):
        aws.client(env, "secretsmanager")
    assert calls == []


def test_a_production_environment_naming_its_account_refuses_other_credentials(moto_url, calls, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # the operator's own credentials (moto takes any)
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("MOTO_ACCOUNT_ID", OTHER)
    env = config.Environment(name="p", kind="aws", aws=config.AwsSection(endpoint_url=moto_url,
                                                                         account_id="111111111111"))
    for _ in range(2):  # refused every time, not only the first
        with pytest.raises(ConfigError, match=f"credentials are for account {OTHER}, the environment expects "
                                              "111111111111"):
            aws.client(env, "dynamodb")
    assert calls == ["get_caller_identity", "get_caller_identity"]
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "111111111111")
    aws.client(env, "dynamodb")
    aws.client(env, "s3")
    assert calls == ["get_caller_identity"] * 3  # checked once, then remembered


def test_a_non_sandbox_client_makes_no_identity_call(moto_url, calls):
    env = config.Environment(name="p", kind="aws", aws=config.AwsSection(endpoint_url=moto_url))
    aws.client(env, "dynamodb")
    assert calls == []


def test_shipbook_unlock_in_another_account_leaves_the_lock_alone(make_env, monkeypatch, moto_url, tmp_path):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", OTHER)
    env = make_env()
    ddb = aws_client(moto_url, "dynamodb")
    item = {"env": {"S": env.name}, "owner": {"S": "alice"}, "run_id": {"S": "r1"}, "expires": {"N": "4102444800"}}
    ddb.put_item(TableName=env.lock.table, Item=item)
    child = {**os.environ, "SHIPBOOK_ENV_DIR": str(tmp_path / "environments")}
    out = subprocess.run([sys.executable, "-m", "shipbook", "unlock", "--env", env.name, "--yes"], cwd=ROOT,
                         env=child, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"the sandbox refuses account {OTHER}" in lines[0]
    assert ddb.get_item(TableName=env.lock.table, Key={"env": {"S": env.name}}).get("Item") == item


@pytest.mark.parametrize(("answer", "code", "kept"), [("n\n", 2, True), ("\n", 2, True), ("y\n", 0, False)])
def test_shipbook_unlock_asks_and_keeps_the_lock_unless_confirmed(make_env, moto_url, tmp_path, answer, code, kept):
    env = make_env()
    ddb = aws_client(moto_url, "dynamodb")
    item = {"env": {"S": env.name}, "owner": {"S": "alice"}, "run_id": {"S": "r1"}, "expires": {"N": "4102444800"}}
    ddb.put_item(TableName=env.lock.table, Item=item)
    child = {**os.environ, "SHIPBOOK_ENV_DIR": str(tmp_path / "environments")}
    out = subprocess.run([sys.executable, "-m", "shipbook", "unlock", "--env", env.name], cwd=ROOT, env=child,
                         input=answer, capture_output=True, text=True, timeout=120)
    assert out.returncode == code, out.stderr
    assert "locked by alice (run r1). Remove the lock? [y/N]" in out.stdout
    still = ddb.get_item(TableName=env.lock.table, Key={"env": {"S": env.name}}).get("Item")
    assert (still == item) if kept else (still is None)
    if kept:
        assert out.stderr.strip() == "shipbook: error: unlock: not confirmed; the lock is kept"
