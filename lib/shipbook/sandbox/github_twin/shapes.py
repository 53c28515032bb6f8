"""GitHub REST API JSON shapes built from the repository, its metadata and the store."""

from __future__ import annotations

import copy
import json
import os
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from shipbook.sandbox.github_twin.gitrepo import CommitInfo

REPO_FULL_NAME = "example/demo-app"
OWNER = REPO_FULL_NAME.split("/")[0]

T = TypeVar("T")


def user(login: str | None) -> dict[str, Any] | None:
    """A GitHub user object (ids derived from the login so they are stable)."""
    if not login:
        return None
    uid = zlib.crc32(login.encode()) % 10_000_000 + 1000
    return {
        "login": login,
        "id": uid,
        "node_id": f"U_{uid}",
        "type": "Bot" if login.endswith("[bot]") else "User",
        "site_admin": False,
        "html_url": f"https://github.com/{login}",
        "avatar_url": "",
    }


@dataclass
class Metadata:
    """`<bare>/github.json`: written by the repo builder, re-read when it changes, and updated by the twin
    itself when a pull request is opened, reviewed or merged through the API (so those survive a restart)."""

    path: Path
    _mtime: float = -1.0
    _data: dict[str, Any] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def data(self) -> dict[str, Any]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return {}
        if mtime != self._mtime:
            self._data = json.loads(self.path.read_text(encoding="utf-8"))
            self._mtime = mtime
        return self._data

    def update(self, change: Callable[[dict[str, Any]], T]) -> T:
        """Apply `change` to a fresh copy of the file's data and save it atomically; returns what `change`
        returns. An exception in `change` leaves the file as it was."""
        with self._lock:
            self._mtime = -1.0  # read what is on disk now
            data = copy.deepcopy(self.data())
            result = change(data)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
            self._data, self._mtime = data, self.path.stat().st_mtime
            return result

    def login_for(self, email: str) -> str | None:
        for login, person in self.data().get("people", {}).items():
            if person.get("email") == email:
                return login
        return None

    def pulls(self) -> list[dict[str, Any]]:
        return list(self.data().get("pulls", []))

    def pull(self, number: int) -> dict[str, Any] | None:
        return next((p for p in self.pulls() if p["number"] == number), None)

    def check_runs(self, sha: str) -> list[dict[str, Any]]:
        return list(self.data().get("check_runs", {}).get(sha, []))


