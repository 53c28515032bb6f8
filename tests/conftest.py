"""Shared fixtures: a real moto server (DynamoDB lock table, STS, S3) and environment files."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer
from shipbook import config
from shipbook.phases import PHASES
from support import aws_client, free_port

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_NOTEBOOKS = Path(__file__).parent / "fixtures" / "notebooks"


@pytest.fixture(scope="session")
def moto_url():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def make_env(tmp_path, moto_url):
    """Write an environment file pointing at the moto server; returns a loader."""
    counter = {"n": 0}

    def _make(extra: str = "", top: str = "", phases: tuple[str, ...] = ("precheck", "backup", "deploy"),
              runs_url: str = "", secrets: str = "") -> config.Environment:
        counter["n"] += 1
        name = f"t{counter['n']}"
        table = f"locks-{tmp_path.name[-20:]}-{name}".replace("_", "-")
        ddb = aws_client(moto_url, "dynamodb")
        ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "env", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "env", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
        env_dir = tmp_path / "environments"
        env_dir.mkdir(exist_ok=True)
        body = top + textwrap.dedent(f"""\
            name = "{name}"
            kind = "sandbox"
            [aws]
            region = "ap-northeast-1"
            endpoint_url = "{moto_url}"
            [lock]
            table = "{table}"
            [github]
            api_url = ""
            [app]
            repo = "{tmp_path / 'no-repo'}"
            [runner]
            cell_timeout = 120
            phases = [{", ".join(f'"{p}"' for p in phases)}]
            runs_url = "{runs_url}"
            [verify]
            baseline_seconds = 10
            canary_seconds = 10
            settle_seconds = 0
            publish_lag_seconds = 0
            """) + extra + ("\n[secrets]\n" + secrets if secrets else "")
        (env_dir / f"{name}.toml").write_text(body, encoding="utf-8")
        return config.load(name, env_dir=env_dir, sandbox_dir=tmp_path / "nosandbox")

    return _make


@pytest.fixture
def notebook_dir(tmp_path):
    """A notebooks/ dir to fill with fixture notebooks under phase names."""
    d = tmp_path / "notebooks"
    d.mkdir()

    def place(**phase_to_fixture: str) -> Path:
        for phase, kind in phase_to_fixture.items():
            shutil.copy(FIXTURE_NOTEBOOKS / f"{kind}.ipynb", d / PHASES[phase])
        return d

    return place
