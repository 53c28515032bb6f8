"""`shipbook sandbox up|down|status|reset`: the twin's processes, detached, with pid files.

Why detached processes and files, not a supervisor: the twin must outlive the command that
started it (one `make release` starts it, the next reuses it) and be stoppable by anyone with
the checkout, touching only the processes it started (checked by pid *and* command line).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from shipbook import places
from shipbook.config import SANDBOX_CREDENTIAL
from shipbook.errors import InfraError, InputError

Say = Callable[[str], None]
PROCESSES = ("aws", "github", "runtime")
REGION = "ap-northeast-1"
READY_TIMEOUT = float(os.environ.get("SHIPBOOK_SANDBOX_TIMEOUT", "90"))
# The twin's processes started by *this* process, by pid: `down` reaps them once stopped. A long-lived caller
# (a test session, a notebook kernel) would otherwise keep a zombie per process and drop a Popen handle
# whose child still runs (a ResourceWarning). A short CLI run just exits and leaves them to init, as designed.
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


def _quiet(_msg: str) -> None:
    """The default progress sink: say nothing."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    """Environment for the twin's processes: dummy credentials, never the user's real ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=SANDBOX_CREDENTIAL, AWS_SECRET_ACCESS_KEY=SANDBOX_CREDENTIAL,
               AWS_DEFAULT_REGION=REGION, PYTHONUNBUFFERED="1")
    return env


