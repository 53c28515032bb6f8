"""Environment files: validation errors name file, key and reason; secrets only by reference."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
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
    ('kind = "aws"\n[precheck]\nallowed_ingress = "alb tcp/80 world"\n', "precheck.allowed_ingress",
     "expected a list"),
    ('kind = "aws"\n[precheck]\nallowed_ingress = ["alb tcp/80 world", "alb tcp/443 wrld"]\n',
     "precheck.allowed_ingress[1]", "the source must be world, a role or a CIDR"),
    ('kind = "aws"\n[precheck]\nallowed_ingress = ["web tcp/80 world"]\n', "precheck.allowed_ingress[0]",
     "the group must be one of alb, app, db"),
    ('kind = "aws"\n[precheck]\nallowed_ingress = ["alb tpc/80 world"]\n', "precheck.allowed_ingress[0]",
     "the protocol must be"),
    ('kind = "aws"\n[precheck]\nallowed_ingress = ["alb tcp/443-80 world"]\n', "precheck.allowed_ingress[0]",
     "bad port range"),
    ('kind = "aws"\n[precheck]\nrequired_variables = ["SECRET KEY"]\n', "precheck.required_variables[0]",
     "not a variable name"),
    ('kind = "aws"\n[precheck]\nrequired_variables = [1]\n', "precheck.required_variables[0]", "expected a string"),
    ('kind = "aws"\n[precheck]\ndeploy_role = "{stak}-deploy"\n', "precheck.deploy_role", "unknown placeholder"),
    ('kind = "aws"\n[precheck]\ndeploy_role = ""\n', "precheck.deploy_role", "must name the deploy role"),
    ('kind = "aws"\n[precheck.health_check]\nintervall = 30\n', "precheck.health_check.intervall", "unknown key"),
    ('kind = "aws"\n[precheck]\nhealth_check = { interval = "30" }\n', "precheck.health_check.interval",
     "expected an integer"),
    ('kind = "aws"\n[precheck]\nhealth_check = "200"\n', "precheck.health_check", "expected a table"),
    ('kind = "aws"\n[precheck.health_check]\nmatcher = "2xx"\n', "precheck.health_check.matcher",
     "expected HTTP codes"),
    ('kind = "aws"\n[precheck.health_check]\ninterval = 5\ntimeout = 5\n', "precheck.health_check.timeout",
     "shorter than the interval"),
    ('kind = "aws"\n[precheck.health_check]\nhealthy_threshold = 0\n', "precheck.health_check.healthy_threshold",
     "must be positive"),
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


def test_precheck_expectations_default_to_what_the_checks_had_built_in(tmp_path):
    from shipbook.checks import env as env_checks
    from shipbook.checks import iam as iam_checks
    from shipbook.checks import network as net_checks

    pc = load_text(tmp_path, 'kind = "aws"\n').precheck
    assert pc.required_variables == env_checks.REQUIRED_VARIABLES == ("SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS")
    assert [str(net_checks.Allowance.parse(a)) for a in pc.allowed_ingress] == \
        [str(a) for a in net_checks.DEFAULT_ALLOWED] == \
        ["alb tcp/80 world", "alb tcp/443 world", "app tcp/container alb", "db tcp/5432 app"]
    assert pc.deploy_role == iam_checks.DEPLOY_ROLE_PATTERN == "{stack}-deploy"
    assert pc.health_check == config.HealthCheckSection()  # nothing compared beyond 200 being a success code
    given = load_text(tmp_path, 'kind = "aws"\n[precheck]\nrequired_variables = ["SECRET_KEY", "SENTRY_DSN"]\n'
                      'allowed_ingress = ["alb tcp/443 world", "app tcp/8000-8001 10.0.0.0/16"]\n'
                      'deploy_role = "arn:aws:iam::111122223333:role/{stack}-ci"\n'
                      '[precheck.health_check]\nmatcher = "200-299"\ninterval = 15\n').precheck
    assert given.required_variables == ("SECRET_KEY", "SENTRY_DSN")
    assert given.allowed_ingress == ("alb tcp/443 world", "app tcp/8000-8001 10.0.0.0/16")
    assert given.deploy_role.endswith("role/{stack}-ci")
    assert given.health_check == config.HealthCheckSection(matcher="200-299", interval=15)


# --------------------------------------------------------------------------- the annotated template


def _sections(cls: type, data: object, path: str) -> list[str]:
    """Keys of `cls` (and of the sections inside it) that `data`, the parsed template, does not give."""
    if isinstance(data, list):  # an array of tables: each key given by at least one of them
        merged: dict = {}
        for item in data:
            merged.update(item)
        data = merged
    assert isinstance(data, dict), f"{path or '(top)'}: expected a table in the template"
    hints = typing.get_type_hints(cls)
    missing = []
    for f in dataclasses.fields(cls):
        if f.name == "source":  # set by the loader, never written
            continue
        key = f"{path}{f.name}"
        if f.name not in data:
            missing.append(key)
            continue
        tp = hints[f.name]
        inner = [a for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis] or [tp]
        for candidate in (tp, *inner):
            if dataclasses.is_dataclass(candidate) and candidate is not config.SecretRef:
                missing += _sections(candidate, data[f.name], key + ".")
                break
    return missing


def test_the_production_template_mentions_every_key_of_every_section():
    """A key added to a section must be added to the annotated template, where people learn it exists."""
    path = ROOT / "environments" / "production.example.toml"
    text = path.read_text(encoding="utf-8")
    assert _sections(config.Environment, tomllib.loads(text), "") == []
    for ref in (f.name for f in dataclasses.fields(config.SecretRef)):  # references: the header shows all three
        assert re.search(r"\{ *" + ref + " *=", text), f"the template never shows a {{{ref} = …}} reference"
    config.load_file(path)  # and everything it gives is valid
