"""Helpers shared by test modules (conftest files are fixtures only: several share the name `conftest`)."""

from __future__ import annotations

import contextlib
import socket

import boto3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports. All sockets stay bound until every port is picked: ports taken one
    at a time (bind, close, bind again) can come back twice, and two servers then fight over one port."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def aws_client(url: str, service: str):
    return boto3.client(service, endpoint_url=url, region_name="ap-northeast-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")
