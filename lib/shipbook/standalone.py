"""Standalone runs: the incident and postmortem notebooks executed by the pipeline's runner, outside a release.

`shipbook incident` opens an incident (a new id) and runs `incident.ipynb` into
`runs/<env>/incidents/<id>/`; `--id … --prevention …` re-runs it; `shipbook postmortem` runs
`postmortem.ipynb` into the same directory. The runner (`pipeline.Runner.run_phase`: papermill,
redaction, HTML render, hashes into run.json) is the release's own; the record is sealed in the
incidents ledger, not the release ledger. The incident domain (`shipbook.incident`,
`shipbook.postmortem`) knows nothing of the runner: this module is where they meet.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from shipbook import audit, aws, clock, gitinfo, i18n, places, secretvalues, versions
from shipbook.config import Environment
from shipbook.errors import InputError, PhaseError, PhaseInfraError
from shipbook.incident.model import incident_dir, load_record, new_id
from shipbook.incident.response import prevention_items
from shipbook.phases import NOTEBOOK_DIR, STANDALONE
from shipbook.redact import Redactor


def run_standalone(env: Environment, kind: str, incident_id: str, params: dict[str, Any], *,
                   version: str = "", variant: str = "", runs_root: Path | None = None,
                   notebook_dir: Path = NOTEBOOK_DIR, progress: Any = None,
                   redactor: Redactor | None = None) -> audit.RunRecord:
    """Execute `incident.ipynb` or `postmortem.ipynb` into `runs/<env>/incidents/<id>/` with the runner.

    A `variant` (e.g. the postmortem's language) keeps its own files: `postmortem.en.ipynb`, run
    from a private copy of the notebook under that name.
    """
    from shipbook import runs_index  # nbconvert loads only for a run
    from shipbook.pipeline import Runner  # papermill too

    if kind not in STANDALONE:
        raise InputError("notebook", f"unknown standalone notebook {kind!r} (known: {', '.join(STANDALONE)})")
    runs_root = runs_root or places.runs_root()
    run_dir = incident_dir(env.name, incident_id, runs_root)
    ledger = audit.Ledger(run_dir.parent)
    if (run_dir / audit.RECORD).is_file():
        rec = audit.RunRecord(run_dir, load_record(env.name, incident_id, runs_root))
        rec.data["parameters"].update(params)
    else:
        if kind != "incident":
            raise InputError("INCIDENT", f"no incident {incident_id!r} in {env.name!r}: open it with `make incident`")
        operator = {"git_user": gitinfo.user(), "aws_arn": aws.caller_arn(env)}
        rec = audit.RunRecord(run_dir, {
            "schema": audit.SCHEMA, "kind": "incident", "run_id": incident_id, "env": env.name, "version": version,
            "previous_version": "", "commit": "", "shipbook_version": _shipbook_version(), "operator": operator,
            "parameters": {"dry_run": True, **params}, "status": "running", "started": clock.now_iso(),
            "finished": None, "phases": [], "facts": {}, "previous_record_sha256": ledger.head()})
    phase, notebook = kind, STANDALONE[kind]
    if variant:
        if not re.fullmatch(r"[a-z0-9]{1,16}", variant):
            raise InputError("variant", f"{variant!r}: lower-case letters and digits only")
        phase, notebook = f"{kind}-{variant}", notebook.replace(".ipynb", f".{variant}.ipynb")
    try:
        rec.phase(phase)
    except KeyError:
        rec.add_phase(phase, notebook)
    redactor = redactor or Redactor(secretvalues.collect(env))
    with tempfile.TemporaryDirectory(prefix="shipbook-nb-") as tmp:
        if variant:
            shutil.copy(notebook_dir / STANDALONE[kind], Path(tmp) / notebook)
        runner = Runner(env, redactor, runs_root, Path(tmp) if variant else notebook_dir, progress)
        rec.data.update(status="running", finished=None)
        outcome = runner.run_phase(rec, phase)
    rec.data.update(status="open" if outcome.status == "succeeded" else "failed", finished=clock.now_iso())
    rec.save(redactor)
    ledger.append(rec.run_id, audit.sha256_file(rec.path))
    runs_index.write_index(runs_root, redactor)
    if outcome.status == "failed":
        error_class = PhaseInfraError if outcome.infra else PhaseError
        raise error_class(kind, outcome.cell or "?", outcome.error or "failed", str(run_dir / notebook))
    return rec


def _shipbook_version() -> str:
    from shipbook import __version__

    return __version__


def open_and_run(env: Environment, *, title: str = "", started: str = "", version: str = "", lang: str = "",
                 runs_root: Path | None = None, progress: Any = None, now: clock.Clock | None = None
                 ) -> audit.RunRecord:
    """`shipbook incident`: a new incident id, then the incident notebook executed into its dir.

    The opening time is a parameter of its own, so a re-run keeps it; without `started` the
    notebook finds the onset (`incident.find_start`) instead of taking the opening for the start.
    """
    opened = (now or clock.utcnow)()
    start = clock.parse_time(started, opened) if started else None
    if version:
        versions.parse(version, "--version")
    incident_id = new_id(start or opened)
    params = {"incident_start": clock.iso(start), "incident_opened": clock.iso(opened), "title": title,
              "lang": i18n.resolve_lang(lang, env.lang)}
    return run_standalone(env, "incident", incident_id, params, version=version, runs_root=runs_root,
                          progress=progress)


def converge(env: Environment, incident_id: str, prevention: list[str], *, lang: str = "",
             runs_root: Path | None = None, progress: Any = None) -> audit.RunRecord:
    """`shipbook incident --id ID --prevention …`: re-run the incident notebook of ID now (the verify
    checks of its convergence section, live metrics) with these prevention items added to the record."""
    data = load_record(env.name, incident_id, runs_root or places.runs_root())
    items = prevention_items(str((data.get("parameters") or {}).get("prevention") or ""))
    items += [s for s in prevention_items(prevention) if s not in items]
    params: dict[str, Any] = {"prevention": "\n".join(items)}
    if lang:
        params["lang"] = i18n.resolve_lang(lang, env.lang)
    return run_standalone(env, "incident", incident_id, params, version=data.get("version", ""),
                          runs_root=runs_root, progress=progress)


def write_postmortem(env: Environment, incident_id: str, lang: str = "", *, runs_root: Path | None = None,
                     progress: Any = None) -> audit.RunRecord:
    """`shipbook postmortem INCIDENT`: execute postmortem.ipynb into the incident's dir (in its language)."""
    data = load_record(env.name, incident_id, runs_root)  # a clear error for an unknown id
    lang = i18n.resolve_lang(lang or data.get("facts", {}).get("incident_lang", ""), env.lang)
    return run_standalone(env, "postmortem", incident_id, {"lang": lang}, variant=lang, runs_root=runs_root,
                          progress=progress)
