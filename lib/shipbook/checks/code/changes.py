"""`code.review`, `code.release_notes`: the changes since the previous release, each reviewed and in the notes.

Reviews are read from GitHub (the twin in the sandbox); without GitHub configured `code.review` is a
`manual` item. A reviewer's latest decisive review counts, the author's own approval never does.
The notes: the version's section of the notes file at the release commit exists, is final, and
names every change (`shipbook notes` collects them from the conventional commits) by pull-request
number or by subject.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shipbook import gitinfo
from shipbook import notes as notes_draft
from shipbook.aws import MAX_ITEMS
from shipbook.checks import CheckResult, Release, check, worst
from shipbook.checks.code import gh
from shipbook.checks.worktree import Previous, previous
from shipbook.config import Environment
from shipbook.deploy import notes as deploy_notes
from shipbook.errors import InfraError
from shipbook.github import GitHub

REVIEW, NOTES = "code.review", "code.release_notes"


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


def compare_commits(github: GitHub, base: str, head: str) -> list[dict]:
    """The commits between `base` and `head` (compare API, paginated; the twin answers in one page)."""
    path = f"/repos/{github.repository}/compare/{base}...{head}"
    seen: dict[str, dict] = {}
    total = None
    page = 1
    while True:  # the limit policy of GitHub.list_all: more than MAX_ITEMS is an error, never a cut list
        data = github.get(path, per_page=100, page=page)
        total = int(data.get("total_commits") or 0) if total is None else total
        fresh = [c for c in data.get("commits") or [] if c.get("sha") not in seen]
        seen.update((c["sha"], c) for c in fresh)
        if not fresh or len(seen) >= total:
            return list(seen.values())
        if len(seen) > MAX_ITEMS:
            raise InfraError(f"GitHub {path}: more than {MAX_ITEMS} commits; narrow the range")
        page += 1


@check(REVIEW)
def review(env: Environment, release: Release, previous_version: str = "", *, github: Any = gh.AUTO) -> CheckResult:
    """Every commit since the previous release came through a merged pull request with an approval."""
    required = env.precheck.required_approvals
    client = gh.client(env, github)
    prev = previous(release.repo, release.version, previous_version)
    since = prev.tag or "the first commit"
    if client is None:
        return CheckResult(REVIEW, "manual", f"GitHub is not configured: confirm every change since {since} was "
                           "reviewed, then sign off", evidence="no github.repository / token / api_url")
    if prev:
        try:
            commits = compare_commits(client, prev.tag, release.commit)
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
        merged = [p for p in client.get(f"/repos/{client.repository}/commits/{sha}/pulls") or []
                  if p.get("merged_at")]
        if not merged:
            orphans.append(c)
            continue
        for p in merged:
            number = int(p["number"])
            if number not in pulls:
                author = (p.get("user") or {}).get("login") or "?"
                reviews = client.list_all(f"/repos/{client.repository}/pulls/{number}/reviews")
                approvers, blockers = decide(reviews, author)
                pulls[number] = PullReview(number, p.get("title") or "", author, approvers, blockers)
            pulls[number].commits.append(sha)
    rows, problems = [], []
    for pr in sorted(pulls.values(), key=lambda p: p.number):
        ok = pr.approved(required)
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
        f"{len(pulls)} pull request(s) since {since}, each approved (≥{required}); all "
        f"{len(commits)} commit(s) came through them")
    return CheckResult(REVIEW, worst((r["verdict"] for r in rows), default="pass"), summary, rows,
                       evidence=f"{listing}; pulls of each commit and their reviews from {client.api_url}")


def _title(commit: dict) -> str:
    return ((commit.get("commit") or {}).get("message") or "").partition("\n")[0]


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
