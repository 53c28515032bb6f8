"""The GitHub twin: REST shapes over the demo repository, the push hook, workflow runs."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from shipbook.sandbox import repo_builder
from shipbook.sandbox.github_twin.__main__ import build_app, parse_args
from shipbook.sandbox.github_twin.server import GitHubTwin, make_server

REPO = "/repos/example/demo-app"


class Running:
    def __init__(self, app: GitHubTwin, url: str, bare: Path, work: Path) -> None:
        self.app, self.url, self.bare, self.work = app, url, bare, work

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(self.url + path, params=params, headers={"Authorization": "Bearer x"}, timeout=10)

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=10)


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    state = tmp_path_factory.mktemp("github")
    bare, work = state / "git" / "demo-app.git", state / "work" / "demo-app"
    repo_builder.build(bare, work, "unreviewed-commit")
    # an AWS endpoint nobody listens on: the deploy workflow fails at its first AWS call
    args = parse_args(["--state-dir", str(state), "--aws-url", "http://127.0.0.1:9", "--step-seconds", "0"])
    app, deployer = build_app(args)
    server = make_server(app, 0)
    assert app.record_history() == 1 and app.record_history() == 0
    repo_builder.set_github_url(bare, app.shapes.base_url)
    deployer.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Running(app, app.shapes.base_url, bare, work)
    server.shutdown()
    deployer.stop()
    server.server_close()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_health_and_repository(twin: Running) -> None:
    assert twin.get("/_sandbox/health").json()["repo_ready"] is True
    repo = twin.get(REPO).json()
    assert repo["full_name"] == "example/demo-app" and repo["default_branch"] == "main"
    assert twin.get("/repos/other/repo").status_code == 404


def test_compare(twin: Running) -> None:
    response = twin.get(f"{REPO}/compare/v0.9.0...main")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ahead" and body["behind_by"] == 0
    assert body["total_commits"] == len(body["commits"]) == int(git(twin.bare, "rev-list", "--count", "v0.9.0..main"))
    first = body["commits"][0]
    assert set(first) >= {"sha", "commit", "author", "committer", "parents", "html_url"}
    assert first["commit"]["author"]["date"].endswith("Z") and first["author"]["login"] == "bob"
    assert body["commits"][-1]["sha"] == git(twin.bare, "rev-parse", "main")
    files = {f["filename"]: f["status"] for f in body["files"]}
    assert files["shop/migrations/0003_category.py"] == "added"
    assert files["shop/views.py"] == "modified"
    assert twin.get(f"{REPO}/compare/v0.9.0...nope").status_code == 404


def test_commit_pulls_and_reviews(twin: Running) -> None:
    commits = twin.get(f"{REPO}/compare/v0.9.0...main").json()["commits"]
    unreviewed = []
    for commit in commits:
        pulls = twin.get(f"{REPO}/commits/{commit['sha']}/pulls").json()
        if not pulls:
            unreviewed.append(commit["commit"]["message"])
            continue
        pull = twin.get(f"{REPO}/pulls/{pulls[0]['number']}").json()
        assert pull["merged"] is True and pull["merged_at"] and pull["merge_commit_sha"]
        reviews = twin.get(f"{REPO}/pulls/{pull['number']}/reviews").json()
        assert reviews and reviews[-1]["state"] == "APPROVED"
        assert {"id", "user", "state", "submitted_at", "commit_id"} <= set(reviews[-1])
    assert unreviewed == ["fix(shop): order categories by name"]
    assert twin.get(f"{REPO}/pulls/999").status_code == 404


def test_check_runs_and_status(twin: Running) -> None:
    sha = git(twin.bare, "rev-parse", "main")
    checks = twin.get(f"{REPO}/commits/{sha}/check-runs").json()
    assert checks["total_count"] >= 1
    assert checks["check_runs"][0]["conclusion"] == "success" and checks["check_runs"][0]["head_sha"] == sha
    assert twin.get(f"{REPO}/commits/main/status").json()["state"] == "success"


def test_releases(twin: Running) -> None:
    assert twin.get(f"{REPO}/releases/tags/v0.9.0").status_code == 404
    created = twin.post(f"{REPO}/releases", {"tag_name": "v0.9.0", "name": "v0.9.0", "body": "notes"})
    assert created.status_code == 201
    body = created.json()
    assert body["tag_name"] == "v0.9.0" and body["draft"] is False and body["html_url"].endswith("/tag/v0.9.0")
    assert twin.get(f"{REPO}/releases/tags/v0.9.0").json()["id"] == body["id"]
    again = twin.post(f"{REPO}/releases", {"tag_name": "v0.9.0"})
    assert again.status_code == 422 and again.json()["errors"][0]["code"] == "already_exists"
    assert twin.get(f"{REPO}/releases/latest").json()["tag_name"] == "v0.9.0"


def test_previous_deploy_is_in_the_history(twin: Running) -> None:
    runs = twin.get(f"{REPO}/actions/runs", branch="v0.9.0").json()["workflow_runs"]
    oldest = runs[-1]
    assert oldest["conclusion"] == "success" and oldest["created_at"].startswith("2025-")
    assert oldest["head_sha"] == git(twin.bare, "rev-parse", "v0.9.0^{commit}")


def wait_run(twin: Running, branch: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = twin.get(f"{REPO}/actions/runs", branch=branch).json()["workflow_runs"]
        if runs and runs[0]["status"] == "completed":
            return runs[0]
        time.sleep(0.2)
    pytest.fail(f"no completed run for {branch}")


def test_tag_push_runs_the_workflow_through_the_hook(twin: Running) -> None:
    git(twin.work, "tag", "-a", "v1.0.0", "-m", "Release v1.0.0")
    pushed = subprocess.run(["git", "-C", str(twin.work), "push", "origin", "v1.0.0"],
                            capture_output=True, text=True, check=True)
    assert "workflow run" in pushed.stderr
    run = wait_run(twin, "v1.0.0")
    sha = git(twin.bare, "rev-parse", "v1.0.0^{commit}")
    assert run["head_sha"] == sha and run["event"] == "push" and run["name"] == "deploy"
    assert run["conclusion"] == "failure"
    assert {"id", "html_url", "created_at", "updated_at", "run_started_at", "status"} <= set(run)
    listed = twin.get(f"{REPO}/actions/runs", head_sha=sha, event="push").json()
    assert listed["total_count"] == 1 and listed["workflow_runs"][0]["id"] == run["id"]
    assert twin.get(f"{REPO}/actions/runs/{run['id']}").json()["id"] == run["id"]
    jobs = {j["name"]: j for j in twin.get(f"{REPO}/actions/runs/{run['id']}/jobs").json()["jobs"]}
    build, deploy = jobs["build"], jobs["deploy"]
    assert build["conclusion"] == "failure" and deploy["conclusion"] == "skipped"
    steps = {s["name"]: s["conclusion"] for s in build["steps"]}
    assert steps["Run tests"] == "success"
    assert steps["Configure AWS credentials"] == "failure"
    assert steps["Build and push image"] == "skipped" and steps["Complete job"] == "success"
    assert all({"name", "status", "conclusion", "number", "started_at", "completed_at"} <= set(s)
               for s in build["steps"])
    log = twin.get(f"{REPO}/actions/jobs/{build['id']}/logs").text
    assert "Ran 16 tests" in log and "##[error]" in log
    checks = twin.get(f"{REPO}/commits/{sha}/check-runs").json()["check_runs"]
    assert {"build", "deploy"} <= {c["name"] for c in checks}
    assert twin.get(f"/example/demo-app/actions/runs/{run['id']}").text.startswith("<!doctype html>")


def test_push_control_endpoint(twin: Running) -> None:
    ignored = twin.post("/_sandbox/push", {"ref": "refs/heads/main"})
    assert ignored.status_code == 200 and ignored.json()["queued"] is False
    assert twin.post("/_sandbox/push", {"ref": "refs/tags/v9.9.9"}).status_code == 422
    queued = twin.post("/_sandbox/push", {"ref": "refs/tags/v0.9.0"})
    assert queued.status_code == 201 and queued.json()["head_branch"] == "v0.9.0"
    wait_run(twin, "v0.9.0")
