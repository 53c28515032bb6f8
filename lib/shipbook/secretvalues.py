"""The values the redactor must mask: every secret the environment declares.

They are read once, in the runner's process, only to be masked; they are never passed to a
kernel as parameters and never written anywhere.
"""

from __future__ import annotations

import logging
import os

from shipbook import aws
from shipbook.config import Environment, SecretRef
from shipbook.errors import AwsError

log = logging.getLogger(__name__)

# Variables that commonly hold credentials in the operator's own environment.
_ENV_VARS = ("GITHUB_TOKEN", "GH_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DATABASE_URL", "SECRET_KEY")


def read(env: Environment, ref: SecretRef) -> str:
    """The value behind a reference. Only for masking or for a client's own credential — never print it."""
    if ref.env:
        return os.environ.get(ref.env, "")
    if ref.secretsmanager:
        return aws.call(aws.client(env, "secretsmanager"), "get_secret_value",
                        SecretId=ref.secretsmanager).get("SecretString", "")
    return aws.call(aws.client(env, "ssm"), "get_parameter", Name=ref.ssm,
                    WithDecryption=True)["Parameter"]["Value"]


def collect(env: Environment) -> list[str]:
    """Secret values to mask. A secret that cannot be read is logged (by name) and skipped."""
    values: list[str] = []
    refs = dict(env.secrets)
    if env.github.token:
        refs["github.token"] = env.github.token
    if env.precheck.share_webhook:
        refs["precheck.share_webhook"] = env.precheck.share_webhook
    for name, ref in refs.items():
        try:
            value = read(env, ref)
        except AwsError as exc:
            log.warning("secret %s (%s) could not be read for masking: %s", name, ref.describe(), exc.code)
            continue
        if value:
            values.append(value)
    values += [os.environ[v] for v in _ENV_VARS if os.environ.get(v) and os.environ[v] != "testing"]
    return values
