"""The completion report's chart and plans, and `shipbook feedback` as a user types it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from incident_fakes import DEPLOY, at, clients, environment
from shipbook import aws, config, feedback, incident, report
from shipbook import cli as shipbook_cli
from shipbook.errors import AwsError, ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _run(facts: dict, phases: list[dict] | None = None) -> report.Run:
    data = {"run_id": "20261120T144900Z-aaaaaa", "env": "t", "version": "v1.0.0", "phases": phases or [],
            "facts": facts}
    return report.Run(Path("/nonexistent"), data, facts)


@pytest.fixture
def fakes(monkeypatch):
    found = clients()
    monkeypatch.setattr(aws, "client", lambda env, service: found[service])
    return found


def _windows(fakes) -> list[tuple]:
    return [(kw["StartTime"], kw["EndTime"]) for name, kw in fakes["cloudwatch"].calls if name == "get_metric_data"]


def test_the_release_chart_spans_the_deploy_and_marks_it_and_the_rollback(fakes, monkeypatch):
    monkeypatch.setattr(incident, "utcnow", lambda: at(60))
    run = _run({"deploy_started": DEPLOY.isoformat(), "deploy_finished": at(-8).isoformat()},
               [{"name": "rollback", "status": "succeeded", "started": at(3).isoformat()}])
    fig = report.release_chart(environment(), run, "ja")
    assert fig.get_suptitle().startswith("v1.0.0 — ")
    assert [t.get_text() for t in fig.axes[0].texts] == ["デプロイ開始時刻", "デプロイ完了時刻", "ロールバック"]
    assert _windows(fakes) == [(at(-20), at(5))]  # 10 minutes before the deploy to 15 minutes after it
    err = fig.axes[0].lines[0].get_ydata()
    assert err[0] == 0.0 and max(err) == 8.0
    # a deploy a few minutes ago: the chart ends now
    monkeypatch.setattr(incident, "utcnow", lambda: at(-4))
    english = report.release_chart(environment(), _run({"deploy_started": DEPLOY.isoformat()}), "en",
                                   after_minutes=30)
    assert _windows(fakes)[-1] == (at(-20), at(-4))
    assert [t.get_text() for t in english.axes[0].texts] == ["Deploy started"]


def test_the_release_chart_without_a_deploy_or_metrics_says_so(fakes, monkeypatch):
    dry = report.release_chart(environment(), _run({}), "ja")
    assert [t.get_text() for t in dry.axes[0].texts] == ["なし"] and _windows(fakes) == []

    def denied(*a, **kw):
        raise AwsError("cloudwatch", "GetMetricData", "AccessDenied", "not allowed")

    monkeypatch.setattr(incident, "fetch_metrics", denied)
    fig = report.release_chart(environment(), _run({"deploy_started": DEPLOY.isoformat()}), "en")
    assert [t.get_text() for t in fig.axes[0].texts] == ["none"]  # the report page still renders


# ------------------------------------------------------------------ known issues, next release


def _env_file(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""\
        name = "{name}"
        kind = "aws"
        lang = "ja"
        """) + textwrap.dedent(body), encoding="utf-8")
    return path


def test_plans_fall_back_to_the_environment_files_report_section(tmp_path):
    env = config.load_file(_env_file(tmp_path, "prod", """\
        [report]
        known_issues = ["検索が遅い（v1.1.0 で対応）", "PDF 出力は未対応"]
        next_release = "2026-12-15 (v1.1.0)"
        """))
    assert report.plans_table(env).values.tolist() == [
        ["既知の問題点", "検索が遅い（v1.1.0 で対応）"], ["既知の問題点", "PDF 出力は未対応"],
        ["次回リリース予定", "2026-12-15 (v1.1.0)"]]
    # parameters win over the file, each on its own
    assert report.plans_table(env, "login is slow", "", "en").values.tolist() == [
        ["Known issues", "login is slow"], ["Next release", "2026-12-15 (v1.1.0)"]]
    assert report.plans_table(env, "", "2027-01-10", "en").values.tolist()[-1] == ["Next release", "2027-01-10"]
    bare = config.load_file(_env_file(tmp_path, "bare", ""))
    assert report.plans_table(bare, lang="en").values.tolist() == [
        ["Known issues", "none"], ["Next release", "not set (parameter next_release or the environment file)"]]
    with pytest.raises(ConfigError, match="report.next_releases"):
        config.load_file(_env_file(tmp_path, "typo", '[report]\nnext_releases = "soon"\n'))


