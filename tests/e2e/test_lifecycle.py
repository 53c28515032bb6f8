"""The sandbox's lifecycle: idempotent up/down, own processes only, state shared by kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill
import requests
from shipbook import engine
from shipbook.sandbox.lifecycle import PROCESSES, Sandbox

ROOT = Path(__file__).resolve().parents[2]


def test_up_twice_is_fine_and_reuses_the_same_processes(twin):
    sb, state = twin.sb, twin.state
    pids = {n: sb.pid(n) for n in PROCESSES}
    again = sb.up()
    assert again["endpoints"] == state["endpoints"]
    assert {n: sb.pid(n) for n in PROCESSES} == pids
    assert requests.get(f"{state['endpoints']['alb_url']}/version/", timeout=5).json()["version"].startswith("v")


def test_environment_resolves_from_state_and_is_not_exported(twin):
    state = twin.state
    env = twin.env()
    assert env.aws.endpoint_url == state["endpoints"]["aws_url"]
    assert env.app.public_url == state["endpoints"]["alb_url"]
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_state_written_from_one_kernel_is_visible_from_another(twin, tmp_path):
    env = twin.env()
    kernel_env = {**os.environ, **env.process_env()}
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("mode = ''\nvalue = ''")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import boto3\nddb = boto3.client('dynamodb')\n"
        "if mode == 'write':\n"
        "    ddb.put_item(TableName='shipbook-locks', Item={'env': {'S': 'kernel-test'}, 'v': {'S': value}})\n"
        "else:\n"
        "    item = ddb.get_item(TableName='shipbook-locks', Key={'env': {'S': 'kernel-test'}})['Item']\n"
        "    print('READ', item['v']['S'])"
    )]
    nbformat.write(nb, tmp_path / "k.ipynb")
    for mode in ("write", "read"):
        papermill.execute_notebook(str(tmp_path / "k.ipynb"), str(tmp_path / f"{mode}.ipynb"),
                                   parameters={"mode": mode, "value": "from-kernel-1"},
                                   engine_name=engine.ENGINE_NAME, kernel_env=kernel_env, progress_bar=False)
    out = json.dumps(nbformat.read(tmp_path / "read.ipynb", as_version=4).cells[-1].outputs)
    assert "READ from-kernel-1" in out


def test_status_and_scenarios_from_the_cli(twin):
    out = twin.run("sandbox", "status")
    assert out.returncode == 0 and ": up" in out.stdout and twin.url("aws_url") in out.stdout
    out = twin.run("sandbox", "scenarios")
    for name in ["healthy", "latency-regression", "error-spike", "crash-on-start", "irreversible-migration",
                 "open-port", "missing-variable", "plaintext-secret", "snapshot-failure", "unreviewed-commit"]:
        assert name in out.stdout


def test_down_stops_only_its_own_processes_and_twice_is_fine(tmp_path):
    sb = Sandbox(tmp_path / ".sandbox")
    sb.pids.mkdir(parents=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    while not Path(f"/proc/{bystander.pid}/cmdline").read_bytes():
        time.sleep(0.01)
    try:
        (sb.pids / "aws.pid").write_text(str(bystander.pid))  # a pid that is not ours
        assert sb.down() == []
        assert bystander.poll() is None  # untouched
        assert sb.down() == []
    finally:
        bystander.kill()
        bystander.wait()
