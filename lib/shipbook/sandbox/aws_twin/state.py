"""Process-wide state of the twin: the lock around moto, the faults, the settings, the outbox.

moto's backends are plain Python objects that are not thread-safe. The WSGI middleware and the
background ticker both take `TWIN.lock` before touching them, so requests and evaluation never
interleave half-way through a mutation.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ACCOUNT_ID = "123456789012"
REGION = "ap-northeast-1"
REGION_TITLE = "Asia Pacific (Tokyo)"


@dataclass
class Settings:
    """Tunables of the emulator extensions (all short: the sandbox compresses time)."""

    snapshot_seconds: float = 3.0
    restore_seconds: float = 3.0
    tick_seconds: float = 1.0
    ecs_failed_task_threshold: int = 3
    health_metric_seconds: float = 5.0


@dataclass
class TwinState:
    """Everything the extensions share inside the server process."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    state_dir: Path = Path(".sandbox")
    faults: dict[str, Any] = field(default_factory=lambda: {"rds_snapshot_failure": False})
    settings: Settings = field(default_factory=Settings)
    ready: threading.Event = field(default_factory=threading.Event)
    _outbox_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.jsonl"

    def fault(self, name: str) -> bool:
        """True when the named scenario fault is switched on."""
        return bool(self.faults.get(name))

    def deliver(self, record: dict[str, Any]) -> None:
        """Append one delivered notification to the outbox (one JSON object per line)."""
        line = json.dumps(record, sort_keys=True, default=str)
        with self._outbox_lock:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with self.outbox_path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        log.info("outbox: %s to %s", record.get("Subject") or record.get("MessageId"), record.get("Endpoint"))


TWIN = TwinState()
