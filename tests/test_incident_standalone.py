"""`shipbook incident` / `postmortem` through the runner: fixture notebooks under the standalone names, executed
in real kernels into runs/<env>/incidents/<id>/, sealed in the incidents' own ledger (a moto server for STS)."""

from __future__ import annotations

import functools
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from shipbook import audit, incident, standalone, trail
from shipbook.errors import InputError, PhaseError

pytestmark = pytest.mark.xdist_group("kernels")

INCIDENT_PARAMS = """version = ""
env = "sandbox"
run_id = ""
previous_version = ""
dry_run = True
incident_start = ""
title = ""
lang = ""
prevention = \"\""""

ECHO = """# papermill_description=Echo_the_parameters
from shipbook import result
seen = {'run_id': run_id, 'version': version, 'incident_start': incident_start, 'title': title, 'lang': lang,
        'prevention': prevention, 'dry_run': dry_run}
result.report('incident', [{'id': 'incident.echo', 'verdict': 'pass', 'summary': title}],
              facts={'seen': seen, 'incident_lang': lang, 'prevention_items': prevention.splitlines()})
print('incident', run_id, title)"""

POSTMORTEM_PARAMS = """version = ""
env = "sandbox"
run_id = ""
previous_version = ""
dry_run = True
lang = \"\""""

POSTMORTEM = """# papermill_description=Write_it
from shipbook import result
result.report('postmortem', [{'id': 'postmortem.timeline', 'verdict': 'pass', 'summary': run_id}],
              facts={'postmortem_lang': lang})"""


def _notebook(path, params: str, body: str, heading: str) -> None:
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nbformat.write(new_notebook(cells=[new_markdown_cell(heading), cell, new_code_cell(body)],
                                metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                         "language": "python"}}), path)


@pytest.fixture
def nbdir(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "incident.ipynb", INCIDENT_PARAMS, ECHO, "# 障害対応 (fixture)")
    _notebook(d / "postmortem.ipynb", POSTMORTEM_PARAMS, POSTMORTEM, "# ポストモーテム (fixture)")
    return d


def test_an_incident_its_re_run_and_its_postmortem_live_in_the_incident_dir(make_env, nbdir, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    env = make_env()
    monkeypatch.setattr(standalone, "run_standalone", functools.partial(standalone.run_standalone, notebook_dir=nbdir))
    rec = standalone.open_and_run(env, title="商品ページで 500", started="2026-11-21T00:00:00+09:00",
                                  version="v1.0.0", lang="ja", runs_root=runs)
    assert rec.dir == runs / env.name / "incidents" / rec.run_id and rec.run_id.startswith("inc-20261120T150000Z-")
    data = json.loads((rec.dir / audit.RECORD).read_text(encoding="utf-8"))
    assert (data["kind"], data["status"], data["version"]) == ("incident", "open", "v1.0.0")
    assert data["operator"]["aws_arn"].startswith("arn:aws:")
    assert data["facts"]["seen"] == {"run_id": rec.run_id, "version": "v1.0.0",
                                     "incident_start": "2026-11-20T15:00:00+00:00", "title": "商品ページで 500",
                                     "lang": "ja", "prevention": "", "dry_run": True}
    (entry,) = data["phases"]
    assert (entry["name"], entry["status"], entry["verdict"]) == ("incident", "succeeded", "pass")
    assert set(entry["files"]) == {"incident.ipynb", "incident.html", "incident.stakeholder.html",
                                   "incident.result.json"}
    assert "障害対応 (fixture)".encode() in (rec.dir / "incident.stakeholder.html").read_bytes()
    ledger = audit.Ledger(runs / env.name / "incidents")
    assert [json.loads(line)["record_sha256"] for line in ledger.lines()] == [audit.sha256_file(rec.path)]
    assert not (runs / env.name / audit.LEDGER).exists()  # the release ledger is not touched
    incident.status_report(env, rec.run_id, "ja", current="調査中", runs_root=runs)
    assert trail.verify(runs, env.name) == []

    # `shipbook incident --id … --prevention …`: the same dir, the same parameters, one more item
    again = standalone.converge(env, rec.run_id, ["カナリアで p99 を監視"], runs_root=runs)
    seen = again.data["facts"]["seen"]
    assert (seen["title"], seen["prevention"]) == ("商品ページで 500", "カナリアで p99 を監視")
    assert again.data["facts"]["prevention_items"] == ["カナリアで p99 を監視"]
    assert [p["name"] for p in again.data["phases"]] == ["incident"] and len(ledger.lines()) == 2

    # `shipbook postmortem ID --lang en`: its own files beside the incident's, from a copy named for the language
    pm = standalone.write_postmortem(env, rec.run_id, "en", runs_root=runs)
    assert [p["name"] for p in pm.data["phases"]] == ["incident", "postmortem-en"]
    written = pm.data["phases"][1]
    assert written["notebook"] == "postmortem.en.ipynb" and written["status"] == "succeeded"
    assert set(written["files"]) == {"postmortem.en.ipynb", "postmortem.en.html",
                                     "postmortem.en.stakeholder.html", "postmortem.en.result.json"}
    assert pm.data["facts"]["postmortem_lang"] == "en" and pm.data["status"] == "open"
    assert not (nbdir / "postmortem.en.ipynb").exists()  # the copy lived in a temp dir
    assert len(ledger.lines()) == 3 and trail.verify(runs, env.name) == []
    # runs/index.html, rebuilt by each run, lists the incident with its notebooks
    incidents_part = (runs / "index.html").read_text(encoding="utf-8").split("<h2>Incidents</h2>")[1]
    assert f'data-run-id="{rec.run_id}"' in incidents_part
    for page in ("incident.stakeholder.html", "postmortem.en.stakeholder.html"):
        assert f"{rec.run_id}/{page}" in incidents_part


def test_a_failing_incident_notebook_is_recorded_and_raised(make_env, nbdir, tmp_path):
    runs = tmp_path / "runs"
    _notebook(nbdir / "incident.ipynb", INCIDENT_PARAMS, "# papermill_description=Break\nraise KeyError('window')",
              "# broken")
    env = make_env()
    with pytest.raises(PhaseError, match="KeyError"):
        standalone.run_standalone(env, "incident", "inc-broken", {"title": "x"}, runs_root=runs, notebook_dir=nbdir)
    data = incident.load_record(env.name, "inc-broken", runs)
    assert data["status"] == "failed" and data["phases"][0]["status"] == "failed"
    assert "incident.ipynb" in data["phases"][0]["files"]  # the partial notebook is kept, hashed
    assert trail.verify(runs, env.name) == []


def test_bad_standalone_requests_write_nothing(make_env, nbdir, tmp_path):
    runs = tmp_path / "runs"
    env = make_env()
    with pytest.raises(InputError, match="unknown standalone notebook"):
        standalone.run_standalone(env, "deploy", "inc-1", {}, runs_root=runs, notebook_dir=nbdir)
    with pytest.raises(InputError, match="open it with `make incident`"):
        standalone.run_standalone(env, "postmortem", "inc-1", {}, runs_root=runs, notebook_dir=nbdir)
    with pytest.raises(InputError, match="variant"):
        standalone.run_standalone(env, "incident", "inc-1", {}, variant="../en", runs_root=runs, notebook_dir=nbdir)
    with pytest.raises(InputError, match="INCIDENT"):
        standalone.run_standalone(env, "incident", "../../etc", {}, runs_root=runs, notebook_dir=nbdir)
    assert not runs.exists()
