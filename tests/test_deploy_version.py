"""release.version, release.notes, the plan and the tag push, against a real repo with a bare remote."""

from __future__ import annotations

import json

import pytest
from shipbook import deploy
from shipbook.deploy import notes as notes_mod
from shipbook.deploy import version as version_mod
from shipbook.errors import EXIT_INPUT, GateError, InfraError, InputError
from test_deploy_support import NOTES, git, make_app_repo, make_env


@pytest.fixture
def repo(tmp_path):
    return make_app_repo(tmp_path)


# ---------------------------------------------------------------------------------------------- version


def test_a_new_greater_version_passes_and_names_the_latest_release(repo):
    vc = version_mod.check_version(repo.work, "v1.0.0", "origin", previous_version="v0.9.0")
    assert vc.ok and vc.latest_release == "v0.9.0" and not vc.resumed
    assert vc.check().verdict == "pass" and "after v0.9.0" in vc.check().summary
    assert vc.remote_url == str(repo.bare)
    assert list(vc.table().columns) == ["item", "value"]


@pytest.mark.parametrize("bad", ["1.0.0", "v1.0", "v1.0.0.0", "v01.0.0", "v1.0.0; rm -rf /", ""])
def test_malformed_versions_are_input_errors_and_change_nothing(repo, bad):
    before = (repo.tags(), repo.remote_tags())
    with pytest.raises(InputError) as err:
        version_mod.check_version(repo.work, bad, "origin")
    assert err.value.exit_code == EXIT_INPUT and err.value.field == "VERSION"
    assert (repo.tags(), repo.remote_tags()) == before


@pytest.mark.parametrize("bad, reason", [("v0.9.0", "already a tag locally and on origin"),
                                         ("v0.8.0", "not greater than the latest release v0.9.0"),
                                         ("v0.9.0-rc.1", "not greater than the latest release v0.9.0")])
def test_versions_not_greater_or_already_tagged_exit_2(repo, bad, reason):
    before = (repo.tags(), repo.remote_tags())
    with pytest.raises(InputError) as err:
        version_mod.check_version(repo.work, bad, "origin")
    assert err.value.exit_code == EXIT_INPUT and reason in str(err.value)
    assert (repo.tags(), repo.remote_tags()) == before


def test_a_tag_that_exists_only_on_the_remote_is_found_with_ls_remote(repo, tmp_path):
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(repo.bare), str(other))
    git(other, "-c", "user.name=O", "-c", "user.email=o@example.com", "tag", "-a", "-m", "x", "v1.0.0")
    git(other, "push", "-q", "origin", "refs/tags/v1.0.0")
    assert "v1.0.0" not in repo.tags()
    with pytest.raises(InputError, match="v1.0.0 is already a tag on origin"):
        version_mod.check_version(repo.work, "v1.0.0", "origin")
    # and v1.0.0 being the remote's latest release makes v0.9.5 go backwards
    with pytest.raises(InputError, match="not greater than the latest release v1.0.0"):
        version_mod.check_version(repo.work, "v0.9.5", "origin")


def test_a_local_only_tag_counts_too(repo):
    repo.tag("v1.0.0", push=False)
    with pytest.raises(InputError, match="already a tag locally: choose a new version"):
        version_mod.check_version(repo.work, "v1.0.0", "origin")


def test_pre_releases_and_rollback_tags_are_handled_deliberately(repo):
    repo.tag("v1.0.0-rc.2")
    repo.tag("v0.9.5-rollback")  # never "the latest release"
    assert version_mod.latest_release(repo.tags()) == "v0.9.0"
    assert version_mod.check_version(repo.work, "v0.9.1", "origin").ok
    with pytest.raises(InputError, match="not greater than the existing tag"):
        version_mod.check_version(repo.work, "v1.0.0-rc.1", "origin")
    assert version_mod.check_version(repo.work, "v1.0.0-rc.3", "origin").ok
    assert version_mod.check_version(repo.work, "v1.0.0", "origin").latest_release == "v0.9.0"


def test_previous_version_given_by_the_runner_is_respected(repo):
    with pytest.raises(InputError, match="not greater than the previous release v1.2.0"):
        version_mod.check_version(repo.work, "v1.0.0", "origin", previous_version="v1.2.0")


