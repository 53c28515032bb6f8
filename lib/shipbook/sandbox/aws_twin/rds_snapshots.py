"""RDS manual snapshots that take time, like on AWS.

moto 5.2.5 makes a snapshot `available` the moment CreateDBSnapshot returns, so a backup phase
never exercises its waiting. Here a new manual snapshot is `creating` with `PercentProgress`
advancing over `Settings.snapshot_seconds`, then `available` (with RDS's start/finish events);
with the `rds_snapshot_failure` fault on it ends `failed` half-way instead. The snapshot holds a copy
of the instance's data taken when it was created (`rds_data`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from moto.rds.models import DBSnapshot, RDSBackend

from . import rds_data
from .state import TWIN

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    snapshot: DBSnapshot
    started: float


_PENDING: dict[str, _Pending] = {}
_original_create_db_snapshot = RDSBackend.create_db_snapshot


def _create_db_snapshot(self: RDSBackend, *args: Any, **kwargs: Any) -> DBSnapshot:
    snapshot = _original_create_db_snapshot(self, *args, **kwargs)
    rds_data.capture(snapshot)
    if snapshot.snapshot_type == "manual":
        snapshot.status = "creating"
        snapshot.percent_progress = 0
        snapshot.add_event("DB_SNAPSHOT_CREATE_MANUAL_START")
        _PENDING[snapshot.arn] = _Pending(snapshot, time.monotonic())
        log.info("snapshot %s creating", snapshot.db_snapshot_identifier)
    return snapshot


def tick(now: float | None = None) -> None:
    """Advance every snapshot being created (called by the ticker with `TWIN.lock` held)."""
    now = time.monotonic() if now is None else now
    duration = max(TWIN.settings.snapshot_seconds, 0.001)
    for arn, pending in list(_PENDING.items()):
        snapshot = pending.snapshot
        fraction = (now - pending.started) / duration
        if TWIN.fault("rds_snapshot_failure") and fraction >= 0.5:
            snapshot.status = "failed"
            del _PENDING[arn]
            log.info("snapshot %s failed (fault rds_snapshot_failure)", snapshot.db_snapshot_identifier)
        elif fraction >= 1:
            snapshot.status = "available"
            snapshot.percent_progress = 100
            snapshot.add_event("DB_SNAPSHOT_CREATE_MANUAL_FINISH")
            del _PENDING[arn]
            log.info("snapshot %s available", snapshot.db_snapshot_identifier)
        else:
            snapshot.percent_progress = int(fraction * 100)


def install() -> None:
    """Patch moto's CreateDBSnapshot."""
    RDSBackend.create_db_snapshot = _create_db_snapshot  # type: ignore[method-assign]
