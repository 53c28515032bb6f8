"""`verify.reachable` and `verify.smoke`: the public URL answers, serves the version, and the main features work.

Why through the public URL and not the targets: users reach the app through the load balancer,
its listener and DNS; a healthy task behind a broken listener is an outage. Requests go out
one at a time with a timeout and never follow redirects (a redirect to a login page is not
"the product list works"). The HTTP call and the TLS probe are parameters, so the checks run
in tests without a network.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlparse

import requests

from shipbook.checks import CheckResult, check
from shipbook.config import Environment, SmokeTestSection, VerifySection
from shipbook.deploy.health import join, same_version, served_version
from shipbook.verify import settings as settings_mod

log = logging.getLogger(__name__)

REACHABLE = "verify.reachable"
SMOKE = "verify.smoke"
VERSION_SAMPLES = 3


@dataclass
class Response:
    """One HTTP exchange: status (None when it failed), seconds, body excerpt, error."""

    url: str
    status: int | None
    seconds: float
    body: str = ""
    error: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.status} in {self.seconds * 1000:.0f} ms" if self.status is not None else \
            f"unreachable ({self.error})"


Http = Callable[[str, str, float], Response]
TlsProbe = Callable[[str, int, float], datetime]


def http(method: str, url: str, timeout: float) -> Response:
    """One request, no redirects followed, never raising."""
    start = time.monotonic()
    try:
        resp = requests.request(method, url, timeout=timeout, allow_redirects=False,
                                headers={"User-Agent": "shipbook-verify/1.0"})
    except requests.RequestException as exc:
        return Response(url, None, time.monotonic() - start, error=f"{type(exc).__name__}: {exc}"[:300])
    return Response(url, resp.status_code, time.monotonic() - start, resp.text[:4000],
                    headers={k.lower(): v for k, v in resp.headers.items()})


def tls_not_after(host: str, port: int, timeout: float) -> datetime:
    """When the certificate `host` presents expires (the handshake verifies it like a browser)."""
    ctx = ssl.create_default_context()
    with socket.create_connection((host, port), timeout=timeout) as sock, \
            ctx.wrap_socket(sock, server_hostname=host) as tls:
        cert = tls.getpeercert() or {}
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(str(cert["notAfter"])), tz=UTC)


def served_commit(body: str) -> str:
    """The commit a JSON version endpoint reports (`{"commit": ...}`), '' when it does not."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    return str(data.get("commit", ""))[:64] if isinstance(data, dict) else ""


def _fill(text: str, env: Environment, version: str) -> str:
    return text.replace("{version}", version).replace("{health_path}", env.app.health_path) \
        .replace("{version_path}", env.app.version_path)


