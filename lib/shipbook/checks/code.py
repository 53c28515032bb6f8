"""`code.*` pre-checks: tests, review, bandit, ruff, release notes, and sharing the results.

All of them judge the release commit, never the working copy: tests and scanners run in a clean
worktree of it (`worktree.checkout`), the notes are read from it (`git show`), the review covers
the commits between the previous release tag and it. GitHub is read through `shipbook.github`
(the twin in the sandbox); without GitHub configured, `code.review` becomes a `manual` item.

Thresholds are the proposed `[precheck]` keys (see `CodeThresholds`); until the environment file
has that section the defaults apply: bandit HIGH blocks, any ruff finding blocks, one approval.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipbook import audit, aws, gitinfo, mirror, secretvalues
from shipbook import notes as notes_draft
from shipbook.checks import SECTION_1, CheckResult, Release, check, worst
from shipbook.checks.worktree import Previous, Ran, app_python, checkout, command, previous, run, shown
from shipbook.config import Environment, SecretRef
from shipbook.deploy import notes as deploy_notes
from shipbook.errors import InfraError, InputError, ShipbookError
from shipbook.github import GitHub

log = logging.getLogger(__name__)

TESTS, REVIEW, BANDIT, RUFF, NOTES, SHARED = ("code.tests", "code.review", "code.bandit", "code.ruff",
                                              "code.release_notes", "code.shared")
CHECK_IDS = (TESTS, REVIEW, BANDIT, RUFF, NOTES, SHARED)
SEVERITIES = ("UNDEFINED", "LOW", "MEDIUM", "HIGH")
REPORT_NAME = "01_precheck.stakeholder.html"
_AUTO: Any = object()  # "build the GitHub client from the environment"
_MAX_ROWS = 60


def _say(line: str) -> None:
    """Progress for the person watching: the cell's output, which the runner forwards to the terminal."""
    print(line, flush=True)


@dataclass(frozen=True)
class CodeThresholds:
    """Proposed `[precheck]` keys for the code checks."""

    test_timeout: float = 600.0
    tool_timeout: float = 300.0
    required_approvals: int = 1
    bandit_block_severity: str = "HIGH"  # findings at or above block
    bandit_min_confidence: str = "LOW"  # findings below are listed, never counted
    ruff_max_findings: int = 0  # more block; up to this many warn

    @classmethod
    def from_env(cls, env: Environment) -> CodeThresholds:
        pre = getattr(env, "precheck", None)
        kwargs = {f: getattr(pre, f) for f in cls.__dataclass_fields__ if pre is not None and hasattr(pre, f)}
        out = cls(**kwargs)
        for name in ("bandit_block_severity", "bandit_min_confidence"):
            if getattr(out, name).upper() not in SEVERITIES:
                raise InputError(f"precheck.{name}", f"must be one of LOW, MEDIUM, HIGH, got {getattr(out, name)!r}")
        return out


def _github(env: Environment, given: Any) -> GitHub | None:
    return GitHub.from_env(env) if given is _AUTO else given


def _pages(gh: GitHub, path: str, key: str = "", per_page: int = 100, limit: int = 20) -> list[dict]:
    """Every item of a paginated GitHub list (`key`: the list inside an object answer)."""
    items: list[dict] = []
    for page in range(1, limit + 1):
        data = gh.get(path, per_page=per_page, page=page)
        chunk = (data.get(key) or []) if key and isinstance(data, dict) else data if isinstance(data, list) else []
        items += chunk
        if len(chunk) < per_page:
            break
    return items


# --------------------------------------------------------------------------- code.tests


@dataclass
class TestCounts:
    """A test run's counts, read from the runner's summary (Django/unittest or pytest)."""

    __test__ = False  # not a pytest class

    ran: int | None = None
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    expected_failures: int = 0
    unexpected_successes: int = 0
    ok: bool | None = None
    seconds: float | None = None
    failed: list[str] = field(default_factory=list)
    runner: str = ""

    @property
    def passed(self) -> int:
        return max(0, (self.ran or 0) - self.failures - self.errors - self.skipped - self.expected_failures
                   - self.unexpected_successes)


_RAN = re.compile(r"^Ran (\d+) tests? in ([\d.]+)s", re.MULTILINE)
_UNITTEST_END = re.compile(r"^(OK|FAILED)(?: \(([^)]*)\))?\s*$", re.MULTILINE)
_UNITTEST_FAILED = re.compile(r"^(FAIL|ERROR|UNEXPECTED SUCCESS): (\S+) \(([^)]+)\)", re.MULTILINE)
_PYTEST_END = re.compile(r"^=+ (.*\d+ (?:passed|failed|errors?|skipped|xfailed|xpassed|deselected).*?) in "
                         r"([\d.]+)s.*=+\s*$", re.MULTILINE)