# ------------------------------------------------------------------ shipbook feedback


@pytest.fixture
def cli(tmp_path):
    """`python -m shipbook …` in a child process, with its own environments/ and runs/."""
    envs, runs = tmp_path / "environments", tmp_path / "runs"
    envs.mkdir()
    _env_file(envs, "qa", "")
    child = {**os.environ, "SHIPBOOK_ENV_DIR": str(envs), "SHIPBOOK_RUNS_DIR": str(runs)}

    def shipbook(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "shipbook", *args], cwd=ROOT, env=child, capture_output=True,
                              text=True, timeout=60)

    shipbook.runs, shipbook.envs = runs, envs
    return shipbook


@pytest.fixture
def main(cli, monkeypatch, capsys):
    """`shipbook.cli.main` in this process (a child costs seconds of imports): (exit code, stdout, stderr)."""
    load = config.load
    monkeypatch.setattr(config, "load", lambda name, **kw: load(name, env_dir=cli.envs, **kw))
    monkeypatch.setenv("SHIPBOOK_RUNS_DIR", str(cli.runs))

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = shipbook_cli.main(list(args))
        except SystemExit as exc:  # argparse
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_feedback_added_from_the_command_line_is_in_the_record(cli, main):
    out = cli("feedback", "v1.0.0", "商品ページが遅い", "--env", "qa", "--kind", "improvement", "--author", "alice")
    assert (out.returncode, out.stdout.strip(), out.stderr) == (0, "v1.0.0: F1 recorded (improvement)", "")
    code, stdout, _ = main("feedback", "v1.0.0", "checkout answers 500", "--env", "qa")
    assert (code, stdout.strip()) == (0, "v1.0.0: F2 recorded (problem)")
    found = feedback.items("qa", "v1.0.0", runs_root=cli.runs)
    assert [(i.id, i.kind, i.text, i.author, i.status) for i in found] == [
        ("F1", "improvement", "商品ページが遅い", "alice", "open"),
        ("F2", "problem", "checkout answers 500", "", "open")]
    code, stdout, _ = main("feedback", "v1.0.0", "index added", "--env", "qa", "--close", "F1")
    assert (code, stdout.strip()) == (0, "v1.0.0: F1 closed")
    assert [i.id for i in feedback.open_items("qa", "v1.0.0", runs_root=cli.runs)] == ["F2"]
    assert feedback.verify("qa", "v1.0.0", runs_root=cli.runs) == []


def test_a_bad_kind_is_exit_2_with_one_error_line_naming_the_option(cli):
    out = cli("feedback", "v1.0.0", "slow", "--env", "qa", "--kind", "bug")
    assert out.returncode == 2 and out.stdout == ""
    errors = [line for line in out.stderr.splitlines() if "error" in line]
    assert errors == ["shipbook feedback: error: argument --kind: invalid choice: 'bug' "
                      "(choose from 'problem', 'improvement')"]
    assert "Traceback" not in out.stderr
    assert not (cli.runs / "qa" / "v1.0.0" / feedback.FILE).exists()  # nothing recorded


@pytest.mark.parametrize(("args", "field"), [
    (("v1.0.0", "   "), "text: "),
    (("1.0", "slow"), "VERSION: "),
    (("v1.0.0", "x", "--close", "F9"), "feedback id: "),
])
def test_other_bad_feedback_input_is_one_line_and_exit_2(main, args, field):
    code, stdout, stderr = main("feedback", *args, "--env", "qa")
    assert (code, stdout) == (2, "")
    assert stderr.splitlines() == [stderr.strip()] and stderr.startswith(f"shipbook: error: {field}")
