"""Environment files: validation errors name file, key and reason; secrets only by reference."""

from __future__ import annotations

from pathlib import Path

import pytest
from shipbook import config
from shipbook.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def load_text(tmp_path, text: str) -> config.Environment:
    path = tmp_path / "e.toml"
    path.write_text(text, encoding="utf-8")
    return config.load_file(path, sandbox_dir=tmp_path / "none")


@pytest.mark.parametrize("text, key, reason", [
    ('kind = "aws"\nbogus = 1\n', "bogus", "unknown key"),
    ('kind = "aws"\n[aws]\nregoin = "x"\n', "aws.regoin", "unknown key"),
    ('kind = "aws"\n[lock]\nttl_minutes = "ten"\n', "lock.ttl_minutes", "expected an integer"),
    ('kind = "aws"\nauto_rollback = "yes"\n', "auto_rollback", "expected true or false"),
    ('kind = "aws"\n[runner]\nphases = ["precheck", "deplyo"]\n', "runner.phases[1]", "unknown phase"),
    ('kind = "cloud"\n', "kind", "must be 'sandbox' or 'aws'"),
    ('kind = "aws"\n[secrets]\nSECRET_KEY = "hunter2-plaintext"\n', "secrets.SECRET_KEY", "by reference only"),
    ('kind = "aws"\n[secrets]\nX = { env = "A", ssm = "/b" }\n', "secrets.X", "exactly one"),
    ('kind = "aws"\n[github]\ntoken = "ghp_abc"\n', "github.token", "by reference only"),
    ('kind = "aws"\n[aws]\nendpoint_url = "http://127.0.0.1:5000"\n', "aws.endpoint_url", "refuses loopback"),
    ('kind = "sandbox"\n[app]\npublic_url = "https://app.example.com"\n', "app.public_url", "only talks to loopback"),
    ('kind = "sandbox"\n[aws]\naccount_id = "111122223333"\n', "aws.account_id", "123456789012"),
    ('kind = "aws"\n[runner]\nruns_url = "https://x"\n', "runner.runs_url", "s3://"),
    ('kind = "aws"\n[[contacts]]\nrole = "pm"\n', "contacts[0]", "missing key"),
    ('kind = "aws"\n[runner\n', "(file)", "invalid TOML"),
])
def test_bad_config_is_rejected_with_file_key_reason(tmp_path, text, key, reason):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / "e.toml") + f": {key}:"), msg
    assert reason in msg
    assert err.value.exit_code == 2


def test_shipped_environment_files_load(tmp_path):
    prod = config.load_file(ROOT / "environments" / "production.example.toml")
    assert prod.kind == "aws" and prod.secrets["SECRET_KEY"].secretsmanager
    assert prod.github.token is not None and prod.github.token.env == "GITHUB_TOKEN"
    sandbox = config.load("sandbox", resolve=False)
    assert sandbox.is_sandbox and sandbox.auto_rollback


def test_environment_is_frozen(tmp_path):
    env = load_text(tmp_path, 'kind = "aws"\n')
    with pytest.raises(AttributeError):
        env.kind = "sandbox"  # type: ignore[misc]


def test_sandbox_placeholders_resolve_from_state_and_fail_clearly_when_down(tmp_path):
    sb = tmp_path / "sb"
    sb.mkdir()
    (tmp_path / "e.toml").write_text('kind = "sandbox"\n[aws]\nendpoint_url = "{sandbox.aws_url}"\n')
    with pytest.raises(ConfigError, match=r"aws.endpoint_url: \{sandbox.aws_url\} is unknown: is the sandbox up"):
        config.load_file(tmp_path / "e.toml", sandbox_dir=sb)
    (sb / "state.json").write_text('{"endpoints": {"aws_url": "http://127.0.0.1:4566"}}')
    env = config.load_file(tmp_path / "e.toml", sandbox_dir=sb)
    assert env.aws.endpoint_url == "http://127.0.0.1:4566"
    assert env.process_env()["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"


def test_unknown_environment_lists_known_ones():
    with pytest.raises(ConfigError, match="no such environment .*sandbox"):
        config.load("nope")
    with pytest.raises(ConfigError, match="not a valid environment name"):
        config.load("../etc/passwd")


def test_deploy_section_drives_the_watchers():
    from shipbook.deploy.poll import WatchSettings

    env = config.load("sandbox", resolve=False)
    settings = WatchSettings.from_env(env)
    assert settings.ecs_timeout == env.deploy.ecs_timeout == 300
    assert settings.poll_max == 5.0 and settings.backoff == 1.6
