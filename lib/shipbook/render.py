"""HTML rendering of executed notebooks and the runs index page.

Every phase is rendered twice: a full view (code and outputs, for engineers and auditors)
and a stakeholder view (no code, no prompts: the story, the tables and the charts). Both
are self-contained files: images inline as data URIs and no CDN scripts, so they open
from an S3 bucket, an e-mail attachment or a laptop without network, and nothing is
fetched from a third party when a manager opens a report.

nbconvert runs in-process with one exporter per view, created on first use and reused:
the first render of an exporter compiles its Jinja templates (about half a second), later
renders are cheap. All HTML goes through the Redactor and is written atomically.
"""

from __future__ import annotations

import html
import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nbconvert import HTMLExporter
from nbformat import NotebookNode

from shipbook.redact import Redactor, atomic_write_text

__all__ = ["CJK_FONT_FALLBACK", "get_exporter", "render_notebook", "write_index"]

log = logging.getLogger(__name__)
# nbconvert warns on every chart without alt text; that is noise in the terminal, not for the operator.
_nbconvert_log = logging.getLogger("shipbook.render.nbconvert")
_nbconvert_log.setLevel(logging.ERROR)

# Per-character fallback: Latin text keeps the system font, Japanese text finds a JP font
# (macOS, Windows, then the Noto/IPA fonts of a Linux box) instead of tofu or Chinese glyphs.
CJK_FONT_FALLBACK = '"Noto Sans CJK JP", "Noto Sans JP", "IPAexGothic", sans-serif'
_FONT_STACK = (
    'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, '
    f'"Hiragino Sans", "Hiragino Kaku Gothic ProN", "Yu Gothic", Meiryo, {CJK_FONT_FALLBACK}'
)

_FONT_CSS = f"""<style>
:root {{ --jp-content-font-family: {_FONT_STACK}; --jp-ui-font-family: {_FONT_STACK}; }}
body {{ font-family: {_FONT_STACK}; }}
</style>"""

_STAKEHOLDER_CSS = """<style>
body.jp-Notebook { max-width: 1100px; margin: 0 auto; padding: 1em 2em; }
.jp-OutputArea-output img { max-width: 100%; height: auto; }
</style>"""

