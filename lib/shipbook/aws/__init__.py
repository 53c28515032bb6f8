"""The only place boto3 clients are built. One session per process; ClientError translated here.

Endpoints come from the environment (`aws.endpoint_url`); the release code cannot tell the
sandbox from AWS except through them. In a sandbox environment (or one that names its
`aws.account_id`) the first client of a process (per endpoint, profile and account) is only handed
out after STS GetCallerIdentity says the credentials are the emulator's (or that) account, so no
command or notebook can reach another account by skipping a check.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from shipbook.config import SANDBOX_ACCOUNT, SANDBOX_CREDENTIAL, Environment
from shipbook.errors import AwsError, ConfigError

log = logging.getLogger(__name__)

_CLIENT_CONFIG = botocore.config.Config(retries={"max_attempts": 4, "mode": "standard"},
                                        connect_timeout=5, read_timeout=30)


@functools.lru_cache(maxsize=8)
def _session(profile: str, region: str) -> boto3.Session:
    return boto3.Session(profile_name=profile or None, region_name=region)


def session(env: Environment) -> boto3.Session:
    return _session(env.aws.profile, env.aws.region)


# (endpoint, profile, account) whose caller identity this process has checked; see `_require_account`.
_VERIFIED: set[tuple[str, str]] = set()
_VERIFY_LOCK = threading.Lock()


def client(env: Environment, service: str) -> Any:
    """A boto3 client for `service` in `env`, through its endpoint when one is configured.

    In the sandbox, refused (ConfigError) until the caller is known to be the emulator's account;
    elsewhere, when the environment names its `aws.account_id`, until the caller is known to be in it.
    """
    if env.is_sandbox or env.aws.account_id:
        _require_account(env)
    return _client(env, service)


def _client(env: Environment, service: str) -> Any:
    kwargs: dict[str, Any] = {"config": _CLIENT_CONFIG}
    if env.aws.endpoint_url:
        kwargs["endpoint_url"] = env.aws.endpoint_url
    if env.is_sandbox:
        kwargs.update(aws_access_key_id=SANDBOX_CREDENTIAL, aws_secret_access_key=SANDBOX_CREDENTIAL,
                      aws_session_token=SANDBOX_CREDENTIAL)
    return session(env).client(service, **kwargs)


# One limit policy for every listing: boto3's paginators (each API's own token: NextToken, Marker,
# nextToken …), read lazily; a listing that goes past MAX_ITEMS is an error, never silently cut.
MAX_ITEMS = 10_000


def _translate(service: str, operation: str, exc: Exception) -> AwsError:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return AwsError(service, operation, err.get("Code", "Unknown"), err.get("Message", str(exc)))
    return AwsError(service, operation, type(exc).__name__, str(exc)[:300])


def call(cli: Any, operation: str, **params: Any) -> dict:
    """Call `operation` on `cli`, translating botocore errors into AwsError."""
    try:
        return getattr(cli, operation)(**params)
    except (ClientError, BotoCoreError, ResponseParserError) as exc:  # ResponseParserError: no such action
        raise _translate(cli.meta.service_model.service_name, operation, exc) from exc


def pages(cli: Any, operation: str, **params: Any) -> Iterator[dict]:
    """Every page of `operation`, through its boto3 paginator, errors translated; stop iterating to stop reading."""
    try:
        yield from cli.get_paginator(operation).paginate(**params)
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        raise _translate(cli.meta.service_model.service_name, operation, exc) from exc


def collect(cli: Any, operation: str, key: str, **params: Any) -> list[Any]:
    """Every item under `key` of every page of `operation`; more than MAX_ITEMS is an AwsError, not a cut list."""
    out: list[Any] = []
    for page in pages(cli, operation, **params):
        out += page.get(key) or []
        if len(out) > MAX_ITEMS:
            raise AwsError(cli.meta.service_model.service_name, operation, "TooManyItems",
                           f"more than {MAX_ITEMS} {key}: narrow the query")
    return out


def target_group(cli: Any, name: str, call: Any = call) -> dict:
    """The target group named `name` (elbv2 DescribeTargetGroups). `call`: a counting wrapper of `call`, if any."""
    groups = call(cli, "describe_target_groups", Names=[name]).get("TargetGroups") or []
    if not groups:
        raise AwsError("elasticloadbalancing", "describe_target_groups", "TargetGroupNotFound",
                       f"no target group {name}")
    return groups[0]


def _check_account(env: Environment, account: str) -> None:
    """Refuse credentials of the wrong account: the sandbox's must be the emulator's, others `aws.account_id`."""
    source = env.source or env.name
    if env.is_sandbox and account != SANDBOX_ACCOUNT:
        raise ConfigError(source, "aws", f"the sandbox refuses account {account or '(none)'}: only the emulator's "
                          f"{SANDBOX_ACCOUNT} is allowed")
    if env.aws.account_id and account != env.aws.account_id:
        raise ConfigError(source, "aws.account_id", f"credentials are for account {account or '(none)'}, "
                          f"the environment expects {env.aws.account_id}")


def _require_account(env: Environment) -> None:
    """Check the caller identity once per process and (endpoint, profile, account), before any other call.

    A sandbox without an endpoint would have boto3 go to AWS itself, so that is refused without a
    call. A failed check is not remembered: every later client is refused the same way.
    """
    endpoint = env.aws.endpoint_url
    key = (endpoint, env.aws.profile, env.aws.account_id or SANDBOX_ACCOUNT)
    if key in _VERIFIED:
        return
    if env.is_sandbox and not endpoint:
        raise ConfigError(env.source or env.name, "aws.endpoint_url", "a sandbox environment needs the emulator's "
                          "endpoint; without one its clients would call AWS")
    with _VERIFY_LOCK:
        if key in _VERIFIED:
            return
        ident = call(_client(env, "sts"), "get_caller_identity")
        _check_account(env, ident.get("Account", ""))
        log.debug("caller identity checked at %s: %s", endpoint or "AWS", ident.get("Arn", ""))
        _VERIFIED.add(key)


def caller_arn(env: Environment) -> str:
    """Who we are. In the sandbox, refuse anything but the emulator's account before any other call."""
    ident = call(client(env, "sts"), "get_caller_identity")
    _check_account(env, ident.get("Account", ""))
    return ident.get("Arn", "")
