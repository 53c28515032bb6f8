"""runs/index.html: every run, newest first, with a link to each phase's pages; then the incidents.

The page is rendered from an autoescaped Jinja2 template (`templates/runs_index.html`): every
value from a run record is text, whatever it holds. Unreadable run.json files are skipped
with a warning rather than breaking the page for every other run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from shipbook import clock
from shipbook.redact import Redactor, atomic_write_text
from shipbook.render import FONT_STACK

__all__ = ["write_index"]

log = logging.getLogger(__name__)

# The runner writes "rolled-back"; the spelling "rolled_back" gets the same badge.
_KNOWN_STATUSES = frozenset(
    {"running", "succeeded", "blocked", "failed", "pending", "skipped", "rolled-back", "cancelled", "open"}
)

_CSS = f"""
body {{ font-family: {FONT_STACK}; margin: 1.5em; color: #1f2328; }}
h1 {{ font-size: 1.5em; }}
.scroll {{ overflow-x: auto; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #d0d7de; padding: .5em .6em; text-align: left; vertical-align: top; }}
th {{ background: #f6f8fa; }}
code {{ font-size: .9em; }}
.muted {{ color: #656d76; font-size: .85em; }}
.phases {{ list-style: none; margin: 0; padding: 0; }}
.phases-cell {{ min-width: 16em; }}
.phase {{ margin: .15em 0; }}
.phase > * {{ white-space: nowrap; }}
.arn {{ word-break: break-all; }}
.nowrap {{ white-space: nowrap; }}
.error {{ color: #cf222e; font-size: .85em; white-space: normal; }}
.badge {{ display: inline-block; white-space: nowrap; padding: .1em .55em; border-radius: 1em; font-size: .8em;
  font-weight: 600; color: #fff; background: #6e7781; }}
.badge-succeeded {{ background: #1a7f37; }}
.badge-running {{ background: #0969da; }}
.badge-blocked {{ background: #9a6700; }}
.badge-failed {{ background: #cf222e; }}
.badge-rolled-back {{ background: #8250df; }}
.badge-open {{ background: #bc4c00; }}
h2 {{ font-size: 1.2em; margin-top: 1.5em; }}
.badge-pending, .badge-skipped, .badge-cancelled, .badge-unknown {{ background: #6e7781; }}
"""

_env = jinja2.Environment(loader=jinja2.PackageLoader("shipbook", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


@dataclass(frozen=True)
class _Run:
    """One run.json as the index shows it."""

    dir: Path
    record: dict[str, Any]
    started: datetime | None




def _load_runs(runs_root: Path, incidents: bool = False) -> list[_Run]:
    """Release runs (runs/<env>/<version>/<run-id>/), or with `incidents` the incidents (runs/<env>/incidents/<id>/)."""
    runs: list[_Run] = []
    for path in sorted(runs_root.glob("*/*/*/run.json")):
        if (path.parent.parent.name == "incidents") != incidents:
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("index: skipping unreadable run record %s: %s", path, exc)
            continue
        if not isinstance(record, dict) or not isinstance(record.get("phases", []), list):
            log.warning("index: skipping run record %s: not a run.json object", path)
            continue
        runs.append(_Run(path.parent, record, clock.try_parse(record.get("started"))))
    oldest = datetime.min.replace(tzinfo=UTC)
    runs.sort(key=lambda r: (r.started or oldest, str(r.record.get("run_id", r.dir.name))), reverse=True)
    return runs


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _status(status: Any) -> dict[str, str]:
    text = str(status) if status else "unknown"
    key = text.replace("_", "-")
    return {"text": text, "css": key if key in _KNOWN_STATUSES else "unknown"}


def _fmt_time(moment: datetime | None, raw: Any) -> str:
    if moment is None:
        return _text(raw) if raw else "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt_duration(started: datetime | None, finished: datetime | None) -> str:
    if started is None or finished is None:
        return "—"
    seconds = int((finished - started).total_seconds())
    if seconds < 0:
        return "—"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _phase(runs_root: Path, run_dir: Path, phase: dict[str, Any]) -> dict[str, Any]:
    links = []
    notebook = phase.get("notebook")
    if isinstance(notebook, str) and notebook:
        stem = notebook.removesuffix(".ipynb")
        for label, filename in (("report", f"{stem}.stakeholder.html"), ("full", f"{stem}.html")):
            target = run_dir / filename
            if Path(filename).name == filename and target.is_file():
                links.append((label, quote(target.relative_to(runs_root).as_posix())))
    return {"name": _text(phase.get("name") or "?"), "status": _status(phase.get("status")),
            "verdict": _text(phase.get("verdict") or ""), "links": links, "error": _text(phase.get("error") or "")}


def _row(runs_root: Path, run: _Run) -> dict[str, Any]:
    rec = run.record
    op = rec.get("operator")
    who, arn = (op.get("git_user") or "—", op.get("aws_arn") or "") if isinstance(op, dict) else (op or "—", "")
    return {"env": _text(rec.get("env") or run.dir.parent.parent.name),
            "version": _text(rec.get("version") or run.dir.parent.name),
            "run_id": _text(rec.get("run_id") or run.dir.name), "status": _status(rec.get("status")),
            "started": _fmt_time(run.started, rec.get("started")),
            "duration": _fmt_duration(run.started, clock.try_parse(rec.get("finished"))),
            "operator": _text(who), "arn": _text(arn),
            "phases": [_phase(runs_root, run.dir, p) for p in rec.get("phases", []) if isinstance(p, dict)]}


def write_index(runs_root: Path, redactor: Redactor | None = None) -> Path:
    """Rebuild `runs_root/index.html`. Without a redactor, the credential patterns are still masked."""
    runs_root = Path(runs_root)
    runs = _load_runs(runs_root) if runs_root.is_dir() else []
    incidents = _load_runs(runs_root, incidents=True) if runs_root.is_dir() else []
    page = _env.get_template("runs_index.html").render(
        css=_CSS, runs=[_row(runs_root, r) for r in runs], incidents=[_row(runs_root, r) for r in incidents])
    return atomic_write_text(runs_root / "index.html", (redactor or Redactor()).text(page))
