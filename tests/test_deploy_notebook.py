"""notebooks/03_deploy.ipynb, cell by cell in this process, against a real repo and the scripted world.

Why in-process: the notebook loads `environments/<env>.toml`, and the sandbox environment needs
the sandbox up; here `config.load` returns a test environment and `deploy.start` / `deploy.watch`
get the fake clients and clock. The end-to-end run through the runner is tested against the sandbox.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import nbformat
import pytest
from shipbook import config, deploy
from shipbook.errors import GateError, InputError
from test_deploy_support import make_app_repo, make_env
from test_deploy_watch import FAST, Clock, FakeClient, FakeGitHub, World, ecs_crash, healthy_jobs, healthy_script

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_deploy.ipynb"


def cells() -> list[tuple[str, str]]:
    """(description, source) of each code cell, IPython magics dropped."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        src = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
        name = "parameters" if "parameters" in cell.metadata.get("tags", []) else \
            src.split("papermill_description=", 1)[1].split()[0]
        out.append((name, src))
    return out


def run_notebook(params: dict) -> tuple[dict, list[str]]:
    """Execute the cells in order; returns the namespace and the names of the cells that ran."""
    ns: dict = {}
    ran: list[str] = []
    for name, src in cells():
        ran.append(name)
        exec(compile(src, f"03_deploy:{name}", "exec"), ns)  # the notebook under test
        if name == "parameters":
            ns.update(params)
    return ns, ran


@pytest.fixture
def setup(tmp_path, monkeypatch):
    repo = make_app_repo(tmp_path)
    env = make_env(repo)
    monkeypatch.setattr(config, "load", lambda name: env)
    monkeypatch.setenv("SHIPBOOK_WORK_DIR", str(tmp_path))

    def world_for(script):
        clock = Clock()
        world = World(clock, script)
        clients = deploy.Clients(FakeClient(world, "ecs"), FakeClient(world, "cloudformation"),
                                 FakeClient(world, "elbv2"))
        real_start, real_watch = deploy.start, deploy.watch

        def start(env_, plan, **kw):
            return real_start(env_, plan, now=clock.now, clients=clients, github=FakeGitHub(world, plan.commit),
                              report=lambda line: None, **kw)

        monkeypatch.setattr(deploy, "start", start)
        monkeypatch.setattr(deploy, "watch", functools.partial(real_watch, settings=FAST, now=clock.now,
                                                               sleep=clock.sleep, report=lambda line: None,
                                                               rng=random.Random(1), probe=world.probe))
        return world

    def result() -> dict:
        return json.loads((tmp_path / "result.json").read_text())

    return repo, world_for, result


def test_cells_are_thin_and_described():
    names = [n for n, _ in cells()]
    assert names[0] == "parameters" and names[1] == "Load_environment" and names[2] == "Check_version"
    for name, src in cells()[1:]:
        body = [line for line in src.splitlines() if line.strip() and not line.startswith("#")]
        assert len(body) <= 4, name
        assert not any(w in src for w in ("for ", "while ", "boto3", "import pandas")), name


def test_dry_run_stops_after_the_plan_and_changes_nothing(setup):
    repo, world_for, result = setup
    world_for(healthy_script())
    ns, ran = run_notebook({"version": "v1.0.0", "run_id": "r1", "previous_version": "v0.9.0"})
    assert ns["dry_run"] is True and ran[-1] == "Verdict"
    data = result()
    assert data["verdict"] == "skip" and not data["blocking"]
    assert {c["id"]: c["verdict"] for c in data["checks"]}["release.tag"] == "skip"
    assert repo.tags() == {"v0.9.0"} and repo.remote_tags() == {"v0.9.0"}


def test_a_healthy_release_tags_pushes_watches_and_reports_the_facts(setup):
    repo, world_for, result = setup
    world_for(healthy_script())
    ns, _ = run_notebook({"version": "v1.0.0", "run_id": "r1", "previous_version": "v0.9.0", "dry_run": False})
    data = result()
    assert data["verdict"] == "pass", data["checks"]
    assert [c["id"] for c in data["checks"]] == list(deploy.CHECK_IDS)
    assert set(data["facts"]) >= {"release_commit", "deploy_started", "deploy_finished"}
    assert "v1.0.0" in repo.remote_tags()
    assert not ns["outcome"].timeline_table().empty


def test_a_failed_rollout_stops_at_the_verdict_cell_naming_the_stage(setup):
    repo, world_for, result = setup
    world_for(healthy_script(ecs=ecs_crash, served=lambda at: "v0.9.0", jobs=healthy_jobs(deploy_end=90)))
    with pytest.raises(GateError) as err:
        run_notebook({"version": "v1.0.0", "run_id": "r1", "dry_run": False})
    assert "deploy.ecs" in str(err.value)
    assert [b["id"] for b in result()["blocking"]] == ["deploy.ecs"]


@pytest.mark.parametrize("bad", ["v0.9.0", "v0.8.0"])
def test_a_version_that_cannot_be_released_raises_input_error_in_the_first_cells(setup, bad):
    repo, world_for, result = setup
    world_for(healthy_script())
    with pytest.raises(InputError):
        run_notebook({"version": bad, "run_id": "r1", "dry_run": False})
    assert repo.tags() == {"v0.9.0"} and repo.remote_tags() == {"v0.9.0"}
