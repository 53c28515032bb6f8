"""The demo app and its git history: tags, pull requests, migrations, notes, scenarios."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from shipbook.sandbox import repo_builder, scenarios

APP_SCENARIOS = [s.name for s in scenarios.SCENARIOS.values() if s.app is not None]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def manage(work: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=work, env=full_env, capture_output=True, text=True, timeout=120
    )


def tracked_files(work: Path) -> dict[str, str]:
    return {path: (work / path).read_text() for path in git(work, "ls-files").splitlines()}


def build(tmp: Path, scenario: str) -> tuple[Path, Path, dict]:
    bare, work = tmp / "origin.git", tmp / "work"
    summary = repo_builder.build(bare, work, scenario)
    return bare, work, summary


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    return build(tmp_path_factory.mktemp("healthy"), "healthy")


def test_previous_tag_is_annotated_and_release_is_untagged(healthy: tuple[Path, Path, dict]) -> None:
    bare, work, summary = healthy
    assert git(bare, "cat-file", "-t", "v0.9.0") == "tag"
    assert git(bare, "tag", "--list") == "v0.9.0"
    assert git(bare, "rev-parse", "main") == summary["head"] == git(work, "rev-parse", "HEAD")
    message = git(bare, "tag", "-l", "--format=%(contents)", "v0.9.0")
    assert "### Features" in message


def test_history_is_pull_request_merges_with_approvals(healthy: tuple[Path, Path, dict]) -> None:
    bare, _, summary = healthy
    subjects = git(bare, "log", "--first-parent", "--format=%s", "v0.9.0..main").splitlines()
    assert subjects and all(s.startswith("Merge pull request #") for s in subjects)
    metadata = json.loads(Path(summary["github_json"]).read_text())
    merges = set(git(bare, "log", "--first-parent", "--format=%H", "v0.9.0..main").splitlines())
    pulls = [p for p in metadata["pulls"] if p["merge_commit_sha"] in merges]
    assert len(pulls) == len(merges)
    for pull in pulls:
        states = {r["user"]: r["state"] for r in pull["reviews"]}
        assert "APPROVED" in states.values(), pull["title"]
        assert pull["user"] not in states
    titles = [p["title"] for p in metadata["pulls"]]
    assert all(t.split(":")[0].split("(")[0] in {"feat", "fix", "chore", "ci", "perf"} for t in titles)
    assert all(sha in metadata["check_runs"] for sha in merges)


def test_deterministic(healthy: tuple[Path, Path, dict], tmp_path: Path) -> None:
    _, _, again = build(tmp_path, "healthy")
    assert again["head"] == healthy[2]["head"]
    assert again["previous_sha"] == healthy[2]["previous_sha"]


def test_two_new_migrations_and_release_notes(healthy: tuple[Path, Path, dict]) -> None:
    bare, work, _ = healthy
    added = git(bare, "diff", "--name-only", "--diff-filter=A", "v0.9.0", "main", "--", "shop/migrations")
    assert added.splitlines() == ["shop/migrations/0003_category.py", "shop/migrations/0004_assign_categories.py"]
    notes = (work / "RELEASE_NOTES.md").read_text()
    section = notes.split("## v1.0.0\n", 1)[1].split("\n## ", 1)[0]
    assert "- feat(shop): product categories (#6)" in section
    assert "### Fixes" in section and "shop.0004_assign_categories" in section
    assert (work / "VERSION").read_text().strip() == "1.0.0"
    assert git(bare, "show", "v0.9.0:VERSION") == "0.9.0"


def test_infra_files(healthy: tuple[Path, Path, dict]) -> None:
    _, work, _ = healthy
    taskdef = json.loads((work / "infra" / "taskdef.json").read_text())
    container = taskdef["containerDefinitions"][0]
    assert taskdef["family"] == "demo-web" and container["name"] == "web"
    assert container["portMappings"][0]["containerPort"] == 8000
    assert {s["name"] for s in container["secrets"]} == {"SECRET_KEY", "DATABASE_URL"}
    assert "ALLOWED_HOSTS" in {e["name"] for e in container["environment"]}
    assert (work / "infra" / "template.yaml").read_text().startswith("AWSTemplateFormatVersion")
    assert "tags:" in (work / ".github" / "workflows" / "deploy.yml").read_text()
    assert (work / ".gitignore").exists()
    assert os.access(work / "manage.py", os.X_OK)


@pytest.mark.parametrize("ref", ["main", "v0.9.0"])
def test_app_tests_pass(healthy: tuple[Path, Path, dict], tmp_path: Path, ref: str) -> None:
    bare, _, _ = healthy
    checkout = tmp_path / ref
    subprocess.run(["git", "clone", "-q", "--branch", ref, str(bare), str(checkout)], check=True)
    result = manage(checkout, "test")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stderr
    check = manage(checkout, "makemigrations", "--check", "--dry-run", env={"DJANGO_DEBUG": "1"})
    assert check.returncode == 0, check.stdout + check.stderr


def test_settings_require_the_environment(healthy: tuple[Path, Path, dict]) -> None:
    _, work, _ = healthy
    result = manage(work, "check")
    assert result.returncode != 0 and "SECRET_KEY is required" in result.stderr
    env = {"SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "demo.example.com", "DATABASE_URL": "sqlite://:memory:"}
    assert manage(work, "check", env=env).returncode == 0


def test_migrations_are_reversible(healthy: tuple[Path, Path, dict], tmp_path: Path) -> None:
    _, work, _ = healthy
    env = {"DJANGO_DEBUG": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    assert manage(work, "migrate", env=env).returncode == 0
    back = manage(work, "migrate", "shop", "0002", env=env)
    assert back.returncode == 0, back.stderr


def test_app_code_is_lint_clean(healthy: tuple[Path, Path, dict]) -> None:
    _, work, _ = healthy
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run([str(ruff), "check", "."], cwd=work, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("name", APP_SCENARIOS)
def test_app_scenario_changes_the_release(name: str, tmp_path: Path, healthy: tuple[Path, Path, dict]) -> None:
    bare, work, summary = build(tmp_path, name)
    assert tracked_files(work) != tracked_files(healthy[1])
    notes = (work / "RELEASE_NOTES.md").read_text().split("\n## v0.9.0", 1)[0]
    assert scenarios.get(name).app.title in notes
    taskdef = json.loads((work / "infra" / "taskdef.json").read_text())["containerDefinitions"][0]
    environment = {e["name"]: e["value"] for e in taskdef["environment"]}
    secrets = {s["name"] for s in taskdef["secrets"]}
    env = {"DJANGO_DEBUG": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    if name == "latency-regression":
        assert "time.sleep(" in (work / "shop" / "views.py").read_text()
    elif name == "error-spike":
        assert 'SIZES = {"S": "small", "M": "medium"}' in (work / "shop" / "views.py").read_text()
    elif name == "crash-on-start":
        crashed = subprocess.run(
            [sys.executable, "-c", "import demo.wsgi"], cwd=work, capture_output=True, text=True,
            env={**os.environ, **env, "DJANGO_SETTINGS_MODULE": "demo.settings"},
        )
        assert crashed.returncode != 0 and "ValueError" in crashed.stderr
    elif name == "irreversible-migration":
        assert manage(work, "migrate", env=env).returncode == 0
        back = manage(work, "migrate", "shop", "0004", env=env)
        assert back.returncode != 0 and "IrreversibleError" in back.stderr
    elif name == "missing-variable":
        assert "ALLOWED_HOSTS" not in environment and secrets == {"SECRET_KEY", "DATABASE_URL"}
    elif name == "plaintext-secret":
        assert "SECRET_KEY" in environment and "SECRET_KEY" not in secrets
    elif name == "unreviewed-commit":
        metadata = json.loads(Path(summary["github_json"]).read_text())
        in_pulls = {sha for p in metadata["pulls"] for sha in [p["merge_commit_sha"], *p["commits"]]}
        first_parent = git(bare, "log", "--first-parent", "--format=%H", "v0.9.0..main").splitlines()
        orphans = [sha for sha in first_parent if sha not in in_pulls]
        assert len(orphans) == 1
        assert git(bare, "log", "-1", "--format=%an", orphans[0]) == "Mallory Mori"
    else:  # pragma: no cover - a new scenario needs its assertion here
        pytest.fail(f"no assertion for scenario {name}")
    assert manage(work, "test").returncode == 0


def test_twin_scenarios_leave_the_app_alone(tmp_path: Path, healthy: tuple[Path, Path, dict]) -> None:
    for name in ("open-port", "snapshot-failure"):
        bare, _, _ = build(tmp_path / name, name)
        assert git(bare, "rev-parse", "main^{tree}") == git(healthy[0], "rev-parse", "main^{tree}")


def test_unknown_scenario(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="unknown scenario"):
        repo_builder.build(tmp_path / "b.git", tmp_path / "w", "nope")
    assert not (tmp_path / "b.git").exists()


def test_scenario_table() -> None:
    rows = scenarios.list_scenarios()
    names = [r["name"] for r in rows]
    assert names[0] == "healthy"
    expected = {
        "healthy", "latency-regression", "error-spike", "crash-on-start", "irreversible-migration",
        "open-port", "missing-variable", "plaintext-secret", "snapshot-failure", "unreviewed-commit",
    }
    assert expected <= set(names)
    for row in rows:
        if row["name"] != "healthy":
            assert row["phase"] in {"precheck", "backup", "deploy", "verify"} and row["check"]
    assert {r["name"]: r["side"] for r in rows}["open-port"] == "twin"