_PYTEST_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def parse_test_output(text: str) -> TestCounts:
    """Counts from Django's runner (`Ran N tests` … `FAILED (failures=1, errors=2)`) or pytest's summary."""
    ran = list(_RAN.finditer(text))
    if ran:
        out = TestCounts(ran=int(ran[-1][1]), seconds=float(ran[-1][2]), runner="unittest")
        ends = list(_UNITTEST_END.finditer(text[ran[-1].end():]))
        if ends:
            out.ok = ends[0][1] == "OK"
            for part in (ends[0][2] or "").split(","):
                name, _, value = part.strip().partition("=")
                attr = name.strip().replace(" ", "_")
                if value.strip().isdigit() and attr in ("failures", "errors", "skipped", "expected_failures",
                                                        "unexpected_successes"):
                    setattr(out, attr, int(value))
        # "FAIL: test_x (app.tests.Case.test_x)" (Python ≥ 3.11) or "FAIL: test_x (app.tests.Case)"
        out.failed = [f"{m[1]}: {m[3] if m[3].endswith(m[2]) else m[3] + '.' + m[2]}"
                      for m in _UNITTEST_FAILED.finditer(text)]
        return out
    ends = list(_PYTEST_END.finditer(text))
    if ends:
        counts = {k.rstrip("s"): int(n) for n, k in re.findall(r"(\d+) (\w+)", ends[-1][1])}
        failures, errors = counts.get("failed", 0), counts.get("error", 0)
        out = TestCounts(failures=failures, errors=errors, skipped=counts.get("skipped", 0),
                         expected_failures=counts.get("xfailed", 0), unexpected_successes=counts.get("xpassed", 0),
                         seconds=float(ends[-1][2]), runner="pytest")
        out.ran = counts.get("passed", 0) + failures + errors + out.skipped + out.expected_failures + \
            out.unexpected_successes
        out.ok = failures == 0 and errors == 0
        out.failed = [m[1] for m in _PYTEST_FAILED.finditer(text)]
        return out
    return TestCounts()


_CI_FAIL = {"failure", "timed_out", "startup_failure"}
_CI_WARN = {"cancelled", "action_required", "stale"}


def ci_check_runs(gh: GitHub, sha: str) -> list[dict[str, Any]]:
    """The commit's check runs on GitHub as rows with a verdict each."""
    runs = _pages(gh, f"/repos/{gh.repository}/commits/{sha}/check-runs", key="check_runs")
    rows = []
    for r in runs:
        status, conclusion = r.get("status") or "", r.get("conclusion") or ""
        verdict = "fail" if conclusion in _CI_FAIL else "warn" if conclusion in _CI_WARN or status != "completed" \
            else "pass"
        app = (r.get("app") or {}).get("slug") or ""
        rows.append({"source": f"CI check run: {r.get('name', '?')}" + (f" ({app})" if app else ""),
                     "result": f"{status}/{conclusion}" if conclusion else status,
                     "detail": r.get("html_url") or "", "verdict": verdict})
    return rows


@check(TESTS)
def tests(env: Environment, release: Release, *, github: Any = _AUTO, thresholds: CodeThresholds | None = None,
          python: str | None = None, report: Callable[[str], None] = _say, every: float = 30.0) -> CheckResult:
    """The app's test command in a clean worktree of the release commit, plus the commit's CI check runs.

    While the command runs, `report` gets a line every `every` seconds: a test suite can take minutes.
    """
    th = thresholds or CodeThresholds.from_env(env)
    timeout = min(th.test_timeout, max(30.0, env.runner.cell_timeout - 30.0))
    args = command(env.app.test_command, python or app_python(env))

    def still_running(seconds: float) -> None:
        report(f"… {shown(args)} still running at {release.short}: {seconds:.0f}s (gives up at {timeout:.0f}s)")

    with checkout(release.repo, release.commit) as tree:
        ran = run(args, cwd=tree, timeout=timeout, still_running=still_running, every=every)
    counts = parse_test_output(ran.output)
    local = {"source": f"{ran.shown} @ {release.short}", "ran": counts.ran, "passed": counts.passed,
             "failed": counts.failures, "errors": counts.errors, "skipped": counts.skipped,
             "result": f"exit {ran.returncode} in {ran.seconds:.1f}s", "detail": "", "verdict": "pass"}
    problems: list[str] = []
    if counts.ran is None:
        local.update(verdict="fail", detail=ran.tail(6))
        problems.append(f"the test command produced no test summary (exit {ran.returncode}): {ran.tail(2)}")
    elif counts.failures or counts.errors or counts.ok is False or ran.returncode != 0:
        local["verdict"] = "fail"
        problems.append(f"{counts.failures} failed, {counts.errors} errors of {counts.ran} tests"
                        + ("" if counts.failures or counts.errors else f" (exit {ran.returncode})"))
    elif counts.ran == 0:
        local["verdict"] = "warn"
        problems.append("no tests ran")
    rows = [local] + [{"source": f"  {name}", "verdict": "fail"} for name in counts.failed[:20]]
    gh = _github(env, github)
    ci_note = "CI: GitHub not configured"
    if gh is not None:
        try:
            ci = ci_check_runs(gh, release.commit)
        except InfraError as exc:
            ci = [{"source": "CI check runs", "result": "not read", "detail": str(exc), "verdict": "warn"}]
        if not ci:
            ci = [{"source": "CI check runs", "result": "none", "detail": f"no check runs for {release.short}",
                   "verdict": "warn"}]
        rows += ci
        bad = [r for r in ci if r["verdict"] != "pass"]
        ci_note = f"CI: {len(ci)} check run(s), " + ("all successful" if not bad else
                                                        ", ".join(f"{r['source']} {r['result']}" for r in bad))
        problems += [f"{r['source']}: {r['result']}" for r in ci if r["verdict"] == "fail"]
    if problems:
        summary = "; ".join(problems) + f"; {ci_note}"
    else:
        summary = (f"{counts.ran} tests at {release.short}: {counts.passed} passed, {counts.failures} failed, "
                   f"{counts.errors} errors, {counts.skipped} skipped ({ran.seconds:.1f}s); {ci_note}")
    return CheckResult(TESTS, worst(r["verdict"] for r in rows), summary, rows,
                       evidence=f"`{ran.shown}` in a clean worktree of {_at(release)}, "
                                f"{counts.runner or 'unknown'} summary parsed"
                                + (f"; check runs from {gh.api_url}" if gh is not None else ""))


