"""Read a Django project's migrations with Django's own loader; write what a release changes as JSON.

shipbook runs this file with the *app's* Python in a clean worktree of a commit (copied to a
temporary directory first with `django_migrations_sample.py`, the runtime sample, beside it, so
nothing of shipbook is importable from it):

    python django_migrations_probe.py --project DIR --settings demo.settings --out OUT.json
        [--mode graph|full] [--previous PREV.json] [--sample-rows 1000,5000]

Why a separate process with the app's interpreter: the migration graph is defined by the app's
code, settings and Django version, which are not shipbook's. Standard library and Django only.

`graph` mode writes the migration graph (nodes, leaves, files, squashes). `full` mode adds, for
the migrations that are not in `--previous` (the graph of the previous release): conflicts,
missing dependencies, `makemigrations --check --dry-run`, each operation with its reversibility
and whether it breaks the previous release's code, the backwards plan to the previous leaves,
and a runtime sample: the new migrations applied one by one to a SQLite database whose affected
tables hold a known number of synthetic rows, at each sample size, then rolled back.

Safety: before Django connects anywhere, every database alias of the settings is replaced by a
throwaway SQLite file. The probe never opens the app's real database.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

# Operations that change what the previous release's code can read or write (a code-only rollback
# leaves it running on the new schema). Judged per operation in `_breaks_previous`.
_SCHEMA_READERS = ("RemoveField", "RenameField", "DeleteModel", "RenameModel", "AlterModelTable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--project", required=True, help="the directory holding manage.py")
    parser.add_argument("--settings", required=True, help="the settings module, e.g. demo.settings")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--mode", choices=("graph", "full"), default="full")
    parser.add_argument("--previous", default="", help="the graph JSON of the previous release")
    parser.add_argument("--sample-rows", default="", help="comma-separated sample sizes for the runtime sample")
    parser.add_argument("--sample-budget", type=float, default=0.0,
                        help="seconds the runtime sample may take; later migrations are not run after it")
    args = parser.parse_args(argv)
    project = Path(args.project).resolve()
    out_path = Path(args.out).resolve()
    previous_path = Path(args.previous).resolve() if args.previous else None
    sys.path.insert(0, str(project))
    os.chdir(project)
    os.environ["DJANGO_SETTINGS_MODULE"] = args.settings
    result: dict[str, Any] = {"ok": False, "mode": args.mode, "settings": args.settings,
                              "python": sys.version.split()[0]}
    scratch = Path(tempfile.mkdtemp(prefix="shipbook-probe-"))
    try:
        _setup_django(scratch)
        import django

        result["django"] = django.get_version()
        result.update(graph_info())
        if args.mode == "full" and result.get("graph") is not None:  # a broken graph is the finding itself
            previous = json.loads(previous_path.read_text(encoding="utf-8")) if previous_path else {}
            sizes = [int(s) for s in args.sample_rows.split(",") if s.strip()]
            result.update(full_info(previous, sizes, scratch, args.sample_budget))
        result["ok"] = True
    except Exception as exc:  # noqa: BLE001 — the probe's top level: any failure of the app's code is reported as data
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()[-4000:]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out_path.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return 0 if result["ok"] else 1


def _setup_django(scratch: Path) -> None:
    """Import the settings, replace every database by a scratch SQLite file, then set Django up."""
    from django.conf import settings

    aliases = list(getattr(settings, "DATABASES", {}) or {"default": {}})
    settings.DATABASES = {alias: {"ENGINE": "django.db.backends.sqlite3", "NAME": str(scratch / f"{alias}.sqlite3")}
                          for alias in aliases}
    settings.DATABASE_ROUTERS = []
    import django

    django.setup()


def _key(node: tuple[str, str]) -> str:
    return f"{node[0]}.{node[1]}"


def _migration_file(migration: Any) -> str:
    module = sys.modules.get(type(migration).__module__)
    path = getattr(module, "__file__", "") or ""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


# --------------------------------------------------------------------------- the graph


def graph_info() -> dict[str, Any]:
    """Nodes, leaves, files and squashes of the graph; missing dependencies; conflicts."""
    from django.db.migrations.exceptions import NodeNotFoundError
    from django.db.migrations.loader import MigrationLoader

    missing = missing_dependencies()
    try:
        loader = MigrationLoader(None, ignore_no_migrations=True)
    except NodeNotFoundError as exc:
        return {"graph": None, "missing": missing or [str(exc)], "conflicts": {}}
    graph = loader.graph
    nodes = sorted(graph.nodes)
    leaves: dict[str, list[str]] = {}
    for app, name in graph.leaf_nodes():
        leaves.setdefault(app, []).append(name)
    squashed = {_key(n): [_key(tuple(r)) for r in graph.nodes[n].replaces]
                for n in nodes if getattr(graph.nodes[n], "replaces", None)}
    return {
        "graph": {
            "nodes": [_key(n) for n in nodes],
            "leaves": {app: sorted(names) for app, names in sorted(leaves.items())},
            "files": {_key(n): _migration_file(graph.nodes[n]) for n in nodes},
            "squashed": squashed,
            "order": [_key(n) for n in forwards_order(graph)],
        },
        "missing": missing,
        "conflicts": {app: sorted(names) for app, names in loader.detect_conflicts().items()},
    }


def forwards_order(graph: Any) -> list[tuple[str, str]]:
    """Every node in an order Django could apply them (dependencies first), stable across runs."""
    seen: set[tuple[str, str]] = set()
    order: list[tuple[str, str]] = []
    for leaf in sorted(graph.leaf_nodes()):
        for node in graph.forwards_plan(leaf):
            if node not in seen:
                seen.add(node)
                order.append(node)
    return order


def missing_dependencies() -> list[str]:
    """Dependencies naming a migration that exists nowhere (the loader would stop at the first)."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True, load=False)
    loader.load_disk()
    disk = loader.disk_migrations
    replaced = {tuple(r) for m in disk.values() for r in (getattr(m, "replaces", None) or [])}
    apps = {app for app, _ in disk}
    out = []
    for (app, name), migration in sorted(disk.items()):
        for dep_app, dep_name in migration.dependencies:
            if dep_name in ("__first__", "__latest__"):
                if dep_app not in apps and dep_app not in loader.unmigrated_apps:
                    out.append(f"{app}.{name} depends on app {dep_app!r}, which has no migrations")
                continue
            if (dep_app, dep_name) not in disk and (dep_app, dep_name) not in replaced \
                    and dep_app not in loader.unmigrated_apps:
                out.append(f"{app}.{name} depends on {dep_app}.{dep_name}, which does not exist")
    return out


