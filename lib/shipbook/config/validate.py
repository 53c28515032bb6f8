"""Checks of a loaded environment beyond types: values with a grammar, ranges, and what must go together.

Each failure is a ConfigError naming `file: key: reason`.
"""

from __future__ import annotations

import ipaddress
import re
import string

from shipbook.config.sections import SANDBOX_ACCOUNT, Environment, PrecheckSection, VerifySection
from shipbook.errors import ConfigError
from shipbook.loopback import is_local_url

# --------------------------------------------------------------------------- values with a grammar

INGRESS_ROLES = ("alb", "app", "db")
_INGRESS_PROTOCOLS = ("tcp", "udp", "icmp", "icmpv6", "-1")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MATCHER = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")
_SNS_TOPIC = re.compile(r"(arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:)?[A-Za-z0-9_-]{1,256}(\.fifo)?")


def parse_ingress(text: str) -> tuple[str, str, int | str, int | str, str]:
    """`"app tcp/container alb"` → (group, protocol, from port, to port, source); ValueError says why not.

    Here rather than in `checks.network` so that a typo in `precheck.allowed_ingress` stops the load
    with `file: key: reason` like any other key; `network.Allowance.parse` reads rules through it.
    """
    parts = text.split()
    if len(parts) != 3 or "/" not in parts[1]:
        raise ValueError(f"{text!r}: expected '<alb|app|db> <proto>/<port[-port]|container> <source>'")
    group, (proto, ports), source = parts[0], parts[1].split("/", 1), parts[2]
    if group not in INGRESS_ROLES:
        raise ValueError(f"{text!r}: the group must be one of {', '.join(INGRESS_ROLES)}")
    proto = proto.lower()
    if proto not in _INGRESS_PROTOCOLS and not (proto.isdigit() and int(proto) <= 255):
        raise ValueError(f"{text!r}: the protocol must be tcp, udp, icmp, icmpv6, -1 (all) or a protocol number")
    lo, _, hi = ports.partition("-")
    low: int | str = "container"
    high: int | str = "container"
    if lo == "container":
        if hi:
            raise ValueError(f"{text!r}: 'container' is one port, not the start of a range")
    else:
        try:
            low, high = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"{text!r}: bad port {ports!r}") from None
        if not 0 <= low <= high <= 65535:
            raise ValueError(f"{text!r}: bad port range {ports!r} (0-65535, low to high)")
    if source not in ("world", *INGRESS_ROLES):
        try:
            ipaddress.ip_network(source, strict=False)
        except ValueError:
            raise ValueError(f"{text!r}: the source must be world, a role or a CIDR") from None
    return group, proto, low, high, source



def validate(env: Environment, fname: str) -> None:
    if env.kind not in ("sandbox", "aws"):
        raise ConfigError(fname, "kind", f"must be 'sandbox' or 'aws', got {env.kind!r}")
    if env.lang not in ("ja", "en"):
        raise ConfigError(fname, "lang", f"must be 'ja' or 'en', got {env.lang!r}")
    if env.runner.cell_timeout <= 0:
        raise ConfigError(fname, "runner.cell_timeout", "must be positive")
    if env.lock.ttl_minutes <= 0:
        raise ConfigError(fname, "lock.ttl_minutes", "must be positive")
    from shipbook.phases import PHASES  # local import: phases has no config dependency

    for i, p in enumerate(env.runner.phases):
        if p not in PHASES:
            raise ConfigError(fname, f"runner.phases[{i}]", f"unknown phase {p!r} (known: {', '.join(PHASES)})")
    if env.runner.runs_url and not env.runner.runs_url.startswith("s3://"):
        raise ConfigError(fname, "runner.runs_url", "must be an s3://bucket/prefix URL")
    urls = {"aws.endpoint_url": env.aws.endpoint_url, "github.api_url": env.github.api_url,
            "app.public_url": env.app.public_url}
    if env.is_sandbox:
        for key, url in urls.items():
            if url and "{sandbox." not in url and not is_local_url(url):
                raise ConfigError(fname, key, f"the sandbox only talks to loopback, got {url!r}")
        if env.aws.account_id and env.aws.account_id != SANDBOX_ACCOUNT:
            raise ConfigError(fname, "aws.account_id", f"the sandbox's account is {SANDBOX_ACCOUNT}")
    else:
        for key, url in urls.items():
            if url and is_local_url(url):
                raise ConfigError(fname, key, f"a non-sandbox environment refuses loopback endpoints ({url})")
    if env.verify.no_data not in ("inconclusive", "fail", "ignore"):
        raise ConfigError(fname, "verify.no_data", f"must be inconclusive, fail or ignore, got {env.verify.no_data!r}")
    _validate_fatal_signature(env.verify, fname)
    if env.rollback.db_swap not in ("rename", "secret"):
        raise ConfigError(fname, "rollback.db_swap", f"must be rename or secret, got {env.rollback.db_swap!r}")
    wait = env.verify.settle_seconds + env.verify.canary_seconds + env.verify.publish_lag_seconds + 60
    if "verify" in env.runner.phases and env.runner.cell_timeout <= wait:
        raise ConfigError(fname, "runner.cell_timeout",
                          f"must exceed the verify canary wait ({wait} s: settle + canary + publish lag + 60), "
                          "which runs in one cell")
    pc = env.precheck
    for key in ("bandit_block_severity", "bandit_min_confidence"):
        if getattr(pc, key) not in ("LOW", "MEDIUM", "HIGH"):
            raise ConfigError(fname, f"precheck.{key}", f"must be LOW, MEDIUM or HIGH, got {getattr(pc, key)!r}")
    for key in ("test_timeout", "tool_timeout", "required_approvals", "ruff_max_findings", "migration_warn_seconds",
                "migration_fail_seconds", "probe_timeout"):
        if getattr(pc, key) < 0:
            raise ConfigError(fname, f"precheck.{key}", "must not be negative")
    if pc.migration_sample_rows < 10:
        raise ConfigError(fname, "precheck.migration_sample_rows", "must be at least 10")
    for table, rows in pc.db_row_counts.items():
        if rows < 0:
            raise ConfigError(fname, f"precheck.db_row_counts.{table}", "must not be negative")
    _validate_precheck_expectations(pc, fname)
    if env.incident.pool_seconds < 1 or env.incident.pool_seconds % env.verify.period:
        raise ConfigError(fname, "incident.pool_seconds", f"must be a positive multiple of verify.period "
                          f"({env.verify.period}), got {env.incident.pool_seconds}")
    if env.incident.min_requests < 1:
        raise ConfigError(fname, "incident.min_requests", "must be at least 1")
    for name, c in enumerate(env.contacts):
        if not c.role or not c.name:
            raise ConfigError(fname, f"contacts[{name}]", "role and name are required")


