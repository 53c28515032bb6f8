"""HTML views of a phase notebook and the runs index page, checked as files."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pandas as pd
import pytest
from matplotlib.figure import Figure
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from shipbook.redact import Redactor
from shipbook.render import CJK_FONT_FALLBACK, get_exporter, render_notebook
from shipbook.runs_index import write_index

HEADING = "リリース前チェック"
CODE = "table = precheck.summary_table(results)"


def make_png() -> str:
    fig = Figure(figsize=(3, 2), dpi=60)
    ax = fig.subplots()
    ax.plot([0, 1, 2, 3], [120, 180, 150, 140])
    ax.set_title("p95 latency")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def make_notebook(png: str) -> nbformat.NotebookNode:
    df = pd.DataFrame({"check": ["db", "iam", "network"], "result": ["pass", "warn", "pass"]})
    return new_notebook(
        cells=[
            new_markdown_cell(f"# {HEADING}\n\n本番環境へのデプロイ前の確認です。"),
            new_code_cell(
                CODE,
                execution_count=1,
                outputs=[
                    new_output(
                        "execute_result",
                        execution_count=1,
                        data={"text/plain": df.to_string(), "text/html": df.to_html()},
                    ),
                    new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}),
                ],
            ),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


@pytest.fixture(scope="module")
def png() -> str:
    return make_png()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, png: str) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("render")
    return render_notebook(make_notebook(png), out, "01_precheck", Redactor(), title="precheck v1.0.0")


def test_both_views_are_written(rendered: dict[str, Path]) -> None:
    assert set(rendered) == {"full", "stakeholder"}
    assert rendered["full"].name == "01_precheck.html"
    assert rendered["stakeholder"].name == "01_precheck.stakeholder.html"
    assert all(p.is_file() for p in rendered.values())


def test_full_view_has_code_and_stakeholder_view_has_none(rendered: dict[str, Path]) -> None:
    full = rendered["full"].read_text(encoding="utf-8")
    stake = rendered["stakeholder"].read_text(encoding="utf-8")
    assert "summary_table" in full and "summary_table" not in stake
    assert '<div class="jp-InputPrompt' in full
    assert '<div class="jp-InputPrompt' not in stake
    assert '<div class="jp-OutputPrompt' not in stake
    # The outputs themselves are in both.
    for page in (full, stake):
        assert "<table" in page and "network" in page


def test_images_are_inline_data_uris(rendered: dict[str, Path], png: str) -> None:
    for path in rendered.values():
        page = path.read_text(encoding="utf-8")
        assert f'src="data:image/png;base64,{png}"' in page
        assert not re.search(r"<(?:script|link)[^>]+(?:src|href)=\"https?://", page), "external resource"


def test_japanese_is_utf8_with_charset_and_font_fallback(rendered: dict[str, Path]) -> None:
    for path in rendered.values():
        raw = path.read_bytes()
        assert HEADING.encode("utf-8") in raw
        page = raw.decode("utf-8")
        assert '<meta charset="utf-8"' in page.lower()
        assert "<title>precheck v1.0.0</title>" in page
    assert CJK_FONT_FALLBACK in rendered["stakeholder"].read_text(encoding="utf-8")


def test_exporters_are_singletons() -> None:
    assert get_exporter("full") is get_exporter("full")
    assert get_exporter("stakeholder") is not get_exporter("full")
    with pytest.raises(ValueError, match="unknown view"):
        get_exporter("pdf")


@pytest.mark.parametrize("stem", ["", "..", "../escape", "a/b"])
def test_stem_must_be_a_plain_name(tmp_path: Path, stem: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        render_notebook(new_notebook(), tmp_path, stem, Redactor(), title="t")


def test_rendered_html_is_redacted(tmp_path: Path, png: str) -> None:
    nb = make_notebook(png)
    nb.cells[1].outputs.append(new_output("stream", name="stdout", text="dsn postgres://u:pw-9876@db/x\n"))
    paths = render_notebook(nb, tmp_path, "x", Redactor(["precheck.summary"]), title="t")
    full = paths["full"].read_text(encoding="utf-8")
    assert "pw-9876" not in full and "summary_table" not in full


# --- index ----------------------------------------------------------------------------------


def _run_record(run_id: str, version: str, status: str, started: str, finished: str | None, phases: list) -> dict:
    return {
        "schema": 1,
        "run_id": run_id,
        "env": "sandbox",
        "version": version,
        "previous_version": "v0.9.0",
        "commit": "0" * 40,
        "shipbook_version": "0.1.0",
        "operator": {"git_user": "Alice <a@x>", "aws_arn": "arn:aws:iam::123456789012:user/alice"},
        "parameters": {"dry_run": False},
        "status": status,
        "started": started,
        "finished": finished,
        "phases": phases,
        "facts": {},
        "previous_record_sha256": "",
    }


def _phase(name: str, notebook: str, status: str, verdict: str | None = None) -> dict:
    return {
        "name": name,
        "notebook": notebook,
        "status": status,
        "verdict": verdict,
        "started": None,
        "finished": None,
        "files": {},
        "error": None,
    }


def _copy_views(rendered: dict[str, Path], run_dir: Path, stem: str) -> None:
    """Rendered phase files for a fake run (copies: rendering again would only cost time)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(rendered["full"], run_dir / f"{stem}.html")
    shutil.copy(rendered["stakeholder"], run_dir / f"{stem}.stakeholder.html")