# --------------------------------------------------------------------------- the release's migrations


def full_info(previous: dict[str, Any], sizes: list[int], scratch: Path, budget: float = 0.0) -> dict[str, Any]:
    from django.db.migrations.loader import MigrationLoader

    out: dict[str, Any] = {"makemigrations": makemigrations_check()}
    loader = MigrationLoader(None, ignore_no_migrations=True)
    prev_graph = (previous or {}).get("graph") or {}
    prev_nodes = set(prev_graph.get("nodes", []))
    for replaced in prev_graph.get("squashed", {}).values():
        prev_nodes.update(replaced)
    order = forwards_order(loader.graph)
    new = []
    for node in order:
        migration = loader.graph.nodes[node]
        replaces = {_key(tuple(r)) for r in getattr(migration, "replaces", None) or []}
        if _key(node) in prev_nodes or (replaces and replaces <= prev_nodes):
            continue
        new.append(node)
    out["new"] = [_key(n) for n in new]
    out["migrations"] = [describe_migration(loader, node) for node in new]
    targets = previous_targets(loader, prev_graph, new)
    out["targets"] = {app: name for app, name in targets}
    out["backwards_plan"] = backwards_plan(loader, targets)
    if sizes and new:
        from django_migrations_sample import sample  # the sibling script, copied beside this one

        out["sample"] = sample(targets, new, sizes, scratch, budget, tables=_sample_tables)
    else:
        out["sample"] = None
    return out


def makemigrations_check() -> dict[str, Any]:
    """`makemigrations --check --dry-run`: models changed without a migration."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    buf = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", "--noinput", verbosity=1, stdout=buf, stderr=buf)
        clean, error = True, ""
    except SystemExit as exc:
        clean, error = exc.code in (0, None), ""
    except CommandError as exc:
        clean, error = False, str(exc)
    return {"clean": clean, "output": buf.getvalue()[-3000:], "error": error}


def previous_targets(loader: Any, prev_graph: dict[str, Any], new: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Per app with new migrations: the previous release's leaf there, or 'zero' for a new app."""
    prev_leaves = prev_graph.get("leaves", {})
    apps = list(dict.fromkeys(app for app, _ in new))
    out = []
    for app in apps:
        names = prev_leaves.get(app) or []
        name = names[-1] if names else "zero"
        if name != "zero" and (app, name) not in loader.graph.nodes:
            # squashed since: the squash that replaces it stands for it
            for node, migration in loader.graph.nodes.items():
                if [app, name] in [list(r) for r in getattr(migration, "replaces", None) or []]:
                    name = node[1]
                    break
        out.append((app, name))
    return out


