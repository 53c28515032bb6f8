"""A NEW error signature at a sustained rate is the checklist's 致命的なバグ (issue 11, part 8): the pure
decider over log lines, the verify.error_logs verdict, the decision row, the [verify] keys, and the
sandbox's numbers (healthy: nothing new; error-spike: ~40 lines/min per signature for the whole window)."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import UTC, datetime, timedelta

import boto3
import pandas as pd
import pytest
from botocore.stub import Stubber
from shipbook import config
from shipbook.checks import CheckResult
from shipbook.config import VerifySection
from shipbook.errors import ConfigError
from shipbook.verify import decision, logs, metrics, phase, reach
from shipbook.verify import judge as J
from shipbook.verify.settings import SANDBOX, fatal_rule

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)
KEYERROR = "Internal Server Error: /products/<n>/ — KeyError: '<s>'"
PROD = decision.FatalRule()  # production defaults: ≥10/min in every 60 s bucket for ≥300 s
SBX = fatal_rule(SANDBOX)  # the sandbox's: ≥10/min in every 15 s bucket for ≥60 s


def spread(signature: str, per_minute: float, start: datetime, seconds: float) -> list[tuple[datetime, str]]:
    """Evenly spaced lines of `signature` at `per_minute` from `start` for `seconds`."""
    n = int(per_minute * seconds / 60)
    step = seconds / max(n, 1)
    return [(start + timedelta(seconds=i * step), signature) for i in range(n)]


def frame(rows: list[tuple[datetime, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["time", "signature"])


def judged(verdict: str) -> J.Judgement:
    return J.Judgement(verdict, [], 0.01, f"judge {verdict}")


def ok(cid: str) -> CheckResult:
    return CheckResult(cid, "pass", "ok")


# --------------------------------------------------------------------------- the pure decider


def test_a_new_signature_sustained_is_fatal_and_the_decision_rolls_back_with_the_evidence_row():
    end = T0 + timedelta(minutes=32)
    lines = frame(spread(KEYERROR, 85, T0, 32 * 60))
    found = decision.fatal_signatures(lines, {"old <n>"}, T0, end, PROD)
    assert found.triggered
    (rate,) = found.fatal
    assert (rate.signature, rate.count, rate.sustained_seconds) == (KEYERROR, 2720, 32 * 60)
    assert rate.per_minute == pytest.approx(85) and rate.first_seen == T0
    assert rate.last_seen == T0 + timedelta(seconds=(2720 - 1) * 32 * 60 / 2720)

    d = decision.decide(ok(reach.REACHABLE), ok(reach.SMOKE), judged(J.PASS), signatures=found)
    assert d.recommendation == decision.ROLLBACK and d.check().verdict == "fail"
    row = d.table().set_index("criterion").loc["fatal bug: new error signature sustained"]
    assert (row["基準"], row["triggered"], row["effect"]) == ("致命的なバグ", "yes", decision.ROLLBACK)
    for part in (KEYERROR, "2720 line(s)", "85.0/min", "≥10/min for 1920s", "first 10:00:00", "last 10:31:59",
                 "rule: ≥10/min in every 60s for ≥300s"):
        assert part in row["evidence"], (part, row["evidence"])
    assert d.reasons == [f"fatal bug: new error signature sustained: {row['evidence']}"]
    assert d.facts()["rollback_reasons"] == d.reasons


def test_a_burst_is_not_sustained_and_only_warns():
    """300 lines in 90 s (200/min for a minute and a half), then silence: the rate never holds for 5 minutes."""
    end = T0 + timedelta(minutes=32)
    lines = frame(spread(KEYERROR, 200, T0 + timedelta(minutes=3), 90))
    found = decision.fatal_signatures(lines, set(), T0, end, PROD)
    assert not found.triggered
    assert found.rates[0].count == 300 and found.rates[0].sustained_seconds == 120
    assert found.evidence().startswith("not sustained — NEW")
    d = decision.decide(ok(reach.REACHABLE), ok(reach.SMOKE), judged(J.PASS), signatures=found)
    assert d.recommendation == decision.PROCEED
    assert d.table().set_index("criterion").loc["fatal bug: new error signature sustained", "triggered"] == "no"


def test_a_low_rate_is_not_fatal_however_long_it_lasts():
    end = T0 + timedelta(minutes=32)
    found = decision.fatal_signatures(frame(spread(KEYERROR, 9, T0, 32 * 60)), set(), T0, end, PROD)
    assert not found.triggered and found.rates[0].sustained_seconds == 0
    assert "never ≥10/min in a 60s bucket" in found.evidence()


def test_a_gap_breaks_the_run():
    """Four sustained minutes, one quiet minute, four more: never five in a row."""
    end = T0 + timedelta(minutes=9)
    rows = spread(KEYERROR, 60, T0, 240) + spread(KEYERROR, 60, T0 + timedelta(minutes=5), 240)
    found = decision.fatal_signatures(frame(rows), set(), T0, end, PROD)
    assert not found.triggered and found.rates[0].sustained_seconds == 240


def test_a_signature_also_in_the_baseline_is_not_new_and_never_fatal():
    end = T0 + timedelta(minutes=32)
    found = decision.fatal_signatures(frame(spread(KEYERROR, 85, T0, 32 * 60)), {KEYERROR}, T0, end, PROD)
    assert found.rates == [] and not found.triggered
    assert found.evidence().startswith("no new error signature")


def test_the_rule_can_be_turned_off_and_a_partial_last_bucket_is_not_judged():
    end = T0 + timedelta(minutes=32)
    off = decision.fatal_signatures(frame(spread(KEYERROR, 85, T0, 1920)), set(), T0, end,
                                    decision.FatalRule(per_minute=0))
    assert not off.triggered and off.evidence().startswith("off")
    # 5 whole buckets and a 30 s remainder: the errors only in the remainder do not extend the run
    rows = spread(KEYERROR, 20, T0 + timedelta(minutes=1), 270)
    found = decision.fatal_signatures(frame(rows), set(), T0, T0 + timedelta(seconds=330), PROD)
    assert found.rates[0].sustained_seconds == 240 and not found.triggered


# --------------------------------------------------------------------------- verify.error_logs


def windows(seconds: float = 135) -> tuple[metrics.Window, metrics.Window]:
    return (metrics.Window("before the deploy", T0 - timedelta(seconds=seconds), T0),
            metrics.Window("since the deploy", T0 + timedelta(seconds=30), T0 + timedelta(seconds=30 + seconds)))


def log_window(w: metrics.Window, rows: list[tuple[datetime, str]]) -> logs.LogWindow:
    out = logs.LogWindow(w, len(rows))
    for t, sig in rows:
        out.signatures[sig] += 1
        out.times.append((t, sig))
    return out


def test_error_logs_fail_on_a_sustained_new_signature_and_warn_on_a_burst():
    before_w, after_w = windows()
    before = log_window(before_w, spread("old <n>", 2, before_w.start, 135))
    sustained = logs.ErrorLogs(before, log_window(after_w, spread(KEYERROR, 40, after_w.start, 135)))
    sustained.judge_fatal(SBX)
    res = logs.verdict(sustained, "/ecs/app", "", 1000)
    assert res.verdict == "fail" and res.summary.startswith("fatal bug: 1 NEW error signature(s) sustained")
    burst = logs.ErrorLogs(before, log_window(after_w, spread(KEYERROR, 200, after_w.start + timedelta(seconds=40),
                                                                     15)))
    burst.judge_fatal(SBX)
    res = logs.verdict(burst, "/ecs/app", "", 1000)
    assert res.verdict == "warn" and "1 NEW error signature" in res.summary
    unjudged = logs.ErrorLogs(before, sustained.after)  # no rule given: as before, a new signature warns
    assert logs.verdict(unjudged, "/ecs/app", "", 1000).verdict == "warn"


def test_read_window_keeps_each_lines_time_for_the_rate():
    cw = boto3.client("logs", region_name="ap-northeast-1", aws_access_key_id="x", aws_secret_access_key="x")
    w = metrics.Window("since", T0, T0 + timedelta(minutes=1))
    line = json.dumps({"level": "ERROR", "message": "Internal Server Error: /products/14/",
                       "exception": "Traceback (most recent call last):\nKeyError: 'L'"})
    ms = int(T0.timestamp() * 1000)
    page = {"events": [{"message": line, "timestamp": ms + 1500},
                       {"message": json.dumps({"level": "INFO", "message": "GET / 200"}), "timestamp": ms + 1600}]}
    with Stubber(cw) as stub:
        stub.add_response("filter_log_events", page)
        out = logs.read_window(cw, "/ecs/app", w, "", 100)
    assert out.lines().to_dict("records") == [{"time": T0 + timedelta(seconds=1.5), "signature": KEYERROR}]


def test_the_phase_passes_its_rule_to_the_check_and_the_evidence_to_the_decision(monkeypatch):
    v = phase.Verification(env(), "v1.0.0", deploy_started=T0.isoformat(),
                           deploy_finished=(T0 + timedelta(seconds=20)).isoformat(), settings=SANDBOX,
                           report=lambda s: None)
    v.resolve_windows()
    w = v.windows
    assert w is not None and w.logs_after.seconds == 135  # from the deploy's finish: 15 s settle, then the 120 s canary
    seen: dict[str, object] = {}

    def fake_compare(env_, before, after, pattern, max_events, client=None):
        seen["after"] = after
        return logs.ErrorLogs(log_window(before, []),
                              log_window(after, spread(KEYERROR, 40, after.start, after.seconds)))

    monkeypatch.setattr(logs, "compare", fake_compare)
    assert v.error_logs().res.verdict == "fail"
    for cid in (reach.REACHABLE, reach.SMOKE):
        v.board.add(ok(cid))
    v.judgement = judged(J.PASS)
    v.decide()
    assert v.decision is not None and v.decision.recommendation == decision.ROLLBACK
    assert "fatal bug: new error signature sustained" in v.decision.reasons[0]


def env() -> config.Environment:
    return config.Environment(name="t", kind="sandbox",
                              app=config.AppSection(public_url="http://127.0.0.1:9"),
                              stack=config.StackSection(name="s", cluster="c", service="svc", target_group="tg",
                                                        log_group="/ecs/app", alarm_topic="alarms"))


# --------------------------------------------------------------------------- the sandbox's numbers


def poisson_lines(rng: random.Random, per_second: float, start: datetime, seconds: float, sig: str):
    t, out = 0.0, []
    while (t := t + rng.expovariate(per_second)) < seconds:
        out.append((start + timedelta(seconds=t), sig))
    return out


def test_error_spike_trips_the_sandbox_rule_and_the_healthy_release_does_not():
    """The twin sends 15 req/s: 45% product pages over 20 ids; error-spike breaks the two 'L' sizes (ids 14, 16).

    That is 15 × 0.45 × 2/20 = 0.675 failing requests/s (4.5% of traffic, ~40/min), each logging two
    ERROR lines of two NEW signatures (django.request's KeyError and the request log's 500): ~81 lines/min
    in all, the issue's "85 lines/min". Per signature, a 15 s bucket holds ~10.1 lines where the rule needs
    2.5 (10/min): P(a bucket short) = P(Poisson(10.1) ≤ 2) ≈ 0.25%, and the 9 buckets of the 135 s window
    need two short ones in the wrong places to lose every run of 4 (60 s). The healthy release logs no new
    signature at all.
    """
    before_w, after_w = windows(135)
    misses = 0
    for seed in range(500):
        failing = poisson_lines(random.Random(seed), 0.675, after_w.start, after_w.seconds, KEYERROR)
        after = failing + [(t, "GET /products/<n>/ <n>") for t, _ in failing]  # the same requests' 500 lines
        found = decision.fatal_signatures(frame(after), set(), after_w.start, after_w.end, SBX)
        misses += not found.triggered
    assert misses == 0
    healthy = logs.ErrorLogs(log_window(before_w, []), log_window(after_w, []))
    healthy.judge_fatal(SBX)
    assert logs.verdict(healthy, "/ecs/app", "", 1000).verdict == "pass" and not healthy.fatal.triggered


def test_a_sandbox_burst_only_warns():
    """A 15 s burst at 200 lines/min in the sandbox's window (two 15 s buckets at most): not a minute."""
    _, after_w = windows(135)
    rows = spread(KEYERROR, 200, after_w.start + timedelta(seconds=50), 15)
    found = decision.fatal_signatures(frame(rows), set(), after_w.start, after_w.end, SBX)
    assert not found.triggered and found.rates[0].sustained_seconds <= 30


