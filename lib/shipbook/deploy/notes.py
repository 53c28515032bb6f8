"""`release.notes`: the version's section of the release notes, final, read from the release commit.

Read from the commit being tagged (`git show COMMIT:FILE`), not the working tree, so the tag
message is exactly what was reviewed. The section is `## <version>` (also `## [v1.2.3]`,
`## 1.2.3 - 2025-01-31`) up to the next `## ` heading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from shipbook import gitinfo
from shipbook.deploy.model import NOTES, RUN_TRAILER
from shipbook.errors import InfraError
from shipbook.result import Check

PLACEHOLDERS = re.compile(r"\b(?:TODO|TBD|FIXME|WIP|XXX)\b|(?i:\bunreleased\b)")
EXCERPT_LINES = 15


def find_section(text: str, version: str) -> tuple[str, str] | None:
    """(heading, body) of `version`'s section, or None."""
    bare = re.escape(version.removeprefix("v"))
    heading = re.compile(rf"^##[ \t]+\[?v?{bare}\]?(?=[\s:(]|$).*$", re.MULTILINE)
    m = heading.search(text)
    if not m:
        return None
    rest = text[m.end():]
    nxt = re.search(r"^##[ \t]", rest, re.MULTILINE)
    return m.group(0).strip(), (rest[:nxt.start()] if nxt else rest).strip("\n")


@dataclass
class ReleaseNotes:
    """The version's notes and what is wrong with them."""

    file: str
    commit: str
    version: str
    heading: str = ""
    body: str = ""
    problems: list[str] = field(default_factory=list)

    def check(self) -> Check:
        if self.problems:
            return Check(NOTES, "fail", "; ".join(self.problems))
        items = sum(1 for line in self.body.splitlines() if line.lstrip().startswith(("-", "*")))
        return Check(NOTES, "pass", f"{self.file} at {self.commit[:12]}: section '{self.heading}' "
                     f"with {items} item(s), final")

    def excerpt(self, lines: int = EXCERPT_LINES) -> str:
        body = self.body.splitlines()
        more = f"\n… ({len(body) - lines} more lines)" if len(body) > lines else ""
        return "\n".join(body[:lines]) + more

    def tag_message(self, run_id: str = "") -> str:
        """The annotated tag's message: a title, the notes section, and the run that made it."""
        trailer = f"\n\n{RUN_TRAILER} {run_id}" if run_id else ""
        return f"Release {self.version}\n\n{self.body.strip()}{trailer}\n"

    def _repr_markdown_(self) -> str:
        if self.problems:
            return f"**Release notes: not ready** — {'; '.join(self.problems)}"
        return f"{self.heading}\n\n{self.body}"


def read_notes(repo: str | Path, notes_file: str, commit: str, version: str) -> ReleaseNotes:
    """The version's section of `notes_file` as of `commit`, with its problems listed."""
    notes = ReleaseNotes(notes_file, commit, version)
    try:
        text = gitinfo.git(repo, "show", f"{commit}:{notes_file}")
    except InfraError:
        notes.problems.append(f"{notes_file} does not exist at {commit[:12]}")
        return notes
    found = find_section(text, version)
    if found is None:
        notes.problems.append(f"{notes_file} has no '## {version}' section at {commit[:12]}")
        return notes
    notes.heading, notes.body = found
    content = [line for line in notes.body.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not content:
        notes.problems.append(f"the '{notes.heading}' section of {notes_file} is empty")
    marks = sorted({m.group(0) for m in PLACEHOLDERS.finditer(notes.heading + "\n" + notes.body)})
    if marks:
        notes.problems.append(f"the '{notes.heading}' section is not final (contains {', '.join(marks)})")
    return notes