# The lab template with the CDN scripts (require.js, MathJax, mermaid) removed: the pages
# must be self-contained. LaTeX and mermaid blocks therefore show as source text; runbooks
# do not use them.
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}{{ resources.shipbook_css }}{%- endblock html_head_css -%}
"""

_VIEWS: dict[str, dict[str, Any]] = {
    "full": {},
    "stakeholder": {"exclude_input": True, "exclude_input_prompt": True, "exclude_output_prompt": True},
}
_exporters: dict[str, HTMLExporter] = {}
_exporters_lock = threading.Lock()
# nbconvert does not promise that one exporter can render from two threads at once.
_render_lock = threading.Lock()


def get_exporter(view: str) -> HTMLExporter:
    """The process-wide exporter for `view` ("full" or "stakeholder"), created on first use.

    Its Jinja environment is built on the first render and reused for every later one.
    Creation is locked; `render_notebook` serialises renders.
    """
    if view not in _VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {sorted(_VIEWS)}")
    with _exporters_lock:
        exporter = _exporters.get(view)
        if exporter is None:
            exporter = HTMLExporter(template_name="lab", raw_template=_TEMPLATE, log=_nbconvert_log, **_VIEWS[view])
            _exporters[view] = exporter
        return exporter


def page_language(nb: NotebookNode, default: str = "en") -> str:
    """The page's language: the run's `lang` parameter (papermill records it), else `default`."""
    params = (nb.get("metadata", {}).get("papermill") or {}).get("parameters") or {}
    lang = str(params.get("lang") or default)
    return lang if lang in ("ja", "en") else default


def render_notebook(nb: NotebookNode, out_dir: Path, stem: str, redactor: Redactor, title: str,
                    lang: str = "") -> dict[str, Path]:
    """Write `<stem>.html` (full) and `<stem>.stakeholder.html` (no code) into `out_dir`.

    `<html lang>` is the page's language (`lang`, else the run's `lang` parameter, else en): a
    browser picks Japanese glyphs for a `ja` page, not the Chinese forms of the shared characters.

    The notebook is redacted before rendering and the HTML again after (nbconvert escapes
    and highlights, which can reassemble a secret in a new form). Returns {"full": path,
    "stakeholder": path}.
    """
    if not stem or Path(stem).name != stem or stem in {".", ".."}:
        raise ValueError(f"stem must be a plain file name, got {stem!r}")
    out_dir = Path(out_dir)
    clean = redactor.notebook(nb)
    css = {"full": _FONT_CSS, "stakeholder": _FONT_CSS + _STAKEHOLDER_CSS}
    names = {"full": f"{stem}.html", "stakeholder": f"{stem}.stakeholder.html"}
    paths: dict[str, Path] = {}
    for view in ("full", "stakeholder"):
        resources = {"metadata": {"name": title}, "shipbook_css": css[view]}
        exporter = get_exporter(view)
        with _render_lock:
            exporter.language_code = lang or page_language(clean)
            body, _ = exporter.from_notebook_node(clean, resources=resources)
        paths[view] = atomic_write_text(out_dir / names[view], redactor.text(body))
    return paths


# --- index page -------------------------------------------------------------------------------

# The runner writes "rolled-back"; the spelling "rolled_back" gets the same badge.
_KNOWN_STATUSES = frozenset(
    {"running", "succeeded", "blocked", "failed", "pending", "skipped", "rolled-back", "cancelled", "open"}
)


@dataclass(frozen=True)
class _Run:
    """One run.json as the index shows it."""

    dir: Path
    record: dict[str, Any]
    started: datetime | None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
        runs.append(_Run(path.parent, record, _parse_time(record.get("started"))))
    oldest = datetime.min.replace(tzinfo=UTC)
    runs.sort(key=lambda r: (r.started or oldest, str(r.record.get("run_id", r.dir.name))), reverse=True)
    return runs


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _badge(status: Any) -> str:
    text = str(status) if status else "unknown"
    key = text.replace("_", "-")
    cls = key if key in _KNOWN_STATUSES else "unknown"
    return f'<span class="badge badge-{cls}">{_esc(text)}</span>'


def _fmt_time(moment: datetime | None, raw: Any) -> str:
    if moment is None:
        return _esc(raw) if raw else "—"
    return _esc(moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))


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


def _operator(record: dict[str, Any]) -> str:
    op = record.get("operator")
    if not isinstance(op, dict):
        return _esc(op) if op else "—"
    who = op.get("git_user") or "—"
    arn = op.get("aws_arn")
    return f'{_esc(who)}<br><span class="muted arn">{_esc(arn)}</span>' if arn else _esc(who)


def _href(runs_root: Path, target: Path) -> str:
    """A relative, URL-quoted, HTML-escaped link from index.html to `target`."""
    rel = target.relative_to(runs_root).as_posix()
    return _esc(quote(rel))


def _phase_html(runs_root: Path, run_dir: Path, phase: Any) -> str:
    if not isinstance(phase, dict):
        return ""
    name = phase.get("name") or "?"
    parts = [f'<li class="phase">{_badge(phase.get("status"))} <span class="phase-name">{_esc(name)}</span>']
    if phase.get("verdict"):
        parts.append(f' <span class="muted">verdict: {_esc(phase["verdict"])}</span>')
    notebook = phase.get("notebook")
    if isinstance(notebook, str) and notebook:
        stem = notebook.removesuffix(".ipynb")
        links = [("report", f"{stem}.stakeholder.html"), ("full", f"{stem}.html")]
        for label, filename in links:
            target = run_dir / filename
            if Path(filename).name == filename and target.is_file():
                parts.append(f' <a class="link-{label}" href="{_href(runs_root, target)}">{label}</a>')
    if phase.get("error"):
        parts.append(f'<div class="error">{_esc(phase["error"])}</div>')
    parts.append("</li>")
    return "".join(parts)


def _row_html(runs_root: Path, run: _Run) -> str:
    rec = run.record
    run_id = rec.get("run_id") or run.dir.name
    phases = "".join(_phase_html(runs_root, run.dir, p) for p in rec.get("phases", []))
    cells = [
        _esc(rec.get("env") or run.dir.parent.parent.name),
        _esc(rec.get("version") or run.dir.parent.name),
        f"<code>{_esc(run_id)}</code>",
        _badge(rec.get("status")),
        _fmt_time(run.started, rec.get("started")),
        _fmt_duration(run.started, _parse_time(rec.get("finished"))),
        _operator(rec),
        f'<ul class="phases">{phases}</ul>' if phases else "—",
    ]
    classes = ["", "nowrap", "nowrap", "", "", "nowrap", "", "phases-cell"]
    tds = "".join(
        f'<td class="{cls}">{c}</td>' if cls else f"<td>{c}</td>" for cls, c in zip(classes, cells, strict=True)
    )
    return f'<tr data-run-id="{_esc(run_id)}">{tds}</tr>'


_INDEX_CSS = f"""
body {{ font-family: {_FONT_STACK}; margin: 1.5em; color: #1f2328; }}
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


def _table(runs_root: Path, runs: list[_Run], kind: str, head: list[str], empty: str) -> str:
    header = "".join(f"<th>{h}</th>" for h in head)
    rows = "\n".join(_row_html(runs_root, run) for run in runs) or f'<tr><td colspan="{len(head)}">{empty}</td></tr>'
    return f"""<div class="scroll">
<table class="{kind}">
<thead><tr>{header}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
</div>"""


def write_index(runs_root: Path, redactor: Redactor | None = None) -> Path:
    """Rebuild `runs_root/index.html`: every run, newest first, with links to each phase; then the incidents.

    Unreadable run.json files are skipped with a warning rather than breaking the page for
    every other run. Without a redactor, the credential patterns are still masked.
    """
    runs_root = Path(runs_root)
    runs = _load_runs(runs_root) if runs_root.is_dir() else []
    incidents = _load_runs(runs_root, incidents=True) if runs_root.is_dir() else []
    runs_table = _table(runs_root, runs, "runs",
                        ["env", "version", "run id", "status", "started", "duration", "operator", "phases"],
                        "No runs yet.")
    incidents_table = _table(runs_root, incidents, "incidents",
                             ["env", "suspected version", "incident", "status", "opened", "last run", "operator",
                              "notebooks"], "No incidents.")
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>shipbook runs</title>
<style>{_INDEX_CSS}</style>
</head>
<body>
<h1>shipbook runs</h1>
<p class="muted">{len(runs)} run(s), newest first. "report" is the stakeholder view, "full" includes the code.</p>
{runs_table}
<h2>Incidents</h2>
<p class="muted">{len(incidents)} incident(s), newest first: the incident notebook and its postmortems.</p>
{incidents_table}
</body>
</html>
"""
    return atomic_write_text(runs_root / "index.html", (redactor or Redactor()).text(page))
