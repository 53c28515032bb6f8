"""The rendered pages as a stakeholder's browser sees them: headless Chromium over HTTP.

Chromium comes from Debian (`apt-get install -y chromium`). Without it these tests fail
under CI (CI=true), where a silent skip would hide a missing install step, and skip on a
developer machine.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from shipbook import release
from shipbook.pipeline import Progress, RunOptions
from shipbook.redact import Redactor
from shipbook.render import render_notebook
from shipbook.runs_index import write_index

pytestmark = pytest.mark.browser

HEADING = "リリース前チェック"
RUN_DIR = Path("sandbox") / "v1.0.0" / "20261128T151600Z-ab12cd"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # /dev/shm is small in containers
]

# Loads the stakeholder page in an iframe (same origin), waits for every image, and reports
# what the page itself measured: the DOM dump then carries the answer.
CHECK_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>pending</title></head><body>
<div id="result">pending</div>
<iframe id="page" src="{src}" width="1200" height="1600"></iframe>
<script>
document.getElementById("page").addEventListener("load", async () => {{
  const doc = document.getElementById("page").contentDocument;
  const imgs = Array.from(doc.images);
  await Promise.all(imgs.map(i => i.complete ? null
    : new Promise(r => {{ i.onload = r; i.onerror = r; }})));
  const loaded = imgs.filter(i => i.naturalWidth > 0).length;
  const h1 = doc.querySelector("h1");
  document.getElementById("result").textContent = JSON.stringify({{
    images: imgs.length, loaded: loaded, h1: h1 ? h1.textContent : null,
    code: doc.querySelectorAll(".jp-InputArea-editor").length,
  }});
  document.title = "done";
}});
</script>
</body></html>
"""


def _find_chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    reason = "chromium is not installed (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    return _find_chromium()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean; failures show in assertions."""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs/ tree with one rendered run and the index, as the pipeline leaves it."""
    root = tmp_path_factory.mktemp("runs")
    fig = Figure(figsize=(4, 3), dpi=80)
    fig.subplots().plot([0, 1, 2, 3], [120, 180, 150, 140])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    png = base64.b64encode(buf.getvalue()).decode("ascii")
    df = pd.DataFrame({"check": ["db", "iam"], "result": ["pass", "warn"]})
    nb = new_notebook(
        cells=[
            new_markdown_cell(f"# {HEADING}"),
            new_code_cell(
                "precheck.summary_table(results)",
                execution_count=1,
                outputs=[
                    new_output("execute_result", execution_count=1, data={"text/html": df.to_html()}),
                    new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}),
                ],
            ),
        ]
    )
    render_notebook(nb, root / RUN_DIR, "01_precheck", Redactor(), title="precheck v1.0.0")
    record = {
        "schema": 1,
        "run_id": RUN_DIR.name,
        "env": "sandbox",
        "version": "v1.0.0",
        "operator": {"git_user": "Alice <a@x>", "aws_arn": None},
        "status": "succeeded",
        "started": "2026-11-28T15:16:00+00:00",
        "finished": "2026-11-28T15:20:00+00:00",
        "phases": [
            {"name": "precheck", "notebook": "01_precheck.ipynb", "status": "succeeded", "verdict": "pass"},
            {"name": "backup", "notebook": "02_backup.ipynb", "status": "failed", "verdict": None},
        ],
    }
    (root / RUN_DIR / "run.json").write_text(json.dumps(record), encoding="utf-8")
    write_index(root)
    return root


@contextmanager
def _serve(directory: Path) -> Iterator[str]:
    """`directory` over HTTP on a free loopback port, for as long as the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    with _serve(site) as url:
        yield url


def _run_chromium(chromium: str, tmp_path: Path, *args: str) -> str:
    profile = tmp_path / "profile"
    proc = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.stdout


def test_index_page_in_browser(chromium: str, base_url: str, tmp_path: Path) -> None:
    dom = _run_chromium(chromium, tmp_path, "--dump-dom", f"{base_url}/index.html")
    assert "<title>shipbook runs</title>" in dom
    assert '<span class="badge badge-succeeded">succeeded</span>' in dom
    assert '<span class="badge badge-failed">failed</span>' in dom
    assert f'href="{RUN_DIR.as_posix()}/01_precheck.stakeholder.html"' in dom
    assert "Alice &lt;a@x&gt;" in dom


def test_stakeholder_page_images_load(chromium: str, site: Path, base_url: str, tmp_path: Path) -> None:
    check = site / "check-images.html"
    check.write_text(CHECK_PAGE.format(src=f"{RUN_DIR.as_posix()}/01_precheck.stakeholder.html"), encoding="utf-8")
    dom = _run_chromium(
        chromium,
        tmp_path,
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=5000",
        "--dump-dom",
        f"{base_url}/{check.name}",
    )
    assert "<title>done</title>" in dom, dom[:2000]
    result = json.loads(dom.split('<div id="result">', 1)[1].split("</div>", 1)[0])
    assert result == {"images": 1, "loaded": 1, "h1": f"{HEADING}¶", "code": 0}


