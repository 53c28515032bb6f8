"""One ECS task as a local process: its "image", its environment, its health and its resource use.

The image of tag T is `<state-dir>/images/T/` (built by the GitHub twin's deployer) or, when the
deployer never built it (the seeded release), the tree of git tag T from the app repository.
Each task runs from its own copy, like a container's filesystem, as
`sh -c "python manage.py migrate --noinput && exec python manage.py runserver 127.0.0.1:PORT"`:
the image's entrypoint migrates first, then the server replaces the shell. A one-off task (RunTask)
runs its command override instead, e.g. `python manage.py migrate shop 0004 --noinput`.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_BASE_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")


class ImageError(RuntimeError):
    """The task's image cannot be found (ECS: CannotPullContainerError)."""


def image_tag(image: str) -> str:
    """The tag of an image reference `registry/repo:tag`."""
    name = image.rsplit("/", 1)[-1]
    if ":" not in name:
        return "latest"
    return name.rsplit(":", 1)[1]


def prepare_image(tag: str, state_dir: Path, app_repo: Path | None) -> Path:
    """The image directory of `tag`, extracted from the app repository if the deployer did not build it."""
    images = state_dir / "images"
    image = images / tag
    if (image / ".image.json").exists():
        return image
    if app_repo is None:
        raise ImageError(f"CannotPullContainerError: image tag {tag} not found")
    git = ["git", "--git-dir", str(_git_dir(app_repo))]
    resolved = subprocess.run([*git, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}"],
                              capture_output=True, text=True, check=False)
    sha = resolved.stdout.strip()
    if resolved.returncode != 0 or not sha:
        raise ImageError(f"CannotPullContainerError: {tag} not found in the registry or in {app_repo}")
    staging = images / f".{tag}.{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    archive = subprocess.run([*git, "archive", "--format=tar", sha], capture_output=True, check=True, timeout=60)
    subprocess.run(["tar", "-x", "-C", str(staging)], input=archive.stdout, check=True, timeout=60)
    config = {"tag": tag, "commit": sha, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "env": {"APP_VERSION": tag, "GIT_COMMIT": sha}, "source": "git"}
    (staging / ".image.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    if image.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(image)
    logger.info("image %s extracted from %s at %s", tag, app_repo, sha[:12])
    return image


def _git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").exists() else repo


def image_env(image: Path) -> dict[str, str]:
    """The ENV baked into the image (APP_VERSION, GIT_COMMIT)."""
    config = json.loads((image / ".image.json").read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in config.get("env", {}).items()}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reachable(url: str, timeout: float = 0.5) -> bool:
    """True when the host:port of a database URL accepts TCP connections."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port or 5432), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class HealthSettings:
    """Target group health check settings (the runtime checks at most every `interval` seconds)."""

    path: str = "/health/"
    interval: float = 1.0
    timeout: float = 2.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    matcher: str = "200"
    grace: float = 30.0


@dataclass
class Task:
    """One running copy of the app for a task definition."""

    task_definition: str
    tag: str
    workdir: Path
    env: dict[str, str]
    cpu_units: int = 256
    memory_mib: int = 512
    on_line: Callable[[Task, str], None] = lambda task, line: None
    task_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    command: list[str] | None = None  # a one-off task's command override (else the image's entrypoint)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    healthy: bool = False
    failed_reason: str = ""
    successes: int = 0
    failures: int = 0
    last_check: float = 0.0
    ever_healthy: bool = False
    _cpu_sample: tuple[float, int] | None = None

    @property
    def stream(self) -> str:
        """The awslogs stream: prefix/container/task-id."""
        return f"web/web/{self.task_id}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, image: Path, python: str = sys.executable) -> None:
        """Copy the image and start the entrypoint (migrate, then serve), or the task's `command` override."""
        app = self.workdir / "app"
        shutil.rmtree(app, ignore_errors=True)
        shutil.copytree(image, app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        self.port = free_port()
        py = shlex.quote(python)
        if self.command:  # a one-off task: the image's python is this interpreter
            argv = [python if i == 0 and arg in ("python", "python3") else arg for i, arg in enumerate(self.command)]
        else:
            argv = ["/bin/sh", "-c", f"{py} manage.py migrate --noinput && "
                                     f"exec {py} manage.py runserver --noreload 127.0.0.1:{self.port}"]
        env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
        env.update({"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(self.workdir)})
        env.update(self.env)
        self.process = subprocess.Popen(
            argv, cwd=app, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.started = time.monotonic()
        threading.Thread(target=self._read_output, name=f"task-{self.task_id[:8]}-out", daemon=True).start()
        logger.info("task %s (%s) started: pid %s port %s", self.task_id, self.tag, self.process.pid, self.port)

    def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        # the pipe is closed once the task's output ends (else its descriptor lives until garbage collection)
        with self.process.stdout as output, (self.workdir / "container.log").open("ab") as local:
            for raw in output:
                local.write(raw)
                local.flush()
                self.on_line(self, raw.decode("utf-8", errors="replace").rstrip("\n"))

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_health(self, settings: HealthSettings) -> bool:
        """One health check request: True when it answers with the matcher's status."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=settings.timeout)
        try:
            connection.request("GET", settings.path, headers={"User-Agent": "ELB-HealthChecker/2.0"})
            response = connection.getresponse()
            response.read()
            return str(response.status) in settings.matcher.replace(" ", "").split(",")
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def observe(self, settings: HealthSettings, now: float) -> None:
        """Advance the health state machine by one check when the interval has passed."""
        if self.failed_reason or not self.alive():
            return
        if now - self.last_check < settings.interval:
            return
        self.last_check = now
        if self.check_health(settings):
            self.successes += 1
            self.failures = 0
            if self.successes >= settings.healthy_threshold and not self.healthy:
                self.healthy = self.ever_healthy = True
                logger.info("task %s healthy after %.1fs", self.task_id, now - self.started)
            return
        self.failures += 1
        self.successes = 0
        in_grace = now - self.started < settings.grace and not self.ever_healthy
        if self.failures >= settings.unhealthy_threshold and not in_grace:
            self.healthy = False
            self.failed_reason = "Task failed ELB health checks"

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
        logger.info("task %s (%s) stopped", self.task_id, self.tag)

    def usage(self, now: float) -> tuple[float, float] | None:
        """(CPU %, memory %) of the task's reservation since the last call; None if unknown."""
        pid = self.pid
        if pid is None or not self.alive():
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks = int(stat[11]) + int(stat[12])
            rss_kib = next(
                int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")
            )
        except (OSError, StopIteration, IndexError, ValueError):
            return None
        previous, self._cpu_sample = self._cpu_sample, (now, ticks)
        memory = 100.0 * rss_kib / (self.memory_mib * 1024)
        if previous is None or now <= previous[0]:
            return None
        seconds = (ticks - previous[1]) / CLOCK_TICKS
        cpu = 100.0 * seconds / (now - previous[0]) / (self.cpu_units / 1024)
        return cpu, memory
