"""Phase `rollback`: plan first, then the code and the database in the order the plan gives, then verify.

The notebook `05_rollback.ipynb` makes one `Rollback` (`start`) and calls, cell by cell:
`make_plan` → `migrations` / `database_plan` / `steps` → `gate` → `database(before_code=True)` →
`push` → `watch` → `chart` → `database(before_code=False)` → `verify` (a `shipbook.verify.Verification`
of the previous version against the window before the broken deploy) → `window` (the rollback's own
requests and 5xx) → `final_state` → `finish`. The database step runs in one of its two slots:
after the code when the previous code runs on the new schema, before it otherwise
(`db.order_steps`). `plan.rollback_tag`, `plan.command`, `db.plan_database` and `window.assess`
are pure functions.
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
