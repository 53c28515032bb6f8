"""What the verify phase derives from the validated `[verify]` section (`config.VerifySection`).

The section itself is the one source of the settings; this module holds the rules built on it:
the metrics the judge weighs (`metric_specs`), the smoke tests (`smoke_tests`: the health and
version endpoints when none are configured), the fatal-signature rule (`fatal_rule`), and the
checks config runs when it loads a file (`check`). `SANDBOX` mirrors environments/sandbox.toml's
compressed windows for the tests and the bench: the twin publishes 1-second datapoints, so
two-minute windows carry as many points as an hour of 1-minute data.
"""

from __future__ import annotations

from shipbook.config import SmokeTestSection, VerifySection
from shipbook.errors import InputError
from shipbook.verify.decision import FatalRule
from shipbook.verify.judge import RATE, SHIFT, TRAFFIC, MetricSpec, check_specs

# When the environment names no smoke tests: the two endpoints every deployed app has here.
DEFAULT_SMOKE = (SmokeTestSection("{health_path}", name="health endpoint"),
                 SmokeTestSection("{version_path}", text="{version}", name="version endpoint"))

# The sandbox's compressed windows, as environments/sandbox.toml sets them (used by tests and the bench).
SANDBOX = VerifySection(baseline_seconds=120, canary_seconds=120, period=1, settle_seconds=15,
                        publish_lag_seconds=4, latency_floor_ms=0.5, fatal_signature_seconds=60,
                        fatal_signature_bucket_seconds=15)


def smoke_tests(v: VerifySection) -> tuple[SmokeTestSection, ...]:
    """The configured smoke tests; with none, the health and version endpoints are still tested."""
    return tuple(v.smoke) or DEFAULT_SMOKE


def fatal_rule(v: VerifySection) -> FatalRule:
    """When a NEW error signature counts as a fatal bug (see `decision.fatal_signatures`): sustained for
    `fatal_signature_seconds`, or for all the logs read after the deploy (settle + canary) if shorter."""
    window = max(v.fatal_signature_bucket_seconds, v.settle_seconds + v.canary_seconds)
    return FatalRule(v.fatal_signature_per_minute, min(v.fatal_signature_seconds, window),
                     v.fatal_signature_bucket_seconds)


def wait_seconds(v: VerifySection) -> int:
    """From the deploy's finish to the moment the canary window can be read."""
    return v.settle_seconds + v.canary_seconds + v.publish_lag_seconds


def metric_specs(v: VerifySection) -> list[MetricSpec]:
    """The metrics judged, in the order of the reasons table."""
    lat = dict(kind=SHIFT, tolerance=v.latency_tolerance, floor=v.latency_floor_ms / 1000.0,
               min_points=v.min_points, no_data=v.no_data, unit="ms", scale=1000.0)
    return [
        MetricSpec("latency_p50", "latency p50", **lat),  # type: ignore[arg-type]
        MetricSpec("latency_p95", "latency p95", **lat),  # type: ignore[arg-type]
        MetricSpec("latency_p99", "latency p99", **lat),  # type: ignore[arg-type]
        MetricSpec("error_rate", "5xx rate", kind=RATE, tolerance=v.error_rate_tolerance,
                   numerator="errors_5xx", denominator="requests", min_points=v.min_points,
                   no_data=v.no_data, missing_is_zero=True),
        MetricSpec("requests", "request count", kind=TRAFFIC, tolerance=v.min_traffic_ratio,
                   denominator="requests", min_points=v.min_points, unit="per period"),
        MetricSpec("cpu", "CPU", kind=SHIFT, tolerance=v.cpu_tolerance, floor=v.cpu_floor,
                   min_points=v.min_points, no_data=v.no_data, unit="%"),
        MetricSpec("memory", "memory", kind=SHIFT, tolerance=v.memory_tolerance, floor=v.memory_floor,
                   min_points=v.min_points, no_data=v.no_data, unit="%"),
    ]


def check(v: VerifySection) -> None:
    """Settings under which verify could not do its job. Raises InputError naming the setting."""
    if v.period <= 0 or v.baseline_seconds < v.period or v.canary_seconds < v.period:
        raise InputError("verify.period", "must be positive and each window at least one period long")
    check_specs(metric_specs(v), v.alpha)
