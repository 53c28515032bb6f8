"""code.* pre-checks: tests, review, bandit, ruff, release notes and the shared summary; the worktree helpers.

The review and CI parts run against the GitHub twin in-process, over the demo app's real history
(healthy and unreviewed-commit); the shared summary against the session's moto server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from shipbook import checks
from shipbook.checks import code, worktree
from shipbook.config import (
    AppSection,
    AwsSection,
    Environment,
    GithubSection,
    PrecheckSection,
    RunnerSection,
    StackSection,
)
from shipbook.errors import InfraError
from shipbook.github import GitHub
from shipbook.sandbox import repo_builder
from support import aws_client


def _git(repo: Path, *args: str) -> str:
    args = ("-c", "user.email=t@example.invalid", "-c", "user.name=t", "-c", "commit.gpgsign=false", *args)
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def make_repo(tmp_path: Path, files: dict[str, str], tag: str = "") -> Path:
    repo = tmp_path / "app"
    repo.mkdir(exist_ok=True)
    if not (repo / ".git").exists():
        _git(repo, "init", "-q", "-b", "main")
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "feat: change")
    if tag:
        _git(repo, "tag", tag)
    return repo


def env_for(repo: Path, **app: str) -> Environment:
    return Environment(name="t", app=AppSection(repo=str(repo), **app))


# --------------------------------------------------------------------------- worktree


def test_checkout_has_the_commit_not_the_working_copy_and_disappears(tmp_path):
    repo = make_repo(tmp_path, {"a.txt": "committed\n"})
    (repo / "a.txt").write_text("edited, not committed\n")
    (repo / "junk.txt").write_text("untracked\n")
    with worktree.checkout(repo, _git(repo, "rev-parse", "HEAD")) as tree:
        assert (tree / "a.txt").read_text() == "committed\n" and not (tree / "junk.txt").exists()
        assert len(_git(repo, "worktree", "list").splitlines()) == 2
    assert not tree.exists()
    assert len(_git(repo, "worktree", "list").splitlines()) == 1


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_run_kills_the_process_group_at_the_deadline(tmp_path):
    marker, pid_file = tmp_path / "child-alive", tmp_path / "child.pid"
    (tmp_path / "child.py").write_text(f"import time\ntime.sleep(3)\nopen({str(marker)!r}, 'w').close()\n")
    (tmp_path / "parent.py").write_text("import pathlib, subprocess, sys, time\n"
                                        "child = subprocess.Popen([sys.executable, 'child.py'])\n"
                                        f"pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))\n"
                                        "time.sleep(30)\n")
    t0 = time.monotonic()
    with pytest.raises(InfraError, match="did not finish within 2s"):
        worktree.run([sys.executable, "parent.py"], cwd=tmp_path, timeout=2)
    assert time.monotonic() - t0 < 10
    assert pid_file.exists(), "the parent did not start its child before the deadline"
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 2  # killed, it is gone at once; a survivor would write its marker at ~3 s
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(grandchild), "the grandchild outlived the group kill"
    assert not marker.exists()  # the grandchild died with the group, before its own end


def test_run_reports_progress_while_it_waits_and_keeps_all_output(tmp_path):
    script = "import sys, time\nfor i in range(4):\n    print('line', i, flush=True)\n    time.sleep(0.4)\n" \
             "print('x' * 200000)\nsys.stderr.write('done\\n')\n"
    (tmp_path / "slow.py").write_text(script)
    seen: list[float] = []
    ran = worktree.run([sys.executable, "slow.py"], cwd=tmp_path, timeout=30, still_running=seen.append, every=0.3)
    assert ran.returncode == 0 and ran.stderr == "done\n"
    assert ran.stdout.splitlines()[:4] == ["line 0", "line 1", "line 2", "line 3"]
    assert len(ran.stdout.splitlines()[4]) == 200000  # nothing lost across the timeouts
    assert len(seen) >= 3 and seen == sorted(seen) and all(0 < s < ran.seconds for s in seen)
    with pytest.raises(InfraError, match="did not finish within 1s"):  # the deadline still holds
        worktree.run([sys.executable, "-c", "import time; time.sleep(30)"], cwd=tmp_path, timeout=1,
                     still_running=seen.append, every=0.3)


def test_child_env_carries_no_credentials(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    monkeypatch.setenv("GITHUB_TOKEN", "nope")
    monkeypatch.setenv("DATABASE_URL", "postgres://x")
    env = worktree.child_env({"X": "1"})
    assert "AWS_SECRET_ACCESS_KEY" not in env and "GITHUB_TOKEN" not in env and "DATABASE_URL" not in env
    assert env["X"] == "1" and env["PYTHONDONTWRITEBYTECODE"] == "1" and "PATH" in env


def test_command_runs_python_as_the_apps_interpreter():
    assert worktree.command("python manage.py test --parallel 2", "/x/py") == ["/x/py", "manage.py", "test",
                                                                              "--parallel", "2"]
    assert worktree.command("python3.12 -m pytest", "/x/py")[0] == "/x/py"
    assert worktree.command("make test", "/x/py") == ["make", "test"]


# --------------------------------------------------------------------------- code.tests: parsing

DJANGO_OK = """Found 15 test(s).
Creating test database for alias 'default'...
System check identified no issues (0 silenced).
...............
----------------------------------------------------------------------
Ran 15 tests in 0.037s

