"""SCENARIO=healthy: five releases in a row never recommend a rollback (issue 6).

A rehearsal: each release runs the whole pipeline and waits out the verify canary window, so
this takes minutes per release. Marked `rehearsal`: `make test` leaves it out, `make rehearsals`
and CI run it.

The twin prepares v1.0.0 (its history ends in the v1.0.0 release commit, v0.9.0 deployed). Each
later release is prepared the way the release manager does it, with git and the shipbook CLI on
the app's working copy: a small change merged through an approved pull request, then a release
pull request whose notes section `shipbook notes VERSION` drafted (the draft marker deleted, as
the draft asks). Each pull request goes through the GitHub twin's REST API as on GitHub: the
branch pushed to origin, the pull request opened by its author, approved by a reviewer and merged
by them (the twin makes the merge commit on `main` in origin), then `git pull` in the working copy.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
import requests
from shipbook import audit
from shipbook.sandbox.repo_builder import PEOPLE
from test_release import remote_tags, served_version

pytestmark = pytest.mark.rehearsal

PREVIOUS = "v0.9.0"
VERSIONS = ("v1.0.0", "v1.0.1", "v1.0.2", "v1.0.3", "v1.0.4")
RELEASE_TIMEOUT = 900  # one release: precheck, backup, deploy, verify (a 120 s canary window), report
REPOSITORY = "example/demo-app"


class AppRepo:
    """The app's working copy and the GitHub twin's REST API, as the release manager works with them."""

    def __init__(self, twin) -> None:
        self.twin = twin
        self.work = Path(twin.url("app_repo"))
        self.api = f"{twin.url('github_url')}/repos/{REPOSITORY}"

    def github(self, method: str, path: str, body: dict, who: str) -> dict:
        """A REST call as `who` (the twin takes the token as the login)."""
        response = requests.request(method, self.api + path, json=body, timeout=30,
                                    headers={"Authorization": f"token {who}", "Accept": "application/vnd.github+json"})
        assert response.ok, f"{method} {path} as {who}: {response.status_code} {response.text}"
        return response.json()

    def git(self, *args: str, who: str = "") -> str:
        env = dict(self.twin.env_vars)
        if who:
            name, email = PEOPLE[who]
            for role in ("AUTHOR", "COMMITTER"):
                env[f"GIT_{role}_NAME"], env[f"GIT_{role}_EMAIL"] = name, email
        out = subprocess.run(["git", "-C", str(self.work), *args], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr}"
        return out.stdout.strip()

    def pull_request(self, title: str, author: str, reviewer: str, branch: str, edit) -> int:
        """Branch off main, `edit(work)` → paths to commit, commit as `author` and push the branch; open the
        pull request as `author`, approve and merge it as `reviewer` on the GitHub twin; pull main. Returns
        its number."""
        self.git("checkout", "-q", "-b", branch, "main")
        self.git("add", "--", *edit(self.work))
        self.git("commit", "-q", "-m", title, who=author)
        head = self.git("rev-parse", "HEAD")
        self.git("push", "-q", "origin", f"{branch}:refs/heads/{branch}")
        pr = self.github("POST", "/pulls", {"title": title, "head": branch, "base": "main", "body": ""}, author)
        number = pr["number"]
        assert pr["head"]["sha"] == head and pr["commits"] == 1, pr
        self.github("POST", f"/pulls/{number}/reviews", {"event": "APPROVE", "body": "LGTM"}, reviewer)
        merged = self.github("PUT", f"/pulls/{number}/merge", {"merge_method": "merge", "sha": head}, reviewer)
        self.git("checkout", "-q", "main")
        self.git("branch", "-q", "-D", branch)
        self.git("pull", "-q", "--ff-only", "origin", "main")
        assert self.git("rev-parse", "HEAD") == merged["sha"], "main is not at the merge commit"
        return number

    def prepare(self, version: str) -> None:
        """A small change through a reviewed pull request, then the release pull request with final notes."""

        def readme(work: Path) -> list[str]:
            path = work / "README.md"
            path.write_text(path.read_text(encoding="utf-8") + f"\n{version}: rehearsal release, no functional "
                            "change.\n", encoding="utf-8")
            return ["README.md"]

        self.pull_request(f"docs: README line for {version}", "carol", "bob", f"docs/readme-{version}", readme)

        def release(work: Path) -> list[str]:
            drafted = self.twin.run("notes", version)  # drafts VERSION's section into the working copy
            assert drafted.returncode == 0, drafted.stderr[-2000:]
            notes = work / "RELEASE_NOTES.md"
            text = notes.read_text(encoding="utf-8")
            assert f"## {version}" in text and "shipbook:draft" in text, text[:1500]
            final = "\n".join(line for line in text.splitlines() if not line.startswith("<!-- shipbook:draft"))
            notes.write_text(final + "\n", encoding="utf-8")  # edited: the draft line deleted, as it asks
            (work / "VERSION").write_text(version.removeprefix("v") + "\n", encoding="utf-8")
            return ["RELEASE_NOTES.md", "VERSION"]

        self.pull_request(f"chore(release): {version}", "alice", "bob", f"release/{version}", release)


def verify_evidence(twin, rec: dict) -> str:
    """What a person needs to see why verify said what it said: facts, checks, the judge's reasons table."""
    verify = next((p for p in rec.get("phases", []) if p["name"] == "verify"), {})
    lines = [f"run {rec.get('run_id')} status {rec.get('status')}",
             "facts: " + json.dumps({k: v for k, v in rec.get("facts", {}).items()
                                     if k in ("recommendation", "rollback_reasons", "hold_reasons", "judge_verdict",
                                              "judge_failed_metrics", "verify_baseline", "verify_canary")},
                                    ensure_ascii=False)]
    lines += [f"  [{c['verdict']}] {c['id']}: {c['summary']}" for c in verify.get("checks", [])]
    lines.append(judge_table(twin, rec))
    return "\n".join(lines)


