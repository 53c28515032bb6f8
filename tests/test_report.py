"""The release completion report: features and fixes of v1.0.0 from the demo app's real history,
the run record read into the report, and the 06_report notebook executed cell by cell."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from shipbook import audit, config, feedback, report
from shipbook.sandbox import repo_builder

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "06_report.ipynb"


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory) -> Path:
    """The sandbox's demo app history (healthy scenario): v0.9.0 tagged, main at the v1.0.0 release commit."""
    root = tmp_path_factory.mktemp("demo")
    repo_builder.build(root / "origin.git", root / "work")
    return root / "work"


def make_env(repo: Path) -> config.Environment:
    return config.Environment(name="t", kind="sandbox", lang="ja",
                              app=config.AppSection(repo=str(repo), notes_file="RELEASE_NOTES.md"),
                              github=config.GithubSection(repository="example/demo-app", api_url=""))


def test_features_and_fixes_of_v1_0_0_from_the_demo_history(demo_repo):
    found = report.changes(make_env(demo_repo), "v1.0.0", "v0.9.0")
    assert [(c.title, c.pr) for c in found.of("features")] == [("feat(shop): product categories", 6)]
    assert [(c.title, c.pr) for c in found.of("fixes")] == [
        ("fix: health check answers 503 when the database is unreachable", 7)]
    assert found.of("features")[0].url == "https://github.com/example/demo-app/pull/6"
    other = [c.title for c in found.of("other")]
    assert "chore(infra): more memory for the web task and an explicit log level" in other
    html = found.table("features", "en")._repr_html_()
    assert '<a href="https://github.com/example/demo-app/pull/6">#6</a>' in html


def test_merged_pulls_fill_in_what_the_notes_miss(demo_repo):
    pulls = report.merged_pulls(demo_repo, "v0.9.0", "HEAD")
    assert [p.pr for p in pulls] == [6, 7, 8]  # the release PR (release/…) is not a change
    assert [p.kind for p in pulls] == ["features", "fixes", "other"]
    items = report.notes_items("### New features\n- a thing (#3)\n### Bug fixes\n- b\n### 修正\n- c (#4)")
    assert [(i.kind, i.title, i.pr) for i in items] == [("features", "a thing", 3), ("fixes", "b", None),
                                                        ("fixes", "c", 4)]


def _record(tmp_path: Path, rollback: bool = False) -> Path:
    phases = [{"name": n, "notebook": nb, "status": "succeeded", "verdict": "pass",
               "started": "2026-11-28T15:58:00+00:00", "finished": "2026-11-28T15:59:00+00:00", "files": {},
               "error": None, "blocking": [],
               "checks": [{"id": f"{n}.x", "verdict": "pass", "summary": "ok"}]}
              for n, nb in (("precheck", "01_precheck.ipynb"), ("deploy", "03_deploy.ipynb"))]
    if rollback:
        phases.append({"name": "rollback", "notebook": "05_rollback.ipynb", "status": "succeeded", "verdict": "pass",
                       "started": "2026-11-28T16:05:00+00:00", "finished": "2026-11-28T16:07:00+00:00",
                       "files": {}, "checks": [], "blocking": []})
    phases.append({"name": "report", "notebook": "06_report.ipynb", "status": "running", "files": {}, "checks": []})
    run_dir = tmp_path / "t" / "v1.0.0" / "20261128T155800Z-aaaaaa"
    run_dir.mkdir(parents=True)
    data = {"run_id": run_dir.name, "env": "t", "version": "v1.0.0", "previous_version": "v0.9.0",
            "commit": "0" * 40, "operator": {"git_user": "Alice"}, "parameters": {"dry_run": False},
            "status": "running", "started": "2026-11-28T15:58:00+00:00", "phases": phases,
            "facts": {"deploy_started": "2026-11-28T15:58:10+00:00", "deploy_finished": "2026-11-28T15:59:25+00:00",
                      "snapshot_id": "pre-deploy-v1-0-0", "rollback_target": "v0.9.0"}}
    (run_dir / audit.RECORD).write_text(json.dumps(data))
    # a phase notebook with a chart, hashed as the runner would
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("chart()", outputs=[
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})])])
    nbformat.write(nb, run_dir / "03_deploy.ipynb")
    data["phases"][1]["files"] = {"03_deploy.ipynb": audit.sha256_file(run_dir / "03_deploy.ipynb")}
    (run_dir / audit.RECORD).write_text(json.dumps(data))
    return run_dir


def test_the_run_record_becomes_the_completion_table(tmp_path):
    run_dir = _record(tmp_path)
    env = make_env(tmp_path / "no-repo")
    run = report.load_run(env, "v1.0.0", runs_root=tmp_path, overrides={"snapshot_id": "", "recommendation": "keep"})
    table = report.completion_table(run, "ja")
    values = dict(table.values.tolist())
    assert values["デプロイ完了時刻"] == "2026-11-28 15:59:25 UTC" and values["デプロイ所要時間"] == "1m 15s"
    assert values["デプロイ前スナップショット"] == "pre-deploy-v1-0-0" and values["検証の推奨"] == "keep"
    assert report.phases_table(run, "en")["phase"].tolist() == ["precheck", "deploy"]
    details = report.PhaseDetails(run, "en")._repr_html_()
    assert details.count("<img") == 1 and "deploy.x" in details
    # a notebook changed after the runner hashed it shows no chart
    (run_dir / "03_deploy.ipynb").write_text((run_dir / "03_deploy.ipynb").read_text().replace("chart()", "x()"))
    assert report.PhaseDetails(run, "en")._repr_html_().count("<img") == 0
    assert report.outcome(run) == "succeeded"
    assert "No rollback" in report.rollback_table(run, "en").iloc[0, 1]


