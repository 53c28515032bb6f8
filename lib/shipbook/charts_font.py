"""A Japanese font for matplotlib charts, found without network and without system fonts.

Why: a chart is rendered to PNG on the machine that runs the notebook, so a Japanese title is
only readable if *that* machine's matplotlib has a font with the glyphs; otherwise it draws
tofu boxes and warns "Glyph ... missing". The font comes from the PyPI package
`japanize-matplotlib` (it ships IPAexGothic, `ipaexg.ttf`), so `pip install` is enough on any
machine. Its own module is not imported (it imports `distutils`, deprecated and gone in
Python 3.12): only its font file is registered. A system font (IPAexGothic from Debian's
`fonts-ipaexfont-gothic`, Noto Sans CJK, Hiragino, Yu Gothic, Meiryo) is used when the package
is missing.

Latin text keeps DejaVu Sans; matplotlib (>= 3.6) falls back per glyph to the Japanese font.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import matplotlib
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font

log = logging.getLogger(__name__)

PACKAGE = "japanize_matplotlib"
LATIN_FAMILY = "DejaVu Sans"
JAPANESE_FAMILIES = ("IPAexGothic", "Noto Sans CJK JP", "Noto Sans JP", "Hiragino Sans", "Yu Gothic", "Meiryo")

_configured: str | None = None


def bundled_font_files() -> list[Path]:
    """The .ttf/.otf files shipped by japanize-matplotlib, located without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return []
    out: list[Path] = []
    for location in spec.submodule_search_locations:
        fonts = Path(location) / "fonts"
        out += sorted(p for p in fonts.glob("*") if p.suffix.lower() in (".ttf", ".otf"))
    return out


def japanese_family() -> str:
    """The family name of a registered font with Japanese glyphs, or '' when there is none."""
    known = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in JAPANESE_FAMILIES if name in known), "")


def setup() -> str:
    """Register the bundled font and make it matplotlib's fallback for Japanese. Idempotent.

    Returns the Japanese family in use ('' when none was found: a warning is logged, charts
    still render, Japanese titles as boxes).
    """
    global _configured
    if _configured is not None:
        return _configured
    registered = {Path(f.fname).resolve() for f in font_manager.fontManager.ttflist}
    for path in bundled_font_files():
        if path.resolve() not in registered:
            font_manager.fontManager.addfont(str(path))
    family = japanese_family()
    if not family:
        log.warning("no Japanese font found (pip install japanize-matplotlib): Japanese chart text shows as boxes")
    matplotlib.rcParams["font.family"] = [LATIN_FAMILY, family] if family else [LATIN_FAMILY]
    _configured = family
    return family


def font_file(family: str) -> str:
    """The file matplotlib uses for `family` (no fallback to another family)."""
    return font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)


def missing_glyphs(text: str, family: str | None = None) -> str:
    """The characters of `text` that `family` (default: the configured Japanese font) cannot draw."""
    family = family if family is not None else setup()
    if not family:
        return "".join(sorted({c for c in text if not c.isascii() and not c.isspace()}))
    font = FT2Font(font_file(family))
    wanted = {c for c in text if not c.isspace() and not c.isascii()}
    return "".join(sorted(c for c in wanted if font.get_char_index(ord(c)) == 0))