# --------------------------------------------------------------------------- code.review


@dataclass
class PullReview:
    """A merged pull request and what its reviews decided (latest decisive review per reviewer)."""

    number: int
    title: str
    author: str
    approvers: list[str]
    blockers: list[str]
    commits: list[str] = field(default_factory=list)

    def approved(self, required: int) -> bool:
        return len(self.approvers) >= required and not self.blockers


def decide(reviews: Iterable[dict], author: str) -> tuple[list[str], list[str]]:
    """(approvers, reviewers requesting changes): each reviewer's latest APPROVED/CHANGES_REQUESTED/DISMISSED
    counts (comments do not change a decision); the author's own approval never counts."""
    latest: dict[str, str] = {}
    for r in sorted(reviews, key=lambda r: r.get("submitted_at") or ""):
        login = (r.get("user") or {}).get("login") or "?"
        if r.get("state") in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            latest[login] = r["state"]
    approvers = [u for u, s in latest.items() if s == "APPROVED" and u != author]
    blockers = [u for u, s in latest.items() if s == "CHANGES_REQUESTED"]
    return approvers, blockers


def compare_commits(gh: GitHub, base: str, head: str) -> list[dict]:
    """The commits between `base` and `head` (compare API, paginated; the twin answers in one page)."""
    path = f"/repos/{gh.repository}/compare/{base}...{head}"
    seen: dict[str, dict] = {}
    total = None
    for page in range(1, 41):
        data = gh.get(path, per_page=100, page=page)
        total = int(data.get("total_commits") or 0) if total is None else total
        fresh = [c for c in data.get("commits") or [] if c.get("sha") not in seen]
        seen.update((c["sha"], c) for c in fresh)
        if not fresh or len(seen) >= total:
            break
    return list(seen.values())


@check(REVIEW)
def review(env: Environment, release: Release, previous_version: str = "", *, github: Any = _AUTO,
           thresholds: CodeThresholds | None = None) -> CheckResult:
    """Every commit since the previous release came through a merged pull request with an approval."""
    th = thresholds or CodeThresholds.from_env(env)
    gh = _github(env, github)
    prev = previous(release.repo, release.version, previous_version)
    since = prev.tag or "the first commit"
    if gh is None:
        return CheckResult(REVIEW, "manual", f"GitHub is not configured: confirm every change since {since} was "
                           "reviewed, then sign off", evidence="no github.repository / token / api_url")
    if prev:
        try:
            commits = compare_commits(gh, prev.tag, release.commit)
        except InfraError as exc:
            raise InfraError(f"{exc} (are {prev.tag} and {release.short} pushed to GitHub?)") from exc
        listing = f"GitHub compare {prev.tag}...{release.short}"
    else:
        shas = gitinfo.git(release.repo, "rev-list", "--reverse", release.commit).split()
        commits = [{"sha": s, "commit": {"message": gitinfo.git(release.repo, "log", "-1", "--format=%B", s)}}
                   for s in shas]
        listing = f"git rev-list {release.short} (no previous release)"
    pulls: dict[int, PullReview] = {}
    orphans: list[dict] = []
    for c in commits:
        sha = c["sha"]
        merged = [p for p in gh.get(f"/repos/{gh.repository}/commits/{sha}/pulls") or [] if p.get("merged_at")]
        if not merged:
            orphans.append(c)
            continue
        for p in merged:
            number = int(p["number"])
            if number not in pulls:
                author = (p.get("user") or {}).get("login") or "?"
                reviews = _pages(gh, f"/repos/{gh.repository}/pulls/{number}/reviews")
                approvers, blockers = decide(reviews, author)
                pulls[number] = PullReview(number, p.get("title") or "", author, approvers, blockers)
            pulls[number].commits.append(sha)
    rows, problems = [], []
    for pr in sorted(pulls.values(), key=lambda p: p.number):
        ok = pr.approved(th.required_approvals)
        state = ", ".join(f"{u} approved" for u in pr.approvers) or "no approval"
        if pr.blockers:
            state += "; changes requested by " + ", ".join(pr.blockers)
        rows.append({"change": f"PR #{pr.number}", "title": pr.title, "author": pr.author,
                     "commits": len(pr.commits), "review": state, "verdict": "pass" if ok else "fail"})
        if not ok:
            problems.append(f"PR #{pr.number} not approved ({state})")
    for c in orphans:
        info = c.get("commit") or {}
        who = (c.get("author") or {}).get("login") or (info.get("author") or {}).get("name") or "?"
        rows.append({"change": f"commit {c['sha'][:7]}", "title": _title(c), "author": who, "commits": 1,
                     "review": "no pull request: pushed straight to the branch", "verdict": "fail"})
    if orphans:
        problems.insert(0, f"{len(orphans)} commit(s) reached the branch without a reviewed pull request: "
                        + ", ".join(f"{c['sha'][:7]} {_title(c)}" for c in orphans[:5]))
    summary = "; ".join(problems) if problems else (
        f"{len(pulls)} pull request(s) since {since}, each approved (≥{th.required_approvals}); all "
        f"{len(commits)} commit(s) came through them")
    return CheckResult(REVIEW, worst((r["verdict"] for r in rows), default="pass"), summary, rows,
                       evidence=f"{listing}; pulls of each commit and their reviews from {gh.api_url}")


