"""The ALB stand-in: a threaded reverse proxy on 127.0.0.1:<alb-port> in front of the tasks.

Targets come from the agent (healthy tasks of the PRIMARY deployment, else of any deployment),
chosen round robin. 503 when there is no healthy target and 502 when the target does not answer,
as an ALB does; every request is recorded for the 1-second metrics.
"""

from __future__ import annotations

import http.client
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shipbook.sandbox.runtime.tasks import Task
from shipbook.sandbox.runtime.telemetry import Recorder

logger = logging.getLogger(__name__)

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length"}
TARGET_TIMEOUT = 30.0


class ProxyHandler(BaseHTTPRequestHandler):
    """Forward one request to a target and relay the answer."""

    targets: Callable[[], list[Task]]
    recorder: Recorder
    counter: Any
    protocol_version = "HTTP/1.1"
    server_version = "awselb/2.0"

    def _forward(self) -> None:
        started_wall, started = time.time(), time.perf_counter()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        targets = self.targets()
        if not targets:
            self._error(503, "Service Temporarily Unavailable")
            self.recorder.record(started_wall, None, 503, from_target=False)
            return
        target = targets[next(self.counter) % len(targets)]
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = self.client_address[0]
        headers["X-Forwarded-Proto"] = "http"
        headers["X-Forwarded-Port"] = str(self.server.server_address[1])
        headers.setdefault("X-Amzn-Trace-Id", f"Root=1-{int(started_wall):08x}-{uuid.uuid4().hex[:24]}")
        connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=TARGET_TIMEOUT)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            latency = time.perf_counter() - started
            status, reason, reply_headers = response.status, response.reason, response.getheaders()
        except TimeoutError:
            self._error(504, "Gateway Time-out")
            self.recorder.record(started_wall, None, 504, from_target=False)
            return
        except (OSError, http.client.HTTPException):
            self._error(502, "Bad Gateway")
            self.recorder.record(started_wall, None, 502, from_target=False)
            return
        finally:
            connection.close()
        self.recorder.record(started_wall, latency, status, from_target=True)
        self.send_response(status, reason)
        for name, value in reply_headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _error(self, status: int, reason: str) -> None:
        title = f"{status} {reason}"
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>\n".encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(page)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


def make_proxy(port: int, targets: Callable[[], list[Task]], recorder: Recorder) -> ThreadingHTTPServer:
    """The ALB stand-in bound to 127.0.0.1:port (0: any free port)."""
    handler = type("BoundProxyHandler", (ProxyHandler,), {
        "targets": staticmethod(targets), "recorder": recorder, "counter": itertools.count(),
    })
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server
