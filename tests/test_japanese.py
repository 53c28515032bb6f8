"""Japanese renders: in matplotlib chart titles (a font from PyPI) and in the HTML (headless Chromium).

How "not tofu" is judged without OCR: a missing glyph is drawn as the same empty box whatever the
character, so (1) every character of a Japanese string must render to a *different* bitmap
(checked to fail with a Latin-only font), and (2) the title band of a chart, as Chromium shows
it, must match the chart drawn with the Japanese font and differ clearly, in ink pixels, from
the same chart drawn with a font that lacks the glyphs (same layout, so the differing ink pixels
measure the glyph shapes; box-shaped tofu has about as much ink as real glyphs, so a bare count
of ink pixels would not tell them apart).
"""

from __future__ import annotations

import base64
import io
import json
import warnings
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from shipbook import charts_font, i18n, incident
from shipbook.redact import Redactor
from shipbook.render import render_notebook
from test_browser import _find_chromium, _run_chromium

TITLE = "障害の影響"
HEADING = "発生時刻と影響範囲"
T0 = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


def _glyph(ch: str, family: list[str]) -> np.ndarray:
    fig = Figure(figsize=(0.6, 0.6), dpi=100)
    fig.text(0.5, 0.5, ch, ha="center", va="center", fontsize=28, family=family)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return imread(buf)[..., :3].mean(axis=2) < 0.5


def _distinct(bitmaps: list[np.ndarray]) -> bool:
    return all(a.sum() > 20 and b.sum() > 20 and (a != b).sum() > 30 for a, b in combinations(bitmaps, 2))


def test_a_japanese_font_is_configured_with_every_glyph_of_the_reports():
    family = charts_font.setup()
    assert family, "no Japanese font: pip install japanize-matplotlib"
    assert "DejaVu Sans" in matplotlib.rcParams["font.family"]
    labels = "".join(i18n.t(k, lang) for k in ("incident.chart_title", "pm.chart_title", "report.chart_title",
                                                "incident.error_rate")
                     for lang in ("ja",)) + "".join(label for _k, label in i18n.status_labels("ja"))
    assert charts_font.missing_glyphs(labels) == ""
    assert charts_font.missing_glyphs(TITLE, "DejaVu Sans") == "".join(sorted(set(TITLE)))


def test_the_font_comes_from_the_pypi_package_when_installed():
    files = charts_font.bundled_font_files()
    if not files:
        pytest.skip("japanize-matplotlib is not installed (add it to pyproject's dependencies)")
    assert any(f.name == "ipaexg.ttf" for f in files)
    charts_font.setup()
    assert any(Path(f.fname).resolve() == files[0].resolve()
               for f in matplotlib.font_manager.fontManager.ttflist)


def test_distinct_glyphs_detect_tofu():
    family = charts_font.setup()
    assert _distinct([_glyph(c, ["DejaVu Sans", family]) for c in TITLE])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Glyph ... missing from font(s) DejaVu Sans": the point here
        tofu = [_glyph(c, ["DejaVu Sans"]) for c in TITLE]
    assert not _distinct(tofu)


def _chart_png(tofu: bool = False) -> str:
    series = {k: {} for k in ("requests", "errors", "p50", "p95", "p99")}
    for i in range(30):
        t = T0 + timedelta(seconds=10 * i)
        series["requests"][t], series["errors"][t] = 100.0, 8.0 if 10 <= i < 20 else 0.0
        series["p50"][t], series["p95"][t], series["p99"][t] = 0.01, 0.02, 0.05
    metrics = incident.metrics_frame(series)
    charts_font.setup()
    with warnings.catch_warnings(), matplotlib.rc_context({"font.family": ["DejaVu Sans"]} if tofu else {}):
        warnings.simplefilter("ignore" if tofu else "error")
        fig = incident.chart(metrics, TITLE, {i18n.t("incident.start_mark", "ja"): T0 + timedelta(seconds=100)}, "ja")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


