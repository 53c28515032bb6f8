"""Release versions: `vMAJOR.MINOR.PATCH[-pre]`, ordered by semver, and the previous release."""

from __future__ import annotations

import re
from collections.abc import Iterable

import semver

from shipbook.errors import InputError

_TAG = re.compile(r"v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?")


def parse(version: str, field: str = "VERSION") -> semver.Version:
    """Parse a release tag or raise InputError naming the field and the reason."""
    if not version:
        raise InputError(field, "is empty; give a version like v1.0.0")
    if not _TAG.fullmatch(version):
        raise InputError(field, f"{version!r} is not a semantic version tag like v1.2.3 or v1.2.3-rc.1 "
                         "(a leading 'v', three numbers without leading zeros)")
    try:
        return semver.Version.parse(version[1:])
    except ValueError as exc:
        raise InputError(field, f"{version!r}: {exc}") from exc


def is_release_tag(tag: str) -> bool:
    """A tag that marks a deployed release: semver, not a `-rollback` tag."""
    return bool(_TAG.fullmatch(tag)) and not tag.endswith("-rollback")


def previous_release(tags: Iterable[str], version: str) -> str:
    """The greatest final release tag lower than `version` ('' when there is none).

    Pre-releases and rollback tags are not previous releases: a rollback returns to one,
    and a release candidate was never the production version.
    """
    target = parse(version)
    best: tuple[semver.Version, str] | None = None
    for t in tags:
        if not is_release_tag(t):
            continue
        v = semver.Version.parse(t[1:])
        if v.prerelease or v >= target:
            continue
        if best is None or v > best[0]:
            best = (v, t)
    return best[1] if best else ""
