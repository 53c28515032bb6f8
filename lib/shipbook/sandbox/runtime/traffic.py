"""Steady synthetic traffic through the ALB stand-in: an open-loop mix of the app's endpoints."""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

# (weight, path); {id} is a product id from the seeded catalogue.
MIX: list[tuple[int, str]] = [
    (45, "/products/{id}/"),
    (30, "/products/"),
    (10, "/"),
    (10, "/version/"),
    (5, "/health/"),
]
PRODUCT_IDS = range(1, 21)


@dataclass
class Traffic:
    """Sends about `rps` requests per second to the ALB, each on its own connection."""

    port: int
    rps: float = 15.0
    timeout: float = 10.0
    seed: int = 7
    sent: int = 0
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        # Pseudo-random is right here: it shapes traffic, it protects nothing.
        self._random = random.Random(self.seed)  # noqa: S311  # nosec B311
        self._pool = ThreadPoolExecutor(max_workers=max(4, int(self.rps * 2)), thread_name_prefix="traffic")

    def path(self) -> str:
        weights, paths = zip(*MIX, strict=True)
        template = self._random.choices(paths, weights=weights)[0]
        return template.format(id=self._random.choice(PRODUCT_IDS))

    def run(self) -> None:
        """Schedule requests at exponential intervals (Poisson arrivals) until stopped."""
        if self.rps <= 0:
            return
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += self._random.expovariate(self.rps)
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            self._pool.submit(self._one, self.path())
        self._pool.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        self._stop.set()

    def _one(self, path: str) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            connection.request("GET", path, headers={"User-Agent": "shipbook-traffic/1.0", "Host": "demo.example.com"})
            connection.getresponse().read()
            self.sent += 1
        except (OSError, http.client.HTTPException):
            self.errors += 1
        finally:
            connection.close()