CHECK_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>pending</title>
<style>body {{ margin: 0; }} iframe {{ border: 0; display: block; }}</style></head><body>
<iframe id="page" src="{src}" width="1200" height="1400"></iframe>
<div id="result">pending</div>
<script>
document.getElementById("page").addEventListener("load", async () => {{
  const doc = document.getElementById("page").contentDocument;
  await Promise.all(Array.from(doc.images).map(i => i.complete ? null
    : new Promise(r => {{ i.onload = r; i.onerror = r; }})));
  await doc.fonts.ready;
  const h1 = doc.querySelector("h1");
  const text = h1.firstChild;
  const chars = [];
  for (let i = 0; i < text.length; i++) {{
    const range = doc.createRange(); range.setStart(text, i); range.setEnd(text, i + 1);
    const r = range.getBoundingClientRect();
    chars.push([r.left, r.top, r.width, r.height]);
  }}
  const img = doc.images[0].getBoundingClientRect();
  document.getElementById("result").textContent = JSON.stringify({{
    chars: chars, img: [img.left, img.top, img.width, img.height],
    natural: [doc.images[0].naturalWidth, doc.images[0].naturalHeight]}});
  document.title = "done";
}});
</script></body></html>
"""


def _ink(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., :3].mean(axis=2) < 0.5


@pytest.mark.browser
def test_japanese_heading_and_chart_title_in_chromium(tmp_path: Path) -> None:
    chromium = _find_chromium()
    good, tofu = _chart_png(), _chart_png(tofu=True)
    nb = new_notebook(cells=[new_markdown_cell(f"# {HEADING}"), new_code_cell("incident.chart(...)", outputs=[
        new_output("display_data", data={"image/png": good, "text/plain": "<Figure>"})])])
    render_notebook(nb, tmp_path, "incident", Redactor(), title="incident")
    (tmp_path / "check.html").write_text(CHECK_PAGE.format(src="incident.stakeholder.html"), encoding="utf-8")
    flags = ["--run-all-compositor-stages-before-draw", "--virtual-time-budget=5000", "--hide-scrollbars",
             "--force-device-scale-factor=1", "--allow-file-access-from-files"]
    url = (tmp_path / "check.html").as_uri()
    dom = _run_chromium(chromium, tmp_path, *flags, "--dump-dom", url)
    assert "<title>done</title>" in dom, dom[:2000]
    layout = json.loads(dom.split('<div id="result">', 1)[1].split("</div>", 1)[0])
    shot_path = tmp_path / "shot.png"
    _run_chromium(chromium, tmp_path, *flags, "--window-size=1200,1500", f"--screenshot={shot_path}", url)
    shot = imread(shot_path)

    # the HTML heading: every character inked and different from the others
    boxes = [tuple(round(v) for v in r) for r in layout["chars"]]
    assert len(boxes) == len(HEADING) and all(w > 5 and h > 5 for _x, _y, w, h in boxes)
    w = min(b[2] for b in boxes)
    h = min(b[3] for b in boxes)
    glyphs = [_ink(shot[y:y + h, x:x + w]) for x, y, _w, _h in boxes]
    assert _distinct(glyphs), "the heading's characters render alike: tofu"

    # the chart's title band: as drawn with the Japanese font, not as drawn without it
    x, y, iw, ih = (round(v) for v in layout["img"])
    assert (iw, ih) == tuple(layout["natural"]), "the chart is scaled: pixels cannot be compared"
    band = slice(0, int(ih * 0.09))
    shown = _ink(shot[y:y + ih, x:x + iw])[band]
    expected = _ink(imread(io.BytesIO(base64.b64decode(good))))[band]
    missing = _ink(imread(io.BytesIO(base64.b64decode(tofu))))[band]
    ink = expected.sum()
    assert ink > 200, "no title drawn"
    assert (shown != expected).sum() <= 0.05 * ink, "Chromium does not show the chart as drawn"
    assert (missing != expected).sum() > 0.5 * ink, "the reference without the font looks the same: no signal"
