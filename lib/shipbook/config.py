"""Environment files: `environments/<env>.toml` loaded once into a frozen, validated object.

Why so strict: a typo in a release config must stop the release before anything changes,
so unknown keys and wrong types are rejected with `file: key: reason`. Secrets appear only
as references (`{secretsmanager = "arn"}`, `{ssm = "/name"}`, `{env = "VAR"}`), never values.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import string
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from shipbook.errors import ConfigError
from shipbook.loopback import is_local_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENV_DIR = Path(os.environ.get("SHIPBOOK_ENV_DIR") or PROJECT_ROOT / "environments").resolve()
# SHIPBOOK_SANDBOX_DIR lets a test or a second checkout run its own twin beside the default one.
SANDBOX_DIR = Path(os.environ.get("SHIPBOOK_SANDBOX_DIR") or PROJECT_ROOT / ".sandbox").resolve()
SANDBOX_ACCOUNT = "123456789012"
# The emulator accepts any credentials; these dummies are the documented moto ones, not a secret.
SANDBOX_CREDENTIAL = "testing"

_PLACEHOLDER = re.compile(r"\{sandbox\.([a-z_]+)\}")
_SECRET_WORDS = re.compile(r"(secret|password|passwd|token|api_key|apikey|private_key)", re.I)


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives. Exactly one of the three is set."""

    secretsmanager: str = ""
    ssm: str = ""
    env: str = ""

    def describe(self) -> str:
        if self.secretsmanager:
            return f"secretsmanager:{self.secretsmanager}"
        if self.ssm:
            return f"ssm:{self.ssm}"
        return f"env:{self.env}"


@dataclass(frozen=True)
class AwsSection:
    region: str = "ap-northeast-1"
    profile: str = ""
    endpoint_url: str = ""
    account_id: str = ""


@dataclass(frozen=True)
class LockSection:
    table: str = "shipbook-locks"
    ttl_minutes: int = 120


@dataclass(frozen=True)
class GithubSection:
    repository: str = ""
    api_url: str = ""  # empty: https://api.github.com
    remote: str = "origin"
    token: SecretRef | None = None
    workflow: str = "deploy.yml"


@dataclass(frozen=True)
class AppSection:
    repo: str = "."
    public_url: str = ""
    health_path: str = "/health/"
    version_path: str = "/version/"
    test_command: str = "python manage.py test"
    notes_file: str = "RELEASE_NOTES.md"
    python: str = ""  # the app's interpreter (tests, migration probe); "" = shipbook's own
    settings_module: str = ""  # DJANGO_SETTINGS_MODULE; "" = the one manage.py sets


@dataclass(frozen=True)
class StackSection:
    name: str = ""
    cluster: str = ""
    service: str = ""
    container: str = "web"
    target_group: str = ""
    db_instance: str = ""
    log_group: str = ""
    alarm_topic: str = ""


@dataclass(frozen=True)
class RunnerSection:
    cell_timeout: int = 3600
    phases: tuple[str, ...] = ("precheck", "backup", "deploy", "verify", "report")
    runs_url: str = ""
    kernel_name: str = "python3"


@dataclass(frozen=True)
class DeploySection:
    """Deadlines (seconds from the tag push) and polling of the deploy watchers."""

    workflow_timeout: float = 1800.0
    stack_timeout: float = 1800.0
    ecs_timeout: float = 1800.0
    health_timeout: float = 2100.0
    run_appear_timeout: float = 120.0
    deployment_appear_timeout: float = 120.0
    poll_initial: float = 2.0
    poll_max: float = 15.0
    heartbeat: float = 5.0
    max_calls: int = 1000
    healthy_streak: int = 2
    after_failure: float = 30.0


@dataclass(frozen=True)
class BackupSection:
    pattern: str = "pre-deploy-{version}-{date}"
    keep: int = 5
    timeout_minutes: int = 60


@dataclass(frozen=True)
class HealthCheckSection:
    """The target group's health check as the environment expects it (`infra.alb`).

    Only the keys given are compared: an unset key (None, or "" for the matcher) is shown, not judged.
    Without a matcher, 200 must be one of the target group's success codes, as before this key existed.
    """

    matcher: str = ""  # success codes exactly as the target group has them: "200", "200,302", "200-299"
    interval: int | None = None  # seconds between probes
    timeout: int | None = None  # seconds a probe may take
    healthy_threshold: int | None = None  # consecutive successes before a target is healthy
    unhealthy_threshold: int | None = None  # consecutive failures before it is unhealthy


