"""`shipbook audit` reports a file anywhere under runs/ that no sealed run, incident, ledger or feedback owns."""

from __future__ import annotations

from pathlib import Path

import pytest
from shipbook import audit, feedback, incident, trail
from shipbook.runs_index import write_index

ENV = "sandbox"


def sealed_run(root: Path, version: str = "v1.0.0") -> audit.RunRecord:
    rec = audit.RunRecord.create(root, env=ENV, version=version, previous_version="v0.9.0", commit="0" * 40,
                                 operator={}, parameters={}, phases=[("precheck", "01_precheck.ipynb")],
                                 shipbook_version="0", run_id=None)
    page = rec.dir / "01_precheck.html"
    page.write_text("<p>precheck</p>", encoding="utf-8")
    rec.phase("precheck").update(status="succeeded", files={page.name: audit.sha256_file(page)})
    rec.save()
    rec.seal(root)
    return rec


def sealed_incident(root: Path, incident_id: str = "INC-20261128-0001") -> Path:
    inc_dir = root / ENV / "incidents" / incident_id
    rec = audit.RunRecord(inc_dir, {"schema": 1, "kind": "incident", "run_id": incident_id, "env": ENV,
                                    "phases": [{"name": "incident", "notebook": "incident.ipynb", "files": {}}]})
    page = inc_dir / "incident.html"
    inc_dir.mkdir(parents=True)
    page.write_text("<p>incident</p>", encoding="utf-8")
    rec.data["phases"][0]["files"] = {page.name: audit.sha256_file(page)}
    (inc_dir / incident.STATUS_FILE).write_text("{}\n", encoding="utf-8")
    rec.save()
    audit.Ledger(inc_dir.parent).append(incident_id, audit.sha256_file(rec.path))
    return inc_dir


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A clean trail: two sealed runs, an incident with its status reports, feedback, the index."""
    root = tmp_path / "runs"
    sealed_run(root)
    sealed_run(root)
    sealed_incident(root)
    feedback.add(ENV, "v1.0.0", "the export is slow", runs_root=root)
    write_index(root)
    (root / ".gitkeep").write_text("", encoding="utf-8")
    assert trail.verify(root) == []
    return root


@pytest.mark.parametrize("planted", [
    "sandbox/v1.0.0/not-a-run/evil.html",         # a folder beside the runs, without a run.json
    "sandbox/v1.0.0/not-a-run/deeper/evil.html",
    "sandbox/v1.0.0/evil.html",                   # beside the run folders and feedback.jsonl
    "sandbox/v2.0.0/evil.html",                   # a version folder with no run at all
    "sandbox/evil.html",                          # beside the ledger
    "sandbox/incidents/evil.html",                # beside the incidents' ledger
    "sandbox/incidents/INC-20261128-0001/evil.html",  # inside an incident, not in its record
    "sandbox/incidents/not-an-incident/evil.html",
    "elsewhere/evil.html",                        # a folder that is no environment with a run
])
def test_a_file_no_run_owns_is_reported(root: Path, planted: str) -> None:
    path = root / planted
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<script>steal()</script>", encoding="utf-8")
    problems = trail.verify(root)
    assert any(p.startswith(f"{planted}: unexpected file") for p in problems), problems


def test_a_file_beside_the_index_is_reported_only_when_auditing_everything(root: Path) -> None:
    (root / "evil.html").write_text("x", encoding="utf-8")
    assert "evil.html: unexpected file (not the index, and in no environment)" in trail.verify(root)
    assert trail.verify(root, ENV) == []


def test_auditing_one_environment_reports_its_stray_files(root: Path) -> None:
    (root / ENV / "v1.0.0" / "x").mkdir()
    (root / ENV / "v1.0.0" / "x" / "evil.html").write_text("x", encoding="utf-8")
    assert trail.verify(root, ENV) == ["sandbox/v1.0.0/x/evil.html: unexpected file (belongs to no run)"]


def test_the_incident_status_file_name_matches_the_incident_module() -> None:
    assert audit.INCIDENT_STATUS_FILE == incident.STATUS_FILE