def test_an_unreachable_remote_is_an_infra_error_not_a_pass(repo, tmp_path):
    git(repo.work, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    with pytest.raises(InfraError, match="ls-remote"):
        version_mod.check_version(repo.work, "v1.0.0", "origin")


def test_the_tag_this_run_pushed_means_resume_not_error(repo):
    env = make_env(repo)
    vc = deploy.check_version(env, "v1.0.0", run_id="run-1")
    plan = deploy.make_plan(env, vc, run_id="run-1", dry_run=False)
    assert deploy.apply_tag(plan).pushed
    again = deploy.check_version(env, "v1.0.0", run_id="run-1")
    assert again.resumed and again.check().verdict == "pass" and "resuming" in again.check().summary
    with pytest.raises(InputError, match="already a tag"):
        deploy.check_version(env, "v1.0.0", run_id="run-2")
    plan2 = deploy.make_plan(env, again, run_id="run-1", dry_run=False)
    res = deploy.apply_tag(plan2)
    assert res.pushed and not res.created and res.check(plan2).verdict == "pass"


# ---------------------------------------------------------------------------------------------- notes


@pytest.mark.parametrize("heading", ["## v1.0.0", "## [v1.0.0]", "## 1.0.0 - 2026-11-28", "## v1.0.0 (2026-11-28)"])
def test_the_version_section_is_found_under_common_headings(heading):
    text = f"# Notes\n\n{heading}\n\n- a thing\n\n## v0.9.0\n\n- old\n"
    found = notes_mod.find_section(text, "v1.0.0")
    assert found and found[0] == heading and found[1].strip() == "- a thing"
    assert notes_mod.find_section("## v1.0.01\n- no\n", "v1.0.0") is None
    assert notes_mod.find_section("## v1.0.0-rc.1\n- no\n", "v1.0.0") is None


def test_notes_are_read_from_the_release_commit_not_the_working_tree(repo):
    commit = repo.head()
    (repo.work / "RELEASE_NOTES.md").write_text("## v1.0.0\n\n- TODO\n", encoding="utf-8")
    notes = notes_mod.read_notes(repo.work, "RELEASE_NOTES.md", commit, "v1.0.0")
    assert notes.check().verdict == "pass" and "3 item" in notes.check().summary
    assert "stock levels" in notes.body and "v0.9.0" not in notes.body


@pytest.mark.parametrize("text, problem", [
    ("# Notes\n\n## v0.9.0\n\n- old\n", "has no '## v1.0.0' section"),
    ("## v1.0.0\n\n### Features\n\n## v0.9.0\n- old\n", "is empty"),
    ("## v1.0.0\n\n- TBD: write this\n", "not final (contains TBD)"),
    ("## v1.0.0 (Unreleased)\n\n- a thing\n", "not final (contains Unreleased)"),
])
def test_missing_empty_or_unfinished_notes_fail_release_notes(repo, text, problem):
    commit = repo.commit("RELEASE_NOTES.md", text, "docs: notes")
    notes = notes_mod.read_notes(repo.work, "RELEASE_NOTES.md", commit, "v1.0.0")
    assert notes.check().verdict == "fail" and problem in notes.check().summary


def test_a_missing_notes_file_fails(repo):
    notes = notes_mod.read_notes(repo.work, "CHANGES.md", repo.head(), "v1.0.0")
    assert "CHANGES.md does not exist" in notes.check().summary


# ---------------------------------------------------------------------------------------------- plan and tag


def test_the_plan_shows_tag_commit_remote_and_notes_and_a_dry_run_changes_nothing(repo):
    env = make_env(repo)
    vc = deploy.check_version(env, "v1.0.0", "v0.9.0", "run-1")
    plan = deploy.make_plan(env, vc, run_id="run-1", dry_run=True)
    table = dict(plan.table().itertuples(index=False))
    assert table["tag"] == "v1.0.0" and table["release commit"].startswith(repo.head()[:12])
    assert str(repo.bare) in table["remote"] and table["on remote branch"] == "main"
    assert "stock levels" in table["notes excerpt"] and "none (dry run)" in table["action"]
    assert [c.verdict for c in plan.checks()] == ["pass", "pass", "skip"]
    dep = deploy.start(env, plan, report=lambda line: None)
    assert not dep.active and "dry run" in dep.tag.skipped
    assert repo.tags() == {"v0.9.0"} and repo.remote_tags() == {"v0.9.0"}


def test_apply_creates_an_annotated_tag_with_the_notes_and_pushes_it(repo):
    env = make_env(repo)
    plan = deploy.make_plan(env, deploy.check_version(env, "v1.0.0", run_id="run-7"), run_id="run-7", dry_run=False)

    class FakeGitHub:
        calls = 0

        def create_release(self, tag, name, body, prerelease):
            self.args = (tag, name, body, prerelease)
            return {"html_url": f"https://github.example/releases/{tag}"}

    gh = FakeGitHub()
    res = deploy.apply_tag(plan, gh)
    assert res.created and res.pushed and res.remote_commit == repo.head()
    assert git(repo.work, "cat-file", "-t", "v1.0.0") == "tag"
    message = git(repo.work, "tag", "--list", "--format=%(contents)", "v1.0.0")
    assert message.startswith("Release v1.0.0\n\n### Features\n\n- feat(shop): stock levels")
    assert "### Database migrations" in message and message.rstrip().endswith("Shipbook-Run: run-7")
    assert "v1.0.0" in repo.remote_tags()
    assert gh.args[0] == "v1.0.0" and "stock levels" in gh.args[2] and gh.args[3] is False
    check = res.check(plan)
    assert check.verdict == "pass" and "releases/v1.0.0" in check.summary


def test_a_failed_push_removes_the_local_tag_and_fails_release_tag(repo, tmp_path):
    env = make_env(repo)
    plan = deploy.make_plan(env, deploy.check_version(env, "v1.0.0"), dry_run=False)
    git(repo.work, "remote", "set-url", "--push", "origin", str(tmp_path / "nowhere.git"))
    res = deploy.apply_tag(plan)
    assert not res.pushed and res.check(plan).verdict == "fail" and "push of v1.0.0" in res.check(plan).summary
    assert repo.tags() == {"v0.9.0"}


def test_a_github_release_failure_is_a_warning_once_the_tag_is_out(repo):
    env = make_env(repo)
    plan = deploy.make_plan(env, deploy.check_version(env, "v1.0.0"), dry_run=False)

    class Broken:
        def create_release(self, *a):
            raise InfraError("GitHub API POST /repos/x/releases failed: HTTP 500")

    res = deploy.apply_tag(plan, Broken())
    assert res.pushed and res.check(plan).verdict == "warn" and "HTTP 500" in res.check(plan).summary


def test_blocked_plan_gates_before_anything_changes(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPBOOK_WORK_DIR", str(tmp_path))
    repo.commit("RELEASE_NOTES.md", "## v1.0.0\n\n- WIP\n", "docs: wip")
    env = make_env(repo)
    plan = deploy.make_plan(env, deploy.check_version(env, "v1.0.0"), dry_run=False)
    assert plan.blocked
    with pytest.raises(GateError) as err:
        deploy.gate_plan(plan)
    assert "release.notes" in str(err.value) and err.value.exit_code == 1
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["verdict"] == "fail" and [b["id"] for b in data["blocking"]] == ["release.notes"]
    assert data["facts"] == {"release_commit": repo.head()}
    assert deploy.apply_tag(plan).skipped and repo.tags() == {"v0.9.0"}


def test_a_repo_without_a_git_identity_cannot_tag(repo, monkeypatch, tmp_path):
    git(repo.work, "config", "--unset", "user.name")
    git(repo.work, "config", "--unset", "user.email")
    monkeypatch.setenv("HOME", str(tmp_path))  # no global identity either
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    env = make_env(repo)
    plan = deploy.make_plan(env, deploy.check_version(env, "v1.0.0"), dry_run=False)
    assert plan.blocked and "no git identity" in plan.checks()[2].summary


def test_notes_fixture_matches_the_sandbox_format():
    assert notes_mod.find_section(NOTES, "v0.9.0")[1].strip().endswith("(#1)")
