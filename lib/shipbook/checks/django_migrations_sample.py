"""The probe's runtime sample: the new migrations timed on SQLite databases holding synthetic rows.

Part of `django_migrations_probe.py` (copied beside it and imported by it, in the app's Python):
each new migration is applied alone to a SQLite database whose tables in the changed apps hold a
known number of synthetic rows, at each sample size, then the last sample is rolled back. Why
synthetic rows we make ourselves: the app's real data is never read, and no fixture library can be
assumed in the app's environment. Standard library and Django only.
"""

from __future__ import annotations

import datetime
import decimal
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

Tables = Callable[[Any, Any], list[str]]  # (project state, migration) -> the tables it touches


def _key(node: tuple[str, str]) -> str:
    return f"{node[0]}.{node[1]}"


def sample(targets: list[tuple[str, str]], new: list[tuple[str, str]], sizes: list[int], scratch: Path,
           budget: float = 0.0, *, tables: Tables) -> dict[str, Any]:
    """Apply the new migrations one by one on SQLite samples of each size; time each; roll back the last.

    With a `budget` (seconds), no migration starts after it is spent: those are reported as not run,
    so one very slow data migration cannot take the whole probe past its deadline. `tables(state,
    migration)`: the tables a migration touches, whose rows are counted before it runs.
    """
    deadline = time.monotonic() + budget if budget > 0 else None
    ordered = sorted(set(sizes))
    runs = [_sample_run(targets, new, size, scratch / f"sample-{size}.sqlite3", i == len(ordered) - 1, tables,
                        deadline, budget) for i, size in enumerate(ordered)]
    return {"engine": "sqlite", "sizes": ordered, "runs": runs, "budget": budget}


def _use_database(path: Path) -> Any:
    from django.db import connections

    conn = connections["default"]
    conn.close()
    conn.settings_dict["NAME"] = str(path)
    return conn


def _sample_run(targets: list[tuple[str, str]], new: list[tuple[str, str]], size: int, path: Path,
                rehearse_rollback: bool, tables: Tables, deadline: float | None = None,
                budget: float = 0.0) -> dict[str, Any]:
    from django.db.migrations.executor import MigrationExecutor

    conn = _use_database(path)
    run: dict[str, Any] = {"size": size, "filled": {}, "migrations": [], "rollback": None, "error": ""}
    executor = MigrationExecutor(conn)
    start = [(app, None if name == "zero" else name) for app, name in targets]
    changed = {app for app, _ in targets}
    others = [leaf for leaf in executor.loader.graph.leaf_nodes() if leaf[0] not in changed]
    try:
        executor.migrate(others + start)
    except Exception as exc:  # noqa: BLE001 — the previous schema may not build on SQLite: reported, not raised
        run["error"] = f"the previous release's schema could not be built on SQLite: {type(exc).__name__}: {exc}"
        return run
    executor = MigrationExecutor(conn)
    previous_nodes = [(a, n) for a, n in start if n]
    state = executor.loader.project_state(previous_nodes) if previous_nodes else None
    if state is not None:
        try:
            run["filled"] = fill(state, sorted({a for a, _ in new}), size, conn)
        except Exception as exc:  # noqa: BLE001 — synthetic rows the schema refuses: reported, the sample goes on
            run["error"] = f"synthetic rows could not be inserted: {type(exc).__name__}: {exc}"
    stopped = ""  # why the remaining migrations are not run on this sample
    for node in new:
        entry: dict[str, Any] = {"key": _key(node), "rows": {}, "seconds": None, "error": ""}
        run["migrations"].append(entry)
        if not stopped and deadline is not None and time.monotonic() > deadline:
            stopped = f"not run: the sample's time budget ({budget:.0f}s) was spent"
        if stopped:
            entry["error"] = stopped
            continue
        executor = MigrationExecutor(conn)
        migration = executor.loader.graph.nodes[node]
        before = executor.loader.project_state(node, at_end=False)
        entry["rows"] = _row_counts(conn, tables(before, migration))
        try:
            t0 = time.perf_counter()
            executor.apply_migration(before, migration)
            entry["seconds"] = round(time.perf_counter() - t0, 6)
        except Exception as exc:  # noqa: BLE001 — e.g. PostgreSQL-only SQL on the SQLite sample
            entry["error"] = f"{type(exc).__name__}: {exc}"
            stopped = f"not run: {_key(node)} failed before it"
    if rehearse_rollback and not stopped:
        executor = MigrationExecutor(conn)
        t0 = time.perf_counter()
        try:
            executor.migrate(start)
            run["rollback"] = {"ok": True, "seconds": round(time.perf_counter() - t0, 6), "error": ""}
        except Exception as exc:  # noqa: BLE001 — IrreversibleError and friends are the finding itself
            run["rollback"] = {"ok": False, "seconds": round(time.perf_counter() - t0, 6),
                               "error": re.sub(r" at 0x[0-9a-f]+", "", f"{type(exc).__name__}: {exc}")}
    conn.close()
    return run


