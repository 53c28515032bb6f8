"""The rendered pages as a stakeholder's browser sees them: headless Chromium over HTTP.

Chromium comes from Debian (`apt-get install -y chromium`). Without it these tests fail
under CI (CI=true), where a silent skip would hide a missing install step, and skip on a
developer machine.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from shipbook.redact import Redactor
from shipbook.render import render_notebook, write_index

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


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


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