def judge_table(twin, rec: dict) -> str:
    """The reasons table (baseline, canary, effect, threshold, p-value per metric) from the executed notebook."""
    path = twin.runs / "sandbox" / rec["version"] / rec["run_id"] / "04_verify.ipynb"
    if not path.is_file():
        return f"(no {path.name})"
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "v.judge()" in cell.source:
            texts = [o.get("data", {}).get("text/plain", "") for o in cell.get("outputs", [])]
            return "judge reasons:\n" + ("\n".join(t for t in texts if t) or "(no output)")
    return "(no judge cell)"


def test_five_healthy_releases_in_a_row_never_recommend_a_rollback(twin):
    twin.reset("healthy")
    repo = AppRepo(twin)
    assert served_version(twin) == PREVIOUS
    previous, verdicts = PREVIOUS, []
    for version in VERSIONS:
        if version != VERSIONS[0]:  # the twin's history already ends in the v1.0.0 release commit
            repo.prepare(version)
        t0 = time.monotonic()
        out = twin.run("release", version, timeout=RELEASE_TIMEOUT)
        took = time.monotonic() - t0
        rec = audit.latest_run(twin.runs, "sandbox", version)
        evidence = verify_evidence(twin, rec) if rec else "(no run record)"
        print(f"\n{version}: exit {out.returncode} in {took:.0f}s\n{evidence}", flush=True)
        assert out.returncode == 0, f"{version}: exit {out.returncode}\n{out.stderr[-3000:]}\n{evidence}"
        assert rec is not None and rec["status"] == "succeeded", evidence
        recommendation = rec["facts"].get("recommendation")
        verdicts.append((version, recommendation, rec["facts"].get("judge_verdict"), round(took)))
        assert recommendation == "PROCEED", f"{version}: {recommendation}, not PROCEED\n{evidence}"
        assert rec["previous_version"] == previous, rec["previous_version"]
        precheck = {c["id"]: c for p in rec["phases"] if p["name"] == "precheck" for c in p["checks"]}
        for check_id in ("code.review", "code.release_notes"):  # the preparation was a real, reviewed change
            assert precheck[check_id]["verdict"] == "pass", precheck[check_id]
        assert served_version(twin) == version
        assert version in remote_tags(twin)
        previous = version
    print("\nverdicts (version, recommendation, judge, seconds):", verdicts)
