"""One release commit for the whole run: recorded when the run starts, handed to every phase.

If HEAD of the app repository moves between phases (or before a --resume), precheck still checks
and deploy still tags the commit the run recorded, never whatever HEAD is by then.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from shipbook import audit, checks, deploy, release
from shipbook.errors import InputError
from shipbook.phases import NOTEBOOK_DIR
from shipbook.pipeline import Progress, Runner, RunOptions
from shipbook.redact import Redactor
from test_deploy_support import git, make_app_repo, make_env


@pytest.fixture
def repo(tmp_path):
    return make_app_repo(tmp_path)


def recorded_run(tmp_path, env, commit: str) -> tuple[Runner, audit.RunRecord]:
    runner = Runner(env, Redactor([]), tmp_path / "runs", NOTEBOOK_DIR, kernel_env={})
    rec = runner.new_record(RunOptions(version="v1.0.0", previous_version="v0.9.0", commit=commit),
                            ["precheck", "deploy"])
    return runner, rec


def test_head_moves_after_the_run_recorded_its_commit_precheck_and_deploy_still_use_it(repo, tmp_path):
    env = make_env(repo)
    recorded = repo.head()
    runner, rec = recorded_run(tmp_path, env, recorded)
    moved = repo.commit("RELEASE_NOTES.md", "## v1.0.0\n\n- not what precheck saw\n", "later work")
    assert moved != recorded

    # precheck: the real notebook declares the parameter, and the runner hands it the recorded commit
    params = runner.parameters(rec, NOTEBOOK_DIR / "01_precheck.ipynb")
    assert params["release_commit"] == recorded
    checked = checks.release(env, "v1.0.0", params["release_commit"])
    assert checked.commit == recorded
    assert "not what precheck saw" not in checked.read("RELEASE_NOTES.md")  # files are read at the recorded commit
    assert moved[:12] in checked.ref  # the notebook says HEAD has moved on

    # deploy: the plan names (and the tag goes on) the recorded commit, not HEAD
    params = runner.parameters(rec, NOTEBOOK_DIR / "03_deploy.ipynb")
    assert params["release_commit"] == recorded
    vc = deploy.check_version(env, "v1.0.0", "v0.9.0", rec.run_id)
    plan = deploy.make_plan(env, vc, params["release_commit"], rec.run_id, dry_run=False)
    assert plan.commit == recorded and not plan.problems
    assert any("HEAD" in w and moved[:12] in w for w in plan.warnings)
    res = deploy.apply_tag(plan)
    assert res.pushed and res.remote_commit == recorded
    assert git(repo.work, "rev-parse", "v1.0.0^{commit}") == recorded


def test_a_resumed_run_keeps_the_commit_it_recorded(repo, tmp_path):
    env = make_env(repo)
    recorded = repo.head()
    runner, rec = recorded_run(tmp_path, env, recorded)
    repo.commit("VERSION", "1.0.1\n", "later work")
    again = audit.RunRecord.load(tmp_path / "runs", env.name, rec.run_id)  # what --resume reads
    assert runner.parameters(again, NOTEBOOK_DIR / "03_deploy.ipynb")["release_commit"] == recorded


def test_the_recorded_commit_wins_over_a_fact_of_another_run(repo, tmp_path):
    env = make_env(repo)
    recorded = repo.head()
    runner, rec = recorded_run(tmp_path, env, recorded)
    rec.data["facts"] = {"release_commit": "0" * 40}  # e.g. copied from the version's last run
    assert runner.parameters(rec, NOTEBOOK_DIR / "03_deploy.ipynb")["release_commit"] == recorded


def test_without_a_recorded_commit_nothing_is_pinned(repo, tmp_path):
    env = make_env(repo)
    runner, rec = recorded_run(tmp_path, env, "")  # app.repo was not a git repository when the run started
    assert "release_commit" not in runner.parameters(rec, NOTEBOOK_DIR / "01_precheck.ipynb")
    assert checks.release(env, "v1.0.0").commit == repo.head()  # as before: the tag, else HEAD


def test_a_recorded_commit_that_is_gone_or_disagrees_with_the_tag_is_a_clear_error(repo):
    env = make_env(repo)
    with pytest.raises(InputError, match="release commit 0123456789ab is not in"):
        checks.release(env, "v1.0.0", "0123456789ab" * 3 + "0123")
    first = repo.head()
    repo.commit("VERSION", "1.0.1\n", "later work")
    repo.tag("v1.0.0", push=False)  # the tag was put on a later commit than the run recorded
    with pytest.raises(InputError, match=f"tag v1.0.0 points at {repo.head()[:12]}, not at the run's release "
                                         f"commit {first[:12]}"):
        checks.release(env, "v1.0.0", first)
    assert checks.release(env, "v1.0.0", repo.head()).ref == "tag v1.0.0"


def test_a_deploy_plan_for_a_recorded_commit_that_is_gone_is_blocked(repo):
    env = make_env(repo)
    vc = deploy.check_version(env, "v1.0.0", "v0.9.0", "run-1")
    plan = deploy.make_plan(env, vc, "f" * 40, "run-1", dry_run=False)
    assert plan.blocked and any("the run's release commit ffffffffffff is not in" in p for p in plan.problems)


@pytest.mark.xdist_group("kernels")
def test_the_runner_records_the_commit_once_and_every_phase_gets_it(make_env, notebook_dir, tmp_path):
    """Through release.run: each phase moves HEAD on; the next phase still receives the recorded commit."""
    from test_deploy_support import make_app_repo as app

    repo = app(tmp_path / "app-home")
    (tmp_path / "no-repo").symlink_to(repo.work)  # where make_env points app.repo
    notebook_dir(precheck="commit_probe", deploy="commit_probe")
    env = make_env(phases=("precheck", "deploy"))
    ctx = release.Context(runs_root=tmp_path / "runs", notebook_dir=tmp_path / "notebooks")
    recorded = repo.head()
    rec = release.run(env, RunOptions(version="v1.0.0", params={"app_repo": str(repo.work)}), Progress(), ctx,
                      Redactor([]))
    assert rec.data["status"] == "succeeded" and rec.data["commit"] == recorded
    assert repo.head() != recorded  # HEAD moved after precheck and again after deploy
    for notebook in ("01_precheck.ipynb", "03_deploy.ipynb"):
        nb = nbformat.read(rec.dir / notebook, as_version=4)
        assert f"release_commit={recorded}" in json.dumps(nb), notebook


def test_one_phase_on_its_own_uses_the_commit_the_versions_last_run_recorded(make_env, notebook_dir, tmp_path):
    """`make precheck` then `make deploy`: deploy gets the commit precheck checked, though HEAD moved since."""
    from test_deploy_support import make_app_repo as app

    repo = app(tmp_path / "app-home")
    (tmp_path / "no-repo").symlink_to(repo.work)
    notebook_dir(precheck="commit_probe", deploy="commit_probe")
    env = make_env(phases=("precheck", "deploy"))
    ctx = release.Context(runs_root=tmp_path / "runs", notebook_dir=tmp_path / "notebooks")
    checked = repo.head()
    first = release.run(env, RunOptions(version="v1.0.0", only="precheck", params={"app_repo": str(repo.work)}),
                        Progress(), ctx, Redactor([]))
    assert first.data["commit"] == checked and repo.head() != checked  # the probe moved HEAD on
    second = release.run(env, RunOptions(version="v1.0.0", only="deploy", params={"app_repo": str(repo.work)}),
                         Progress(), ctx, Redactor([]))
    assert second.data["commit"] == checked
    nb = nbformat.read(second.dir / "03_deploy.ipynb", as_version=4)
    assert f"release_commit={checked}" in json.dumps(nb)