@pytest.fixture
def runs_root(tmp_path: Path, rendered: dict[str, Path]) -> Path:
    root = tmp_path / "runs"
    old = root / "sandbox" / "v1.0.0" / "20261128T151600Z-ab12cd"
    _copy_views(rendered, old, "01_precheck")
    _copy_views(rendered, old, "03_deploy")
    (old / "run.json").write_text(
        json.dumps(
            _run_record(
                "20261128T151600Z-ab12cd",
                "v1.0.0",
                "succeeded",
                "2026-11-28T15:16:00+00:00",
                "2026-11-28T15:58:07+00:00",
                [
                    _phase("precheck", "01_precheck.ipynb", "succeeded", "pass"),
                    _phase("deploy", "03_deploy.ipynb", "succeeded", "pass"),
                ],
            )
        ),
        encoding="utf-8",
    )
    new = root / "sandbox" / "v1.1.0" / "20261129T090000Z-ef34gh"
    _copy_views(rendered, new, "01_precheck")
    (new / "run.json").write_text(
        json.dumps(
            _run_record(
                "20261129T090000Z-ef34gh",
                "v1.1.0",
                "failed",
                "2026-11-29T09:00:00+00:00",
                "2026-11-29T09:00:42+00:00",
                [
                    _phase("precheck <script>alert(1)</script>", "01_precheck.ipynb", "failed", "fail"),
                    _phase("backup", "02_backup.ipynb", "pending"),
                ],
            )
        ),
        encoding="utf-8",
    )
    return root


def test_index_lists_runs_newest_first_with_badges_and_links(runs_root: Path) -> None:
    index = write_index(runs_root)
    assert index == runs_root / "index.html"
    page = index.read_text(encoding="utf-8")
    assert "<title>shipbook runs</title>" in page
    newer = page.index('data-run-id="20261129T090000Z-ef34gh"')
    older = page.index('data-run-id="20261128T151600Z-ab12cd"')
    assert newer < older
    assert '<span class="badge badge-succeeded">succeeded</span>' in page
    assert '<span class="badge badge-failed">failed</span>' in page
    assert '<span class="badge badge-pending">pending</span>' in page
    assert "42s" in page and "42m 07s" in page
    # Everything is escaped.
    assert "Alice &lt;a@x&gt;" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Self-contained.
    assert not re.search(r"(?:src|href)=\"https?://", page)

    parser = _Links()
    parser.feed(page)
    assert len(parser.hrefs) == 6  # 3 rendered phases x (report, full); the pending one has none
    for href in parser.hrefs:
        assert not href.startswith("/") and "://" not in href
        assert (runs_root / unquote(href)).is_file(), href
    assert "sandbox/v1.0.0/20261128T151600Z-ab12cd/03_deploy.stakeholder.html" in parser.hrefs