def test_a_rolled_back_run_says_so(tmp_path):
    _record(tmp_path, rollback=True)
    run = report.load_run(make_env(tmp_path), "v1.0.0", runs_root=tmp_path)
    assert report.outcome(run) == "rolled_back"
    values = dict(report.rollback_table(run, "en").values.tolist())
    assert values["status"] == "succeeded" and values["rollback_target"] == "v0.9.0"


def _later_run(tmp_path, run_id: str, phases: list[dict], facts: dict) -> Path:
    run_dir = tmp_path / "t" / "v1.0.0" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / audit.RECORD).write_text(json.dumps({
        "run_id": run_id, "env": "t", "version": "v1.0.0", "previous_version": "v0.9.0", "status": "running",
        "phases": phases, "facts": facts}))
    return run_dir


def test_a_standalone_report_shows_the_whole_release_with_a_separate_rollback(tmp_path):
    """`make rollback` and `make report` are runs of their own: the report still shows deploy, verify, rollback."""
    release_dir = _record(tmp_path)  # precheck + deploy (with a chart), its own report phase
    _later_run(tmp_path, "20261128T160500Z-bbbbbb", [
        {"name": "rollback", "notebook": "05_rollback.ipynb", "status": "succeeded", "verdict": "pass",
         "started": "2026-11-28T16:05:00+00:00", "files": {}, "checks": [{"id": "rollback.database",
                                                                           "verdict": "pass", "summary": "ok"}]}],
        {"rollback_tag": "v1.0.1-rollback"})
    report_dir = _later_run(tmp_path, "20261128T161000Z-cccccc", [
        {"name": "report", "notebook": "06_report.ipynb", "status": "running", "files": {}, "checks": []}], {})
    run = report.load_run(make_env(tmp_path), "v1.0.0", report_dir.name, runs_root=tmp_path)
    assert report.phases_table(run, "en")["phase"].tolist() == ["precheck", "deploy", "rollback"]
    assert report.outcome(run) == "rolled_back"
    assert run.facts["rollback_tag"] == "v1.0.1-rollback" and run.facts["snapshot_id"] == "pre-deploy-v1-0-0"
    (release_dir / "03_deploy.stakeholder.html").write_text("<html></html>")
    details = report.PhaseDetails(run, "en")._repr_html_()
    assert details.count("<img") == 1  # the deploy chart, from the release run's notebook
    assert f'href="../{release_dir.name}/03_deploy.stakeholder.html"' in details
    # an earlier release attempt that never deployed is not part of this release's story
    assert run.data["history"] == [release_dir.name, "20261128T160500Z-bbbbbb", report_dir.name]


def test_known_issues_and_next_release_from_parameters(tmp_path):
    env = make_env(tmp_path)
    table = report.plans_table(env, "search is slow\n\nPDF export missing", "2026-12-15", "en")
    assert table.values.tolist() == [["Known issues", "search is slow"], ["Known issues", "PDF export missing"],
                                     ["Next release", "2026-12-15"]]
    assert "未定" in report.plans_table(env, "", "", "ja").iloc[-1, 1]


def test_notebook_runs_cell_by_cell_and_reports(tmp_path, demo_repo, monkeypatch):
    """06_report in this process: the run record and the demo repo, no AWS (the metrics chart says so)."""
    _record(tmp_path)
    env = make_env(demo_repo)
    monkeypatch.setattr(config, "load", lambda name: env)
    monkeypatch.setenv("SHIPBOOK_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("SHIPBOOK_WORK_DIR", str(tmp_path))
    monkeypatch.setattr(report.incident, "fetch_metrics", lambda *a, **k: report.pd.DataFrame(
        columns=report.incident.METRIC_COLUMNS))
    feedback.add("t", "v1.0.0", "pages slow after deploy", runs_root=tmp_path)
    ns: dict = {}
    for cell in nbformat.read(NOTEBOOK, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        src = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
        exec(compile(src, "06_report", "exec"), ns)  # the notebook under test
        if "parameters" in cell.metadata.get("tags", []):
            ns.update(version="v1.0.0", env="t", previous_version="v0.9.0", dry_run=False, lang="en")
    assert [c.pr for c in ns["changes"].of("features")] == [6]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["verdict"] == "pass" and result["facts"]["report_lang"] == "en"
    assert "1 feature(s), 1 fix(es)" in result["checks"][0]["summary"]
    assert report.feedback_table(env, "v1.0.0", "en").iloc[0, 2] == "pages slow after deploy"
