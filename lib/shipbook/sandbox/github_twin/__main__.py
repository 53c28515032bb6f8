"""`python -m shipbook.sandbox.github_twin --port P --state-dir DIR [--aws-url URL] [--repo BARE]`."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import threading
from pathlib import Path
from types import FrameType

from shipbook.sandbox.github_twin.deployer import Deployer
from shipbook.sandbox.github_twin.gitrepo import Repo
from shipbook.sandbox.github_twin.server import GitHubTwin, make_server
from shipbook.sandbox.github_twin.store import Store
from shipbook.sandbox.loopback import loopback_url

logger = logging.getLogger("shipbook.sandbox.github_twin")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m shipbook.sandbox.github_twin", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--state-dir", type=Path, default=Path(".sandbox"))
    parser.add_argument("--aws-url", type=loopback_url, default=None,
                        help="loopback endpoint of the AWS twin used by the deployer (without it, runs cannot deploy)")
    parser.add_argument("--repo", type=Path, default=None, help="bare origin (default STATE/git/demo-app.git)")
    parser.add_argument("--step-seconds", type=float, default=0.5, help="minimum duration of a workflow step")
    parser.add_argument("--stable-timeout", type=float, default=300.0, help="limit of 'Wait for service stability'")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def build_app(args: argparse.Namespace) -> tuple[GitHubTwin, Deployer]:
    """The app and its (not yet started) deployer from parsed arguments."""
    state_dir = args.state_dir.resolve()
    repo = Repo((args.repo or state_dir / "git" / "demo-app.git").resolve())
    store = Store.load(state_dir / "github" / "state.json")
    deployer = Deployer(store, lambda: repo, args.aws_url, state_dir,
                        step_seconds=args.step_seconds, stable_timeout=args.stable_timeout)
    return GitHubTwin(repo, store, deployer), deployer


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app, deployer = build_app(args)
    server = make_server(app, args.port)
    if app.repo.exists():
        app.record_history()
        subprocess.run(["git", "--git-dir", str(app.repo.path), "config", "shipbook.githubUrl",
                        app.shapes.base_url], check=False)
    deployer.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %s: shutting down", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("GitHub twin on %s (repo %s, aws %s)", app.shapes.base_url, app.repo.path, args.aws_url)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        deployer.stop()
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
