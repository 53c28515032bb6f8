"""The sandbox's own tooling talks to loopback only: one guard for every endpoint it is given.

Why: the twin's seeding, scenarios, runtime and deployer write with dummy credentials and
would happily create stacks, open ports or push images wherever a URL points. An endpoint
that is not a loopback address (or no endpoint at all, which boto3 reads as "real AWS") is
refused before any client is built.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlparse

from shipbook.errors import InputError
from shipbook.loopback import is_loopback

__all__ = ["NotLoopbackError", "is_loopback", "loopback_url", "require_loopback"]


class NotLoopbackError(InputError, ValueError):
    """An endpoint the sandbox refuses. A ValueError too, so step and argument handlers report it as bad input."""


def require_loopback(url: str | None, what: str) -> str:
    """`url` if it is an http(s) URL of a loopback host; otherwise NotLoopbackError naming `what`."""
    if not url:
        raise NotLoopbackError(what, "no endpoint given, which would mean real AWS; the sandbox talks to "
                               "loopback only (e.g. http://127.0.0.1:4566)")
    try:
        parsed = urlparse(url)
        host = parsed.hostname or ""
    except ValueError as exc:
        raise NotLoopbackError(what, f"{url!r} is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not is_loopback(host):
        raise NotLoopbackError(what, f"the sandbox talks to loopback only, got {url!r}")
    return url


def loopback_url(text: str) -> str:
    """argparse `type=` for an endpoint option: the URL, or a usage error saying why it is refused."""
    try:
        return require_loopback(text, "URL")
    except NotLoopbackError as exc:
        raise argparse.ArgumentTypeError(exc.reason) from exc
