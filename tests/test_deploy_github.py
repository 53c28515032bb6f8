"""The GitHub client against a tiny local HTTP server: paths, headers, bounded retries, releases."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from shipbook.config import GithubSection, SecretRef
from shipbook.errors import InfraError, InputError
from shipbook.github import GitHub
from test_deploy_support import make_env


class FakeGitHubServer:
    """Scripted answers: `script[(method, path)]` is a list of (status, body) consumed in order."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: dict[tuple[str, str], list[tuple[int, object]]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path, _, query = self.path.partition("?")
                server.requests.append({"method": self.command, "path": path, "query": query, "body": body,
                                        "auth": self.headers.get("Authorization"),
                                        "accept": self.headers.get("Accept")})
                answers = server.script.get((self.command, path)) or [(404, {"message": "Not Found"})]
                status, payload = answers.pop(0) if len(answers) > 1 else answers[0]
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeGitHubServer()
    yield s
    s.close()


def client(server, token="tok-123", **kw) -> tuple[GitHub, list[float]]:
    slept: list[float] = []
    return GitHub("example/demo-app", server.url, token, sleep=slept.append, **kw), slept


RUNS = "/repos/example/demo-app/actions/runs"


def test_runs_for_a_commit_are_asked_by_sha_and_event_with_the_token(server):
    server.script[("GET", RUNS)] = [(200, {"total_count": 2, "workflow_runs": [
        {"id": 1, "head_sha": "abc", "event": "push"}, {"id": 2, "head_sha": "other", "event": "push"}]})]
    gh, _ = client(server)
    runs = gh.workflow_runs("abc")
    assert [r["id"] for r in runs] == [1]  # the server's filter is double-checked
    req = server.requests[0]
    assert "head_sha=abc" in req["query"] and "event=push" in req["query"]
    assert req["auth"] == "Bearer tok-123" and req["accept"] == "application/vnd.github+json"
    assert gh.calls == 1


def test_server_errors_are_retried_with_backoff_then_succeed(server):
    server.script[("GET", f"{RUNS}/5/jobs")] = [(502, {}), (503, {}), (200, {"jobs": [{"id": 9}]})]
    gh, slept = client(server)
    assert gh.run_jobs(5) == [{"id": 9}]
    assert gh.calls == 3 and slept == [1.0, 2.0]


def test_retries_are_bounded_and_the_error_names_the_call(server):
    server.script[("GET", f"{RUNS}/5")] = [(500, {"message": "boom"})]
    gh, slept = client(server, attempts=3)
    with pytest.raises(InfraError, match=r"GET /repos/example/demo-app/actions/runs/5 failed: HTTP 500: boom"):
        gh.run(5)
    assert gh.calls == 3 and len(slept) == 2


def test_client_errors_are_not_retried(server):
    server.script[("GET", f"{RUNS}/5")] = [(401, {"message": "Bad credentials"})]
    gh, slept = client(server)
    with pytest.raises(InfraError, match="Bad credentials"):
        gh.run(5)
    assert gh.calls == 1 and slept == []


def test_rate_limited_429_is_retried(server):
    gh, slept = client(server, attempts=2)
    server.script[("GET", f"{RUNS}/5")] = [(429, {"message": "slow down"}), (200, {"id": 5})]
    assert gh.run(5) == {"id": 5} and slept == [1.0]


def test_an_unreachable_api_is_an_infra_error_after_the_attempts():
    slept: list[float] = []
    gh = GitHub("example/demo-app", "http://127.0.0.1:9", None, sleep=slept.append, attempts=2, timeout=1)
    with pytest.raises(InfraError, match="ConnectionError"):
        gh.run(1)
    assert len(slept) == 1


def test_create_release_is_idempotent(server):
    tag_path = "/repos/example/demo-app/releases/tags/v1.0.0"
    server.script[("GET", tag_path)] = [(404, {"message": "Not Found"}), (200, {"id": 7, "html_url": "u7"})]
    server.script[("POST", "/repos/example/demo-app/releases")] = [(201, {"id": 7, "html_url": "u7"})]
    gh, _ = client(server)
    assert gh.create_release("v1.0.0", "v1.0.0", "notes", prerelease=False)["html_url"] == "u7"
    post = next(r for r in server.requests if r["method"] == "POST")
    assert post["body"] == {"tag_name": "v1.0.0", "name": "v1.0.0", "body": "notes", "draft": False,
                            "prerelease": False}
    assert gh.create_release("v1.0.0", "v1.0.0", "notes")["id"] == 7  # exists now: no second POST
    assert sum(r["method"] == "POST" for r in server.requests) == 1


def test_from_env_needs_a_repository_and_a_token_or_an_api_url(monkeypatch):
    monkeypatch.setenv("MY_GH_TOKEN", "s3cret")
    assert GitHub.from_env(make_env(github=GithubSection(repository=""))) is None
    assert GitHub.from_env(make_env(github=GithubSection(repository="a/b"))) is None
    twin = GitHub.from_env(make_env(github=GithubSection(repository="a/b", api_url="http://127.0.0.1:1")))
    assert twin is not None and not twin.authenticated and twin.api_url == "http://127.0.0.1:1"
    real = GitHub.from_env(make_env(github=GithubSection(repository="a/b", token=SecretRef(env="MY_GH_TOKEN"))))
    assert real is not None and real.authenticated and real.api_url == "https://api.github.com"
    assert "s3cret" not in repr(vars(real).get("repository"))
    with pytest.raises(InputError):
        GitHub("not-a-repo")
