"""What `feedback` and `status-report` write under runs/ masks every secret the environment declares."""

from __future__ import annotations

import functools
import json
import textwrap
import uuid
from pathlib import Path

import pytest
from shipbook import config, feedback, incident
from support import aws_client

SECRET = "s3cr3t-Planted-Value-9f8e7d"
STORED = "st0red-In-Secrets-Manager-4c3b2a"


@pytest.fixture
def declared(make_env, moto_url, monkeypatch):
    """An environment declaring one secret in a variable and one in (moto's) Secrets Manager."""
    monkeypatch.setenv("PLANTED_SECRET", SECRET)
    name = f"planted/{uuid.uuid4().hex}"
    aws_client(moto_url, "secretsmanager").create_secret(Name=name, SecretString=STORED)
    return make_env(secrets=f'PLANTED = {{ env = "PLANTED_SECRET" }}\nSTORED = {{ secretsmanager = "{name}" }}\n')


def on_disk(root: Path, *values: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and any(v.encode() in p.read_bytes() for v in values)]


def test_feedback_items_and_resolutions_mask_declared_secrets(declared, tmp_path):
    runs = tmp_path / "runs"
    item = feedback.add(declared, "v1.0.0", f"pages slow; the log shows {SECRET} and {STORED}", runs_root=runs)
    feedback.close(declared, "v1.0.0", item.id, f"rotated {SECRET}", "bob", runs_root=runs)
    assert on_disk(runs, SECRET, STORED) == []
    assert [i.text for i in feedback.items(declared, "v1.0.0", runs_root=runs)] == [
        "pages slow; the log shows *** and ***"]
    assert feedback.verify(declared, "v1.0.0", runs_root=runs) == []


def test_feedback_by_name_masks_the_operators_own_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", SECRET)
    feedback.add("sandbox", "v1.0.0", f"SECRET_KEY leaked as {SECRET}", runs_root=tmp_path)
    assert on_disk(tmp_path, SECRET) == []


def _unresolved(tmp_path: Path, secret_name: str) -> config.Environment:
    """The sandbox environment as the CLI loads it for feedback: `{sandbox.*}` left unresolved."""
    path = tmp_path / "environments" / "sb.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(f"""\
        kind = "sandbox"
        [aws]
        endpoint_url = "{{sandbox.aws_url}}"
        [secrets]
        PLANTED = {{ env = "PLANTED_SECRET" }}
        STORED = {{ secretsmanager = "{secret_name}" }}
        """), encoding="utf-8")
    return config.load_file(path, resolve=False)


def test_feedback_of_an_unresolved_sandbox_reads_the_secrets_of_the_running_twin(tmp_path, moto_url, monkeypatch):
    monkeypatch.setenv("PLANTED_SECRET", SECRET)
    name = f"unresolved/{uuid.uuid4().hex}"
    aws_client(moto_url, "secretsmanager").create_secret(Name=name, SecretString=STORED)
    env = _unresolved(tmp_path, name)
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "state.json").write_text(json.dumps({"endpoints": {"aws_url": moto_url}}), encoding="utf-8")
    monkeypatch.setattr(config, "load_file", functools.partial(config.load_file, sandbox_dir=sandbox))
    feedback.add(env, "v1.0.0", f"{SECRET} / {STORED}", runs_root=tmp_path / "runs")
    assert on_disk(tmp_path / "runs", SECRET, STORED) == []


def test_feedback_of_a_sandbox_that_is_down_still_masks_what_it_can_read(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PLANTED_SECRET", SECRET)
    env = _unresolved(tmp_path, "unresolved/STORED")
    monkeypatch.setattr(config, "load_file", functools.partial(config.load_file, sandbox_dir=tmp_path / "down"))
    feedback.add(env, "v1.0.0", f"the log shows {SECRET}", runs_root=tmp_path / "runs")
    assert on_disk(tmp_path / "runs", SECRET) == []
    assert "could not be read for masking" in caplog.text


def test_status_reports_mask_declared_secrets(declared, tmp_path):
    runs = tmp_path / "runs"
    d = runs / declared.name / "incidents" / "inc-1"
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"run_id": "inc-1", "env": declared.name, "version": "v1.0.0",
                                            "started": "2026-11-28T15:00:00+00:00", "phases": [],
                                            "facts": {"incident_start": "2026-11-28T15:00:00+00:00"}}))
    rep = incident.status_report(declared, "inc-1", "en", impact=f"checkout answers 500 with {SECRET}",
                                 current=f"rotating {STORED}", eta=f"after {SECRET} is revoked", runs_root=runs)
    assert SECRET in rep.text()  # what the operator typed is shown back to them, not written
    assert on_disk(runs, SECRET, STORED) == []
    stored = incident.status_reports(declared.name, "inc-1", runs)
    assert stored[0]["impact"] == "checkout answers 500 with ***" and stored[0]["current"] == "rotating ***"
