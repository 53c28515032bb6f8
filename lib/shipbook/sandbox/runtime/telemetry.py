"""What the ALB and ECS would publish: 1-second CloudWatch metrics and the tasks' log lines.

AWS/ApplicationELB (dimensions LoadBalancer, TargetGroup): TargetResponseTime (one value per
request, seconds), RequestCount, HTTPCode_Target_{2XX,4XX,5XX}_Count, HTTPCode_ELB_5XX_Count.
AWS/ECS (dimensions ClusterName, ServiceName): CPUUtilization, MemoryUtilization of the running
tasks (percent of the task definition's cpu/memory reservation, averaged over tasks).
Logs: CloudWatch Logs group /ecs/demo-web, stream web/web/<task-id>.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shipbook.sandbox.runtime.aws import CLUSTER, LOG_GROUP, SERVICE, TARGET_GROUP, client
from shipbook.sandbox.runtime.tasks import Task

logger = logging.getLogger(__name__)

MAX_VALUES_PER_DATUM = 150
MAX_EVENTS_PER_PUT = 5000
ECS_METRICS = ("CPUUtilization", "MemoryUtilization")


@dataclass
class Second:
    """What the ALB saw during one second."""

    latencies: list[float] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class Recorder:
    """Per-second buckets of requests, filled by the proxy, drained by the publisher."""

    buckets: dict[int, Second] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, started: float, latency: float | None, status: int, from_target: bool) -> None:
        """One request that started at wall time `started`; latency None when no target answered."""
        second = int(started)
        with self.lock:
            bucket = self.buckets.setdefault(second, Second())
            if from_target and latency is not None:
                bucket.latencies.append(latency)
                bucket.codes[f"HTTPCode_Target_{status // 100}XX_Count"] += 1
            elif status >= 500:
                bucket.codes["HTTPCode_ELB_5XX_Count"] += 1
            bucket.codes["RequestCount"] += 1

    def take(self, before: int) -> dict[int, Second]:
        """Remove and return the buckets of the seconds before `before`."""
        with self.lock:
            done = {s: b for s, b in self.buckets.items() if s < before}
            for s in done:
                del self.buckets[s]
        return done


@dataclass
class LogBuffer:
    """Lines of the tasks' output waiting to be shipped, per log stream."""

    lines: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, task: Task, line: str) -> None:
        if not line.strip():
            return
        with self.lock:
            self.lines[task.stream].append((int(time.time() * 1000), line))

    def take(self) -> dict[str, list[tuple[int, str]]]:
        with self.lock:
            taken, self.lines = self.lines, defaultdict(list)
        return taken


def dimension_values(elbv2: Any) -> tuple[str, str]:
    """(LoadBalancer, TargetGroup) dimension values: the ARN suffixes CloudWatch uses."""
    tg = elbv2.describe_target_groups(Names=[TARGET_GROUP])["TargetGroups"][0]
    tg_value = tg["TargetGroupArn"].split(":", 5)[5]
    lb_arns = tg.get("LoadBalancerArns") or []
    lb_value = lb_arns[0].split(":", 5)[5].removeprefix("loadbalancer/") if lb_arns else "app/shipbook-demo-alb/0"
    return lb_value, tg_value