@check(REACHABLE)
def reachable(env: Environment, version: str, settings: VerifySection, *, expect_commit: str = "",
              http_get: Http = http, tls: TlsProbe = tls_not_after, now: Callable[[], datetime] | None = None
              ) -> CheckResult:
    """The public URL answers (not 5xx), the version endpoint serves `version` (and `expect_commit`), TLS is valid."""
    base = env.app.public_url
    if not base:
        return CheckResult(REACHABLE, "skip", "no app.public_url in the environment file: nothing to reach")
    rows: list[dict] = []
    problems: list[str] = []
    warnings: list[str] = []
    root = http_get("GET", join(base, "/"), settings.http_timeout)
    ok_root = root.status is not None and root.status < 500
    rows.append({"request": "GET /", "result": root.describe(), "ok": ok_root})
    if not ok_root:
        problems.append(f"{base} answers {root.describe()}")
    served, commit, times, last = "", "", [], ""
    if env.app.version_path:
        for _ in range(VERSION_SAMPLES):
            answer = http_get("GET", join(base, env.app.version_path), settings.http_timeout)
            times.append(answer.seconds)
            last = answer.describe()
            if answer.status == 200:
                served, commit = served_version(answer.body), served_commit(answer.body)
        good = same_version(served, version) and (not expect_commit or commit.startswith(expect_commit[:12]))
        what = f"{served or f'nothing ({last})'}" + (f" (commit {commit[:12]})" if commit else "")
        rows.append({"request": f"GET {env.app.version_path} ×{VERSION_SAMPLES}",
                     "result": f"serves {what}; median {statistics.median(times) * 1000:.0f} ms", "ok": good})
        if not good:
            want = version + (f" at commit {expect_commit[:12]}" if expect_commit else "")
            problems.append(f"{env.app.version_path} serves {what}, expected {want}")
    parsed = urlparse(base)
    if parsed.scheme == "https":
        try:
            not_after = tls(parsed.hostname or "", parsed.port or 443, settings.http_timeout)
            days = (not_after - (now() if now else datetime.now(UTC))).total_seconds() / 86400
            ok = days > settings.tls_warn_days
            rows.append({"request": "TLS certificate", "result": f"valid until {not_after:%Y-%m-%d} ({days:.0f} days)",
                         "ok": ok})
            if days <= 0:
                problems.append(f"the TLS certificate expired on {not_after:%Y-%m-%d}")
            elif not ok:
                warnings.append(f"the TLS certificate expires in {days:.0f} days")
        except (OSError, ssl.SSLError, KeyError, ValueError) as exc:
            rows.append({"request": "TLS certificate", "result": f"handshake failed: {exc}", "ok": False})
            problems.append(f"TLS handshake with {parsed.hostname} failed: {exc}")
    else:
        rows.append({"request": "TLS certificate", "result": f"not checked: {parsed.scheme}:// URL", "ok": True})
    latency = f"; / in {root.seconds * 1000:.0f} ms" if root.status is not None else ""
    if problems:
        return CheckResult(REACHABLE, "fail", "; ".join(problems), rows, f"GET {base}")
    verdict = "warn" if warnings else "pass"
    summary = f"{base} answers {root.status}{latency}; serves {served or version}" + \
        (f" (commit {commit[:12]})" if commit else "") + (f"; {'; '.join(warnings)}" if warnings else "")
    return CheckResult(REACHABLE, verdict, summary, rows, f"GET {base}")


@check(SMOKE)
def smoke(env: Environment, version: str, settings: VerifySection, *, http_get: Http = http) -> CheckResult:
    """Each configured smoke test: method, path, expected status and text, with its timing."""
    base = env.app.public_url
    if not base:
        return CheckResult(SMOKE, "skip", "no app.public_url in the environment file: nothing to test")
    tests: tuple[SmokeTestSection, ...] = settings_mod.smoke_tests(settings)
    if not tests:
        return CheckResult(SMOKE, "skip", "no smoke tests configured ([verify] smoke in the environment file)")
    rows: list[dict] = []
    failed: list[str] = []
    for t in tests:
        path = _fill(t.path, env, version)
        want_text = _fill(t.text, env, version)
        resp = http_get(t.method, join(base, path), settings.http_timeout)
        problems = []
        if resp.status != t.status:
            problems.append(f"status {resp.describe()}, expected {t.status}")
        if want_text and want_text not in resp.body:
            problems.append(f"body lacks {want_text!r}")
        ok = not problems
        rows.append({"test": t.name or f"{t.method} {path}", "request": f"{t.method} {path}",
                     "expected": f"{t.status}" + (f" with {want_text!r}" if want_text else ""),
                     "got": resp.describe(), "ms": round(resp.seconds * 1000), "ok": ok,
                     "problem": "; ".join(problems)})
        if not ok:
            failed.append(f"{t.method} {path}: {'; '.join(problems)}")
    if failed:
        return CheckResult(SMOKE, "fail", f"{len(failed)} of {len(tests)} smoke tests failed: " + " | ".join(failed),
                           rows, f"{len(tests)} requests to {base}")
    slowest = max(rows, key=lambda r: r["ms"])
    return CheckResult(SMOKE, "pass", f"all {len(tests)} smoke tests passed (slowest {slowest['request']} "
                       f"{slowest['ms']} ms)", rows, f"{len(tests)} requests to {base}")