def describe_migration(loader: Any, node: tuple[str, str]) -> dict[str, Any]:
    """One new migration: file, dependencies, and each operation judged (see `describe_operation`)."""
    app, _name = node
    migration = loader.graph.nodes[node]
    state = loader.project_state(node, at_end=False)
    ops = []
    for op in migration.operations:
        before = state.clone()
        op.state_forwards(app, state)
        ops.append(describe_operation(app, op, before, state))
    return {
        "key": _key(node), "app": app, "name": node[1], "file": _migration_file(migration),
        "dependencies": [_key(tuple(d)) for d in migration.dependencies],
        "atomic": bool(getattr(migration, "atomic", True)), "initial": bool(getattr(migration, "initial", False)),
        "operations": ops, "reversible": all(o["reversible"] for o in ops),
        "breaks_previous": [o["breaks_previous"] for o in ops if o["breaks_previous"]],
        "tables": sorted({t for o in ops for t in o["tables"]}),
    }


def describe_operation(app: str, op: Any, before: Any, after: Any) -> dict[str, Any]:
    kind = type(op).__name__
    inner = list(getattr(op, "database_operations", []) or [])  # SeparateDatabaseAndState
    reversible = bool(getattr(op, "reversible", True)) and all(bool(getattr(o, "reversible", True)) for o in inner)
    note = ""
    if kind == "RunPython" and getattr(op, "reverse_code", None) is None:
        note = "RunPython without reverse_code: cannot be unapplied"
    elif kind == "RunSQL" and getattr(op, "reverse_sql", None) is None:
        note = "RunSQL without reverse_sql: cannot be unapplied"
    elif not reversible:
        note = f"{kind} is irreversible"
    elif kind in ("AddField", "CreateModel"):
        note = "reverse drops what it added (data written since is lost)"
    elif kind in ("RemoveField", "DeleteModel"):
        note = "reverse recreates it empty (the dropped data is not restored)"
    if kind == "RunPython":
        reverse = getattr(op.reverse_code, "__name__", "?") if getattr(op, "reverse_code", None) else "none"
        describe = f"RunPython {getattr(op.code, '__name__', '?')} (reverse: {reverse})"
    elif kind == "RunSQL":
        describe = f"RunSQL {_sql_head(op.sql)} (reverse: {'given' if op.reverse_sql is not None else 'none'})"
    else:
        try:
            describe = op.describe()
        except Exception:  # noqa: BLE001 — a third-party operation without a working describe()
            describe = kind
    return {"type": kind, "describe": describe, "reversible": reversible, "reverse_note": note,
            "breaks_previous": _breaks_previous(app, op, kind, before, after),
            "tables": _tables(app, op, kind, before, after)}


def _sql_head(sql: Any) -> str:
    text = sql if isinstance(sql, str) else "; ".join(str(x[0] if isinstance(x, list | tuple) else x) for x in sql)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:59] + "…"


def _model_state(state: Any, app: str, name: str | None) -> Any:
    return state.models.get((app, (name or "").lower())) if name else None


def _table(app: str, model_state: Any) -> str:
    if model_state is None:
        return ""
    return model_state.options.get("db_table") or f"{app}_{model_state.name.lower()}"


def _column(name: str, field: Any) -> str:
    if getattr(field, "db_column", None):
        return field.db_column
    if getattr(field, "many_to_one", False) or getattr(field, "one_to_one", False):
        return f"{name}_id"
    return name


def _tables(app: str, op: Any, kind: str, before: Any, after: Any) -> list[str]:
    """The tables an operation touches; for RunPython/RunSQL (opaque code) every table of the app."""
    if kind in ("RunPython", "RunSQL"):
        return sorted({_table(a, m) for (a, _), m in before.models.items() if a == app and _managed(m)})
    if kind == "RenameModel":
        names = {op.old_name, op.new_name}
    elif getattr(op, "model_name", None):  # field, index and constraint operations
        names = {op.model_name}
    else:  # model operations: CreateModel, DeleteModel, AlterModelTable, AlterUniqueTogether, …
        names = {getattr(op, "name", None)}
    out = set()
    for name in filter(None, names):
        for state in (before, after):
            model = _model_state(state, app, name)
            if model is not None and _managed(model):
                out.add(_table(app, model))
    return sorted(out)


