"""`release.version`: the release's version is new and moves forward, checked before anything changes.

The format is checked by `shipbook.versions` (and by the CLI before any notebook runs). Here:
the version is greater than the latest release tag and not yet a tag, locally or on the
remote (`git ls-remote`, so a tag someone else pushed counts). Pre-releases and `-rollback`
tags are not releases: a pre-release must still be greater than earlier pre-releases of the
same version, and a rollback tag never counts as the latest release.

A tag of this version that this very run created (its message carries `Shipbook-Run: <run_id>`)
is not an error: it means the deploy phase is being resumed after the push.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import semver

from shipbook import gitinfo, versions
from shipbook.deploy.model import RUN_TRAILER, VERSION
from shipbook.errors import InputError
from shipbook.result import Check

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)



@dataclass
class RemoteRefs:
    """Tags (name → commit) and branch heads (name → commit) of a remote, from one `git ls-remote`."""

    url: str
    tags: dict[str, str] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)


def remote_url(repo: str | Path, remote: str) -> str:
    return gitinfo.git(repo, "remote", "get-url", remote, check=False) or remote


def remote_refs(repo: str | Path, remote: str) -> RemoteRefs:
    """What the remote has now. Raises InfraError when it cannot be reached."""
    out = gitinfo.git(repo, "ls-remote", "--tags", "--heads", remote)
    refs = RemoteRefs(remote_url(repo, remote))
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/tags/"):
            name = ref[len("refs/tags/"):]
            if name.endswith("^{}"):
                refs.tags[name[:-3]] = sha  # the peeled commit wins over the tag object
            else:
                refs.tags.setdefault(name, sha)
        elif ref.startswith("refs/heads/"):
            refs.heads[ref[len("refs/heads/"):]] = sha
    return refs


def tag_run_id(repo: str | Path, tag: str) -> str:
    """The run that created a local annotated tag (its `Shipbook-Run:` trailer), '' if none."""
    body = gitinfo.git(repo, "tag", "--list", "--format=%(contents)", tag, check=False)
    for line in body.splitlines():
        if line.startswith(RUN_TRAILER):
            return line[len(RUN_TRAILER):].strip()
    return ""


def tag_time(repo: str | Path, tag: str) -> datetime | None:
    """When a local annotated tag was made (its tagger date), None if unknown."""
    stamp = gitinfo.git(repo, "for-each-ref", "--format=%(taggerdate:iso-strict)", f"refs/tags/{tag}", check=False)
    try:
        return datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


def latest_release(tags: set[str] | list[str]) -> str:
    """The greatest final release tag ('' when none): pre-releases and rollback tags excluded."""
    best: tuple[semver.Version, str] | None = None
    for t in tags:
        if not versions.is_release_tag(t):
            continue
        v = semver.Version.parse(t[1:])
        if v.prerelease:
            continue
        if best is None or v > best[0]:
            best = (v, t)
    return best[1] if best else ""


@dataclass
class VersionCheck:
    """The outcome of the version check, shown in the notebook and kept in the plan."""

    version: str
    latest_release: str
    previous_version: str
    remote: str
    remote_url: str
    local_tags: int
    remote_tags: int
    resumed: bool = False
    problems: list[str] = field(default_factory=list)
    remote_refs: RemoteRefs | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def check(self) -> Check:
        if self.problems:
            return Check(VERSION, "fail", "; ".join(self.problems))
        after = f"after {self.latest_release}" if self.latest_release else "first release"
        again = " (tag already pushed by this run: resuming)" if self.resumed else ""
        return Check(VERSION, "pass", f"{self.version} is new on {self.remote} and moves forward ({after}){again}")

    def table(self) -> pd.DataFrame:
        import pandas as pd  # here: the runner's early check must not load pandas

        rows = [("version", self.version), ("latest release tag", self.latest_release or "(none)"),
                ("previous_version (runner)", self.previous_version or "(none)"),
                ("remote", f"{self.remote} ({self.remote_url})"),
                ("tags local / remote", f"{self.local_tags} / {self.remote_tags}"),
                ("verdict", self.check().verdict), ("summary", self.check().summary)]
        return pd.DataFrame(rows, columns=["item", "value"])


def inspect(repo: str | Path, version: str, remote: str = "origin", previous_version: str = "",
            run_id: str = "") -> VersionCheck:
    """Every problem with `version` in `repo` and on `remote`, without raising for them."""
    target = versions.parse(version)
    local = set(gitinfo.tags(repo))
    refs = remote_refs(repo, remote)
    known = local | set(refs.tags)
    others = known - {version}
    latest = latest_release(others)
    vc = VersionCheck(version, latest, previous_version, remote, refs.url, len(local), len(refs.tags),
                      remote_refs=refs)
    if latest and target <= semver.Version.parse(latest[1:]):
        vc.problems.append(f"{version} is not greater than the latest release {latest}")
    if previous_version and versions.is_release_tag(previous_version) and \
            target <= semver.Version.parse(previous_version[1:]):
        vc.problems.append(f"{version} is not greater than the previous release {previous_version}")
    if target.prerelease:
        core = target.finalize_version()
        later = sorted(t for t in others if versions.is_release_tag(t)
                       and semver.Version.parse(t[1:]).finalize_version() == core
                       and semver.Version.parse(t[1:]) >= target)
        if later:
            vc.problems.append(f"{version} is not greater than the existing tag(s) {', '.join(later)}")
    if version in known:
        mine = bool(run_id) and version in local and tag_run_id(repo, version) == run_id
        same = version not in refs.tags or refs.tags[version] == gitinfo.rev_or_empty(repo, version)
        if mine and same:
            vc.resumed = True
        else:
            where = " and ".join(w for w, present in (("locally", version in local),
                                                       (f"on {remote}", version in refs.tags)) if present)
            vc.problems.append(f"{version} is already a tag {where}: choose a new version")
    return vc


def check_version(repo: str | Path, version: str, remote: str = "origin", previous_version: str = "",
                  run_id: str = "") -> VersionCheck:
    """`inspect`, raising InputError (exit 2) when the version cannot be released. Changes nothing."""
    vc = inspect(repo, version, remote, previous_version, run_id)
    if vc.problems:
        raise InputError("VERSION", "; ".join(vc.problems))
    log.info("%s", vc.check().summary)
    return vc
