"""Feedback on a release: problems found after it and improvements for the next one.

Kept at `runs/<env>/<version>/feedback.jsonl`, beside the release's run dirs and outside them
(the runner owns a run dir and `shipbook audit` reports any file it did not write there).
Why append-only and hash-chained: the list is part of the audit trail — the next release's
pre-check shows what is still open — so an item is never edited or deleted; closing it is
one more line. Each line carries the SHA-256 of the line before it (the first: 64 zeros),
so `verify` reports a changed, removed or inserted line. Appends hold an exclusive lock on
the file, and every text goes through the Redactor before it is written.
"""

from __future__ import annotations

import fcntl
import html
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from shipbook import (
    audit,
    clock,
    config,
    gitinfo,
    i18n,
    places,
    secretvalues,
    versions,
)
from shipbook.config import Environment
from shipbook.errors import InputError, ShipbookError
from shipbook.redact import Redactor

log = logging.getLogger(__name__)

FILE = "feedback.jsonl"
KINDS = ("problem", "improvement")
MAX_TEXT = 2000
_ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


@dataclass
class FeedbackItem:
    """One item with its current state (folded from the item's line and any later close line)."""

    id: str
    version: str
    env: str
    kind: str
    text: str
    author: str
    at: str
    status: str = "open"  # open | closed
    closed_at: str = ""
    closed_by: str = ""
    resolution: str = ""


def _env_name(env: str | Environment) -> str:
    name = env.name if isinstance(env, Environment) else env
    if not _ENV_NAME.fullmatch(name or ""):
        raise InputError("--env", f"{name!r} is not a valid environment name")
    return name


