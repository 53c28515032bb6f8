"""The precheck and backup notebooks, executed in real kernels against a private, seeded AWS twin.

One twin process for the module (its own port and state dir, stopped by pid). The notebooks load
their environment by name from `environments/`; a kernel startup file (IPYTHONDIR) points
`config.load` at this test's environment files instead, so nothing under the project changes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import boto3
import nbformat
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError
from shipbook import checks, engine, feedback
from shipbook.config import PROJECT_ROOT
from shipbook.phases import NOTEBOOK_DIR

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("kernels")]

DEMO = PROJECT_ROOT / "lib/shipbook/sandbox/demo_app/infra/taskdef.json"
TEMPLATE = PROJECT_ROOT / "lib/shipbook/sandbox/fixture/template.yaml"
PLAINTEXT = "django-insecure-7f3a9c1e5b2d48a6b0c4e8f1d2a3b4c5e6f708192a3b4c5d"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(url: str, service: str):
    return boto3.client(service, endpoint_url=url, region_name="ap-northeast-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def _post(url: str, body: dict) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10):
        pass


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("twin")
    port = _free_port()
    log = (state / "twin.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "shipbook.sandbox.aws_twin", "--port", str(port), "--state-dir",
                             str(state)], stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the twin exited: {(state / 'twin.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_sandbox/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the twin did not become healthy")
            time.sleep(0.2)
        from shipbook.sandbox.aws_twin import seed

        seed.seed(url)
        yield url
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health/" else 404)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    """A stand-in for the running app behind the ALB: /health/ answers 200."""
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
                   check=True, capture_output=True)


@pytest.fixture
def workspace(tmp_path, twin, app_url):
    """An app repo like the sandbox's, environment files for the twin, and the kernel startup shim."""
    from shipbook.sandbox import repo_builder

    repo = tmp_path / "app"  # the demo app's real history: v0.9.0, then the v1.0.0 release commit
    repo_builder.build(tmp_path / "origin.git", repo, "healthy")
    env_dir = tmp_path / "environments"
    env_dir.mkdir()

    def write_env(name: str, db_instance: str = "shipbook-demo-db") -> None:
        (env_dir / f"{name}.toml").write_text(textwrap.dedent(f"""\
            name = "{name}"
            kind = "sandbox"
            [aws]
            region = "ap-northeast-1"
            endpoint_url = "{twin}"
            [app]
            repo = "{repo}"
            public_url = "{app_url}"
            health_path = "/health/"
            [stack]
            name = "shipbook-demo"
            cluster = "shipbook-demo"
            service = "demo-web"
            container = "web"
            target_group = "demo-web-tg"
            db_instance = "{db_instance}"
            alarm_topic = "shipbook-demo-alarms"
            """))

    write_env("twin")
    startup = tmp_path / "ipython/profile_default/startup"
    startup.mkdir(parents=True)
    (startup / "00-test-environments.py").write_text(textwrap.dedent(f"""\
        import functools, pathlib
        from shipbook import config
        config.load = functools.partial(config.load, env_dir=pathlib.Path({str(env_dir)!r}),
                                        sandbox_dir=pathlib.Path({str(tmp_path / 'nosandbox')!r}))
        """))
    return {"tmp": tmp_path, "repo": repo, "write_env": write_env, "twin": twin, "runs": tmp_path / "runs",
            "kernel_env": {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython"),
                           "SHIPBOOK_WORK_DIR": str(tmp_path), "SHIPBOOK_RUNS_DIR": str(tmp_path / "runs")}}


def execute(ws, notebook: str, **params):
    out = ws["tmp"] / notebook
    parameters = {"version": "v1.0.0", "env": "twin", "run_id": "test-run", "previous_version": "v0.9.0",
                  "dry_run": False, "signoffs": "code.review=tester", **params}  # no GitHub here: review signed off
    error = None
    try:
        papermill.execute_notebook(str(NOTEBOOK_DIR / notebook), str(out), parameters=parameters,
                                   engine_name=engine.ENGINE_NAME, kernel_name="python3", progress_bar=False,
                                   kernel_env=ws["kernel_env"], execution_timeout=120, cwd=str(ws["tmp"]))
    except PapermillExecutionError as exc:
        error = exc
    result = json.loads((ws["tmp"] / "result.json").read_text())
    return result, nbformat.read(out, as_version=4), error


def outputs(nb) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"], ensure_ascii=False)


# --------------------------------------------------------------------------- precheck


def _cell_output(nb, marker: str) -> str:
    cell = next(c for c in nb.cells if c.cell_type == "code" and marker in c.source)
    return json.dumps(cell.outputs, ensure_ascii=False)


def test_precheck_against_the_healthy_twin_shows_every_row_and_passes_the_gate(workspace):
    feedback.add("twin", "v0.9.0", "Product pages slow after the deploy", "problem", runs_root=workspace["runs"])
    feedback.add("twin", "v0.9.0", "Announce the window earlier", "improvement", runs_root=workspace["runs"])
    feedback.close("twin", "v0.9.0", "F2", "done", runs_root=workspace["runs"])
    result, nb, error = execute(workspace, "01_precheck.ipynb")
    assert error is None, error  # an open item of the previous release never blocks the gate
    carried = _cell_output(nb, "feedback.carried_over")
    assert "前回リリース v0.9.0 の未解決のフィードバック: 1 件" in carried
    assert "Product pages slow after the deploy" in carried and "Announce the window" not in carried
    verdicts = {c["id"]: c["verdict"] for c in result["checks"]}
    assert list(verdicts) == [r.id for r in checks.SECTION_1]
    assert result["blocking"] == [] and "fail" not in verdicts.values()
    assert verdicts["network.security_groups"] == "pass" and verdicts["env.variables"] == "pass"
    assert verdicts["iam.task_execution_role"] == "pass" and verdicts["iam.ecr_push"] == "pass"
    assert verdicts["code.review"] == "pass" and verdicts["code.tests"] == "pass"
    assert verdicts["db.rollback_plan"] == "pass" and verdicts["code.shared"] == "pass"
    summary = next(c for c in nb.cells if "board.show()" in c.source)
    html = summary.outputs[0]["data"]["text/html"]  # the opening table was filled in as the checks ran
    assert "pending" not in html and all(r.id in html for r in checks.SECTION_1)
    assert "セキュリティグループ" in html and "done in phase backup" in html
    assert result["facts"] == {"precheck_signoffs": {"code.review": "tester"}}


