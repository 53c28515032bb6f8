"""`verify.error_logs`: error lines since the deploy finished against an equal window before it started.

Errors are grouped by a normalised message (numbers, ids, quoted values and hex replaced by
placeholders), so "KeyError: 'L' on /products/17/" and the same on /products/4/ are one
signature; a signature that did not occur before the deploy is marked NEW, and a NEW one logged at
a sustained rate (the `[verify]` fatal_signature_* keys; see `decision.fatal_signatures`) fails the
check: it is a fatal bug in the rollback decision. A burst or a low rate only warns. The filter pattern
narrows what CloudWatch returns; each line is then classified here again (JSON `level` or the
usual markers), so a server that answers a pattern loosely cannot turn INFO lines into errors.
Reading stops at `max_log_events` per window and says so.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from shipbook import aws
from shipbook.checks import CheckResult
from shipbook.config import Environment
from shipbook.errors import ShipbookError
from shipbook.verify.decision import FatalRule, FatalSignatures, fatal_signatures
from shipbook.verify.metrics import Window

log = logging.getLogger(__name__)

ERROR_LOGS = "verify.error_logs"
ERROR_LEVELS = ("ERROR", "CRITICAL", "FATAL")
_RAW_ERROR = re.compile(r"\b(ERROR|CRITICAL|FATAL)\b|Traceback \(most recent call last\)|^\w+(Error|Exception)\b")
_NORMALISE = (
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{12,}\b", re.I), "<hex>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "'<s>'"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)
COLUMNS = ["signature", "before", "after", "new", "example"]


def normalise(message: str) -> str:
    """The signature of an error message: the same mistake with other values gives the same text."""
    out = message.strip()
    for pattern, repl in _NORMALISE:
        out = pattern.sub(repl, out)
    return out[:200]


def classify(raw: str) -> str | None:
    """The error text of a log line (message and exception's last line), or None when it is not an error."""
    text = raw.strip()
    if text.startswith("{"):
        try:
            entry = json.loads(text)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            if str(entry.get("level", "")).upper() not in ERROR_LEVELS:
                return None
            message = str(entry.get("message", ""))
            exc = str(entry.get("exception", "")).strip().splitlines()
            return f"{message} — {exc[-1]}" if exc else message
    return text if _RAW_ERROR.search(text) else None


@dataclass
class LogWindow:
    """Error lines of one window: signature → count, an example each, each line's time, how much was read."""

    window: Window
    scanned: int = 0
    signatures: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    truncated: bool = False
    times: list[tuple[datetime, str]] = field(default_factory=list)  # (logged at, signature) per error line

    @property
    def errors(self) -> int:
        return sum(self.signatures.values())

    def lines(self) -> pd.DataFrame:
        """One row per error line with a timestamp: `time` (UTC) and `signature`."""
        return pd.DataFrame(self.times, columns=["time", "signature"])


def events(logs: Any, group: str, start: datetime, end: datetime, pattern: str = "", page_size: int = 10_000
           ) -> Iterator[dict[str, Any]]:
    """The events of log group `group` from `start` to `end`, oldest first (FilterLogEvents through its paginator;
    `pattern`: CloudWatch's filter pattern). Read lazily: stop iterating to stop reading."""
    params: dict[str, Any] = {"logGroupName": group, "startTime": _ms(start), "endTime": _ms(end),
                              "limit": min(10_000, page_size)}
    if pattern:
        params["filterPattern"] = pattern
    for page in aws.pages(logs, "filter_log_events", **params):
        yield from page.get("events", [])


def read_window(logs: Any, group: str, window: Window, pattern: str, max_events: int) -> LogWindow:
    """Error lines of `group` in `window` (at most `max_events` lines read)."""
    out = LogWindow(window)
    for event in events(logs, group, window.start, window.end, pattern, max_events):
        out.scanned += 1
        text = classify(str(event.get("message", "")))
        if text is not None:
            sig = normalise(text)
            out.signatures[sig] += 1
            out.examples.setdefault(sig, text[:300])
            if isinstance(event.get("timestamp"), int | float):
                out.times.append((datetime.fromtimestamp(event["timestamp"] / 1000, tz=UTC), sig))
        if out.scanned >= max_events:
            out.truncated = True
            break
    return out


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


@dataclass
class ErrorLogs:
    """Both windows, the comparison table and, once judged, the NEW signatures against the fatal rule."""

    before: LogWindow
    after: LogWindow
    fatal: FatalSignatures | None = None

    @property
    def new(self) -> list[str]:
        return [s for s in self.after.signatures if s not in self.before.signatures]

    def table(self) -> pd.DataFrame:
        sigs = list(dict.fromkeys([*self.after.signatures, *self.before.signatures]))
        rows = [{"signature": s, "before": self.before.signatures.get(s, 0), "after": self.after.signatures.get(s, 0),
                 "new": "NEW" if s in self.new else "",
                 "example": self.after.examples.get(s) or self.before.examples.get(s, "")} for s in sigs]
        df = pd.DataFrame(rows, columns=COLUMNS)
        return df.sort_values(["new", "after"], ascending=[False, False], kind="stable").reset_index(drop=True)


    def judge_fatal(self, rule: FatalRule) -> FatalSignatures:
        """The NEW signatures after the deploy against `rule`; a read cut short is judged up to its last line."""
        w = self.after.window
        end, note = w.end, ""
        if self.after.truncated and self.after.times:
            end = min(w.end, max(t for t, _ in self.after.times))
            note = f"read stopped early: judged up to {end:%H:%M:%S} UTC only"
        self.fatal = fatal_signatures(self.after.lines(), self.before.signatures, w.start, end, rule, note)
        return self.fatal


def compare(env: Environment, before: Window, after: Window, pattern: str, max_events: int,
            logs: Any = None) -> ErrorLogs:
    logs = logs or aws.client(env, "logs")
    return ErrorLogs(read_window(logs, env.stack.log_group, before, pattern, max_events),
                     read_window(logs, env.stack.log_group, after, pattern, max_events))


def check_error_logs(env: Environment, before: Window, after: Window, pattern: str, max_events: int,
                     logs: Any = None, rule: FatalRule | None = None) -> tuple[CheckResult, ErrorLogs | None]:
    """verify.error_logs and the comparison behind it. New signatures warn (highlighted in the table);
    with `rule`, one sustained at the rule's rate fails (`ErrorLogs.fatal` holds the evidence)."""
    if not env.stack.log_group:
        return CheckResult(ERROR_LOGS, "skip", "no stack.log_group in the environment file"), None
    try:
        cmp = compare(env, before, after, pattern, max_events, logs)
    except ShipbookError as exc:
        log.warning("error logs could not be read: %s", exc)
        return CheckResult(ERROR_LOGS, "fail", f"could not be checked: {exc}",
                           evidence=f"FilterLogEvents {env.stack.log_group}"), None
    if rule is not None:
        cmp.judge_fatal(rule)
    return verdict(cmp, env.stack.log_group, pattern, max_events), cmp


def verdict(cmp: ErrorLogs, group: str, pattern: str, max_events: int) -> CheckResult:
    """fail: a NEW signature sustained at the fatal rate (when `cmp.fatal` was judged); warn: a new
    signature, or known errors more than twice as frequent; pass: nothing new."""
    b, a = cmp.before, cmp.after
    per_min_b = b.errors / max(b.window.seconds / 60, 1e-9)
    per_min_a = a.errors / max(a.window.seconds / 60, 1e-9)
    cut = [w.window.name for w in (b, a) if w.truncated]
    note = f"; read stopped at {max_events} lines in: {', '.join(cut)}" if cut else ""
    evidence = f"FilterLogEvents {group} ({pattern or 'no pattern'}): {b.scanned} + {a.scanned} lines read"
    rows = cmp.table().to_dict("records")
    counts = f"{a.errors} error line(s) after ({per_min_a:.1f}/min) vs {b.errors} before ({per_min_b:.1f}/min)"
    if cmp.fatal is not None and cmp.fatal.triggered:
        return CheckResult(ERROR_LOGS, "fail", f"fatal bug: {len(cmp.fatal.fatal)} NEW error signature(s) sustained "
                           f"— {cmp.fatal.evidence()}; {counts}{note}", rows, evidence)
    if cmp.new:
        shown = "; ".join(cmp.new[:3]) + (f" (+{len(cmp.new) - 3} more)" if len(cmp.new) > 3 else "")
        return CheckResult(ERROR_LOGS, "warn", f"{len(cmp.new)} NEW error signature(s) since the deploy: {shown}; "
                           f"{counts}{note}", rows, evidence)
    if per_min_a > 2 * per_min_b and a.errors >= 5:
        return CheckResult(ERROR_LOGS, "warn", f"known errors more frequent: {counts}{note}", rows, evidence)
    return CheckResult(ERROR_LOGS, "pass", f"no new error signature; {counts}{note}", rows, evidence)
