"""`shipbook notes`: conventional commits since the previous tag drafted into the notes file."""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import pytest
from shipbook import notes
from shipbook.config import AppSection, Environment
from shipbook.deploy.notes import PLACEHOLDERS, find_section
from shipbook.errors import InputError


def _git(repo: Path, *args: str) -> str:
    cfg = ("-c", "user.email=t@example.invalid", "-c", "user.name=t", "-c", "commit.gpgsign=false")
    return subprocess.run(["git", "-C", str(repo), *cfg, *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _commit(repo: Path, message: str) -> str:
    _git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def _pull_request(repo: Path, number: int, title: str, *messages: str) -> str:
    _git(repo, "checkout", "-q", "-b", f"pr{number}")
    for m in messages:
        _commit(repo, m)
    _git(repo, "checkout", "-q", "main")
    _git(repo, "merge", "-q", "--no-ff", "-m", f"Merge pull request #{number} from o/pr{number}\n\n{title}",
         f"pr{number}")
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """v1.0.0, then: a feature PR, a breaking PR, a squash merge, a direct fix, docs, the release commit."""
    r = tmp_path / "app"
    r.mkdir()
    _git(r, "init", "-q", "-b", "main")
    _commit(r, "chore: start")
    _git(r, "tag", "-a", "v1.0.0", "-m", "v1.0.0")
    _pull_request(r, 4, "feat(shop): wish lists", "feat(shop): wish list model", "test: wish lists")
    _pull_request(r, 5, "refactor(api)!: drop the v1 endpoints",
                  "refactor(api): remove v1\n\nBREAKING CHANGE: clients must call /v2/")
    _commit(r, "fix(cart): rounding of totals (#6)")
    _commit(r, "fix: typo in the footer")
    _commit(r, "docs: deployment guide")
    _commit(r, "Update README")
    _commit(r, "chore(release): v1.1.0")
    return r


def test_conventional_titles():
    c = notes.Conventional.parse("feat(shop)!: new checkout")
    assert (c.type, c.scope, c.subject, c.breaking, c.kind) == ("feat", "shop", "new checkout", True, "breaking")
    assert notes.Conventional.parse("fix: x").kind == "fixes"
    assert notes.Conventional.parse("Update README") == notes.Conventional("", "", "Update README", False)
    assert notes.Conventional.parse("Update README").kind == "other"


def test_collect_groups_the_changes_since_the_previous_tag(repo):
    draft = notes.collect(repo, "v1.1.0", "v1.0.0")
    groups = {k: [e.line() for e in v] for k, v in draft.by_kind().items()}
    assert groups["features"] == ["- **shop**: wish lists (#4)"]
    assert groups["breaking"] == ["- refactor(api)!: drop the v1 endpoints (#5) — clients must call /v2/"]
    sha = {e.title: e.sha[:7] for e in draft.entries}
    assert groups["fixes"] == ["- **cart**: rounding of totals (#6)",
                               f"- typo in the footer ({sha['fix: typo in the footer']})"]
    assert [line.split(" (")[0] for line in groups["other"]] == ["- docs: deployment guide", "- Update README"]
    assert all("release" not in e.title for e in draft.entries)


def test_the_section_is_a_draft_both_checks_refuse(repo):
    section = notes.collect(repo, "v1.1.0", "v1.0.0").section(today=date(2025, 9, 1))
    assert section.startswith("## v1.1.0\n\n<!-- shipbook:draft TODO: drafted by `shipbook notes v1.1.0` on 2025-09-01")
    assert section.index("### Breaking changes") < section.index("### Features") < section.index("### Fixes") \
        < section.index("### Other")
    heading, body = find_section(section, "v1.1.0")
    assert notes.is_draft(heading, body) == ["shipbook:draft"]
    assert PLACEHOLDERS.search(body)  # the deploy phase's release.notes refuses it too
    assert notes.is_draft("## v1.1.0 (draft)", "- x") and not notes.is_draft("## v1.1.0", "- save order drafts")


def test_write_section_creates_inserts_replaces_a_draft_and_keeps_a_final_section(tmp_path):
    path = tmp_path / "RELEASE_NOTES.md"
    assert notes.write_section(path, "v1.0.0", "## v1.0.0\n\n- first\n") == "created"
    assert path.read_text() == "# Release notes\n\n## v1.0.0\n\n- first\n"
    draft = f"## v1.1.0\n\n{notes.DRAFT_MARKER} TODO -->\n\n- second\n"
    assert notes.write_section(path, "v1.1.0", draft) == "inserted"
    text = path.read_text()
    assert text.index("## v1.1.0") < text.index("## v1.0.0") and text.startswith("# Release notes\n\n## v1.1.0")
    assert notes.write_section(path, "v1.1.0", f"## v1.1.0\n\n{notes.DRAFT_MARKER} TODO -->\n\n- again\n") == \
        "replaced"
    assert "- again" in path.read_text() and "- second" not in path.read_text() and "- first" in path.read_text()
    with pytest.raises(InputError, match="already has a final '## v1.0.0' section"):
        notes.write_section(path, "v1.0.0", "## v1.0.0\n\n- overwritten\n")
    assert notes.write_section(path, "v1.0.0", "## v1.0.0\n\n- forced\n", force=True) == "replaced"
    assert path.read_text().count("## ") == 2 and "- forced" in path.read_text()


def test_draft_into_file_finds_the_previous_tag(repo):
    env = Environment(name="t", app=AppSection(repo=str(repo), notes_file="CHANGES.md"))
    done = notes.draft_into_file(env, "v1.1.0", today=date(2025, 9, 1))
    assert done.action == "created" and done.path == repo / "CHANGES.md"
    assert "since v1.0.0" in done.message() and "features: 1, fixes: 2" in done.message()
    assert "- **shop**: wish lists (#4)" in done.path.read_text()
    assert notes.draft_into_file(env, "v1.1.0").action == "replaced"  # still a draft: redrafted
    with pytest.raises(InputError):
        notes.draft_into_file(env, "1.1")
