"""Helpers shared by test modules (conftest files are fixtures only: several share the name `conftest`)."""

from __future__ import annotations

import socket

import boto3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_client(url: str, service: str):
    return boto3.client(service, endpoint_url=url, region_name="ap-northeast-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")