def _row_counts(conn: Any, tables: list[str]) -> dict[str, int]:
    existing = set(conn.introspection.table_names())
    out = {}
    with conn.cursor() as cur:
        for table in tables:
            if table in existing:
                # a table name from the migration state, quoted by the backend; no user input
                cur.execute(f"SELECT COUNT(*) FROM {conn.ops.quote_name(table)}")  # noqa: S608  # nosec B608
                out[table] = int(cur.fetchone()[0])
            else:
                out[table] = 0
    return out


def fill(state: Any, apps: list[str], size: int, conn: Any) -> dict[str, int]:
    """Insert `size` synthetic rows into every managed table of `apps` (as of `state`); returns the counts."""
    rendered = state.apps
    done: dict[str, int] = {}
    for app in apps:
        try:
            models = list(rendered.get_app_config(app).get_models())
        except LookupError:
            continue
        for model in models:
            _fill_model(model, size, conn, done, depth=0)
    return _row_counts(conn, sorted(done))


def _fill_model(model: Any, size: int, conn: Any, done: dict[str, int], depth: int) -> None:
    opts = model._meta
    if opts.proxy or not opts.managed or opts.db_table in done or depth > 3:
        return
    done[opts.db_table] = 0
    targets: dict[str, list[Any]] = {}
    for field in opts.concrete_fields:
        if field.is_relation and field.related_model is not None and not field.null:
            related = field.related_model
            unique = field.unique or getattr(field, "one_to_one", False)
            if related._meta.db_table not in done:
                _fill_model(related, size if unique else min(size, 100), conn, done, depth + 1)
            targets[field.attname] = list(related._default_manager.using(conn.alias).values_list("pk", flat=True)
                                          [: size if unique else 100])
    fields = [f for f in opts.concrete_fields if not (f.primary_key and _auto(f))]
    batch = max(1, 900 // max(1, len(fields)))
    objs = []
    for i in range(size):
        values = {}
        for f in fields:
            if f.attname in targets:
                pool = targets[f.attname]
                if pool:
                    values[f.attname] = pool[i % len(pool)]
                continue
            value = _synthetic(f, i)
            if value is not _SKIP:
                values[f.attname] = value
        objs.append(model(**values))
    model._default_manager.using(conn.alias).bulk_create(objs, batch_size=batch)
    done[opts.db_table] = size


_SKIP = object()


def _auto(field: Any) -> bool:
    return field.get_internal_type() in ("AutoField", "BigAutoField", "SmallAutoField")


def _synthetic(field: Any, i: int) -> Any:
    """A value for row `i` of `field`: unique where it must be, within the column's limits."""
    from django.utils import timezone

    if field.is_relation:
        return None if field.null else _SKIP
    if field.has_default() and not field.unique:
        return field.get_default()
    if field.choices and not field.unique:
        choices = [c[0] for c in field.flatchoices]
        if choices:
            return choices[i % len(choices)]
    kind = field.get_internal_type()
    token = f"s{i:x}"
    if kind in ("CharField", "SlugField", "TextField", "FilePathField", "FileField", "ImageField"):
        limit = field.max_length or 255
        return (token + "-" + field.name)[:limit] if limit > len(token) else token[-limit:]
    if kind == "EmailField":
        return f"{token}@example.invalid"
    if kind == "URLField":
        return f"https://example.invalid/{token}"
    if kind == "GenericIPAddressField":
        return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    if kind in ("IntegerField", "BigIntegerField", "PositiveIntegerField", "PositiveBigIntegerField"):
        return i
    if kind in ("SmallIntegerField", "PositiveSmallIntegerField"):
        return i % 32767
    if kind == "DecimalField":
        room = 10 ** max(0, (field.max_digits or 10) - (field.decimal_places or 0)) - 1
        return decimal.Decimal(i % max(1, room))
    if kind == "FloatField":
        return float(i)
    if kind == "BooleanField":
        return i % 2 == 0
    if kind == "DateTimeField":
        return timezone.now()
    if kind == "DateField":
        return datetime.date.today()
    if kind == "TimeField":
        return datetime.time(12, 0)
    if kind == "DurationField":
        return datetime.timedelta(seconds=i)
    if kind == "UUIDField":
        return uuid.uuid4()
    if kind == "JSONField":
        return {}
    if kind == "BinaryField":
        return b""
    return None if field.null else _SKIP
