"""The runner against fixture notebooks in real kernels, with a real moto server for the lock."""

from __future__ import annotations

import json
import os
import shutil

import nbformat
import pytest
from shipbook import audit, lock, release, trail
from shipbook.errors import EXIT_GATE, GateError, LockHeldError, PhaseError
from shipbook.pipeline import Progress, RunOptions
from shipbook.redact import Redactor
from support import aws_client

pytestmark = pytest.mark.xdist_group("kernels")


class Collect(Progress):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def phase_start(self, phase, notebook):
        self.events.append(("start", phase))

    def cell(self, phase, index, total, description):
        self.events.append(("cell", phase, description))

    def phase_end(self, phase, status, verdict, seconds, detail):
        self.events.append(("end", phase, status, detail))

    def output(self, phase, line):
        self.events.append(("output", phase, line))


@pytest.fixture
def ctx(tmp_path):
    return release.Context(runs_root=tmp_path / "runs", notebook_dir=tmp_path / "notebooks")


def run(env, ctx, version="v1.0.0", **kw):
    progress = Collect()
    rec = release.run(env, RunOptions(version=version, **kw), progress, ctx, Redactor([]))
    return rec, progress


def test_success_runs_every_phase_hands_facts_on_and_records_hashes(make_env, notebook_dir, ctx):
    notebook_dir(precheck="ok", backup="ok", deploy="ok")
    env = make_env()
    rec, progress = run(env, ctx)
    assert rec.data["status"] == "succeeded"
    assert [p["status"] for p in rec.data["phases"]] == ["succeeded"] * 3
    assert ("cell", "backup", "Say which release") in progress.events
    assert ("end", "deploy", "succeeded", "") in progress.events
    # the fact reported by precheck reaches the next phase as a parameter
    nb = nbformat.read(rec.dir / "02_backup.ipynb", as_version=4)
    out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "snapshot pre-deploy-v1-0-0" in out
    for p in rec.data["phases"]:
        stem = p["notebook"][:-6]
        assert set(p["files"]) == {p["notebook"], f"{stem}.html", f"{stem}.stakeholder.html", f"{stem}.result.json"}
        for fname, digest in p["files"].items():
            assert audit.sha256_file(rec.dir / fname) == digest
    assert rec.data["operator"]["aws_arn"].startswith("arn:aws:")
    assert lock.ReleaseLock(env).holder() is None
    assert (ctx.runs_root / "index.html").is_file()
    assert trail.verify(ctx.runs_root) == []
    assert "AWS_ENDPOINT_URL" not in os.environ  # endpoints go to kernels only, never our environment


def test_blocking_verdict_stops_the_pipeline_and_names_every_failed_check(make_env, notebook_dir, ctx):
    notebook_dir(precheck="ok", backup="gate", deploy="ok")
    env = make_env()
    with pytest.raises(GateError) as err:
        run(env, ctx)
    assert err.value.exit_code == EXIT_GATE
    assert "fixture.bad" in str(err.value) and "fixture.worse" in str(err.value)
    assert "fixture.good" not in str(err.value)
    rec = json.loads(next(ctx.runs_root.rglob("run.json")).read_text())
    assert rec["status"] == "blocked"
    assert [p["status"] for p in rec["phases"]] == ["succeeded", "blocked", "pending"]
    assert lock.ReleaseLock(env).holder() is None


