"""HTTP server of the GitHub twin: REST routes, the push control endpoint, run pages.

Routes (all under `/repos/example/demo-app`, JSON as on api.github.com):
  GET  /actions/runs[?head_sha=&event=&branch=&status=&per_page=&page=]
  GET  /actions/runs/{id}            GET /actions/runs/{id}/jobs      GET /actions/jobs/{id}
  GET  /actions/jobs/{id}/logs       (text, instead of GitHub's redirect to a download)
  GET  /compare/{base}...{head}      GET /commits/{ref}               GET /commits/{sha}/pulls
  GET  /commits/{ref}/check-runs     GET /commits/{ref}/status
  GET  /pulls[?state=&head=&base=]   GET /pulls/{n}                   GET /pulls/{n}/reviews
  GET  /pulls/{n}/commits            GET /releases                    POST /releases
  GET  /releases/latest              GET /releases/tags/{tag}         GET /tags
  GET  (the repository)
  POST /pulls                        POST /pulls/{n}/reviews          PUT /pulls/{n}/merge
Reads take any or no token. Opening, reviewing and merging a pull request need
`Authorization: token <login>` (or `Bearer <login>`): the twin has no real authentication, the token
*is* the acting user's login (401 without one).
Control: POST /_sandbox/push {"ref", "after"|"sha"}, POST /_sandbox/reset, GET /_sandbox/health.
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from shipbook.sandbox.github_twin.deployer import JOBS, WORKFLOW_NAME, WORKFLOW_PATH, Deployer
from shipbook.sandbox.github_twin.gitrepo import GitError, Repo
from shipbook.sandbox.github_twin.shapes import OWNER, REPO_FULL_NAME, Metadata, Shapes
from shipbook.sandbox.github_twin.store import Store, now_iso

logger = logging.getLogger(__name__)

API_VERSION = "2022-11-28"


class ApiError(Exception):
    """An HTTP error answered with GitHub's error body."""

    def __init__(self, status: int, message: str, errors: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


Response = tuple[int, Any]

REVIEW_STATES = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}
WRITE_METHODS = ("POST", "PUT", "PATCH")


