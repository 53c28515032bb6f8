"""Is this host (or URL) this machine? One answer for the config guards, the sandbox and the checks.

Why our own and not `ipaddress.is_loopback` alone: a URL's host reaches this machine in more
spellings than that sees — `localhost.` (trailing dot), `LOCALHOST`, `127.1` and `2130706433`
(the legacy forms every resolver accepts), `::ffff:127.0.0.1` (IPv4-mapped) — and a guard with a
hole for any of them is no guard. Two questions: `is_loopback` (strictly the loopback interface:
what the sandbox may listen on and talk to) and `is_local` (also `0.0.0.0` / `::`, which a client
connects to as this host: what a real environment must refuse as an endpoint).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlparse

__all__ = ["is_local", "is_local_url", "is_loopback"]


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        try:  # 127.1, 2130706433, 0x7f.1: inet_aton's legacy IPv4 forms, which connect() accepts too
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback(host: str, resolve: bool = False) -> bool:
    """The loopback interface only (see the module docstring)."""
    return _is(host, resolve, lambda ip: ip.is_loopback)


def is_local(host: str) -> bool:
    """The loopback interface, or the unspecified address a client reaches this machine by."""
    return _is(host, False, lambda ip: ip.is_loopback or ip.is_unspecified)


def _is(host: str, resolve: bool, local: Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]) -> bool:
    """True for this machine's names and addresses; with `resolve`, also names that resolve only to them.

    Endpoint checks do not resolve (a name's answer can change after the check); a listen
    address may, since it is bound right after.
    """
    host = host.strip().strip("[]").rstrip(".").lower()
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    ip = _address(host)
    if ip is not None:
        return local(ip)
    if not resolve:
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return False
    found = [_address(str(info[4][0])) for info in infos]
    return bool(found) and all(ip is not None and local(ip) for ip in found)


def is_local_url(url: str) -> bool:
    """True when the URL's host is this machine (see `is_local`); False for anything unparsable."""
    try:
        return is_local(urlparse(url).hostname or "")
    except ValueError:
        return False
