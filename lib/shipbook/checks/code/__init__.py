"""The `code.*` pre-checks, one module per concern, under the names the precheck notebook calls.

- `commit`: `code.tests`, `code.bandit`, `code.ruff` — the release commit's tests and scanners;
- `changes`: `code.review`, `code.release_notes` — the changes since the previous release;
- `share`: `code.shared` — the summary for the team, planned by the check and sent by `send_summary`
  through `shipbook.notify` (a dry run sends nothing).

All of them judge the release commit, never the working copy, with the thresholds of the
environment's `[precheck]` section.
"""

from shipbook.checks.code.changes import NOTES, REVIEW, PullReview, compare_commits, decide, release_notes, review
from shipbook.checks.code.commit import (
    BANDIT,
    RUFF,
    SEVERITIES,
    TESTS,
    TestCounts,
    bandit,
    ci_check_runs,
    parse_test_output,
    ruff,
    tests,
)
from shipbook.checks.code.share import (
    REPORT_NAME,
    SHARED,
    SharePlan,
    report_locations,
    send_summary,
    share_topic,
    shared,
    summary_message,
)

CHECK_IDS = (TESTS, REVIEW, BANDIT, RUFF, NOTES, SHARED)

__all__ = [
    "BANDIT", "CHECK_IDS", "NOTES", "REPORT_NAME", "REVIEW", "RUFF", "SEVERITIES", "SHARED", "TESTS", "PullReview",
    "SharePlan", "TestCounts", "bandit", "ci_check_runs", "compare_commits", "decide", "parse_test_output",
    "release_notes", "report_locations", "review", "ruff", "send_summary", "share_topic", "shared",
    "summary_message", "tests",
]
