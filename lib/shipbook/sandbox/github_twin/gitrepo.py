"""Questions to the bare repository, plus the few writes GitHub makes: release tags, pull request refs
and merge commits (made with plumbing: no worktree, no checkout)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


class GitError(RuntimeError):
    """A git command failed; `message` is git's own stderr."""


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    tree: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    author_date: str
    committer_name: str
    committer_email: str
    committer_date: str
    message: str


_FORMAT = "%H%x1f%T%x1f%P%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%cI%x1f%B%x1e"


class Repo:
    """A git repository on disk (bare or not)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def git(self, *args: str, input_text: str | None = None, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["git", "--git-dir", str(self._git_dir()), *args],
            capture_output=True,
            text=True,
            input=input_text,
            timeout=60,
            env={**os.environ, **env} if env else None,
        )
        if result.returncode != 0:
            raise GitError(result.stderr.strip() or f"git {' '.join(args)} failed")
        return result.stdout

    def _git_dir(self) -> Path:
        dot_git = self.path / ".git"
        return dot_git if dot_git.exists() else self.path

    def exists(self) -> bool:
        return (self._git_dir() / "HEAD").exists()

    def resolve(self, ref: str) -> str | None:
        """The commit sha a ref (branch, tag, sha prefix) names, or None."""
        if not ref or ref.startswith("-"):
            return None
        try:
            return self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip() or None
        except GitError:
            return None

    def branch(self, name: str) -> str | None:
        """The commit the branch `name` (refs/heads/name, nothing else) points to, or None."""
        if not name or name.startswith("-"):
            return None
        return self.resolve(f"refs/heads/{name}")

    def commits(self, *rev_args: str) -> list[CommitInfo]:
        """Commits selected by `git log` arguments, oldest first."""
        out = self.git("log", "--reverse", f"--format={_FORMAT}", *rev_args, "--")
        return [_parse(record) for record in out.split("\x1e") if record.strip()]

    def commit(self, sha: str) -> CommitInfo:
        out = self.git("log", "-1", f"--format={_FORMAT}", sha, "--")
        return _parse(out.split("\x1e")[0])

    def merge_base(self, a: str, b: str) -> str | None:
        try:
            return self.git("merge-base", a, b).strip() or None
        except GitError:
            return None

    def count(self, rev_range: str) -> int:
        return int(self.git("rev-list", "--count", rev_range).strip())

    def changed_files(self, base: str, head: str) -> list[dict[str, object]]:
        """Files changed between two commits, with GitHub's status names and line counts."""
        status_names = {"A": "added", "M": "modified", "D": "removed", "R": "renamed", "C": "copied", "T": "changed"}
        statuses = {}
        for line in self.git("diff", "--name-status", "--no-renames", base, head).splitlines():
            code, _, name = line.partition("\t")
            statuses[name] = status_names.get(code[:1], "modified")
        files = []
        for line in self.git("diff", "--numstat", "--no-renames", base, head).splitlines():
            added, deleted, name = line.split("\t", 2)
            additions = int(added) if added.isdigit() else 0
            deletions = int(deleted) if deleted.isdigit() else 0
            files.append(
                {
                    "filename": name,
                    "status": statuses.get(name, "modified"),
                    "additions": additions,
                    "deletions": deletions,
                    "changes": additions + deletions,
                }
            )
        return files

    def show(self, sha: str, path: str) -> str:
        return self.git("show", f"{sha}:{path}")

    def tags(self) -> dict[str, str]:
        """Tag name → the commit it points to."""
        out = self.git("for-each-ref", "--format=%(refname:strip=2) %(*objectname) %(objectname)", "refs/tags")
        tags = {}
        for line in out.splitlines():
            parts = line.split()
            tags[parts[0]] = parts[1] if len(parts) == 3 else parts[-1]
        return tags

    def create_tag(self, name: str, sha: str) -> None:
        self.git("update-ref", f"refs/tags/{name}", sha, "")

    def merge_tree(self, base: str, head: str) -> str | None:
        """The tree of merging `head` into `base` (`git merge-tree --write-tree`), or None on conflicts."""
        result = subprocess.run(
            ["git", "--git-dir", str(self._git_dir()), "merge-tree", "--write-tree", "--no-messages", base, head],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if result.returncode == 1:
            return None
        if result.returncode != 0:
            raise GitError(result.stderr.strip() or "git merge-tree failed")
        return result.stdout.split()[0]

    def commit_tree(self, tree: str, parents: list[str], message: str, author: tuple[str, str]) -> str:
        """A new commit object (author and committer `(name, email)`, dated now); refs are not touched."""
        name, email = author
        env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
               "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
        args = [arg for parent in parents for arg in ("-p", parent)]
        return self.git("commit-tree", tree, *args, input_text=message, env=env).strip()

    def move_ref(self, ref: str, new: str, old: str) -> bool:
        """Point `ref` at `new` if it still points at `old` (compare and swap); False when it had moved."""
        try:
            self.git("update-ref", ref, new, old)
        except GitError:
            if self.resolve(ref) != old:
                return False
            raise
        return True

    def archive(self, sha: str, dest: Path) -> None:
        """Extract the tree of `sha` into `dest` (like a checkout without .git)."""
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "--git-dir", str(self._git_dir()), "archive", "--format=tar", sha],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if archive.returncode != 0:
            raise GitError(archive.stderr.decode(errors="replace").strip())
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True, timeout=60)


def _parse(record: str) -> CommitInfo:
    fields = record.strip("\n").split("\x1f")
    return CommitInfo(
        sha=fields[0],
        tree=fields[1],
        parents=tuple(fields[2].split()),
        author_name=fields[3],
        author_email=fields[4],
        author_date=fields[5],
        committer_name=fields[6],
        committer_email=fields[7],
        committer_date=fields[8],
        message=fields[9].rstrip("\n"),
    )
