"""Feedback items: append-only, chained, folded into open/closed, carried to the next release."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from shipbook import audit, feedback, trail
from shipbook.errors import InputError
from shipbook.redact import Redactor

NOW = datetime(2026, 11, 28, 16, 0, tzinfo=UTC)


def test_items_are_appended_numbered_and_folded(tmp_path):
    a = feedback.add("sandbox", "v1.0.0", "  Product pages slow\nafter deploy ", "problem", "alice",
                     runs_root=tmp_path, now=NOW)
    b = feedback.add("sandbox", "v1.0.0", "Announce the maintenance window earlier", "improvement",
                     runs_root=tmp_path, now=NOW)
    assert (a.id, b.id) == ("F1", "F2")
    assert a.text == "Product pages slow after deploy"
    closed = feedback.close("sandbox", "v1.0.0", "F1", "fixed in v1.0.1", "bob", runs_root=tmp_path, now=NOW)
    assert closed.status == "closed" and closed.resolution == "fixed in v1.0.1"
    assert [i.id for i in feedback.open_items("sandbox", "v1.0.0", runs_root=tmp_path)] == ["F2"]
    assert [i.status for i in feedback.items("sandbox", "v1.0.0", runs_root=tmp_path)] == ["closed", "open"]
    path = tmp_path / "sandbox" / "v1.0.0" / feedback.FILE
    assert len(path.read_text().splitlines()) == 3  # nothing rewritten: one more line per event
    assert feedback.verify("sandbox", "v1.0.0", runs_root=tmp_path) == []


def test_a_changed_line_breaks_the_chain(tmp_path):
    feedback.add("sandbox", "v1.0.0", "one", runs_root=tmp_path, now=NOW)
    feedback.add("sandbox", "v1.0.0", "two", runs_root=tmp_path, now=NOW)
    path = tmp_path / "sandbox" / "v1.0.0" / feedback.FILE
    lines = path.read_text().splitlines()
    entry = json.loads(lines[0])
    entry["text"] = "edited"
    path.write_text(json.dumps(entry) + "\n" + lines[1] + "\n")
    problems = feedback.verify_all(tmp_path, "sandbox")
    assert len(problems) == 1 and "line 2: chain broken" in problems[0]
    path.write_text(lines[1] + "\n")  # first line removed
    assert "line 1: chain broken" in feedback.verify("sandbox", "v1.0.0", runs_root=tmp_path)[0]


def test_the_file_is_outside_run_dirs_so_the_audit_stays_clean(tmp_path):
    run_dir = tmp_path / "sandbox" / "v1.0.0" / "20261128T000000Z-aaaaaa"
    rec = audit.RunRecord.create(tmp_path, env="sandbox", version="v1.0.0", previous_version="", commit="",
                                 operator={}, parameters={}, phases=[], shipbook_version="0",
                                 run_id=run_dir.name)
    rec.save()
    rec.seal(tmp_path)
    feedback.add("sandbox", "v1.0.0", "a problem", runs_root=tmp_path)
    assert trail.verify(tmp_path, "sandbox") == []


def test_inputs_are_checked_and_secrets_masked(tmp_path):
    with pytest.raises(InputError, match="kind"):
        feedback.add("sandbox", "v1.0.0", "x", "bug", runs_root=tmp_path)
    with pytest.raises(InputError, match="empty"):
        feedback.add("sandbox", "v1.0.0", "   ", runs_root=tmp_path)
    with pytest.raises(InputError):
        feedback.add("sandbox", "../../etc", "x", runs_root=tmp_path)
    with pytest.raises(InputError, match="no item"):
        feedback.close("sandbox", "v1.0.0", "F9", runs_root=tmp_path)
    item = feedback.add("sandbox", "v1.0.0", "db password=hunter22 leaked in logs", runs_root=tmp_path,
                        redactor=Redactor(["s3cr3t-value"]))
    assert "hunter22" not in item.text
    assert feedback.open_items("sandbox", "", runs_root=tmp_path) == []


def test_table_labels_follow_the_language(tmp_path):
    feedback.add("sandbox", "v1.0.0", "slow pages", "problem", runs_root=tmp_path, now=NOW)
    found = feedback.open_items("sandbox", "v1.0.0", runs_root=tmp_path)
    ja, en = feedback.table(found, "ja"), feedback.table(found, "en")
    assert list(ja.columns)[1] == "種別" and ja.iloc[0, 1] == "問題点"
    assert list(en.columns)[1] == "kind" and en.iloc[0, 1] == "problem"


# --------------------------------------------------------------------------- the next release's pre-check


def _env(tmp_path, lang="en"):
    """An environment whose app repository has the release tags v0.9.0 and v1.0.0 (and a later rollback tag)."""
    import subprocess

    from shipbook.config import AppSection, Environment

    repo = tmp_path / "app"
    repo.mkdir(exist_ok=True)
    if not (repo / ".git").exists():
        git = ["git", "-C", str(repo), "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
        subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "init"], check=True)
        for tag in ("v0.9.0", "v1.0.0", "v1.0.1-rollback"):
            subprocess.run([*git, "tag", tag], check=True)
    return Environment(name="sandbox", lang=lang, app=AppSection(repo=str(repo)))


def test_the_next_precheck_shows_the_items_still_open_from_the_previous_release(tmp_path):
    runs = tmp_path / "runs"
    feedback.add("sandbox", "v1.0.0", "Product pages <slow> after deploy", "problem", runs_root=runs, now=NOW)
    feedback.add("sandbox", "v1.0.0", "Announce the window earlier", "improvement", runs_root=runs, now=NOW)
    feedback.close("sandbox", "v1.0.0", "F2", "done", runs_root=runs, now=NOW)
    feedback.add("sandbox", "v0.9.0", "An older release's item", runs_root=runs, now=NOW)
    shown = feedback.carried_over(_env(tmp_path), "v1.1.0", "v1.0.0", runs_root=runs)
    assert shown.previous == "v1.0.0" and [i.id for i in shown.found] == ["F1"]
    assert shown.note.startswith("1 feedback item(s) still open from the previous release v1.0.0 (informational")
    html = shown._repr_html_()
    assert "<table" in html and "Product pages &lt;slow&gt; after deploy" in html and "F1" in html
    assert "Announce the window" not in html and "older release" not in html
    assert "Product pages <slow> after deploy" in repr(shown)
    ja = feedback.carried_over(_env(tmp_path, "ja"), "v1.1.0", "v1.0.0", runs_root=runs)
    assert "前回リリース v1.0.0 の未解決のフィードバック: 1 件" in ja.note and "問題点" in ja._repr_html_()


def test_without_open_items_the_precheck_says_so_in_one_line(tmp_path):
    runs = tmp_path / "runs"
    shown = feedback.carried_over(_env(tmp_path), "v1.1.0", "v1.0.0", runs_root=runs)
    assert shown.found == [] and shown.note == "No feedback items still open from the previous release v1.0.0."
    assert shown._repr_html_() == f"<p>{shown.note}</p>" and repr(shown) == shown.note
    feedback.add("sandbox", "v1.0.0", "fixed later", runs_root=runs, now=NOW)
    feedback.close("sandbox", "v1.0.0", "F1", runs_root=runs, now=NOW)
    assert feedback.carried_over(_env(tmp_path), "v1.1.0", "v1.0.0", runs_root=runs).found == []


def test_the_previous_release_is_found_from_the_tags_when_the_run_does_not_give_it(tmp_path):
    runs = tmp_path / "runs"
    feedback.add("sandbox", "v1.0.0", "slow pages", runs_root=runs, now=NOW)
    shown = feedback.carried_over(_env(tmp_path), "v1.1.0", runs_root=runs)  # JupyterLab: previous_version ""
    assert shown.previous == "v1.0.0" and len(shown.found) == 1  # not the rollback tag
    first = feedback.carried_over(_env(tmp_path), "v0.9.0", runs_root=runs)
    assert first.previous == "" and first.note == "No previous release: no feedback carried over."


def test_feedback_that_cannot_be_read_is_a_note_never_an_error(tmp_path):
    from shipbook.config import AppSection, Environment

    shown = feedback.carried_over(_env(tmp_path), "v1.1.0", "../../etc", runs_root=tmp_path / "runs")
    assert shown.found == [] and shown.note.startswith("The previous release's feedback could not be read")
    no_repo = Environment(name="sandbox", lang="en", app=AppSection(repo=str(tmp_path / "missing")))
    shown = feedback.carried_over(no_repo, "v1.1.0", runs_root=tmp_path / "runs")
    assert shown.found == [] and "could not be read" in shown.note
