"""Command line: argument parsing and printing only; the work is in the modules it calls."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence

from shipbook import __version__, places
from shipbook.errors import EXIT_INFRA, InfraError, InputError, ShipbookError
from shipbook.phases import PHASES

EXIT_CODES = """exit codes:
  0  done
  1  a gate stopped the release (a blocking check, or a phase that failed)
  2  bad input or configuration (nothing was changed)
  3  an infrastructure or internal failure"""

log = logging.getLogger("shipbook")


class ConsoleProgress:
    """Progress on stderr: one line per cell as it starts, one summary line per phase."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def phase_start(self, phase: str, notebook: str) -> None:
        self._say(f"== {phase} ({notebook})")

    def cell(self, phase: str, index: int, total: int, description: str) -> None:
        self._say(f"   {phase} [{index:>2}/{total}] {description}")

    def phase_end(self, phase: str, status: str, verdict: str | None, seconds: float, detail: str) -> None:
        mark = {"succeeded": "OK  ", "blocked": "STOP", "failed": "FAIL"}.get(status, status)
        tail = f" — {detail}" if detail else ""
        self._say(f"{mark} {phase}: {status}, verdict {verdict or '-'}, {seconds:.1f}s{tail}")

    def output(self, phase: str, line: str) -> None:
        self._say(f"   {phase} │ {line}")


def _env_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default=os.environ.get("SHIPBOOK_ENV", "sandbox"),
                   help="environment name: environments/<env>.toml (default: sandbox)")


def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE with KEY a Python identifier")
    return key, value


def _release_args(p: argparse.ArgumentParser, only: bool = True) -> None:
    p.add_argument("version", help="the release version tag, e.g. v1.0.0")
    _env_arg(p)
    p.add_argument("--dry-run", action="store_true", help="plan only: mutating steps stop after their plan")
    if only:
        p.add_argument("--only", choices=list(PHASES), help="run just this phase")
    p.add_argument("--resume", metavar="RUN_ID", help="continue RUN_ID from its first phase that did not succeed")
    p.add_argument("-p", "--param", type=_param, action="append", default=[], metavar="KEY=VALUE",
                   help="an extra notebook parameter (e.g. signoffs=code.review=alice); never a secret")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shipbook", description="Release runbooks for a Django app on AWS, run as Jupyter notebooks.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"shipbook {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("release", help="run the release phases in order, gate by gate",
                       epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _release_args(p)
    for phase in PHASES:
        p = sub.add_parser(phase, help=f"run only the {phase} phase of VERSION (a new run, with the facts of the "
                           "version's last run)")
        _release_args(p, only=False)
        if phase == "rollback":
            p.add_argument("--previous-version", default="", help="roll back to this release (default: the last "
                           "run's previous version)")
            p.add_argument("--snapshot", default="", help="the pre-deploy snapshot (default: the last run's)")
            p.add_argument("--confirm-db-restore", action="store_true",
                           help="allow restoring the database from the snapshot (loses data written since)")
            p.add_argument("--db-action", default="auto", choices=("auto", "reverse", "restore", "none"),
                           help="the database step: auto (reverse the release's migrations when all reverse, "
                           "else restore), reverse, restore (needs --confirm-db-restore), none (leave it)")

    p = sub.add_parser("runs", help="list runs: env, version, status, started, operator, duration")
    p.add_argument("--env", default=None, help="only this environment")
    p = sub.add_parser("audit", help="verify the audit trail: hash chain, changed/missing/unexpected files")
    p.add_argument("--env", default=None, help="only this environment")
    p = sub.add_parser("unlock", help="remove an environment's release lock (asks for confirmation)")
    _env_arg(p)
    p.add_argument("--yes", action="store_true", help="do not ask")

    p = sub.add_parser("lab", help="JupyterLab at the project root (notebooks/, runs/) with the library importable "
                       "and the env's endpoints; loopback only, a new token each start")
    _env_arg(p)
    p.add_argument("--port", type=_port, default=8888, help="the port on 127.0.0.1 (default 8888; taken: an error)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser; the URL is printed either way")
    p = sub.add_parser("incident", help="open an incident: the incident notebook into runs/<env>/incidents/<id>/")
    _env_arg(p)
    p.add_argument("--title", default="", help="a short title")
    p.add_argument("--start", default="", help="when it started (ISO 8601; default now)")
    p.add_argument("--version", dest="suspect", default="", help="the suspected version, e.g. v1.0.0")
    p.add_argument("--lang", choices=["ja", "en"], default="", help="report language (default: the environment's)")
    p.add_argument("--id", dest="incident_id", default="",
                   help="an open incident: re-run its notebook now (convergence checks, live metrics)")
    p.add_argument("--prevention", action="append", default=[], metavar="TEXT",
                   help="with --id: a prevention item (再発防止策) to record; repeat for several")
    p = sub.add_parser("status-report", help="print a status report of an incident and append it to its record")
    p.add_argument("incident", help="the incident id")
    _env_arg(p)
    p.add_argument("--lang", choices=["ja", "en"], default="")
    p.add_argument("--impact", default="", help="影響範囲 / impact (default: measured)")
    p.add_argument("--status", default="", help="現在の状況 / current status (default: measured)")
    p.add_argument("--eta", default="", help="対応予定時間 / expected resolution")
    p.add_argument("--next-update", type=int, default=30, metavar="MINUTES", help="次回の更新予定 in minutes")
    p = sub.add_parser("postmortem", help="write the postmortem of an incident (timeline, impact, SRE sections)")
    p.add_argument("incident", help="the incident id")
    _env_arg(p)
    p.add_argument("--lang", choices=["ja", "en"], default="")
    p = sub.add_parser("notes", help="draft VERSION's release notes from the conventional commits since the "
                       "previous tag")
    p.add_argument("version", help="the release version, e.g. v1.1.0")
    _env_arg(p)
    p.add_argument("--previous", default="", help="previous release tag (default: the greatest lower tag)")
    p.add_argument("--force", action="store_true", help="also replace a section that is already final")
    p = sub.add_parser("feedback", help="record a problem or an improvement against a release")
    p.add_argument("version")
    p.add_argument("text", nargs="?", default="", help="the feedback (omit with --close)")
    _env_arg(p)
    p.add_argument("--kind", choices=["problem", "improvement"], default="problem")
    p.add_argument("--author", default="")
    p.add_argument("--close", metavar="ID", help="close item ID (text = the resolution)")

    p = sub.add_parser("sandbox", help="the local twin of production: up, down, status, reset, scenarios")
    p.add_argument("action", choices=["up", "down", "status", "reset", "scenarios"])
    p.add_argument("--scenario", default=None, help="with up/reset: the fault to inject (see `scenarios`)")
    return parser


