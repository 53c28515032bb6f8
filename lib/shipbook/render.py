"""HTML rendering of executed notebooks (the runs index page is `shipbook.runs_index`).

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

import logging
import threading
from pathlib import Path
from typing import Any

from nbconvert import HTMLExporter
from nbformat import NotebookNode

from shipbook.redact import Redactor, atomic_write_text

__all__ = ["CJK_FONT_FALLBACK", "FONT_STACK", "get_exporter", "render_notebook"]

log = logging.getLogger(__name__)
# nbconvert warns on every chart without alt text; that is noise in the terminal, not for the operator.
_nbconvert_log = logging.getLogger("shipbook.render.nbconvert")
_nbconvert_log.setLevel(logging.ERROR)

# Per-character fallback: Latin text keeps the system font, Japanese text finds a JP font
# (macOS, Windows, then the Noto/IPA fonts of a Linux box) instead of tofu or Chinese glyphs.
CJK_FONT_FALLBACK = '"Noto Sans CJK JP", "Noto Sans JP", "IPAexGothic", sans-serif'
FONT_STACK = (
    'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, '
    f'"Hiragino Sans", "Hiragino Kaku Gothic ProN", "Yu Gothic", Meiryo, {CJK_FONT_FALLBACK}'
)

_FONT_CSS = f"""<style>
:root {{ --jp-content-font-family: {FONT_STACK}; --jp-ui-font-family: {FONT_STACK}; }}
body {{ font-family: {FONT_STACK}; }}
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
