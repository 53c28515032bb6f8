"""Phase `rollback`: plan first, then the database, then the code (the deploy phase's tag + watch), then verify.

The notebook `05_rollback.ipynb` makes one `Rollback` (`start`) and calls, cell by cell:
`make_plan` → `migrations` / `database_plan` / `steps` → `gate` → `database` → `push` → `watch` →
`chart` → `verify` (a `shipbook.verify.Verification` of the previous version) → `final_state` →
`finish`. `plan.rollback_tag`, `plan.command` and `db.plan_database` are pure functions.
"""

from shipbook.rollback.db import KEEP, NOTHING, RESTORE, REVERSE, DbPlan, Migration, plan_database
from shipbook.rollback.phase import Rollback, start
from shipbook.rollback.plan import (
    DEFAULT_TAG_PATTERN,
    Plan,
    command,
    make_plan,
    next_patch,
    rollback_tag,
)

__all__ = ["DEFAULT_TAG_PATTERN", "KEEP", "NOTHING", "RESTORE", "REVERSE", "DbPlan", "Migration", "Plan", "Rollback",
           "command", "make_plan", "next_patch", "plan_database", "rollback_tag", "start"]