def test_open_port_blocks_the_precheck_on_security_groups(workspace):
    from shipbook.sandbox import scenarios

    ec2 = _client(workspace["twin"], "ec2")
    group = scenarios.service_security_group(_client(workspace["twin"], "ecs"))
    perm = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[perm])
    try:
        result, nb, error = execute(workspace, "01_precheck.ipynb")
    finally:
        ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[perm])
    assert error is not None and error.ename == "GateError"
    assert [b["id"] for b in result["blocking"]] == ["network.security_groups"]
    assert "tcp/22 from world" in result["blocking"][0]["summary"]
    assert "前回リリース v0.9.0 の未解決のフィードバックはありません。" in _cell_output(nb, "feedback.carried_over")


def test_plaintext_secret_blocks_the_precheck_and_its_value_is_never_shown(workspace):
    repo = workspace["repo"]
    td = json.loads((repo / "infra/taskdef.json").read_text())
    c = td["containerDefinitions"][0]
    c["secrets"] = [s for s in c["secrets"] if s["name"] != "SECRET_KEY"]
    c["environment"].append({"name": "SECRET_KEY", "value": PLAINTEXT})
    (repo / "infra/taskdef.json").write_text(json.dumps(td, indent=2))
    _git(repo, "commit", "-qam", "fix(infra): set SECRET_KEY directly")
    result, nb, error = execute(workspace, "01_precheck.ipynb")
    assert error is not None and [b["id"] for b in result["blocking"]] == ["env.variables"]
    assert "SECRET_KEY: plaintext secret" in result["blocking"][0]["summary"]
    assert PLAINTEXT not in json.dumps(nbformat.writes(nb)) and PLAINTEXT not in json.dumps(result)


# --------------------------------------------------------------------------- backup


@pytest.fixture
def encrypted_db(workspace):
    """An encrypted instance created through the API (see test_twin_snapshot_of_the_seeded_db_is_encrypted)."""
    name = f"bk-{int(time.time() * 1000) % 10**8}"
    _client(workspace["twin"], "rds").create_db_instance(
        DBInstanceIdentifier=name, Engine="postgres", EngineVersion="17.6", DBInstanceClass="db.t4g.micro",
        AllocatedStorage=20, StorageEncrypted=True, MasterUsername="demo", ManageMasterUserPassword=True)
    workspace["write_env"]("twinbk", db_instance=name)
    return name


def test_backup_takes_waits_with_progress_verifies_tags_and_records_the_snapshot(workspace, encrypted_db):
    result, nb, error = execute(workspace, "02_backup.ipynb", env="twinbk")
    assert error is None, error
    assert result["verdict"] == "pass" and result["blocking"] == []
    assert result["facts"]["snapshot_id"] == "pre-deploy-v1-0-0-" + time.strftime("%Y-%m-%d", time.gmtime())
    assert result["facts"]["snapshot_time"]
    text = outputs(nb)
    assert "creating" in text and "available" in text  # the visible progress of the wait
    again, _, error = execute(workspace, "02_backup.ipynb", env="twinbk")  # a re-run reuses it
    assert error is None and again["facts"]["snapshot_id"] == result["facts"]["snapshot_id"]
    assert "(reused)" in next(c for c in again["checks"] if c["id"] == "db.backup")["summary"]


def test_backup_dry_run_stops_after_the_plan(workspace, encrypted_db):
    result, nb, error = execute(workspace, "02_backup.ipynb", env="twinbk", dry_run=True, version="v1.0.3")
    assert error is None and result["facts"] == {}
    assert next(c for c in result["checks"] if c["id"] == "db.backup")["verdict"] == "skip"
    snaps = _client(workspace["twin"], "rds").describe_db_snapshots(DBInstanceIdentifier=encrypted_db,
                                                                    SnapshotType="manual")["DBSnapshots"]
    assert snaps == []


def test_snapshot_failure_stops_the_release(workspace, encrypted_db):
    _post(f"{workspace['twin']}/_sandbox/faults", {"rds_snapshot_failure": True})
    try:
        result, _, error = execute(workspace, "02_backup.ipynb", env="twinbk", version="v1.0.2")
    finally:
        _post(f"{workspace['twin']}/_sandbox/faults", {"rds_snapshot_failure": False})
    assert error is not None and error.ename == "GateError"
    assert [b["id"] for b in result["blocking"]] == ["db.backup"] and "failed" in result["blocking"][0]["summary"]
    assert "snapshot_id" not in result["facts"]


def test_twin_snapshot_of_the_seeded_db_is_encrypted(workspace):
    result, _, error = execute(workspace, "02_backup.ipynb", version="v0.0.1")
    assert error is None and result["verdict"] == "pass"
