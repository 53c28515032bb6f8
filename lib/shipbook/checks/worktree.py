"""The release's trees: a clean temporary `git worktree` at a commit, and running the app's tools in it.

Why a worktree and never the working copy: the pre-checks judge what will be tagged and deployed.
A working copy carries uncommitted edits, untracked files, caches and a local database; a
detached worktree at the commit has exactly the committed files, and disappears afterwards.

Child processes (the app's tests, its migration probe, bandit, ruff) get a minimal environment:
no AWS credentials or endpoints, no GitHub token, no DATABASE_URL of the operator's shell. The
app's code must not be able to reach real infrastructure from a pre-check.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shipbook import gitinfo, versions
from shipbook.config import Environment
from shipbook.errors import InfraError, InputError

log = logging.getLogger(__name__)

# Variables a child process may inherit: the toolchain's, never credentials or endpoints.
_PASS_THROUGH = ("PATH", "HOME", "LANG", "LANGUAGE", "TMPDIR", "TZ", "SYSTEMROOT", "TERM")
_PYTHON = re.compile(r"python(?:3(?:\.\d+)?)?")


@contextmanager
def checkout(repo: str | Path, commit: str) -> Iterator[Path]:
    """A detached worktree of `repo` at `commit` in a temporary directory, removed on exit.

    Hooks are disabled for the checkout (`core.hooksPath=/dev/null`): a pre-check must not run
    the repository's post-checkout scripts on the operator's machine.
    """
    base = Path(tempfile.mkdtemp(prefix="shipbook-tree-"))
    tree = base / "tree"
    try:
        gitinfo.git(repo, "-c", "core.hooksPath=/dev/null", "worktree", "add", "--quiet", "--detach",
                    str(tree), commit)
    except InfraError:
        _remove_dir(base)
        raise
    log.debug("worktree of %s at %s in %s", repo, commit[:12], tree)
    try:
        yield tree
    finally:
        gitinfo.git(repo, "worktree", "remove", "--force", str(tree), check=False)
        _remove_dir(base)
        gitinfo.git(repo, "worktree", "prune", check=False)


def _remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- the previous release


@dataclass(frozen=True)
class Previous:
    """The previous release tag and its commit ('' for both on a first release)."""

    tag: str
    commit: str

    def __bool__(self) -> bool:
        return bool(self.commit)


def previous(repo: str | Path, version: str, given: str = "") -> Previous:
    """The release before `version`: `given` (the run's previous_version) or the greatest lower tag."""
    tag = given
    if not tag and version:
        tag = versions.previous_release(gitinfo.tags(repo), version)
    if not tag:
        return Previous("", "")
    commit = gitinfo.rev_or_empty(repo, f"refs/tags/{tag}")
    if not commit:
        raise InputError("previous_version", f"tag {tag} does not exist in {repo}")
    return Previous(tag, commit)


# --------------------------------------------------------------------------- running the app's tools


def app_python(env: Environment) -> str:
    """The app's interpreter: `app.python` when configured, else the one running shipbook.

    The sandbox leaves it empty: shipbook's own environment has the demo app's requirements.
    """
    return env.app.python or sys.executable


def command(text: str, python: str) -> list[str]:
    """A configured command line as arguments; a leading `python`/`python3` becomes the app's Python."""
    try:
        args = shlex.split(text)
    except ValueError as exc:
        raise InputError("app.test_command", f"cannot be parsed: {exc}") from exc
    if not args:
        raise InputError("app.test_command", "is empty")
    if _PYTHON.fullmatch(args[0]):
        args[0] = python
    return args


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for the app's processes (see the module docstring)."""
    out = {k: v for k, v in os.environ.items() if k in _PASS_THROUGH or k.startswith("LC_")}
    out.setdefault("PATH", os.defpath)
    out["PYTHONDONTWRITEBYTECODE"] = "1"
    out["PYTHONUNBUFFERED"] = "1"
    out.update(extra or {})
    return out


@dataclass
class Ran:
    """What a child process did: its arguments, exit code, output and duration."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return f"{self.stdout}\n{self.stderr}" if self.stdout and self.stderr else self.stdout or self.stderr

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output.strip().splitlines()[-lines:])

    @property
    def shown(self) -> str:
        return shown(self.args)


def shown(args: Sequence[str]) -> str:
    """The command as a person would type it (the program's path shortened)."""
    return shlex.join([Path(args[0]).name, *args[1:]])


def run(args: Sequence[str], cwd: Path, timeout: float, env: Mapping[str, str] | None = None,
        still_running: Callable[[float], None] | None = None, every: float = 15.0) -> Ran:
    """Run `args` in `cwd` with a deadline; on timeout the whole process group is killed.

    Why a process group: a test runner may start workers; killing only the direct child would
    leave them running after the check gave up. `still_running(seconds)` is called every `every`
    seconds while the process runs, so a long wait shows progress.
    """
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(list(args), cwd=cwd, env=dict(env) if env is not None else child_env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    except OSError as exc:
        raise InfraError(f"cannot run {args[0]}: {exc}") from exc
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            # communicate() may be called again after a timeout without losing output
            out, err = proc.communicate(timeout=max(0.0, min(left, every) if still_running else left))
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() < deadline and still_running is not None:
                still_running(time.monotonic() - t0)
                continue
            _kill_group(proc)
            proc.communicate()
            raise InfraError(f"{shown(args)} did not finish within {timeout:.0f}s (killed)") from None
    return Ran(list(args), proc.returncode, out, err, time.monotonic() - t0)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