def _title(commit: dict) -> str:
    return ((commit.get("commit") or {}).get("message") or "").partition("\n")[0]


# --------------------------------------------------------------------------- code.bandit / code.ruff


def _tool(args: list[str], tree: Path, timeout: float, name: str) -> Ran:
    ran = run([sys.executable, "-m", *args], cwd=tree, timeout=timeout)
    if "No module named" in ran.stderr:
        raise InfraError(f"{name} is not installed in shipbook's environment ({sys.executable})")
    return ran


def _version(module: str, tree: Path) -> str:
    """`bandit 1.9.4` / `ruff 0.8.0` (bandit run with -m calls itself `__main__.py`)."""
    ran = run([sys.executable, "-m", module, "--version"], cwd=tree, timeout=60)
    found = re.search(r"\d+\.\d+[\w.]*", ran.stdout)
    return f"{module} {found.group(0) if found else '?'}"


def _at(release: Release) -> str:
    return f"{release.short} ({release.ref})"


@check(BANDIT)
def bandit(env: Environment, release: Release, *, thresholds: CodeThresholds | None = None) -> CheckResult:
    """bandit (JSON) on the release commit, with the app's own bandit config when it has one."""
    th = thresholds or CodeThresholds.from_env(env)
    block = SEVERITIES.index(th.bandit_block_severity.upper())
    min_conf = SEVERITIES.index(th.bandit_min_confidence.upper())
    with checkout(release.repo, release.commit) as tree:
        args = ["bandit", "-r", ".", "-f", "json", "-q"]
        pyproject = tree / "pyproject.toml"
        config = ""
        if pyproject.is_file() and "[tool.bandit" in pyproject.read_text(encoding="utf-8", errors="replace"):
            args += ["-c", "pyproject.toml"]
            config = "pyproject.toml [tool.bandit]"
        elif (tree / ".bandit").is_file():
            args += ["--ini", ".bandit"]
            config = ".bandit"
        ran = _tool(args, tree, th.tool_timeout, "bandit")
        version = _version("bandit", tree)
    if ran.returncode not in (0, 1):
        raise InfraError(f"bandit failed (exit {ran.returncode}): {ran.tail(4)}")
    try:
        data = json.loads(ran.stdout)
    except json.JSONDecodeError as exc:
        raise InfraError(f"bandit did not print JSON: {exc}: {ran.tail(4)}") from exc
    rows, counted = [], Counter()
    for r in sorted(data.get("results") or [], key=lambda r: (-SEVERITIES.index(r.get("issue_severity", "LOW")),
                                                             r.get("filename", ""), r.get("line_number", 0))):
        sev, conf = r.get("issue_severity", "UNDEFINED"), r.get("issue_confidence", "UNDEFINED")
        listed_only = SEVERITIES.index(conf) < min_conf
        verdict = "pass" if listed_only else "fail" if SEVERITIES.index(sev) >= block else "warn"
        if not listed_only:
            counted[sev] += 1
        rows.append({"severity": sev, "confidence": conf, "test": f"{r.get('test_id')} {r.get('test_name')}",
                     "location": f"{_rel(r.get('filename', ''))}:{r.get('line_number')}",
                     "issue": r.get("issue_text", ""), "verdict": verdict})
    for e in data.get("errors") or []:
        rows.append({"severity": "ERROR", "location": _rel(e.get("filename", "")), "issue": e.get("reason", ""),
                     "verdict": "warn"})
    loc = (data.get("metrics") or {}).get("_totals", {}).get("loc", "?")
    counts = ", ".join(f"{counted[s]} {s}" for s in ("HIGH", "MEDIUM", "LOW") if counted[s]) or "no findings"
    blocking = sum(1 for r in rows if r["verdict"] == "fail")
    summary = f"{counts} in {loc} lines at {release.short}"
    if blocking:
        summary += f"; {blocking} at or above {th.bandit_block_severity.upper()} block the release"
    if data.get("errors"):
        summary += f"; {len(data['errors'])} file(s) bandit could not scan"
    return CheckResult(BANDIT, worst(r["verdict"] for r in rows), summary, rows[:_MAX_ROWS],
                       evidence=f"{version}, `bandit -r . -f json` in a clean worktree of {_at(release)}; "
                                f"config: {config or 'bandit defaults'}; blocks at {th.bandit_block_severity.upper()}, "
                                f"counts confidence ≥ {th.bandit_min_confidence.upper()}")


