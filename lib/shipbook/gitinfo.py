"""Read-only facts from the app's git repository: tags, commits, the operator's identity."""

from __future__ import annotations

import subprocess
from pathlib import Path

from shipbook.errors import InfraError


def git(repo: str | Path, *args: str, check: bool = True) -> str:
    """Run git in `repo` and return stdout (stripped). Raises InfraError with git's message."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise InfraError(f"git {' '.join(args)} in {repo}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def is_repo(repo: str | Path) -> bool:
    return Path(repo).is_dir() and subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--git-dir"], capture_output=True, check=False).returncode == 0


def tags(repo: str | Path) -> list[str]:
    out = git(repo, "tag", "--list")
    return [t for t in out.splitlines() if t]


def rev(repo: str | Path, ref: str) -> str:
    return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")


def rev_or_empty(repo: str | Path, ref: str) -> str:
    return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)


def user(repo: str | Path = ".") -> str:
    name = git(repo, "config", "user.name", check=False)
    email = git(repo, "config", "user.email", check=False)
    return f"{name} <{email}>" if email else name