def _cmd_release(args: argparse.Namespace, only: str | None) -> int:
    from shipbook import release
    from shipbook.pipeline import RunOptions
    from shipbook.versions import parse

    parse(args.version)  # before anything else, even before the sandbox starts
    env = _load_env(args.env)
    params: dict = dict(args.param)
    if getattr(args, "snapshot", ""):
        params["snapshot_id"] = args.snapshot
    if getattr(args, "confirm_db_restore", False):
        params["confirm_db_restore"] = True
    if getattr(args, "db_action", "auto") != "auto":
        params["db_action"] = args.db_action
    if os.environ.get("SECURITY_ISSUE"):  # a person declares a serious security problem (make … SECURITY_ISSUE=…)
        params["security_issue"] = os.environ["SECURITY_ISSUE"]
    opts = RunOptions(version=args.version, dry_run=args.dry_run, only=only, resume=args.resume, params=params,
                      previous_version=getattr(args, "previous_version", "") or "")
    if opts.previous_version:
        parse(opts.previous_version, "PREVIOUS_VERSION")
    rec = release.run(env, opts, ConsoleProgress())
    print(f"{rec.data['version']} on {rec.data['env']}: {rec.data['status']} — run {rec.run_id}, "
          f"{rec.dir} (index: {rec.dir.parents[2] / 'index.html'})")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from shipbook import audit

    rows = audit.list_runs(places.runs_root(), args.env)
    if not rows:
        print("no runs yet")
        return 0
    cols = ["env", "version", "run_id", "status", "started", "operator", "duration"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.upper().ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from shipbook import audit, trail
    from shipbook.errors import AuditError

    problems = trail.verify(places.runs_root(), args.env)
    for prob in problems:
        print(f"AUDIT: {prob}")
    if problems:
        raise AuditError(problems)
    print(f"audit: {len(audit.list_runs(places.runs_root(), args.env))} run(s), chain and files verified")
    return 0


def _cmd_unlock(args: argparse.Namespace) -> int:
    from shipbook import config, lock

    env = config.load(args.env)
    rl = lock.ReleaseLock(env)
    held = rl.holder()
    if held is None:
        print(f"{args.env}: not locked")
        return 0
    if not args.yes:
        answer = input(f"{args.env} is locked by {held.owner} (run {held.run_id}). Remove the lock? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise InputError("unlock", "not confirmed; the lock is kept")
    rl.force_release()
    print(f"{args.env}: lock of run {held.run_id} removed")
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a port number (1-65535)")
    return port


def _cmd_lab(args: argparse.Namespace) -> int:
    from shipbook import lab

    env = _load_env(args.env)
    server = lab.Lab(args.port, env.process_env(), open_browser=not args.no_browser,
                     log_level="INFO" if args.verbose else "WARN")
    if server.as_root:
        print("shipbook: running as root: JupyterLab is started with --allow-root", file=sys.stderr, flush=True)
    with lab.stop_signals():
        try:
            server.start()
            print(f"JupyterLab: {server.url}", flush=True)
            print(f"  root {server.root} (notebooks/, runs/), env {env.name}; Ctrl-C stops it", flush=True)
            code = server.wait()
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP: the ordinary end of a lab
            code = 0
        finally:  # however it ends, the server (and with it its kernels) is stopped
            with lab.shielded():
                server.stop()
    if code:
        raise InfraError(f"JupyterLab stopped (exit {code}): {server.why()}")
    print("JupyterLab stopped", flush=True)
    return 0


def _load_env(name: str):
    """The environment, with the sandbox started first when it is the sandbox."""
    from shipbook import config

    env = config.load(name, resolve=False)
    if env.is_sandbox:
        from shipbook.sandbox import lifecycle  # the CLI, not the release path, starts the twin

        lifecycle.ensure_up(progress=lambda m: print(m, file=sys.stderr, flush=True))
    return config.load(name)


def _cmd_incident(args: argparse.Namespace) -> int:
    from shipbook import standalone

    if args.prevention and not args.incident_id:
        raise InputError("--prevention", "needs --id INCIDENT: prevention items belong to an open incident")
    if args.incident_id:
        if args.title or args.start or args.suspect:
            raise InputError("--id", "re-runs an existing incident: --title, --start and --version are its own")
        rec = standalone.converge(_load_env(args.env), args.incident_id, args.prevention, lang=args.lang,
                                  progress=ConsoleProgress())
        items = rec.data.get("facts", {}).get("prevention_items", [])
        print(f"incident {rec.run_id} re-run: {rec.dir} ({len(items)} prevention item(s) recorded)")
        return 0
    rec = standalone.open_and_run(_load_env(args.env), title=args.title, started=args.start, version=args.suspect,
                                  lang=args.lang, progress=ConsoleProgress())
    print(f"incident {rec.run_id} opened: {rec.dir}")
    print(f"  status report: shipbook status-report {rec.run_id} --lang ja   "
          f"postmortem: make postmortem INCIDENT={rec.run_id}")
    return 0


def _cmd_status_report(args: argparse.Namespace) -> int:
    from shipbook import incident

    report = incident.status_report(_load_env(args.env), args.incident, args.lang, impact=args.impact,
                                    current=args.status, eta=args.eta, next_update_minutes=args.next_update)
    print(report.text())
    return 0


def _cmd_postmortem(args: argparse.Namespace) -> int:
    from shipbook import standalone

    rec = standalone.write_postmortem(_load_env(args.env), args.incident, args.lang, progress=ConsoleProgress())
    print(f"postmortem of {args.incident} written: {rec.dir}")
    return 0


def _cmd_notes(args: argparse.Namespace) -> int:
    from shipbook import notes
    from shipbook.versions import parse

    parse(args.version)
    print(notes.draft_into_file(_load_env(args.env), args.version, previous=args.previous, force=args.force).message())
    return 0


def _cmd_feedback(args: argparse.Namespace) -> int:
    from shipbook import config, feedback
    from shipbook.versions import parse

    parse(args.version)
    env = config.load(args.env, resolve=False)  # feedback is local to runs/: no endpoints needed
    if args.close:
        item = feedback.close(env, args.version, args.close, args.text, args.author)
        print(f"{args.version}: {item.id} closed")
    else:
        if not args.text.strip():
            raise InputError("text", "is empty: say what the problem or the improvement is")
        item = feedback.add(env, args.version, args.text, args.kind, args.author)
        print(f"{args.version}: {item.id} recorded ({item.kind})")
    return 0


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from shipbook.sandbox import lifecycle

    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.action == "up":
        lifecycle.ensure_up(scenario=args.scenario, progress=say)
    elif args.action == "down":
        lifecycle.down(progress=say)
    elif args.action == "reset":
        lifecycle.reset(scenario=args.scenario, progress=say)
    elif args.action == "status":
        print(lifecycle.status_text())
    else:
        print(lifecycle.scenarios_text())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "release":
            return _cmd_release(args, args.only)
        if args.command in PHASES:
            return _cmd_release(args, args.command)
        return {"runs": _cmd_runs, "audit": _cmd_audit, "unlock": _cmd_unlock, "lab": _cmd_lab,
                "incident": _cmd_incident, "postmortem": _cmd_postmortem, "status-report": _cmd_status_report,
                "feedback": _cmd_feedback, "notes": _cmd_notes,
                "sandbox": _cmd_sandbox}[args.command](args)
    except ShipbookError as exc:
        print(f"shipbook: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("shipbook: interrupted; the run is recorded as failed and the lock released", file=sys.stderr)
        return 130
    except Exception as exc:
        log.debug("internal error", exc_info=True)
        print(f"shipbook: internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)",
              file=sys.stderr)
        return EXIT_INFRA

