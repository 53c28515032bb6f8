"""Phase `deploy`: version check, plan, tag + push, then watch the rollout to the end.

The notebook `03_deploy.ipynb` calls, in order: `check_version` → `make_plan` → `gate_plan` →
`start` → `watch` → the outcome's tables and `chart` → `finish`. See `phase.py`.
"""

from shipbook.deploy.model import CHECK_IDS, Check
from shipbook.deploy.phase import (
    Clients,
    Deployment,
    Outcome,
    check_version,
    checks_table,
    clients_for,
    finish,
    gate_plan,
    start,
    watch,
)
from shipbook.deploy.plan import Plan, TagResult, apply_tag, make_plan
from shipbook.deploy.poll import WatchSettings
from shipbook.deploy.timeline import Timeline, chart
from shipbook.deploy.version import VersionCheck, inspect

__all__ = ["CHECK_IDS", "Check", "Clients", "Deployment", "Outcome", "Plan", "TagResult", "Timeline", "VersionCheck",
           "WatchSettings", "apply_tag", "chart", "check_version", "checks_table", "clients_for", "finish",
           "gate_plan", "inspect", "make_plan", "start", "watch"]