@dataclass
class Publisher:
    """Once a second: PutMetricData for the finished seconds, PutLogEvents for the new lines."""

    aws_url: str
    recorder: Recorder
    logs: LogBuffer
    tasks: Callable[[], list[Task]]
    interval: float = 1.0
    _streams: set[str] = field(default_factory=set)
    _dimensions: tuple[str, str] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _warned: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.cloudwatch = client("cloudwatch", self.aws_url)
        self.cwlogs = client("logs", self.aws_url)
        self.elbv2 = client("elbv2", self.aws_url)

    def run(self) -> None:
        while not self._stop.wait(self.interval - (time.time() % self.interval)):
            self.flush()
        self.flush(final=True)

    def stop(self) -> None:
        self._stop.set()

    def flush(self, final: bool = False) -> None:
        now = time.time()
        cutoff = int(now) + 1 if final else int(now)
        try:
            self._metrics(self.recorder.take(cutoff), now)
            self._logs(self.logs.take())
        except (ClientError, BotoCoreError) as error:
            self._warn(type(error).__name__, f"publishing to the AWS twin failed: {error}")

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("%s", message)

    def _alb_dimensions(self) -> list[dict[str, str]] | None:
        if self._dimensions is None:
            try:
                self._dimensions = dimension_values(self.elbv2)
            except (ClientError, BotoCoreError, IndexError) as error:
                self._warn("tg", f"target group {TARGET_GROUP} not found yet: {error}")
                return None
        lb, tg = self._dimensions
        return [{"Name": "LoadBalancer", "Value": lb}, {"Name": "TargetGroup", "Value": tg}]

    def _metrics(self, seconds: dict[int, Second], now: float) -> None:
        data: list[dict[str, Any]] = []
        alb = self._alb_dimensions()
        if alb is not None:
            for second, bucket in sorted(seconds.items()):
                stamp = datetime.fromtimestamp(second, tz=UTC)
                common = {"Dimensions": alb, "Timestamp": stamp, "StorageResolution": 1}
                for start in range(0, len(bucket.latencies), MAX_VALUES_PER_DATUM):
                    chunk = bucket.latencies[start : start + MAX_VALUES_PER_DATUM]
                    data.append({"MetricName": "TargetResponseTime", "Unit": "Seconds",
                                 "Values": [round(v, 6) for v in chunk], **common})
                for name in ("RequestCount", "HTTPCode_Target_5XX_Count"):
                    data.append({"MetricName": name, "Unit": "Count", "Value": float(bucket.codes.get(name, 0)),
                                 **common})
                for name in ("HTTPCode_Target_2XX_Count", "HTTPCode_Target_4XX_Count", "HTTPCode_ELB_5XX_Count"):
                    if bucket.codes.get(name):
                        data.append({"MetricName": name, "Unit": "Count", "Value": float(bucket.codes[name]),
                                     **common})
        usage = [u for u in (t.usage(time.monotonic()) for t in self.tasks()) if u is not None]
        if usage:
            ecs = {"Dimensions": [{"Name": "ClusterName", "Value": CLUSTER}, {"Name": "ServiceName", "Value": SERVICE}],
                   "Timestamp": datetime.fromtimestamp(int(now), tz=UTC), "StorageResolution": 1, "Unit": "Percent"}
            cpu = round(sum(u[0] for u in usage) / len(usage), 3)
            memory = round(sum(u[1] for u in usage) / len(usage), 3)
            data.append({"MetricName": "CPUUtilization", "Value": cpu, **ecs})
            data.append({"MetricName": "MemoryUtilization", "Value": memory, **ecs})
        for namespace in ("AWS/ApplicationELB", "AWS/ECS"):
            batch = [d for d in data if (d["MetricName"] in ECS_METRICS) == (namespace == "AWS/ECS")]
            for start in range(0, len(batch), 20):
                self.cloudwatch.put_metric_data(Namespace=namespace, MetricData=batch[start : start + 20])

    def _logs(self, streams: dict[str, list[tuple[int, str]]]) -> None:
        for stream, events in streams.items():
            if not events:
                continue
            self._ensure_stream(stream)
            events.sort(key=lambda e: e[0])
            for start in range(0, len(events), MAX_EVENTS_PER_PUT):
                chunk = events[start : start + MAX_EVENTS_PER_PUT]
                self.cwlogs.put_log_events(
                    logGroupName=LOG_GROUP, logStreamName=stream,
                    logEvents=[{"timestamp": ts, "message": message[:200_000]} for ts, message in chunk],
                )

    def _ensure_stream(self, stream: str) -> None:
        if stream in self._streams:
            return
        try:
            self.cwlogs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == "ResourceNotFoundException":
                self.cwlogs.create_log_group(logGroupName=LOG_GROUP)
                self.cwlogs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
            elif code != "ResourceAlreadyExistsException":
                raise
        self._streams.add(stream)
