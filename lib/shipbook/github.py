"""A small GitHub REST client: the few endpoints the release code reads and writes.

Why our own and not a library: the release path needs five endpoints, bounded retries and the
same code against github.com, GitHub Enterprise and the sandbox's twin (`github.api_url`).
The token is read from its reference (`github.token`, usually `{env = "GITHUB_TOKEN"}`) in the
process that uses it; it never travels as a parameter and is never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests

from shipbook import secretvalues
from shipbook.aws import MAX_ITEMS
from shipbook.config import Environment, SecretRef
from shipbook.errors import InfraError, InputError

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class GitHub:
    """GitHub REST API for one repository (`owner/name`)."""

    def __init__(self, repository: str, api_url: str = "", token: str | None = None, *,
                 session: requests.Session | None = None, timeout: float = 10.0, attempts: int = 3,
                 backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> None:
        if repository.count("/") != 1:
            raise InputError("github.repository", f"expected owner/name, got {repository!r}")
        self.repository = repository
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self.session = session or requests.Session()
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.sleep = sleep
        self.calls = 0
        self._headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                         "User-Agent": "shipbook"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self.authenticated = bool(token)

    @classmethod
    def from_env(cls, env: Environment, **kwargs: Any) -> GitHub | None:
        """The client for `env`, or None when GitHub is not configured (no repository, no token, no twin)."""
        if not env.github.repository:
            return None
        token = read_token(env)
        if not token and not env.github.api_url:
            return None
        return cls(env.github.repository, env.github.api_url, token, **kwargs)

    # ------------------------------------------------------------------ transport

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: dict[str, Any] | None = None, allow: tuple[int, ...] = ()) -> tuple[int, Any]:
        """One API call with bounded retries on 429/5xx and connection errors.

        Returns (status, JSON body). Statuses in `allow` are returned, not raised.
        """
        url = f"{self.api_url}{path}"
        last = ""
        for attempt in range(1, self.attempts + 1):
            self.calls += 1
            try:
                resp = self.session.request(method, url, params=params, json=json, headers=self._headers,
                                            timeout=self.timeout)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 400 or resp.status_code in allow:
                    return resp.status_code, _body(resp)
                last = f"HTTP {resp.status_code}: {_message(resp)}"
                limited = resp.status_code == 403 and resp.headers.get("x-ratelimit-remaining") == "0"
                if resp.status_code not in _RETRY_STATUS and not limited:
                    break
            if attempt < self.attempts:
                delay = self.backoff * 2 ** (attempt - 1)
                log.info("GitHub %s %s: %s; retry %d/%d in %.1fs", method, path, last, attempt,
                         self.attempts - 1, delay)
                self.sleep(delay)
        raise InfraError(f"GitHub API {method} {path} failed: {last}")

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)[1]

    def list_all(self, path: str, key: str = "", per_page: int = 100) -> list[dict]:
        """Every item of a paginated list (`key`: the list inside an object answer). The same limit policy as
        `shipbook.aws.collect`: more than MAX_ITEMS is an error, never a silently cut list."""
        items: list[dict] = []
        page = 1
        while True:
            data = self.get(path, per_page=per_page, page=page)
            chunk = (data.get(key) or []) if key and isinstance(data, dict) else data if isinstance(data, list) else []
            items += chunk
            if len(chunk) < per_page:
                return items
            if len(items) > MAX_ITEMS:
                raise InfraError(f"GitHub {path}: more than {MAX_ITEMS} items; narrow the query")
            page += 1

    # ------------------------------------------------------------------ endpoints

    def _repo(self) -> str:
        return f"/repos/{self.repository}"

    def workflow_runs(self, head_sha: str, event: str = "push") -> list[dict[str, Any]]:
        """Runs started for a commit by an event, newest first."""
        data = self.get(f"{self._repo()}/actions/runs", head_sha=head_sha, event=event, per_page=50)
        runs = data.get("workflow_runs", []) if isinstance(data, dict) else []
        return [r for r in runs if r.get("head_sha", head_sha) == head_sha]

    def run(self, run_id: int) -> dict[str, Any]:
        return self.get(f"{self._repo()}/actions/runs/{int(run_id)}")

    def run_jobs(self, run_id: int) -> list[dict[str, Any]]:
        data = self.get(f"{self._repo()}/actions/runs/{int(run_id)}/jobs", per_page=100)
        return data.get("jobs", []) if isinstance(data, dict) else []

    def release_by_tag(self, tag: str) -> dict[str, Any] | None:
        status, body = self.request("GET", f"{self._repo()}/releases/tags/{quote(tag, safe='')}", allow=(404,))
        return None if status == 404 else body

    def create_release(self, tag: str, name: str, body: str, prerelease: bool = False) -> dict[str, Any]:
        """Create the release for `tag`; an existing one for the same tag is returned as is (idempotent)."""
        existing = self.release_by_tag(tag)
        if existing:
            return existing
        status, created = self.request("POST", f"{self._repo()}/releases", allow=(422,), json={
            "tag_name": tag, "name": name, "body": body, "draft": False, "prerelease": prerelease})
        if status == 422:  # created concurrently, or the tag is unknown to GitHub
            existing = self.release_by_tag(tag)
            if existing:
                return existing
            raise InfraError(f"GitHub refused the release for {tag}: {created}")
        return created


def read_token(env: Environment) -> str:
    """The token's value from its reference, or '' when none is configured or it is empty."""
    ref: SecretRef | None = env.github.token
    return secretvalues.read(env, ref) if ref is not None else ""


def _body(resp: requests.Response) -> Any:
    if not resp.content:
        return {}
    try:
        return resp.json()
    except ValueError:
        return {"text": resp.text[:500]}


def _message(resp: requests.Response) -> str:
    body = _body(resp)
    if isinstance(body, dict):
        return str(body.get("message") or body.get("text") or "")[:300]
    return str(body)[:300]
