"""Feedback items: append-only, chained, folded into open/closed, carried to the next release."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from shipbook import audit, feedback
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
    assert audit.verify(tmp_path, "sandbox") == []


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
