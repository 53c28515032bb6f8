"""Masking of secrets before anything is written under runs/.

runs/ is an audit trail that is kept, rendered for stakeholders and possibly synced to S3,
so a secret that reaches it once is leaked for good. Everything written there goes through
a `Redactor`: known secret values (and the encoded forms they take in URLs, JSON, Python
reprs and HTML) are replaced by `***`, and common credential shapes (AWS keys, bearer
tokens, GitHub tokens, DSN passwords, `password=` assignments) are masked even when
nobody told us the value.

Writes are atomic (temp file in the same directory, fsync, rename) so a crash never
leaves a half-written notebook or record behind.
"""

from __future__ import annotations

import copy
import html
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:  # nbformat is imported where notebooks are handled, not by every kernel that masks a string:
    from nbformat import NotebookNode  # its import costs ~1.5 s (jsonschema's format checkers compile a grammar)

__all__ = ["MASK", "MIN_SECRET_LENGTH", "Redactor", "atomic_write_bytes", "atomic_write_text"]

log = logging.getLogger(__name__)

MASK = "***"
MIN_SECRET_LENGTH = 4

# An ANSI escape sequence (colours in IPython tracebacks). Allowed between the characters of
# a literal secret so that a value split by colour codes is still found.
_ANSI = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"

# base64 payloads of data URIs (inline images in HTML). They are skipped: a short secret can
# appear in base64 by chance, and "masking" it there would corrupt the image. Only a payload
# that ends where base64 must end (a quote, a bracket, whitespace) is skipped, so text glued
# to a payload is still redacted.
_DATA_URI_PAYLOAD = re.compile(r"""(?<=;base64,)[A-Za-z0-9+/]{64,}+={0,2}(?=["')\s\\<]|$)""")

# A quote as it may appear around keys and values: plain, backslash-escaped (JSON inside a
# string) or HTML-escaped (rendered output).
_Q = r"""(?:\\?["'`]|&quot;|&\#x27;|&\#39;|&\#34;)"""

# Key names whose value is a credential in `key=value` / `key: value` / `"key": "value"`.
# The match starts at the keyword (a prefix such as DB_ needs no matching) and quantifiers
# are possessive: scanning must stay linear on long unbroken runs such as base64.
_CRED_NAME = (
    r"(?:passw(?:or)?d|passphrase|secret(?!s)|api[_\-]?key|access[_\-]?token"
    r"|auth[_\-]?token|refresh[_\-]?token|session[_\-]?token|private[_\-]?key)[A-Za-z0-9_\-]*+"
)

# (pattern, replacement) applied in order after the literal secrets.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization headers, whatever the scheme: keep the header name, drop the credential.
    (
        re.compile(rf"(?i)(\bauthorization{_Q}?[ \t]*[:=][ \t]*{_Q}?)([^\"'\r\n<>&\\\x1b]+)"),
        rf"\g<1>{MASK}",
    ),
    # Bearer tokens anywhere (logs, curl commands, reprs).
    (re.compile(r"(?i)(\bbearer[ \t]+)[A-Za-z0-9\-._~+/]{8,}=*"), rf"\g<1>{MASK}"),
    # AWS access key ids (long-term AKIA, temporary ASIA).
    (re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])"), MASK),
    # GitHub tokens: classic (ghp_, gho_, ghu_, ghs_, ghr_) and fine-grained (github_pat_).
    (re.compile(r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?![A-Za-z0-9_])"), MASK),
    # Passwords in URLs and DSNs: scheme://user:PASSWORD@host.
    (
        re.compile(r"(://[^\s:/@\"'<>]*+:)([^\s@/\"'<>]++)(@)"),
        rf"\g<1>{MASK}\g<3>",
    ),
    # AWS secret access keys: 40 base64-ish characters after a key name that says so.
    (
        re.compile(rf"(?i)(secret_?access_?key{_Q}?[ \t]*[:=][ \t]*{_Q}?)[A-Za-z0-9/+=]{{40}}(?![A-Za-z0-9/+=])"),
        rf"\g<1>{MASK}",
    ),
    # password=..., SECRET_KEY: ..., "api_key": "..." on one line. A `:` separator must be
    # followed by a space or a quote, so ARNs such as arn:aws:secretsmanager:... are left alone; a value
    # followed by `(` or `[` is code (password=get_secret()), not a credential, and an ARN
    # names a secret without being one.
    (
        re.compile(
            rf"(?i)({_CRED_NAME}{_Q}?[ \t]*(?:=|:(?=[ \t]|{_Q}))[ \t]*{_Q}?)"
            r"(?!arn:)([^\s\"'`<>&,;()\[\]{}\\]++)(?![(\[])"
        ),
        rf"\g<1>{MASK}",
    ),
)

