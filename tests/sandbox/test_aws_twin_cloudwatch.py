"""CloudWatch on the twin: percentiles equal numpy's, alarms evaluate, record history and notify."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

Twin = Any  # the `aws_twin` fixture's object (tests/sandbox/conftest.py)
TOPIC = "arn:aws:sns:ap-northeast-1:123456789012:shipbook-demo-alarms"


def _minute_ago() -> datetime:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=2)


def test_percentiles_equal_numpy_with_other_stats_in_the_same_request(aws_twin: Twin) -> None:
    cloudwatch = aws_twin.client("cloudwatch")
    namespace = f"Test/{uuid.uuid4().hex[:8]}"
    dimensions = [{"Name": "TargetGroup", "Value": "targetgroup/demo-web-tg/1"}]
    rng = random.Random(7)
    start = _minute_ago()
    values = [round(rng.lognormvariate(-2, 0.6), 4) for _ in range(120)]
    counts = [float(rng.randint(1, 4)) for _ in values]
    singles = [round(rng.uniform(0.5, 3.0), 4) for _ in range(5)]
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=[
        {"MetricName": "TargetResponseTime", "Dimensions": dimensions, "Timestamp": start + timedelta(seconds=5),
         "Values": values, "Counts": counts, "Unit": "Seconds"},
        *[{"MetricName": "TargetResponseTime", "Dimensions": dimensions, "Timestamp": start + timedelta(seconds=9),
           "Value": v, "Unit": "Seconds"} for v in singles],
    ])
    published = np.concatenate([np.repeat(values, np.array(counts, dtype=int)), singles])

    def query(stat: str) -> dict[str, Any]:
        return {"Id": stat.replace(".", "_").lower(), "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": "TargetResponseTime", "Dimensions": dimensions},
            "Period": 60, "Stat": stat}}

    stats = ["p50", "p90", "p95", "p99", "p99.9", "Average", "SampleCount", "Maximum"]
    result = cloudwatch.get_metric_data(MetricDataQueries=[query(s) for s in stats], StartTime=start,
                                        EndTime=start + timedelta(minutes=1))
    got = {r["Id"]: r["Values"] for r in result["MetricDataResults"]}
    for q in (50, 90, 95, 99, 99.9):  # numpy's default method, 'linear', as documented in cw_percentiles
        assert got[f"p{q}".replace(".", "_")] == [pytest.approx(float(np.percentile(published, q)), rel=1e-12)]
    assert got["average"] == [pytest.approx(float(published.mean()))]
    assert got["samplecount"] == [float(len(published))]
    assert got["maximum"] == [float(published.max())]

    statistics = cloudwatch.get_metric_statistics(
        Namespace=namespace, MetricName="TargetResponseTime", Dimensions=dimensions, StartTime=start,
        EndTime=start + timedelta(minutes=1), Period=60, ExtendedStatistics=["p50", "p99"])["Datapoints"]
    assert len(statistics) == 1
    assert statistics[0]["ExtendedStatistics"] == {
        "p50": pytest.approx(float(np.percentile(published, 50)), rel=1e-12),
        "p99": pytest.approx(float(np.percentile(published, 99)), rel=1e-12),
    }


def test_percentile_of_a_period_without_raw_values_is_left_out(aws_twin: Twin) -> None:
    cloudwatch = aws_twin.client("cloudwatch")
    namespace = f"Test/{uuid.uuid4().hex[:8]}"
    start = _minute_ago()
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=[{
        "MetricName": "Latency", "Timestamp": start + timedelta(seconds=1),
        "StatisticValues": {"SampleCount": 3, "Sum": 3.0, "Minimum": 0.5, "Maximum": 1.5}}])
    result = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "p", "MetricStat": {"Metric": {"Namespace": namespace, "MetricName": "Latency"},
                                                     "Period": 60, "Stat": "p99"}},
                           {"Id": "s", "MetricStat": {"Metric": {"Namespace": namespace, "MetricName": "Latency"},
                                                     "Period": 60, "Stat": "Sum"}}],
        StartTime=start, EndTime=start + timedelta(minutes=1))
    got = {r["Id"]: r["Values"] for r in result["MetricDataResults"]}
    assert got == {"p": [], "s": [3.0]}


def outbox(twin: Twin) -> list[dict[str, Any]]:
    path = twin.state_dir / "outbox.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_breached_alarm_goes_to_alarm_with_history_and_an_outbox_line(
    aws_twin: Twin, wait_for: Callable[..., Any]
) -> None:
    cloudwatch = aws_twin.client("cloudwatch")
    name = f"t-errors-{uuid.uuid4().hex[:6]}"
    namespace = f"Test/{uuid.uuid4().hex[:8]}"
    cloudwatch.put_metric_alarm(
        AlarmName=name, AlarmDescription="errors", Namespace=namespace, MetricName="Errors", Statistic="Sum",
        Period=10, EvaluationPeriods=1, Threshold=5, ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching", AlarmActions=[TOPIC], OKActions=[TOPIC],
    )
    # The evaluator may already have run between the two calls, so the initial state is read from the
    # history (created in INSUFFICIENT_DATA, then evaluated to OK), never from a racing DescribeAlarms.
    wait_for(lambda: cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] == "OK",
             what="the alarm to evaluate OK without data (notBreaching)")
    first = cloudwatch.describe_alarm_history(AlarmName=name, HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    assert [i["HistorySummary"] for i in first] == ["Alarm updated from INSUFFICIENT_DATA to OK"]

    cloudwatch.put_metric_data(Namespace=namespace, MetricData=[{"MetricName": "Errors", "Values": [4, 3, 2]}])
    alarm = wait_for(lambda: next((a for a in cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
                                   if a["StateValue"] == "ALARM"), None), what="the alarm to fire")
    assert alarm["StateReason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [9.0 (")
    assert json.loads(alarm["StateReasonData"])["recentDatapoints"] == [9.0]

    items = cloudwatch.describe_alarm_history(AlarmName=name)["AlarmHistoryItems"]
    kinds = [(i["HistoryItemType"], i["HistorySummary"]) for i in items]
    assert ("StateUpdate", "Alarm updated from OK to ALARM") in kinds
    assert ("ConfigurationUpdate", f'Alarm "{name}" created') in kinds
    assert ("Action", f"Successfully executed action {TOPIC}") in kinds
    assert [i["Timestamp"] for i in items] == sorted((i["Timestamp"] for i in items), reverse=True)
    update = next(i for i in items if i["HistorySummary"] == "Alarm updated from OK to ALARM")
    data = json.loads(update["HistoryData"])
    assert (data["oldState"]["stateValue"], data["newState"]["stateValue"]) == ("OK", "ALARM")
    only_updates = cloudwatch.describe_alarm_history(AlarmName=name, HistoryItemType="StateUpdate")
    assert {i["HistoryItemType"] for i in only_updates["AlarmHistoryItems"]} == {"StateUpdate"}

    line = wait_for(lambda: next((m for m in outbox(aws_twin)
                                  if m["Subject"] == f'ALARM: "{name}" in Asia Pacific (Tokyo)'), None),
                    what="the notification in the outbox")
    assert line["TopicArn"] == TOPIC and line["Endpoint"] == "oncall@example.com"
    message = json.loads(line["Message"])
    assert (message["AlarmName"], message["NewStateValue"], message["OldStateValue"]) == (name, "ALARM", "OK")
    assert message["Trigger"]["MetricName"] == "Errors" and message["Trigger"]["Statistic"] == "SUM"
    assert message["Region"] == "Asia Pacific (Tokyo)" and message["AWSAccountId"] == "123456789012"


def test_percentile_alarm_and_missing_data(aws_twin: Twin, wait_for: Callable[..., Any]) -> None:
    cloudwatch = aws_twin.client("cloudwatch")
    namespace = f"Test/{uuid.uuid4().hex[:8]}"
    for name, treat in (("t-p99", "notBreaching"), ("t-missing", "missing")):
        cloudwatch.put_metric_alarm(
            AlarmName=name, Namespace=namespace, MetricName="Latency", ExtendedStatistic="p99", Period=10,
            EvaluationPeriods=2, DatapointsToAlarm=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold",
            TreatMissingData=treat,
        )
    wait_for(lambda: {a["AlarmName"]: a["StateValue"] for a in cloudwatch.describe_alarms(
        AlarmNames=["t-p99", "t-missing"])["MetricAlarms"]} == {"t-p99": "OK", "t-missing": "INSUFFICIENT_DATA"},
        what="OK without data (notBreaching) and INSUFFICIENT_DATA (missing)")
    # the average stays far below the threshold; only the tail (p99) crosses it
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=[
        {"MetricName": "Latency", "Values": [0.1, 5.0], "Counts": [98, 2]}])
    alarm = wait_for(lambda: next((a for a in cloudwatch.describe_alarms(AlarmNames=["t-p99"])["MetricAlarms"]
                                   if a["StateValue"] == "ALARM"), None), what="the p99 alarm to fire")
    assert json.loads(alarm["StateReasonData"])["recentDatapoints"] == [
        pytest.approx(float(np.percentile([0.1] * 98 + [5.0] * 2, 99)))]


def test_set_alarm_state_notifies_like_aws(aws_twin: Twin, wait_for: Callable[..., Any]) -> None:
    cloudwatch = aws_twin.client("cloudwatch")
    cloudwatch.set_alarm_state(AlarmName="shipbook-demo-5xx", StateValue="ALARM", StateReason="drill")
    wait_for(lambda: any(m["Subject"] == 'ALARM: "shipbook-demo-5xx" in Asia Pacific (Tokyo)'
                         for m in outbox(aws_twin)), what="the drill notification")
    history = cloudwatch.describe_alarm_history(AlarmName="shipbook-demo-5xx", HistoryItemType="StateUpdate")
    assert any(i["HistorySummary"].endswith("to ALARM") for i in history["AlarmHistoryItems"])
    # the next evaluation brings it back: no errors were published
    wait_for(lambda: cloudwatch.describe_alarms(AlarmNames=["shipbook-demo-5xx"])["MetricAlarms"][0]["StateValue"]
             == "OK", what="the alarm to return to OK")
