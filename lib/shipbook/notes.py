"""`shipbook notes VERSION`: draft a release's notes from the conventional commits since the previous tag.

Why draft and not generate the final text: notes are for people; the commits give the list
(features, fixes, breaking changes, other), a person gives the words. So the draft carries a
marker (`<!-- shipbook:draft TODO … -->`) that both `code.release_notes` (precheck) and
`release.notes` (deploy, through its TODO placeholder rule) refuse, until someone edits the
section and deletes the marker.

What counts as one entry: the first-parent history of the release branch. A merged pull request
("Merge pull request #N from …", title in the body) is one entry under its title; a squash merge
("feat: x (#N)") and a direct commit are entries of their own. The release commit itself
(`chore(release): …`) is left out. Sections are read and found with `shipbook.deploy.notes`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from shipbook import gitinfo, versions
from shipbook.config import Environment
from shipbook.deploy.notes import find_section
from shipbook.errors import InputError

log = logging.getLogger(__name__)

DRAFT_MARKER = "<!-- shipbook:draft"
# A section is a draft while it carries our marker, or says so in its heading ("## v1.2.0 (draft)").
DRAFT = re.compile(r"shipbook:draft|^##.*[\[(]draft[\])]", re.IGNORECASE | re.MULTILINE)
KINDS = ("breaking", "features", "fixes", "other")
TITLES = {"breaking": "Breaking changes", "features": "Features", "fixes": "Fixes", "other": "Other"}

_CONVENTIONAL = re.compile(r"^(?P<type>[a-zA-Z]+)(?:\((?P<scope>[^)]*)\))?(?P<bang>!)?:\s*(?P<subject>.+)$")
_MERGE_PR = re.compile(r"^Merge pull request #(?P<number>\d+) from \S+")
_SQUASH_PR = re.compile(r"\s*\(#(?P<number>\d+)\)\s*$")
_BREAKING_FOOTER = re.compile(r"^BREAKING[ -]CHANGE:\s*(?P<text>.+)$", re.MULTILINE)
_SEP, _END = "\x1f", "\x1e"


@dataclass(frozen=True)
class Conventional:
    """A commit title read as a conventional commit (`type(scope)!: subject`); type '' when it is not one."""

    type: str
    scope: str
    subject: str
    breaking: bool

    @classmethod
    def parse(cls, title: str) -> Conventional:
        m = _CONVENTIONAL.match(title.strip())
        if not m:
            return cls("", "", title.strip(), False)
        return cls(m["type"].lower(), m["scope"] or "", m["subject"].strip(), bool(m["bang"]))

    @property
    def kind(self) -> str:
        if self.breaking:
            return "breaking"
        return {"feat": "features", "fix": "fixes"}.get(self.type, "other")


@dataclass
class Entry:
    """One line of the notes: a pull request, a squash merge or a direct commit."""

    title: str
    sha: str
    pr: int | None = None
    breaking_notes: list[str] = field(default_factory=list)

    @property
    def commit(self) -> Conventional:
        return Conventional.parse(self.title)

    @property
    def kind(self) -> str:
        return "breaking" if self.breaking_notes else self.commit.kind

    def line(self) -> str:
        c = self.commit
        if c.type in ("feat", "fix"):
            text = f"**{c.scope}**: {c.subject}" if c.scope else c.subject
        else:
            text = self.title.strip()
        text = _SQUASH_PR.sub("", text) + (f" (#{self.pr})" if self.pr else f" ({self.sha[:7]})")
        if self.breaking_notes:
            text += " — " + "; ".join(self.breaking_notes)
        return f"- {text}"


@dataclass
class Draft:
    """The entries since the previous release, grouped; `section()` is the Markdown to write."""

    version: str
    previous: str
    base: str
    head: str
    entries: list[Entry] = field(default_factory=list)

    def by_kind(self) -> dict[str, list[Entry]]:
        out: dict[str, list[Entry]] = {k: [] for k in KINDS}
        for e in self.entries:
            out[e.kind].append(e)
        return out

    def section(self, today: date | None = None) -> str:
        since = f"since {self.previous}" if self.previous else "in the history"
        lines = [f"## {self.version}", "",
                 f"{DRAFT_MARKER} TODO: drafted by `shipbook notes {self.version}` on "
                 f"{(today or date.today()).isoformat()} from the commits {since} "
                 f"({self.base[:7] or 'root'}..{self.head[:7]}); edit, then delete this line -->", ""]
        for kind, entries in self.by_kind().items():
            if entries:
                lines += [f"### {TITLES[kind]}", "", *[e.line() for e in entries], ""]
        if not self.entries:
            lines += ["- TODO: no changes found since the previous release", ""]
        return "\n".join(lines)


def is_draft(heading: str, body: str) -> list[str]:
    """The draft markers in a section (empty when it is final in that respect)."""
    return sorted({m.group(0) for m in DRAFT.finditer(f"{heading}\n{body}")})


# --------------------------------------------------------------------------- reading the history


def _log(repo: str | Path, *args: str) -> list[tuple[str, list[str], str]]:
    """(sha, parents, message) of `git log ARGS`, newest first."""
    out = gitinfo.git(repo, "log", f"--format=%H{_SEP}%P{_SEP}%B{_END}", *args)
    records = []
    for raw in out.split(_END):
        raw = raw.strip("\n")
        if not raw:
            continue
        sha, parents, message = raw.split(_SEP, 2)
        records.append((sha, parents.split(), message.strip()))
    return records


def _breaking_notes(message: str) -> list[str]:
    return [m["text"].strip() for m in _BREAKING_FOOTER.finditer(message)]


def collect(repo: str | Path, version: str, previous: str = "", commit: str = "HEAD") -> Draft:
    """The entries from `previous` (a tag; '' = the whole history) up to `commit`, oldest first."""
    head = gitinfo.rev(repo, commit)
    base = gitinfo.rev(repo, previous) if previous else ""
    span = f"{base}..{head}" if base else head
    draft = Draft(version, previous, base, head)
    for sha, parents, message in reversed(_log(repo, "--first-parent", span)):
        title, _, body = message.partition("\n")
        merged = _MERGE_PR.match(title)
        if len(parents) > 1:
            inner = _log(repo, f"{parents[0]}..{sha}", "--no-merges")
            notes = [n for _, _, m in inner for n in _breaking_notes(m)] + _breaking_notes(message)
            pr_title = body.strip().splitlines()[0].strip() if body.strip() else ""
            if merged:
                entry = Entry(pr_title or title, sha, int(merged["number"]), notes)
            else:  # a merge that is not a pull request: its commits, each on its own line
                for isha, _, imessage in reversed(inner):
                    ititle = imessage.partition("\n")[0]
                    draft.entries.append(Entry(ititle, isha, _pr_of(ititle), _breaking_notes(imessage)))
                continue
        else:
            entry = Entry(title, sha, _pr_of(title), _breaking_notes(message))
        if _is_release_commit(entry.title):
            continue
        draft.entries.append(entry)
    return draft


def _pr_of(title: str) -> int | None:
    m = _SQUASH_PR.search(title)
    return int(m["number"]) if m else None


def _is_release_commit(title: str) -> bool:
    c = Conventional.parse(title)
    return c.type == "chore" and c.scope == "release"


def previous_tag(repo: str | Path, version: str) -> str:
    return versions.previous_release(gitinfo.tags(repo), version)


# --------------------------------------------------------------------------- writing the file


def write_section(path: Path, version: str, section: str, force: bool = False) -> str:
    """Put `section` into the notes file: replace VERSION's draft (or any section with `force`),
    else insert it above the newest release. Returns what was done: created/inserted/replaced.
    """
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    found = find_section(text, version) if text else None
    if found is not None:
        heading, body = found
        if not is_draft(heading, body) and not force:
            raise InputError("notes", f"{path.name} already has a final '{heading}' section; "
                             "edit it, or redraft with --force")
        start = text.index(heading)
        nxt = re.search(r"^##[ \t]", text[start + len(heading):], re.MULTILINE)
        end = start + len(heading) + nxt.start() if nxt else len(text)
        new = text[:start] + section.rstrip("\n") + "\n\n" + text[end:].lstrip("\n")
        action = "replaced"
    elif text:
        first = re.search(r"^##[ \t]", text, re.MULTILINE)
        at = first.start() if first else len(text)
        head = text[:at].rstrip("\n")
        new = (head + "\n\n" if head else "") + section.rstrip("\n") + "\n\n" + text[at:].lstrip("\n")
        action = "inserted"
    else:
        new = "# Release notes\n\n" + section.rstrip("\n") + "\n"
        action = "created"
    path.write_text(new.rstrip("\n") + "\n", encoding="utf-8")
    log.info("release notes %s: %s section %s", path, version, action)
    return action


@dataclass
class Drafted:
    """What `shipbook notes` did, for the CLI to print."""

    path: Path
    action: str
    draft: Draft

    def message(self) -> str:
        counts = ", ".join(f"{TITLES[k].lower()}: {len(v)}" for k, v in self.draft.by_kind().items() if v) or \
            "no changes"
        return (f"{self.path}: {self.draft.version} section {self.action} ({counts}, since "
                f"{self.draft.previous or 'the first commit'}). Edit it, delete the shipbook:draft line, commit.")


def draft_into_file(env: Environment, version: str, *, previous: str = "", commit: str = "HEAD",
                    force: bool = False, today: date | None = None) -> Drafted:
    """`shipbook notes VERSION`: draft VERSION's section into `app.notes_file` of the app's working copy.

    The working copy on purpose: the draft is something to edit and commit; the checks then read
    the committed file at the release commit.
    """
    versions.parse(version)
    repo = Path(env.app.repo)
    if not gitinfo.is_repo(repo):
        raise InputError("app.repo", f"{repo} is not a git repository")
    previous = previous or previous_tag(repo, version)
    draft = collect(repo, version, previous, commit)
    path = repo / env.app.notes_file
    action = write_section(path, version, draft.section(today), force=force)
    return Drafted(path, action, draft)