OK (skipped=2)
Destroying test database for alias 'default'...
"""
DJANGO_FAILED = """======================================================================
ERROR: test_detail (shop.tests.ProductApiTests.test_detail)
----------------------------------------------------------------------
Traceback (most recent call last):
======================================================================
FAIL: test_index (shop.tests.ProductApiTests)
----------------------------------------------------------------------
Ran 12 tests in 0.100s

FAILED (failures=1, errors=1, skipped=1, expected failures=1)
"""
PYTEST = ("FAILED tests/test_a.py::test_x - assert 1 == 2\n"
          "==== 1 failed, 10 passed, 2 skipped, 1 xfailed in 1.23s ====\n")


def test_parse_django_output():
    ok = code.parse_test_output(DJANGO_OK)
    assert (ok.ran, ok.skipped, ok.passed, ok.ok, ok.seconds, ok.runner) == (15, 2, 13, True, 0.037, "unittest")
    bad = code.parse_test_output(DJANGO_FAILED)
    assert (bad.ran, bad.failures, bad.errors, bad.skipped, bad.expected_failures, bad.passed, bad.ok) == \
        (12, 1, 1, 1, 1, 8, False)
    assert bad.failed == ["ERROR: shop.tests.ProductApiTests.test_detail",
                          "FAIL: shop.tests.ProductApiTests.test_index"]


def test_parse_pytest_output_and_nothing():
    p = code.parse_test_output(PYTEST)
    assert (p.ran, p.failures, p.passed, p.skipped, p.expected_failures, p.ok) == (14, 1, 10, 2, 1, False)
    assert p.failed == ["tests/test_a.py::test_x"]
    assert code.parse_test_output("Traceback: ImportError").ran is None


# --------------------------------------------------------------------------- code.tests: running

UNIT = """import unittest


class T(unittest.TestCase):
    def test_ok(self):
        self.assertTrue(True)

    def test_value(self):
        self.assertEqual(VALUE, 2)


