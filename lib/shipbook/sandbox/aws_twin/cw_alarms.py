"""CloudWatch alarm evaluation, alarm history and alarm notifications.

moto 5.2.5 never evaluates an alarm (it stays OK), keeps no history and does not implement
DescribeAlarmHistory. Here, on every tick of the server's ticker:

- each metric alarm is evaluated against the stored metric data: the datapoints of its last
  `EvaluationPeriods` periods (aligned to the period; the current period counts once it has
  data), the alarm's `Statistic` or `ExtendedStatistic`, `ComparisonOperator`, `Threshold`,
  `DatapointsToAlarm` (M of N) and `TreatMissingData` (missing, ignore, breaching, notBreaching);
- a change of state records a StateUpdate history item and runs the actions of the new state:
  each SNS topic gets the JSON message CloudWatch sends (delivered to the outbox by
  `sns_outbox`), recorded as an Action history item;
- creating, updating and deleting an alarm records ConfigurationUpdate items; SetAlarmState
  goes through the same transition (so it notifies, as on AWS).

New alarms start INSUFFICIENT_DATA and an updated alarm keeps its state, as on AWS. Composite
and metric-math alarms are stored but not evaluated.
"""

from __future__ import annotations

import json
import logging
import operator
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.cloudwatch.models import Alarm, CloudWatchBackend, MetricDatumBase, cloudwatch_backends
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sns.exceptions import SNSException
from moto.sns.models import sns_backends

from .cw_percentiles import statistic
from .state import ACCOUNT_ID, REGION, REGION_TITLE

log = logging.getLogger(__name__)

_COMPARE: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
_REGION_TITLES = {REGION: REGION_TITLE, "us-east-1": "US East (N. Virginia)"}
_EPOCH = datetime(1970, 1, 1)
_STALE_RUN = 500


# ------------------------------------------------------------------ time helpers
def naive_utc(value: datetime) -> datetime:
    """moto stores naive UTC datetimes; requests may carry aware ones."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _iso(value: datetime) -> str:
    return naive_utc(value).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def _short(value: datetime) -> str:
    return naive_utc(value).strftime("%d/%m/%y %H:%M:%S")


def _fmt(value: float) -> str:
    return repr(float(value))


# ------------------------------------------------------------------------ history
def history(backend: CloudWatchBackend) -> list[dict[str, Any]]:
    """The backend's alarm history (kept across alarm updates and deletion, as on AWS)."""
    if not hasattr(backend, "sandbox_history"):
        backend.sandbox_history = []
    return backend.sandbox_history  # type: ignore[no-any-return]


def _record(backend: CloudWatchBackend, alarm: Alarm, kind: str, summary: str, data: dict[str, Any]) -> None:
    history(backend).append(
        {
            "AlarmName": alarm.name,
            "AlarmType": "CompositeAlarm" if alarm.rule else "MetricAlarm",
            "Timestamp": utcnow(),
            "HistoryItemType": kind,
            "HistorySummary": summary,
            "HistoryData": json.dumps(data),
        }
    )


def _alarm_config(alarm: Alarm) -> dict[str, Any]:
    return {
        "alarmName": alarm.name,
        "alarmArn": alarm.alarm_arn,
        "namespace": alarm.namespace,
        "metricName": alarm.metric_name,
        "dimensions": [{"name": d.name, "value": d.value} for d in alarm.dimensions],
        "statistic": alarm.statistic,
        "extendedStatistic": alarm.extended_statistic,
        "period": alarm.period,
        "evaluationPeriods": alarm.evaluation_periods,
        "datapointsToAlarm": alarm.datapoints_to_alarm,
        "threshold": alarm.threshold,
        "comparisonOperator": alarm.comparison_operator,
        "treatMissingData": alarm.treat_missing_data,
        "actionsEnabled": alarm.actions_enabled,
        "alarmActions": alarm.alarm_actions,
        "okActions": alarm.ok_actions,
        "insufficientDataActions": alarm.insufficient_data_actions,
    }


