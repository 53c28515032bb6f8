"""boto3 clients for the AWS twin and the fixed names of the twin."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from shipbook.sandbox.loopback import require_loopback

REGION = "ap-northeast-1"
CLUSTER = "shipbook-demo"
SERVICE = "demo-web"
CONTAINER = "web"
TARGET_GROUP = "demo-web-tg"
LOG_GROUP = "/ecs/demo-web"
DUMMY_CREDENTIALS = dict.fromkeys(("aws_access_key_id", "aws_secret_access_key"), "testing")

_CONFIG = Config(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=15, max_pool_connections=20)


def client(service: str, aws_url: str | None) -> Any:
    """A client of `service` at the twin's endpoint (dummy credentials: the twin accepts any).

    The endpoint must be loopback; None (boto3's default: real AWS) is refused too.
    """
    return boto3.client(service, endpoint_url=require_loopback(aws_url, "AWS twin endpoint"), region_name=REGION,
                        config=_CONFIG, **DUMMY_CREDENTIALS)