class Sandbox:
    """The twin rooted at `root` (default `.sandbox/`)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or places.sandbox_dir()).resolve()
        self.pids = self.root / "pids"
        self.logs = self.root / "logs"
        self.state_path = self.root / "state.json"

    # ---------------------------------------------------------------- state

    def state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        os.replace(tmp, self.state_path)

    def pid(self, name: str) -> int | None:
        try:
            return int((self.pids / f"{name}.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def alive(self, name: str) -> bool:
        """Is our process `name` running? Checks the command line so a recycled pid is not ours."""
        pid = self.pid(name)
        if pid is None:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return False
        if stat and stat[0] in ("Z", "X"):
            return False
        return f"shipbook.sandbox.{'aws_twin' if name == 'aws' else name.replace('-', '_')}" in cmdline \
            or f"shipbook.sandbox.{name}" in cmdline

    def is_up(self) -> bool:
        state = self.state()
        if not state or not all(self.alive(n) for n in PROCESSES):
            return False
        try:
            return requests.get(f"{state['endpoints']['aws_url']}/_sandbox/health", timeout=3).ok
        except requests.RequestException:
            return False

    # ---------------------------------------------------------------- processes

    def _spawn(self, name: str, args: list[str]) -> int:
        self.pids.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=child_env(), cwd=self.root,
                                    start_new_session=True)
        _STARTED[proc.pid] = proc
        (self.pids / f"{name}.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 5  # between fork and exec /proc shows an empty command line
        while time.monotonic() < deadline and proc.poll() is None and not self.alive(name):
            time.sleep(0.01)
        return proc.pid

    def _wait(self, name: str, what: str, probe: Callable[[], bool], say: Say, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        t0 = time.monotonic()
        last = 0.0
        while time.monotonic() < deadline:
            if probe():
                return
            if not self.alive(name):
                raise InfraError(f"sandbox: the {name} process exited while waiting for {what}; "
                                 f"see {self.logs / (name + '.log')}:\n{self._tail(name)}")
            if time.monotonic() - last > 3:
                say(f"sandbox: waiting for {what} ({time.monotonic() - t0:.0f}s)")
                last = time.monotonic()
            time.sleep(0.2)
        raise InfraError(f"sandbox: {what} not ready after {timeout:.0f}s; see {self.logs / (name + '.log')}")

    def _tail(self, name: str, lines: int = 8) -> str:
        try:
            return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    # ---------------------------------------------------------------- verbs

    def up(self, scenario: str | None = None, say: Say = _quiet) -> dict[str, Any]:
        """Start the twin (idempotent). With a scenario other than the running one, reset first.

        No scenario means: keep whatever is running, or start `healthy`.
        """
        from shipbook.sandbox import scenarios

        state = self.state()
        scenario = scenario or (state or {}).get("scenario") or "healthy"
        try:
            scenarios.get(scenario)
        except KeyError as exc:
            raise InputError("SCENARIO", str(exc.args[0])) from exc
        if self.is_up() and state:
            if state.get("scenario") == scenario:
                say(f"sandbox: already up ({scenario}) — AWS {state['endpoints']['aws_url']}, "
                    f"app {state['endpoints']['alb_url']}")
                return state
            say(f"sandbox: switching scenario {state.get('scenario')} → {scenario}")
            self.down(say)
            self.wipe()
        elif any(self.pid(n) for n in PROCESSES):
            self.down(say)  # half-started: start clean
        return self._start(scenario, say)

    def _start(self, scenario: str, say: Say) -> dict[str, Any]:
        from shipbook.sandbox import repo_builder, scenarios
        from shipbook.sandbox.aws_twin import seed

        t0 = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        ports = {"aws": _free_port(), "github": _free_port(), "alb": _free_port()}
        aws_url = f"http://127.0.0.1:{ports['aws']}"
        github_url = f"http://127.0.0.1:{ports['github']}"
        alb_url = f"http://127.0.0.1:{ports['alb']}"
        bare, work = self.root / "git" / "demo-app.git", self.root / "work" / "demo-app"
        say(f"sandbox: starting the AWS twin on {aws_url}")
        self._spawn("aws", ["shipbook.sandbox.aws_twin", "--port", str(ports["aws"]), "--state-dir", str(self.root)])
        self._wait("aws", "the AWS twin", lambda: _ok(f"{aws_url}/_sandbox/health"), say)
        say("sandbox: seeding the stack (VPC, ALB, ECS, RDS, alarms, secrets, IAM …)")
        facts = seed.seed(aws_url)
        say(f"sandbox: building the demo app's history ({scenario})")
        repo_builder.build(bare, work, scenario=scenario, github_url=github_url)
        say(f"sandbox: starting the GitHub twin on {github_url}")
        self._spawn("github", ["shipbook.sandbox.github_twin", "--port", str(ports["github"]),
                               "--state-dir", str(self.root), "--aws-url", aws_url, "--repo", str(bare)])
        self._wait("github", "the GitHub twin", lambda: _ok(f"{github_url}/_sandbox/health"), say)
        say(f"sandbox: starting the runtime (app, ALB stand-in on {alb_url}, traffic)")
        self._spawn("runtime", ["shipbook.sandbox.runtime", "--state-dir", str(self.root), "--aws-url", aws_url,
                                "--alb-port", str(ports["alb"]), "--app-repo", str(bare)])
        self._wait("runtime", "v0.9.0 serving behind the ALB", lambda: "v0.9.0" in _body(f"{alb_url}/version/"), say)
        done = scenarios.apply_twin(scenario, aws_url)
        for line in done:
            say(f"sandbox: scenario {scenario}: {line}")
        state = {"endpoints": {"aws_url": aws_url, "github_url": github_url, "alb_url": alb_url,
                               "git_remote": str(bare), "app_repo": str(work)},
                 "ports": ports, "scenario": scenario, "started": datetime.now(UTC).isoformat(timespec="seconds"),
                 "ready_seconds": round(time.monotonic() - t0, 2), "seed": facts}
        self._write_state(state)
        say(f"sandbox: up in {time.monotonic() - t0:.1f}s ({scenario}) — app {alb_url}")
        return state

    def down(self, say: Say = _quiet) -> list[str]:
        """Stop our processes (by pid, verified by command line). Fine when already down."""
        stopped = []
        for name in reversed(PROCESSES):
            pid = self.pid(name)
            if pid is not None and self.alive(name):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while self.alive(name) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if self.alive(name):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                stopped.append(name)
            if pid is not None:
                _reap(pid)
            with contextlib.suppress(FileNotFoundError):
                (self.pids / f"{name}.pid").unlink()
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        say("sandbox: stopped " + (", ".join(stopped) if stopped else "nothing (it was down)"))
        return stopped

    def wipe(self) -> None:
        if self.root.exists() and not (self.root / "pids").exists() and self.root.name != ".sandbox":
            raise InfraError(f"refusing to wipe {self.root}: not a sandbox directory")
        shutil.rmtree(self.root, ignore_errors=True)

    def reset(self, scenario: str | None = None, say: Say = _quiet) -> dict[str, Any]:
        self.down(say)
        self.wipe()
        return self.up(scenario, say)

    def status_text(self) -> str:
        state = self.state()
        lines = [f"sandbox at {self.root}: {'up' if self.is_up() else 'down'}"]
        for name in PROCESSES:
            pid = self.pid(name)
            lines.append(f"  {name:<8} pid {pid or '-':<8} {'running' if self.alive(name) else 'stopped'}")
        if state:
            lines.append(f"  scenario {state.get('scenario')}, started {state.get('started')}")
            for k, v in state.get("endpoints", {}).items():
                lines.append(f"  {k:<11} {v}")
        return "\n".join(lines)


def _reap(pid: int) -> None:
    """Wait for a stopped child of this process (a no-op for processes another process started)."""
    child = _STARTED.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def _body(url: str) -> str:
    try:
        r = requests.get(url, timeout=2)
        return r.text if r.ok else ""
    except requests.RequestException:
        return ""


# Module-level verbs for the CLI.

def ensure_up(scenario: str | None = None, progress: Say = _quiet) -> dict[str, Any]:
    return Sandbox().up(scenario, progress)


def down(progress: Say = _quiet) -> list[str]:
    return Sandbox().down(progress)


def reset(scenario: str | None = None, progress: Say = _quiet) -> dict[str, Any]:
    return Sandbox().reset(scenario, progress)


def status_text() -> str:
    return Sandbox().status_text()


def scenarios_text() -> str:
    from shipbook.sandbox import scenarios

    rows = scenarios.list_scenarios()
    out = [f"{'SCENARIO':<24} {'SIDE':<5} {'CAUGHT BY':<34} DESCRIPTION"]
    for r in rows:
        caught = f"{r['phase']} / {r['check']}" if r.get("check") else str(r.get("phase") or "-")
        out.append(f"{r['name']:<24} {str(r['side']):<5} {caught:<34} {r['description']}")
    return "\n".join(out)