@check(RUFF)
def ruff(env: Environment, release: Release, *, thresholds: CodeThresholds | None = None) -> CheckResult:
    """`ruff check` (JSON) on the release commit with the app's own ruff configuration."""
    th = thresholds or CodeThresholds.from_env(env)
    with checkout(release.repo, release.commit) as tree:
        ran = _tool(["ruff", "check", "--output-format", "json", "--no-cache", "--exit-zero", "."], tree,
                    th.tool_timeout, "ruff")
        version = _version("ruff", tree)
        if ran.returncode != 0:
            raise InfraError(f"ruff failed (exit {ran.returncode}): {ran.tail(4)}")
        try:
            findings = json.loads(ran.stdout or "[]")
        except json.JSONDecodeError as exc:
            raise InfraError(f"ruff did not print JSON: {exc}: {ran.tail(4)}") from exc
        config = next((n for n in ("ruff.toml", ".ruff.toml", "pyproject.toml") if (tree / n).is_file()), "")
        root = str(tree)
    by_rule: dict[str, list[dict]] = {}
    for f in findings:
        by_rule.setdefault(f.get("code") or "syntax-error", []).append(f)
    total = len(findings)
    verdict = "pass" if total == 0 else "fail" if total > th.ruff_max_findings else "warn"
    rows = []
    for code, items in sorted(by_rule.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        where = [f"{_rel(i.get('filename', ''), root)}:{(i.get('location') or {}).get('row', '?')}" for i in items]
        rows.append({"rule": code, "count": len(items), "message": items[0].get("message", ""),
                     "fixable": sum(1 for i in items if i.get("fix")),
                     "locations": ", ".join(where[:8]) + (f" … (+{len(where) - 8})" if len(where) > 8 else ""),
                     "verdict": verdict})
    if total:
        summary = f"{total} finding(s) in {len(by_rule)} rule(s) at {release.short}: " + \
            ", ".join(f"{r['rule']}×{r['count']}" for r in rows[:6])
        summary += "; blocks the release" if verdict == "fail" else f" (within the allowed {th.ruff_max_findings})"
    else:
        summary = f"no findings at {release.short}"
    return CheckResult(RUFF, verdict, summary, rows[:_MAX_ROWS],
                       evidence=f"{version}, `ruff check --output-format json .` in a clean worktree of "
                                f"{_at(release)}; config: {config or 'ruff defaults'}; "
                                f"more than {th.ruff_max_findings} finding(s) block")


def _rel(path: str, root: str = "") -> str:
    if root and path.startswith(root):
        path = path[len(root):]
    return path.removeprefix("./").lstrip("/")


# --------------------------------------------------------------------------- code.release_notes


@check(NOTES)
def release_notes(env: Environment, release: Release, previous_version: str = "") -> CheckResult:
    """VERSION's section of the notes file exists at the release commit, is final, and covers the changes."""
    notes_file = env.app.notes_file
    found = deploy_notes.read_notes(release.repo, notes_file, release.commit, release.version)
    problems = list(found.problems)
    markers = notes_draft.is_draft(found.heading, found.body) if found.heading else []
    if markers:
        problems.append(f"the '{found.heading}' section is still a draft ({', '.join(markers)})")
    where = release.where(notes_file)
    if problems:
        hint = f"; draft it with `shipbook notes {release.version}`, edit, commit" if not found.heading else \
            "; edit it, remove the draft marker, commit"
        return CheckResult(NOTES, "fail", "; ".join(problems) + hint, _sections(found.body), evidence=where)
    rows = _sections(found.body)
    prev = previous(release.repo, release.version, previous_version)
    missing = _not_mentioned(release, prev, found.body)
    for entry in missing:
        rows.append({"section": "not in the notes", "items": 1, "first": entry.line()[2:], "verdict": "warn"})
    items = sum(int(r["items"]) for r in rows if r["section"] != "not in the notes")
    summary = f"{notes_file} at {release.short}: section '{found.heading}' with {items} item(s), final"
    if missing:
        summary += f"; {len(missing)} change(s) since {prev.tag or 'the first commit'} not mentioned: " + \
            ", ".join(f"#{e.pr}" if e.pr else e.sha[:7] for e in missing)
    return CheckResult(NOTES, "warn" if missing else "pass", summary, rows, evidence=where)


def _sections(body: str) -> list[dict]:
    """The `###` subsections of a notes section with their item counts."""
    rows: list[dict] = []
    current = {"section": "(top)", "items": 0, "first": "", "verdict": "pass"}
    for line in body.splitlines():
        if line.startswith("###"):
            if current["items"] or current["section"] != "(top)":
                rows.append(current)
            current = {"section": line.lstrip("#").strip(), "items": 0, "first": "", "verdict": "pass"}
        elif line.lstrip().startswith(("-", "*")):
            current["items"] += 1
            current["first"] = current["first"] or line.strip()[1:].strip()
    if current["items"] or current["section"] != "(top)":
        rows.append(current)
    return rows


def _not_mentioned(release: Release, prev: Previous, body: str) -> list[notes_draft.Entry]:
    """Changes since the previous release the notes name neither by PR number nor by subject."""
    draft = notes_draft.collect(release.repo, release.version, prev.tag, release.commit)
    text = body.lower()
    out = []
    for e in draft.entries:
        if e.pr and f"#{e.pr}" in text:
            continue
        if e.commit.subject.lower() in text:
            continue
        out.append(e)
    return out


# --------------------------------------------------------------------------- code.shared

WEBHOOK_TIMEOUT = 10.0  # seconds per attempt
WEBHOOK_ATTEMPTS = 2  # one retry, for a timeout, a refused connection, 429 or 5xx
WEBHOOK_RETRY_DELAY = 2.0


def report_locations(env: Environment, version: str, run_id: str, runs_root: Path | None = None) -> tuple[str, str]:
    """(local path, S3 URL or '') of this run's stakeholder report, as the runner will write and mirror it."""
    root = runs_root or audit.RUNS_ROOT
    rel = Path(env.name) / version / run_id / REPORT_NAME
    local = str(root / rel)
    if not env.runner.runs_url:
        return local, ""
    bucket, prefix = mirror.s3_target(env.runner.runs_url)
    key = "/".join(x for x in (prefix, rel.as_posix()) if x)
    return local, f"s3://{bucket}/{key}"


def summary_message(env: Environment, release: Release, results: Iterable[Any], run_id: str, report: str,
                    mirror_url: str, dry_run: bool) -> tuple[str, str]:
    """(subject, message) of the notification: counts, what blocks, every check's line, and where the report
    will be (the runner writes it when the phase ends and mirrors it when the run ends: not there yet)."""
    order = {row.id: i for i, row in enumerate(SECTION_1)}
    rows = sorted((r for r in results if getattr(r, "id", "") != SHARED), key=lambda r: order.get(r.id, len(order)))
    counts = Counter(r.verdict for r in rows)
    tally = ", ".join(f"{counts[v]} {v}" for v in ("fail", "manual", "warn", "pass", "skip") if counts[v])
    subject = f"[shipbook] precheck {release.version or release.short} on {env.name}: " + \
        f"{counts['fail']} fail, {counts['warn']} warn" + (" (dry run)" if dry_run else "")
    blocking = [r.id for r in rows if r.verdict == "fail"]
    signoff = [r.id for r in rows if r.verdict == "manual"]
    lines = [f"shipbook pre-release check of {release.version or '(no version)'} for {env.name}"
             + (" (dry run)" if dry_run else ""),
             f"run: {run_id}",
             f"commit: {release.short} ({release.ref})",
             f"verdicts: {tally or 'none yet'}",
             f"blocking: {', '.join(blocking) or 'nothing'}"]
    if signoff:
        lines.append(f"needs a sign-off: {', '.join(signoff)}")
    lines.append(f"report (written when the phase ends): {report}")
    if mirror_url:
        lines.append(f"report mirror (uploaded when the run ends): {mirror_url}")
    lines.append("")
    lines += [f"[{r.verdict}] {r.id}: {r.summary}" for r in rows]
    return subject.encode("ascii", "replace").decode()[:99], "\n".join(lines)


def share_topic(env: Environment) -> tuple[str, str]:
    """(topic, the key it came from): `precheck.share_topic`, else the alarm topic as before that key existed."""
    if env.precheck.share_topic:
        return env.precheck.share_topic, "precheck.share_topic"
    if env.stack.alarm_topic:
        return env.stack.alarm_topic, "stack.alarm_topic"
    return "", ""


def topic_arn(sns: Any, topic: str, key: str = "precheck.share_topic") -> str:
    """The topic's ARN: as given, or found by name among the account's topics."""
    if topic.startswith("arn:"):
        return topic
    next_page = ""
    for _ in range(100):
        page = aws.call(sns, "list_topics", **({"NextToken": next_page} if next_page else {}))
        for t in page.get("Topics") or []:
            if t.get("TopicArn", "").rsplit(":", 1)[-1] == topic:
                return t["TopicArn"]
        next_page = page.get("NextToken") or ""
        if not next_page:
            break
    raise InputError(key, f"SNS topic {topic!r} does not exist")


@dataclass
class Delivery:
    """What a webhook POST came to: the last HTTP status (0: no answer), the attempts, why it failed."""

    status: int = 0
    attempts: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer to report, not to follow (it would re-send the summary elsewhere)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def webhook_host(env: Environment, url: str) -> str:
    """`scheme://host[:port]` of the webhook, after checking it may be used; InputError never shows the URL.

    Same rails as the environment's endpoints: the sandbox only talks to loopback, anything else only to
    a non-loopback https URL.
    """
    key = "precheck.share_webhook"
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(key, "the referenced value is not an http(s) URL")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if env.is_sandbox and not loopback:
        raise InputError(key, f"the sandbox only talks to loopback, not to {host}")
    if not env.is_sandbox and (loopback or parts.scheme != "https"):
        raise InputError(key, f"a non-sandbox environment needs an https URL that is not loopback (got "
                         f"{parts.scheme}://{host})")
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def post_webhook(url: str, text: str, *, timeout: float = WEBHOOK_TIMEOUT, attempts: int = WEBHOOK_ATTEMPTS,
                 sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """POST `{"text": text}` (Slack-compatible) to `url`; retried once on no answer, 429 or 5xx.

    urllib rather than requests: urllib3 logs request paths at DEBUG, and a webhook's path is its secret.
    Nothing returned (status, error) contains the URL.
    """
    body = json.dumps({"text": text}).encode()
    opener = urllib.request.build_opener(_NoRedirect)
    out = Delivery()
    for attempt in range(1, max(1, attempts) + 1):
        out.attempts = attempt
        request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 (scheme checked by webhook_host)
                                         headers={"Content-Type": "application/json", "User-Agent": "shipbook"})
        try:
            with opener.open(request, timeout=timeout) as resp:
                out.status, out.error = resp.status, ""
                return out
        except urllib.error.HTTPError as exc:
            answer = exc.read(200).decode("utf-8", "replace").strip()
            exc.close()
            out.status, out.error = exc.code, _scrub(f"HTTP {exc.code}" + (f": {answer}" if answer else ""), url)
            if exc.code != 429 and exc.code < 500:
                return out
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            out.status, out.error = 0, _scrub(f"no answer: {type(reason).__name__}: {reason}", url)
        if attempt < attempts:
            log.info("webhook attempt %d failed (%s); retrying", attempt, out.error)
            sleep(WEBHOOK_RETRY_DELAY)
    return out


def _scrub(text: str, url: str) -> str:
    """`text` without the URL or its path (a webhook's secret part), in case an answer echoes them."""
    path = urllib.parse.urlsplit(url).path
    for secret in (url, url.strip(), path if len(path) > 1 else ""):
        if secret:
            text = text.replace(secret, "[webhook]")
    return text[:200]


@check(SHARED)
def shared(env: Environment, release: Release, results: Iterable[Any], *, run_id: str = "", dry_run: bool = False,
           sns: Any = None, runs_root: Path | None = None, sleep: Callable[[float], None] = time.sleep) -> CheckResult:
    """Send the pre-check summary to the configured SNS topic and/or webhook, naming where the report will be.

    "Will be": this check runs inside the phase, so the report (rendered when the phase ends) and its S3
    mirror (uploaded when the run ends) do not exist yet; the result says where they are going, not that
    they are there. Only from a recorded run (`run_id` set by the runner): an interactive session writes no
    report, and re-running a cell in JupyterLab must not notify the team again.
    """
    if not run_id:
        return CheckResult(SHARED, "warn", "not a recorded run (no run_id): no report is published and nothing "
                           "is sent; `shipbook precheck VERSION` does both", evidence="run_id parameter")
    results = list(results)
    report, mirror_url = report_locations(env, release.version, run_id, runs_root)
    rows: list[dict] = [{"what": "report (stakeholder HTML)", "where": report,
                         "detail": "will be written by the runner when this phase ends", "verdict": "pass"}]
    if mirror_url:
        rows.append({"what": "report mirror", "where": mirror_url,
                     "detail": "will be uploaded by the runner when the run ends (runner.runs_url)", "verdict": "pass"})
    else:
        rows.append({"what": "report mirror", "where": "none", "verdict": "pass",
                     "detail": "runner.runs_url is empty: the report stays on the machine that ran the release"})
    topic, topic_key = share_topic(env)
    webhook = env.precheck.share_webhook
    report_at = f"{mirror_url} (uploaded when the run ends)" if mirror_url else \
        f"{report} (written when this phase ends; not mirrored)"
    if not topic and webhook is None:
        rows.append({"what": "summary", "where": "none configured", "verdict": "warn",
                     "detail": "precheck.share_topic, precheck.share_webhook and stack.alarm_topic are all empty"})
        if mirror_url:
            summary = (f"the report will be mirrored to {mirror_url} when the run ends, but nobody is told: no "
                       "precheck.share_topic / share_webhook (or stack.alarm_topic) configured; tell the team by hand")
        else:
            summary = (f"nothing is shared: no report mirror (runner.runs_url) and no summary destination "
                       f"(precheck.share_topic / share_webhook, stack.alarm_topic); the report will only be at "
                       f"{report} on this machine: share it by hand")
        return CheckResult(SHARED, "warn", summary, rows,
                           evidence="runner.runs_url, precheck.share_topic, precheck.share_webhook, stack.alarm_topic")
    subject, message = summary_message(env, release, results, run_id, report, mirror_url, dry_run)
    sent, problems, evidence = [], [], []
    if topic:
        row, line, note = _share_sns(env, sns, topic, topic_key, subject, message)
        rows.append(row)
        (sent if row["verdict"] in ("pass", "warn") else problems).append(line)
        if row["verdict"] == "warn":
            problems.append(note)
        evidence.append(f"SNS Publish to {row['where']} ({topic_key}; subject: {subject}); ListSubscriptionsByTopic")
    if webhook is not None:
        row, line = _share_webhook(env, webhook, subject, message, sleep)
        rows.append(row)
        (sent if row["verdict"] == "pass" else problems).append(line)
        evidence.append(f"webhook POST (JSON {{\"text\": …}}, {WEBHOOK_TIMEOUT:.0f}s timeout, one retry) to "
                        f"{row['where'].removeprefix('webhook ')} from precheck.share_webhook ({webhook.describe()}); "
                        "its path is a secret and never shown")
    summary = ("summary sent to " + " and ".join(sent) if sent else "summary not sent") + \
        "".join(f"; {p}" for p in problems) + f"; report will be at {report_at}"
    return CheckResult(SHARED, worst(r["verdict"] for r in rows), summary, rows, evidence="; ".join(evidence))


def _share_sns(env: Environment, sns: Any, topic: str, key: str, subject: str,
               message: str) -> tuple[dict, str, str]:
    """(row, summary part, warning): publish to the topic and count who will receive it."""
    try:
        sns = sns if sns is not None else aws.client(env, "sns")
        arn = topic_arn(sns, topic, key)
        sent = aws.call(sns, "publish", TopicArn=arn, Subject=subject, Message=message)
        subs = _subscriptions(sns, arn)
    except ShipbookError as exc:
        return ({"what": "summary (SNS)", "where": topic, "detail": str(exc), "verdict": "fail"},
                f"SNS topic {topic} could not be used: {exc}", "")
    confirmed = [s for s in subs if not s.get("SubscriptionArn", "").startswith("Pending")]
    receivers = ", ".join(f"{s.get('Protocol')}:{s.get('Endpoint')}" for s in confirmed) or "nobody"
    row = {"what": "summary (SNS)", "where": arn, "detail": f"MessageId {sent.get('MessageId')}; "
           f"{len(confirmed)} confirmed subscription(s): {receivers}", "verdict": "pass" if confirmed else "warn"}
    name = arn.rsplit(":", 1)[-1]
    return row, f"SNS topic {name} ({len(confirmed)} confirmed subscriber(s))", \
        "" if confirmed else f"nobody is subscribed to {name}"


def _share_webhook(env: Environment, ref: SecretRef, subject: str, message: str,
                   sleep: Callable[[float], None]) -> tuple[dict, str]:
    """(row, summary part): POST the summary to the webhook. Only its scheme and host are ever shown."""
    row = {"what": "summary (webhook)", "where": "webhook", "detail": "", "verdict": "fail"}
    try:
        url = secretvalues.read(env, ref)
        if not url.strip():
            raise InputError("precheck.share_webhook", f"{ref.describe()} is empty or not set")
        host = webhook_host(env, url)
    except ShipbookError as exc:
        row["detail"] = str(exc)
        return row, f"the webhook could not be used: {exc}"
    row["where"] = f"webhook {host}"
    got = post_webhook(url.strip(), f"{subject}\n{message}", sleep=sleep)
    tries = f"{got.attempts} attempt(s)"
    if got.ok:
        row.update(detail=f"HTTP {got.status} after {tries}", verdict="pass")
        return row, f"webhook {host} (HTTP {got.status})"
    # no answer, 429 or 5xx after the retry: the channel is down, not misconfigured; a person may share by hand
    transient = got.status == 0 or got.status == 429 or got.status >= 500
    row.update(detail=f"not delivered after {tries}: {got.error}", verdict="manual" if transient else "fail")
    hint = ": share the report by hand, then sign off" if transient else ": fix precheck.share_webhook"
    return row, f"webhook {host} did not take the summary ({got.error}){hint}"


def _subscriptions(sns: Any, arn: str) -> list[dict]:
    out: list[dict] = []
    next_page = ""
    for _ in range(50):
        more = {"NextToken": next_page} if next_page else {}
        page = aws.call(sns, "list_subscriptions_by_topic", TopicArn=arn, **more)
        out += page.get("Subscriptions") or []
        next_page = page.get("NextToken") or ""
        if not next_page:
            break
    return out
