"""The private control API of the twin, `/_sandbox/*` (JSON, loopback only).

- `GET  /_sandbox/health` -> 200 `{"status": "ready", ...}` once the server is ready, else 503.
- `POST /_sandbox/ecs/report` `{"cluster", "service", "taskDefinition", "running", "healthy",
  "failed", "reason"}` -> 200 with the service's deployments after the report; 400 for a bad
  body, 404 for an unknown service or task definition.
- `GET  /_sandbox/ecs/tasks` -> the one-off (RunTask) tasks not yet stopped; `POST
  /_sandbox/ecs/task-state` `{"taskArn", "lastStatus", "exitCode", "reason"}` -> 200; 400 for a
  bad body, 404 for an unknown task (see `ecs_tasks`).
- `GET  /_sandbox/rds/datafile?host=ADDRESS` -> 200 `{"instance", "resourceId", "status", "path"}`
  of the DB instance whose endpoint is ADDRESS now; 404 when none (see `rds_data`).
- `POST /_sandbox/faults` `{"rds_snapshot_failure": bool}` -> 200 with all faults; 400 for an
  unknown fault name or a non-boolean value. `GET /_sandbox/faults` -> the faults.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from importlib.metadata import version
from typing import Any
from urllib.parse import parse_qs

from shipbook.loopback import is_loopback

from . import ecs_rollout, ecs_tasks, rds_data
from .state import TWIN

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
MAX_BODY = 1 << 20


def _reply(start_response: StartResponse, status: int, body: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps(body, default=str).encode()
    reasons = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
               503: "Service Unavailable"}
    start_response(f"{status} {reasons.get(status, 'Error')}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def _body(environ: dict[str, Any]) -> dict[str, Any]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise ValueError("bad Content-Length") from exc
    if length > MAX_BODY:
        raise ValueError("body too large")
    raw = environ["wsgi.input"].read(length) if length else b""
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _health(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if not TWIN.ready.is_set():
        return _reply(start_response, 503, {"status": "starting"})
    return _reply(start_response, 200, {"status": "ready", "moto": version("moto"), "pid": os.getpid(),
                                        "stateDir": str(TWIN.state_dir)})


def _apply(environ: dict[str, Any], start_response: StartResponse, apply: Callable[[dict[str, Any]], dict[str, Any]],
           unknown: type[Exception]) -> Iterable[bytes]:
    """A JSON report applied to the twin: 200 with its result, 404 for an unknown resource, 400 for a bad body."""
    try:
        result = apply(_body(environ))
    except unknown as exc:
        return _reply(start_response, 404, {"error": str(exc)})
    except ValueError as exc:
        return _reply(start_response, 400, {"error": str(exc)})
    return _reply(start_response, 200, result)


def _report(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    return _apply(environ, start_response, ecs_rollout.report, ecs_rollout.UnknownResource)


def _tasks(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    return _reply(start_response, 200, {"tasks": ecs_tasks.pending()})


def _task_state(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    return _apply(environ, start_response, ecs_tasks.report, ecs_tasks.UnknownTask)


def _datafile(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    host = (parse_qs(str(environ.get("QUERY_STRING", ""))).get("host") or [""])[0]
    if not host:
        return _reply(start_response, 400, {"error": "host is required"})
    found = rds_data.resolve(host)
    if found is None:
        return _reply(start_response, 404, {"error": f"no DB instance has the endpoint {host}"})
    return _reply(start_response, 200, found)


def _faults(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("REQUEST_METHOD") == "POST":
        try:
            body = _body(environ)
        except ValueError as exc:
            return _reply(start_response, 400, {"error": str(exc)})
        unknown = sorted(set(body) - set(TWIN.faults))
        if unknown:
            return _reply(start_response, 400, {"error": f"unknown faults {unknown}", "known": sorted(TWIN.faults)})
        if not all(isinstance(value, bool) for value in body.values()):
            return _reply(start_response, 400, {"error": "fault values must be true or false"})
        with TWIN.lock:
            TWIN.faults.update(body)
        log.info("faults now %s", TWIN.faults)
    return _reply(start_response, 200, dict(TWIN.faults))


ROUTES: dict[tuple[str, str], Callable[[dict[str, Any], StartResponse], Iterable[bytes]]] = {
    ("GET", "/_sandbox/health"): _health,
    ("POST", "/_sandbox/ecs/report"): _report,
    ("GET", "/_sandbox/ecs/tasks"): _tasks,
    ("POST", "/_sandbox/ecs/task-state"): _task_state,
    ("GET", "/_sandbox/rds/datafile"): _datafile,
    ("GET", "/_sandbox/faults"): _faults,
    ("POST", "/_sandbox/faults"): _faults,
}


def handle(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Serve one `/_sandbox/*` request."""
    if not is_loopback(str(environ.get("REMOTE_ADDR", ""))):
        return _reply(start_response, 403, {"error": "the control API answers loopback clients only"})
    path = str(environ.get("PATH_INFO", "")).rstrip("/")
    method = str(environ.get("REQUEST_METHOD", "GET"))
    route = ROUTES.get((method, path))
    if route is None:
        if any(p == path for _, p in ROUTES):
            return _reply(start_response, 405, {"error": f"{method} not allowed on {path}"})
        return _reply(start_response, 404, {"error": f"no control endpoint {path}"})
    return route(environ, start_response)
