"""Phase `verify`: is the release healthy? Reachability, smoke tests, error logs, metrics judged, monitoring.

The notebook `04_verify.ipynb` makes one `Verification` (`start`) and calls, cell by cell:
`resolve_windows` → `reachable` → `smoke` → `wait_for_canary` → `fetch` → `judge` → `chart` →
`performance` → `error_logs` → `alarms` / `notifications` / `health_checks` → `decide` → `finish`.
The judge (`shipbook.verify.judge.judge`: the submodule is not shadowed here) and the decision
table (`decision.decide`) are pure functions.
"""

from shipbook.verify.decision import HOLD, PROCEED, ROLLBACK, Decision, decide
from shipbook.verify.judge import FAIL, INCONCLUSIVE, PASS, Judgement, MetricSpec
from shipbook.verify.metrics import QUERIES, Metrics, Window
from shipbook.verify.phase import CHECK_IDS, SECTION_3, Verification, Windows, make_windows, start
from shipbook.verify.settings import SANDBOX

__all__ = ["CHECK_IDS", "FAIL", "HOLD", "INCONCLUSIVE", "PASS", "PROCEED", "QUERIES", "ROLLBACK", "SANDBOX",
           "SECTION_3", "Decision", "Judgement", "MetricSpec", "Metrics", "Verification",
           "Window", "Windows", "decide", "make_windows", "start"]
