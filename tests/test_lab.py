"""`shipbook lab` (what `make lab` runs) against a real JupyterLab: it starts (as root too), opens at the project
root, answers only with the token it printed, runs incident.ipynb in one of its kernels, and stops with them.

The incident notebook reads CloudWatch, logs, ECS and CloudFormation. The lab kernel gets the same fakes as
test_incident_notebook.py (tests/incident_fakes.py), installed by a first cell sent over the websocket: the
shipbook modules are patched inside the kernel exactly as that test patches them in-process. That proves what
this test is about — every cell runs without error in a lab kernel that imports the library and has the
environment's variables — without a twin (a sandbox takes minutes to start and belongs to tests/e2e). The
environment is a minimal `kind = "aws"` file (no sandbox start); SHIPBOOK_ENV in the kernel shows it arrived.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
import requests
import websocket
from shipbook import lab
from support import free_port

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
START = 120.0  # seconds: JupyterLab's first start on a loaded machine
CELL = 120.0  # seconds per cell (the slowest draws two charts)
STOP = 60.0
INCIDENT_ID = "inc-20261120T150000Z-abc123"
PARAMETERS = {"env": "t", "run_id": INCIDENT_ID, "incident_start": "2026-11-21T00:00:00+09:00",
              "title": "商品ページで 500 エラー", "lang": "", "prevention": "5xx アラームの閾値を見直す"}


# ------------------------------------------------------------------ the lab process, as `make lab` starts it


def connections(proc: psutil.Process) -> list:
    """A process's TCP connections; none when it exited since it was listed (a short-lived child)."""
    try:
        return proc.net_connections("tcp")
    except psutil.NoSuchProcess:
        return []


@dataclass
class Running:
    proc: subprocess.Popen
    port: int
    out: queue.Queue = field(default_factory=queue.Queue)
    err: list[str] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)

    def line(self, prefix: str, timeout: float) -> str:
        """The first stdout line starting with `prefix`, waiting at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.out.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.proc.poll() is not None and self.out.empty():
                    break
                continue
            if line is None:
                break
            if line.startswith(prefix):
                return line
        pytest.fail(f"no {prefix!r} line within {timeout:.0f} s (exit {self.proc.poll()}):\n"
                    f"stdout: {self.stdout}\nstderr: {''.join(self.err)[-3000:]}")


def _pump(stream, sink: list[str], q: queue.Queue | None) -> None:
    for line in stream:
        sink.append(line)
        if q is not None:
            q.put(line.rstrip("\n"))
    if q is not None:
        q.put(None)


@pytest.fixture
def env_dir(tmp_path: Path) -> Path:
    d = tmp_path / "environments"
    d.mkdir()
    (d / "labtest.toml").write_text('kind = "aws"\n[aws]\nregion = "ap-northeast-1"\n', encoding="utf-8")
    return d


@contextlib.contextmanager
def shipbook_lab(env_dir: Path, port: int) -> Iterator[Running]:
    cmd = [sys.executable, "-m", "shipbook", "lab", "--env", "labtest", "--port", str(port), "--no-browser"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "SHIPBOOK_ENV_DIR": str(env_dir)},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group: the test's "Ctrl-C" reaches it alone
    run = Running(proc, port)
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, run.stdout, run.out), daemon=True),
             threading.Thread(target=_pump, args=(proc.stderr, run.err, None), daemon=True)]
    for t in pumps:
        t.start()
    try:
        yield run
    finally:  # a safety net only: the test itself stops it and asserts that nothing was left behind
        if proc.poll() is None:
            leftovers = psutil.Process(proc.pid).children(recursive=True)
            os.killpg(proc.pid, signal.SIGKILL)
            for p in leftovers:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            proc.wait(10)
        for t in pumps:
            t.join(10)
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()


# ------------------------------------------------------------------ the server's own REST + websocket API


class Kernel:
    """A kernel session over the Jupyter websocket (JSON protocol): execute code, collect what it shows."""

    def __init__(self, base: str, token: str, kernel_id: str) -> None:
        self.session = uuid.uuid4().hex
        ws_url = base.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels?session_id={self.session}"
        self.ws = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], timeout=CELL)

    def execute(self, code: str, timeout: float = CELL) -> tuple[dict, list[dict]]:
        """(execute_reply content, iopub outputs of this request) once the kernel is idle again."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": self.session,
                       "username": "test", "version": "5.3", "date": datetime.now(UTC).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        reply, idle, outputs = None, False, []
        deadline = time.monotonic() + timeout
        while reply is None or not idle:
            left = deadline - time.monotonic()
            assert left > 0, f"no reply within {timeout:.0f} s to:\n{code}"
            self.ws.settimeout(left)
            frame = self.ws.recv()
            if isinstance(frame, bytes):  # binary frames carry buffers; nothing this notebook shows
                continue
            msg = json.loads(frame)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if msg["channel"] == "shell" and kind == "execute_reply":
                reply = msg["content"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
            elif kind in ("stream", "execute_result", "display_data", "error"):
                outputs.append({"type": kind, **msg["content"]})
        return reply, outputs

    def close(self) -> None:
        self.ws.close()


def stdout_of(outputs: list[dict]) -> str:
    return "".join(o["text"] for o in outputs if o["type"] == "stream" and o["name"] == "stdout")


def setup_code(runs: Path) -> str:
    """The first cell: the incident world of test_incident_notebook.py, patched into the kernel's shipbook."""
    return f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import pathlib
import incident_fakes as _f
from shipbook import aws as _aws, config as _config, incident as _incident
_runs = pathlib.Path({str(runs)!r})
_f.release_history(_runs)
_fakes = _f.clients()
_app = _f.app_server()
_env = _f.environment(public_url=_app.__enter__())
import os as _os
_os.environ["SHIPBOOK_RUNS_DIR"] = str(_runs)
_aws.client = lambda env, service: _fakes[service]
_incident.utcnow = lambda: _f.NOW
_config.load = lambda name, *args, **kwargs: _env
"""


PROBE = """
import json, os, sys
import shipbook
print(json.dumps({"shipbook": shipbook.__file__, "python": sys.executable, "pid": os.getpid(),
                  "SHIPBOOK_ENV": os.environ.get("SHIPBOOK_ENV"),
                  "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION")}))
