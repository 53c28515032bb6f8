"""The database half of a rollback: which migrations the release applied, and how to undo them.

Preferred: reverse the release's migrations (`migrate <app> <target>`, target = the app's leaf
migration at the previous release) when every one is reversible — the schema then is exactly
the one the previous code ran on. Otherwise: restore the pre-deploy snapshot into a NEW
instance (RDS cannot restore over an existing identifier), wait for it, and swap it in — with
the data written since the snapshot lost, which the plan states up front. A restore never
runs without an explicit confirmation (`--confirm-db-restore`).

Migrations are read from git at both tags and analysed statically (Python's `ast`, nothing
imported or executed): a `RunPython` without `reverse_code` or a `RunSQL` without
`reverse_sql` cannot be reversed; an operation we do not know is treated as irreversible. The
same analysis says whether the previous code still runs on the *new* schema (only additive
changes: new tables, nullable columns, indexes, data) — what decides whether the code may go
back when the database cannot.
"""

from __future__ import annotations

import ast
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from shipbook import gitinfo

log = logging.getLogger(__name__)

_MIGRATION = re.compile(r"^(?P<app>[^/]+(?:/[^/]+)*?)/migrations/(?P<name>\d{4}_[A-Za-z0-9_]+)\.py$")

# Operations Django reverses by itself (schema operations; data in dropped columns is not restored).
REVERSIBLE_OPS = {
    "CreateModel", "DeleteModel", "RenameModel", "AlterModelTable", "AlterModelTableComment", "AlterUniqueTogether",
    "AlterIndexTogether", "AlterOrderWithRespectTo", "AlterModelOptions", "AlterModelManagers", "AddField",
    "RemoveField", "AlterField", "RenameField", "AddIndex", "RemoveIndex", "RenameIndex", "AddConstraint",
    "RemoveConstraint", "AlterConstraint",
}
# Operations after which the previous release's code still works (it ignores what it does not know).
ADDITIVE_OPS = {"CreateModel", "AddIndex", "AlterModelOptions", "AlterModelManagers", "RunPython", "RunSQL"}
LOSES_DATA_ON_REVERSE = {"CreateModel", "AddField"}  # reversing drops them, with what was written into them

RESTORE = "restore"
REVERSE = "reverse"
NOTHING = "none"
KEEP = "keep"

CODE_FIRST = "code first"  # the previous code runs on the new schema: it goes back, then the database does
DATABASE_FIRST = "database first"  # it does not: the database goes back first, the code right after
CODE_ONLY = "code only"


@dataclass
class Operation:
    name: str
    reversible: bool
    additive: bool
    note: str = ""


@dataclass
class Migration:
    """One migration file the release added (or changed), as analysed."""

    app: str
    name: str
    path: str
    status: str  # "added" or "modified"
    operations: list[Operation] = field(default_factory=list)
    dependencies: list[tuple[str, str]] = field(default_factory=list)
    error: str = ""

    @property
    def label(self) -> str:
        return f"{self.app}.{self.name}"

    @property
    def reversible(self) -> bool:
        return not self.error and all(o.reversible for o in self.operations)

    @property
    def additive(self) -> bool:
        return not self.error and self.status == "added" and all(o.additive for o in self.operations)

    def why_not(self) -> str:
        if self.error:
            return self.error
        return "; ".join(f"{o.name}: {o.note}" for o in self.operations if not o.reversible)


def _call_name(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Attribute):
            return f.attr
        if isinstance(f, ast.Name):
            return f.id
    return ""