@dataclass(frozen=True)
class PrecheckSection:
    """Thresholds and expectations of the pre-checks (code.*, db.*, env.*, iam.*, network.*, infra.*)."""

    test_timeout: float = 600.0
    tool_timeout: float = 300.0
    required_approvals: int = 1
    bandit_block_severity: str = "HIGH"  # LOW|MEDIUM|HIGH: findings at or above block
    bandit_min_confidence: str = "LOW"  # below: listed, never counted
    ruff_max_findings: int = 0  # more block; up to this many warn
    migration_sample_rows: int = 5000  # the small sample is a fifth of it
    migration_warn_seconds: float = 60.0
    migration_fail_seconds: float = 0.0  # 0 = never blocks
    probe_timeout: float = 300.0  # capped at 0.75 x runner.cell_timeout
    db_row_counts: dict[str, int] = field(default_factory=dict)  # table -> production rows
    # env.variables: what the task definition must define (secrets by reference)
    required_variables: tuple[str, ...] = ("SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS")
    # network.security_groups: `<alb|app|db> <protocol>/<port[-port]|container> <world|alb|app|db|CIDR>`
    allowed_ingress: tuple[str, ...] = ("alb tcp/80 world", "alb tcp/443 world", "app tcp/container alb",
                                        "db tcp/5432 app")
    deploy_role: str = "{stack}-deploy"  # iam.ecr_push: role name or ARN; {stack} = stack.name
    health_check: HealthCheckSection = field(default_factory=HealthCheckSection)  # infra.alb
    # code.shared: where the pre-check summary goes. The topic is an SNS name or ARN ("" = stack.alarm_topic);
    # the webhook (Slack-compatible JSON POST) is a secret, so by reference only and never printed.
    share_topic: str = ""
    share_webhook: SecretRef | None = None


@dataclass(frozen=True)
class SmokeTestSection:
    path: str
    method: str = "GET"
    status: int = 200
    text: str = ""  # "{version}" is filled in
    name: str = ""


@dataclass(frozen=True)
class VerifySection:
    """Windows, tolerances and smoke tests of the verify phase and its judge."""

    baseline_seconds: int = 1800
    canary_seconds: int = 1800
    period: int = 60
    settle_seconds: int = 120
    publish_lag_seconds: int = 180
    alpha: float = 0.01
    min_points: int = 10
    latency_tolerance: float = 0.20
    latency_floor_ms: float = 5.0
    error_rate_tolerance: float = 0.005
    cpu_tolerance: float = 0.5
    cpu_floor: float = 10.0
    memory_tolerance: float = 0.25
    memory_floor: float = 5.0
    min_traffic_ratio: float = 0.5
    no_data: str = "inconclusive"  # inconclusive | fail | ignore
    smoke: tuple[SmokeTestSection, ...] = ()
    alarms: tuple[str, ...] = ()
    log_filter: str = "?ERROR ?CRITICAL ?Traceback ?Exception"
    max_log_events: int = 20000
    fatal_signature_per_minute: float = 10.0  # a NEW error signature at this rate … (0: off)
    fatal_signature_seconds: int = 300  # … in every bucket for this long is a fatal bug
    fatal_signature_bucket_seconds: int = 60
    http_timeout: float = 10.0
    tls_warn_days: int = 21


@dataclass(frozen=True)
class RollbackSection:
    tag_pattern: str = "{next_patch}-rollback"
    db_swap: str = "rename"  # rename | secret
    database_url_name: str = "DATABASE_URL"
    migrate_timeout: float = 1800.0
    restore_timeout: float = 3600.0
    poll: float = 5.0


@dataclass(frozen=True)
class IncidentSection:
    """How 5xx rates are pooled for headline figures: an incident's impact and onset, a rollback's own window."""

    pool_seconds: int = 60  # 5xx rate and p99 pooled per minute (a multiple of verify.period) …
    min_requests: int = 50  # … and a pool with fewer requests never sets a headline figure


@dataclass(frozen=True)
class ReportSection:
    known_issues: tuple[str, ...] = ()
    next_release: str = ""


@dataclass(frozen=True)
class Contact:
    role: str
    name: str
    phone: str = ""
    email: str = ""


@dataclass(frozen=True)
class Environment:
    """The validated environment. Frozen: loaded once, passed everywhere."""

    name: str
    kind: str = "aws"  # "sandbox" or "aws"
    lang: str = "ja"
    auto_rollback: bool = False
    aws: AwsSection = field(default_factory=AwsSection)
    lock: LockSection = field(default_factory=LockSection)
    github: GithubSection = field(default_factory=GithubSection)
    app: AppSection = field(default_factory=AppSection)
    stack: StackSection = field(default_factory=StackSection)
    runner: RunnerSection = field(default_factory=RunnerSection)
    deploy: DeploySection = field(default_factory=DeploySection)
    backup: BackupSection = field(default_factory=BackupSection)
    precheck: PrecheckSection = field(default_factory=PrecheckSection)
    verify: VerifySection = field(default_factory=VerifySection)
    rollback: RollbackSection = field(default_factory=RollbackSection)
    report: ReportSection = field(default_factory=ReportSection)
    incident: IncidentSection = field(default_factory=IncidentSection)
    secrets: dict[str, SecretRef] = field(default_factory=dict)
    contacts: tuple[Contact, ...] = ()
    source: str = ""

    @property
    def is_sandbox(self) -> bool:
        return self.kind == "sandbox"

    def process_env(self) -> dict[str, str]:
        """Variables for shipbook's own child processes and kernels (never the user's shell)."""
        out = {"SHIPBOOK_ENV": self.name, "AWS_DEFAULT_REGION": self.aws.region}
        if self.aws.endpoint_url:
            out["AWS_ENDPOINT_URL"] = self.aws.endpoint_url
        if self.is_sandbox:
            for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                out[var] = SANDBOX_CREDENTIAL
        if self.aws.profile:
            out["AWS_PROFILE"] = self.aws.profile
        if self.github.api_url:
            out["GITHUB_API_URL"] = self.github.api_url
        return out


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


