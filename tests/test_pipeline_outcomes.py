"""Exit codes of a phase that could not run, and an S3 mirror that fails without masking the outcome."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
from shipbook import lock, release, trail
from shipbook.errors import EXIT_GATE, EXIT_INFRA, GateError, PhaseError, ShipbookError
from shipbook.pipeline import Progress, RunOptions
from shipbook.redact import Redactor

pytestmark = pytest.mark.xdist_group("kernels")


@pytest.fixture
def ctx(tmp_path):
    return release.Context(runs_root=tmp_path / "runs", notebook_dir=tmp_path / "notebooks")


def run(env, ctx, **kw):
    return release.run(env, RunOptions(version="v1.0.0", **kw), Progress(), ctx, Redactor([]))


def failure(env, ctx, **kw) -> ShipbookError:
    with pytest.raises(ShipbookError) as err:
        run(env, ctx, **kw)
    return err.value


def record(ctx) -> dict:
    return json.loads(next(ctx.runs_root.rglob("run.json")).read_text())


# ------------------------------------------------------------------------------------ exit codes


@pytest.mark.parametrize("note, ename", [("aws", "AwsError"), ("infra", "InfraError")])
def test_an_aws_or_infra_error_raised_in_a_cell_exits_3_naming_phase_and_cell(make_env, notebook_dir, ctx,
                                                                               note, ename):
    notebook_dir(precheck="ok", backup="aws_error")
    env = make_env(phases=("precheck", "backup"))
    err = failure(env, ctx, params={"note": note})
    assert isinstance(err, PhaseError) and err.exit_code == EXIT_INFRA
    msg = str(err)
    assert len(msg.splitlines()) == 1
    assert msg.startswith("phase backup failed in cell ") and "Call AWS" in msg and f"{ename}: " in msg
    assert record(ctx)["status"] == "failed" and lock.ReleaseLock(env).holder() is None


def test_a_gate_error_raised_in_a_cell_stays_exit_1(make_env, notebook_dir, ctx):
    notebook_dir(precheck="aws_error")
    env = make_env(phases=("precheck",))
    err = failure(env, ctx, params={"note": "gate"})
    assert err.exit_code == EXIT_GATE and "GateError" in str(err)


def test_an_ordinary_exception_in_a_cell_stays_exit_1(make_env, notebook_dir, ctx):
    notebook_dir(precheck="error")
    env = make_env(phases=("precheck",))
    err = failure(env, ctx)
    assert err.exit_code == EXIT_GATE and "ValueError: the disk is on fire" in str(err)


def test_a_dead_kernel_exits_3(make_env, notebook_dir, ctx):
    notebook_dir(precheck="kill")
    env = make_env(phases=("precheck",))
    err = failure(env, ctx)
    assert err.exit_code == EXIT_INFRA and "kernel died" in str(err) and "phase precheck" in str(err)
    assert len(str(err).splitlines()) == 1


def test_a_cell_timeout_exits_3_with_one_line(make_env, notebook_dir, ctx):
    notebook_dir(precheck="slow")
    env = make_env(phases=("precheck",))
    env = dataclasses.replace(env, runner=dataclasses.replace(env.runner, cell_timeout=2))
    err = failure(env, ctx, params={"note": "60"})
    msg = str(err)
    assert err.exit_code == EXIT_INFRA and len(msg.splitlines()) == 1, msg
    assert "phase precheck failed in cell" in msg and "Wait a little" in msg and "within 2s" in msg
    assert record(ctx)["phases"][0]["status"] == "failed"


# ------------------------------------------------------------------------------------ the S3 mirror


def test_a_failed_mirror_keeps_the_gate_error_and_is_recorded(make_env, notebook_dir, ctx, caplog):
    notebook_dir(precheck="gate")
    env = make_env(phases=("precheck",), runs_url="s3://no-such-bucket-for-shipbook/audit")
    with caplog.at_level(logging.WARNING, logger="shipbook.release"):
        with pytest.raises(GateError) as err:  # not the AwsError of the upload
            run(env, ctx)
    assert err.value.exit_code == EXIT_GATE and "fixture.bad" in str(err.value)
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("mirror to ")]
    assert len(warnings) == 1 and "no-such-bucket-for-shipbook" in warnings[0] and "\n" not in warnings[0]
    rec = record(ctx)
    assert rec["status"] == "blocked"
    assert rec["mirror"]["status"] == "failed" and "NoSuchBucket" in rec["mirror"]["error"]
    assert trail.verify(ctx.runs_root) == []  # the record changed after its seal and was sealed again
    assert lock.ReleaseLock(env).holder() is None


def test_a_failed_mirror_keeps_a_successful_run_successful(make_env, notebook_dir, ctx):
    notebook_dir(precheck="ok")
    env = make_env(phases=("precheck",), runs_url="s3://no-such-bucket-for-shipbook/audit")
    rec = run(env, ctx)  # returns: the CLI exits 0
    assert rec.data["status"] == "succeeded" and rec.data["mirror"]["status"] == "failed"
    assert trail.verify(ctx.runs_root) == []
