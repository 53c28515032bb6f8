"""The GitHub twin's pull request API: open, review and merge through HTTP, as a release manager does.

A twin of its own (the tests move `main`), served over real HTTP like tests/sandbox/test_github_twin.py;
the branches are pushed with git from the app's working copy to the bare origin.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from shipbook.sandbox import repo_builder
from shipbook.sandbox.github_twin.__main__ import build_app, parse_args
from shipbook.sandbox.github_twin.server import GitHubTwin, make_server

REPO = "/repos/example/demo-app"


@dataclass
class Served:
    app: GitHubTwin
    url: str
    stop: Any


def serve(state: Path) -> Served:
    args = parse_args(["--state-dir", str(state), "--aws-url", "http://127.0.0.1:9", "--step-seconds", "0"])
    app, deployer = build_app(args)
    server = make_server(app, 0)
    deployer.start()
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop() -> None:
        server.shutdown()
        deployer.stop()
        server.server_close()

    return Served(app, app.shapes.base_url, stop)


class Twin:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.bare, self.work = state / "git" / "demo-app.git", state / "work" / "demo-app"
        self.served = serve(state)

    @property
    def url(self) -> str:
        return self.served.url

    def restart(self) -> None:
        self.served.stop()
        self.served = serve(self.state)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, as_: str = "") -> requests.Response:
        headers = {"Authorization": f"token {as_}"} if as_ else {}
        return requests.request(method, self.url + REPO + path, json=body, headers=headers, timeout=10)

    def get(self, path: str) -> Any:
        response = self.call("GET", path)
        assert response.status_code == 200, response.text
        return response.json()

    def git(self, *args: str, who: str = "") -> str:
        env = None
        if who:
            name, email = repo_builder.PEOPLE[who]
            env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name,
                   "GIT_COMMITTER_EMAIL": email, "PATH": "/usr/bin:/bin", "HOME": str(self.state)}
        out = subprocess.run(["git", "-C", str(self.work), *args], capture_output=True, text=True, env=env,
                             check=False)
        assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr}"
        return out.stdout.strip()

    def origin(self, *args: str) -> str:
        return subprocess.run(["git", "--git-dir", str(self.bare), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    def branch(self, name: str, path: str, text: str, who: str = "carol", start: str = "origin/main") -> str:
        """A branch off `start` with one commit writing `path`, pushed to origin; returns its head."""
        self.git("fetch", "-q", "origin")
        self.git("checkout", "-q", "-B", name, start)
        (self.work / path).write_text(text, encoding="utf-8")
        self.git("add", "--", path)
        self.git("commit", "-q", "-m", f"docs: {name}", who=who)
        self.git("push", "-q", "-f", "origin", f"HEAD:refs/heads/{name}")
        self.git("checkout", "-q", "main")
        return self.origin("rev-parse", f"refs/heads/{name}")


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    state = tmp_path_factory.mktemp("github-pulls")
    repo_builder.build(state / "git" / "demo-app.git", state / "work" / "demo-app", "healthy")
    running = Twin(state)
    yield running
    running.served.stop()


def test_open_approve_merge_through_http(twin: Twin) -> None:
    pulls_before = [p["number"] for p in json.loads((twin.bare / "github.json").read_text())["pulls"]]
    base = twin.origin("rev-parse", "main")
    head = twin.branch("docs/streak", "README.md", "rehearsal\n")

    opened = twin.call("POST", "/pulls", {"title": "docs: a README line", "head": "docs/streak", "base": "main",
                                          "body": "One line."}, as_="carol")
    assert opened.status_code == 201, opened.text
    pr = opened.json()
    number = pr["number"]
    assert number == max(pulls_before) + 1
    assert pr["state"] == "open" and pr["user"]["login"] == "carol" and pr["merged"] is False
    assert pr["head"] == {"label": "example:docs/streak", "ref": "docs/streak", "sha": head}
    assert pr["base"]["ref"] == "main" and pr["base"]["sha"] == base and pr["commits"] == 1
    assert twin.origin("rev-parse", f"refs/pull/{number}/head") == head
    assert twin.get(f"/pulls/{number}")["mergeable"] is True
    assert [p["number"] for p in twin.get("/pulls")] == [number]  # the open ones
    assert [c["sha"] for c in twin.get(f"/pulls/{number}/commits")] == [head]

    commented = twin.call("POST", f"/pulls/{number}/reviews", {"event": "COMMENT", "body": "Reading."}, as_="alice")
    assert commented.status_code == 200 and commented.json()["state"] == "COMMENTED"
    approved = twin.call("POST", f"/pulls/{number}/reviews", {"event": "APPROVE", "body": "LGTM"}, as_="bob")
    assert approved.status_code == 200, approved.text
    review = approved.json()
    assert review["state"] == "APPROVED" and review["user"]["login"] == "bob" and review["commit_id"] == head

    merged = twin.call("PUT", f"/pulls/{number}/merge", {"merge_method": "merge"}, as_="bob")
    assert merged.status_code == 200, merged.text
    assert merged.json()["merged"] is True and merged.json()["message"] == "Pull Request successfully merged"
    merge_sha = merged.json()["sha"]

    # a real --no-ff merge commit on main in the bare repository
    assert twin.origin("rev-parse", "main") == merge_sha
    assert twin.origin("rev-list", "--parents", "-n1", merge_sha).split() == [merge_sha, base, head]
    assert twin.origin("log", "-1", "--format=%B", merge_sha).strip() == \
        f"Merge pull request #{number} from example/docs/streak\n\ndocs: a README line"
    assert twin.origin("show", f"{merge_sha}:README.md") == "rehearsal"
    commit = twin.get(f"/commits/{merge_sha}")
    assert commit["author"]["login"] == "bob" and len(commit["parents"]) == 2

    # the GET endpoints the precheck reads see it
    pull = twin.get(f"/pulls/{number}")
    assert pull["state"] == "closed" and pull["merged"] is True and pull["merged_at"]
    assert pull["merge_commit_sha"] == merge_sha and pull["merged_by"]["login"] == "bob"
    assert [(r["user"]["login"], r["state"]) for r in twin.get(f"/pulls/{number}/reviews")] == \
        [("alice", "COMMENTED"), ("bob", "APPROVED")]
    for sha in (head, merge_sha):
        assert [p["number"] for p in twin.get(f"/commits/{sha}/pulls")] == [number]
    compare = twin.get(f"/compare/{base}...main")
    assert [c["sha"] for c in compare["commits"]] == [head, merge_sha] and compare["status"] == "ahead"
    assert twin.get("/pulls") == [] and twin.get("/pulls?state=closed")[0]["number"] == number

    # the app's working copy pulls the merge like from GitHub
    twin.git("pull", "-q", "--ff-only")
    assert twin.git("rev-parse", "HEAD") == merge_sha

    # persisted in the metadata file the builder writes: a restarted twin still serves all of it
    stored = json.loads((twin.bare / "github.json").read_text())["pulls"][-1]
    assert stored["number"] == number and stored["merge_commit_sha"] == merge_sha
    twin.restart()
    assert twin.get(f"/pulls/{number}")["merge_commit_sha"] == merge_sha
    assert twin.get(f"/pulls/{number}/reviews")[-1]["state"] == "APPROVED"
    assert [p["number"] for p in twin.get(f"/commits/{merge_sha}/pulls")] == [number]
    assert twin.get("/pulls/1")["merged"] is True  # the builder's history is untouched


def test_requires_a_token(twin: Twin) -> None:
    twin.branch("docs/no-token", "docs-no-token.txt", "x\n")
    body = {"title": "t", "head": "docs/no-token", "base": "main"}
    for method, path in (("POST", "/pulls"), ("POST", "/pulls/1/reviews"), ("PUT", "/pulls/1/merge")):
        answer = twin.call(method, path, body)
        assert answer.status_code == 401 and answer.json()["message"] == "Requires authentication", (method, path)
    bearer = requests.post(twin.url + REPO + "/pulls", json={**body, "title": "bearer"}, timeout=10,
                           headers={"Authorization": "Bearer dave"})
    assert bearer.status_code == 201 and bearer.json()["user"]["login"] == "dave"


def test_open_validation(twin: Twin) -> None:
    unknown = twin.call("POST", "/pulls", {"title": "t", "head": "no/such-branch", "base": "main"}, as_="carol")
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "head"
    bad_base = twin.call("POST", "/pulls", {"title": "t", "head": "main", "base": "nope"}, as_="carol")
    assert bad_base.status_code == 422 and bad_base.json()["errors"][0]["field"] == "base"
    sha = twin.origin("rev-parse", "main")
    by_sha = twin.call("POST", "/pulls", {"title": "t", "head": sha, "base": "main"}, as_="carol")
    assert by_sha.status_code == 422  # head must be a branch
    twin.origin("branch", "docs/empty", "main")
    empty = twin.call("POST", "/pulls", {"title": "t", "head": "docs/empty", "base": "main"}, as_="carol")
    assert empty.status_code == 422 and "No commits between main and docs/empty" in empty.text
    missing = twin.call("POST", "/pulls", {"head": "docs/empty", "base": "main"}, as_="carol")
    assert missing.status_code == 422 and missing.json()["errors"][0] == \
        {"resource": "PullRequest", "field": "title", "code": "missing_field"}
    twin.branch("docs/twice", "docs-twice.txt", "x\n")
    first = twin.call("POST", "/pulls", {"title": "t", "head": "example:docs/twice", "base": "main"}, as_="carol")
    assert first.status_code == 201 and first.json()["head"]["ref"] == "docs/twice"
    again = twin.call("POST", "/pulls", {"title": "t", "head": "docs/twice", "base": "main"}, as_="carol")
    assert again.status_code == 422 and "already exists" in again.text


def test_review_rules(twin: Twin) -> None:
    twin.branch("docs/reviews", "docs-reviews.txt", "x\n")
    number = twin.call("POST", "/pulls", {"title": "t", "head": "docs/reviews", "base": "main"},
                       as_="carol").json()["number"]
    own = twin.call("POST", f"/pulls/{number}/reviews", {"event": "APPROVE"}, as_="carol")
    assert own.status_code == 422 and own.json()["errors"] == ["Review Can not approve your own pull request"]
    assert twin.call("POST", f"/pulls/{number}/reviews", {"event": "MAYBE"}, as_="bob").status_code == 422
    assert twin.call("POST", f"/pulls/{number}/reviews", {"event": "REQUEST_CHANGES"}, as_="bob").status_code == 422
    blocked = twin.call("POST", f"/pulls/{number}/reviews", {"event": "REQUEST_CHANGES", "body": "typo"}, as_="bob")
    assert blocked.status_code == 200 and blocked.json()["state"] == "CHANGES_REQUESTED"
    assert twin.call("POST", "/pulls/999/reviews", {"event": "APPROVE"}, as_="bob").status_code == 404
    assert twin.get(f"/pulls/{number}/reviews")[-1]["state"] == "CHANGES_REQUESTED"

    # a fix pushed to the branch becomes part of the open pull request
    fixed = twin.branch("docs/reviews-fix", "docs-reviews.txt", "fixed\n", start="origin/docs/reviews")
    twin.git("push", "-q", "origin", f"{fixed}:refs/heads/docs/reviews")
    assert twin.get(f"/pulls/{number}")["head"]["sha"] == fixed
    assert len(twin.get(f"/pulls/{number}/commits")) == 2
    approval = twin.call("POST", f"/pulls/{number}/reviews", {"event": "APPROVE"}, as_="bob").json()
    assert approval["commit_id"] == fixed


def test_merge_rules(twin: Twin, monkeypatch: pytest.MonkeyPatch) -> None:
    twin.branch("docs/merge-a", "docs-merge.txt", "a\n")
    twin.branch("docs/merge-b", "docs-merge.txt", "b\n")  # the same file: conflicts once a is merged
    a = twin.call("POST", "/pulls", {"title": "a", "head": "docs/merge-a", "base": "main"}, as_="carol").json()
    b = twin.call("POST", "/pulls", {"title": "b", "head": "docs/merge-b", "base": "main"}, as_="carol").json()
    stale = twin.call("PUT", f"/pulls/{a['number']}/merge", {"sha": "0" * 40}, as_="bob")
    assert stale.status_code == 409
    squash = twin.call("PUT", f"/pulls/{a['number']}/merge", {"merge_method": "squash"}, as_="bob")
    assert squash.status_code == 405
    first = twin.call("PUT", f"/pulls/{a['number']}/merge", {"merge_method": "merge", "sha": a["head"]["sha"]},
                      as_="bob")
    assert first.status_code == 200
    twice = twin.call("PUT", f"/pulls/{a['number']}/merge", {"merge_method": "merge"}, as_="bob")
    assert twice.status_code == 405 and twice.json()["message"] == "Pull Request is not mergeable"
    assert twin.origin("rev-parse", "main") == first.json()["sha"]

    assert twin.get(f"/pulls/{b['number']}")["mergeable"] is False
    conflict = twin.call("PUT", f"/pulls/{b['number']}/merge", {"merge_method": "merge"}, as_="bob")
    assert conflict.status_code == 405
    assert twin.origin("rev-parse", "main") == first.json()["sha"]  # nothing moved
    assert twin.get(f"/pulls/{b['number']}")["state"] == "open"
    late = twin.call("POST", f"/pulls/{a['number']}/reviews", {"event": "APPROVE"}, as_="alice")
    assert late.status_code == 422  # approving after the merge does not count as a review

    # base moved under a merge being made: the ref update refuses, nothing is recorded
    twin.branch("docs/merge-c", "docs-merge-c.txt", "c\n")
    c = twin.call("POST", "/pulls", {"title": "c", "head": "docs/merge-c", "base": "main"}, as_="carol").json()
    monkeypatch.setattr(twin.served.app.repo, "move_ref", lambda ref, new, old: False)
    raced = twin.call("PUT", f"/pulls/{c['number']}/merge", {}, as_="bob")
    monkeypatch.undo()
    assert raced.status_code == 409 and "Base branch was modified" in raced.text
    assert twin.get(f"/pulls/{c['number']}")["state"] == "open"
    assert twin.call("PUT", f"/pulls/{c['number']}/merge", {}, as_="bob").status_code == 200


def test_move_ref_is_compare_and_swap(twin: Twin) -> None:
    repo = twin.served.app.repo
    main = repo.branch("main")
    parent = repo.resolve("main^")
    assert repo.move_ref("refs/heads/cas-test", main, "") is True
    assert repo.move_ref("refs/heads/cas-test", parent, parent) is False  # it is at main, not at parent
    assert repo.branch("cas-test") == main