# --------------------------------------------------------------------------- loading


def env_path(name: str, env_dir: Path = ENV_DIR) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", name or ""):
        raise ConfigError("--env", "name", f"{name!r} is not a valid environment name")
    return env_dir / f"{name}.toml"


def load(name: str, env_dir: Path = ENV_DIR, sandbox_dir: Path = SANDBOX_DIR, resolve: bool = True) -> Environment:
    """Load and validate `environments/<name>.toml`.

    With `resolve`, `{sandbox.*}` placeholders are filled from the running sandbox's state.
    """
    path = env_path(name, env_dir)
    if not path.is_file():
        known = sorted(p.stem for p in env_dir.glob("*.toml") if not p.stem.endswith(".example"))
        raise ConfigError(str(path), "env", f"no such environment (known: {', '.join(known) or 'none'})")
    return load_file(path, sandbox_dir=sandbox_dir, resolve=resolve)


def load_file(path: Path, sandbox_dir: Path = SANDBOX_DIR, resolve: bool = True) -> Environment:
    fname = _display(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(fname, "(file)", f"invalid TOML: {exc}") from exc
    raw.setdefault("name", path.stem)
    if resolve and raw.get("kind") == "sandbox":
        raw = _resolve_placeholders(raw, sandbox_dir, fname)
    env = _build(Environment, raw, fname, "")
    env = dataclasses.replace(env, source=str(path))
    _validate(env, fname)
    return env


def sandbox_state(sandbox_dir: Path = SANDBOX_DIR) -> dict | None:
    state = sandbox_dir / "state.json"
    if not state.is_file():
        return None
    try:
        return json.loads(state.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def _resolve_placeholders(raw: dict, sandbox_dir: Path, fname: str) -> dict:
    state = sandbox_state(sandbox_dir)
    endpoints = (state or {}).get("endpoints", {})

    def sub(value, key):
        if isinstance(value, str):
            def repl(m: re.Match) -> str:
                if m.group(1) not in endpoints:
                    raise ConfigError(fname, key, f"{{sandbox.{m.group(1)}}} is unknown: is the sandbox up? "
                                      "(`shipbook sandbox up`)")
                return str(endpoints[m.group(1)])
            return _PLACEHOLDER.sub(repl, value)
        if isinstance(value, dict):
            return {k: sub(v, f"{key}.{k}" if key else k) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v, key) for v in value]
        return value

    return sub(raw, "")


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _build(cls, raw, fname: str, prefix: str):
    """Build a frozen dataclass from a TOML table, rejecting unknown keys and wrong types."""
    if not isinstance(raw, dict):
        raise ConfigError(fname, prefix.rstrip(".") or "(top)", f"expected a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    kwargs = {}
    for key, value in raw.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(fname, full, f"unknown key (allowed: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(hints[key], value, fname, full)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(fname, prefix.rstrip(".") or "(top)", f"missing key: {exc}") from exc


def _coerce(tp, value, fname: str, key: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, fname, key)
    if dataclasses.is_dataclass(tp):
        if tp is SecretRef:
            return _secret_ref(value, fname, key)
        return _build(tp, value, fname, key + ".")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(fname, key, f"expected a list, got {type(value).__name__}")
        return tuple(_coerce(args[0], v, fname, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(fname, key, f"expected a table, got {type(value).__name__}")
        return {k: _coerce(args[1], v, fname, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(fname, key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(fname, key, f"expected an integer, got {type(value).__name__}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(fname, key, f"expected a number, got {type(value).__name__}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(fname, key, f"expected a string, got {type(value).__name__}")
        last = key.rsplit(".", 1)[-1]
        if last not in ("secretsmanager", "ssm", "env") and _SECRET_WORDS.search(last) and value:
            raise ConfigError(fname, key, "looks like a secret value: give a reference "
                              "({secretsmanager = ARN} / {ssm = name} / {env = VAR}), never the value")
        return value
    raise ConfigError(fname, key, f"unsupported type {_type_name(tp)}")


def _secret_ref(value, fname: str, key: str) -> SecretRef:
    if isinstance(value, str):
        raise ConfigError(fname, key, "secrets are given by reference only: "
                          "{secretsmanager = ARN} / {ssm = name} / {env = VAR}, never as a value")
    ref = _build(SecretRef, value, fname, key + ".")
    if sum(bool(x) for x in (ref.secretsmanager, ref.ssm, ref.env)) != 1:
        raise ConfigError(fname, key, "give exactly one of secretsmanager, ssm, env")
    return ref


def _validate(env: Environment, fname: str) -> None:
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
    (`VerifySettings.fatal_rule`), so short test windows keep the default."""
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
