"""Incident response: the notebook `incident.ipynb` and status reports (standalone runs: `shipbook.standalone`).

The notebook follows the team's emergency flow (緊急時対応フロー): first 30 minutes (who to
call, symptoms and impact, a first notice to users), analysis (logs, metrics, recent deploys),
response (the rollback decision, the exact command, live metrics), convergence (checks re-run,
prevention items). Each function is one cell's worth of work; AWS only through `shipbook.aws`
and verify's readers, clients passable for tests. Every name a notebook uses is importable from
here (`incident.X`); the rooms:

- `model`: the incident, its directory and record, the deploy runs before it, contacts;
- `signals`: metrics, log lines, alarms and ECS events from AWS, as frames;
- `pools`: the metrics pooled per `[incident] pool_seconds` (verify's pooling);
- `onset`: the baseline, the one rule for "off the baseline", 発生時刻 and the end of the impact;
- `impact`: the impact figures a report quotes;
- `state`: the current state (rollback, version served, convergence checks) before any advice;
- `response`: the decision table, advice, first notice, prevention items, the recorded facts;
- `status`: status reports, appended hash-chained to `status.jsonl`;
- `charts`: the chart with the incident's moments.

An incident lives at `runs/<env>/incidents/<id>/`: `run.json` (the runner's record: the
executed notebooks and their hashes, the facts the notebook reported), the rendered HTML, and
`status.jsonl`. Incident records are sealed in their own ledger,
`runs/<env>/incidents/ledger.jsonl`, so the release ledger and `shipbook audit` of releases are
not affected.
"""

from shipbook.clock import Clock, fmt, parse_time, utcnow
from shipbook.incident.charts import chart, marks
from shipbook.incident.impact import Impact, assess, baseline_end, measure
from shipbook.incident.model import (
    INCIDENTS,
    PHASE,
    STATUS_FILE,
    Incident,
    contacts_table,
    deploy_start,
    deployed_runs,
    incident_dir,
    last_deploy,
    load_record,
    new_id,
    open_incident,
    recent_deploys,
    rollback_phases,
)
from shipbook.incident.onset import (
    LATENCY_FACTOR,
    Baseline,
    Onset,
    Tolerance,
    baseline,
    find_onset,
    find_start,
    impact_end,
    off_baseline,
    tolerance,
)
from shipbook.incident.pools import POOL_COLUMNS, pool_label, pool_width, pooled, pools_table
from shipbook.incident.response import (
    ERROR_RATE_CRITICAL,
    Advice,
    Notice,
    advise,
    decision_table,
    first_notice,
    prevention_table,
    recommendation,
    record,
    rollback_command,
)
from shipbook.incident.signals import (
    EVENT_COLUMNS,
    LOG_COLUMNS,
    METRIC_COLUMNS,
    affected_endpoints,
    alarm_events,
    alarms_in_alarm,
    auto_period,
    ecs_events,
    exceptions,
    fetch_logs,
    fetch_metrics,
    metrics_frame,
    parse_log_line,
    watched_alarms,
)
from shipbook.incident.state import (
    CONVERGED,
    NOT_ROLLED_BACK,
    ROLLED_BACK,
    ROLLING_BACK,
    Check,
    CurrentState,
    RollbackInfo,
    checks_table,
    convergence_checks,
    current_state,
    decide_state,
    observe,
    rollback_of,
    served_now,
)
from shipbook.incident.status import StatusReport, current_status, started_text, status_report, status_reports

__all__ = [
    "CONVERGED", "ERROR_RATE_CRITICAL", "EVENT_COLUMNS", "INCIDENTS", "LATENCY_FACTOR", "LOG_COLUMNS",
    "METRIC_COLUMNS", "NOT_ROLLED_BACK", "PHASE", "POOL_COLUMNS", "ROLLED_BACK", "ROLLING_BACK", "STATUS_FILE",
    "Advice", "Baseline", "Check", "Clock", "CurrentState", "Impact", "Incident", "Notice", "Onset", "RollbackInfo",
    "StatusReport", "Tolerance", "advise", "affected_endpoints", "alarm_events", "alarms_in_alarm", "assess",
    "auto_period", "baseline", "baseline_end", "chart", "checks_table", "contacts_table", "convergence_checks",
    "current_state", "current_status", "decide_state", "decision_table", "deploy_start", "deployed_runs",
    "ecs_events", "exceptions", "fetch_logs", "fetch_metrics", "find_onset", "find_start", "first_notice", "fmt",
    "impact_end", "incident_dir", "last_deploy", "load_record", "marks", "measure", "metrics_frame", "new_id",
    "observe", "off_baseline", "open_incident", "parse_log_line", "parse_time", "pool_label", "pool_width",
    "pooled", "pools_table", "prevention_table", "recent_deploys", "recommendation", "record", "rollback_command",
    "rollback_of", "rollback_phases", "served_now", "started_text", "status_report", "status_reports", "tolerance",
    "utcnow", "watched_alarms",
]
