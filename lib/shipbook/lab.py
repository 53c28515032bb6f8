"""JupyterLab for the on-call engineer: the project root, loopback only, a fresh token, a clear failure.

Interactive investigation is one of the three ways shipbook is used, so `make lab` must start where
people actually are (often root, in a container), open where both `notebooks/` and `runs/` are reachable,
and say in one line why it did not start. The kernels are the venv's own Python (the editable install
puts `lib/` on its path) and get the environment's variables, as the runner's kernels do.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import importlib.util
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from shipbook.errors import InfraError
from shipbook.places import PROJECT_ROOT

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT = 120.0  # a first start (extensions, the build check) can be slow on a cold machine
STOP_TIMEOUT = 20.0  # kernels are shut down by the server before it exits
_LOG_LINE = re.compile(r"^\[(?P<level>[A-Z])\s[^\]]*\]\s*(?P<text>.*)$")


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def command(port: int, root: Path = PROJECT_ROOT, open_browser: bool = True, as_root: bool = False,
            log_level: str = "WARN") -> list[str]:
    """The JupyterLab command line; the token is not on it (argv is visible to every local user)."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}", f"--ServerApp.ip={HOST}",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",  # the printed URL must be the real one
           f"--ServerApp.log_level={log_level}"]
    if not open_browser:
        cmd.append("--no-browser")
    if as_root:
        cmd.append("--allow-root")
    return cmd


def child_env(base: Mapping[str, str], env_vars: Mapping[str, str], token: str) -> dict[str, str]:
    """The server's environment (its kernels inherit it): the shipbook environment's variables and the token."""
    out = {**base, **env_vars, "JUPYTER_TOKEN": token}
    out.pop("JUPYTER_TOKEN_FILE", None)  # would not win over JUPYTER_TOKEN, but must not confuse a reader
    return out


def reason(lines: list[str]) -> str:
    """Why the server stopped, from its last output: its critical line, else its error, else the last line."""
    for level in ("C", "E"):
        found = [m["text"] for m in map(_LOG_LINE.match, lines) if m and m["level"] == level and m["text"].strip()]
        if found:
            return re.sub(r"^ERROR:\s*", "", found[-1].strip())
    rest = [line.strip() for line in lines if line.strip()]
    return rest[-1] if rest else "no output"


class Lab:
    """One JupyterLab server process: started, checked to answer with its token, stopped with its kernels."""

    def __init__(self, port: int, env_vars: Mapping[str, str], *, open_browser: bool = True,
                 root: Path = PROJECT_ROOT, log_level: str = "WARN", stderr: IO[str] | None = None) -> None:
        self.port = port
        self.root = root
        self.as_root = is_root()
        self.token = secrets.token_hex(24)
        self.cmd = command(port, root, open_browser, self.as_root, log_level)
        self.env = child_env(os.environ, env_vars, self.token)
        self.stderr = stderr or sys.stderr
        self.proc: subprocess.Popen[str] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._pump: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/lab?token={self.token}"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the server and return once it answers with our token; InfraError (with the reason) if not."""
        if importlib.util.find_spec("jupyterlab") is None:
            raise InfraError("JupyterLab is not installed in this environment: `make lab` installs it (the `lab` "
                             "extra: pip install -e '.[lab]')")
        # its own session: a terminal Ctrl-C reaches shipbook only, which then stops the server cleanly
        # (SIGTERM: the server shuts its kernels down; SIGINT without a tty would skip that)
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.root, stdin=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
        self._pump = threading.Thread(target=self._forward, args=(self.proc.stderr,), daemon=True)
        self._pump.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise InfraError(f"JupyterLab did not start (exit {self.proc.returncode}): {self.why()}")
            if self._answers():
                return
            time.sleep(0.25)
        self.stop()
        raise InfraError(f"JupyterLab did not answer on {HOST}:{self.port} within {timeout:.0f} s; stopped it")

    def wait(self) -> int:
        assert self.proc is not None
        code = self.proc.wait()
        if self._pump:
            self._pump.join(5)
        return code

    def why(self) -> str:
        if self._pump:
            self._pump.join(5)  # the process has exited: its last lines are on their way
        return reason(list(self._tail))

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM (the server stops its kernels, then itself); SIGKILL if it has not exited in time."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("JupyterLab did not stop within %.0f s of SIGTERM; killing it", timeout)
            self.proc.kill()
            return self.proc.wait(10)

    def _forward(self, stream: IO[str]) -> None:
        """The server's own log goes on to our stderr; its last lines are kept for the failure reason."""
        for line in stream:
            self._tail.append(line.rstrip("\n"))
            self.stderr.write(line)
            self.stderr.flush()

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
        try:
            conn.request("GET", "/api/status", headers={"Authorization": f"token {self.token}"})
            return conn.getresponse().status == 200  # another server on the port would refuse our token
        except OSError:
            return False
        finally:
            conn.close()


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the lab like Ctrl-C does (as KeyboardInterrupt), so the server is always stopped."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    saved = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """While the server is being stopped, another Ctrl-C or SIGTERM must not leave it (and its kernels) running."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in signals}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
