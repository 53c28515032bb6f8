"""RDS data in the twin: every DB instance has data, and the data follows the instance, not its name.

moto keeps RDS as metadata only: a snapshot holds no data, a restored instance has none, and every
instance shares one `DbiResourceId`. Here each instance's data is a SQLite file named by its own
resource id (`<state-dir>/rds/<DbiResourceId>.sqlite3`), so:

- CreateDBSnapshot copies the instance's data at that moment (`rds/snapshots/<id>.sqlite3`,
  SQLite's online backup, consistent while the app writes);
- RestoreDBInstanceFromDBSnapshot gives the new instance a copy of the snapshot's data, and the
  instance is `creating` for `Settings.restore_seconds` before it is `available`, as on AWS;
- ModifyDBInstance with a new identifier renames the instance and its endpoint; the data stays
  with the instance (the resource id does not change), as on AWS;
- `GET /_sandbox/rds/datafile?host=<endpoint address>` tells the runtime which file a
  DATABASE_URL's host stands for: the instance whose endpoint is that address now.

The runtime (the ECS agent) starts each task with `sqlite:///<that file>` in place of the
PostgreSQL URL the task definition's secret names; release code never sees any of this.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moto.rds.models import DBInstance, DBSnapshot, RDSBackend, rds_backends

from .state import ACCOUNT_ID, REGION, TWIN

log = logging.getLogger(__name__)

_ALPHABET = string.ascii_uppercase + "234567"


def new_resource_id() -> str:
    """`db-` and 26 base32 characters, like RDS's DbiResourceId."""
    return "db-" + "".join(secrets.choice(_ALPHABET) for _ in range(26))


def data_dir() -> Path:
    return TWIN.state_dir / "rds"


def instance_path(db: DBInstance) -> Path:
    return data_dir() / f"{db.dbi_resource_id}.sqlite3"


def snapshot_path(snapshot_id: str) -> Path:
    return data_dir() / "snapshots" / f"{snapshot_id}.sqlite3"


def copy_database(source: Path, target: Path) -> bool:
    """A consistent copy of a SQLite file (online backup); False when there is no source yet."""
    if not source.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=10)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    tmp.replace(target)
    return True


def capture(snapshot: DBSnapshot) -> None:
    """Copy the instance's data into the snapshot (called when the snapshot is created)."""
    source = data_dir() / f"{snapshot.dbi_resource_id}.sqlite3"
    copied = copy_database(source, snapshot_path(snapshot.db_snapshot_identifier))
    log.info("snapshot %s: %s", snapshot.db_snapshot_identifier,
             f"data of {snapshot.db_instance_identifier} copied" if copied else "the instance has no data yet")


@dataclass
class _Restoring:
    instance: DBInstance
    started: float


_RESTORING: dict[str, _Restoring] = {}
_original_init = DBInstance.__init__
_original_restore = RDSBackend.restore_db_instance_from_db_snapshot


def _init(self: DBInstance, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    self.dbi_resource_id = new_resource_id()


def _restore(self: RDSBackend, from_snapshot_id: str, overrides: dict[str, Any]) -> DBInstance:
    db = _original_restore(self, from_snapshot_id, overrides)
    snapshot_id = from_snapshot_id.rsplit(":", 1)[-1]
    copied = copy_database(snapshot_path(snapshot_id), instance_path(db))
    db.status = "creating"
    _RESTORING[db.dbi_resource_id] = _Restoring(db, time.monotonic())
    log.info("instance %s restoring from %s (%s)", db.db_instance_identifier, snapshot_id,
             "with its data" if copied else "the snapshot holds no data")
    return db


def tick(now: float | None = None) -> None:
    """Restored instances become available after `restore_seconds` (called with `TWIN.lock` held)."""
    now = time.monotonic() if now is None else now
    for key, pending in list(_RESTORING.items()):
        if now - pending.started >= TWIN.settings.restore_seconds:
            pending.instance.status = "available"
            del _RESTORING[key]
            log.info("instance %s available", pending.instance.db_instance_identifier)


def resolve(host: str) -> dict[str, Any] | None:
    """The instance whose endpoint address is `host` now, and its data file."""
    wanted = host.strip().lower().rstrip(".")
    data_dir().mkdir(parents=True, exist_ok=True)  # the storage the app writes into exists with the instance
    with TWIN.lock:
        backend = rds_backends[ACCOUNT_ID][REGION]
        for db in backend.databases.values():
            if db.address.lower() == wanted:
                return {"instance": db.db_instance_identifier, "resourceId": db.dbi_resource_id,
                        "status": db.status, "path": str(instance_path(db))}
    return None


def install() -> None:
    """Patch moto's DBInstance (own resource ids) and RestoreDBInstanceFromDBSnapshot (data, progress)."""
    DBInstance.__init__ = _init  # type: ignore[method-assign]
    RDSBackend.restore_db_instance_from_db_snapshot = _restore  # type: ignore[method-assign]