class GitHubTwin:
    """The application: routes requests to handlers over the repo, metadata, store and deployer."""

    def __init__(self, repo: Repo, store: Store, deployer: Deployer, base_url: str = "") -> None:
        self.repo = repo
        self.store = store
        self.deployer = deployer
        self.meta = Metadata(repo.path / "github.json")
        self.shapes = Shapes(base_url, self.meta)
        self.merge_lock = threading.Lock()  # one merge at a time; a push racing it is caught by the ref update
        prefix = "/repos/" + re.escape(REPO_FULL_NAME)
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = [
            ("GET", re.compile(r"/_sandbox/health"), self.health),
            ("POST", re.compile(r"/_sandbox/push"), self.push),
            ("POST", re.compile(r"/_sandbox/reset"), self.reset),
            ("GET", re.compile(prefix), self.repository),
            ("GET", re.compile(prefix + r"/actions/runs"), self.list_runs),
            ("GET", re.compile(prefix + r"/actions/runs/(\d+)"), self.get_run),
            ("GET", re.compile(prefix + r"/actions/runs/(\d+)/jobs"), self.list_jobs),
            ("GET", re.compile(prefix + r"/actions/jobs/(\d+)"), self.get_job),
            ("GET", re.compile(prefix + r"/actions/jobs/(\d+)/logs"), self.job_logs),
            ("GET", re.compile(prefix + r"/compare/(.+?)\.\.\.(.+)"), self.compare),
            ("GET", re.compile(prefix + r"/commits/([^/]+)/pulls"), self.commit_pulls),
            ("GET", re.compile(prefix + r"/commits/([^/]+)/check-runs"), self.check_runs),
            ("GET", re.compile(prefix + r"/commits/([^/]+)/status"), self.combined_status),
            ("GET", re.compile(prefix + r"/commits/([^/]+)"), self.get_commit),
            ("GET", re.compile(prefix + r"/pulls"), self.list_pulls),
            ("POST", re.compile(prefix + r"/pulls"), self.create_pull),
            ("GET", re.compile(prefix + r"/pulls/(\d+)"), self.get_pull),
            ("GET", re.compile(prefix + r"/pulls/(\d+)/reviews"), self.pull_reviews),
            ("POST", re.compile(prefix + r"/pulls/(\d+)/reviews"), self.create_review),
            ("PUT", re.compile(prefix + r"/pulls/(\d+)/merge"), self.merge_pull),
            ("GET", re.compile(prefix + r"/pulls/(\d+)/commits"), self.pull_commits),
            ("GET", re.compile(prefix + r"/releases"), self.list_releases),
            ("POST", re.compile(prefix + r"/releases"), self.create_release),
            ("GET", re.compile(prefix + r"/releases/latest"), self.latest_release),
            ("GET", re.compile(prefix + r"/releases/tags/(.+)"), self.release_by_tag),
            ("GET", re.compile(prefix + r"/tags"), self.list_tags),
            ("GET", re.compile("/" + re.escape(REPO_FULL_NAME) + r"/actions/runs/(\d+)(?:/job/\d+)?"), self.run_page),
        ]
        self.authenticated = {self.create_pull, self.create_review, self.merge_pull}

    def record_history(self) -> int:
        """Add the metadata's past deployments as completed runs, once (the store is empty)."""
        if self.store.list_runs():
            return 0
        added = 0
        for past in self.meta.data().get("deployments", []):
            sha = self.repo.resolve(past["sha"])
            if not sha:
                continue
            self.store.add_history(
                name=WORKFLOW_NAME, path=WORKFLOW_PATH, head_sha=sha, head_branch=past["tag"],
                message=self.repo.commit(sha).message, actor=self._actor(f"refs/tags/{past['tag']}"), jobs=JOBS,
                started=datetime.fromisoformat(past["created_at"].replace("Z", "+00:00")),
                conclusion=past.get("conclusion", "success"),
            )
            added += 1
        return added

    # -- dispatch -----------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], body: bytes, authorization: str = "") -> Response:
        path = path.rstrip("/") or "/"
        matched_path = False
        for route_method, pattern, handler in self.routes:
            match = pattern.fullmatch(path)
            if not match:
                continue
            matched_path = True
            if route_method != method:
                continue
            args = [unquote(g) for g in match.groups()]
            kwargs: dict[str, Any] = {"query": query}
            if handler in self.authenticated:
                kwargs["login"] = _login(authorization)
            if method in WRITE_METHODS:
                kwargs["body"] = _json_body(body)
            return handler(*args, **kwargs)
        if matched_path:
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "Method Not Allowed")
        raise ApiError(HTTPStatus.NOT_FOUND, "Not Found")

    # -- control ------------------------------------------------------------------------------
    def health(self, query: dict[str, str]) -> Response:
        return 200, {"status": "ok", "repository": str(self.repo.path), "repo_ready": self.repo.exists()}

    def push(self, query: dict[str, str], body: dict[str, Any]) -> Response:
        ref = str(body.get("ref", ""))
        sha = str(body.get("after") or body.get("sha") or "")
        if not ref.startswith("refs/"):
            ref = f"refs/tags/{ref}"
        resolved = self.repo.resolve(sha or ref)
        if not resolved:
            raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, f"unknown ref or sha: {sha or ref}")
        run = self.deployer.push(ref, resolved, actor=self._actor(ref))
        if run is None:
            return 200, {"queued": False, "reason": f"no workflow runs on {ref} (deploy.yml: tags v*)"}
        return 201, {**self.shapes.run(run, None), "queued": True}

    def _actor(self, ref: str) -> str:
        try:
            email = self.repo.git("for-each-ref", "--format=%(taggeremail)", ref).strip().strip("<>")
        except GitError:
            email = ""
        return self.meta.login_for(email) or "release-bot"

    def reset(self, query: dict[str, str], body: dict[str, Any]) -> Response:
        self.store.reset()
        return 200, {"reset": True}

    # -- repository and commits ---------------------------------------------------------------
    def repository(self, query: dict[str, str]) -> Response:
        return 200, self.shapes.repository()

    def _commit_sha(self, ref: str) -> str:
        sha = self.repo.resolve(ref)
        if not sha:
            raise ApiError(HTTPStatus.NOT_FOUND, f"No commit found for SHA: {ref}")
        return sha

    def get_commit(self, ref: str, query: dict[str, str]) -> Response:
        sha = self._commit_sha(ref)
        info = self.repo.commit(sha)
        body = self.shapes.commit(info)
        parent = info.parents[0] if info.parents else None
        if parent:
            body["files"] = self.repo.changed_files(parent, sha)
        return 200, body

    def compare(self, base: str, head: str, query: dict[str, str]) -> Response:
        base_sha, head_sha = self._commit_sha(base), self._commit_sha(head)
        merge_base = self.repo.merge_base(base_sha, head_sha)
        ahead = self.repo.count(f"{base_sha}..{head_sha}")
        behind = self.repo.count(f"{head_sha}..{base_sha}")
        if ahead == behind == 0:
            status = "identical"
        else:
            status = "ahead" if behind == 0 else "behind" if ahead == 0 else "diverged"
        commits = self.repo.commits(f"{base_sha}..{head_sha}")[:250]
        return 200, {
            "url": f"{self.shapes.api}/compare/{base}...{head}",
            "html_url": f"{self.shapes.html}/compare/{base}...{head}",
            "permalink_url": f"{self.shapes.html}/compare/{base_sha[:7]}...{head_sha[:7]}",
            "base_commit": self.shapes.commit(self.repo.commit(base_sha)),
            "merge_base_commit": self.shapes.commit(self.repo.commit(merge_base)) if merge_base else None,
            "status": status,
            "ahead_by": ahead,
            "behind_by": behind,
            "total_commits": ahead,
            "commits": [self.shapes.commit(c) for c in commits],
            "files": self.repo.changed_files(merge_base or base_sha, head_sha),
        }

    def list_tags(self, query: dict[str, str]) -> Response:
        tags = sorted(self.repo.tags().items(), reverse=True)
        return 200, _page(
            [{"name": name, "commit": {"sha": sha, "url": f"{self.shapes.api}/commits/{sha}"}} for name, sha in tags],
            query,
        )

    # -- pull requests ------------------------------------------------------------------------
    def commit_pulls(self, ref: str, query: dict[str, str]) -> Response:
        sha = self._commit_sha(ref)
        pulls = [p for p in self.meta.pulls() if p.get("merge_commit_sha") == sha or sha in p.get("commits", [])]
        return 200, [self.shapes.pull(p) for p in pulls]

    def _pull(self, number: str) -> dict[str, Any]:
        pr = self.meta.pull(int(number))
        if pr is None:
            raise ApiError(HTTPStatus.NOT_FOUND, "Not Found")
        return self._follow_head(pr)

    def _follow_head(self, pr: dict[str, Any]) -> dict[str, Any]:
        """An open pull request follows its head branch: commits pushed to it since are its commits too."""
        if pr.get("state") != "open":
            return pr
        tip = self.repo.branch(pr["head"]["ref"])
        if not tip or tip == pr["head"]["sha"]:
            return pr
        base = self.repo.branch(pr["base"]["ref"]) or pr["base"]["sha"]
        commits = [c.sha for c in self.repo.commits(f"{base}..{tip}")] or pr["commits"]
        self.repo.git("update-ref", f"refs/pull/{pr['number']}/head", tip)

        def follow(data: dict[str, Any]) -> dict[str, Any]:
            stored = _stored(data, pr["number"])
            stored["head"]["sha"], stored["commits"], stored["updated_at"] = tip, commits, now_iso()
            return stored

        return self.meta.update(follow)

    def list_pulls(self, query: dict[str, str]) -> Response:
        state = query.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise _invalid("PullRequest", "state")
        pulls = [p for p in self.meta.pulls() if state == "all" or p.get("state", "closed") == state]
        if query.get("head"):
            owner, _, ref = query["head"].rpartition(":")
            pulls = [p for p in pulls if p["head"]["ref"] == ref and owner in ("", OWNER)]
        if query.get("base"):
            pulls = [p for p in pulls if p["base"]["ref"] == query["base"]]
        pulls.sort(key=lambda p: p["number"], reverse=True)
        return 200, _page([self.shapes.pull(self._follow_head(p)) for p in pulls], query)

    def get_pull(self, number: str, query: dict[str, str]) -> Response:
        pr = self._pull(number)
        if pr.get("state") == "open":
            base = self.repo.branch(pr["base"]["ref"])
            clean = bool(base) and self.repo.merge_tree(base, pr["head"]["sha"]) is not None
            pr = {**pr, "mergeable": clean, "mergeable_state": "clean" if clean else "dirty"}
        return 200, self.shapes.pull(pr, full=True)

    def pull_reviews(self, number: str, query: dict[str, str]) -> Response:
        pr = self._pull(number)
        return 200, _page([self.shapes.review(pr, r) for r in pr.get("reviews", [])], query)

    def pull_commits(self, number: str, query: dict[str, str]) -> Response:
        pr = self._pull(number)
        return 200, _page([self.shapes.commit(self.repo.commit(sha)) for sha in pr.get("commits", [])], query)

    def create_pull(self, query: dict[str, str], body: dict[str, Any], login: str) -> Response:
        """Open a pull request from a branch already pushed to the bare repository."""
        title, head, base = (str(body.get(key) or "").strip() for key in ("title", "head", "base"))
        for name, value in (("title", title), ("head", head), ("base", base)):
            if not value:
                raise _invalid("PullRequest", name, "missing_field")
        owner, _, head_ref = head.rpartition(":")
        head_sha = self.repo.branch(head_ref) if owner in ("", OWNER) else None
        if not head_sha:
            raise _invalid("PullRequest", "head")
        base_sha = self.repo.branch(base)
        if not base_sha:
            raise _invalid("PullRequest", "base")
        commits = [c.sha for c in self.repo.commits(f"{base_sha}..{head_sha}")]
        if not commits:
            raise _invalid("PullRequest", "head", "custom", f"No commits between {base} and {head_ref}")

        def add(data: dict[str, Any]) -> dict[str, Any]:
            pulls = data.setdefault("pulls", [])
            for other in pulls:
                if other.get("state") == "open" and (other["head"]["ref"], other["base"]["ref"]) == (head_ref, base):
                    raise _invalid("PullRequest", "head", "custom",
                                   f"A pull request already exists for {OWNER}:{head_ref}.")
            stamp = now_iso()
            pr = {
                "number": max((p["number"] for p in pulls), default=0) + 1,
                "title": title,
                "body": str(body.get("body") or ""),
                "user": login,
                "state": "open",
                "merged": False,
                "created_at": stamp,
                "updated_at": stamp,
                "merged_at": None,
                "closed_at": None,
                "merged_by": None,
                "head": {"ref": head_ref, "sha": head_sha},
                "base": {"ref": base, "sha": base_sha},
                "merge_commit_sha": None,
                "commits": commits,
                "reviews": [],
            }
            pulls.append(pr)
            return pr

        pr = self.meta.update(add)
        self.repo.git("update-ref", f"refs/pull/{pr['number']}/head", head_sha)
        logger.info("%s opened pull request #%s (%s → %s)", login, pr["number"], head_ref, base)
        return 201, self.shapes.pull({**pr, "mergeable": True, "mergeable_state": "clean"}, full=True)

    def create_review(self, number: str, query: dict[str, str], body: dict[str, Any], login: str) -> Response:
        """Submit a review (the twin keeps no pending reviews: `event` is required)."""
        pr = self._pull(number)
        event = str(body.get("event") or "").upper()
        if event not in REVIEW_STATES:
            raise _invalid("PullRequestReview", "event", message="event must be APPROVE, REQUEST_CHANGES or COMMENT "
                           "(the GitHub twin keeps no pending reviews)")
        text = str(body.get("body") or "")
        if event != "APPROVE" and not text:
            raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "Unprocessable Entity",
                           [f"Review body is required for {event}"])
        if event != "COMMENT":
            verb = "approve" if event == "APPROVE" else "request changes on"
            if login == pr["user"]:
                raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "Unprocessable Entity",
                               [f"Review Can not {verb} your own pull request"])
            if pr.get("state") != "open":
                raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "Unprocessable Entity",
                               [f"Review Can not {verb} a closed pull request"])
        commit_id = str(body.get("commit_id") or pr["head"]["sha"])
        if commit_id not in pr["commits"]:
            raise _invalid("PullRequestReview", "commit_id", message="commit_id is not part of the pull request")

        def add(data: dict[str, Any]) -> dict[str, Any]:
            stored = _stored(data, pr["number"])
            ids = [r["id"] for p in data.get("pulls", []) for r in p.get("reviews", [])]
            review = {"id": max(ids, default=0) + 1, "user": login, "state": REVIEW_STATES[event],
                      "submitted_at": now_iso(), "commit_id": commit_id, "body": text}
            stored.setdefault("reviews", []).append(review)
            stored["updated_at"] = review["submitted_at"]
            return review

        review = self.meta.update(add)
        logger.info("%s reviewed pull request #%s: %s", login, pr["number"], review["state"])
        return 200, self.shapes.review(pr, review)

    def merge_pull(self, number: str, query: dict[str, str], body: dict[str, Any], login: str) -> Response:
        """Merge with a real `--no-ff` merge commit on the base branch of the bare repository."""
        with self.merge_lock:
            pr = self._pull(number)
            if pr.get("state") != "open":
                raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "Pull Request is not mergeable")
            method = str(body.get("merge_method") or "merge")
            if method not in ("merge", "squash", "rebase"):
                raise _invalid("PullRequest", "merge_method")
            if method != "merge":
                raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED,
                               f"{method.capitalize()} merges are not allowed on this repository.")
            head_sha = pr["head"]["sha"]
            if body.get("sha") and body["sha"] != head_sha:
                raise ApiError(HTTPStatus.CONFLICT, "Head branch was modified. Review and try the merge again.")
            base_ref = pr["base"]["ref"]
            base_sha = self.repo.branch(base_ref)
            tree = self.repo.merge_tree(base_sha, head_sha) if base_sha else None
            if tree is None:
                raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "Pull Request is not mergeable")
            title = str(body.get("commit_title") or f"Merge pull request #{pr['number']} from {OWNER}/"
                        f"{pr['head']['ref']}")
            details = str(body["commit_message"] if "commit_message" in body else pr["title"])
            message = f"{title}\n\n{details}\n" if details else f"{title}\n"
            merge_sha = self.repo.commit_tree(tree, [base_sha, head_sha], message, self._identity(login))
            if not self.repo.move_ref(f"refs/heads/{base_ref}", merge_sha, base_sha):
                raise ApiError(HTTPStatus.CONFLICT, "Base branch was modified. Review and try the merge again.")

            def merged(data: dict[str, Any]) -> None:
                stored = _stored(data, pr["number"])
                stamp = now_iso()
                stored.update(state="closed", merged=True, merged_at=stamp, closed_at=stamp, updated_at=stamp,
                              merged_by=login, merge_commit_sha=merge_sha)
                stored["base"]["sha"] = base_sha

            self.meta.update(merged)
        logger.info("%s merged pull request #%s into %s: %s", login, pr["number"], base_ref, merge_sha)
        return 200, {"sha": merge_sha, "merged": True, "message": "Pull Request successfully merged"}

    def _identity(self, login: str) -> tuple[str, str]:
        """(name, email) of a login: the metadata's people, else GitHub's noreply address."""
        person = self.meta.data().get("people", {}).get(login) or {}
        return person.get("name") or login, person.get("email") or f"{login}@users.noreply.github.com"

    # -- checks -------------------------------------------------------------------------------
    def _check_records(self, sha: str) -> list[dict[str, Any]]:
        records = self.meta.check_runs(sha)
        for run in self.store.list_runs():
            if run["head_sha"] != sha:
                continue
            for job in run["jobs"]:
                records.append(
                    {
                        "id": job["id"],
                        "name": job["name"],
                        "status": job["status"],
                        "conclusion": job["conclusion"],
                        "started_at": job["started_at"],
                        "completed_at": job["completed_at"],
                        "html_url": f"{self.shapes.html}/actions/runs/{run['id']}/job/{job['id']}",
                    }
                )
        return records

    def check_runs(self, ref: str, query: dict[str, str]) -> Response:
        sha = self._commit_sha(ref)
        records = self._check_records(sha)
        if query.get("check_name"):
            records = [r for r in records if r["name"] == query["check_name"]]
        runs = [self.shapes.check_run(sha, r, i) for i, r in enumerate(records)]
        return 200, {"total_count": len(runs), "check_runs": runs}

    def combined_status(self, ref: str, query: dict[str, str]) -> Response:
        sha = self._commit_sha(ref)
        records = self._check_records(sha)
        conclusions = [r.get("conclusion") for r in records]
        if not records or any(r["status"] != "completed" for r in records):
            state = "pending"
        elif all(c in ("success", "skipped", "neutral") for c in conclusions):
            state = "success"
        else:
            state = "failure"
        statuses = [
            {"state": "success" if r.get("conclusion") == "success" else state, "context": r["name"],
             "description": r.get("conclusion") or r["status"], "target_url": r.get("html_url"),
             "created_at": r.get("started_at"), "updated_at": r.get("completed_at")}
            for r in records
        ]
        return 200, {"state": state, "sha": sha, "total_count": len(statuses), "statuses": statuses,
                     "repository": self.shapes.repository()}

    # -- workflow runs ------------------------------------------------------------------------
    def _head(self, sha: str) -> Any:
        try:
            return self.repo.commit(sha)
        except GitError:
            return None

    def list_runs(self, query: dict[str, str]) -> Response:
        runs = self.store.list_runs()
        for key in ("head_sha", "event"):
            if query.get(key):
                runs = [r for r in runs if r[key] == query[key]]
        if query.get("branch"):
            runs = [r for r in runs if r["head_branch"] == query["branch"]]
        if query.get("status"):
            wanted = query["status"]
            runs = [r for r in runs if wanted in (r["status"], r["conclusion"])]
        page = _page(runs, query)
        shaped = [self.shapes.run(r, self._head(r["head_sha"])) for r in page]
        return 200, {"total_count": len(runs), "workflow_runs": shaped}

    def _run(self, run_id: str) -> dict[str, Any]:
        run = self.store.get_run(int(run_id))
        if run is None:
            raise ApiError(HTTPStatus.NOT_FOUND, "Not Found")
        return run

    def get_run(self, run_id: str, query: dict[str, str]) -> Response:
        run = self._run(run_id)
        return 200, self.shapes.run(run, self._head(run["head_sha"]))

    def list_jobs(self, run_id: str, query: dict[str, str]) -> Response:
        run = self._run(run_id)
        jobs = [self.shapes.job(run, j) for j in run["jobs"]]
        return 200, {"total_count": len(jobs), "jobs": _page(jobs, query)}

    def get_job(self, job_id: str, query: dict[str, str]) -> Response:
        found = self.store.find_job(int(job_id))
        if found is None:
            raise ApiError(HTTPStatus.NOT_FOUND, "Not Found")
        return 200, self.shapes.job(*found)

    def job_logs(self, job_id: str, query: dict[str, str]) -> Response:
        found = self.store.find_job(int(job_id))
        if found is None:
            raise ApiError(HTTPStatus.NOT_FOUND, "Not Found")
        return 200, "\n".join(found[1]["log"]) + "\n"

    def run_page(self, run_id: str, query: dict[str, str]) -> Response:
        run = self._run(run_id)
        rows = []
        for job in run["jobs"]:
            rows.append(f"<h2>{html.escape(job['name'])}: {job['conclusion'] or job['status']}</h2><ol>")
            rows += [f"<li>{html.escape(s['name'])} — {s['conclusion'] or s['status']}</li>" for s in job["steps"]]
            rows.append("</ol><pre>" + html.escape("\n".join(job["log"])) + "</pre>")
        title = f"{run['name']} #{run['run_number']} ({run['head_branch']})"
        page = f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>{''.join(rows)}"
        return 200, _Html(page)

    # -- releases -----------------------------------------------------------------------------
    def list_releases(self, query: dict[str, str]) -> Response:
        return 200, _page([self.shapes.release(r) for r in self.store.list_releases()], query)

    def latest_release(self, query: dict[str, str]) -> Response:
        published = [r for r in self.store.list_releases() if not r.get("draft") and not r.get("prerelease")]
        if not published:
            raise ApiError(HTTPStatus.NOT_FOUND, "Not Found")
        return 200, self.shapes.release(published[0])

    def release_by_tag(self, tag: str, query: dict[str, str]) -> Response:
        for release in self.store.list_releases():
            if release["tag_name"] == tag:
                return 200, self.shapes.release(release)
        raise ApiError(HTTPStatus.NOT_FOUND, "Not Found")

    def create_release(self, query: dict[str, str], body: dict[str, Any]) -> Response:
        tag = str(body.get("tag_name") or "")
        if not tag:
            raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "Validation Failed",
                           [{"resource": "Release", "code": "missing_field", "field": "tag_name"}])
        if any(r["tag_name"] == tag for r in self.store.list_releases()):
            raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "Validation Failed",
                           [{"resource": "Release", "code": "already_exists", "field": "tag_name"}])
        target = str(body.get("target_commitish") or "main")
        tags = self.repo.tags()
        if tag in tags:
            target_sha = tags[tag]
        else:
            target_sha = self.repo.resolve(target) or ""
            if not target_sha:
                raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "Validation Failed",
                               [{"resource": "Release", "code": "invalid", "field": "target_commitish"}])
            self.repo.create_tag(tag, target_sha)
            self.deployer.push(f"refs/tags/{tag}", target_sha, actor="release-bot")
        release = self.store.add_release(
            {
                "tag_name": tag,
                "target_commitish": target,
                "target_sha": target_sha,
                "name": body.get("name") or tag,
                "body": body.get("body") or "",
                "draft": bool(body.get("draft", False)),
                "prerelease": bool(body.get("prerelease", False)),
                "make_latest": str(body.get("make_latest", "true")),
                "created_at": now_iso(),
                "author": "release-bot",
            }
        )
        return 201, self.shapes.release(release)