def test_index_skips_unreadable_records_and_incidents(runs_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = runs_root / "sandbox" / "v2.0.0" / "20261130T000000Z-broken"
    broken.mkdir(parents=True)
    (broken / "run.json").write_text("{not json", encoding="utf-8")
    listy = runs_root / "sandbox" / "v2.0.0" / "20261130T000001Z-list"
    listy.mkdir(parents=True)
    (listy / "run.json").write_text("[1, 2]", encoding="utf-8")
    incident = runs_root / "sandbox" / "incidents" / "inc-1"
    incident.mkdir(parents=True)
    (incident / "incident.json").write_text("{}", encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="shipbook.render"):
        page = write_index(runs_root).read_text(encoding="utf-8")
    assert page.count("<tr data-run-id=") == 2
    assert "broken" not in page and "inc-1" not in page
    assert "20261130T000000Z-broken" in caplog.text and "20261130T000001Z-list" in caplog.text


def test_index_lists_incidents_in_their_own_table_with_links(runs_root: Path, rendered: dict[str, Path]) -> None:
    inc_dir = runs_root / "sandbox" / "incidents" / "inc-20261128T160000Z-aa11bb"
    _copy_views(rendered, inc_dir, "incident")
    _copy_views(rendered, inc_dir, "postmortem")
    record = _run_record("inc-20261128T160000Z-aa11bb", "v1.0.0", "open", "2026-11-28T16:00:00+00:00",
                         "2026-11-28T16:01:30+00:00", [_phase("incident", "incident.ipynb", "succeeded"),
                                                       _phase("postmortem", "postmortem.ipynb", "succeeded")])
    (inc_dir / "run.json").write_text(json.dumps({**record, "kind": "incident"}), encoding="utf-8")
    page = write_index(runs_root).read_text(encoding="utf-8")
    runs_part, incidents_part = page.split("<h2>Incidents</h2>")
    assert "inc-20261128T160000Z-aa11bb" not in runs_part and runs_part.count("<tr data-run-id=") == 2
    assert incidents_part.count("<tr data-run-id=") == 1 and "1 incident(s)" in incidents_part
    assert '<span class="badge badge-open">open</span>' in incidents_part
    assert "<th>suspected version</th>" in incidents_part and "1m 30s" in incidents_part
    for stem in ("incident", "postmortem"):
        assert f'href="sandbox/incidents/inc-20261128T160000Z-aa11bb/{stem}.stakeholder.html"' in incidents_part


def test_index_of_no_runs(tmp_path: Path) -> None:
    page = write_index(tmp_path / "runs").read_text(encoding="utf-8")
    assert "No runs yet." in page and "No incidents." in page


def test_index_is_redacted(runs_root: Path) -> None:
    record_path = runs_root / "sandbox" / "v1.0.0" / "20261128T151600Z-ab12cd" / "run.json"
    record = json.loads(record_path.read_text(encoding="utf-8"))
    record["phases"][0]["error"] = "connect failed: postgres://app:hunter22@db/app token tok-secret-1"
    record_path.write_text(json.dumps(record), encoding="utf-8")
    page = write_index(runs_root, Redactor(["tok-secret-1"])).read_text(encoding="utf-8")
    assert "hunter22" not in page and "tok-secret-1" not in page
    assert "connect failed: postgres://app:***@db/app" in page


def test_the_page_language_is_the_runs_language(tmp_path: Path) -> None:
    nb = new_notebook(cells=[new_markdown_cell("# 障害報告")])
    nb.metadata["papermill"] = {"parameters": {"lang": "ja"}}
    ja = render_notebook(nb, tmp_path / "ja", "p", Redactor([]), "t")
    assert '<html lang="ja">' in ja["stakeholder"].read_text(encoding="utf-8")
    nb.metadata["papermill"] = {"parameters": {"lang": "en"}}
    en = render_notebook(nb, tmp_path / "en", "p", Redactor([]), "t")
    assert '<html lang="en">' in en["full"].read_text(encoding="utf-8")
    nb.metadata.pop("papermill")
    default = render_notebook(nb, tmp_path / "d", "p", Redactor([]), "t", lang="ja")  # the environment's language
    assert '<html lang="ja">' in default["full"].read_text(encoding="utf-8")
