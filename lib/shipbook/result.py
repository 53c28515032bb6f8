"""How a phase notebook tells the runner its verdict: a small JSON file, never scraped output.

The runner sets SHIPBOOK_WORK_DIR for its kernels; in JupyterLab it is unset and the result
is only returned, so the same notebook works interactively.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from shipbook.errors import GateError

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
VERDICTS = ("pass", "warn", "fail", "skip", "manual")
BLOCKING = ("fail",)


@dataclass
class Check:
    """One line of a checklist with its verdict (pass/warn/fail/skip/manual): the row every phase reports."""

    id: str
    verdict: str
    summary: str = ""


@dataclass
class PhaseResult:
    phase: str
    verdict: str
    checks: list[dict] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    blocking: list[dict] = field(default_factory=list)


def _as_dict(check: Any) -> dict:
    if is_dataclass(check):
        return asdict(check)
    if isinstance(check, Mapping):
        return dict(check)
    raise TypeError(f"a check must be a dataclass or a mapping, got {type(check).__name__}")


def report(phase: str, checks: Iterable[Any] = (), facts: Mapping[str, Any] | None = None,
           verdict: str | None = None, blocking: Iterable[Any] | None = None) -> PhaseResult:
    """Record the phase's verdict for the runner. Returns the result for display.

    `checks` are dicts/dataclasses with at least `id` and `verdict`. Without an explicit
    `verdict`, the worst check verdict wins; without `blocking`, every `fail` blocks.
    """
    rows = [_as_dict(c) for c in checks]
    for r in rows:
        if r.get("verdict") not in VERDICTS:
            raise ValueError(f"check {r.get('id')!r}: verdict must be one of {VERDICTS}, got {r.get('verdict')!r}")
    block = [_as_dict(b) for b in blocking] if blocking is not None else \
        [r for r in rows if r["verdict"] in BLOCKING]
    if verdict is None:
        order = ["pass", "skip", "manual", "warn", "fail"]
        verdict = max((r["verdict"] for r in rows), key=order.index, default="pass")
        if block:
            verdict = "fail"
    res = PhaseResult(phase=phase, verdict=verdict, checks=rows, facts=dict(facts or {}),
                      blocking=[{"id": b.get("id", ""), "verdict": b.get("verdict", ""),
                                 "summary": b.get("summary", "")} for b in block])
    work = os.environ.get("SHIPBOOK_WORK_DIR")
    if work:
        path = Path(work) / RESULT_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(res), default=str, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    else:
        log.info("not run by shipbook (SHIPBOOK_WORK_DIR unset): result not recorded")
    return res


def gate(phase: str, checks: Iterable[Any] = (), facts: Mapping[str, Any] | None = None) -> PhaseResult:
    """Report, then raise GateError listing every blocking check, so the notebook stops here."""
    res = report(phase, checks, facts)
    if res.blocking:
        raise GateError(phase, [Check(b["id"], b["verdict"], b["summary"]) for b in res.blocking])
    return res


def read(work_dir: Path) -> PhaseResult | None:
    path = Path(work_dir) / RESULT_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return PhaseResult(**data)