def _stored(data: dict[str, Any], number: int) -> dict[str, Any]:
    """The pull request record `number` inside metadata being updated."""
    for pr in data.get("pulls", []):
        if pr["number"] == number:
            return pr
    raise ApiError(HTTPStatus.NOT_FOUND, "Not Found")


class _Html(str):
    """A handler result served as text/html."""


def _login(authorization: str) -> str:
    """The acting user: the twin takes the token of `token <login>` / `Bearer <login>` as the login itself."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer") or not token.strip():
        raise ApiError(HTTPStatus.UNAUTHORIZED, "Requires authentication")
    return token.strip()


def _invalid(resource: str, field: str, code: str = "invalid", message: str = "") -> ApiError:
    error = {"resource": resource, "field": field, "code": code}
    if message:
        error["message"] = message
    return ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "Validation Failed", [error])


def _json_body(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"Problems parsing JSON: {error}") from error
    if not isinstance(data, dict):
        raise ApiError(HTTPStatus.BAD_REQUEST, "Problems parsing JSON: expected an object")
    return data


def _page(items: list[Any], query: dict[str, str]) -> list[Any]:
    """GitHub pagination: per_page (default 30, max 100) and page (from 1)."""
    try:
        per_page = min(max(int(query.get("per_page", 30)), 1), 100)
        page = max(int(query.get("page", 1)), 1)
    except ValueError as error:
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, f"Invalid pagination: {error}") from error
    return items[(page - 1) * per_page : page * per_page]


class Handler(BaseHTTPRequestHandler):
    """One request: decode, dispatch to the app, encode JSON with GitHub's headers."""

    app: GitHubTwin
    server_version = "GitHub.com-twin"
    protocol_version = "HTTP/1.1"

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, payload = self.app.handle(method, parts.path, query, body, self.headers.get("Authorization", ""))
        except ApiError as error:
            status = error.status
            payload = {"message": error.message, "documentation_url": "https://docs.github.com/rest",
                       "status": str(error.status)}
            if error.errors:
                payload["errors"] = error.errors
        except GitError as error:
            status, payload = 422, {"message": str(error), "documentation_url": "https://docs.github.com/rest"}
        if isinstance(payload, _Html):
            data, content_type = payload.encode(), "text/html; charset=utf-8"
        elif isinstance(payload, str):
            data, content_type = payload.encode(), "text/plain; charset=utf-8"
        else:
            data, content_type = json.dumps(payload).encode(), "application/json; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-GitHub-Api-Version", API_VERSION)
        self.send_header("X-RateLimit-Limit", "5000")
        self.send_header("X-RateLimit-Remaining", "4999")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


def make_server(app: GitHubTwin, port: int) -> ThreadingHTTPServer:
    """A threaded server on 127.0.0.1:port (0 = any free port); sets the app's base URL."""
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    app.shapes.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    return server
