"""The runs index shows the status the runner writes, including a rolled-back run, with its own badge."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from shipbook.runs_index import write_index


def _write_run(root: Path, run_id: str, status: str) -> None:
    run_dir = root / "sandbox" / "v1.0.0" / run_id
    run_dir.mkdir(parents=True)
    record = {"schema": 1, "run_id": run_id, "env": "sandbox", "version": "v1.0.0", "status": status,
              "started": "2026-11-28T15:16:00+00:00", "finished": "2026-11-28T15:30:00+00:00",
              "phases": [{"name": "verify", "notebook": "04_verify.ipynb", "status": "blocked"},
                         {"name": "rollback", "notebook": "05_rollback.ipynb", "status": "succeeded"}]}
    (run_dir / "run.json").write_text(json.dumps(record), encoding="utf-8")


@pytest.mark.parametrize("status", ["rolled-back", "rolled_back"])
def test_a_rolled_back_run_gets_the_rolled_back_badge_not_unknown(tmp_path: Path, status: str) -> None:
    _write_run(tmp_path, "20261128T151600Z-ab12cd", status)  # "rolled-back" is what pipeline.Runner writes
    page = write_index(tmp_path).read_text(encoding="utf-8")
    assert f'<span class="badge badge-rolled-back">{status}</span>' in page
    assert "badge-unknown\">rolled" not in page
    css = re.search(r"\.badge-rolled-back \{ background: (#[0-9a-f]{6}); \}", page)
    assert css and css.group(1) != "#6e7781"  # a colour of its own, not the grey of "unknown"


def test_an_unknown_status_is_still_unknown(tmp_path: Path) -> None:
    _write_run(tmp_path, "20261128T151600Z-ab12cd", "exploded")
    page = write_index(tmp_path).read_text(encoding="utf-8")
    assert '<span class="badge badge-unknown">exploded</span>' in page
