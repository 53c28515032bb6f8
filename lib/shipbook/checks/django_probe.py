"""Run the Django migration probe (`django_migrations_probe.py`) with the app's own Python on a worktree; its JSON.

The probe is a script, not an import: it needs the app's interpreter, settings and Django version.
Its child process gets placeholder settings values and a scratch SQLite `DATABASE_URL` only.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from shipbook.checks.worktree import child_env, run
from shipbook.config import Environment
from shipbook.errors import InfraError, InputError

# the probe first, then the runtime sample it imports from beside it
SCRIPTS = tuple(Path(__file__).with_name(f"django_migrations_{n}.py") for n in ("probe", "sample"))
_SETTINGS_IN_MANAGE = re.compile(r"""DJANGO_SETTINGS_MODULE["']\s*,\s*["']([\w.]+)["']""")
# Placeholders so the app's settings import; the probe swaps every database for SQLite before connecting.
# Built from pairs: a dict literal keyed SECRET_KEY reads as a hard-coded password to bandit, and it is none.
_PROBE_ENV = dict((("SECRET_KEY", "shipbook-probe-placeholder"), ("ALLOWED_HOSTS", "localhost")))


def settings_module(env: Environment, tree: Path) -> str:
    """`app.settings_module`, else the default manage.py sets."""
    if env.app.settings_module:
        return env.app.settings_module
    manage = tree / "manage.py"
    if not manage.is_file():
        raise InputError("app.repo", "no manage.py at the release commit: not a Django project root")
    found = _SETTINGS_IN_MANAGE.search(manage.read_text(encoding="utf-8", errors="replace"))
    if not found:
        raise InputError("manage.py", "does not set DJANGO_SETTINGS_MODULE; configure [app] settings_module")
    return found.group(1)


def probe(python: str, tree: Path, settings: str, mode: str, timeout: float, previous_json: Path | None = None,
          sizes: tuple[int, ...] = (), sample_budget: float | None = None) -> dict[str, Any]:
    """Run the probe in `tree` and return its JSON; InfraError when it could not read the project.

    The runtime sample may use `sample_budget` seconds (default: half the deadline, so the rest
    of the probe still finishes when a data migration is very slow).

    The scripts are copied out of the package first: run from here, their directory (which holds
    `db.py`, `env.py`…) would come first on the app's sys.path and shadow the app's modules.
    """
    scratch = Path(tempfile.mkdtemp(prefix="shipbook-probe-"))
    try:
        for source in SCRIPTS:
            shutil.copyfile(source, scratch / source.name)
        script = scratch / SCRIPTS[0].name
        out = scratch / "out.json"
        args = [python, str(script), "--project", str(tree), "--settings", settings, "--out", str(out),
                "--mode", mode]
        if previous_json is not None:
            args += ["--previous", str(previous_json)]
        if sizes:
            budget = timeout / 2 if sample_budget is None else sample_budget
            args += ["--sample-rows", ",".join(str(s) for s in sizes), "--sample-budget", f"{budget:g}"]
        extra = {**_PROBE_ENV, "DJANGO_SETTINGS_MODULE": settings,
                 "DATABASE_URL": f"sqlite:///{scratch / 'settings-only.sqlite3'}"}
        ran = run(args, cwd=tree, timeout=timeout, env=child_env(extra))
        if not out.is_file():
            raise InfraError(f"the migration probe wrote nothing (exit {ran.returncode}): {ran.tail(8)}")
        data = json.loads(out.read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not data.get("ok"):
        raise InfraError(f"the migration probe could not load the project: {data.get('error', '?')}")
    return data