def test_exception_in_a_cell_saves_partial_notebook_renders_html_and_names_phase_cell_error(
        make_env, notebook_dir, ctx):
    notebook_dir(precheck="ok", backup="error", deploy="ok")
    env = make_env()
    with pytest.raises(PhaseError) as err:
        run(env, ctx)
    msg = str(err.value)
    assert "backup" in msg and "Something breaks" in msg and "ValueError: the disk is on fire" in msg
    run_dir = next(ctx.runs_root.rglob("run.json")).parent
    nb = nbformat.read(run_dir / "02_backup.ipynb", as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert errors and errors[0].ename == "ValueError"
    assert (run_dir / "02_backup.html").is_file() and (run_dir / "02_backup.stakeholder.html").is_file()
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["phases"][1]["status"] == "failed" and rec["phases"][2]["status"] == "pending"


def test_kernel_killed_mid_cell_fails_the_phase_keeps_the_partial_notebook_and_releases_the_lock(
        make_env, notebook_dir, ctx):
    notebook_dir(precheck="kill")
    env = make_env(phases=("precheck",))
    with pytest.raises(PhaseError) as err:
        run(env, ctx)
    assert err.value.exit_code != 0 and "precheck" in str(err.value) and "kernel died" in str(err.value)
    run_dir = next(ctx.runs_root.rglob("run.json")).parent
    nb = nbformat.read(run_dir / "01_precheck.ipynb", as_version=4)
    assert "about to die" in json.dumps(nb)
    assert json.loads((run_dir / "run.json").read_text())["phases"][0]["status"] == "failed"
    assert lock.ReleaseLock(env).holder() is None


def test_resume_continues_from_the_first_phase_that_did_not_succeed(make_env, notebook_dir, ctx):
    nbdir = notebook_dir(precheck="ok", backup="error", deploy="ok")
    env = make_env()
    with pytest.raises(PhaseError):
        run(env, ctx)
    run_id = next(ctx.runs_root.rglob("run.json")).parent.name
    first = json.loads(next(ctx.runs_root.rglob("run.json")).read_text())
    shutil.copy(nbdir / "01_precheck.ipynb", nbdir / "02_backup.ipynb")  # the problem was fixed
    rec, progress = run(env, ctx, resume=run_id)
    assert rec.run_id == run_id
    assert [e[1] for e in progress.events if e[0] == "start"] == ["backup", "deploy"]
    assert rec.data["phases"][0]["started"] == first["phases"][0]["started"]
    assert rec.data["status"] == "succeeded"
    assert trail.verify(ctx.runs_root) == []


def test_tampering_is_reported_by_audit(make_env, notebook_dir, ctx):
    notebook_dir(precheck="ok")
    env = make_env(phases=("precheck",))
    rec, _ = run(env, ctx)
    run(env, ctx)  # a second run chains onto the first
    assert trail.verify(ctx.runs_root) == []
    html = rec.dir / "01_precheck.html"
    data = bytearray(html.read_bytes())
    data[100] ^= 1
    html.write_bytes(bytes(data))
    (rec.dir / "extra.txt").write_text("hello")
    (rec.dir / "01_precheck.stakeholder.html").unlink()
    problems = trail.verify(ctx.runs_root)
    assert any("01_precheck.html: changed" in p for p in problems)
    assert any("extra.txt: unexpected file" in p for p in problems)
    assert any("01_precheck.stakeholder.html: missing" in p for p in problems)
    record = json.loads(rec.path.read_text())
    record["operator"]["git_user"] = "Mallory"
    rec.path.write_text(json.dumps(record))
    assert any("run.json: changed since it was sealed" in p for p in trail.verify(ctx.runs_root))


def test_a_second_release_on_a_locked_environment_exits_2_naming_the_holder(make_env, notebook_dir, ctx):
    notebook_dir(precheck="ok")
    env = make_env(phases=("precheck",))
    held = lock.ReleaseLock(env).acquire("Alice <alice@example.com>", "20261128T000000Z-aaaaaa")
    with pytest.raises(LockHeldError) as err:
        run(env, ctx)
    assert err.value.exit_code == 2 and "Alice" in str(err.value) and held.run_id in str(err.value)
    assert not ctx.runs_root.exists() or not list(ctx.runs_root.rglob("run.json"))


def test_planted_secrets_appear_nowhere_on_disk(make_env, notebook_dir, ctx, monkeypatch):
    secret = "s3cr3t-Planted-Value-9f8e7d"
    monkeypatch.setenv("PLANTED_SECRET", secret)
    notebook_dir(precheck="secrets")
    env = make_env(phases=("precheck",), secrets='PLANTED = { env = "PLANTED_SECRET" }')
    progress = Collect()
    with pytest.raises(PhaseError) as err:
        release.run(env, RunOptions(version="v1.0.0", params={"note": secret}), progress, ctx)
    assert "RuntimeError" in str(err.value) and secret not in str(err.value)  # the terminal's error line too
    hits = [p for p in ctx.runs_root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert hits == []
    nb_text = next(ctx.runs_root.rglob("01_precheck.ipynb")).read_text()
    assert "***" in nb_text and "stdout:" in nb_text
    kept = json.loads(next(ctx.runs_root.rglob("01_precheck.result.json")).read_text())  # the verdict, kept
    assert kept["checks"][0]["summary"] == "value ***"
    printed = [e[2] for e in progress.events if e[0] == "output"]  # what the terminal showed while it ran
    assert any(line.startswith("stdout:") and "***" in line for line in printed), printed
    assert not any(secret in line for line in printed)


def test_finished_run_is_mirrored_to_s3(make_env, notebook_dir, ctx, moto_url):
    s3 = aws_client(moto_url, "s3")
    s3.create_bucket(Bucket="runs-mirror", CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"})
    notebook_dir(precheck="ok")
    env = make_env(phases=("precheck",), runs_url="s3://runs-mirror/audit")
    rec, _ = run(env, ctx)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="runs-mirror", Prefix="audit/")["Contents"]}
    base = f"audit/{env.name}/v1.0.0/{rec.run_id}"
    assert {f"{base}/run.json", f"{base}/01_precheck.ipynb", f"{base}/01_precheck.html"} <= keys


def test_bad_version_changes_nothing(make_env, notebook_dir, ctx):
    notebook_dir(precheck="ok")
    env = make_env(phases=("precheck",))
    for bad in ["1.0.0", "v1.0", "v1.0.0.0", "v01.0.0", "v1.0.0; rm -rf /", ""]:
        with pytest.raises(Exception) as err:
            run(env, ctx, version=bad)
        assert getattr(err.value, "exit_code", None) == 2, bad
    assert not ctx.runs_root.exists()
    assert lock.ReleaseLock(env).holder() is None



INTERRUPT_SCRIPT = """
import sys
from pathlib import Path
from shipbook import config, release
from shipbook.pipeline import Progress, RunOptions
from shipbook.redact import Redactor

class Say(Progress):
    def cell(self, phase, index, total, description):
        print("CELL", description, flush=True)

env = config.load(sys.argv[1], env_dir=Path(sys.argv[2]), sandbox_dir=Path(sys.argv[2]) / "none")
ctx = release.Context(runs_root=Path(sys.argv[3]), notebook_dir=Path(sys.argv[4]))
release.run(env, RunOptions(version="v1.0.0", params={"note": "60"}), Say(), ctx, Redactor([]))
"""


def test_ctrl_c_marks_the_run_failed_and_releases_the_lock(make_env, notebook_dir, ctx, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    notebook_dir(precheck="slow")
    env = make_env(phases=("precheck",))
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPT_SCRIPT, env.name, str(tmp_path / "environments"),
                             str(ctx.runs_root), str(ctx.notebook_dir)], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    for line in proc.stdout:  # wait until the slow cell is running
        if "Wait a little" in line or time.monotonic() > deadline:
            break
    assert lock.ReleaseLock(env).holder() is not None
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) != 0
    proc.stdout.close()
    assert lock.ReleaseLock(env).holder() is None
    rec = json.loads(next(ctx.runs_root.rglob("run.json")).read_text())
    assert rec["status"] == "failed" and rec["phases"][0]["status"] == "failed"
    assert rec["finished"] is not None
    assert trail.verify(ctx.runs_root) == []  # an interrupted run is sealed like any other