# ---------------------------------------------------------------- notifications
def alarm_message(alarm: Alarm, old_state: str) -> dict[str, Any]:
    """The JSON document CloudWatch publishes to SNS on a state change."""
    percentile = alarm.extended_statistic
    return {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": ACCOUNT_ID,
        "AlarmConfigurationUpdatedTimestamp": _iso(alarm.configuration_updated_timestamp),
        "NewStateValue": alarm.state_value,
        "NewStateReason": alarm.state_reason,
        "StateChangeTime": _iso(alarm.state_updated_timestamp),
        "Region": _REGION_TITLES.get(alarm.region_name, alarm.region_name),
        "AlarmArn": alarm.alarm_arn,
        "OldStateValue": old_state,
        "OKActions": list(alarm.ok_actions),
        "AlarmActions": list(alarm.alarm_actions),
        "InsufficientDataActions": list(alarm.insufficient_data_actions),
        "Trigger": {
            "MetricName": alarm.metric_name,
            "Namespace": alarm.namespace,
            "StatisticType": "ExtendedStatistic" if percentile else "Statistic",
            "Statistic": percentile if percentile else str(alarm.statistic or "").upper(),
            "Unit": alarm.unit,
            "Dimensions": [{"value": d.value, "name": d.name} for d in alarm.dimensions],
            "Period": alarm.period,
            "EvaluationPeriods": alarm.evaluation_periods,
            "DatapointsToAlarm": alarm.datapoints_to_alarm or alarm.evaluation_periods,
            "ComparisonOperator": alarm.comparison_operator,
            "Threshold": alarm.threshold,
            "TreatMissingData": alarm.treat_missing_data or "missing",
            "EvaluateLowSampleCountPercentile": alarm.evaluate_low_sample_count_percentile or "",
        },
    }


def _run_actions(backend: CloudWatchBackend, alarm: Alarm, old_state: str) -> None:
    actions = {
        "ALARM": alarm.alarm_actions,
        "OK": alarm.ok_actions,
        "INSUFFICIENT_DATA": alarm.insufficient_data_actions,
    }.get(alarm.state_value, [])
    if not alarm.actions_enabled:
        return
    region_title = _REGION_TITLES.get(alarm.region_name, alarm.region_name)
    subject = f'{alarm.state_value}: "{alarm.name}" in {region_title}'[:100]
    for arn in actions:
        if ":sns:" not in arn:
            log.debug("alarm %s: action %s is not an SNS topic; skipped", alarm.name, arn)
            continue
        message = json.dumps(alarm_message(alarm, old_state))
        region = arn.split(":")[3]
        try:
            message_id = sns_backends[ACCOUNT_ID][region].publish(message, arn=arn, subject=subject)
        except SNSException as exc:
            _record(backend, alarm, "Action", f"Failed to execute action {arn}",
                    {"actionState": "Failed", "notificationResource": arn, "error": str(exc)})
            log.warning("alarm %s: publishing to %s failed: %s", alarm.name, arn, exc)
            continue
        _record(
            backend,
            alarm,
            "Action",
            f"Successfully executed action {arn}",
            {
                "actionState": "Succeeded",
                "stateUpdateTimestamp": int(naive_utc(alarm.state_updated_timestamp).replace(tzinfo=UTC).timestamp()
                                            * 1000),
                "notificationResource": arn,
                "publishedMessage": {"messageId": message_id},
            },
        )


def transition(backend: CloudWatchBackend, alarm: Alarm, state: str, reason: str, reason_data: str) -> None:
    """Move the alarm to `state`: history item, then the new state's actions."""
    old_state, old_reason = alarm.state_value, alarm.state_reason
    alarm.update_state(reason, reason_data, state)
    try:
        parsed_data: Any = json.loads(reason_data) if reason_data else None
    except ValueError:
        parsed_data = reason_data
    new_state: dict[str, Any] = {"stateValue": state, "stateReason": reason}
    if parsed_data:
        new_state["stateReasonData"] = parsed_data
    _record(
        backend,
        alarm,
        "StateUpdate",
        f"Alarm updated from {old_state} to {state}",
        {"version": "1.0", "oldState": {"stateValue": old_state, "stateReason": old_reason}, "newState": new_state},
    )
    log.info("alarm %s: %s -> %s (%s)", alarm.name, old_state, state, reason)
    _run_actions(backend, alarm, old_state)


# ------------------------------------------------------------------- evaluation
SeriesKey = tuple[str, str, tuple[tuple[str, str], ...]]


class _SeriesIndex:
    """moto keeps all metric data in one growing list; index it per series, incrementally.

    Each tick only the datums appended since the last tick are read, so evaluating the alarms
    stays cheap while the traffic generator publishes a value per request for hours.
    """

    def __init__(self) -> None:
        self.seen = 0
        self.source: list[MetricDatumBase] | None = None
        self.series: dict[SeriesKey, list[MetricDatumBase]] = {}

    @staticmethod
    def key(namespace: str, name: str, dimensions: Iterable[Any]) -> SeriesKey:
        return namespace, name, tuple(sorted((d.name, d.value) for d in dimensions))

    def data(self, backend: CloudWatchBackend, alarm: Alarm) -> list[MetricDatumBase]:
        source = backend.metric_data
        if source is not self.source or len(source) < self.seen:  # a reset backend: start over
            self.source, self.seen, self.series = source, 0, {}
        for datum in source[self.seen :]:
            self.series.setdefault(self.key(datum.namespace, datum.name, datum.dimensions), []).append(datum)
        self.seen = len(source)
        found = self.series.get(self.key(alarm.namespace, alarm.metric_name, alarm.dimensions), [])
        return [d for d in found if d.unit == alarm.unit] if alarm.unit else found


