"""One loopback answer (shipbook.loopback) for the config guards and the sandbox: no spelling of this machine
slips through a non-sandbox environment's endpoint check."""

from __future__ import annotations

import pytest
from shipbook.errors import ConfigError
from shipbook.loopback import is_local, is_local_url, is_loopback
from test_config import load_text

LOOPBACK = ["127.0.0.1", "127.1", "127.0.0.53", "2130706433", "0x7f.1", "localhost", "LOCALHOST", "localhost.",
            "app.localhost", "::1", "[::1]", "::ffff:127.0.0.1", "0:0:0:0:0:ffff:7f00:1"]
UNSPECIFIED = ["0.0.0.0", "::", "0"]
ELSEWHERE = ["10.0.0.1", "192.168.1.10", "8.8.8.8", "example.com", "localhost.example.com", "::ffff:10.0.0.1",
             "2001:db8::1", "", "127.0.0.1.example.com"]


@pytest.mark.parametrize("host", LOOPBACK)
def test_every_spelling_of_the_loopback_interface_is_loopback_and_local(host):
    assert is_loopback(host) and is_local(host)
    assert is_local_url(f"http://{host if ':' not in host.strip('[]') else '[' + host.strip('[]') + ']'}:4566/")


@pytest.mark.parametrize("host", UNSPECIFIED)
def test_the_unspecified_address_is_local_but_not_loopback(host):
    assert is_local(host) and not is_loopback(host)


@pytest.mark.parametrize("host", ELSEWHERE)
def test_other_hosts_are_neither(host):
    assert not is_loopback(host) and not is_local(host)


def test_resolving_a_name_counts_only_when_every_answer_is_local():
    assert is_loopback("localhost", resolve=True)
    assert not is_loopback("no-such-host.invalid", resolve=True)


@pytest.mark.parametrize("url", ["http://127.1:4566", "http://0.0.0.0:4566", "http://localhost.:4566",
                                 "http://[::ffff:127.0.0.1]:4566", "http://2130706433:4566"])
def test_a_non_sandbox_environment_refuses_every_loopback_spelling(tmp_path, url):
    with pytest.raises(ConfigError, match="refuses loopback"):
        load_text(tmp_path, f'kind = "aws"\n[aws]\nendpoint_url = "{url}"\n')
