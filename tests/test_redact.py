"""Secrets must never reach runs/: plant them everywhere a notebook can hold text, write
through the Redactor, then grep every byte on disk."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from pathlib import Path
from urllib.parse import quote

import nbformat
import pandas as pd
import pytest
from matplotlib.figure import Figure
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from shipbook import redact
from shipbook.redact import MASK, Redactor, atomic_write_text

DB_PASSWORD = "Hunter2-Sup3r/Secret&'x"
API_TOKEN = "tok_9f8e7d6c5b4a39281706"
# Not given to the Redactor: only the credential patterns can catch these.
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DSN_PASSWORD = "DsnPassw0rd"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
GH_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2
ENV_SECRET_KEY = "django-insecure-0123456789abcdef"

KNOWN = [DB_PASSWORD, API_TOKEN]
PATTERN_ONLY = [AWS_KEY_ID, AWS_SECRET, DSN_PASSWORD, BEARER, GH_TOKEN, ENV_SECRET_KEY]


def _png() -> str:
    fig = Figure(figsize=(2, 1.5), dpi=50)
    fig.subplots().plot([0, 1, 2], [2, 0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _leaky_notebook(png: str) -> nbformat.NotebookNode:
    df = pd.DataFrame({"name": ["db", "api"], "value": [DB_PASSWORD, API_TOKEN]})
    ansi_tb = [
        "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
        f"\x1b[0;31mValueError\x1b[0m: login failed for password \x1b[0;32m'{DB_PASSWORD}'\x1b[0m",
        # The same secret split by colour codes, as a highlighter may print it.
        f"token: \x1b[1m{API_TOKEN[:8]}\x1b[0m\x1b[1m{API_TOKEN[8:]}\x1b[0m",
    ]
    cells = [
        new_markdown_cell(f"# Notes\n\nconnect with `postgres://app:{DSN_PASSWORD}@db:5432/app`"),
        new_code_cell(
            f'db_password = "{DB_PASSWORD}"\napi_token = "{API_TOKEN}"\n',
            metadata={"tags": ["injected-parameters"], "note": f"uses {API_TOKEN}"},
        ),
        new_code_cell(
            "run_checks()",
            execution_count=2,
            outputs=[
                new_output("stream", name="stdout", text=f"calling API with {API_TOKEN}\n"),
                new_output("stream", name="stderr", text=f"export AWS_ACCESS_KEY_ID={AWS_KEY_ID}\n"),
                new_output(
                    "stream",
                    name="stdout",
                    text=f"aws_secret_access_key = {AWS_SECRET}\nAuthorization: Bearer {BEARER}\n",
                ),
                new_output(
                    "execute_result",
                    execution_count=2,
                    data={"text/plain": df.to_string(), "text/html": df.to_html()},
                ),
                new_output(
                    "display_data",
                    data={
                        "application/json": {"outer": {"list": [f"x {DB_PASSWORD} y", 3, None]}},
                        "text/markdown": f"token `{API_TOKEN}` and {GH_TOKEN}",
                        "text/latex": f"$\\text{{{API_TOKEN}}}$",
                        "text/plain": f"SECRET_KEY={ENV_SECRET_KEY}",
                        "image/png": png,
                    },
                    metadata={"image/png": {"width": 100}, "debug": API_TOKEN},
                ),
                new_output(
                    "error",
                    ename="ValueError",
                    evalue=f"login failed for password '{DB_PASSWORD}'",
                    traceback=ansi_tb,
                ),
            ],
        ),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["papermill"] = {
        "parameters": {"version": "v1.0.0", "db_password": DB_PASSWORD, "note": f"Bearer {BEARER}"},
        "environment_variables": {},
        "input_path": "notebooks/01_precheck.ipynb",
    }
    return nb


def _all_forms(value: str) -> set[str]:
    return {value, quote(value, safe=""), json.dumps(value)[1:-1]}


def _assert_clean_on_disk(root: Path, values: list[str]) -> None:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files, "nothing was written"
    for path in files:
        data = path.read_bytes()
        for value in values:
            for form in _all_forms(value):
                assert form.encode() not in data, f"{form!r} leaked into {path.name}"


def test_notebook_json_and_html_on_disk_hold_no_secret(tmp_path: Path) -> None:
    png = _png()
    nb = _leaky_notebook(png)
    red = Redactor(KNOWN)

    red.write_notebook(tmp_path / "01_precheck.ipynb", nb)
    record = {
        "run_id": "r1",
        "parameters": {"db_password": DB_PASSWORD, "dry_run": False},
        "facts": {"dsn": f"postgresql://app:{DSN_PASSWORD}@db/app", "keys": [AWS_KEY_ID]},
        "error": f"Traceback ... {API_TOKEN}",
    }
    red.write_json(tmp_path / "run.json", record)
    table = pd.DataFrame({"secret": [DB_PASSWORD, API_TOKEN, f"Bearer {BEARER}"]}).to_html()
    red.write_text(tmp_path / "table.html", table)
    from shipbook.render import render_notebook

    render_notebook(nb, tmp_path / "html", "01_precheck", red, title=f"precheck {API_TOKEN}")

    _assert_clean_on_disk(tmp_path, KNOWN + PATTERN_ONLY)
    # The rest of the story survives: the masks are there, the structure is valid.
    back = nbformat.read(tmp_path / "01_precheck.ipynb", as_version=4)
    nbformat.validate(back)
    assert MASK in back.cells[1].source
    assert back.metadata.papermill.parameters.version == "v1.0.0"
    assert back.cells[2].outputs[-1].ename == "ValueError"
    loaded = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert loaded["parameters"] == {"db_password": MASK, "dry_run": False}
    assert loaded["facts"]["dsn"] == f"postgresql://app:{MASK}@db/app"


def test_every_place_in_the_notebook_is_redacted() -> None:
    nb = _leaky_notebook(_png())
    out = Redactor(KNOWN).notebook(nb)
    dumped = nbformat.writes(out)
    for value in KNOWN + PATTERN_ONLY:
        assert value not in dumped
    outputs = out.cells[2].outputs
    assert outputs[0].text == f"calling API with {MASK}\n"
    assert MASK in outputs[3].data["text/html"] and "<table" in outputs[3].data["text/html"]
    assert outputs[4].data["application/json"] == {"outer": {"list": [f"x {MASK} y", 3, None]}}
    assert outputs[4].metadata == {"image/png": {"width": 100}, "debug": MASK}
    assert outputs[5].evalue == f"login failed for password '{MASK}'"
    # ANSI colours around and inside the secret: secret gone, the colours before it kept.
    assert outputs[5].traceback[1].startswith("\x1b[0;31mValueError\x1b[0m")
    assert API_TOKEN[:8] not in outputs[5].traceback[2]
    assert out.metadata.papermill.parameters == {
        "version": "v1.0.0",
        "db_password": MASK,
        "note": f"Bearer {MASK}",
    }
    assert out.cells[1].metadata == {"tags": ["injected-parameters"], "note": f"uses {MASK}"}
    # A deep copy: the caller's notebook is untouched.
    assert DB_PASSWORD in nb.cells[1].source
    assert nb.metadata.papermill.parameters.db_password == DB_PASSWORD


def test_image_png_is_left_alone_even_when_a_secret_matches_its_base64(tmp_path: Path) -> None:
    png = _png()
    unlucky = png[200:216]  # a "secret" that happens to occur inside the base64 payload
    nb = new_notebook(cells=[new_code_cell("plot()", outputs=[new_output("display_data", data={"image/png": png})])])
    red = Redactor([unlucky])
    out = red.notebook(nb)
    assert out.cells[0].outputs[0].data["image/png"] == png
    red.write_notebook(tmp_path / "nb.ipynb", nb)
    back = nbformat.read(tmp_path / "nb.ipynb", as_version=4)
    assert base64.b64decode(back.cells[0].outputs[0].data["image/png"]) == base64.b64decode(png)
    # The same payload inline in HTML (a data URI) is not "masked" either.
    page = f'<img src="data:image/png;base64,{png}"> and {unlucky} in text'
    assert red.text(page) == f'<img src="data:image/png;base64,{png}"> and {MASK} in text'


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Pre-check passed: 12 checks, 0 blocking.\n",
        "リリース前チェック：すべて合格しました。",
        "see https://example.invalid/path?a=1&b=2 and http://localhost:8080/health",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf",
        "db_secret_arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db'",
        "conn = connect(password=get_secret('db'), user=os.environ['DB_USER'])",
        "secrets_checked: 5; max_tokens=100; the bearer of news",
        "\x1b[0;31mKeyError\x1b[0m: 'version'",
        '<table border="1" class="dataframe"><tr><td>ok</td></tr></table>',
        '{"key": "value", "n": 1}',
        "password:\n  - rotate it yearly",
        "Enter the password: \nthen press enter",
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert Redactor(KNOWN).text(text) == text


def test_notebook_without_secrets_is_unchanged() -> None:
    png = _png()
    nb = new_notebook(
        cells=[
            new_markdown_cell("# リリース前チェック"),
            new_code_cell(
                "summary()",
                execution_count=1,
                outputs=[
                    new_output("execute_result", execution_count=1, data={"text/plain": "ok", "image/png": png}),
                    new_output("stream", name="stdout", text="all good\n"),
                ],
            ),
        ]
    )
    nb.metadata["papermill"] = {"parameters": {"version": "v1.0.0", "dry_run": True}}
    assert Redactor(KNOWN).notebook(nb) == nb


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"id {AWS_KEY_ID}.", f"id {MASK}."),
        ("temp ASIAABCDEFGHIJKLMNOP", f"temp {MASK}"),
        (f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}", f"AWS_SECRET_ACCESS_KEY={MASK}"),
        (f'"SecretAccessKey": "{AWS_SECRET}"', f'"SecretAccessKey": "{MASK}"'),
        (f"postgres://app:{DSN_PASSWORD}@db.internal:5432/app", f"postgres://app:{MASK}@db.internal:5432/app"),
        ("redis://:p4ssw0rd@cache:6379/0", f"redis://:{MASK}@cache:6379/0"),
        (f"curl -H 'Authorization: Bearer {BEARER}' x", f"curl -H 'Authorization: {MASK}' x"),
        ("Authorization: Basic dXNlcjpwYXNz\nnext", f"Authorization: {MASK}\nnext"),
        (f"token={BEARER}; Bearer {BEARER}", f"token={BEARER}; Bearer {MASK}"),
        (f"push with {GH_TOKEN}", f"push with {MASK}"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", MASK),
        ("password=letmein123", f"password={MASK}"),
        (f"SECRET_KEY={ENV_SECRET_KEY}", f"SECRET_KEY={MASK}"),
        ("DB_PASSWORD: 'abc123'", f"DB_PASSWORD: '{MASK}'"),
        ('{"api_key": "k-123456"}', f'{{"api_key": "{MASK}"}}'),
        ("password&#x27;: &#x27;zzz-123&#x27;", f"password&#x27;: &#x27;{MASK}&#x27;"),
        (f"\x1b[1;31m{AWS_KEY_ID}\x1b[0m", f"\x1b[1;31m{MASK}\x1b[0m"),
    ],
)
def test_credential_patterns_are_masked(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


def test_encoded_forms_of_known_secrets_are_masked() -> None:
    red = Redactor([DB_PASSWORD])
    for form in _all_forms(DB_PASSWORD) | {repr(DB_PASSWORD)[1:-1], "Hunter2-Sup3r/Secret&amp;&#x27;x"}:
        assert red.text(f"<{form}>") == f"<{MASK}>", form


def test_json_masks_values_but_keeps_keys() -> None:
    red = Redactor([API_TOKEN])
    obj = {
        API_TOKEN: "key kept as is",
        "nested": [{"token": "anything"}, ("t", API_TOKEN), 1.5, True, None],
        "client_secret": "whatever-it-is",
        "secret_arn": "arn:aws:secretsmanager:us-east-1:1:secret:x",
    }
    assert red.json(obj) == {
        API_TOKEN: "key kept as is",
        "nested": [{"token": MASK}, ("t", MASK), 1.5, True, None],
        "client_secret": MASK,
        "secret_arn": "arn:aws:secretsmanager:us-east-1:1:secret:x",
    }


def test_short_secrets_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="shipbook.redact"):
        red = Redactor(["", "abc", "long-enough"])
    assert red.text("abc long-enough") == f"abc {MASK}"
    assert "shorter than 4" in caplog.text
    assert "abc" not in caplog.text
    assert "long-enough" not in repr(red)


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "run.json"
    atomic_write_text(target, "old")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(redact.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        Redactor().write_json(target, {"new": True})
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["run.json"]


def test_atomic_write_creates_parents_and_readable_files(tmp_path: Path) -> None:
    path = Redactor().write_text(tmp_path / "a" / "b" / "x.txt", "日本語\r\n")
    assert path.read_bytes() == "日本語\r\n".encode()
    assert path.stat().st_mode & 0o777 == 0o644