_INDEX = _SeriesIndex()


def _windows(alarm: Alarm, data: Sequence[MetricDatumBase], now: datetime) -> list[tuple[datetime, list[Any]]]:
    """The alarm's N evaluation periods, oldest first, each with its datapoints.

    `data` is in arrival order, which follows time closely, so it is read from the newest end and
    the scan stops after a run of datums older than the window (late data within the window is
    still found unless `_STALE_RUN` older datums arrived after it).
    """
    period = int(alarm.period)
    count = int(alarm.evaluation_periods)
    current_epoch = int((now - _EPOCH).total_seconds()) // period * period
    first_epoch = current_epoch - period * (count - 1)
    low, high = first_epoch - period, current_epoch + period
    buckets: dict[int, list[Any]] = {}
    stale = 0
    for datum in reversed(data):
        ts = datum.timestamp if datum.timestamp.tzinfo is None else naive_utc(datum.timestamp)
        seconds = (ts - _EPOCH).total_seconds()
        if seconds < low:
            stale += 1
            if stale >= _STALE_RUN:
                break
            continue
        stale = 0
        if seconds < high:
            buckets.setdefault(int(seconds) // period * period, []).append(datum)
    if current_epoch not in buckets:  # the current period has no data yet: look at the N before it
        current_epoch -= period
    starts = [current_epoch - period * i for i in reversed(range(count))]
    return [(_EPOCH + timedelta(seconds=start), buckets.get(start, [])) for start in starts]


def evaluate(backend: CloudWatchBackend, alarm: Alarm, now: datetime | None = None) -> tuple[str, str, str] | None:
    """The state the alarm should be in now, with reason and reason data; None if not evaluable."""
    if alarm.rule or alarm.metric_data_queries or not alarm.period or alarm.comparison_operator not in _COMPARE:
        return None
    now = naive_utc(now or utcnow())
    stat = alarm.extended_statistic or alarm.statistic
    if not stat:
        return None
    compare, words = _COMPARE[alarm.comparison_operator]
    threshold = float(alarm.threshold)
    needed = int(alarm.datapoints_to_alarm or alarm.evaluation_periods)
    windows = _windows(alarm, _INDEX.data(backend, alarm), now)
    points = [(start, statistic(data, stat), len(data)) for start, data in windows]
    present = [(start, value, n) for start, value, n in points if value is not None]
    missing = len(points) - len(present)
    treat = alarm.treat_missing_data or "missing"
    reason_data = json.dumps(
        {
            "version": "1.0",
            "queryDate": _iso(now),
            "startDate": _iso(points[0][0]),
            ("unit" if alarm.unit else "statistic"): alarm.unit or stat,
            "period": int(alarm.period),
            "recentDatapoints": [value for _, value, _ in present],
            "threshold": threshold,
            "evaluatedDatapoints": [
                {"timestamp": _iso(start), "sampleCount": float(n), "value": value}
                for start, value, n in reversed(present)
            ],
        }
    )
    if not present:
        if treat == "breaching":
            state = "ALARM"
        elif treat == "notBreaching":
            state = "OK"
        elif treat == "ignore":
            return None
        else:
            return "INSUFFICIENT_DATA", f"Insufficient Data: {missing} datapoints were unknown.", reason_data
        label = "[Breaching]" if state == "ALARM" else "[NonBreaching]"
        reason = (f"Threshold Crossed: no datapoints were received for {missing} periods and {missing} "
                  f"missing datapoints were treated as {label}.")
        return state, reason, reason_data
    breaching = [(start, value) for start, value, _ in present if compare(float(value), threshold)]
    bad = len(breaching) + (missing if treat == "breaching" else 0)
    listed = ", ".join(f"{_fmt(value)} ({_short(start)})" for start, value, _ in reversed(present))
    if bad >= needed:
        verb = "was" if bad == 1 else "were"
        reason = (f"Threshold Crossed: {bad} out of the last {len(points)} datapoints [{listed}] {verb} {words} "
                  f"the threshold ({_fmt(threshold)}) (minimum {needed} datapoint"
                  f"{'' if needed == 1 else 's'} for OK -> ALARM transition).")
        return "ALARM", reason, reason_data
    ok = len(present) - len(breaching)
    verb = "was" if ok == 1 else "were"
    reason = (f"Threshold Crossed: {ok} out of the last {len(points)} datapoints [{listed}] {verb} not {words} "
              f"the threshold ({_fmt(threshold)}) (minimum {needed} datapoint"
              f"{'' if needed == 1 else 's'} for ALARM -> OK transition).")
    return "OK", reason, reason_data


def tick(now: datetime | None = None) -> None:
    """Evaluate every alarm of the twin's region (the ticker holds `TWIN.lock`)."""
    backend = cloudwatch_backends[ACCOUNT_ID][REGION]
    for alarm in list(backend.alarms.values()):
        verdict = evaluate(backend, alarm, now)
        if verdict and verdict[0] != alarm.state_value:
            transition(backend, alarm, *verdict)


# ---------------------------------------------------------------- moto patches
_original_put_metric_alarm = CloudWatchBackend.put_metric_alarm
_original_delete_alarms = CloudWatchBackend.delete_alarms


def _put_metric_alarm(self: CloudWatchBackend, *args: Any, **kwargs: Any) -> Alarm:
    name = kwargs.get("name", args[0] if args else None)
    previous = self.alarms.get(name) if name else None
    alarm = _original_put_metric_alarm(self, *args, **kwargs)
    if previous is not None:
        alarm.state_value = previous.state_value
        alarm.state_reason = previous.state_reason
        alarm.state_reason_data = previous.state_reason_data
        alarm.state_updated_timestamp = previous.state_updated_timestamp
        alarm.history = previous.history
        _record(self, alarm, "ConfigurationUpdate", f'Alarm "{alarm.name}" updated',
                {"version": "1.0", "type": "Update", "updatedAlarm": _alarm_config(alarm)})
    else:
        alarm.state_value = "INSUFFICIENT_DATA"
        alarm.state_reason = "Unchecked: Initial alarm creation"
        _record(self, alarm, "ConfigurationUpdate", f'Alarm "{alarm.name}" created',
                {"version": "1.0", "type": "Create", "createdAlarm": _alarm_config(alarm)})
    return alarm


def _delete_alarms(self: CloudWatchBackend, alarm_names: list[str]) -> None:
    for name in alarm_names:
        alarm = self.alarms.get(name)
        if alarm is not None:
            _record(self, alarm, "ConfigurationUpdate", f'Alarm "{name}" deleted',
                    {"version": "1.0", "type": "Delete", "deletedAlarm": _alarm_config(alarm)})
    _original_delete_alarms(self, alarm_names)


_original_set_alarm_state = CloudWatchBackend.set_alarm_state


def _set_alarm_state(self: CloudWatchBackend, alarm_name: str, reason: str, reason_data: str,
                     state_value: str) -> None:
    """moto's validation, then a real transition (history and actions)."""
    alarm = self.alarms.get(alarm_name)
    try:
        valid = reason_data is None or json.loads(reason_data) is not None
    except ValueError:
        valid = False
    if alarm is None or not valid or state_value not in ("OK", "ALARM", "INSUFFICIENT_DATA"):
        _original_set_alarm_state(self, alarm_name, reason, reason_data, state_value)  # raises moto's error
        return
    if state_value != alarm.state_value:
        transition(self, alarm, state_value, reason, reason_data or "")


def _describe_alarm_history(self: CloudWatchResponse) -> ActionResult:
    """DescribeAlarmHistory in AWS's shape, newest first unless ScanBy=TimestampAscending."""
    name = self._get_param("AlarmName")
    kinds = self._get_param("AlarmTypes") or ["MetricAlarm", "CompositeAlarm"]
    item_type = self._get_param("HistoryItemType")
    start, end = self._get_param("StartDate"), self._get_param("EndDate")
    limit = int(self._get_param("MaxRecords") or 100)
    offset = int(self._get_param("NextToken") or 0)
    items = [
        item
        for item in history(self.cloudwatch_backend)
        if (not name or item["AlarmName"] == name)
        and item["AlarmType"] in kinds
        and (not item_type or item["HistoryItemType"] == item_type)
        and (start is None or item["Timestamp"] >= naive_utc(start))
        and (end is None or item["Timestamp"] <= naive_utc(end))
    ]
    items.sort(key=lambda item: item["Timestamp"], reverse=self._get_param("ScanBy") != "TimestampAscending")
    page = items[offset : offset + limit]
    next_token = str(offset + limit) if offset + limit < len(items) else None
    return ActionResult({"AlarmHistoryItems": page, "NextToken": next_token})


def install() -> None:
    """Patch moto's alarm storage and add DescribeAlarmHistory."""
    CloudWatchBackend.put_metric_alarm = _put_metric_alarm  # type: ignore[method-assign]
    CloudWatchBackend.delete_alarms = _delete_alarms  # type: ignore[method-assign]
    CloudWatchBackend.set_alarm_state = _set_alarm_state  # type: ignore[method-assign]
    CloudWatchResponse.describe_alarm_history = _describe_alarm_history  # type: ignore[attr-defined]


__all__ = ["alarm_message", "evaluate", "history", "install", "tick", "transition"]