def test_rollback_recommendation_with_auto_rollback_runs_rollback_then_report(make_env, notebook_dir, ctx):
    notebook_dir(deploy="ok", verify="verify_rollback", rollback="rollback_ok", report="ok")
    env = make_env(top="auto_rollback = true\n", phases=("deploy", "verify", "report"))
    with pytest.raises(GateError) as err:
        run(env, ctx)
    assert "rolled back to v0.9.0 with tag v1.0.1-rollback" in str(err.value)
    assert "p99 latency +80%" in str(err.value)
    rec = json.loads(next(ctx.runs_root.rglob("run.json")).read_text())
    assert rec["status"] == "rolled-back"
    assert [(p["name"], p["status"]) for p in rec["phases"]] == [
        ("deploy", "succeeded"), ("verify", "blocked"), ("rollback", "succeeded"), ("report", "succeeded")]
    assert lock.ReleaseLock(env).holder() is None


def test_rollback_recommendation_without_auto_rollback_stops_with_the_command(make_env, notebook_dir, ctx):
    notebook_dir(verify="verify_rollback", rollback="rollback_ok", report="ok")
    env = make_env(top="auto_rollback = false\n", phases=("verify", "report"))
    with pytest.raises(GateError) as err:
        run(env, ctx)
    assert f"make rollback VERSION=v1.0.0 ENV={env.name}" in str(err.value)
    rec = json.loads(next(ctx.runs_root.rglob("run.json")).read_text())
    assert [p["status"] for p in rec["phases"]] == ["blocked", "pending"]


def test_hold_stops_and_leaves_the_decision_to_a_person(make_env, notebook_dir, ctx):
    notebook_dir(verify="verify_hold", report="ok")
    env = make_env(top="auto_rollback = true\n", phases=("verify", "report"))
    with pytest.raises(GateError) as err:
        run(env, ctx)
    assert "HOLD" in str(err.value) and "too few data points" in str(err.value)
    assert "make report VERSION=v1.0.0" in str(err.value) and "make rollback VERSION=v1.0.0" in str(err.value)


def test_one_phase_alone_starts_from_the_facts_of_the_versions_last_run(make_env, notebook_dir, ctx):
    notebook_dir(precheck="ok", backup="ok")
    env = make_env(phases=("precheck", "backup"))
    first, _ = run(env, ctx)
    again, progress = run(env, ctx, only="backup")
    assert [e[1] for e in progress.events if e[0] == "start"] == ["backup"]
    assert again.data["facts_from_run"] == first.run_id
    nb = nbformat.read(again.dir / "02_backup.ipynb", as_version=4)
    assert "snapshot pre-deploy-v1-0-0" in json.dumps(nb)  # the fact reached the lone phase as a parameter