# Dict keys whose string value is masked whole by `Redactor.json`, whatever it looks like.
_CRED_KEY = re.compile(
    r"(?i)^(?:[a-z0-9_.\-]*(?:passw(?:or)?d|passphrase|secret_?key|secret_?access_?key|client_?secret"
    r"|api_?key|access_?token|auth_?token|refresh_?token|session_?token|private_?key))$"
    r"|^(?:secret|token|authorization)$"
)

# Mime types whose payload is base64 binary, never text: left untouched.
_BINARY_MIME_PREFIXES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "application/pdf")


def _variants(secret: str) -> set[str]:
    """The forms a secret takes once it is quoted into a URL, JSON, a repr or HTML."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        html.escape(secret),
        html.escape(secret, quote=False),
        html.escape(secret).replace("&#x27;", "&#39;"),
    }
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def _is_binary_mime(mime: str) -> bool:
    return mime.startswith(_BINARY_MIME_PREFIXES)


class Redactor:
    """Masks known secret values and credential-shaped strings in text, JSON and notebooks.

    Construct it with every secret value the process knows (database passwords read from
    Secrets Manager, tokens, ...). Values shorter than `MIN_SECRET_LENGTH` are ignored:
    masking "ab" everywhere would destroy the text and protect nothing.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values: set[str] = set()
        short = 0
        for value in secrets:
            if not isinstance(value, str):
                raise TypeError(f"secret values must be str, got {type(value).__name__}")
            if len(value) < MIN_SECRET_LENGTH:
                short += value != ""
                continue
            values.add(value)
        if short:
            log.warning("ignoring %d secret value(s) shorter than %d characters", short, MIN_SECRET_LENGTH)
        forms: set[str] = set()
        for value in values:
            forms |= _variants(value)
        self._count = len(values)
        # Longest first so that a secret containing another one is masked whole.
        ordered = sorted(forms, key=lambda f: (-len(f), f))
        self._literal: re.Pattern[str] | None = (
            re.compile("|".join(_ANSI.join(re.escape(ch) for ch in form) for form in ordered)) if ordered else None
        )

    def __repr__(self) -> str:
        # Never show the values, not even in a debugger or a log line.
        return f"Redactor(<{self._count} secret(s)>)"

    # --- text -------------------------------------------------------------------------------

    def text(self, s: str) -> str:
        """Return `s` with every secret and credential pattern replaced by `***`.

        base64 payloads of `data:` URIs are skipped so inline images stay intact.
        """
        if not s:
            return s
        pieces: list[str] = []
        pos = 0
        for m in _DATA_URI_PAYLOAD.finditer(s):
            pieces.append(self._mask(s[pos : m.start()]))
            pieces.append(m.group(0))
            pos = m.end()
        if pos == 0:
            return self._mask(s)
        pieces.append(self._mask(s[pos:]))
        return "".join(pieces)

    def _mask(self, s: str) -> str:
        if self._literal is not None:
            s = self._literal.sub(MASK, s)
        for pattern, replacement in _PATTERNS:
            s = pattern.sub(replacement, s)
        return s

    def _text_or_lines(self, value: Any) -> Any:
        """nbformat allows multiline strings as a list of lines: redact them joined."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            joined = self.text("".join(value))
            return joined.splitlines(keepends=True)
        return self.json(value)

    # --- structures -------------------------------------------------------------------------

    def json(self, obj: Any) -> Any:
        """Redact a JSON-able structure: every string value; keys are kept.

        The value of a key that names a credential (`password`, `api_key`, `token`, ...) is
        masked whole even when it matches no pattern.
        """
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            out = {
                k: (MASK if isinstance(k, str) and isinstance(v, str) and v and _CRED_KEY.match(k) else self.json(v))
                for k, v in obj.items()
            }
            return _like(obj, out)
        if isinstance(obj, list):
            return [self.json(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self.json(v) for v in obj)
        return obj

    def notebook(self, nb: NotebookNode) -> NotebookNode:
        """A redacted deep copy of `nb`: sources, every output type, metadata."""
        import nbformat

        red = nbformat.from_dict(copy.deepcopy(dict(nb)))
        red.metadata = self.json(red.get("metadata", {}))
        for cell in red.get("cells", []):
            if "source" in cell:
                cell.source = self._text_or_lines(cell.source)
            if "metadata" in cell:
                cell.metadata = self.json(cell.metadata)
            if "attachments" in cell:
                cell.attachments = {name: self._mime_bundle(b) for name, b in cell.attachments.items()}
            for output in cell.get("outputs", []):
                self._output(output)
        return red

    def _output(self, output: NotebookNode) -> None:
        kind = output.get("output_type")
        if kind == "stream":
            output.text = self._text_or_lines(output.get("text", ""))
        elif kind == "error":
            output.ename = self.text(output.get("ename", ""))
            output.evalue = self.text(output.get("evalue", ""))
            output.traceback = [self.text(line) for line in output.get("traceback", [])]
        if "data" in output:
            output.data = self._mime_bundle(output.data)
        if "metadata" in output:
            output.metadata = self.json(output.metadata)
        # Unknown or future output fields: redact every remaining string value too.
        for key in list(output):
            if key not in {"output_type", "text", "ename", "evalue", "traceback", "data", "metadata"}:
                output[key] = self.json(output[key])

    def _mime_bundle(self, bundle: Mapping[str, Any]) -> NotebookNode:
        from nbformat import NotebookNode

        out = NotebookNode()
        for mime, value in bundle.items():
            if _is_binary_mime(mime):
                out[mime] = value
            elif mime == "application/json" or mime.endswith("+json"):
                out[mime] = self.json(value)
            else:
                out[mime] = self._text_or_lines(value)
        return out

    # --- writers ----------------------------------------------------------------------------

    def write_text(self, path: Path | str, text: str) -> Path:
        """Redact `text` and write it atomically as UTF-8."""
        return atomic_write_text(path, self.text(text))

    def write_json(self, path: Path | str, obj: Any) -> Path:
        """Redact `obj` and write it atomically as indented UTF-8 JSON."""
        return atomic_write_text(path, json.dumps(self.json(obj), indent=2, ensure_ascii=False) + "\n")

    def write_notebook(self, path: Path | str, nb: NotebookNode) -> Path:
        """Redact `nb` and write it atomically in nbformat 4."""
        import nbformat

        return atomic_write_text(path, nbformat.writes(self.notebook(nb), version=4))


def _like(original: Mapping[str, Any], out: dict[str, Any]) -> Any:
    """`out` as a NotebookNode when `original` is one (nbformat is loaded then: no import here)."""
    nbformat = sys.modules.get("nbformat")
    return nbformat.NotebookNode(out) if nbformat is not None and isinstance(original, nbformat.NotebookNode) else out


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write `data` so that readers see either the old file or the whole new one.

    Temp file in the same directory (same filesystem, so the rename is atomic), fsync,
    os.replace, then fsync the directory so the rename itself survives a crash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; these files are meant to be read (served, synced, rendered).
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    """`atomic_write_bytes` for UTF-8 text, with no newline translation."""
    return atomic_write_bytes(path, text.encode("utf-8"))
