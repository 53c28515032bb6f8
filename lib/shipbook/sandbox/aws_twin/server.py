"""The AWS twin process: moto's server app, the emulator extensions, the control API.

`python -m shipbook.sandbox.aws_twin --port P --state-dir DIR [--host 127.0.0.1]`

One process holds every backend, so state written through one client is what every other
client reads. Requests to moto run one at a time under `TWIN.lock` (moto's backends are not
thread-safe, and the ticker mutates them too); `/_sandbox/*` is served by `control`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

from shipbook.sandbox.loopback import is_loopback

MOTO_VERSION = "5.2.5"
PREWARM = ("cloudformation", "ec2", "elbv2", "ecs", "ecr", "rds", "cloudwatch", "sns", "logs",
           "applicationautoscaling", "iam", "dynamodb", "s3", "secretsmanager", "sts")

log = logging.getLogger(__name__)


class TwinApp:
    """WSGI: `/_sandbox/*` to the control API, everything else to moto under the twin's lock."""

    def __init__(self, moto_app: Callable[..., Iterable[bytes]]) -> None:
        self.moto_app = moto_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from . import control
        from .state import TWIN

        if str(environ.get("PATH_INFO", "")).startswith("/_sandbox/"):
            return control.handle(environ, start_response)
        with TWIN.lock:
            result = self.moto_app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return [body]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m shipbook.sandbox.aws_twin", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--state-dir", type=Path, required=True, help="sandbox state directory (outbox.jsonl)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--log-level", default=os.environ.get("SHIPBOOK_TWIN_LOG_LEVEL", "INFO"))
    parser.add_argument("--ecs-failed-task-threshold", type=int, default=None,
                        help="failed-task reports that trip the deployment circuit breaker (default 3)")
    parser.add_argument("--snapshot-seconds", type=float, default=None,
                        help="time an RDS snapshot takes to become available (default 3)")
    return parser.parse_args(argv)


def install_extensions() -> None:
    """Teach moto what it lacks (each module patches one area; order does not matter)."""
    from . import (
        cfn_events,
        cfn_fixes,
        cfn_models,
        cw_alarms,
        cw_percentiles,
        ecs_rollout,
        ecs_tasks,
        elb_targets,
        iam_simulate,
        rds_data,
        rds_snapshots,
        sns_outbox,
    )

    for module in (cfn_models, cfn_fixes, cfn_events, ecs_rollout, ecs_tasks, rds_snapshots, rds_data, cw_percentiles,
                   cw_alarms, sns_outbox, iam_simulate, elb_targets):
        module.install()


def build_app() -> TwinApp:
    """moto's domain dispatcher with the backends the release code uses created up front."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    dispatcher = DomainDispatcherApplication(create_backend_app)
    for service in PREWARM:
        dispatcher.app_instances[service] = create_backend_app(service)
    return TwinApp(dispatcher)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the twin until SIGTERM/SIGINT."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if not is_loopback(args.host, resolve=True):
        log.error("refusing to listen on %s: the AWS twin serves loopback only", args.host)
        return 2
    installed = version("moto")
    if installed != MOTO_VERSION:
        log.error("moto %s is installed; the twin's extensions target moto==%s", installed, MOTO_VERSION)
        return 2
    started = time.monotonic()
    # jsonschema (imported by moto's API Gateway, which CloudFormation loads) builds an RFC 3987
    # grammar at import when rfc3987_syntax is installed: 1-2 s of startup for a format check
    # the twin never uses. Without the module jsonschema simply skips that format.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    os.environ.setdefault("MOTO_PORT", str(args.port))
    os.environ.setdefault("AWS_DEFAULT_REGION", "ap-northeast-1")

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    from . import ticker
    from .state import TWIN

    TWIN.state_dir = args.state_dir.resolve()
    TWIN.state_dir.mkdir(parents=True, exist_ok=True)
    if args.ecs_failed_task_threshold is not None:
        TWIN.settings.ecs_failed_task_threshold = max(args.ecs_failed_task_threshold, 1)
    if args.snapshot_seconds is not None:
        TWIN.settings.snapshot_seconds = max(args.snapshot_seconds, 0.0)
    install_extensions()
    app = build_app()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    stop_ticker = ticker.start()
    TWIN.ready.set()
    log.info("AWS twin ready on http://%s:%d in %.2f s (moto %s, state %s)", args.host, args.port,
             time.monotonic() - started, installed, TWIN.state_dir)
    try:
        server.serve_forever()
    finally:
        stop_ticker.set()
        server.server_close()
        log.info("AWS twin stopped")
    return 0
