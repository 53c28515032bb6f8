"""Phase `deploy`: version check, plan, tag + push, then watch the rollout to the end.

The notebook `03_deploy.ipynb` calls, in order: `check_version` → `make_plan` → `gate_plan` →
`start` → `watch` → the outcome's tables and `chart` → `finish`. See `phase.py`.

Names are loaded on first use, so `shipbook.deploy.version` (the runner's early version check)
does not pull in pandas and matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CHECK_IDS": "model", "Check": "model",
    "Clients": "phase", "Deployment": "phase", "Outcome": "phase", "check_version": "phase",
    "checks_table": "phase", "clients_for": "phase", "finish": "phase", "gate_plan": "phase", "start": "phase",
    "watch": "phase",
    "Plan": "plan", "TagResult": "plan", "apply_tag": "plan", "make_plan": "plan",
    "WatchSettings": "poll",
    "Timeline": "timeline", "chart": "timeline",
    "VersionCheck": "version", "inspect": "version",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
