"""Each pre-release sandbox scenario is caught by the check it names; the healthy build passes the same checks.

The scenarios are built the way the sandbox builds them: app-side faults through `repo_builder.build`
(the demo history with the scenario's change before the release commit, served by an in-process GitHub
twin), twin-side faults through `scenarios.apply_twin` against a seeded AWS twin of this module's own
(undone after each use, so the order of the tests does not matter). The checks are the release code's,
called as the notebooks call them, with the sandbox's own environment file pointed at these twins.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from shipbook import aws, backup, checks, config
from shipbook.checks import code, db, network
from shipbook.checks import env as env_checks
from shipbook.sandbox import repo_builder, scenarios
from support import aws_client, free_port

ROOT = Path(__file__).resolve().parents[1]
VERSION, PREVIOUS = repo_builder.RELEASE_VERSION, repo_builder.PREVIOUS_TAG
PRE_RELEASE = [s for s in scenarios.SCENARIOS.values() if s.phase in ("precheck", "backup")]
CHECKS = sorted({str(s.check) for s in PRE_RELEASE})
# what each catch must say, besides failing (the scenario's fault, named)
SAYS = {
    "missing-variable": "ALLOWED_HOSTS: missing",
    "plaintext-secret": "SECRET_KEY: plaintext secret",
    "open-port": "tcp/22 from world (0.0.0.0/0) on app",
    "snapshot-failure": "ended failed",
    "unreviewed-commit": "fix(shop): order categories by name",
    "irreversible-migration": "shop.0005_normalise_skus (RunPython without reverse_code",
}
PLAINTEXT_VALUE = "django-insecure-7f3a9c1e5b2d48a6b0c4e8f1d2a3b4c5e6f708192a3b4c5d"


def test_the_catalogue_is_what_this_module_covers():
    """A new pre-release scenario must get a catch here (and a line in SAYS)."""
    assert {s.name: (s.phase, s.check) for s in PRE_RELEASE} == {
        "missing-variable": ("precheck", "env.variables"), "plaintext-secret": ("precheck", "env.variables"),
        "open-port": ("precheck", "network.security_groups"), "snapshot-failure": ("backup", "db.backup"),
        "unreviewed-commit": ("precheck", "code.review"), "irreversible-migration": ("precheck", "db.rollback_plan")}
    assert set(SAYS) == {s.name for s in PRE_RELEASE}


# --------------------------------------------------------------------------- the twins


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def aws_twin_url(tmp_path_factory) -> Iterator[str]:
    """A seeded AWS twin process of this module's own (its scenarios must not reach the session's twin)."""
    from shipbook.sandbox.aws_twin import seed

    state = tmp_path_factory.mktemp("aws-twin")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (state / "aws-twin.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "shipbook.sandbox.aws_twin", "--port", str(port),
                                    "--state-dir", str(state)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"the AWS twin exited with {process.returncode}: "
                            f"{(state / 'aws-twin.log').read_text(errors='replace')[-2000:]}")
            try:
                if requests.get(f"{url}/_sandbox/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the AWS twin did not become healthy within 60 s")
            time.sleep(0.1)
        seed.seed(url)
        yield url
    finally:
        _stop(process)


@contextlib.contextmanager
def applied(name: str, url: str) -> Iterator[list[str]]:
    """The scenario's twin-side change, as the sandbox applies it, undone afterwards."""
    scenario = scenarios.get(name)
    done = scenarios.apply_twin(name, url)
    try:
        yield done
    finally:
        twin = scenario.twin
        if twin is not None and twin.open_port is not None:
            group = scenarios.service_security_group(aws_client(url, "ecs"))
            aws_client(url, "ec2").revoke_security_group_ingress(GroupId=group, IpPermissions=[{
                "IpProtocol": "tcp", "FromPort": twin.open_port, "ToPort": twin.open_port,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        if twin is not None and twin.faults:
            requests.post(f"{url}/_sandbox/faults", json=dict.fromkeys(twin.faults, False),
                          timeout=10).raise_for_status()


class Lab:
    """Builds what a scenario needs on first use and runs a check against it; each result computed once."""

    def __init__(self, base: Path, aws_url: str) -> None:
        self.base = base
        self.aws_url = aws_url
        self.sandbox = config.load("sandbox", resolve=False)  # the sandbox's own names, thresholds, allowed list
        self.repos: dict[str, Path] = {}
        self.github: dict[str, str] = {}
        self.servers: list = []
        self.results: dict[tuple[str, str], checks.CheckResult] = {}
        self.lock = threading.Lock()

    def repo(self, name: str) -> Path:
        """The demo history with the scenario's change, laid out as the sandbox lays it out."""
        if name not in self.repos:
            state = self.base / name
            info = repo_builder.build(state / "git" / "demo-app.git", state / "work" / "demo-app", name)
            self.repos[name] = Path(str(info["work"]))
        return self.repos[name]

    def github_url(self, name: str) -> str:
        """An in-process GitHub twin serving the scenario's history (pull requests, reviews, check runs)."""
        if name not in self.github:
            from shipbook.sandbox.github_twin.__main__ import build_app, parse_args
            from shipbook.sandbox.github_twin.server import make_server

            self.repo(name)
            app, _deployer = build_app(parse_args(["--state-dir", str(self.base / name),
                                                   "--aws-url", "http://127.0.0.1:9"]))
            server = make_server(app, 0)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
            self.github[name] = app.shapes.base_url
        return self.github[name]

    def env(self, name: str, *, repo: bool = True, github: bool = False) -> config.Environment:
        """sandbox.toml with its `{sandbox.*}` endpoints replaced by this module's twins."""
        sb = self.sandbox
        return dataclasses.replace(
            sb, name="scenarios",
            aws=dataclasses.replace(sb.aws, endpoint_url=self.aws_url),
            app=dataclasses.replace(sb.app, repo=str(self.repo(name)) if repo else "",
                                    public_url="http://127.0.0.1:8000"),  # a host the demo's ALLOWED_HOSTS covers
            github=dataclasses.replace(sb.github, api_url=self.github_url(name) if github else ""))

    def run(self, name: str, check_id: str) -> checks.CheckResult:
        with self.lock:
            if (name, check_id) not in self.results:
                self.results[name, check_id] = getattr(self, "_" + check_id.replace(".", "_"))(name)
            return self.results[name, check_id]

    def _code_review(self, name: str) -> checks.CheckResult:
        env = self.env(name, github=True)
        return code.review(env, checks.release(env, VERSION), PREVIOUS)

    def _db_rollback_plan(self, name: str) -> checks.CheckResult:
        env = self.env(name)
        env = dataclasses.replace(env, precheck=dataclasses.replace(env.precheck, migration_sample_rows=100))
        report = db.analyse(env, checks.release(env, VERSION), PREVIOUS)
        return db.rollback_plan(report)

    def _env_variables(self, name: str) -> checks.CheckResult:
        env = self.env(name)
        return env_checks.variables(env, checks.release(env, VERSION))

    def _network_security_groups(self, name: str) -> checks.CheckResult:
        with applied(name, self.aws_url):
            return network.security_groups(self.env(name, repo=False))

    def _db_backup(self, name: str) -> checks.CheckResult:
        """As 02_backup does: plan, take (waiting), verify and tag; a snapshot id of the scenario's own."""
        env = self.env(name, repo=False)
        rds = aws.client(env, "rds")
        with applied(name, self.aws_url):
            plan = backup.plan(rds, env.stack.db_instance, VERSION, run_id=f"caught-{name}",
                               snapshot_id=f"pre-deploy-v1-0-0-{name}", pattern=env.backup.pattern,
                               keep=env.backup.keep, env_name=env.name)
            outcome = backup.take(rds, plan, dry_run=False, timeout=60, progress=lambda line: None)
            return backup.verify_and_tag(rds, plan, outcome, version=VERSION, run_id=f"caught-{name}")

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, aws_twin_url) -> Iterator[Lab]:
    built = Lab(tmp_path_factory.mktemp("scenarios"), aws_twin_url)
    yield built
    built.close()


# --------------------------------------------------------------------------- caught, and healthy passes


@pytest.mark.slow
@pytest.mark.parametrize("name", [s.name for s in PRE_RELEASE])
def test_the_scenario_is_caught_by_its_check(lab, name):
    scenario = scenarios.get(name)
    res = lab.run(name, str(scenario.check))
    assert (res.id, res.verdict) == (scenario.check, "fail"), res.summary
    assert SAYS[name] in res.summary, res.summary
    if name == "plaintext-secret":  # caught without ever showing the value
        assert PLAINTEXT_VALUE not in repr(res)


@pytest.mark.slow
@pytest.mark.parametrize("check_id", CHECKS)
def test_the_healthy_build_passes_the_same_check(lab, check_id):
    res = lab.run("healthy", check_id)
    assert (res.id, res.verdict) == (check_id, "pass"), res.summary
