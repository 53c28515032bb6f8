"""`code.tests`, `code.bandit`, `code.ruff`: the app's tests and two scanners on a clean worktree of the release commit.

The test counts come from the runner's own summary (Django/unittest or pytest), parsed here: the
test command is the app's choice, so shipbook reads what it prints rather than asking for a plugin.
bandit and ruff run from shipbook's environment (`python -m …`) with the app's own configuration
when it has one; findings are grouped (by severity, by rule) with file:line and judged by `[precheck]`.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipbook.checks import CheckResult, Release, check, worst
from shipbook.checks.code import gh
from shipbook.checks.worktree import Ran, app_python, checkout, command, run, shown
from shipbook.config import Environment
from shipbook.errors import InfraError
from shipbook.github import GitHub

TESTS, BANDIT, RUFF = "code.tests", "code.bandit", "code.ruff"
SEVERITIES = ("UNDEFINED", "LOW", "MEDIUM", "HIGH")
_MAX_ROWS = 60


def _say(line: str) -> None:
    """Progress for the person watching: the cell's output, which the runner forwards to the terminal."""
    print(line, flush=True)


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


def ci_check_runs(github: GitHub, sha: str) -> list[dict[str, Any]]:
    """The commit's check runs on GitHub as rows with a verdict each."""
    runs = github.list_all(f"/repos/{github.repository}/commits/{sha}/check-runs", key="check_runs")
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
def tests(env: Environment, release: Release, *, github: Any = gh.AUTO, python: str | None = None,
          report: Callable[[str], None] = _say, every: float = 30.0) -> CheckResult:
    """The app's test command in a clean worktree of the release commit, plus the commit's CI check runs.

    While the command runs, `report` gets a line every `every` seconds: a test suite can take minutes.
    """
    timeout = min(env.precheck.test_timeout, max(30.0, env.runner.cell_timeout - 30.0))
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
    client = gh.client(env, github)
    ci_note = "CI: GitHub not configured"
    if client is not None:
        try:
            ci = ci_check_runs(client, release.commit)
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
                       evidence=f"`{ran.shown}` in a clean worktree of {release.short} ({release.ref}), "
                                f"{counts.runner or 'unknown'} summary parsed"
                                + (f"; check runs from {client.api_url}" if client is not None else ""))


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
def bandit(env: Environment, release: Release) -> CheckResult:
    """bandit (JSON) on the release commit, with the app's own bandit config when it has one."""
    pre = env.precheck
    block, min_conf = SEVERITIES.index(pre.bandit_block_severity), SEVERITIES.index(pre.bandit_min_confidence)
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
        ran = _tool(args, tree, pre.tool_timeout, "bandit")
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
        summary += f"; {blocking} at or above {pre.bandit_block_severity} block the release"
    if data.get("errors"):
        summary += f"; {len(data['errors'])} file(s) bandit could not scan"
    return CheckResult(BANDIT, worst(r["verdict"] for r in rows), summary, rows[:_MAX_ROWS],
                       evidence=f"{version}, `bandit -r . -f json` in a clean worktree of {_at(release)}; "
                                f"config: {config or 'bandit defaults'}; blocks at {pre.bandit_block_severity}, "
                                f"counts confidence ≥ {pre.bandit_min_confidence}")


@check(RUFF)
def ruff(env: Environment, release: Release) -> CheckResult:
    """`ruff check` (JSON) on the release commit with the app's own ruff configuration."""
    allowed = env.precheck.ruff_max_findings
    with checkout(release.repo, release.commit) as tree:
        ran = _tool(["ruff", "check", "--output-format", "json", "--no-cache", "--exit-zero", "."], tree,
                    env.precheck.tool_timeout, "ruff")
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
    verdict = "pass" if total == 0 else "fail" if total > allowed else "warn"
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
        summary += "; blocks the release" if verdict == "fail" else f" (within the allowed {allowed})"
    else:
        summary = f"no findings at {release.short}"
    return CheckResult(RUFF, verdict, summary, rows[:_MAX_ROWS],
                       evidence=f"{version}, `ruff check --output-format json .` in a clean worktree of "
                                f"{_at(release)}; config: {config or 'ruff defaults'}; "
                                f"more than {allowed} finding(s) block")


def _rel(path: str, root: str = "") -> str:
    if root and path.startswith(root):
        path = path[len(root):]
    return path.removeprefix("./").lstrip("/")
