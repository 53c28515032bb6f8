"""Fixtures of the AWS twin tests: one real twin process per session, seeded, stopped by pid."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """GET (or POST `body`) a control endpoint; (status, JSON body) also for 4xx/5xx."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def poll(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Twin:
    """A running AWS twin: its URL, state directory, seed facts and startup timings."""

    url: str
    state_dir: Path
    process: subprocess.Popen[bytes]
    facts: dict[str, Any] = field(default_factory=dict)
    healthy_after: float = 0.0
    seeded_after: float = 0.0

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name="ap-northeast-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def control(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        return http_json(f"{self.url}/_sandbox/{path}", body)

    def log_tail(self, lines: int = 40) -> str:
        log = self.state_dir / "aws-twin.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def start_twin(state_dir: Path, port: int | None = None) -> Twin:
    """Start `python -m shipbook.sandbox.aws_twin` and wait until /_sandbox/health answers 200."""
    port = port or _free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with (state_dir / "aws-twin.log").open("wb") as log:  # the child has its own descriptor; ours closes here
        process = subprocess.Popen(
            [sys.executable, "-m", "shipbook.sandbox.aws_twin", "--port", str(port), "--state-dir", str(state_dir)],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    twin = Twin(f"http://127.0.0.1:{port}", state_dir, process)
    deadline = started + 60
    while True:
        if process.poll() is not None:
            pytest.fail(f"the AWS twin exited with {process.returncode}:\n{twin.log_tail()}")
        try:
            if twin.control("health")[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_twin(twin)
            pytest.fail(f"the AWS twin did not become healthy:\n{twin.log_tail()}")
        time.sleep(0.05)
    twin.healthy_after = time.monotonic() - started
    return twin


def stop_twin(twin: Twin) -> None:
    """SIGTERM by pid, then SIGKILL if it does not leave within 10 s."""
    if twin.process.poll() is None:
        os.kill(twin.process.pid, signal.SIGTERM)
        try:
            twin.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(twin.process.pid, signal.SIGKILL)
            twin.process.wait(timeout=10)


@pytest.fixture(scope="session")
def aws_twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    """One seeded twin for the session (state shared by the tests, as by notebook kernels)."""
    from shipbook.sandbox.aws_twin import seed

    started = time.monotonic()
    twin = start_twin(tmp_path_factory.mktemp("aws-twin"))
    try:
        twin.facts = seed.seed(twin.url)
        twin.seeded_after = time.monotonic() - started
        yield twin
    finally:
        stop_twin(twin)


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """`wait_for(check, timeout=15, what="...")`: poll until truthy, else fail the test."""
    return poll


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a free loopback port."""
    return _free_port
