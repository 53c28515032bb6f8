"""The sandbox's tooling refuses endpoints that are not loopback, and a missing one (real AWS), before any call."""

from __future__ import annotations

import pytest
import requests
from shipbook.errors import InputError
from shipbook.sandbox import scenarios
from shipbook.sandbox.aws_twin import seed
from shipbook.sandbox.github_twin import __main__ as github_main
from shipbook.sandbox.github_twin.deployer import Deployer, RunContext
from shipbook.sandbox.github_twin.store import Store
from shipbook.sandbox.loopback import NotLoopbackError, is_loopback, require_loopback
from shipbook.sandbox.runtime import __main__ as runtime_main
from shipbook.sandbox.runtime import aws as runtime_aws

ACCEPTED = ["http://127.0.0.1:4566", "http://localhost:4566", "http://LOCALHOST", "http://[::1]:4566",
            "https://127.0.0.2:8443/path", "http://127.0.0.1"]
REFUSED = ["https://ecs.ap-northeast-1.amazonaws.com", "http://10.0.0.5:4566", "http://0.0.0.0:4566",
           "http://127.0.0.1.nip.io:4566", "http://127.0.0.1@evil.example:4566", "http://localhost.evil.example",
           "ftp://127.0.0.1/", "127.0.0.1:4566", "http://[::1:4566"]


@pytest.mark.parametrize("url", ACCEPTED)
def test_loopback_urls_are_accepted(url):
    assert require_loopback(url, "endpoint") == url


@pytest.mark.parametrize("url", REFUSED)
def test_other_urls_are_refused_naming_what_and_the_url(url):
    with pytest.raises(NotLoopbackError) as refused:
        require_loopback(url, "seed endpoint")
    assert str(refused.value).startswith("seed endpoint: ")
    assert isinstance(refused.value, InputError) and isinstance(refused.value, ValueError)


@pytest.mark.parametrize("url", [None, ""])
def test_no_endpoint_means_real_aws_and_is_refused(url):
    with pytest.raises(NotLoopbackError, match="would mean real AWS"):
        require_loopback(url, "AWS twin endpoint")


def test_is_loopback_resolves_names_only_when_asked():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("10.0.0.5") and not is_loopback("") and not is_loopback("0.0.0.0")
    assert not is_loopback("no-such-host.invalid", resolve=True)


@pytest.fixture
def no_network(monkeypatch):
    """Any HTTP request is a failure of the test: a refusal must come before the first call."""
    def refuse(*args, **kwargs):
        raise AssertionError("a request was sent")

    monkeypatch.setattr("botocore.endpoint.Endpoint.make_request", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)


@pytest.mark.parametrize("url", ["https://cloudformation.ap-northeast-1.amazonaws.com", "http://10.0.0.5:4566"])
def test_seeding_refuses_a_remote_endpoint(url, no_network):
    with pytest.raises(NotLoopbackError, match="seed endpoint"):
        seed.session(url)
    with pytest.raises(NotLoopbackError):
        seed.seed(url)


@pytest.mark.parametrize("scenario", ["open-port", "snapshot-failure"])
@pytest.mark.parametrize("url", ["https://ec2.ap-northeast-1.amazonaws.com", "http://10.0.0.5:4566", ""])
def test_scenarios_refuse_a_remote_twin_before_any_change(scenario, url, no_network):
    with pytest.raises(NotLoopbackError, match="scenario AWS endpoint"):
        scenarios.apply_twin(scenario, url)
    with pytest.raises(NotLoopbackError):
        scenarios._client("ec2", url)


@pytest.mark.parametrize("url", [None, "https://ecs.ap-northeast-1.amazonaws.com", "http://10.0.0.5:4566"])
def test_the_runtime_refuses_real_aws_and_remote_endpoints(url, no_network):
    with pytest.raises(NotLoopbackError, match="AWS twin endpoint"):
        runtime_aws.client("ecs", url)


def test_the_runtime_accepts_the_twin_on_loopback():
    assert runtime_aws.client("ecs", "http://127.0.0.1:4566").meta.endpoint_url == "http://127.0.0.1:4566"


@pytest.mark.parametrize("url", ["https://ecs.ap-northeast-1.amazonaws.com", "http://10.0.0.5:4566"])
def test_the_deployer_refuses_a_remote_endpoint_up_front(url, tmp_path):
    with pytest.raises(NotLoopbackError, match="deployer AWS endpoint"):
        Deployer(Store.load(tmp_path / "state.json"), lambda: None, url, tmp_path)


def test_a_deployer_without_aws_fails_its_aws_step_instead_of_calling_aws(tmp_path, no_network):
    deployer = Deployer(Store.load(tmp_path / "state.json"), lambda: None, None, tmp_path)
    ctx = RunContext(run_id=1, tag="v1.0.0", sha="0" * 40, workspace=tmp_path)
    with pytest.raises(NotLoopbackError, match="would mean real AWS"):  # a ValueError: the step fails, logged
        deployer.configure_credentials(ctx)


@pytest.mark.parametrize("url", ["https://ecs.ap-northeast-1.amazonaws.com", "http://10.0.0.5:4566"])
def test_the_aws_url_options_refuse_remote_endpoints(url, capsys):
    with pytest.raises(SystemExit) as exited:
        github_main.parse_args(["--aws-url", url])
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        runtime_main.parse_args(["--aws-url", url, "--alb-port", "8080"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count(f"argument --aws-url: the sandbox talks to loopback only, got {url!r}") == 2


def test_the_aws_url_options_take_loopback_endpoints():
    assert github_main.parse_args(["--aws-url", "http://127.0.0.1:4566"]).aws_url == "http://127.0.0.1:4566"
    assert github_main.parse_args([]).aws_url is None
    assert runtime_main.parse_args(["--aws-url", "http://localhost:4566", "--alb-port", "1"]).aws_url