def test_stakeholder_page_screenshot(chromium: str, base_url: str, tmp_path: Path) -> None:
    shot = tmp_path / "stakeholder.png"
    _run_chromium(
        chromium,
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1200,2000",
        "--hide-scrollbars",
        f"{base_url}/{RUN_DIR.as_posix()}/01_precheck.stakeholder.html",
    )
    assert shot.is_file() and shot.stat().st_size > 10_000
    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels[..., :3].std() > 0.01, "blank page"


# Loads a page in an iframe (same origin) and runs `probe` on its document; the DOM dump carries the JSON answer.
PROBE_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>pending</title></head><body>
<div id="result">pending</div>
<iframe id="page" src="{src}" width="1200" height="1600"></iframe>
<script>
document.getElementById("page").addEventListener("load", async () => {{
  const doc = document.getElementById("page").contentDocument;
  const probe = async (doc) => {{ {probe} }};
  let out;
  try {{ out = await probe(doc); }} catch (e) {{ out = {{error: String(e)}}; }}
  document.getElementById("result").textContent = JSON.stringify(out);
  document.title = "done";
}});
</script>
</body></html>
"""

PROBE_STAKEHOLDER = """
  const h1 = doc.querySelector("h1");
  return {title: doc.title, lang: doc.documentElement.lang, h1: h1 ? h1.textContent : null,
          code: doc.querySelectorAll(".jp-InputArea-editor").length,
          text: doc.body.textContent};
"""

# The run's row in the index: its badges, the phase's verdict, and every link followed (status and page title).
PROBE_INDEX = """
  const row = doc.querySelector('tr[data-run-id="' + RUN_ID + '"]');
  if (!row) return {title: doc.title, row: false};
  const links = [];
  for (const a of row.querySelectorAll("a")) {
    const response = await fetch(new URL(a.getAttribute("href"), doc.baseURI));
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    links.push({cls: a.className, href: a.getAttribute("href"), status: response.status, title: page.title});
  }
  return {title: doc.title, row: true, badges: Array.from(row.querySelectorAll(".badge"), b => b.textContent),
          verdict: Array.from(row.querySelectorAll(".phase .muted"), m => m.textContent), links: links};
"""


def _probe(chromium: str, root: Path, base_url: str, tmp_path: Path, src: str, probe: str) -> dict[str, Any]:
    """Open `src` (relative to `root`, served at `base_url`) in Chromium and return what `probe` found."""
    check = root / f"probe-{tmp_path.name}.html"
    check.write_text(PROBE_PAGE.format(src=src, probe=probe), encoding="utf-8")
    try:
        dom = _run_chromium(chromium, tmp_path, "--run-all-compositor-stages-before-draw",
                            "--virtual-time-budget=10000", "--dump-dom", f"{base_url}/{check.name}")
    finally:
        check.unlink()
    assert "<title>done</title>" in dom, dom[:2000]
    return json.loads(html.unescape(dom.split('<div id="result">', 1)[1].split("</div>", 1)[0]))


@pytest.mark.xdist_group("kernels")
def test_a_phase_run_by_the_runner_in_the_browser(chromium: str, make_env, notebook_dir, tmp_path: Path) -> None:
    """A real phase through `release.run` (kernel, redaction, render, record, index), then its pages in Chromium."""
    notebook_dir(precheck="ok")
    env = make_env(phases=("precheck",))
    ctx = release.Context(runs_root=tmp_path / "runs", notebook_dir=tmp_path / "notebooks")
    rec = release.run(env, RunOptions(version="v1.0.0"), Progress(), ctx, Redactor([]))
    assert rec.data["status"] == "succeeded"
    phase = rec.phase("precheck")
    assert (phase["status"], phase["verdict"]) == ("succeeded", "pass")
    run_path = rec.dir.relative_to(ctx.runs_root).as_posix()
    stakeholder = f"{run_path}/01_precheck.stakeholder.html"
    assert (ctx.runs_root / stakeholder).is_file() and (ctx.runs_root / "index.html").is_file()

    with _serve(ctx.runs_root) as url:
        page = _probe(chromium, ctx.runs_root, url, tmp_path, stakeholder, PROBE_STAKEHOLDER)
        index = _probe(chromium, ctx.runs_root, url, tmp_path, "index.html",
                       f"const RUN_ID = {json.dumps(rec.run_id)};" + PROBE_INDEX)

    # the stakeholder page: the runner's title, the notebook's story, the verdict the phase reported, no code
    assert page["title"] == f"v1.0.0 precheck — {env.name}"
    assert page["lang"] == env.lang == "ja"  # the environment's language (ja by default): Japanese glyphs
    assert page["h1"] == "Fixture phase: ok¶"
    assert page["code"] == 0
    assert "release v1.0.0 after" in page["text"] and f"run {rec.run_id}" in page["text"]
    assert "verdict='pass'" in page["text"] and "fixture.ok" in page["text"]
    # the index: the run's row with its status and the phase's verdict, and links that open the run's pages
    assert index["title"] == "shipbook runs"
    assert index["row"] is True
    assert index["badges"] == ["succeeded", "succeeded"]  # the run, then its one phase
    assert index["verdict"] == ["verdict: pass"]
    assert index["links"] == [
        {"cls": "link-report", "href": stakeholder, "status": 200, "title": page["title"]},
        {"cls": "link-full", "href": f"{run_path}/01_precheck.html", "status": 200, "title": page["title"]},
    ]