@dataclass
class Shapes:
    """Turns internal records into GitHub's JSON, with URLs under the twin's base URL."""

    base_url: str
    meta: Metadata

    @property
    def api(self) -> str:
        return f"{self.base_url}/repos/{REPO_FULL_NAME}"

    @property
    def html(self) -> str:
        return f"{self.base_url}/{REPO_FULL_NAME}"

    def repository(self) -> dict[str, Any]:
        owner, name = REPO_FULL_NAME.split("/")
        return {
            "id": 700_000_001,
            "node_id": "R_demo_app",
            "name": name,
            "full_name": REPO_FULL_NAME,
            "private": True,
            "owner": {**(user(owner) or {}), "type": "Organization"},
            "html_url": self.html,
            "url": self.api,
            "default_branch": self.meta.data().get("default_branch", "main"),
        }

    def commit(self, info: CommitInfo) -> dict[str, Any]:
        author_login = self.meta.login_for(info.author_email)
        committer_login = self.meta.login_for(info.committer_email)
        return {
            "sha": info.sha,
            "node_id": f"C_{info.sha[:20]}",
            "commit": {
                "author": {"name": info.author_name, "email": info.author_email, "date": _utc(info.author_date)},
                "committer": {
                    "name": info.committer_name,
                    "email": info.committer_email,
                    "date": _utc(info.committer_date),
                },
                "message": info.message,
                "tree": {"sha": info.tree, "url": f"{self.api}/git/trees/{info.tree}"},
                "comment_count": 0,
                "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None},
            },
            "url": f"{self.api}/commits/{info.sha}",
            "html_url": f"{self.html}/commit/{info.sha}",
            "author": user(author_login),
            "committer": user(committer_login),
            "parents": [
                {"sha": p, "url": f"{self.api}/commits/{p}", "html_url": f"{self.html}/commit/{p}"}
                for p in info.parents
            ],
        }

    def pull(self, pr: dict[str, Any], full: bool = False) -> dict[str, Any]:
        number = pr["number"]
        body: dict[str, Any] = {
            "url": f"{self.api}/pulls/{number}",
            "id": 1_900_000_000 + number,
            "node_id": f"PR_{number}",
            "html_url": f"{self.html}/pull/{number}",
            "number": number,
            "state": pr.get("state", "closed"),
            "locked": False,
            "title": pr["title"],
            "user": user(pr["user"]),
            "body": pr.get("body") or None,
            "labels": [],
            "created_at": pr["created_at"],
            "updated_at": pr.get("updated_at") or pr.get("closed_at") or pr["created_at"],
            "closed_at": pr.get("closed_at"),
            "merged_at": pr.get("merged_at"),
            "merge_commit_sha": pr.get("merge_commit_sha"),
            "draft": False,
            "head": {"label": f"{OWNER}:{pr['head']['ref']}", "ref": pr["head"]["ref"], "sha": pr["head"]["sha"]},
            "base": {"label": f"{OWNER}:{pr['base']['ref']}", "ref": pr["base"]["ref"], "sha": pr["base"]["sha"]},
            "author_association": "MEMBER",
        }
        if full:
            body.update(
                merged=bool(pr.get("merged")),
                merged_by=user(pr.get("merged_by")),
                commits=len(pr.get("commits", [])),
                review_comments=0,
                comments=0,
                mergeable=pr.get("mergeable"),
                mergeable_state=pr.get("mergeable_state", "unknown"),
                rebaseable=None,
            )
        return body

    def review(self, pr: dict[str, Any], review: dict[str, Any]) -> dict[str, Any]:
        number = pr["number"]
        return {
            "id": review["id"],
            "node_id": f"PRR_{review['id']}",
            "user": user(review["user"]),
            "body": review.get("body", ""),
            "state": review["state"],
            "html_url": f"{self.html}/pull/{number}#pullrequestreview-{review['id']}",
            "pull_request_url": f"{self.api}/pulls/{number}",
            "submitted_at": review["submitted_at"],
            "commit_id": review.get("commit_id"),
            "author_association": "MEMBER",
        }

    def run(self, run: dict[str, Any], head: CommitInfo | None) -> dict[str, Any]:
        run_id = run["id"]
        return {
            "id": run_id,
            "name": run["name"],
            "node_id": f"WFR_{run_id}",
            "head_branch": run["head_branch"],
            "head_sha": run["head_sha"],
            "path": run["path"],
            "display_title": run["display_title"],
            "run_number": run["run_number"],
            "event": run["event"],
            "status": run["status"],
            "conclusion": run["conclusion"],
            "workflow_id": 120_000_001,
            "check_suite_id": 30_000_000_000 + run_id,
            "url": f"{self.api}/actions/runs/{run_id}",
            "html_url": f"{self.html}/actions/runs/{run_id}",
            "jobs_url": f"{self.api}/actions/runs/{run_id}/jobs",
            "logs_url": f"{self.api}/actions/runs/{run_id}/logs",
            "workflow_url": f"{self.api}/actions/workflows/120000001",
            "created_at": run["created_at"],
            "updated_at": run["updated_at"],
            "run_started_at": run["run_started_at"],
            "run_attempt": run["run_attempt"],
            "actor": user(run["actor"]),
            "triggering_actor": user(run["actor"]),
            "head_commit": {
                "id": run["head_sha"],
                "tree_id": head.tree if head else None,
                "message": run["head_commit_message"],
                "timestamp": _utc(head.committer_date) if head else None,
                "author": {"name": head.author_name, "email": head.author_email} if head else None,
            },
            "repository": {"full_name": REPO_FULL_NAME, "name": REPO_FULL_NAME.split("/")[1]},
        }

    def job(self, run: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
        job_id = job["id"]
        return {
            "id": job_id,
            "run_id": run["id"],
            "run_url": f"{self.api}/actions/runs/{run['id']}",
            "run_attempt": 1,
            "node_id": f"CR_{job_id}",
            "head_sha": run["head_sha"],
            "head_branch": run["head_branch"],
            "url": f"{self.api}/actions/jobs/{job_id}",
            "html_url": f"{self.html}/actions/runs/{run['id']}/job/{job_id}",
            "status": job["status"],
            "conclusion": job["conclusion"],
            "created_at": job["created_at"],
            "started_at": job["started_at"],
            "completed_at": job["completed_at"],
            "name": job["name"],
            "steps": [dict(step) for step in job["steps"]],
            "check_run_url": f"{self.api}/check-runs/{job_id}",
            "labels": ["ubuntu-latest"],
            "runner_name": "shipbook-sandbox",
            "runner_group_name": "GitHub Actions",
            "workflow_name": run["name"],
        }

    def check_run(self, sha: str, record: dict[str, Any], index: int) -> dict[str, Any]:
        check_id = record.get("id") or 40_000_000_000 + zlib.crc32(f"{sha}:{record['name']}:{index}".encode())
        return {
            "id": check_id,
            "node_id": f"CR_{check_id}",
            "head_sha": sha,
            "name": record["name"],
            "status": record["status"],
            "conclusion": record.get("conclusion"),
            "started_at": record.get("started_at"),
            "completed_at": record.get("completed_at"),
            "url": f"{self.api}/check-runs/{check_id}",
            "html_url": record.get("html_url") or f"{self.html}/runs/{check_id}",
            "details_url": record.get("html_url") or f"{self.html}/runs/{check_id}",
            "output": {"title": record.get("title"), "summary": record.get("summary"), "annotations_count": 0},
            "app": {"slug": "github-actions", "name": "GitHub Actions"},
            "check_suite": {"id": 30_000_000_000 + index},
        }

    def release(self, release: dict[str, Any]) -> dict[str, Any]:
        rid = release["id"]
        tag = release["tag_name"]
        return {
            "url": f"{self.api}/releases/{rid}",
            "html_url": f"{self.html}/releases/tag/{tag}",
            "assets_url": f"{self.api}/releases/{rid}/assets",
            "upload_url": f"{self.base_url}/uploads/repos/{REPO_FULL_NAME}/releases/{rid}/assets{{?name,label}}",
            "tarball_url": f"{self.api}/tarball/{tag}",
            "zipball_url": f"{self.api}/zipball/{tag}",
            "id": rid,
            "node_id": f"RE_{rid}",
            "tag_name": tag,
            "target_commitish": release["target_commitish"],
            "name": release.get("name") or tag,
            "body": release.get("body") or "",
            "draft": bool(release.get("draft")),
            "prerelease": bool(release.get("prerelease")),
            "make_latest": release.get("make_latest", "true"),
            "created_at": release["created_at"],
            "published_at": None if release.get("draft") else release["created_at"],
            "author": user(release.get("author") or "release-bot"),
            "assets": [],
        }


def _utc(iso: str) -> str:
    """git's ISO 8601 with offset → GitHub's UTC `Z` form."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