def _validate_fatal_signature(v: VerifySection, fname: str) -> None:
    """The fatal-signature rule's numbers. A run longer than the logs read after the deploy is shortened to them
    (`verify.settings.fatal_rule`), so short test windows keep the default."""
    if v.fatal_signature_per_minute < 0:
        raise ConfigError(fname, "verify.fatal_signature_per_minute", "must not be negative (0 turns the rule off)")
    if v.fatal_signature_bucket_seconds <= 0:
        raise ConfigError(fname, "verify.fatal_signature_bucket_seconds", "must be positive")
    if v.fatal_signature_seconds < v.fatal_signature_bucket_seconds:
        raise ConfigError(fname, "verify.fatal_signature_seconds",
                          f"must be at least one bucket (fatal_signature_bucket_seconds = "
                          f"{v.fatal_signature_bucket_seconds}), got {v.fatal_signature_seconds}")


def _validate_precheck_expectations(pc: PrecheckSection, fname: str) -> None:
    """The keys that say what the environment should look like: env.variables, network, iam, infra.alb."""
    for i, name in enumerate(pc.required_variables):
        if not _VARIABLE_NAME.fullmatch(name):
            raise ConfigError(fname, f"precheck.required_variables[{i}]", f"{name!r} is not a variable name")
    for i, rule in enumerate(pc.allowed_ingress):
        try:
            parse_ingress(rule)
        except ValueError as exc:
            raise ConfigError(fname, f"precheck.allowed_ingress[{i}]", str(exc)) from exc
    if not pc.deploy_role.strip():
        raise ConfigError(fname, "precheck.deploy_role", "must name the deploy role (default \"{stack}-deploy\")")
    try:
        unknown = sorted({f for _, f, _, _ in string.Formatter().parse(pc.deploy_role) if f is not None} - {"stack"})
    except ValueError as exc:
        raise ConfigError(fname, "precheck.deploy_role", f"bad placeholder: {exc}") from exc
    if unknown:
        raise ConfigError(fname, "precheck.deploy_role", f"unknown placeholder {{{unknown[0]}}} (known: {{stack}})")
    if pc.share_topic and not _SNS_TOPIC.fullmatch(pc.share_topic):
        raise ConfigError(fname, "precheck.share_topic",
                          f"expected an SNS topic name or arn:aws:sns:REGION:ACCOUNT:NAME, got {pc.share_topic!r}")
    hc = pc.health_check
    if hc.matcher and not _MATCHER.fullmatch(hc.matcher.replace(" ", "")):
        raise ConfigError(fname, "precheck.health_check.matcher",
                          f"expected HTTP codes like \"200\", \"200,302\" or \"200-299\", got {hc.matcher!r}")
    for key in ("interval", "timeout", "healthy_threshold", "unhealthy_threshold"):
        value = getattr(hc, key)
        if value is not None and value <= 0:
            raise ConfigError(fname, f"precheck.health_check.{key}", "must be positive")
    if hc.interval is not None and hc.timeout is not None and hc.timeout >= hc.interval:
        raise ConfigError(fname, "precheck.health_check.timeout", "must be shorter than the interval")
