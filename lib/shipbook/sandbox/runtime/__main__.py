"""`python -m shipbook.sandbox.runtime --state-dir DIR --aws-url URL --alb-port P [--app-repo REPO]`."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from shipbook.sandbox.loopback import loopback_url
from shipbook.sandbox.runtime.agent import Agent
from shipbook.sandbox.runtime.proxy import make_proxy
from shipbook.sandbox.runtime.telemetry import LogBuffer, Publisher, Recorder
from shipbook.sandbox.runtime.traffic import Traffic

logger = logging.getLogger("shipbook.sandbox.runtime")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m shipbook.sandbox.runtime", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=Path(".sandbox"))
    parser.add_argument("--aws-url", type=loopback_url, required=True, help="loopback endpoint of the AWS twin")
    parser.add_argument("--alb-port", type=int, required=True, help="port of the ALB stand-in on 127.0.0.1")
    parser.add_argument("--app-repo", type=Path, default=None,
                        help="git repository holding the release tags (default STATE/git/demo-app.git)")
    parser.add_argument("--poll-seconds", type=float, default=0.5, help="ECS agent poll period")
    parser.add_argument("--health-interval", type=float, default=1.0, help="seconds between health checks")
    parser.add_argument("--max-tasks", type=int, default=2, help="cap on tasks per task definition")
    parser.add_argument("--rps", type=float, default=15.0, help="synthetic requests per second (0: none)")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


class Runtime:
    """The agent loop, the proxy, the traffic generator and the publisher, started and stopped together."""

    def __init__(self, args: argparse.Namespace) -> None:
        state_dir = args.state_dir.resolve()
        app_repo = (args.app_repo or state_dir / "git" / "demo-app.git").resolve()
        self.recorder = Recorder()
        self.logs = LogBuffer()
        self.agent = Agent(state_dir, args.aws_url, app_repo=app_repo, max_tasks=args.max_tasks,
                           health_interval=args.health_interval, on_line=self.logs.add)
        self.proxy = make_proxy(args.alb_port, self.agent.targets, self.recorder)
        self.traffic = Traffic(self.proxy.server_address[1], rps=args.rps)
        self.publisher = Publisher(args.aws_url, self.recorder, self.logs, self.agent.running_tasks)
        self.poll_seconds = args.poll_seconds
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self.proxy.serve_forever, kwargs={"poll_interval": 0.2}, name="alb", daemon=True),
            threading.Thread(target=self.traffic.run, name="traffic", daemon=True),
            threading.Thread(target=self.publisher.run, name="publisher", daemon=True),
        ]

    def run(self) -> None:
        for thread in self.threads:
            thread.start()
        logger.info("ALB stand-in on http://127.0.0.1:%s", self.proxy.server_address[1])
        try:
            while not self.stopping.is_set():
                self.agent.poll()
                self.stopping.wait(self.poll_seconds)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        logger.info("runtime stopping")
        self.traffic.stop()
        self.proxy.shutdown()
        self.proxy.server_close()
        self.agent.stop_all()
        self.publisher.stop()
        for thread in self.threads[1:]:
            thread.join(5)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = Runtime(args)

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %s", signum)
        runtime.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runtime.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
