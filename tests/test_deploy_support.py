"""Shared helpers for the deploy tests: a real app repository with a bare remote, environments."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from shipbook import config

NOTES = """# Release notes

## v1.0.0

### Features

- feat(shop): stock levels on products (#7)
- feat: order history page (#8)

### Database migrations

- shop.0003_product_stock

## v0.9.0

### Features

- feat(shop): product catalogue API (#1)
"""


def git(repo: Path, *args: str, input_text: str | None = None) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, input=input_text,
                          check=True, timeout=60)
    return proc.stdout.strip()


@dataclass
class AppRepo:
    work: Path
    bare: Path

    def tags(self) -> set[str]:
        return set(git(self.work, "tag", "--list").split())

    def remote_tags(self) -> set[str]:
        out = git(self.work, "ls-remote", "--tags", "--refs", "origin")
        return {line.split("refs/tags/")[1] for line in out.splitlines() if line}

    def head(self) -> str:
        return git(self.work, "rev-parse", "HEAD")

    def commit(self, path: str, text: str, message: str) -> str:
        (self.work / path).write_text(text, encoding="utf-8")
        git(self.work, "add", path)
        git(self.work, "commit", "-q", "-m", message)
        return self.head()

    def tag(self, name: str, ref: str = "HEAD", push: bool = True) -> None:
        git(self.work, "tag", "-a", "-m", f"Release {name}", name, ref)
        if push:
            git(self.work, "push", "-q", "origin", f"refs/tags/{name}")


def make_app_repo(tmp_path: Path) -> AppRepo:
    """A bare `origin` and a working clone: v0.9.0 tagged and pushed, then the v1.0.0 release commit."""
    bare = tmp_path / "origin.git"
    work = tmp_path / "app"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    for key, value in (("user.name", "Rel Manager"), ("user.email", "rel@example.com"),
                       ("commit.gpgsign", "false"), ("tag.gpgsign", "false")):
        git(work, "config", key, value)
    git(work, "checkout", "-q", "-b", "main")
    repo = AppRepo(work, bare)
    repo.commit("VERSION", "0.9.0\n", "chore(release): v0.9.0")
    repo.tag("v0.9.0", push=False)
    repo.commit("RELEASE_NOTES.md", NOTES, "chore(release): v1.0.0")
    git(work, "push", "-q", "origin", "main", "refs/tags/v0.9.0")
    return repo


def make_env(repo: AppRepo | None = None, **sections: object) -> config.Environment:
    """An Environment built directly (no file): the app repo and the sandbox's names."""
    app = config.AppSection(repo=str(repo.work) if repo else ".", public_url="http://127.0.0.1:9",
                            notes_file="RELEASE_NOTES.md")
    stack = config.StackSection(name="shipbook-demo", cluster="shipbook-demo", service="demo-web",
                                target_group="demo-web-tg")
    github = config.GithubSection(repository="example/demo-app", api_url="", remote="origin")
    kw: dict = {"app": app, "stack": stack, "github": github}
    kw.update(sections)
    return config.Environment(name="test", kind="sandbox", **kw)