def _managed(model_state: Any) -> bool:
    return model_state.options.get("managed", True) and not model_state.options.get("proxy", False)


def _breaks_previous(app: str, op: Any, kind: str, before: Any, after: Any) -> str:
    """Why the previous release's code breaks on the schema after `op` ('' when it does not)."""
    model_name = getattr(op, "model_name", None)
    if kind == "RemoveField":
        model = _model_state(before, app, model_name)
        if model is not None and _managed(model):
            return f"{model.name}.{op.name} is dropped: the previous code still reads and writes it"
    elif kind == "RenameField":
        old_model, new_model = _model_state(before, app, model_name), _model_state(after, app, model_name)
        if old_model is not None and new_model is not None and _managed(old_model):
            old_col = _column(op.old_name, old_model.fields[op.old_name])
            new_col = _column(op.new_name, new_model.fields[op.new_name])
            if old_col != new_col:
                return f"column {old_col} of {old_model.name} becomes {new_col}: the previous code uses {old_col}"
    elif kind == "DeleteModel":
        model = _model_state(before, app, op.name)
        if model is not None and _managed(model):
            return f"table {_table(app, model)} is dropped: the previous code still uses {model.name}"
    elif kind in ("RenameModel", "AlterModelTable"):
        old_name = op.old_name if kind == "RenameModel" else op.name
        new_name = op.new_name if kind == "RenameModel" else op.name
        old, new = _model_state(before, app, old_name), _model_state(after, app, new_name)
        if old is not None and new is not None and _managed(old) and _table(app, old) != _table(app, new):
            return f"table {_table(app, old)} becomes {_table(app, new)}: the previous code uses the old name"
    elif kind == "AlterField":
        old_model, new_model = _model_state(before, app, model_name), _model_state(after, app, model_name)
        if old_model is not None and new_model is not None and _managed(old_model):
            old, new = old_model.fields.get(op.name), new_model.fields.get(op.name)
            if old is not None and new is not None:
                if _column(op.name, old) != _column(op.name, new):
                    return (f"column {_column(op.name, old)} of {old_model.name} becomes {_column(op.name, new)}: "
                            "the previous code uses the old name")
                if old.null and not new.null and not _has_db_default(new):
                    return (f"{old_model.name}.{op.name} becomes NOT NULL without a database default: the "
                            "previous code may still write NULL there")
    elif kind == "AddField":
        field = op.field
        model = _model_state(after, app, model_name)
        concrete = not getattr(field, "many_to_many", False) and getattr(field, "concrete", True)
        if model is not None and _managed(model) and concrete and not field.null and not _has_db_default(field):
            return (f"{model.name}.{op.name} is added NOT NULL without a database default: the previous code's "
                    "inserts leave it out and fail")
    elif kind == "RunSQL":
        return ""
    return ""


def _has_db_default(field: Any) -> bool:
    from django.db.models.fields import NOT_PROVIDED

    return getattr(field, "db_default", NOT_PROVIDED) is not NOT_PROVIDED


def backwards_plan(loader: Any, targets: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The migrations `migrate <app> <target>` would unapply, in order, from the full release state."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.loader.applied_migrations = dict(executor.loader.graph.nodes)
    steps: list[dict[str, Any]] = []
    seen: set[str] = set()
    for app, name in targets:
        plan = executor.migration_plan([(app, None if name == "zero" else name)])
        for migration, backwards in plan:
            key = f"{migration.app_label}.{migration.name}"
            if not backwards or key in seen:
                continue
            seen.add(key)
            irreversible = [type(op).__name__ for op in migration.operations if not getattr(op, "reversible", True)]
            steps.append({"key": key, "target": f"{app} {name}", "reversible": not irreversible,
                          "irreversible_operations": irreversible})
    return steps


# --------------------------------------------------------------------------- the runtime sample (its own file)


def _sample_tables(state: Any, migration: Any) -> list[str]:
    """The tables `migration` touches, from `state` on: the sample counts their rows before it runs."""
    tables: set[str] = set()
    current = state
    for op in migration.operations:
        after = current.clone()
        op.state_forwards(migration.app_label, after)
        tables.update(_tables(migration.app_label, op, type(op).__name__, current, after))
        current = after
    return sorted(tables)


if __name__ == "__main__":
    raise SystemExit(main())
