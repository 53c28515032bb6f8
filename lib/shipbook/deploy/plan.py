"""Plan, then apply: the release tag (annotated, the notes as its message), its push, the GitHub release.

The plan is computed and shown first, and nothing changes until `apply_tag`; a dry run stops
after the plan. The push is the deploy's trigger (the workflow runs on tag pushes), so a push
that fails deletes the local tag again: the next attempt starts from the same state.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from shipbook import gitinfo, versions
from shipbook.config import Environment
from shipbook.deploy.model import TAG
from shipbook.deploy.notes import ReleaseNotes, read_notes
from shipbook.deploy.version import VersionCheck, remote_refs
from shipbook.errors import InfraError, ShipbookError
from shipbook.github import GitHub
from shipbook.result import Check

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """What the deploy will do. Shown before anything changes."""

    version: str
    commit: str
    subject: str
    repo: str
    remote: str
    remote_url: str
    remote_branch: str
    tagger: str
    notes: ReleaseNotes
    version_check: VersionCheck
    github: str  # where the GitHub release will be created, '' when GitHub is not configured
    prerelease: bool
    run_id: str
    dry_run: bool
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return self.version

    @property
    def message(self) -> str:
        return self.notes.tag_message(self.run_id)

    @property
    def resumed(self) -> bool:
        return self.version_check.resumed

    def checks(self) -> list[Check]:
        """release.version, release.notes, and release.tag as far as the plan can tell."""
        if self.problems:
            tag = Check(TAG, "fail", "; ".join(self.problems))
        elif self.dry_run:
            tag = Check(TAG, "skip", f"dry run: would tag {self.commit[:12]} as {self.tag} and push to "
                        f"{self.remote}")
        else:
            tag = Check(TAG, "pass", f"ready to tag {self.commit[:12]} as {self.tag}")
        return [self.version_check.check(), self.notes.check(), tag]

    @property
    def blocked(self) -> bool:
        return any(c.verdict == "fail" for c in self.checks())

    def table(self) -> pd.DataFrame:
        action = "push the existing tag (resumed run)" if self.resumed else "create annotated tag, push it"
        rows = [("tag", self.tag + (" (pre-release)" if self.prerelease else "")),
                ("release commit", f"{self.commit[:12]} {self.subject}"),
                ("remote", f"{self.remote} ({self.remote_url})"),
                ("on remote branch", self.remote_branch or "(not the head of a remote branch)"),
                ("tagger", self.tagger or "(unset)"),
                ("action", "none (dry run)" if self.dry_run else action),
                ("GitHub release", self.github or "(GitHub not configured: no release page)"),
                ("notes", f"{self.notes.file}: {self.notes.heading or '(missing)'}"),
                ("notes excerpt", self.notes.excerpt() if self.notes.body else "—")]
        rows += [("problem", p) for p in self.problems] + [("warning", w) for w in self.warnings]
        return pd.DataFrame(rows, columns=["item", "value"])


def github_target(env: Environment) -> str:
    """Where a GitHub release would go: a token or the twin (api_url) must be configured."""
    if not env.github.repository or not (env.github.token or env.github.api_url):
        return ""
    return f"{env.github.repository} at {env.github.api_url or 'https://api.github.com'}"


def make_plan(env: Environment, vc: VersionCheck, release_commit: str = "", run_id: str = "",
              dry_run: bool = True) -> Plan:
    """The plan for tagging `vc.version`. Reads only: git, the notes file, the remote's refs.

    `release_commit` is the commit the run recorded when it started (the runner passes it to every
    phase): the tag goes on it, not on whatever HEAD is now, so deploy tags the commit precheck checked.
    """
    repo = env.app.repo
    problems: list[str] = []
    warnings: list[str] = []
    ref = release_commit or ("HEAD" if not vc.resumed else vc.version)
    commit = gitinfo.rev_or_empty(repo, ref)
    if not commit and release_commit:
        problems.append(f"the run's release commit {release_commit[:12]} is not in {repo} (history rewritten?): "
                        "start a new run")
    elif not commit:
        problems.append(f"release commit {ref!r} does not exist in {repo}")
    elif release_commit and not vc.resumed:
        head = gitinfo.rev_or_empty(repo, "HEAD")
        if head != commit:
            warnings.append(f"HEAD of {repo} has moved to {head[:12] or '(none)'} since the run recorded its release "
                            f"commit: {vc.version} tags {commit[:12]} (the run's release commit), not HEAD")
    if vc.resumed and release_commit and commit != gitinfo.rev_or_empty(repo, vc.version):
        problems.append(f"{vc.version} already points at {gitinfo.rev_or_empty(repo, vc.version)[:12]}, "
                        f"not at the release commit {commit[:12]}")
    subject = gitinfo.git(repo, "log", "-1", "--format=%s", commit) if commit else ""
    refs = vc.remote_refs or remote_refs(repo, env.github.remote)
    branch = next((b for b, sha in sorted(refs.heads.items()) if sha == commit), "")
    if commit and not branch:
        containing = [b for b, sha in sorted(refs.heads.items()) if _is_ancestor(repo, commit, sha)]
        branch = f"in {', '.join(containing)} (not its head)" if containing else ""
        if not containing:
            warnings.append(f"{commit[:12]} is on no branch of {env.github.remote}: the tag push will publish it")
    tagger = gitinfo.user(repo)
    if not tagger and not vc.resumed:
        problems.append(f"no git identity in {repo} (user.name / user.email): an annotated tag needs a tagger")
    notes = read_notes(repo, env.app.notes_file, commit, vc.version) if commit else \
        ReleaseNotes(env.app.notes_file, "", vc.version, problems=["no release commit"])
    return Plan(vc.version, commit, subject, str(repo), env.github.remote, vc.remote_url, branch, tagger, notes,
                vc, github_target(env), bool(versions.parse(vc.version).prerelease), run_id, dry_run,
                problems, warnings)


def _is_ancestor(repo: str | Path, commit: str, head: str) -> bool:
    proc = subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", commit, head],
                          capture_output=True, timeout=60, check=False)
    return proc.returncode == 0


@dataclass
class TagResult:
    """What `apply_tag` did: tag created, pushed (and where it points), GitHub release."""

    tag: str
    created: bool = False
    pushed: bool = False
    remote_commit: str = ""
    release_url: str = ""
    skipped: str = ""
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.pushed and not self.problems

    def check(self, plan: Plan) -> Check:
        if self.skipped:
            return Check(TAG, "skip", self.skipped)
        if self.problems:
            return Check(TAG, "fail", "; ".join(self.problems))
        verb = "created and pushed" if self.created else "already created by this run; on the remote"
        release = f"; GitHub release {self.release_url}" if self.release_url else ""
        summary = f"annotated tag {self.tag} on {self.remote_commit[:12]} {verb} to {plan.remote}{release}"
        if self.warnings:
            return Check(TAG, "warn", summary + "; " + "; ".join(self.warnings))
        return Check(TAG, "pass", summary)

    def table(self) -> pd.DataFrame:
        rows = [("tag", self.tag), ("created now", self.created), ("pushed", self.pushed),
                ("remote points at", self.remote_commit[:12] or "—"), ("GitHub release", self.release_url or "—")]
        rows += [("skipped", self.skipped)] if self.skipped else []
        rows += [("problem", p) for p in self.problems] + [("warning", w) for w in self.warnings]
        return pd.DataFrame(rows, columns=["item", "value"])


def apply_tag(plan: Plan, github: GitHub | None = None) -> TagResult:
    """Create the annotated tag and push it; then the GitHub release. Never raises for a failed push."""
    res = TagResult(plan.tag)
    if plan.dry_run:
        res.skipped = "dry run: nothing tagged or pushed"
        return res
    if plan.blocked:
        res.skipped = "the plan is blocked: nothing tagged or pushed"
        return res
    repo = plan.repo
    if not plan.resumed:
        _create_tag(repo, plan)
        res.created = True
    try:
        gitinfo.git(repo, "push", plan.remote, f"refs/tags/{plan.tag}")
    except InfraError as exc:
        if res.created:
            gitinfo.git(repo, "tag", "-d", plan.tag, check=False)
        res.problems.append(f"push of {plan.tag} to {plan.remote} failed (local tag removed again): {exc}")
        return res
    res.pushed = True
    res.remote_commit = remote_refs(repo, plan.remote).tags.get(plan.tag, "")
    if res.remote_commit != plan.commit:
        res.problems.append(f"{plan.remote} has {plan.tag} at {res.remote_commit[:12] or 'nothing'}, "
                            f"expected {plan.commit[:12]}")
    if github is not None:
        try:
            release = github.create_release(plan.tag, f"{plan.tag}", plan.notes.body, plan.prerelease)
            res.release_url = str(release.get("html_url") or release.get("url") or "")
        except ShipbookError as exc:  # the tag is out and the deploy is running: a missing page is a warning
            res.warnings.append(f"GitHub release not created: {exc}")
    log.info("tag %s pushed to %s", plan.tag, plan.remote)
    return res


def _create_tag(repo: str, plan: Plan) -> None:
    """`git tag -a` with the message from a file (kept verbatim but whitespace: '#' lines are notes headings)."""
    fd, path = tempfile.mkstemp(prefix="shipbook-tag-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(plan.message)
        gitinfo.git(repo, "tag", "-a", "--cleanup=whitespace", "-F", path, plan.tag, plan.commit)
    finally:
        os.unlink(path)