def _kw(node: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def _is_none(node: ast.AST | None) -> bool:
    return node is None or (isinstance(node, ast.Constant) and node.value is None)


def _field_nullable(node: ast.Call) -> bool:
    """AddField(…, field=models.X(null=True)) — a new column old code can ignore (its inserts leave it NULL)."""
    fld = _kw(node, "field") or (node.args[2] if len(node.args) > 2 else None)
    if not isinstance(fld, ast.Call):
        return False
    if _call_name(fld) == "ManyToManyField":
        return True
    null = _kw(fld, "null")
    return isinstance(null, ast.Constant) and null.value is True


def analyse_operation(node: ast.AST) -> Operation:
    name = _call_name(node)
    if not isinstance(node, ast.Call) or not name:
        return Operation(ast.unparse(node)[:40], False, False, "not a call: cannot tell")
    if name == "RunPython":
        reverse = _kw(node, "reverse_code") or (node.args[1] if len(node.args) > 1 else None)
        ok = not _is_none(reverse)
        return Operation(name, ok, True, "" if ok else "RunPython without reverse_code")
    if name == "RunSQL":
        reverse = _kw(node, "reverse_sql") or (node.args[1] if len(node.args) > 1 else None)
        ok = not _is_none(reverse)
        return Operation(name, ok, True, "" if ok else "RunSQL without reverse_sql")
    if name == "SeparateDatabaseAndState":
        inner = _kw(node, "database_operations")
        ops = [analyse_operation(e) for e in (inner.elts if isinstance(inner, ast.List | ast.Tuple) else [])]
        ok = all(o.reversible for o in ops)
        return Operation(name, ok, all(o.additive for o in ops),
                         "" if ok else "; ".join(o.note for o in ops if not o.reversible))
    if name == "AddField":
        nullable = _field_nullable(node)
        return Operation(name, True, nullable, "" if nullable else "a NOT NULL column the previous code does not fill")
    if name in REVERSIBLE_OPS:
        return Operation(name, True, name in ADDITIVE_OPS, "" if name in ADDITIVE_OPS else "changes what exists")
    return Operation(name, False, False, "unknown operation: treated as irreversible")


def analyse(source: str) -> tuple[list[Operation], list[tuple[str, str]], str]:
    """(operations, dependencies, error) of a migration module's source."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [], [], f"cannot parse: {exc}"
    cls = next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "Migration"), None)
    if cls is None:
        return [], [], "no Migration class"
    ops: list[Operation] = []
    deps: list[tuple[str, str]] = []
    for stmt in cls.body:
        if not isinstance(stmt, ast.Assign) or not isinstance(stmt.targets[0], ast.Name):
            continue
        target = stmt.targets[0].id
        if target == "operations" and isinstance(stmt.value, ast.List | ast.Tuple):
            ops = [analyse_operation(e) for e in stmt.value.elts]
        elif target == "dependencies" and isinstance(stmt.value, ast.List | ast.Tuple):
            for e in stmt.value.elts:
                if isinstance(e, ast.Tuple) and len(e.elts) == 2 and all(isinstance(x, ast.Constant) for x in e.elts):
                    deps.append((str(e.elts[0].value), str(e.elts[1].value)))  # type: ignore[attr-defined]
    return ops, deps, ""


def app_label(path: str) -> str:
    """`shop/migrations/0003_x.py` → `shop` (the directory name Django uses as the default label)."""
    return path.split("/migrations/")[0].rsplit("/", 1)[-1]


def migration_files(repo: str | Path, ref: str) -> dict[str, str]:
    """path → migration name of every migration file at `ref`."""
    out = gitinfo.git(repo, "ls-tree", "-r", "--name-only", ref)
    return {p: m.group("name") for p in out.splitlines() if (m := _MIGRATION.match(p))}


def release_migrations(repo: str | Path, previous: str, version: str) -> list[Migration]:
    """Migrations added or changed between the two tags, analysed, in name order."""
    before, after = migration_files(repo, previous), migration_files(repo, version)
    changed = set(gitinfo.git(repo, "diff", "--name-only", f"{previous}..{version}").splitlines())
    out = []
    for path, name in sorted(after.items(), key=lambda kv: (app_label(kv[0]), kv[1])):
        if path in before and path not in changed:
            continue
        ops, deps, err = analyse(gitinfo.git(repo, "show", f"{version}:{path}"))
        out.append(Migration(app_label(path), name, path, "added" if path not in before else "modified", ops, deps,
                             err))
    return out


def leaf(repo: str | Path, ref: str, app: str) -> tuple[str, str]:
    """(the app's leaf migration at `ref` or 'zero', problem). Two leaves (an unmerged branch) is a problem."""
    files = {p: n for p, n in migration_files(repo, ref).items() if app_label(p) == app}
    if not files:
        return "zero", ""
    depended = set()
    for p in files:
        _, deps, _ = analyse(gitinfo.git(repo, "show", f"{ref}:{p}"))
        depended |= {n for a, n in deps if a == app}
    leaves = sorted(n for n in files.values() if n not in depended)
    if len(leaves) != 1:
        return (leaves[-1] if leaves else "zero"), f"{app} has {len(leaves)} leaf migrations at {ref}: " \
            f"{', '.join(leaves)}"
    return leaves[0], ""


@dataclass
class Snapshot:
    id: str
    created: datetime | None
    status: str
    instance: str


@dataclass
class DbPlan:
    """What happens to the database, and why. `action`: none, reverse, restore, keep (leave it as it is)."""

    action: str
    migrations: list[Migration] = field(default_factory=list)
    targets: dict[str, str] = field(default_factory=dict)
    commands: list[list[str]] = field(default_factory=list)
    compatible: bool = True  # the previous code runs on the new schema
    snapshot: Snapshot | None = None
    instance: str = ""
    restore_instance: str = ""
    swap: str = "rename"
    confirmed: bool = False
    planned_at: datetime | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    why: str = ""
    order: str = CODE_ONLY
    order_why: str = ""
    error_window: str = "none expected: the database is not touched"
    error_window_seconds: float = 0.0

    @property
    def changes_database(self) -> bool:
        return self.action in (REVERSE, RESTORE)

    @property
    def data_loss_window(self) -> timedelta | None:
        if self.action != RESTORE or not self.snapshot or not self.snapshot.created or not self.planned_at:
            return None
        return self.planned_at - self.snapshot.created

    def loss_text(self) -> str:
        w = self.data_loss_window
        if w is None or self.snapshot is None or self.snapshot.created is None:
            return ""
        mins = w.total_seconds() / 60
        return (f"DATA LOSS: everything written to {self.instance} after {self.snapshot.created:%Y-%m-%d %H:%M:%S} "
                f"UTC (the snapshot) is not in the restored database — {mins:.0f} minute(s) so far, growing "
                "until the swap")

    def table(self) -> pd.DataFrame:
        rows = [("action", {NOTHING: "nothing to do", REVERSE: "reverse the release's migrations",
                            RESTORE: "restore the pre-deploy snapshot into a new instance and swap it in",
                            KEEP: "leave the database as it is"}[self.action]), ("why", self.why)]
        rows += [("migrations of this release", ", ".join(m.label for m in self.migrations) or "none")]
        if self.action == REVERSE:
            rows += [("command (one-off task, release's task definition)", " ".join(c)) for c in self.commands]
        rows += [("previous code on the new schema", "runs (additive changes only)" if self.compatible else
                  "does NOT run (the release changed or removed what it uses)")]
        rows += [("order", f"{self.order}: {self.order_why}"), ("expected error window", self.error_window)]
        if self.action == RESTORE or (self.snapshot and self.action == KEEP):
            snap = self.snapshot
            rows += [("snapshot", f"{snap.id} ({snap.status}, {snap.created:%Y-%m-%d %H:%M:%S} UTC)"
                      if snap and snap.created else (snap.id if snap else "none found"))]
        if self.action == RESTORE:
            swap = {"rename": f"rename {self.instance} → {self.instance}-pre-rollback-…, then "
                              f"{self.restore_instance} → {self.instance}",
                    "secret": f"point DATABASE_URL's secret at {self.restore_instance}'s endpoint"}[self.swap]
            rows += [("restore into", self.restore_instance), ("swap", swap), ("data-loss window", self.loss_text()),
                     ("confirmed", "yes (--confirm-db-restore)" if self.confirmed else
                      "NO — nothing is restored without --confirm-db-restore")]
        rows += [("problem", p) for p in self.problems] + [("warning", w) for w in self.warnings]
        return pd.DataFrame(rows, columns=["item", "value"])

    def migrations_table(self) -> pd.DataFrame:
        rows = [{"migration": m.label, "status": m.status, "operations": ", ".join(o.name for o in m.operations),
                 "reversible": "yes" if m.reversible else "NO", "previous code runs on it": "yes" if m.additive else
                 "no", "why": m.why_not() or ("reverse drops new tables/columns and their data"
                                              if any(o.name in LOSES_DATA_ON_REVERSE for o in m.operations) else "")}
                for m in self.migrations]
        return pd.DataFrame(rows, columns=["migration", "status", "operations", "reversible",
                                           "previous code runs on it", "why"])


def reverse_commands(migrations: list[Migration], targets: dict[str, str]) -> list[list[str]]:
    """One `migrate <app> <target>` per app, the app whose newest migration depends on others first."""
    order: list[str] = []
    for m in sorted(migrations, key=lambda m: (len(m.dependencies), m.name), reverse=True):
        if m.app not in order:
            order.append(m.app)
    return [["python", "manage.py", "migrate", app, targets[app], "--noinput"] for app in order]


def order_steps(p: DbPlan, rollout_seconds: float | None) -> DbPlan:
    """Decide the order of the code and database steps, and the error window it costs (a pure function).

    Why this order: while the code rolls out, both versions serve; while the database goes back,
    whatever serves must run on the schema it is left with. When the previous code runs on the
    new schema (additive changes only), the code goes back first — no request meets a schema
    its code does not know — and the database follows once the previous code alone serves.
    When it does not (a column it reads was dropped, renamed or changed), there is no order
    without an error window: the database goes first (it is what the previous code needs) and
    the code right after; the window is about one rollout, estimated from the broken deploy's.
    """
    rollout = f"≈{rollout_seconds:.0f}s, the broken release's own rollout time" if rollout_seconds else \
        "about one rollout (its length is unknown: no deploy times recorded)"
    p.error_window_seconds = 0.0
    if not p.changes_database:
        p.order, p.order_why = CODE_ONLY, "the database is left as it is"
        p.error_window = ("none expected beyond the fault itself: the database is not touched"
                          if p.compatible or p.action == NOTHING else
                          "UNBOUNDED: the previous code may fail on the new schema until the database is fixed by hand")
        return p
    if p.compatible:
        p.order = CODE_FIRST
        p.order_why = ("the previous code runs on the new schema (additive changes only): the code goes back first; "
                       "the database follows once the previous code is healthy and serving alone")
        p.error_window = "none expected beyond the fault itself: no request meets a schema its code does not know"
        return p
    p.order = DATABASE_FIRST
    bad = ", ".join(m.label for m in p.migrations if not m.additive) or "the release's migrations"
    p.order_why = (f"the previous code does NOT run on the new schema ({bad}): the database goes back first, the "
                   "code right after, so the window lasts one rollout instead of until the database is done")
    p.error_window = (f"from the database step until the previous code serves alone ({rollout}): requests that reach "
                      f"{'the release' if p.action == REVERSE else 'either version'} on the other schema may fail")
    p.error_window_seconds = float(rollout_seconds or 0.0)
    return p


def plan_database(migrations: list[Migration], targets: dict[str, str], target_problems: list[str], *,
                  instance: str, snapshot: Snapshot | None, confirm: bool, db_action: str, swap: str,
                  now: datetime, rollback_command: str, rollout_seconds: float | None = None) -> DbPlan:
    """Decide none / reverse / restore / keep, then the order of the steps (a pure function)."""
    return order_steps(_decide(migrations, targets, target_problems, instance=instance, snapshot=snapshot,
                               confirm=confirm, db_action=db_action, swap=swap, now=now,
                               rollback_command=rollback_command), rollout_seconds)


def _decide(migrations: list[Migration], targets: dict[str, str], target_problems: list[str], *,
            instance: str, snapshot: Snapshot | None, confirm: bool, db_action: str, swap: str,
            now: datetime, rollback_command: str) -> DbPlan:
    """none / reverse / restore / keep from the analysed migrations."""
    compatible = all(m.additive for m in migrations)
    p = DbPlan(NOTHING, migrations, targets, compatible=compatible, snapshot=snapshot, instance=instance,
               swap=swap, confirmed=confirm, planned_at=now)
    p.restore_instance = f"{instance}-restore-{now:%Y%m%d%H%M%S}" if instance else ""
    if db_action not in ("", "auto", NOTHING, RESTORE, REVERSE):
        p.problems.append(f"db_action must be auto, none, reverse or restore, got {db_action!r}")
        return p
    if db_action == NOTHING:
        p.action, p.why = KEEP, "db_action=none: the operator keeps the database as it is"
        if not compatible:
            p.warnings.append("the previous code may not run on the new schema: "
                              + ", ".join(m.label for m in migrations if not m.additive))
        return p
    reversible = bool(migrations) and all(m.reversible for m in migrations) and not target_problems
    if db_action == "" or db_action == "auto":
        if not migrations:
            p.why = "the release applied no migrations"
            return p
        want = REVERSE if reversible else RESTORE
    else:
        want = db_action
    if want == REVERSE:
        if not reversible:
            bad = [f"{m.label}: {m.why_not()}" for m in migrations if not m.reversible] + target_problems
            p.problems.append("cannot reverse: " + "; ".join(bad or ["no migrations"]))
            return p
        p.action, p.commands = REVERSE, reverse_commands(migrations, targets)
        p.why = "every migration of the release is reversible; the targets are the previous release's leaves, " \
                "the schema its code ran on"
        return p
    # restore
    bad = [f"{m.label}: {m.why_not()}" for m in migrations if not m.reversible] + target_problems
    p.why = ("not reversible — " + "; ".join(bad)) if bad and db_action != RESTORE else \
        "db_action=restore: the operator asked for the snapshot"
    if not instance:
        p.problems.append("no stack.db_instance in the environment file: nothing to restore")
        return p
    if snapshot is None:
        p.problems.append(f"no available pre-deploy snapshot of {instance} found (give snapshot_id=… / SNAPSHOT=…)")
        return p
    if snapshot.status != "available":
        p.problems.append(f"snapshot {snapshot.id} is {snapshot.status}, not available")
        return p
    if confirm:
        p.action = RESTORE
        return p
    if db_action == RESTORE:  # asked for by name: refuse rather than roll the code back without it
        p.action = RESTORE
        p.problems.append(f"db_action=restore needs an explicit confirmation (it loses the data written since the "
                          f"snapshot): nothing is changed. Re-run with --confirm-db-restore: {rollback_command} "
                          "DB_ACTION=restore CONFIRM_DB_RESTORE=1")
        return p
    if compatible:
        p.action = KEEP
        stays = ", ".join(m.label for m in migrations if not m.reversible)
        p.warnings.append(f"a restore is needed to undo {stays} but was not confirmed: nothing is restored; the "
                          f"previous code runs on the current schema (additive changes only) and the data changes "
                          f"stay. To restore: {rollback_command} CONFIRM_DB_RESTORE=1")
        return p
    p.action = RESTORE
    p.problems.append(f"the previous code cannot run on the new schema and a restore needs confirmation: nothing "
                      f"is changed. Re-run with --confirm-db-restore: {rollback_command} CONFIRM_DB_RESTORE=1")
    return p