VALUE = {value}
"""


def test_tests_run_at_the_release_commit_in_a_clean_worktree(tmp_path):
    repo = make_repo(tmp_path, {"tests/__init__.py": "", "tests/test_t.py": UNIT.format(value=3)})
    (repo / "tests/test_t.py").write_text(UNIT.format(value=2))  # fixed in the working copy only
    env = env_for(repo, test_command="python -m unittest discover -s tests -t .")
    res = code.tests(env, checks.release(env, ""), github=None)
    assert res.verdict == "fail", res.summary
    assert res.summary.startswith("1 failed, 0 errors of 2 tests") and "CI: GitHub not configured" in res.summary
    row = res.details[0]
    assert (row["ran"], row["passed"], row["failed"]) == (2, 1, 1)
    assert res.details[1]["source"].strip() == "FAIL: tests.test_t.T.test_value"
    make_repo(tmp_path, {"tests/test_t.py": UNIT.format(value=2)})
    ok = code.tests(env, checks.release(env, ""), github=None)
    assert ok.verdict == "pass" and ok.summary.startswith("2 tests at ")


def test_a_long_test_command_shows_progress(tmp_path):
    slow = "import time\nimport unittest\n\n\nclass T(unittest.TestCase):\n    def test_slow(self):\n" \
           "        time.sleep(1.0)\n"
    repo = make_repo(tmp_path, {"tests/__init__.py": "", "tests/test_slow.py": slow})
    env = env_for(repo, test_command="python -m unittest discover -s tests -t .")
    lines: list[str] = []
    res = code.tests(env, checks.release(env, ""), github=None, report=lines.append, every=0.3)
    assert res.verdict == "pass", res.summary
    assert lines and all(" -m unittest discover -s tests -t . still running at " in line for line in lines)
    assert "gives up at" in lines[0]


def test_a_test_command_without_a_summary_fails_with_its_output(tmp_path):
    repo = make_repo(tmp_path, {"boom.py": "raise SystemExit('cannot import settings')\n"})
    env = env_for(repo, test_command="python boom.py")
    res = code.tests(env, checks.release(env, ""), github=None)
    assert res.verdict == "fail" and "no test summary" in res.summary and "cannot import settings" in res.summary


# --------------------------------------------------------------------------- the GitHub twin over the demo history


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """GitHub twins (in-process) over the demo history: healthy and unreviewed-commit."""
    from shipbook.sandbox.github_twin.__main__ import build_app, parse_args
    from shipbook.sandbox.github_twin.server import make_server

    running = {}
    for scenario in ("healthy", "unreviewed-commit"):
        state = tmp_path_factory.mktemp(scenario)
        bare, work = state / "git" / "demo-app.git", state / "work" / "demo-app"
        repo_builder.build(bare, work, scenario)
        app, _deployer = build_app(parse_args(["--state-dir", str(state), "--aws-url", "http://127.0.0.1:9"]))
        server = make_server(app, 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        env = Environment(name="t", kind="sandbox", app=AppSection(repo=str(work)),
                          github=GithubSection(repository="example/demo-app", api_url=app.shapes.base_url))
        running[scenario] = (env, server)
    yield {k: v[0] for k, v in running.items()}
    for _env, server in running.values():
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_review_of_the_healthy_history_passes(twins):
    env = twins["healthy"]
    res = code.review(env, checks.release(env, "v1.0.0"), "v0.9.0")
    assert res.verdict == "pass", res.summary
    assert res.summary == ("4 pull request(s) since v0.9.0, each approved (≥1); all 9 commit(s) came through them")
    assert [r["change"] for r in res.details] == ["PR #6", "PR #7", "PR #8", "PR #9"]
    assert res.details[0]["review"] == "carol approved"  # her earlier CHANGES_REQUESTED was superseded


@pytest.mark.slow
def test_review_lists_the_commit_pushed_without_a_pull_request(twins):
    env = twins["unreviewed-commit"]
    res = code.review(env, checks.release(env, "v1.0.0"))  # previous release found from the tags
    assert res.verdict == "fail"
    assert "1 commit(s) reached the branch without a reviewed pull request" in res.summary
    assert "fix(shop): order categories by name" in res.summary
    [orphan] = [r for r in res.details if r["change"].startswith("commit ")]
    assert orphan["author"] == "mallory" and orphan["verdict"] == "fail"


@pytest.mark.slow
def test_tests_of_the_demo_app_and_its_ci_check_runs(twins):
    env = twins["healthy"]
    res = code.tests(env, checks.release(env, "v1.0.0"))
    assert res.verdict == "pass", res.summary
    assert res.details[0]["ran"] >= 15 and res.details[0]["failed"] == 0
    ci = res.details[1]
    assert ci["source"] == "CI check run: test (github-actions)" and ci["result"] == "completed/success"
    assert "CI: 1 check run(s), all successful" in res.summary


@pytest.mark.slow
def test_release_notes_of_the_demo_are_final_and_cover_the_changes(twins):
    env = twins["unreviewed-commit"]
    res = code.release_notes(env, checks.release(env, "v1.0.0"))
    assert res.verdict == "pass", res.summary
    assert "section '## v1.0.0' with 6 item(s), final" in res.summary


# --------------------------------------------------------------------------- code.review: decisions


class FakeGitHub:
    repository = "o/r"
    api_url = "http://fake"

    def __init__(self, routes: dict[str, object]) -> None:
        self.routes = routes

    def get(self, path: str, **params: object) -> object:
        return self.routes[path]

    list_all = GitHub.list_all  # the real paging over the canned answers


def _pr(number: int, author: str = "bob") -> dict:
    return {"number": number, "title": f"feat: {number}", "user": {"login": author},
            "merged_at": "2025-01-01T00:00:00Z"}


def test_decide_takes_each_reviewers_latest_decision_and_ignores_self_approval():
    reviews = [{"user": {"login": "carol"}, "state": "APPROVED", "submitted_at": "1"},
               {"user": {"login": "carol"}, "state": "CHANGES_REQUESTED", "submitted_at": "2"},
               {"user": {"login": "dave"}, "state": "APPROVED", "submitted_at": "1"},
               {"user": {"login": "dave"}, "state": "COMMENTED", "submitted_at": "3"},
               {"user": {"login": "bob"}, "state": "APPROVED", "submitted_at": "4"}]
    assert code.decide(reviews, author="bob") == (["dave"], ["carol"])


def test_review_fails_a_pull_request_with_changes_requested(tmp_path):
    repo = make_repo(tmp_path, {"a": "1"}, tag="v1.0.0")
    make_repo(tmp_path, {"a": "2"})
    head = _git(repo, "rev-parse", "HEAD")
    gh = FakeGitHub({
        f"/repos/o/r/compare/v1.0.0...{head}": {"total_commits": 1, "commits": [{"sha": head, "commit": {}}]},
        f"/repos/o/r/commits/{head}/pulls": [_pr(3), {**_pr(4), "merged_at": None}],
        "/repos/o/r/pulls/3/reviews": [{"user": {"login": "carol"}, "state": "CHANGES_REQUESTED",
                                        "submitted_at": "1"}],
    })
    env = env_for(repo)
    res = code.review(env, checks.release(env, "v1.1.0"), github=gh)
    assert res.verdict == "fail" and res.summary == "PR #3 not approved (no approval; changes requested by carol)"
    two = code.review(Environment(name="t", app=env.app, precheck=PrecheckSection(required_approvals=2)),
                      checks.release(env, "v1.1.0"), github=gh)
    assert two.verdict == "fail"


def test_review_without_github_needs_a_sign_off(tmp_path):
    repo = make_repo(tmp_path, {"a": "1"})
    env = env_for(repo)
    res = code.review(env, checks.release(env, ""), github=None)
    assert res.verdict == "manual" and "sign off" in res.summary


# --------------------------------------------------------------------------- bandit / ruff

PYPROJECT = """[tool.ruff]
line-length = 100
[tool.ruff.lint]
select = ["E", "F"]
[tool.bandit]
exclude_dirs = ["tests"]
"""
RISKY = """import hashlib
import os