"""


# ------------------------------------------------------------------ tests


@pytest.mark.slow
def test_lab_opens_at_the_root_and_runs_the_incident_notebook_in_a_kernel(env_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    with shipbook_lab(env_dir, port) as run:
        url = run.line("JupyterLab: ", START).split(" ", 1)[1]
        assert url.startswith(f"http://127.0.0.1:{port}/lab?token=")
        token = url.split("token=", 1)[1]
        assert len(token) >= 32
        base = f"http://127.0.0.1:{port}"
        api = requests.Session()
        api.headers["Authorization"] = f"token {token}"
        processes = psutil.Process(run.proc.pid).children(recursive=True)  # the server (and soon its kernel)

        # the token is required: a real token, not a disabled one; loopback only
        assert requests.get(f"{base}/api/contents/", timeout=10).status_code == 403
        listening = {c.laddr for p in processes for c in connections(p) if c.status == psutil.CONN_LISTEN}
        assert {(a.ip, a.port) for a in listening if a.port == port} == {("127.0.0.1", port)}

        # the file browser's root: the project, with notebooks/ and runs/ both reachable
        root = api.get(f"{base}/api/contents/", timeout=10)
        assert root.status_code == 200
        names = {item["name"]: item["type"] for item in root.json()["content"]}
        assert names.get("notebooks") == "directory" and names.get("runs") == "directory", names

        # re-open the incident notebook through the server, start a kernel session for it
        nb = api.get(f"{base}/api/contents/notebooks/incident.ipynb", params={"content": 1}, timeout=10).json()
        code_cells = [c for c in nb["content"]["cells"] if c["cell_type"] == "code"]
        assert code_cells and "parameters" in code_cells[0]["metadata"].get("tags", [])
        made = api.post(f"{base}/api/sessions", timeout=60, json={
            "path": "notebooks/incident.ipynb", "type": "notebook", "name": "incident.ipynb",
            "kernel": {"name": "python3"}})
        assert made.status_code == 201, made.text
        session = made.json()
        kernel = Kernel(base, token, session["kernel"]["id"])
        try:
            reply, outputs = kernel.execute(PROBE)
            assert reply["status"] == "ok", outputs
            probe = json.loads(stdout_of(outputs))
            assert probe["shipbook"] == str(ROOT / "lib" / "shipbook" / "__init__.py")  # the checkout's library
            assert (probe["SHIPBOOK_ENV"], probe["AWS_DEFAULT_REGION"]) == ("labtest", "ap-northeast-1")
            kernel_pid = probe["pid"]

            reply, outputs = kernel.execute(setup_code(tmp_path / "runs"))
            assert reply["status"] == "ok", outputs

            ran: list[tuple[dict, list[dict]]] = []
            for cell in code_cells:  # every code cell, in order, as "Run All" would
                reply, outputs = kernel.execute(cell["source"])
                errors = [o for o in outputs if o["type"] == "error"]
                assert reply["status"] == "ok" and not errors, (cell["source"], reply, errors)
                ran.append((reply, outputs))
                if "parameters" in cell["metadata"].get("tags", []):  # what papermill injects into a run's copy
                    reply, outputs = kernel.execute("\n".join(f"{k} = {v!r}" for k, v in PARAMETERS.items()))
                    assert reply["status"] == "ok", outputs
            assert len(ran) == len(code_cells)
            assert any("image/png" in o.get("data", {}) for _r, outs in ran for o in outs)  # the charts drew
            assert f"shipbook status-report {INCIDENT_ID} --env t" in stdout_of(ran[-1][1])
        finally:
            kernel.close()
        assert api.delete(f"{base}/api/sessions/{session['id']}", timeout=60).status_code == 204
        processes = psutil.Process(run.proc.pid).children(recursive=True)

        # Ctrl-C: shipbook stops the server, which stops its kernels; nothing is left behind
        os.killpg(run.proc.pid, signal.SIGINT)
        assert run.proc.wait(STOP) == 0, "".join(run.err)[-3000:]
        gone, alive = psutil.wait_procs(processes, timeout=STOP)
        assert not alive, alive
        assert not psutil.pid_exists(kernel_pid) or psutil.Process(kernel_pid).status() == psutil.STATUS_ZOMBIE
        assert run.line("JupyterLab stopped", 10)
    if os.geteuid() == 0:  # these machines, and containers: started anyway, and said so in one line
        assert "shipbook: running as root: JupyterLab is started with --allow-root\n" in run.err
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/api/status", timeout=5)


@pytest.mark.slow
def test_when_jupyterlab_cannot_start_the_last_line_says_why(env_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with shipbook_lab(env_dir, port) as run:
            code = run.proc.wait(START)
    assert code == 3  # (leaving `shipbook_lab` drained its output)
    assert not [line for line in run.stdout if line.startswith("JupyterLab: ")]
    assert "".join(run.err).strip().splitlines()[-1] == (
        f"shipbook: error: JupyterLab did not start (exit 1): the Jupyter server could not be started "
        f"because port {port} is not available.")


def test_the_reason_is_the_servers_critical_line() -> None:
    lines = ["[I 2026-12-04 17:53:03.958 LabApp] JupyterLab extension loaded from …",
             "[C 2026-12-04 17:53:03.990 ServerApp] Running as root is not recommended. Use --allow-root to bypass."]
    assert lab.reason(lines) == "Running as root is not recommended. Use --allow-root to bypass."
    assert lab.reason(["Traceback (most recent call last):", "ModuleNotFoundError: No module named 'jupyterlab'"]) \
        == "ModuleNotFoundError: No module named 'jupyterlab'"
    assert lab.reason([]) == "no output"


def test_the_command_binds_loopback_at_the_root_and_keeps_the_token_off_it() -> None:
    cmd = lab.command(8899, as_root=True, open_browser=False)
    assert f"--ServerApp.root_dir={ROOT}" in cmd and "--ServerApp.ip=127.0.0.1" in cmd
    assert "--ServerApp.port_retries=0" in cmd and "--allow-root" in cmd and "--no-browser" in cmd
    assert not [a for a in cmd if "token" in a.lower()]
    assert "--allow-root" not in lab.command(8899, as_root=False)
    env = lab.child_env({"PATH": "/bin", "JUPYTER_TOKEN_FILE": "/x"}, {"SHIPBOOK_ENV": "e"}, "t0k")
    assert env == {"PATH": "/bin", "SHIPBOOK_ENV": "e", "JUPYTER_TOKEN": "t0k"}


def test_make_lab_passes_the_port_and_no_browser_on() -> None:
    out = subprocess.run(["make", "--no-print-directory", "-n", "lab", "LAB_PORT=8899", "NO_BROWSER=1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert '-m shipbook lab --env "$ENV" --port "$LAB_PORT" --no-browser' in out.stdout


def test_without_the_lab_extra_it_says_how_to_install_it(monkeypatch):
    """JupyterLab is an extra a release never installs: without it, one line naming the fix, nothing started."""
    from shipbook.errors import InfraError

    real = lab.importlib.util.find_spec
    monkeypatch.setattr(lab.importlib.util, "find_spec", lambda name, *a: None if name == "jupyterlab" else
                        real(name, *a))
    server = lab.Lab(free_port(), {}, open_browser=False)
    with pytest.raises(InfraError, match=r"JupyterLab is not installed.*make lab.*\.\[lab\]"):
        server.start()
    assert server.proc is None
