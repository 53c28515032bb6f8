"""SCENARIO=healthy: five releases in a row never recommend a rollback (issue 6).

A rehearsal: each release runs the whole pipeline and waits out the verify canary window, so
this takes minutes per release. Marked `rehearsal`: `make test` leaves it out, `make rehearsals`
and CI run it.

The twin prepares v1.0.0 (its history ends in the v1.0.0 release commit, v0.9.0 deployed). Each
later release is prepared the way the release manager does it, with git and the shipbook CLI on
the app's working copy: a small change merged through an approved pull request, then a release
pull request whose notes section `shipbook notes VERSION` drafted (the draft marker deleted, as
the draft asks), and `main` pushed. The GitHub twin has no API to open, review or merge a pull
request: the two pull requests are recorded in its metadata file (`<origin>/github.json`, the
records the twin's history builder writes and the twin re-reads when it changes), as GitHub
would record the merges.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest
from shipbook import audit
from test_release import remote_tags, served_version

pytestmark = pytest.mark.rehearsal

PREVIOUS = "v0.9.0"
VERSIONS = ("v1.0.0", "v1.0.1", "v1.0.2", "v1.0.3", "v1.0.4")
RELEASE_TIMEOUT = 900  # one release: precheck, backup, deploy, verify (a 120 s canary window), report
ORG = "example"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AppRepo:
    """The app's working copy and its GitHub twin metadata, as the release manager works with them."""

    def __init__(self, twin) -> None:
        self.twin = twin
        self.work = Path(twin.url("app_repo"))
        self.meta_path = Path(twin.url("git_remote")) / "github.json"

    def meta(self) -> dict:
        return json.loads(self.meta_path.read_text(encoding="utf-8"))

    def git(self, *args: str, who: str = "") -> str:
        env = dict(self.twin.env_vars)
        if who:
            person = self.meta()["people"][who]
            for role in ("AUTHOR", "COMMITTER"):
                env[f"GIT_{role}_NAME"], env[f"GIT_{role}_EMAIL"] = person["name"], person["email"]
        out = subprocess.run(["git", "-C", str(self.work), *args], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr}"
        return out.stdout.strip()

    def pull_request(self, title: str, author: str, reviewer: str, branch: str, edit) -> int:
        """Branch off main, `edit(work)` → paths to commit, commit as `author`, merge as `reviewer` after
        their approval, push main; record the pull request on the GitHub twin. Returns its number."""
        meta = self.meta()
        number = max((p["number"] for p in meta["pulls"]), default=0) + 1
        opened = _now()
        base = self.git("rev-parse", "main")
        self.git("checkout", "-q", "-b", branch)
        self.git("add", "--", *edit(self.work))
        self.git("commit", "-q", "-m", title, who=author)
        head = self.git("rev-parse", "HEAD")
        self.git("checkout", "-q", "main")
        self.git("merge", "-q", "--no-ff", "-m", f"Merge pull request #{number} from {ORG}/{branch}\n\n{title}",
                 branch, who=reviewer)
        merge = self.git("rev-parse", "HEAD")
        self.git("branch", "-q", "-D", branch)
        self.git("push", "-q", "origin", "main", f"{head}:refs/pull/{number}/head")
        merged = _now()
        meta["pulls"].append({
            "number": number, "title": title, "body": "", "user": author, "state": "closed", "merged": True,
            "created_at": opened, "merged_at": merged, "closed_at": merged, "merged_by": reviewer,
            "head": {"ref": branch, "sha": head}, "base": {"ref": "main", "sha": base},
            "merge_commit_sha": merge, "commits": [head],
            "reviews": [{"id": 90000 + number, "user": reviewer, "state": "APPROVED", "submitted_at": merged,
                         "commit_id": head, "body": "LGTM"}],
        })
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.meta_path)  # the twin re-reads the file when its mtime changes
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
