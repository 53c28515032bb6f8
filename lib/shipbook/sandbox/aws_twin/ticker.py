"""The background clock of the twin: snapshots and restores progress, alarms are evaluated, host counts published."""

from __future__ import annotations

import logging
import threading
import time

from . import cw_alarms, elb_targets, rds_data, rds_snapshots
from .state import TWIN

log = logging.getLogger(__name__)


def tick_once(now: float | None = None, publish_hosts: bool = True) -> None:
    """One round of every periodic extension, under the twin's lock."""
    with TWIN.lock:
        rds_snapshots.tick(now)
        rds_data.tick(now)
        if publish_hosts:
            elb_targets.publish_host_counts()
        cw_alarms.tick()


def _run(stop: threading.Event) -> None:
    settings = TWIN.settings
    last_hosts = 0.0
    while not stop.wait(settings.tick_seconds):
        now = time.monotonic()
        publish = now - last_hosts >= settings.health_metric_seconds
        try:
            tick_once(now, publish_hosts=publish)
        except Exception:  # one bad evaluation must not stop the twin's clock; logged in full
            log.exception("ticker round failed")
        if publish:
            last_hosts = now


def start() -> threading.Event:
    """Start the ticker thread; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(target=_run, args=(stop,), name="aws-twin-ticker", daemon=True).start()
    return stop