# --------------------------------------------------------------------------- the [verify] keys


def test_sandbox_and_production_values_and_the_settings_mirror_the_sandbox_file():
    sandbox = config.load("sandbox", resolve=False).verify
    assert fatal_rule(sandbox) == SBX == decision.FatalRule(10.0, 60, 15)
    assert fatal_rule(VerifySection()) == PROD == decision.FatalRule(10.0, 300, 60)
    assert fatal_rule(config.Environment(name="p", kind="aws").verify) == PROD
    window = sandbox.settle_seconds + sandbox.canary_seconds
    assert sandbox.fatal_signature_seconds <= window  # the rule can trip within what the sandbox reads


def load_text(tmp_path, text: str) -> config.Environment:
    path = tmp_path / "e.toml"
    path.write_text(text, encoding="utf-8")
    return config.load_file(path, sandbox_dir=tmp_path / "none")


@pytest.mark.parametrize(("body", "key", "reason"), [
    ('fatal_signature_per_minute = "ten"', "verify.fatal_signature_per_minute", "expected a number"),
    ("fatal_signature_per_minute = -1", "verify.fatal_signature_per_minute", "must not be negative"),
    ("fatal_signature_seconds = 2.5", "verify.fatal_signature_seconds", "expected an integer"),
    ("fatal_signature_seconds = -60", "verify.fatal_signature_seconds", "at least one bucket"),
    ("fatal_signature_bucket_seconds = 0", "verify.fatal_signature_bucket_seconds", "must be positive"),
    ("fatal_signature_bucket_seconds = -10", "verify.fatal_signature_bucket_seconds", "must be positive"),
    ("fatal_signature_seconds = 30\nfatal_signature_bucket_seconds = 60", "verify.fatal_signature_seconds",
     "at least one bucket"),
])
def test_bad_fatal_signature_keys_are_refused_with_file_key_reason(tmp_path, body, key, reason):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, f'kind = "aws"\n[verify]\n{body}\n')
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'e.toml'}: {key}:"), msg
    assert reason in msg and err.value.exit_code == 2


def test_good_fatal_signature_keys_load():
    fields = {f.name for f in dataclasses.fields(config.VerifySection)}
    assert {"fatal_signature_per_minute", "fatal_signature_seconds", "fatal_signature_bucket_seconds"} <= fields


def test_a_run_longer_than_the_logs_read_is_shortened_to_them():
    """A short test or twin window keeps the default 300 s: the rule then asks for the whole window."""
    short = VerifySection(baseline_seconds=10, canary_seconds=8, period=1, settle_seconds=2,
                           fatal_signature_bucket_seconds=5)
    assert fatal_rule(short).seconds == 10
    assert fatal_rule(VerifySection(baseline_seconds=10, canary_seconds=8, period=1, settle_seconds=2)).seconds \
        == 60  # never under one bucket
    assert fatal_rule(VerifySection(canary_seconds=60, period=1, settle_seconds=2)).seconds == 62
    assert fatal_rule(VerifySection()).seconds == 300