def digest(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def run(cmd: str) -> None:
    os.system(cmd)
"""


def test_bandit_groups_findings_and_high_blocks(tmp_path):
    repo = make_repo(tmp_path, {"pyproject.toml": PYPROJECT, "app/risky.py": RISKY,
                                "tests/test_x.py": "import pickle\npickle.loads(b'')\n"})
    env = env_for(repo)
    res = code.bandit(env, checks.release(env, ""))
    assert res.verdict == "fail", res.summary
    assert res.summary.startswith("2 HIGH in ") and "2 at or above HIGH block the release" in res.summary
    assert [(r["severity"], r["location"], r["test"][:4]) for r in res.details] == \
        [("HIGH", "app/risky.py:6", "B324"), ("HIGH", "app/risky.py:10", "B605")]  # tests/ excluded by the app
    assert "pyproject.toml [tool.bandit]" in res.evidence
    make_repo(tmp_path, {"app/risky.py": "def calc(text: str) -> object:\n    return eval(text)\n"})
    medium = code.bandit(env, checks.release(env, ""))
    assert medium.verdict == "warn" and medium.summary.startswith("1 MEDIUM")
    strict = code.bandit(Environment(name="t", app=env.app, precheck=PrecheckSection(bandit_block_severity="MEDIUM")),
                         checks.release(env, ""))
    assert strict.verdict == "fail"


def test_ruff_groups_by_rule_with_locations_and_the_threshold(tmp_path):
    repo = make_repo(tmp_path, {"pyproject.toml": PYPROJECT, "a.py": "import os\nimport sys\n",
                                "b.py": "import json\nx=1\n"})
    env = env_for(repo)
    res = code.ruff(env, checks.release(env, ""))
    assert res.verdict == "fail" and res.summary.startswith("3 finding(s) in 1 rule(s)")
    assert res.details[0]["rule"] == "F401" and res.details[0]["count"] == 3
    assert res.details[0]["locations"] == "a.py:1, a.py:2, b.py:1"
    within = code.ruff(Environment(name="t", app=env.app, precheck=PrecheckSection(ruff_max_findings=5)),
                       checks.release(env, ""))
    assert within.verdict == "warn" and "within the allowed 5" in within.summary
    make_repo(tmp_path, {"a.py": "", "b.py": "x = 1\n"})
    assert code.ruff(env, checks.release(env, "")).verdict == "pass"


# --------------------------------------------------------------------------- code.release_notes


def test_release_notes_missing_draft_and_final(tmp_path):
    repo = make_repo(tmp_path, {"README.md": "x"}, tag="v1.0.0")
    env = env_for(repo)
    missing = code.release_notes(env, checks.release(env, "v1.1.0"))
    assert missing.verdict == "fail" and "shipbook notes v1.1.0" in missing.summary
    _git(repo, "commit", "-q", "--allow-empty", "-m", "feat(api): list orders (#12)")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "fix: crash on empty cart")
    make_repo(tmp_path, {"RELEASE_NOTES.md": "# Release notes\n\n## v1.1.0\n\n<!-- shipbook:draft TODO -->\n\n"
                                             "### Features\n\n- list orders (#12)\n"})
    draft = code.release_notes(env, checks.release(env, "v1.1.0"))
    assert draft.verdict == "fail" and "still a draft" in draft.summary and "TODO" in draft.summary
    make_repo(tmp_path, {"RELEASE_NOTES.md": "# Release notes\n\n## v1.1.0\n\n### Features\n\n- list orders (#12)\n"})
    partial = code.release_notes(env, checks.release(env, "v1.1.0"))
    assert partial.verdict == "warn" and "not mentioned" in partial.summary
    assert any(r["section"] == "not in the notes" and "crash on empty cart" in r["first"] for r in partial.details)


# --------------------------------------------------------------------------- code.shared


def test_shared_sends_the_summary_with_the_report_locations(moto_url, tmp_path):
    sns, sqs = aws_client(moto_url, "sns"), aws_client(moto_url, "sqs")
    topic = sns.create_topic(Name="team-alarms")["TopicArn"]
    queue = sqs.create_queue(QueueName="team-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    env = Environment(name="prod", kind="sandbox", aws=AwsSection(endpoint_url=moto_url),
                      stack=StackSection(alarm_topic="team-alarms"), runner=RunnerSection(runs_url="s3://runs/pre"))
    release = checks.Release(str(tmp_path), "v1.2.0", "c" * 40, "tag v1.2.0")
    results = [checks.CheckResult("code.review", "fail", "x"), checks.CheckResult("code.tests", "pass", "12 tests")]
    res = code.send_summary(env, code.shared(env, release, results, run_id="RUN1", runs_root=tmp_path / "runs"),
                            dry_run=False)
    assert res.verdict == "pass", res.summary
    assert "s3://runs/pre/prod/v1.2.0/RUN1/01_precheck.stakeholder.html" in res.summary
    assert res.details[0]["where"] == str(tmp_path / "runs/prod/v1.2.0/RUN1/01_precheck.stakeholder.html")
    body = json.loads(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"][0]["Body"])
    assert body["Subject"] == "[shipbook] precheck v1.2.0 on prod: 1 fail, 0 warn"
    assert "run: RUN1" in body["Message"] and "[fail] code.review: x" in body["Message"]
    assert body["Message"].index("[pass] code.tests") < body["Message"].index("[fail] code.review")
    assert "report mirror (uploaded when the run ends): s3://runs/pre/prod/v1.2.0/RUN1/01_precheck.stakeholder.html" \
        in body["Message"]
    assert "blocking: code.review" in body["Message"]
    assert res.summary.startswith("summary sent to SNS topic team-alarms (1 confirmed subscriber(s)); report will be")
    assert res.details[-1]["where"] == topic and res.details[-1]["detail"].startswith("MessageId ")


def test_shared_without_a_destination_warns_and_an_unknown_topic_fails(moto_url, tmp_path):
    release = checks.Release(str(tmp_path), "v1.2.0", "c" * 40, "HEAD")
    none = Environment(name="t", kind="sandbox", aws=AwsSection(endpoint_url=moto_url))
    assert code.send_summary(none, code.shared(none, release, [], run_id="R"), dry_run=False).verdict == "warn"
    interactive = code.send_summary(none, code.shared(none, release, [], run_id=""), dry_run=False)
    assert interactive.verdict == "warn" and "nothing is sent" in interactive.summary
    unknown = Environment(name="t", kind="sandbox", aws=AwsSection(endpoint_url=moto_url),
                          stack=StackSection(alarm_topic="no-such-topic"))
    res = code.send_summary(unknown, code.shared(unknown, release, [], run_id="R"), dry_run=False)
    assert res.verdict == "fail" and "does not exist" in res.summary
