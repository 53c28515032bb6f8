"""Time as shipbook reads and writes it: aware UTC datetimes in, ISO text for records, readable text for people.

One place for the small helpers every module needs (now, parsing a recorded or typed time, the two ways
of writing one), so a record written by one phase reads the same in another. Functions that wait or
measure take a `now: Clock` instead of calling `utcnow` themselves (tests pass a fixed clock).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from shipbook.errors import InputError

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_time(value: str | datetime | None, default: datetime | None = None, name: str = "start") -> datetime:
    """An aware UTC datetime from ISO text or a datetime (naive means UTC); '' gives `default`, else now.

    `name` is the input the text came from, for the error a person reads.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return default or utcnow()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(name, f"{value!r} is not an ISO date-time like 2026-11-28T15:30:00+09:00") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def parse_optional(value: str | None, name: str = "time") -> datetime | None:
    """Like `parse_time`, but '' (or None) is None: a fact that was not recorded, not "now"."""
    return parse_time(value, name=name) if value else None


def try_parse(value: object) -> datetime | None:
    """A recorded time for display: None when it is missing or not ISO text (an old or foreign record)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value)
    except InputError:
        return None


def now_iso() -> str:
    """Now, as records keep it."""
    return iso(utcnow())


def iso(t: datetime | None) -> str:
    """A time as records keep it: ISO 8601 in UTC to the second ('' for none)."""
    return t.astimezone(UTC).isoformat(timespec="seconds") if t is not None else ""


def fmt(t: datetime | None) -> str:
    """A time as people read it in a report (UTC, said so)."""
    if t is None:
        return "—"
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def time_of_day(t: datetime | str | None, seconds: bool = True) -> str:
    """A time of day (UTC), as a report names a minute: 15:02 or 15:02:10."""
    if not t:
        return "—"
    return parse_time(t).strftime("%H:%M:%S" if seconds else "%H:%M")