def path_for(env: str | Environment, version: str, runs_root: Path | None = None) -> Path:
    """`runs/<env>/<version>/feedback.jsonl` (the version is validated: it becomes a path)."""
    versions.parse(version)
    return (runs_root or places.runs_root()) / _env_name(env) / version / FILE


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a", encoding="utf-8") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _append(path: Path, entry: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """Append one chained line under the lock; returns the entry as written."""
    with _locked(path):
        lines = _lines(path)
        entry = {**redactor.json(entry), "seq": len(lines) + 1,
                 "prev": audit.sha256_bytes(lines[-1].encode()) if lines else audit.GENESIS}
        if entry.get("event") == "add":
            entry["id"] = f"F{sum(1 for ln in lines if json.loads(ln).get('event') == 'add') + 1}"
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    return entry


def _redactor(env: str | Environment) -> Redactor:
    """Masks every secret the environment declares (and the operator's own credentials).

    A bare name declares no secrets. The CLI loads the environment unresolved (feedback needs no
    endpoints), so a sandbox's `{sandbox.*}` endpoint is resolved here to read the secrets kept in
    its twin; with the sandbox down those cannot be read and are skipped with a warning, as
    `secretvalues.collect` does with any secret it cannot read.
    """
    if not isinstance(env, Environment):
        return Redactor(secretvalues.collect(Environment(name=_env_name(env))))
    if "{sandbox." in env.aws.endpoint_url:
        try:
            env = config.load_file(Path(env.source)) if env.source else env
        except InputError as exc:  # a ConfigError: the sandbox is not up
            log.warning("secrets in the sandbox's AWS could not be read for masking: %s", exc)
        if "{sandbox." in env.aws.endpoint_url:
            local = {k: r for k, r in env.secrets.items() if r.env}
            token = env.github.token if env.github.token and env.github.token.env else None
            env = replace(env, secrets=local, github=replace(env.github, token=token))
    return Redactor(secretvalues.collect(env))


def _now(now: datetime | None) -> str:
    return clock.iso(now or clock.utcnow())


def _clean_text(text: str) -> str:
    text = " ".join((text or "").split())
    if not text:
        raise InputError("text", "is empty: say what the problem or the improvement is")
    if len(text) > MAX_TEXT:
        raise InputError("text", f"is {len(text)} characters; keep it under {MAX_TEXT}")
    return text


def add(env: str | Environment, version: str, text: str, kind: str = "problem", author: str = "", *,
        runs_root: Path | None = None, now: datetime | None = None, redactor: Redactor | None = None) -> FeedbackItem:
    """Record a problem found after `version`'s release, or an improvement for the next one."""
    if kind not in KINDS:
        raise InputError("--kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    path = path_for(env, version, runs_root)
    entry = _append(path, {"event": "add", "env": _env_name(env), "version": version, "kind": kind,
                           "text": _clean_text(text), "author": author, "at": _now(now)}, redactor or _redactor(env))
    log.info("feedback %s recorded for %s (%s)", entry["id"], version, kind)
    return _fold([entry])[0]


def close(env: str | Environment, version: str, item_id: str, resolution: str = "", author: str = "", *,
          runs_root: Path | None = None, now: datetime | None = None,
          redactor: Redactor | None = None) -> FeedbackItem:
    """Mark an open item as dealt with (one more line; the item's own line is never changed)."""
    path = path_for(env, version, runs_root)
    current = {i.id: i for i in items(env, version, runs_root=runs_root)}
    if item_id not in current:
        raise InputError("feedback id", f"{version} has no item {item_id!r} (known: {', '.join(current) or 'none'})")
    if current[item_id].status == "closed":
        raise InputError("feedback id", f"{item_id} is already closed")
    entry = _append(path, {"event": "close", "ref": item_id, "resolution": " ".join(resolution.split()),
                           "author": author, "at": _now(now)}, redactor or _redactor(env))
    return next(i for i in _fold([json.loads(ln) for ln in _lines(path)]) if i.id == entry["ref"])


def _fold(entries: list[dict[str, Any]]) -> list[FeedbackItem]:
    out: dict[str, FeedbackItem] = {}
    for e in entries:
        if e.get("event") == "add":
            out[e["id"]] = FeedbackItem(e["id"], e.get("version", ""), e.get("env", ""), e.get("kind", ""),
                                        e.get("text", ""), e.get("author", ""), e.get("at", ""))
        elif e.get("event") == "close" and e.get("ref") in out:
            item = out[e["ref"]]
            item.status, item.closed_at = "closed", e.get("at", "")
            item.closed_by, item.resolution = e.get("author", ""), e.get("resolution", "")
    return list(out.values())


def items(env: str | Environment, version: str, *, runs_root: Path | None = None) -> list[FeedbackItem]:
    """Every item recorded against `version`, oldest first, with its current status."""
    entries = []
    for n, line in enumerate(_lines(path_for(env, version, runs_root)), 1):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("feedback of %s: line %d is not JSON (see `verify`)", version, n)
    return _fold(entries)


def open_items(env: str | Environment, version: str, *, runs_root: Path | None = None) -> list[FeedbackItem]:
    """The items of `version` still open: what the next release's pre-check shows.

    An empty `version` (a first release has no previous one) gives no items.
    """
    if not version:
        return []
    return [i for i in items(env, version, runs_root=runs_root) if i.status == "open"]


def table(found: list[FeedbackItem], lang: str = "ja") -> pd.DataFrame:
    """The items as a table for a report, labels in `lang`."""
    cols = ["ID", i18n.t("report.kind", lang), i18n.t("summary", lang), i18n.t("status", lang),
            i18n.t("time", lang)]
    rows = [[i.id, i18n.t(f"feedback.{i.kind}", lang) if i.kind in KINDS else i.kind, i.text,
             i.status, i.at] for i in found]
    return pd.DataFrame(rows, columns=cols)


# lang -> what the pre-check says above (or instead of) the table
_CARRIED_NOTES: dict[str, dict[str, str]] = {
    "ja": {"open": "前回リリース {prev} の未解決のフィードバック: {n} 件（参考情報: ゲートには影響しません）。"
                   "解決したら `shipbook feedback {prev} --close ID \"対応内容\"`",
           "none": "前回リリース {prev} の未解決のフィードバックはありません。",
           "first": "前回リリースがありません: 引き継ぐフィードバックはありません。",
           "unread": "前回リリースのフィードバックを読めませんでした（ゲートには影響しません）: {why}"},
    "en": {"open": "{n} feedback item(s) still open from the previous release {prev} (informational: not part "
                   "of the gate). Close one with `shipbook feedback {prev} --close ID \"resolution\"`",
           "none": "No feedback items still open from the previous release {prev}.",
           "first": "No previous release: no feedback carried over.",
           "unread": "The previous release's feedback could not be read (not part of the gate): {why}"},
}


@dataclass
class CarriedOver:
    """The previous release's open items, as the next release's pre-check shows them (issue 7)."""

    previous: str
    found: list[FeedbackItem]
    note: str
    lang: str = "ja"

    def table(self) -> pd.DataFrame:
        return table(self.found, self.lang)

    def _repr_html_(self) -> str:
        body = self.table().to_html(index=False, escape=True) if self.found else ""
        return f"<p>{html.escape(self.note)}</p>{body}"

    def __repr__(self) -> str:
        return self.note + (f"\n{self.table().to_string(index=False)}" if self.found else "")


def carried_over(env: Environment, version: str = "", previous_version: str = "", *,
                 runs_root: Path | None = None) -> CarriedOver:
    """What is still open from the release before `version`: the next pre-check shows it, never gates on it.

    `previous_version` is the run's parameter; empty (a notebook opened by hand), it is the greatest
    release tag below `version` in the app repository, as the checks find it. A previous release that
    cannot be found or read gives a note instead of an error: this section must not stop the phase.
    """
    notes = _CARRIED_NOTES["en" if env.lang == "en" else "ja"]
    prev = previous_version
    try:
        if not prev and version:
            prev = versions.previous_release(gitinfo.tags(env.app.repo), version)
        found = open_items(env, prev, runs_root=runs_root)
    except ShipbookError as exc:
        log.warning("open feedback of the previous release not read: %s", exc)
        return CarriedOver(prev, [], notes["unread"].format(why=exc), env.lang)
    if not prev:
        return CarriedOver("", [], notes["first"], env.lang)
    key = "open" if found else "none"
    return CarriedOver(prev, found, notes[key].format(prev=prev, n=len(found)), env.lang)


def as_dicts(found: list[FeedbackItem]) -> list[dict[str, Any]]:
    return [asdict(i) for i in found]


def verify(env: str | Environment, version: str, *, runs_root: Path | None = None) -> list[str]:
    """Problems in the chain of `version`'s feedback file (empty when intact or absent)."""
    path = path_for(env, version, runs_root)
    problems: list[str] = []
    prev = audit.GENESIS
    for n, line in enumerate(_lines(path), 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"{path}: line {n}: not JSON (changed)")
            prev = audit.sha256_bytes(line.encode())
            continue
        if entry.get("prev") != prev or entry.get("seq") != n:
            problems.append(f"{path}: line {n}: chain broken (a line was changed, removed or inserted)")
        prev = audit.sha256_bytes(line.encode())
    return problems


def verify_all(runs_root: Path, env: str) -> list[str]:
    """`verify` for every release of `env` that has feedback (for `shipbook audit`)."""
    problems: list[str] = []
    for path in sorted((runs_root / env).glob(f"*/{FILE}")):
        try:
            problems += verify(env, path.parent.name, runs_root=runs_root)
        except InputError:
            problems.append(f"{path}: not under a release version directory")
    return problems
