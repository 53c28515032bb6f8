"""Settings of the verify phase: windows, tolerances, smoke tests, expected alarms.

They come from the environment file's `[verify]` section (read by field name). The sandbox's
file compresses the windows (`SANDBOX` below mirrors it): the twin publishes 1-second
datapoints, so two-minute windows carry as many points as an hour of 1-minute data.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from shipbook.errors import InputError
from shipbook.verify.decision import FatalRule
from shipbook.verify.judge import RATE, SHIFT, TRAFFIC, MetricSpec, check_specs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmokeTest:
    """One request of the smoke test list: what must come back. `{version}` in `text` is the release."""

    path: str
    method: str = "GET"
    status: int = 200
    text: str = ""
    name: str = ""

    @property
    def title(self) -> str:
        return self.name or f"{self.method} {self.path}"


# When the environment names no smoke tests: the two endpoints every deployed app has here.
DEFAULT_SMOKE = (SmokeTest("{health_path}", name="health endpoint"),
                 SmokeTest("{version_path}", text="{version}", name="version endpoint"))


@dataclass(frozen=True)
class VerifySettings:
    """Everything the verify phase is parameterised by. Times in seconds."""

    baseline_seconds: int = 1800
    canary_seconds: int = 1800
    period: int = 60
    settle_seconds: int = 120  # after the deploy finished, before the canary window opens
    publish_lag_seconds: int = 180  # how long CloudWatch may take to have a period's datapoint
    alpha: float = 0.01
    min_points: int = 10
    latency_tolerance: float = 0.20
    latency_floor_ms: float = 5.0
    error_rate_tolerance: float = 0.005  # absolute: 0.005 = 0.5 points of 5xx per request
    cpu_tolerance: float = 0.5
    cpu_floor: float = 10.0  # percentage points
    memory_tolerance: float = 0.25
    memory_floor: float = 5.0
    min_traffic_ratio: float = 0.5
    no_data: str = "inconclusive"
    smoke: tuple[SmokeTest, ...] = DEFAULT_SMOKE
    alarms: tuple[str, ...] = ()  # expected alarm names; empty: the stack's alarms by dimension
    log_filter: str = "?ERROR ?CRITICAL ?Traceback ?Exception"
    max_log_events: int = 20_000
    # A NEW error signature is a fatal bug when each bucket of a run this long holds this many lines a minute.
    fatal_signature_per_minute: float = 10.0  # 0: off
    fatal_signature_seconds: int = 300
    fatal_signature_bucket_seconds: int = 60
    http_timeout: float = 10.0
    tls_warn_days: int = 21
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.period <= 0 or self.baseline_seconds < self.period or self.canary_seconds < self.period:
            raise InputError("verify", "period must be positive and each window at least one period long")
        if self.fatal_signature_per_minute < 0 or self.fatal_signature_bucket_seconds <= 0 \
                or self.fatal_signature_seconds < self.fatal_signature_bucket_seconds:
            raise InputError("verify", "fatal_signature_per_minute must not be negative, "
                             "fatal_signature_bucket_seconds must be positive and fatal_signature_seconds "
                             "at least one bucket")
        check_specs(self.metric_specs(), self.alpha)

    @property
    def fatal_rule(self) -> FatalRule:
        """When a NEW error signature counts as a fatal bug (see `decision.fatal_signatures`): sustained for
        `fatal_signature_seconds`, or for all the logs read after the deploy (settle + canary) if shorter."""
        window = max(self.fatal_signature_bucket_seconds, self.settle_seconds + self.canary_seconds)
        return FatalRule(self.fatal_signature_per_minute, min(self.fatal_signature_seconds, window),
                         self.fatal_signature_bucket_seconds)

    @property
    def wait_seconds(self) -> int:
        """From the deploy's finish to the moment the canary window can be read."""
        return self.settle_seconds + self.canary_seconds + self.publish_lag_seconds

    def metric_specs(self) -> list[MetricSpec]:
        """The metrics judged, in the order of the reasons table."""
        lat = dict(kind=SHIFT, tolerance=self.latency_tolerance, floor=self.latency_floor_ms / 1000.0,
                   min_points=self.min_points, no_data=self.no_data, unit="ms", scale=1000.0)
        return [
            MetricSpec("latency_p50", "latency p50", **lat),  # type: ignore[arg-type]
            MetricSpec("latency_p95", "latency p95", **lat),  # type: ignore[arg-type]
            MetricSpec("latency_p99", "latency p99", **lat),  # type: ignore[arg-type]
            MetricSpec("error_rate", "5xx rate", kind=RATE, tolerance=self.error_rate_tolerance,
                       numerator="errors_5xx", denominator="requests", min_points=self.min_points,
                       no_data=self.no_data, missing_is_zero=True),
            MetricSpec("requests", "request count", kind=TRAFFIC, tolerance=self.min_traffic_ratio,
                       denominator="requests", min_points=self.min_points, unit="per period"),
            MetricSpec("cpu", "CPU", kind=SHIFT, tolerance=self.cpu_tolerance, floor=self.cpu_floor,
                       min_points=self.min_points, no_data=self.no_data, unit="%"),
            MetricSpec("memory", "memory", kind=SHIFT, tolerance=self.memory_tolerance, floor=self.memory_floor,
                       min_points=self.min_points, no_data=self.no_data, unit="%"),
        ]


# The sandbox's compressed windows, as environments/sandbox.toml sets them (used by tests and the bench).
SANDBOX = VerifySettings(baseline_seconds=120, canary_seconds=120, period=1, settle_seconds=15,
                         publish_lag_seconds=4, latency_floor_ms=0.5, fatal_signature_seconds=60,
                         fatal_signature_bucket_seconds=15)


def from_env(env: Any) -> VerifySettings:
    """The environment's `[verify]` section by field name; else the defaults (see the module docstring)."""
    section = getattr(env, "verify", None)
    if section is None or not dataclasses.is_dataclass(section):
        return VerifySettings()
    names = {f.name for f in dataclasses.fields(VerifySettings)}
    values: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        if f.name not in names:
            continue
        value = getattr(section, f.name)
        if f.name == "smoke" and not value:
            continue  # no smoke tests configured: the health and version endpoints still are
        if f.name == "smoke":
            value = tuple(SmokeTest(**{k.name: getattr(t, k.name) for k in dataclasses.fields(t)})
                          if dataclasses.is_dataclass(t) else SmokeTest(**t) for t in value)
        values[f.name] = value
    return VerifySettings(**values)
